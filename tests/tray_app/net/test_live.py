"""The socket session against the real server, and against scripted WebSocket servers
(real sockets on port 0) for the failures a real server does not produce on demand:
a server that accepts and closes at once, one that refuses the handshake, one that
sends garbage."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tests.fixtures.http import CountingTransport
from tests.fixtures.services import RunningServer
from tests.tray_app.net.scripted_servers import ScriptedRequest, ScriptedServer, http_response
from tray_app.net import live, protocol
from tray_app.net.api import REFRESH_PATH, ApiClient, Tokens
from tray_app.net.backoff import Backoff
from tray_app.net.connection_state import ConnectionState, StateChange
from tray_app.net.errors import LoginRequired, NetError, RequestRejected
from tray_app.net.live import (
    FRAMES_PER_TURN,
    PING_INTERVAL,
    PONG_TIMEOUT,
    Connector,
    LiveSession,
    websocket_connector,
)
from tray_app.net.transport import Transport

pytestmark = pytest.mark.asyncio

WAIT = 15.0


class Recorder:
    """A SessionHandler that keeps what it was given."""

    def __init__(self, cursor: int = 0) -> None:
        self.position = cursor
        self.frames: list[tuple[protocol.ServerFrame, bool]] = []
        self.states: list[StateChange] = []
        self.changed = asyncio.Event()

    def cursor(self) -> int:
        return self.position

    async def handle_frame(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
        self.frames.append((frame, replaying))
        if isinstance(frame, protocol.NotificationCreated) and frame.seq == self.position + 1:
            self.position = frame.seq
        self.changed.set()

    def handle_state(self, change: StateChange) -> None:
        self.states.append(change)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def state(self) -> ConnectionState:
        return self.states[-1].state if self.states else ConnectionState.STOPPED

    def of(self, kind: type[Any]) -> list[Any]:
        return [frame for frame, _ in self.frames if isinstance(frame, kind)]


def hello(latest_seq: int = 0) -> str:
    return json.dumps(
        {
            "type": "hello",
            "payload": {
                "protocol": 1,
                "user": {"id": 1, "username": "alice"},
                "unread_count": 0,
                "latest_seq": latest_seq,
            },
        }
    )


@contextlib.asynccontextmanager
async def scripted_server(
    handler: Callable[[ServerConnection], Awaitable[None]],
    *,
    process_request: Callable[[ServerConnection, Request], Response | None] | None = None,
) -> AsyncIterator[tuple[Connector, list[float]]]:
    """A real WebSocket server on port 0 running ``handler`` for each connection;
    yields a connector that dials it and the times of every handshake attempt."""
    attempts: list[float] = []

    def record(connection: ServerConnection, request: Request) -> Response | None:
        attempts.append(time.monotonic())
        return process_request(connection, request) if process_request else None

    async with serve(handler, "127.0.0.1", 0, process_request=record) as server:
        port = server.sockets[0].getsockname()[1]
        real = websocket_connector(Transport(proxy="none"))

        def connect(url: str, headers: dict[str, str]) -> Any:
            _, query = url.split("?", 1) if "?" in url else (url, "")
            return real(f"ws://127.0.0.1:{port}/ws/notifications/?{query}", headers)

        yield connect, attempts


@pytest_asyncio.fixture
async def alice(demo_server: RunningServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(demo_server.url) as api:
        await api.login("alice", "demo")
        yield api


async def run_session(session: LiveSession) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(session.run())


async def stop(session: LiveSession, task: asyncio.Task[None]) -> None:
    await session.stop()
    async with asyncio.timeout(WAIT):
        await task


async def test_connects_with_a_bearer_header_and_resumes_after_the_cursor(
    demo_server: RunningServer, alice: ApiClient
):
    # Demo data gave alice notifications already: a cold start with cursor 0 must replay them.
    recorder = Recorder(cursor=0)
    session = LiveSession(alice, recorder, connect=websocket_connector(Transport(proxy="none")))
    task = await run_session(session)
    await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
    first_hello = recorder.of(protocol.Hello)[0]
    assert first_hello.user["username"] == "alice"
    assert first_hello.latest_seq > 0
    replayed = [
        f for f, replaying in recorder.frames if isinstance(f, protocol.NotificationCreated)
    ]
    assert [f.seq for f in replayed] == list(range(1, first_hello.latest_seq + 1))
    assert all(
        replaying for f, replaying in recorder.frames if isinstance(f, protocol.NotificationCreated)
    )
    assert recorder.state() is ConnectionState.CONNECTED

    # Live traffic after the catch-up is not marked as replay.
    result = await asyncio.to_thread(
        demo_server.cli, "notify", "--user", "alice", "--title", "Live one"
    )
    assert result.returncode == 0, result.stderr
    await recorder.until(lambda: recorder.position == first_hello.latest_seq + 1)
    live = [
        (f, replaying)
        for f, replaying in recorder.frames
        if isinstance(f, protocol.NotificationCreated) and f.seq > first_hello.latest_seq
    ]
    assert [(f.notification.title, replaying) for f, replaying in live] == [("Live one", False)]
    # The server's new unread count follows it (a bell that only listens to it is right).
    await recorder.until(lambda: isinstance(recorder.frames[-1][0], protocol.UnreadCount))
    assert recorder.frames[-1][0] == protocol.UnreadCount(unread_count=first_hello.unread_count + 1)
    await stop(session, task)
    assert recorder.state() is ConnectionState.STOPPED


async def test_a_server_restart_is_followed_by_a_reconnect_and_resume(server_factory):
    """Closes with 1012 reconnect within a second and resume from where we were."""
    port = _free_port()
    server = server_factory("--port", str(port), demo=True)
    async with ApiClient(server.url) as api:
        await api.login("alice", "demo")
        recorder = Recorder()
        session = LiveSession(api, recorder, connect=websocket_connector(Transport(proxy="none")))
        task = await run_session(session)
        await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
        before = recorder.position
        await asyncio.to_thread(server.stop)
        await recorder.until(lambda: recorder.state() is ConnectionState.RECONNECTING)
        restarted = server_factory("--port", str(port))
        await asyncio.to_thread(restarted.cli, "notify", "--user", "alice", "--title", "while away")
        await recorder.until(lambda: recorder.position == before + 1, timeout=30)
        assert len(recorder.of(protocol.Hello)) == 2
        await stop(session, task)


async def test_a_server_that_accepts_then_closes_is_retried_within_the_backoff_envelope(
    alice: ApiClient,
):
    """The reconnect-storm trap: every handshake succeeds, every connection dies at once.
    Over 30 s the attempts follow the backoff's delays exactly; they never reset."""

    async def accept_then_close(connection: ServerConnection) -> None:
        await connection.close()

    window = 30.0 * min(1.0, float(os.environ.get("TRAY_TEST_SCALE", "1")))
    seed = 1234
    expected = Backoff(rng=random.Random(seed))
    starts = [0.0]
    while starts[-1] < window:
        starts.append(starts[-1] + expected.next_delay())
    expected_attempts = sum(1 for start in starts if start < window)

    async with scripted_server(accept_then_close) as (connect, attempts):
        recorder = Recorder()
        session = LiveSession(
            alice, recorder, connect=connect, backoff=Backoff(rng=random.Random(seed))
        )
        task = await run_session(session)
        began = time.monotonic()
        await asyncio.sleep(window)  # the window is the measurement itself, not a wait
        await stop(session, task)
    offsets = [t - began for t in attempts if t - began < window]
    # Each attempt's delay is the policy's draw (plus a few ms of handshake work).
    assert abs(len(offsets) - expected_attempts) <= 1, (offsets, starts)
    for actual, planned in zip(offsets, starts, strict=False):
        assert actual >= planned - 0.05
        assert actual <= planned + 0.5 * (1 + offsets.index(actual))
    assert len(offsets) < 15  # a storm would be thousands
    assert all(s.state is not ConnectionState.LOGIN_REQUIRED for s in recorder.states)


