"""POST /api/notifications/ over the real server: the fast path (publish_route.py, the
publish lane, backend/config/asgi.py) answers as the full stack does, refuses revoked
credentials within the cache bound, and answers 503 with Retry-After when its lane is
full, losing nothing it accepted."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from backend.notifications import services
from backend.notifications.models import Inbox, Message
from backend.notifications.publish_route import Request, publish_batch
from backend.notifications.selectors import Audience
from backend.notifications.services import api_key_create
from backend.users.services import session_start
from tests.fixtures.services import RunningServer, ServerFactory

PUBLISH = "/api/notifications/"
TIMEOUT = 30.0
# Headers that differ between any two answers, whoever makes them.
_PER_ANSWER = {"date", "content-length"}


def _key(server: RunningServer) -> str:
    created = server.cli("create-api-key", "test", check=True)
    return created.stdout.strip().split()[-1]


def _login(server: RunningServer, username: str) -> dict[str, str]:
    pair: dict[str, str] = httpx.post(
        f"{server.url}/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=TIMEOUT,
    ).json()
    return pair


def _database(server: RunningServer) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "db.sqlite3", timeout=TIMEOUT)


def _messages(server: RunningServer) -> dict[str, list[int]]:
    """Message ids per idempotency key, from the server's database file."""
    with _database(server) as db:
        rows = db.execute(
            "SELECT idempotency_key, id FROM notifications_message ORDER BY id"
        ).fetchall()
    found: dict[str, list[int]] = {}
    for key, message_id in rows:
        found.setdefault(str(key), []).append(int(message_id))
    return found


def _headers(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower() not in _PER_ANSWER
    }
    if "content-security-policy" in found:
        # django-csp writes the directives in an order that differs between processes.
        found["content-security-policy"] = sorted(
            part.strip() for part in found["content-security-policy"].split(";")
        )
    return found


@pytest.fixture
def twins(server_factory: ServerFactory, tmp_path: Path) -> tuple[RunningServer, RunningServer]:
    """The same demo server twice: fast path on (the default), and off."""
    fast = server_factory(demo=True, data_dir=tmp_path / "fast")
    full = server_factory(
        demo=True, data_dir=tmp_path / "full", env={"TRAY_PUBLISH_FAST_PATH": "0"}
    )
    return fast, full


def _requests(alice: int, key: str, bearer: str, dev_bearer: str) -> list[dict[str, Any]]:
    """Successes and errors of every kind, in the order they are sent to each server."""
    as_key = {"Authorization": f"Api-Key {key}"}
    as_admin = {"Authorization": f"Bearer {bearer}"}
    ok = {"audience": {"users": [alice]}, "title": "Deploy"}
    return [
        {"headers": as_key, "json": ok},
        {"headers": as_admin, "json": {**ok, "idempotency_key": "k1"}},
        {"headers": as_admin, "json": {**ok, "idempotency_key": "k1"}},  # 200, the same one
        {"headers": as_key, "json": {**ok, "priority": "high", "url": "/projects/1"}},
        {"headers": as_key, "json": {**ok, "title": ""}},
        {"headers": as_key, "json": {**ok, "title": "\u200d"}},  # the service's refusal
        {"headers": as_key, "json": {**ok, "audience": {"usernames": ["nobody"]}}},
        # User ids are checked by the service's recipient query on the fast path.
        {"headers": as_key, "json": {**ok, "audience": {"users": [alice, 2**40]}}},
        {
            "headers": as_admin,
            "json": {**ok, "idempotency_key": "k1", "audience": {"users": [2**40]}},
        },
        {"headers": as_key, "json": {**ok, "mesage": "typo"}},
        {"headers": as_key, "json": ["not", "an", "object"]},
        {"headers": {**as_key, "Content-Type": "application/json"}, "content": b"{nope"},
        {"headers": {**as_key, "Content-Type": "application/json"}, "content": b""},
        {"headers": {**as_key, "Content-Type": "application/json"}, "content": b"[NaN]"},
        {"headers": {**as_key, "Content-Type": "text/plain"}, "content": b"{}"},
        {"headers": {"Authorization": "Api-Key tnk_unknown"}, "json": ok},
        {"headers": {"Authorization": "Api-Key"}, "json": ok},
        {"headers": {"Authorization": "Bearer not.a.token"}, "json": ok},
        {"headers": {"Authorization": f"Bearer {dev_bearer}"}, "json": ok},  # not staff: 403
        {"headers": {}, "json": ok},
        {
            "headers": {**as_key, "Content-Type": "application/json"},
            "content": b'{"title": "' + b"x" * 3_000_000 + b'"}',
        },
    ]


