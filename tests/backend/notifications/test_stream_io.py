"""The HTTP stream's I/O (backend/notifications/stream.py) in-process, driven through the
real ASGI application with a hand-made ASGI server: what a real one cannot be made to do
on cue (a client that stops reading, a stop while it is open)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async

from backend.notifications import stream
from backend.notifications.hub import Hub
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.users.models import User
from tests.backend.conftest import WAIT, access_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


class Client:
    """One stream request to the ASGI application; its answer's messages as they come.

    ``reading`` cleared is a client that stops reading: every body write then waits,
    as uvicorn's send waits for a paused transport.
    """

    def __init__(self, token: str, query: str = "") -> None:
        self.scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/stream/",
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        }
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reading = asyncio.Event()
        self.reading.set()
        self.abandoned = asyncio.Event()
        self._gone = asyncio.Event()
        self._requested = False
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            try:
                await self.reading.wait()
            except asyncio.CancelledError:
                self.abandoned.set()  # the server gave up on this write
                raise
        await self.messages.put(message)

    def start(self, app: Callable[..., Awaitable[None]]) -> None:
        self.task = asyncio.ensure_future(app(self.scope, self.receive, self.send))

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """The frames of the events, in order; the last one ends the body."""
        start = await asyncio.wait_for(self.messages.get(), WAIT)
        assert start["status"] == 200, start
        while True:
            message = await asyncio.wait_for(self.messages.get(), WAIT)
            for line in message["body"].decode().split("\n"):
                if line.startswith("data: "):
                    yield json.loads(line.removeprefix("data: "))
            if not message.get("more_body", False):
                return

    def leave(self) -> None:
        self._gone.set()


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Callable[..., Awaitable[None]]]:
    from backend.config.asgi import application

    yield application
    await Hub.current().stop()


async def _user(username: str) -> tuple[User, str]:
    user = await database_sync_to_async(User.objects.create_user)(username=username, password="pw")
    return user, await database_sync_to_async(access_token)(user)


async def test_a_stream_whose_client_stops_reading_ends_with_1013_and_leaves_the_hub(
    app: Callable[..., Awaitable[None]], settings: Any
) -> None:
    settings.TRAY = {**settings.TRAY, "WS_SEND_QUEUE": 5}
    alice, token = await _user("alice")
    client = Client(token)
    client.start(app)
    frames = client.frames()
    assert (await anext(frames))["type"] == "hello"
    hub = Hub.current()
    assert len(hub.sockets_by_user[alice.pk]) == 1
    client.reading.clear()  # the client stops reading; its writes wait
    for n in range(8):
        await database_sync_to_async(notification_create)(
            audience=Audience(users=(alice.pk,)), title=f"n{n}"
        )
    (open_stream,) = hub.sockets_by_user[alice.pk]
    assert isinstance(open_stream, stream.EventStream)
    # Past the queue's limit the stream is closed: the write in flight is abandoned.
    await asyncio.wait_for(client.abandoned.wait(), WAIT)
    assert open_stream.state.close_code == 1013
    assert len(open_stream._out) == 0  # the backlog is released, not kept for a dead reader
    client.reading.set()  # it reads again: what was in flight, then the last event
    received = [frame async for frame in frames]
    assert received[-1]["type"] == "closed"
    assert received[-1]["payload"]["code"] == 1013
    assert client.task is not None
    await asyncio.wait_for(client.task, WAIT)
    assert alice.pk not in hub.sockets_by_user


async def test_a_client_that_leaves_frees_the_stream(
    app: Callable[..., Awaitable[None]],
) -> None:
    alice, token = await _user("alice")
    client = Client(token)
    client.start(app)
    frames = client.frames()
    assert (await anext(frames))["type"] == "hello"
    hub = Hub.current()
    assert alice.pk in hub.sockets_by_user
    assert (await hub.presence.states([alice.pk]))[alice.pk].online
    client.leave()
    assert client.task is not None
    await asyncio.wait_for(client.task, WAIT)
    assert alice.pk not in hub.sockets_by_user
    assert not (await hub.presence.states([alice.pk]))[alice.pk].online
    assert not stream._open


async def test_end_all_ends_every_open_stream_with_1012(
    app: Callable[..., Awaitable[None]],
) -> None:
    clients = []
    for name in ("alice", "bob"):
        _user_row, token = await _user(name)
        client = Client(token, query="after_seq=0")
        client.start(app)
        frames = client.frames()
        assert (await anext(frames))["type"] == "hello"
        clients.append((client, frames))
    stream.end_all()
    for client, frames in clients:
        received = [frame async for frame in frames]
        assert received[-1] == {
            "type": "closed",
            "payload": {
                "code": 1012,
                "reason": "server_restart",
                "message": "The server is restarting; reconnect.",
            },
        }
        assert client.task is not None
        await asyncio.wait_for(client.task, WAIT)
