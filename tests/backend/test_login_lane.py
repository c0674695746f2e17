"""Password checks on the login lane: they never hold up the shared thread, and a full
lane answers 503 at once (backend/login_lane.py), through the real ASGI application.

A password hasher that waits for the test to release it stands in for PBKDF2's
~0.3 s, so "the other request was served while a hash was running" is a fact
the test observes, not a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth.hashers import BasePasswordHasher
from django.core.cache import cache

from backend.config.asgi import SharedThreadASGIHandler
from backend.login_lane import LANE_NICENESS, MAX_NICENESS
from backend.users.models import User
from backend.users.services import session_start
from backend.users.throttling import LoginRateThrottle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

WAIT = 10


class BlockingHasher(BasePasswordHasher):
    """Verifies only once the test sets ``release``; ``entered`` says a check began."""

    algorithm = "blocking"
    entered = threading.Event()
    release = threading.Event()
    checks = 0
    niceness: int | None = None  # the nice value of the thread that checked, on Linux

    def salt(self) -> str:
        return "salt"

    def encode(self, password: str, salt: str) -> str:
        return f"{self.algorithm}${salt}${password}"

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, salt, password = encoded.split("$", 2)
        return {"algorithm": algorithm, "salt": salt, "hash": password}

    def verify(self, password: str, encoded: str) -> bool:
        type(self).checks += 1
        with contextlib.suppress(AttributeError):
            type(self).niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        type(self).entered.set()
        assert type(self).release.wait(WAIT * 3), "the test never released the hash"
        return bool(password == self.decode(encoded)["hash"])

    def safe_summary(self, encoded: str) -> dict[Any, Any]:
        return {"algorithm": self.algorithm}

    def harden_runtime(self, password: str, encoded: str) -> None:
        return None


@pytest.fixture
def blocking_hasher(settings: Any) -> Iterator[type[BlockingHasher]]:
    settings.PASSWORD_HASHERS = [
        "tests.backend.test_login_lane.BlockingHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    BlockingHasher.entered.clear()
    BlockingHasher.release.clear()
    BlockingHasher.checks = 0
    BlockingHasher.niceness = None
    cache.clear()
    yield BlockingHasher
    BlockingHasher.release.set()
    cache.clear()


@database_sync_to_async
def make_alice() -> User:
    alice = User.objects.create_user(username="alice", password="x")
    User.objects.filter(pk=alice.pk).update(password="blocking$salt$s3cret")
    return alice


def login(app: Any, password: str = "s3cret") -> HttpCommunicator:
    body = json.dumps({"username": "alice", "password": password}).encode()
    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return HttpCommunicator(app, "POST", "/api/auth/token/", body=body, headers=headers)


async def respond(communicator: HttpCommunicator, timeout: float = WAIT) -> dict[str, Any]:
    """The response, once the application has also finished with the request."""
    response: dict[str, Any] = await communicator.get_response(timeout=timeout)
    await communicator.wait(WAIT)
    return response


async def test_other_requests_are_served_while_a_password_is_being_checked(
    blocking_hasher: type[BlockingHasher],
) -> None:
    app = SharedThreadASGIHandler()
    alice = await make_alice()
    access = (await database_sync_to_async(session_start)(user=alice)).access
    logging_in = asyncio.ensure_future(respond(login(app), WAIT * 3))
    assert await asyncio.to_thread(blocking_hasher.entered.wait, WAIT)

    # The hash is still running: on the shared thread this request would wait for it.
    count = HttpCommunicator(
        app,
        "GET",
        "/api/inbox/unread-count/",
        headers=[(b"host", b"testserver"), (b"authorization", f"Bearer {access}".encode())],
    )
    response = await respond(count)
    assert response["status"] == 200, response
    assert not logging_in.done()

    blocking_hasher.release.set()
    answer = await logging_in
    assert answer["status"] == 200
    assert set(json.loads(answer["body"])) == {"access", "refresh"}


async def test_a_full_lane_answers_503_at_once_and_recovers(
    blocking_hasher: type[BlockingHasher], settings: Any
) -> None:
    settings.TRAY = {**settings.TRAY, "LOGIN_WORKERS": 1, "LOGIN_QUEUE": 0}
    app = SharedThreadASGIHandler()
    await make_alice()
    first = asyncio.ensure_future(respond(login(app), WAIT * 3))
    assert await asyncio.to_thread(blocking_hasher.entered.wait, WAIT)

    busy = await respond(login(app))
    assert busy["status"] == 503
    assert dict(busy["headers"])[b"Retry-After"] == b"2"
    assert json.loads(busy["body"])["error"]["code"] == "login_busy"
    assert blocking_hasher.checks == 1  # refused before any hashing

    blocking_hasher.release.set()
    assert (await first)["status"] == 200
    assert (await respond(login(app)))["status"] == 200


async def test_the_rate_limit_refuses_before_any_password_is_hashed(
    blocking_hasher: type[BlockingHasher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "2/min"})
    blocking_hasher.release.set()
    app = SharedThreadASGIHandler()
    await make_alice()
    statuses = [(await respond(login(app, "wrong")))["status"] for _ in range(2)]
    assert statuses == [401, 401]
    throttled = await respond(login(app))
    assert throttled["status"] == 429
    assert blocking_hasher.checks == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux nices threads one by one")
@pytest.mark.parametrize("niceness", [None, 0, 4])
async def test_password_checks_run_that_much_nicer_than_the_process(
    blocking_hasher: type[BlockingHasher], settings: Any, niceness: int | None
) -> None:
    """By default +10, so a busy core serves the shared thread first; 0 leaves the
    lane at the process's priority (TRAY_LOGIN_NICENESS)."""
    if niceness is not None:
        settings.TRAY = {**settings.TRAY, "LOGIN_NICENESS": niceness}
    added = LANE_NICENESS if niceness is None else niceness
    blocking_hasher.release.set()
    app = SharedThreadASGIHandler()
    await make_alice()
    assert (await respond(login(app)))["status"] == 200
    process = os.getpriority(os.PRIO_PROCESS, 0)
    assert blocking_hasher.niceness == min(MAX_NICENESS, process + added)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == process