def test_the_fast_path_answers_exactly_as_the_full_stack(
    twins: tuple[RunningServer, RunningServer],
) -> None:
    answers: list[list[httpx.Response]] = []
    for server in twins:
        key = _key(server)
        bearer = _login(server, "admin")["access"]
        dev = _login(server, "bob")["access"]
        with _database(server) as db:
            alice = db.execute("SELECT id FROM users_user WHERE username = 'alice'").fetchone()[0]
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            answers.append(
                [client.post(PUBLISH, **request) for request in _requests(alice, key, bearer, dev)]
            )
    fast, full = answers
    assert [r.status_code for r in fast] == [r.status_code for r in full]
    assert [r.status_code for r in fast][:4] == [201, 201, 200, 201]
    assert {401, 403, 400, 413, 415} <= {r.status_code for r in fast}
    for mine, theirs in zip(fast, full, strict=True):
        assert mine.content == theirs.content
        assert _headers(mine) == _headers(theirs), mine.request.content[:60]
    csp = fast[0].headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert fast[0].headers["x-content-type-options"] == "nosniff"
    assert all("Traceback" not in server.output() for server in twins)


def _raw_request(key: str, body: dict[str, Any], *extra: str) -> bytes:
    content = json.dumps(body).encode()
    head = [
        f"POST {PUBLISH} HTTP/1.1",
        "Host: testserver",
        f"Authorization: Api-Key {key}",
        "Content-Type: application/json",
        f"Content-Length: {len(content)}",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


def _pipelined(server: RunningServer, requests: list[bytes]) -> list[httpx.Response]:
    """``requests`` written at once on one connection (HTTP/1.1 pipelining); the answers."""
    url = httpx.URL(server.url)
    answers: list[httpx.Response] = []
    with socket.create_connection((url.host, url.port or 80), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(requests))
        buffer = b""
        while len(answers) < len(requests):
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                status_line, *lines = buffer[:head_end].decode("latin-1").split("\r\n")
                headers = [(n, v) for n, _, v in (line.partition(": ") for line in lines)]
                length = next(int(v) for n, v in headers if n.lower() == "content-length")
                end = head_end + 4 + length
                if len(buffer) >= end:
                    answers.append(
                        httpx.Response(
                            int(status_line.split()[1]),
                            headers=headers,
                            content=buffer[head_end + 4 : end],
                        )
                    )
                    buffer = buffer[end:]
                    continue
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            buffer += chunk
    return answers


def test_pipelined_and_forwarded_publishes_answer_as_the_full_stack(
    twins: tuple[RunningServer, RunningServer],
) -> None:
    # Below ASGI (backend/config/publish_protocol.py) a publish is held until its body
    # is read, and a pipelined one is started when the one before it is answered; one
    # with X-Forwarded-For goes through the ASGI app. All answer as the full stack.
    answers: list[list[httpx.Response]] = []
    for server in twins:
        key = _key(server)
        with _database(server) as db:
            alice = db.execute("SELECT id FROM users_user WHERE username = 'alice'").fetchone()[0]
        ok = {"audience": {"users": [alice]}, "title": "Deploy"}
        # The first publish per host teaches the fast path its headers.
        learned = httpx.post(
            f"{server.url}{PUBLISH}",
            json=ok,
            headers={"Authorization": f"Api-Key {key}", "Host": "testserver"},
            timeout=TIMEOUT,
        )
        assert learned.status_code == 201
        answers.append(
            _pipelined(
                server,
                [
                    _raw_request(key, {**ok, "idempotency_key": "p1"}),
                    _raw_request(key, {**ok, "title": ""}),
                    _raw_request(key, {**ok, "idempotency_key": "p1"}),
                    _raw_request(key, {**ok, "idempotency_key": "p2"}, "X-Forwarded-For: 10.0.0.9"),
                    # Over uvicorn's read buffer: read by the ASGI app (a title too long).
                    _raw_request(key, {**ok, "title": "x" * 70_000}),
                ],
            )
        )
        assert sorted(_messages(server)) == ["None", "p1", "p2"]
        assert len(_messages(server)["p1"]) == 1
    fast, full = answers
    assert [r.status_code for r in fast] == [201, 400, 200, 201, 400]
    assert [r.status_code for r in full] == [201, 400, 200, 201, 400]
    for mine, theirs in zip(fast, full, strict=True):
        assert mine.content == theirs.content
        assert _headers(mine) == _headers(theirs)


def test_a_revoked_key_is_refused_within_the_cache_bound(demo_server: RunningServer) -> None:
    key = _key(demo_server)
    body = {"audience": {"usernames": ["alice"]}, "title": "Still allowed?"}
    with httpx.Client(
        base_url=demo_server.url, timeout=TIMEOUT, headers={"Authorization": f"Api-Key {key}"}
    ) as client:
        assert client.post(PUBLISH, json=body).status_code == 201  # the key is now cached
        # Revoked by another process, as the admin of another server or a shell would.
        with _database(demo_server) as db:
            db.execute("UPDATE notifications_apikey SET revoked_at = datetime('now')")
        revoked = time.monotonic()
        deadline = revoked + 10
        while (answer := client.post(PUBLISH, json=body)).status_code == 201:
            assert time.monotonic() < deadline, "the revoked key is still accepted"
        refused_after = time.monotonic() - revoked
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    # TRAY_AUTH_CACHE_SECONDS is 2 by default; the margin is for a loaded machine.
    assert refused_after < 2 + 3


def test_a_logged_out_session_is_refused_at_once(demo_server: RunningServer) -> None:
    pair = _login(demo_server, "admin")
    body = {"audience": {"usernames": ["alice"]}, "title": "Before logout"}
    with httpx.Client(
        base_url=demo_server.url,
        timeout=TIMEOUT,
        headers={"Authorization": f"Bearer {pair['access']}"},
    ) as client:
        assert client.post(PUBLISH, json=body).status_code == 201  # the session is now cached
        logout = client.post("/api/auth/logout/", json={"refresh": pair["refresh"]})
        assert logout.status_code == 204
        refused = client.post(PUBLISH, json=body)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="api"'


def test_a_full_lane_answers_503_and_loses_nothing_it_accepted(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(demo=True, env={"TRAY_PUBLISH_QUEUE": "2"})
    key = _key(server)
    headers = {"Authorization": f"Api-Key {key}"}

    def body(name: str) -> dict[str, Any]:
        return {"audience": {"usernames": ["alice"]}, "title": name, "idempotency_key": name}

    answers: dict[str, httpx.Response] = {}
    answered = threading.Condition()

    def publish(name: str) -> None:
        response = httpx.post(
            f"{server.url}{PUBLISH}", json=body(name), headers=headers, timeout=60
        )
        with answered:
            answers[name] = response
            answered.notify_all()

    assert (
        httpx.post(
            f"{server.url}{PUBLISH}", json=body("warm-up"), headers=headers, timeout=TIMEOUT
        ).status_code
        == 201
    )
    # Another process holds SQLite's write lock: the lane's writer waits on it, so
    # publishes pile up in the lane until it is full.
    blocker = _database(server)
    blocker.execute("BEGIN IMMEDIATE")
    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 15
        while not any(r.status_code == 503 for r in answers.values()):
            assert time.monotonic() < deadline, f"no 503: {answers}"
            thread = threading.Thread(target=publish, args=(f"n{len(threads)}",))
            thread.start()
            threads.append(thread)
            with answered:
                answered.wait_for(lambda: len(answers) == len(threads), timeout=0.2)
    finally:
        blocker.rollback()
        blocker.close()
    for thread in threads:
        thread.join(timeout=60)
    busy = [name for name, r in answers.items() if r.status_code == 503]
    accepted = [name for name, r in answers.items() if r.status_code in (200, 201)]
    assert busy
    assert len(accepted) + len(busy) == len(threads)
    assert len(accepted) <= 2
    refusal = answers[busy[0]]
    assert refusal.headers["retry-after"].isdigit()
    assert refusal.json()["error"]["code"] == "publish_busy"
    assert refusal.json()["error"]["message"]
    assert "content-security-policy" in refusal.headers
    stored = _messages(server)
    for name in accepted:
        assert stored[name] == [answers[name].json()["id"]]
    for name in busy:
        assert name not in stored
        retried = httpx.post(
            f"{server.url}{PUBLISH}", json=body(name), headers=headers, timeout=TIMEOUT
        )
        assert retried.status_code == 201
    stored = _messages(server)
    assert all(len(stored[name]) == 1 for name in [*accepted, *busy])


# publish_batch in this process: what the lane's writer runs.


def _request(key: str, **fields: Any) -> Request:
    document = {"audience": {"usernames": ["dev"]}, "title": "Build", **fields}
    return Request(f"Api-Key {key}".encode(), json.dumps(document).encode())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_commit", [True, False])
def test_one_bad_publish_does_not_sink_its_batch(
    make_user: Any, group_commit: bool, django_capture_on_commit_callbacks: Any
) -> None:
    make_user("dev")
    key = api_key_create(name="CI")[1]
    batch = [
        _request(key, idempotency_key="a"),
        _request(key, title="\u200d"),  # passes the serializer, refused by the service
        _request(key, idempotency_key="a"),  # the same key twice in one batch
        _request(key, title="Other"),
        _request(key, audience={"usernames": ["nobody"]}),
        _request("tnk_unknown"),
        _request(key, audience={"users": [2**40]}),  # found unknown by the service
    ]
    answers = publish_batch(batch, group_commit=group_commit)
    statuses = [None if answer is None else answer.status for answer in answers]
    assert statuses == [201, None, 200, 201, None, None, None]
    first, again, other = (json.loads(a.body) for a in (answers[0], answers[2], answers[3]) if a)
    assert again == {**first, "created": False}
    assert set(Message.objects.values_list("id", flat=True)) == {first["id"], other["id"]}
    assert Inbox.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_commit_fails_is_handed_on_whole(make_user: Any) -> None:
    staff = make_user("staff", is_staff=True)
    make_user("dev")
    key = api_key_create(name="CI")[1]
    body = json.dumps({"audience": {"usernames": ["dev"]}, "title": "As staff"}).encode()
    as_staff = Request(f"Bearer {session_start(user=staff).access}".encode(), body)
    assert publish_batch([as_staff], group_commit=True)[0] is not None  # session cached
    with connection.cursor() as cursor:
        # The staff user vanishes behind the cache's back (raw SQL: no signal). SQLite
        # checks the new notification's actor, a deferred foreign key, only at COMMIT.
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("DELETE FROM users_user WHERE id = %s", [staff.pk])
        cursor.execute("PRAGMA foreign_keys=ON")
    answers = publish_batch([_request(key, title="Innocent"), as_staff], group_commit=True)
    assert answers == [None, None]
    assert list(Message.objects.values_list("title", flat=True)) == ["As staff"]


@pytest.mark.django_db(transaction=True)
def test_a_publish_failing_midway_hands_its_whole_batch_on(
    make_user: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    # No publish of a group commit has a savepoint: one that fails after its first
    # write must take the batch with it, or its Message would commit without rows.
    make_user("dev")
    key = api_key_create(name="CI")[1]
    real = services._append_to_inboxes

    def failing(message_id: int, user_ids: Any, **options: Any) -> Any:
        if Message.objects.get(pk=message_id).title == "Broken":
            raise OSError("the disk went away")
        return real(message_id, user_ids, **options)

    monkeypatch.setattr(services, "_append_to_inboxes", failing)
    batch = [_request(key, title="Fine"), _request(key, title="Broken"), _request(key)]
    with django_capture_on_commit_callbacks() as rung:
        assert publish_batch(batch, group_commit=True) == [None, None, None]
    assert not Message.objects.exists()
    assert rung == []  # no doorbell for what was rolled back
    assert [a and a.status for a in publish_batch(batch[:1], group_commit=True)] == [201]


@pytest.mark.django_db(transaction=True)
def test_the_service_writes_in_the_callers_transaction_only_inside_one(make_user: Any) -> None:
    audience = Audience(users=(make_user("dev").pk,))
    with pytest.raises(RuntimeError, match="transaction open"):
        services.notification_create(audience=audience, title="T", own_transaction=False)


def test_an_expired_access_token_is_refused_whatever_the_cache(
    server_factory: ServerFactory,
) -> None:
    # Tokens live 3 s, cached checks 60 s: only the token's own expiry can refuse it.
    server = server_factory(
        demo=True, env={"TRAY_ACCESS_TOKEN_MINUTES": "0.05", "TRAY_AUTH_CACHE_SECONDS": "60"}
    )
    issued = time.monotonic()
    access = _login(server, "admin")["access"]
    body = {"audience": {"usernames": ["alice"]}, "title": "Soon expired"}
    with httpx.Client(
        base_url=server.url, timeout=TIMEOUT, headers={"Authorization": f"Bearer {access}"}
    ) as client:
        while (answer := client.post(PUBLISH, json=body)).status_code == 201:
            assert time.monotonic() - issued < 30, "an expired token is still accepted"
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_not_valid"
