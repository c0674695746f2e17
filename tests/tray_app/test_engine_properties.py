"""Property: whatever the transport does to live frames, the store ends with exactly what
was sent, and its cursor never passes a gap.

The transport here is scripted, in memory, not a mock of a library: a small server that
keeps the protocol's replay rules (docs/protocol.md, Resume) exactly, while its live path
drops, duplicates and delays (reorders) frames, starts catch-up runs of its own (as the
real server does after a missed doorbell), drops connections, and the client itself is
restarted on the same SQLite file. The real server cannot be made to misbehave on cue;
the engine, session and store under test are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from tray_app.engine import Engine, NotificationAdded
from tray_app.net.api import ApiClient, RefreshLease, Tokens
from tray_app.net.backoff import Backoff
from tray_app.store.db import open_database
from tray_app.store.inbox import Inbox
from tray_app.store.outbox import Outbox

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))


def payload(seq: int) -> dict[str, Any]:
    return {
        "id": 1000 + seq,
        "seq": seq,
        "is_read": False,
        "title": f"n{seq}",
        "message": "",
        "event_type": "announcement",
        "priority": "normal",
        "url": "",
        "created_at": "2026-11-23T10:00:00Z",
        "actor": None,
        "project": None,
        "data": {},
    }


def created(seq: int) -> str:
    return json.dumps({"type": "notification_created", "payload": payload(seq)})


class ScriptedConnection:
    """One socket of the scripted server."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.outgoing: asyncio.Queue[str | None] = asyncio.Queue()
        self.delayed: list[int] = []
        self.closed = False

    async def recv(self) -> str:
        frame = await self.outgoing.get()
        if frame is None:
            raise ConnectionClosedError(Close(1012, "restart"), None)
        return frame

    async def send(self, message: str) -> None:
        if self.closed:
            raise ConnectionClosedError(None, Close(1000, ""))
        request = json.loads(message)
        kind, body = request["type"], request["payload"]
        if kind == "resume":
            self.server.resume(self, body["after_seq"])
        elif kind == "ping":
            self.push(json.dumps({"type": "pong", "payload": {}, "ref": request.get("ref")}))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.drop()

    def push(self, frame: str) -> None:
        if not self.closed:
            self.outgoing.put_nowait(frame)

    def drop(self) -> None:
        if not self.closed:
            self.closed = True
            self.outgoing.put_nowait(None)
            if self in self.server.connections:
                self.server.connections.remove(self)


