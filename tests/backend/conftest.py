"""Fixtures for WebSocket tests through Channels' communicator (in-process, real ASGI app)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client as DjangoClient
from rest_framework_simplejwt.tokens import AccessToken

from backend.notifications.hub import Hub
from backend.users.models import User

WAIT = 5  # seconds a test waits for an expected frame before failing


@pytest.fixture
def fresh_rate_limits() -> Iterator[None]:
    """Empty the cache the rate limits count in, before and after the test: each test
    starts with a whole budget and leaves none of its attempts to the next."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def superuser_browser(make_user: Callable[..., User]) -> DjangoClient:
    """A browser session of a logged-in superuser, for the admin's pages."""
    browser = DjangoClient()
    browser.force_login(make_user("root", is_staff=True, is_superuser=True))
    return browser


def access_token(user: User, *, lifetime: timedelta | None = None) -> str:
    """An access token of a new login session of ``user`` (as a login would give)."""
    from backend.users.services import session_start

    raw = session_start(user=user).access
    if lifetime is None:
        return raw
    token = AccessToken(raw)  # type: ignore[arg-type]
    token.set_exp(lifetime=lifetime)
    return str(token)


class Client:
    """A communicator with frame helpers; frames are decoded JSON dicts."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator

    async def send(self, kind: str, payload: dict[str, Any] | None = None, **extra: Any) -> None:
        await self.ws.send_to(
            text_data=json.dumps({"type": kind, "payload": payload or {}, **extra})
        )

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        output = await self.ws.receive_output(timeout)
        if output["type"] == "websocket.close":
            raise AssertionError(f"socket closed with {output.get('code')}")
        result: dict[str, Any] = json.loads(output["text"])
        return result

    async def receive_until(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """Frames up to and including the first of ``kind``; returns that one."""
        while True:
            frame = await self.receive(timeout)
            if frame["type"] == kind:
                return frame

    async def closed_with(self, timeout: float = WAIT) -> int | None:
        """Read until the server closes; returns the close code."""
        while True:
            output = await self.ws.receive_output(timeout)
            if output["type"] == "websocket.close":
                code: int | None = output.get("code")
                return code

    async def nothing_pending(self) -> bool:
        return bool(await self.ws.receive_nothing(timeout=0.2))


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    """``await connect(user)`` → Client past its hello frame (``client.hello``)."""
    from backend.config.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def open_socket(
        user: User | None = None,
        *,
        token: str | None = None,
        via: str = "header",
        scheme: str = "Bearer",
        query: str = "",
        headers: list[tuple[bytes, bytes]] | None = None,
        expect_hello: bool = True,
    ) -> Client:
        if token is None and user is not None:
            token = await database_sync_to_async(access_token)(user)
        path = "/ws/notifications/" + (f"?{query}" if query else "")
        all_headers = list(headers or [])
        if token is not None and via == "header":
            all_headers.append((b"authorization", f"{scheme} {token}".encode()))
        elif token is not None:
            path += f"{'&' if query else '?'}token={token}"
        communicator = WebsocketCommunicator(application, path, headers=all_headers)
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=WAIT)
        client = Client(communicator)
        client.connected = connected  # type: ignore[attr-defined]
        if connected and expect_hello:
            hello = await client.receive()
            assert hello["type"] == "hello", hello
            client.hello = hello["payload"]  # type: ignore[attr-defined]
        return client

    yield open_socket
    for communicator in opened:
        await communicator.disconnect()
    await Hub.current().stop()
