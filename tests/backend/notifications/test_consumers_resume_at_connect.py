"""Resume at connect: ``/ws/notifications/?after_seq=N`` answers hello, the replay above N
and caught_up, as a ``resume`` frame would, in one database statement per client.

Through Channels' communicator: the real ASGI app, hub and SQLite database in this
process (the statement count is read on the consumers' database thread).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from backend.notifications.hub import Hub
from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.users.models import User
from tests.backend.conftest import WAIT, access_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def alice_with(count: int) -> User:
    user = User.objects.create_user(username="alice", password="pw")
    for n in range(count):
        notification_create(audience=Audience(users=(user.pk,)), title=f"n{n + 1}")
    return user


class Socket:
    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator

    async def receive(self) -> dict[str, Any]:
        output = await self.ws.receive_output(WAIT)
        assert output["type"] == "websocket.send", output
        frame: dict[str, Any] = json.loads(output["text"])
        return frame

    async def until(self, kind: str) -> list[dict[str, Any]]:
        frames = [await self.receive()]
        while frames[-1]["type"] != kind:
            frames.append(await self.receive())
        return frames


@pytest_asyncio.fixture
async def open_socket() -> AsyncIterator[Any]:
    from backend.config.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def open_(user: User, query: str, token: str | None = None) -> Socket:
        token = token or await database_sync_to_async(access_token)(user)
        communicator = WebsocketCommunicator(
            application,
            f"/ws/notifications/?{query}",
            headers=[(b"authorization", f"Bearer {token}".encode())],
        )
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=WAIT)
        assert connected
        return Socket(communicator)

    yield open_
    for communicator in opened:
        await communicator.disconnect()
    await Hub.current().stop()


@pytest_asyncio.fixture
async def statements() -> AsyncIterator[list[str]]:
    """Every statement run on the consumers' (shared) database thread."""
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    await database_sync_to_async(lambda: connection.execute_wrappers.append(record))()
    yield seen
    await database_sync_to_async(lambda: connection.execute_wrappers.remove(record))()


async def test_after_seq_replays_the_missed_rows_then_caught_up(open_socket: Any) -> None:
    alice = await alice_with(30)
    row = await database_sync_to_async(Inbox.objects.get)(user=alice, seq=20)
    await database_sync_to_async(Inbox.objects.filter(pk=row.pk).update)(
        deleted_at="2020-01-01T00:00Z"
    )
    socket = await open_socket(alice, "after_seq=12")
    frames = await socket.until("caught_up")
    assert frames[0]["type"] == "hello"
    assert frames[0]["payload"]["latest_seq"] == 30
    assert [f["payload"]["seq"] for f in frames[1:-1]] == [s for s in range(13, 31) if s != 20]
    assert frames[-1]["payload"] == {"after_seq": 12, "through_seq": 30, "replayed": 17}
    # Then live.
    await database_sync_to_async(notification_create)(
        audience=Audience(users=(alice.pk,)), title="live"
    )
    assert (await socket.receive())["payload"]["seq"] == 31


async def test_a_reconnect_with_after_seq_costs_one_statement(
    open_socket: Any, statements: list[str], settings: Any
) -> None:
    """B5: user, session, inbox state and the replay in one statement (a backlog that
    fits in the first batch; each further batch is one more)."""
    settings.TRAY = {**settings.TRAY, "REPLAY_BATCH": 50}
    alice = await alice_with(30)
    bob = await database_sync_to_async(User.objects.create_user)(username="bob", password="pw")
    await open_socket(bob, "after_seq=0")  # the hub's one-off start-up queries
    for after, replayed in ((12, 18), (30, 0)):
        token = await database_sync_to_async(access_token)(alice)
        statements.clear()
        socket = await open_socket(alice, f"after_seq={after}", token)
        frames = await socket.until("caught_up")
        assert frames[-1]["payload"] == {
            "after_seq": after,
            "through_seq": 30,
            "replayed": replayed,
        }
        assert len(statements) == 1, statements


async def test_a_backlog_over_one_batch_reads_the_rest_after(
    open_socket: Any, settings: Any
) -> None:
    settings.TRAY = {**settings.TRAY, "REPLAY_BATCH": 4}
    alice = await alice_with(11)
    socket = await open_socket(alice, "after_seq=1")
    frames = await socket.until("caught_up")
    assert [f["payload"]["seq"] for f in frames[1:-1]] == list(range(2, 12))
    assert frames[-1]["payload"] == {"after_seq": 1, "through_seq": 11, "replayed": 10}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("after_seq=abc", "invalid_cursor"),
        ("after_seq=-1", "invalid_cursor"),
        ("after_seq=", "invalid_cursor"),
        ("after_seq=%C2%B2", "invalid_cursor"),
        (f"after_seq={2**63}", "invalid_cursor"),
        ("after_seq=1&after_seq=2", "invalid_cursor"),
        ("after_seq=99", "cursor_ahead"),
    ],
)
async def test_a_bad_after_seq_is_an_error_after_hello_and_the_socket_stays(
    open_socket: Any, query: str, code: str
) -> None:
    alice = await alice_with(3)
    socket = await open_socket(alice, query)
    hello, error = await socket.receive(), await socket.receive()
    assert hello["type"] == "hello"
    assert error["type"] == "error"
    assert error["payload"]["code"] == code
    assert error["payload"]["message"]
    # Live as without a cursor, and a resume frame still works.
    await socket.ws.send_to(text_data='{"type":"resume","payload":{"after_seq":1}}')
    frames = await socket.until("caught_up")
    assert [f["payload"]["seq"] for f in frames[:-1]] == [2, 3]


async def test_a_huge_backlog_at_connect_is_paged_over_rest(
    open_socket: Any, settings: Any
) -> None:
    settings.TRAY = {**settings.TRAY, "REPLAY_MAX": 5}
    alice = await alice_with(8)
    socket = await open_socket(alice, "after_seq=1")
    hello, resync = await socket.receive(), await socket.receive()
    assert hello["type"] == "hello"
    assert resync["type"] == "resync_required"
    assert resync["payload"]["latest_seq"] == 8


async def test_after_seq_goes_alongside_a_query_token() -> None:
    """Browsers put the token in the query too: both parameters are read."""
    from backend.config.asgi import application

    alice = await alice_with(4)
    token = await database_sync_to_async(access_token)(alice)
    communicator = WebsocketCommunicator(
        application, f"/ws/notifications/?after_seq=2&token={token}"
    )
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    try:
        frames = await Socket(communicator).until("caught_up")
        assert frames[0]["type"] == "hello"
        assert [f["payload"]["seq"] for f in frames[1:-1]] == [3, 4]
    finally:
        await communicator.disconnect()
        await Hub.current().stop()