class ScriptedServer:
    """Keeps every notification; replays from its rows; lossy only on the live path."""

    def __init__(self) -> None:
        self.latest = 0
        self.connections: list[ScriptedConnection] = []
        # While holding, resume requests wait (a busy server, a slow link): runs the
        # server starts on its own can then end before the client's replay begins.
        self.holding = False
        self.held: list[tuple[ScriptedConnection, int]] = []

    def hold(self) -> None:
        self.holding = True

    def answer(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for connection, after in held:
            if not connection.closed:
                self.replay(connection, after)

    def resume(self, connection: ScriptedConnection, after: int) -> None:
        if self.holding:
            self.held.append((connection, after))
        else:
            self.replay(connection, after)

    @contextlib.asynccontextmanager
    async def connect(self, url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
        connection = ScriptedConnection(self)
        self.connections.append(connection)
        connection.push(
            json.dumps(
                {
                    "type": "hello",
                    "payload": {
                        "protocol": 1,
                        "user": {"id": 1, "username": "alice"},
                        "unread_count": 0,
                        "latest_seq": self.latest,
                    },
                }
            )
        )
        # Resume at connect: ``?after_seq=`` is answered after hello like a resume frame.
        _, _, query = url.partition("?after_seq=")
        if query:
            self.resume(connection, int(query))
        try:
            yield connection
        finally:
            connection.drop()

    def replay(self, connection: ScriptedConnection, after: int) -> None:
        if after > self.latest:
            connection.push(
                json.dumps(
                    {"type": "error", "payload": {"code": "cursor_ahead", "message": "reset"}}
                )
            )
            return
        self.run_catch_up(connection, after)

    def run_catch_up(self, connection: ScriptedConnection, after: int) -> None:
        for seq in range(after + 1, self.latest + 1):
            connection.push(created(seq))
        connection.push(
            json.dumps(
                {
                    "type": "caught_up",
                    "payload": {
                        "after_seq": after,
                        "through_seq": self.latest,
                        "replayed": self.latest - after,
                    },
                }
            )
        )

    def publish(self, fate: str) -> None:
        self.latest += 1
        for connection in list(self.connections):
            if fate == "deliver":
                connection.push(created(self.latest))
            elif fate == "duplicate":
                connection.push(created(self.latest))
                connection.push(created(self.latest))
            elif fate == "delay":
                connection.delayed.append(self.latest)
            # "drop": nothing

    def flush_delayed(self) -> None:
        for connection in list(self.connections):
            for seq in reversed(connection.delayed):  # late, and out of order
                connection.push(created(seq))
            connection.delayed.clear()

    def own_catch_up(self, back: int) -> None:
        """A run the server starts by itself, from ``back`` below its latest seq: it may
        begin above what a client has, as after a missed doorbell."""
        for connection in list(self.connections):
            self.run_catch_up(connection, max(0, self.latest - back))

    def disconnect(self) -> None:
        for connection in list(self.connections):
            connection.drop()


class StaticTokens:
    """The session's token source; no REST server in this test."""

    ws_url = "ws://scripted.invalid/ws/notifications/"

    async def access_token(self, *, min_validity: float = 30.0) -> str:
        return "scripted-access"

    async def refresh(self) -> Tokens:
        return Tokens(access="scripted-access", refresh="scripted-refresh")

    def lease_refresh(self, *, min_validity: float | None = 30.0) -> RefreshLease | None:
        return None  # the access token above never runs out


class Client:
    """The real engine on a real SQLite file, restartable."""

    def __init__(self, server: ScriptedServer, path: Path, api: ApiClient) -> None:
        self.server, self.path, self.api = server, path, api
        self.told: list[int] = []
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.engine: Engine | None = None

    def start(self) -> None:
        database = open_database(self.path)
        assert not database.rebuilt
        self.connection = database.connection
        inbox = Inbox(self.connection)
        self.engine = Engine(
            api=self.api,
            inbox=inbox,
            outbox=Outbox(self.connection, inbox),
            tokens=StaticTokens(),
            connect=self.server.connect,
            backoff=Backoff(base=0.001, cap=0.002),
        )
        self.engine.subscribe(self._record)
        self.task = asyncio.get_running_loop().create_task(self.engine.run())

    def _record(self, event: object) -> None:
        if isinstance(event, NotificationAdded):
            self.told.append(event.notification.seq)
        self.changed.set()

    async def until_caught_up(self) -> None:
        async with asyncio.timeout(10):
            while self.cursor() < self.server.latest:
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        assert self.engine is not None
        assert self.task is not None
        await self.engine.stop()
        async with asyncio.timeout(5):
            await self.task
        self.connection.close()

    def stored(self) -> list[int]:
        return [seq for (seq,) in self.connection.execute("SELECT seq FROM notifications")]

    def cursor(self) -> int:
        assert self.engine is not None
        return self.engine.inbox.cursor()

    def check_invariants(self) -> None:
        stored = self.stored()
        assert len(stored) == len(set(stored)), "a seq stored twice"
        cursor = self.cursor()
        assert set(range(1, cursor + 1)) <= set(stored), "the cursor passed a gap"
        assert all(1 <= seq <= self.server.latest for seq in stored), "a seq never sent"
        titles = dict(self.connection.execute("SELECT seq, title FROM notifications"))
        assert all(titles[seq] == f"n{seq}" for seq in stored), "content mixed up"


async def settle() -> None:
    """Let every ready task run until the loop is idle (no timed waits)."""
    for _ in range(50):
        await asyncio.sleep(0)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(["deliver", "drop", "duplicate", "delay"])),
        st.tuples(st.just("flush_delayed"), st.just(0)),
        st.tuples(st.just("own_catch_up"), st.integers(min_value=0, max_value=5)),
        st.tuples(st.just("disconnect"), st.just(0)),
        st.tuples(st.just("hold"), st.just(0)),
        st.tuples(st.just("answer"), st.just(0)),
        st.tuples(st.just("restart_client"), st.just(0)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    min_size=1,
    max_size=40,
)


async def scenario(script: list[tuple[str, Any]], directory: Path) -> None:
    server = ScriptedServer()
    async with ApiClient("http://127.0.0.1:9") as unused_rest:  # never called here
        client = Client(server, directory / "account.sqlite3", unused_rest)
        client.start()
        await settle()
        for action, argument in script:
            match action:
                case "publish":
                    server.publish(argument)
                case "flush_delayed":
                    server.flush_delayed()
                case "own_catch_up":
                    server.own_catch_up(argument)
                case "disconnect":
                    server.disconnect()
                case "hold":
                    server.hold()
                case "answer":
                    server.answer()
                case "restart_client":
                    await client.stop()
                    client.start()
                case "settle":
                    pass
            await settle()
            client.check_invariants()
        # Whatever happened, the next connection catches the client up completely.
        server.answer()
        server.flush_delayed()
        server.disconnect()
        await client.until_caught_up()
        client.check_invariants()
        assert sorted(client.stored()) == list(range(1, server.latest + 1))
        assert client.cursor() == server.latest
        await client.stop()


@settings(
    max_examples=max(10, round(150 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(script=steps)
def test_the_store_always_equals_what_was_sent_and_the_cursor_never_passes_a_gap(script):
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(script, Path(directory)))


def test_the_race_that_once_lost_rows_a_server_run_above_a_queued_resume():
    """Pinned example: the client resumes from 0 while the server, on its own, replays
    from 3 and ends with caught_up(after_seq=3, through_seq=6). Trusting that through_seq
    moved the cursor past 1..3, which then arrived as "duplicates" and were lost."""
    script = [
        ("hold", 0),
        ("publish", "drop"),
        ("publish", "drop"),
        ("publish", "drop"),
        ("disconnect", 0),  # reconnects: hello says 3, the client resumes from 0 (held)
        ("publish", "drop"),
        ("publish", "drop"),
        ("publish", "drop"),
        ("own_catch_up", 3),  # 4..6, caught_up(after_seq=3, through_seq=6)
        ("answer", 0),  # now the replay from 0
    ]
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(script, Path(directory)))