async def test_http_403_at_the_handshake_is_reported_and_retried_slowly(alice: ApiClient):
    async def never(connection: ServerConnection) -> None:
        raise AssertionError("the handshake should have been refused")

    def forbid(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "Forbidden by proxy\n")

    async with scripted_server(never, process_request=forbid) as (connect, attempts):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.RECONNECTING)
        change = recorder.states[-1]
        assert change.error is not None
        assert change.error.code == "handshake_forbidden"
        assert "403" in change.error.user_message
        assert change.next_attempt_at is not None
        assert change.next_attempt_at - time.time() >= 55  # the slowest pace, no storm
        assert len(attempts) == 1
        await stop(session, task)


async def test_close_4003_stops_and_asks_the_user(alice: ApiClient):
    async def disable(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.close(4003, "account disabled")

    async with scripted_server(disable) as (connect, attempts):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        async with asyncio.timeout(WAIT):
            await session.run()  # returns by itself: no retry loop
        assert recorder.state() is ConnectionState.LOGIN_REQUIRED
        assert recorder.states[-1].error is not None
        assert recorder.states[-1].error.code == "account_disabled"
        assert len(attempts) == 1


async def test_malformed_and_unknown_frames_are_skipped_not_fatal(
    alice: ApiClient, caplog: pytest.LogCaptureFixture
):
    secret_title = "SECRET-CONTENT-123"
    delivered = asyncio.Event()

    async def garbage_then_good(connection: ServerConnection) -> None:
        await connection.send(hello())
        await connection.send("not json at all")
        await connection.send(b"\x00\x01binary")
        await connection.send(json.dumps({"type": "from_the_future", "payload": {}}))
        await connection.send(
            json.dumps(
                {"type": "notification_created", "payload": {"seq": "1", "title": secret_title}}
            )
        )
        await connection.send(
            json.dumps(
                {"type": "notification_created", "payload": {"seq": 1, "id": 5, "title": "ok"}}
            )
        )
        await delivered.wait()

    async with scripted_server(garbage_then_good) as (connect, _):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: recorder.position == 1)
        assert [f.id for f in recorder.of(protocol.NotificationCreated)] == [5]
        assert recorder.state() is ConnectionState.CONNECTED
        delivered.set()
        await stop(session, task)
    skipped = [r.getMessage() for r in caplog.records if "skipped a server frame" in r.getMessage()]
    assert len(skipped) == 4
    assert not any(secret_title in message for message in skipped)


async def test_a_buffered_replay_is_handled_a_few_frames_per_loop_turn(alice: ApiClient):
    """websockets' recv() returns at once while frames are buffered; the receive loop must
    still hand the event loop back every FRAMES_PER_TURN frames, or the UI sharing it
    freezes for the whole replay. A callback that re-arms itself with call_soon runs once
    per loop turn: it numbers the turns, and every frame is stamped with its turn."""
    count = 600
    sent = asyncio.Event()

    async def replay_in_one_go(connection: ServerConnection) -> None:
        assert connection.request is not None
        assert connection.request.path.endswith("?after_seq=0")  # the resume, at connect
        await connection.send(hello(latest_seq=count))
        for seq in range(1, count + 1):
            frame = {"type": "notification_created", "payload": {"seq": seq, "id": seq}}
            await connection.send(json.dumps(frame))
        await connection.send(
            json.dumps(
                {
                    "type": "caught_up",
                    "payload": {"after_seq": 0, "through_seq": count, "replayed": count},
                }
            )
        )
        sent.set()
        await connection.wait_closed()

    class Stamping(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.turn_of_frame: list[int] = []

        async def handle_frame(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
            if isinstance(frame, protocol.NotificationCreated):
                if frame.seq == 1:
                    # Hold the first frame until the server has written the whole replay,
                    # so the rest reaches the client in big buffered reads.
                    await sent.wait()
                self.turn_of_frame.append(turns[0])
            await super().handle_frame(frame, replaying=replaying)

    loop = asyncio.get_running_loop()
    turns = [0]

    def probe() -> None:
        turns[0] += 1
        armed[0] = loop.call_soon(probe)

    armed = [loop.call_soon(probe)]
    try:
        async with scripted_server(replay_in_one_go) as (connect, _):
            recorder = Stamping()
            session = LiveSession(alice, recorder, connect=connect)
            task = await run_session(session)
            await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
            await stop(session, task)
    finally:
        armed[0].cancel()
    assert [f.seq for f in recorder.of(protocol.NotificationCreated)] == list(range(1, count + 1))
    frames_per_turn = collections.Counter(recorder.turn_of_frame)
    assert max(frames_per_turn.values()) <= FRAMES_PER_TURN, frames_per_turn.most_common(3)


async def test_a_frozen_server_is_noticed_by_the_heartbeat(
    demo_server: RunningServer, alice: ApiClient
):
    """SIGSTOP: the kernel keeps the TCP connection up, the server answers nothing."""
    assert PING_INTERVAL + PONG_TIMEOUT < 30  # the product's promise, with its own timings
    recorder = Recorder()
    session = LiveSession(
        alice,
        recorder,
        connect=websocket_connector(Transport(proxy="none")),
        ping_interval=0.5,
        pong_timeout=1.0,
    )
    task = await run_session(session)
    await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
    os.kill(demo_server.pid, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        await recorder.until(lambda: recorder.state() is ConnectionState.RECONNECTING)
        assert time.monotonic() - frozen_at < 0.5 + 1.0 + 1.0
    finally:
        os.kill(demo_server.pid, signal.SIGCONT)
    # Thawed, it is reachable again and the session comes back on its own.
    session.wake()
    await recorder.until(lambda: len(recorder.of(protocol.Hello)) == 2, timeout=30)
    await stop(session, task)


async def test_wake_reconnects_at_once_instead_of_waiting_out_the_backoff(alice: ApiClient):
    connections = 0

    async def close_first(connection: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await connection.send(hello())
        if connections == 1:
            await connection.close(1011)
            return
        await connection.wait_closed()  # stay open

    async with scripted_server(close_first) as (connect, attempts):
        recorder = Recorder()
        # A policy whose next delay is a minute: only wake() can bring it back soon.
        session = LiveSession(
            alice, recorder, connect=connect, backoff=Backoff(base=60, cap=60, rng=_MaxRandom())
        )
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.RECONNECTING)
        assert recorder.states[-1].next_attempt_at is not None
        assert recorder.states[-1].next_attempt_at - time.time() > 50
        session.wake()
        await recorder.until(lambda: len(recorder.of(protocol.Hello)) == 2, timeout=5)
        assert len(attempts) == 2
        await stop(session, task)


async def test_close_4001_refreshes_the_token_and_reconnects(alice: ApiClient):
    seen_tokens: list[str] = []

    async def expire_first(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen_tokens.append(connection.request.headers["Authorization"])
        if len(seen_tokens) == 1:
            await connection.close(4001, "token expired")
            return
        await connection.send(hello())
        await connection.wait_closed()

    async with scripted_server(expire_first) as (connect, attempts):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: len(recorder.of(protocol.Hello)) == 1)
        assert len(attempts) == 2
        assert seen_tokens[0] != seen_tokens[1]  # refreshed in between
        assert recorder.state() is ConnectionState.CONNECTED
        await stop(session, task)


async def test_login_required_when_the_refresh_is_rejected_then_no_more_attempts(
    server_factory,
):
    """Short-lived tokens make the session refresh every second; once the refresh token
    is revoked the session ends in LOGIN_REQUIRED and makes zero further attempts."""
    server = server_factory(
        demo=True,
        env={"TRAY_ACCESS_TOKEN_MINUTES": "0.05", "TRAY_TOKEN_SWEEP_INTERVAL": "0.2"},
    )
    async with ApiClient(server.url) as api:
        await api.login("alice", "demo")
        recorder = Recorder()
        session = LiveSession(api, recorder, connect=websocket_connector(Transport(proxy="none")))
        task = await run_session(session)
        await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
        # Revoke the session's refresh token behind its back (an admin ended the session).
        # It rotates every second, so revoke whichever one is current until it notices.
        async with asyncio.timeout(WAIT), ApiClient(server.url) as other:
            while recorder.state() is not ConnectionState.LOGIN_REQUIRED:
                if api.tokens is not None:
                    other.restore(api.tokens.refresh)
                    await other.logout()
                with contextlib.suppress(TimeoutError):
                    await recorder.until(
                        lambda: recorder.state() is ConnectionState.LOGIN_REQUIRED, timeout=0.5
                    )
        async with asyncio.timeout(WAIT):
            await task  # run() ended by itself
        attempts = session.attempts
        assert recorder.states[-1].error is not None
        assert recorder.states[-1].error.code == "login_required"
        assert api.tokens is None
        await asyncio.sleep(2)  # a window in which a retry loop would have tried again
    assert session.attempts == attempts


def _free_port() -> int:
    from tests.fixtures.services import free_port

    return free_port()


class _MaxRandom(random.Random):
    """Jitter that always draws the top of the window (the worst case)."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_the_cursor_goes_with_the_handshake_and_the_replay_follows_hello(
    alice: ApiClient,
):
    """Resume at connect: ``?after_seq=<cursor>``, no resume frame; the frames up to
    caught_up are the replay, the ones after it live."""
    paths: list[str] = []
    received: list[dict[str, Any]] = []

    async def server(connection: ServerConnection) -> None:
        assert connection.request is not None
        paths.append(connection.request.path)
        await connection.send(hello(latest_seq=9))
        for seq in (8, 9):
            await connection.send(
                json.dumps({"type": "notification_created", "payload": {"seq": seq, "id": seq}})
            )
        done = {"after_seq": 7, "through_seq": 9, "replayed": 2}
        await connection.send(json.dumps({"type": "caught_up", "payload": done}))
        live = {"type": "notification_created", "payload": {"seq": 10, "id": 10}}
        await connection.send(json.dumps(live))
        with contextlib.suppress(Exception):
            async for message in connection:
                received.append(json.loads(message))

    async with scripted_server(server) as (connect, _):
        recorder = Recorder(cursor=7)
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: recorder.position == 10)
        await stop(session, task)
    assert paths == ["/ws/notifications/?after_seq=7"]
    notes = [(f.seq, replaying) for f, replaying in recorder.frames if hasattr(f, "seq")]
    assert notes == [(8, True), (9, True), (10, False)]
    assert not [frame for frame in received if frame["type"] == "resume"]


async def test_a_refused_resume_at_connect_ends_the_replay_so_a_resume_frame_can_follow(
    alice: ApiClient,
):
    """``cursor_ahead`` (the server's data was reset) comes without a ref right after
    hello; the engine then resets and resumes from 0 with a resume frame."""
    resumes: list[dict[str, Any]] = []
    got_resume = asyncio.Event()

    async def server(connection: ServerConnection) -> None:
        await connection.send(hello(latest_seq=2))
        error = {"code": "cursor_ahead", "message": "after_seq 5 is beyond the latest seq 2"}
        await connection.send(json.dumps({"type": "error", "payload": error}))
        async for message in connection:
            frame = json.loads(message)
            if frame["type"] == "resume":
                resumes.append(frame)
                got_resume.set()

    async with scripted_server(server) as (connect, _):
        recorder = Recorder(cursor=5)
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: bool(recorder.of(protocol.ServerErrorFrame)))
        assert not session.replaying
        recorder.position = 0  # what the engine does on cursor_ahead
        session.request_resume()
        async with asyncio.timeout(WAIT):
            await got_resume.wait()
        await stop(session, task)
    assert resumes[0]["payload"] == {"after_seq": 0}


async def test_presence_refused_while_the_server_cannot_reach_redis_is_asked_again(
    alice: ApiClient, monkeypatch: pytest.MonkeyPatch
):
    """``presence_unavailable`` (the server's Redis is away) answers the subscription and
    the status: both are sent again a little later, once, on the same socket."""
    monkeypatch.setattr(live, "PRESENCE_RETRY_S", 0.2)
    asked: list[str] = []

    async def server(connection: ServerConnection) -> None:
        await connection.send(hello())
        async for message in connection:
            frame = json.loads(message)
            asked.append(frame["type"])
            if frame["type"] == "subscribe_presence" and asked.count("subscribe_presence") == 1:
                error = {"code": "presence_unavailable", "message": "try again"}
                await connection.send(json.dumps({"type": "error", "payload": error}))
            elif frame["type"] == "subscribe_presence":
                snapshot = {"project_id": 3, "members": []}
                await connection.send(
                    json.dumps({"type": "presence_snapshot", "payload": snapshot})
                )
            elif frame["type"] == "set_status" and asked.count("set_status") == 1:
                error = {"code": "presence_unavailable", "message": "saved; try again"}
                await connection.send(json.dumps({"type": "error", "payload": error}))
            elif frame["type"] == "set_status":
                ack = {"for": "set_status", "status": "away"}
                await connection.send(json.dumps({"type": "ack", "payload": ack}))

    async with scripted_server(server) as (connect, attempts):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        task = await run_session(session)
        await recorder.until(lambda: bool(recorder.of(protocol.Hello)))
        await session.subscribe_presence(3)
        await session.set_status("away")
        await recorder.until(lambda: bool(recorder.of(protocol.PresenceSnapshot)))
        await recorder.until(lambda: bool(recorder.of(protocol.Ack)))
        await stop(session, task)
    assert asked == ["subscribe_presence", "set_status", "subscribe_presence", "set_status"]
    assert len(recorder.of(protocol.ServerErrorFrame)) == 2  # handed on, as any error
    assert len(attempts) == 1  # no reconnect


# --- the refresh token on the socket (a cold start makes no REST call) ------------------


def _jwt_expiring_in(seconds: float) -> str:
    now = int(time.time())
    claims = json.dumps({"iat": now, "exp": int(now + seconds)}).encode()
    return (
        "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(claims).rstrip(b"=").decode() + ".c2ln"
    )


def hello_with_tokens(access: str, refresh: str) -> str:
    frame = json.loads(hello())
    frame["payload"]["tokens"] = {"access": access, "refresh": refresh}
    frame["payload"]["token_expires_at"] = json.loads(
        base64.urlsafe_b64decode(access.split(".")[1] + "==")
    )["exp"]
    return json.dumps(frame)


class TokenLog:
    def __init__(self) -> None:
        self.calls: list[Tokens | None] = []

    def __call__(self, tokens: Tokens | None) -> None:
        self.calls.append(tokens)


def _authorization(connection: ServerConnection) -> str:
    assert connection.request is not None
    return connection.request.headers["Authorization"]


def _rest_refresh(expected: str, access: str) -> Callable[[ScriptedRequest], bytes]:
    """A REST server that answers only ``POST /api/auth/token/refresh/`` with ``expected``,
    with ``access`` and the refresh token "rest.refresh"."""

    def answer(request: ScriptedRequest) -> bytes:
        assert request.target == REFRESH_PATH
        assert json.loads(request.body) == {"refresh": expected}
        body = json.dumps({"access": access, "refresh": "rest.refresh"})
        return http_response(200, body, content_type="application/json")

    return answer


def restored(
    api: ApiClient, refresh: str, connect: Connector, **options: Any
) -> tuple[Recorder, LiveSession]:
    """A session of ``api`` resumed from the stored ``refresh`` token (a returning start)."""
    api.restore(refresh)
    recorder = Recorder()
    return recorder, LiveSession(api, recorder, connect=connect, **options)


# Nothing listens there: a REST request the session should not make would fail.
_NO_REST = "http://127.0.0.1:9"


async def test_a_cold_start_connects_with_the_refresh_token_and_keeps_the_new_pair():
    access = _jwt_expiring_in(600)
    headers: list[str] = []

    async def grant(connection: ServerConnection) -> None:
        headers.append(_authorization(connection))
        await connection.send(hello_with_tokens(access, "rotated.refresh"))
        await connection.wait_closed()

    log = TokenLog()
    async with (
        scripted_server(grant) as (connect, _),
        ApiClient(_NO_REST, on_tokens_changed=log) as api,
    ):
        recorder, session = restored(api, "stored.refresh", connect)
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.CONNECTED)
        assert headers == ["Refresh stored.refresh"]
        assert api.tokens is not None
        assert api.tokens.refresh == "rotated.refresh"
        assert api.tokens.access == access
        assert log.calls == [api.tokens]  # stored (the keyring) once
        assert await api.access_token() == access  # REST calls use it: no refresh of their own
        await stop(session, task)
    assert session.attempts == 1


@pytest.mark.parametrize(
    ("code", "close", "error_code"),
    [("token_invalid", 4001, "login_required"), ("account_disabled", 4003, "account_disabled")],
)
async def test_a_refresh_token_refused_at_the_handshake_ends_the_session(
    code: str, close: int, error_code: str
):
    async def refuse(connection: ServerConnection) -> None:
        message = {"type": "error", "payload": {"code": code, "message": "Log in again."}}
        await connection.send(json.dumps(message))
        await connection.close(close, code)

    log = TokenLog()
    async with (
        scripted_server(refuse) as (connect, _),
        ApiClient(_NO_REST, on_tokens_changed=log) as api,
    ):
        recorder, session = restored(api, "spent.refresh", connect)
        task = await run_session(session)
        async with asyncio.timeout(WAIT):
            await task  # run() ended by itself: no further attempt
    assert recorder.state() is ConnectionState.LOGIN_REQUIRED
    assert recorder.states[-1].error is not None
    assert recorder.states[-1].error.code == error_code
    assert api.tokens is None
    assert log.calls == [None]
    assert session.attempts == 1


async def test_a_socket_lost_before_hello_keeps_the_refresh_token_for_the_next_try():
    access = _jwt_expiring_in(600)
    headers: list[str] = []

    async def lose_the_first(connection: ServerConnection) -> None:
        headers.append(_authorization(connection))
        if len(headers) == 1:
            await connection.close(1011, "server error")
            return
        await connection.send(hello_with_tokens(access, "rotated.refresh"))
        await connection.wait_closed()

    async with scripted_server(lose_the_first) as (connect, _), ApiClient(_NO_REST) as api:
        recorder, session = restored(api, "stored.refresh", connect, backoff=Backoff(base=0.05))
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.CONNECTED)
        await stop(session, task)
    assert headers == ["Refresh stored.refresh", "Refresh stored.refresh"]
    assert api.tokens is not None
    assert api.tokens.refresh == "rotated.refresh"


async def test_a_server_that_takes_no_refresh_token_gets_a_rest_refresh_then_the_access_token():
    """An older server looks for an access token (token_missing): the refresh token was
    not spent, so it is refreshed over REST once and the socket uses access tokens."""
    access = _jwt_expiring_in(600)
    headers: list[str] = []

    async def older_server(connection: ServerConnection) -> None:
        headers.append(_authorization(connection))
        if not headers[-1].startswith("Bearer "):
            missing = {
                "type": "error",
                "payload": {"code": "token_missing", "message": "No token."},
            }
            await connection.send(json.dumps(missing))
            await connection.close(4001, "token_missing")
            return
        await connection.send(hello())
        await connection.wait_closed()

    async with (
        scripted_server(older_server) as (connect, _),
        ScriptedServer(_rest_refresh("stored.refresh", access)) as rest_server,
        ApiClient(rest_server.url) as api,
    ):
        recorder, session = restored(api, "stored.refresh", connect, backoff=Backoff(base=0.05))
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.CONNECTED)
        await stop(session, task)
        assert [request.target for request in rest_server.requests] == [REFRESH_PATH]
    assert headers == ["Refresh stored.refresh", f"Bearer {access}"]
    assert api.tokens is not None
    assert api.tokens.refresh == "rest.refresh"


async def test_the_access_token_is_renewed_in_band_with_the_refresh_token():
    """hello's token runs out in RENEW_MARGIN + 1 s: the session sends a refresh frame
    on the same socket, and the ack's pair becomes the session's (no REST, no reconnect)."""
    first, second = _jwt_expiring_in(live.RENEW_MARGIN + 1), _jwt_expiring_in(600)
    refreshes: list[dict[str, Any]] = []

    async def renew(connection: ServerConnection) -> None:
        await connection.send(hello_with_tokens(first, "second.refresh"))
        async for raw in connection:
            frame = json.loads(raw)
            if frame["type"] != "refresh":
                continue
            refreshes.append(frame)
            tokens = {"access": second, "refresh": "third.refresh"}
            ack = {"for": "refresh", "token_expires_at": int(time.time()) + 600, "tokens": tokens}
            await connection.send(json.dumps({"type": "ack", "payload": ack, "ref": frame["ref"]}))

    log = TokenLog()
    async with (
        scripted_server(renew) as (connect, _),
        ApiClient(_NO_REST, on_tokens_changed=log) as api,
    ):
        recorder, session = restored(api, "first.refresh", connect)
        task = await run_session(session)
        await recorder.until(lambda: len(log.calls) == 2)
        assert [frame["payload"] for frame in refreshes] == [{"token": "second.refresh"}]
        assert api.tokens is not None
        assert api.tokens.refresh == "third.refresh"
        assert api.tokens.access == second
        assert recorder.state() is ConnectionState.CONNECTED
        await stop(session, task)
    assert session.attempts == 1


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"code": "token_invalid", "message": "Your session has ended."}, "login_required"),
        ({"code": "unknown_type", "message": "Unknown frame type."}, "rest"),
    ],
)
async def test_a_refused_or_unknown_refresh_frame(answer: dict[str, str], outcome: str):
    """A refused token ends the session; a server that does not know the frame (older)
    has not spent it, so the session renews over REST and authenticates in band."""
    first, rest_access = _jwt_expiring_in(live.RENEW_MARGIN + 1), _jwt_expiring_in(600)
    received: list[str] = []
    authenticated = asyncio.Event()

    async def server(connection: ServerConnection) -> None:
        await connection.send(hello_with_tokens(first, "second.refresh"))
        async for raw in connection:
            frame = json.loads(raw)
            received.append(frame["type"])
            if frame["type"] == "authenticate":
                authenticated.set()
            if frame["type"] == "refresh":
                error = {"type": "error", "payload": answer, "ref": frame["ref"]}
                await connection.send(json.dumps(error))

    async with (
        scripted_server(server) as (connect, _),
        ScriptedServer(_rest_refresh("second.refresh", rest_access)) as rest_server,
        ApiClient(rest_server.url) as api,
    ):
        recorder, session = restored(api, "first.refresh", connect)
        task = await run_session(session)
        if outcome == "login_required":
            async with asyncio.timeout(WAIT):
                await task
            assert recorder.state() is ConnectionState.LOGIN_REQUIRED
            assert api.tokens is None
            assert rest_server.requests == []
        else:
            async with asyncio.timeout(WAIT):
                await authenticated.wait()
            assert api.tokens is not None
            assert api.tokens.refresh == "rest.refresh"
            assert [request.target for request in rest_server.requests] == [REFRESH_PATH]
            assert recorder.state() is ConnectionState.CONNECTED
            await stop(session, task)
    assert received[0] == "refresh"
    assert session.attempts == 1


async def test_a_returning_start_on_the_real_server_makes_no_rest_call(demo_server: RunningServer):
    """The stored refresh token opens the socket; hello's pair is the session's, and the
    token it replaced is spent: used again, it ends the session (and this socket)."""
    async with ApiClient(demo_server.url) as seed_client:
        seed = await seed_client.login("alice", "demo")
    rest = CountingTransport()
    log = TokenLog()
    async with ApiClient(demo_server.url, http_transport=rest, on_tokens_changed=log) as api:
        recorder, session = restored(
            api, seed.refresh, websocket_connector(Transport(proxy="none"))
        )
        task = await run_session(session)
        await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)))
        assert rest.paths == []
        assert api.tokens is not None
        assert api.tokens.refresh != seed.refresh
        assert log.calls == [api.tokens]
        assert (await api.me())["username"] == "alice"
        assert rest.paths == ["/api/me"]  # the socket's access token: no refresh first
        projects = await session.list_projects()  # on the socket, as /api/me lists them
        assert sorted(project["title"] for project in projects) == [
            "Mobile App",
            "Website Redesign",
        ]
        assert rest.paths == ["/api/me"]

        async with ApiClient(demo_server.url) as thief:
            thief.restore(seed.refresh)
            with pytest.raises(LoginRequired):
                await thief.refresh()
        await recorder.until(lambda: recorder.state() is ConnectionState.LOGIN_REQUIRED)
        async with asyncio.timeout(WAIT):
            await task
    assert session.attempts <= 2  # the close, then at most one refused reconnect


async def test_short_lived_tokens_are_renewed_in_band_on_the_real_server(server_factory):
    server = server_factory(demo=True, env={"TRAY_ACCESS_TOKEN_MINUTES": "0.6"})
    rest = CountingTransport()
    renewed = asyncio.Event()
    pairs: list[Tokens | None] = []

    def on_tokens_changed(tokens: Tokens | None) -> None:
        pairs.append(tokens)
        if len(pairs) >= 3:
            renewed.set()

    async with ApiClient(server.url) as seed_client:
        seed = await seed_client.login("alice", "demo")
    async with ApiClient(
        server.url, http_transport=rest, on_tokens_changed=on_tokens_changed
    ) as api:
        recorder, session = restored(
            api, seed.refresh, websocket_connector(Transport(proxy="none"))
        )
        task = await run_session(session)
        async with asyncio.timeout(4 * 36 + WAIT):
            await renewed.wait()  # hello's pair, then two renewals on the same socket
        assert recorder.state() is ConnectionState.CONNECTED
        assert session.attempts == 1
        assert rest.paths == []
        assert len({pair.refresh for pair in pairs if pair is not None}) == len(pairs)
        await stop(session, task)


async def test_inbox_changes_on_the_socket_say_what_the_server_answered(alice: ApiClient):
    answers = {
        "mark_read": {
            "type": "ack",
            "payload": {"for": "mark_read", "changed": [1], "not_found": [9], "unread_count": 3},
        },
        "mark_all_read": {
            "type": "ack",
            "payload": {"for": "mark_all_read", "changed": [2], "unread_count": 0},
        },
        "delete": {"type": "error", "payload": {"code": "invalid_ids", "message": "Bad ids."}},
        "mark_unread": {
            "type": "error",
            "payload": {"code": "server_error", "message": "Try again."},
        },
    }

    async def server(connection: ServerConnection) -> None:
        await connection.send(hello())
        async for raw in connection:
            frame = json.loads(raw)
            if frame["type"] in answers:
                await connection.send(json.dumps({**answers[frame["type"]], "ref": frame["ref"]}))

    async with scripted_server(server) as (connect, _):
        recorder = Recorder()
        session = LiveSession(alice, recorder, connect=connect)
        with pytest.raises(NetError, match="not connected"):
            await session.send_change("mark_read", {"ids": [1]})
        task = await run_session(session)
        await recorder.until(lambda: recorder.state() is ConnectionState.CONNECTED)
        done = await session.send_change("mark_read", {"ids": [1, 9]})
        assert (done.changed, done.not_found, done.unread_count) == ([1], [9], 3)
        everything = await session.send_change("mark_all_read", {})
        assert (everything.changed, everything.not_found, everything.unread_count) == ([2], [], 0)
        with pytest.raises(RequestRejected) as refused:
            await session.send_change("delete", {"ids": [-1]})
        assert refused.value.code == "invalid_ids"
        with pytest.raises(NetError) as later:
            await session.send_change("mark_unread", {"ids": [1]})
        assert not isinstance(later.value, RequestRejected)
        await stop(session, task)
