"""The HTTP stream transport (tray_app/net/stream.py) against the real server.

Each test starts the server in a subprocess on a free port (tests/fixtures/services.py)
and reads ``/api/stream/`` through :func:`stream_connector`, the way
:class:`~tray_app.net.live.LiveSession` reads the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.services import RunningServer, ServerFactory
from tray_app.net import protocol
from tray_app.net.api import ApiClient
from tray_app.net.connection_state import ConnectionState, StateChange
from tray_app.net.errors import (
    AccountDisabled,
    NetError,
    NotOurServer,
    RequestRejected,
    ServerFailure,
    ServerUnreachable,
)
from tray_app.net.live import Closed, Connection, HandshakeRefused, LiveSession
from tray_app.net.stream import (
    NotOverHttp,
    StreamConnection,
    StreamDead,
    closed_error,
    stream_connector,
    stream_url,
)
from tray_app.net.transport import Transport

WAIT = 20.0  # the most any expected frame may take on a loaded CI machine


async def log_in(server: RunningServer, username: str = "alice") -> dict[str, Any]:
    """``{"access", "refresh", ...}`` for a demo user (password "demo")."""
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        response = await client.post(
            "/api/auth/token/", json={"username": username, "password": "demo"}
        )
    response.raise_for_status()
    tokens: dict[str, Any] = response.json()
    return tokens


@contextlib.asynccontextmanager
async def open_stream(
    server: RunningServer, token: str, *, after_seq: int = 0, dead_after: float = 35.0
) -> AsyncIterator[Connection]:
    connect = stream_connector(Transport(proxy="none"), dead_after=dead_after)
    headers = {"Authorization": f"Bearer {token}"}
    # No overall timeout: every read below has its own, and connect its open_timeout.
    async with connect(f"{server.ws_url}?after_seq={after_seq}", headers) as connection:
        yield connection


async def next_frame(connection: Connection) -> protocol.ServerFrame:
    async with asyncio.timeout(WAIT):
        return protocol.parse_server_frame(await connection.recv())


async def until_caught_up(connection: Connection) -> list[protocol.ServerFrame]:
    """Every frame up to and including ``caught_up``."""
    frames = [await next_frame(connection)]
    while not isinstance(frames[-1], protocol.CaughtUp):
        frames.append(await next_frame(connection))
    return frames


async def read_until_the_end(connection: Connection) -> None:
    """Read frames until the stream ends (which raises)."""
    async with asyncio.timeout(WAIT):
        while True:
            await connection.recv()


async def notify(server: RunningServer, title: str) -> None:
    await asyncio.to_thread(server.cli, "notify", "--user", "alice", "--title", title, check=True)


def test_the_socket_address_becomes_the_stream_address() -> None:
    assert (
        stream_url("wss://example.com:8443/ws/notifications/?after_seq=5")
        == "https://example.com:8443/api/stream/?after_seq=5"
    )
    assert stream_url("ws://h/tray/ws/notifications/") == "http://h/tray/api/stream/"
    assert stream_url("https://h") == "https://h/api/stream/"
    assert stream_url("http://h/api/stream/?watch=1") == "http://h/api/stream/?watch=1"


def test_closed_events_mean_what_the_socket_close_codes_mean() -> None:
    expired = closed_error({"code": 4001, "reason": "token_invalid"})
    assert isinstance(expired, Closed)
    assert expired.close_code == protocol.CLOSE_TOKEN_INVALID
    assert closed_error({"code": 4003}).code == "account_disabled"
    restart = closed_error({"code": 1012})
    assert isinstance(restart, Closed)
    assert restart.close_code == protocol.CLOSE_RESTART
    assert isinstance(closed_error({}), StreamDead)


@pytest.mark.asyncio
async def test_hello_the_replay_and_caught_up_then_a_live_notification(
    demo_server: RunningServer,
) -> None:
    tokens = await log_in(demo_server)
    async with open_stream(demo_server, tokens["access"]) as connection:
        frames = await until_caught_up(connection)
        hello = frames[0]
        assert isinstance(hello, protocol.Hello)
        assert hello.user["username"] == "alice"
        assert hello.latest_seq > 0
        replayed = [f.seq for f in frames if isinstance(f, protocol.NotificationCreated)]
        assert replayed == list(range(1, hello.latest_seq + 1))
        assert isinstance(connection, StreamConnection)
        assert connection.retry_ms == 3000
        assert connection.last_event_id == str(hello.latest_seq)

        await notify(demo_server, "Live one")
        live = await next_frame(connection)
        while not isinstance(live, protocol.NotificationCreated):
            live = await next_frame(connection)
        assert (live.seq, live.notification.title) == (hello.latest_seq + 1, "Live one")
        assert connection.last_event_id == str(live.seq)


@pytest.mark.asyncio
async def test_a_resume_replays_only_what_is_above_the_cursor(demo_server: RunningServer) -> None:
    tokens = await log_in(demo_server)
    async with open_stream(demo_server, tokens["access"]) as connection:
        latest = (await until_caught_up(connection))[0]
    assert isinstance(latest, protocol.Hello)
    cursor = latest.latest_seq - 1
    async with open_stream(demo_server, tokens["access"], after_seq=cursor) as connection:
        frames = await until_caught_up(connection)
    assert [f.seq for f in frames if isinstance(f, protocol.NotificationCreated)] == [
        latest.latest_seq
    ]
    caught_up = frames[-1]
    assert isinstance(caught_up, protocol.CaughtUp)
    assert caught_up.after_seq == cursor


@pytest.mark.asyncio
async def test_a_bad_token_is_the_socket_s_4001(demo_server: RunningServer) -> None:
    with pytest.raises(Closed) as refused:
        async with open_stream(demo_server, "not-a-token"):
            pass
    assert refused.value.close_code == protocol.CLOSE_TOKEN_INVALID


@pytest.mark.asyncio
async def test_a_bad_cursor_is_refused_with_the_server_s_code(demo_server: RunningServer) -> None:
    tokens = await log_in(demo_server)
    connect = stream_connector(Transport(proxy="none"))
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    with pytest.raises(RequestRejected) as refused:
        async with asyncio.timeout(WAIT), connect(f"{demo_server.ws_url}?after_seq=-1", headers):
            pass
    assert (refused.value.status, refused.value.code) == (400, "invalid_cursor")


@pytest.mark.asyncio
async def test_client_frames_cannot_go_over_http(demo_server: RunningServer) -> None:
    tokens = await log_in(demo_server)
    async with open_stream(demo_server, tokens["access"]) as connection:
        await next_frame(connection)
        with pytest.raises(NotOverHttp):
            await connection.send(protocol.encode_ping("ping-1"))


@pytest.mark.asyncio
async def test_a_silent_stream_is_a_dead_link(server_factory: ServerFactory) -> None:
    server = server_factory(demo=True, env={"TRAY_STREAM_HEARTBEAT": "0"})
    tokens = await log_in(server)
    async with open_stream(server, tokens["access"], dead_after=1.0) as connection:
        await until_caught_up(connection)
        with pytest.raises(StreamDead) as dead:
            await connection.recv()
    assert dead.value.close_code is None
    assert "the link is dead" in str(dead.value)


@pytest.mark.asyncio
async def test_heartbeats_keep_a_quiet_stream_alive(server_factory: ServerFactory) -> None:
    server = server_factory(demo=True, env={"TRAY_STREAM_HEARTBEAT": "0.2"})
    tokens = await log_in(server)
    async with open_stream(server, tokens["access"], dead_after=1.0) as connection:
        await until_caught_up(connection)
        assert isinstance(connection, StreamConnection)
        waiting = asyncio.get_running_loop().create_task(connection.recv())
        heard = connection.heartbeats
        # Eight heartbeats apart is 1.6 s with no frame: past dead_after, had they not counted.
        async with asyncio.timeout(WAIT):
            while connection.heartbeats < heard + 8 and not waiting.done():
                connection.heartbeat_heard.clear()
                await connection.heartbeat_heard.wait()
        assert not waiting.done()
        await notify(server, "After the quiet")
        async with asyncio.timeout(WAIT):
            frame = protocol.parse_server_frame(await waiting)
        assert isinstance(frame, protocol.NotificationCreated | protocol.UnreadCount)


@pytest.mark.asyncio
async def test_logging_out_ends_the_stream_with_the_token_invalid_close(
    demo_server: RunningServer,
) -> None:
    tokens = await log_in(demo_server)
    async with open_stream(demo_server, tokens["access"]) as connection:
        await until_caught_up(connection)
        async with httpx.AsyncClient(base_url=demo_server.url, timeout=WAIT) as client:
            response = await client.post("/api/auth/logout/", json={"refresh": tokens["refresh"]})
        assert response.status_code == 204
        with pytest.raises(Closed) as ended:
            await read_until_the_end(connection)
    assert not isinstance(ended.value, StreamDead)
    assert ended.value.close_code == protocol.CLOSE_TOKEN_INVALID


# --- answers the real server does not give on demand (httpx.MockTransport) ------------


def scripted(response: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: response)


@contextlib.asynccontextmanager
async def open_scripted(response: httpx.Response) -> AsyncIterator[Connection]:
    connect = stream_connector(Transport(proxy="none"), http_transport=scripted(response))
    async with connect("ws://server.test/ws/notifications/?after_seq=0", {}) as connection:
        yield connection


EVENT_STREAM = {"content-type": "text/event-stream; charset=utf-8"}
HELLO_EVENT = b'data: {"type":"unread_count","payload":{"unread_count":2}}\n\n'


@pytest.mark.asyncio
async def test_frames_before_closed_are_delivered_then_its_error() -> None:
    body = (
        HELLO_EVENT
        + b'data: {"type":"closed","payload":{"code":4003,"reason":"account_disabled"}}\n\n'
        + HELLO_EVENT
    )
    async with open_scripted(httpx.Response(200, headers=EVENT_STREAM, content=body)) as connection:
        assert protocol.parse_server_frame(await connection.recv()) == protocol.UnreadCount(2)
        with pytest.raises(AccountDisabled):
            await connection.recv()
        with pytest.raises(AccountDisabled):  # and stays ended
            await connection.recv()


@pytest.mark.asyncio
async def test_a_body_that_ends_without_closed_is_a_dead_link() -> None:
    response = httpx.Response(200, headers=EVENT_STREAM, content=HELLO_EVENT + b": ping\n\n")
    async with open_scripted(response) as connection:
        await connection.recv()
        with pytest.raises(StreamDead, match="without closing"):
            await connection.recv()


@pytest.mark.asyncio
async def test_a_200_that_is_no_event_stream_is_not_our_server() -> None:
    response = httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>")
    with pytest.raises(NotOurServer, match="not an event stream"):
        async with open_scripted(response):
            pass


def refusal(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"said {code}"}})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (refusal(403, "account_disabled"), AccountDisabled, "account_disabled"),
        (refusal(403, "origin_refused"), HandshakeRefused, "handshake_forbidden"),
        (refusal(404, "not_found"), HandshakeRefused, "stream_unavailable"),
        (refusal(503, "server_restart"), Closed, "closed"),
        (httpx.Response(502, text="Bad gateway"), ServerFailure, "server_failure"),
    ],
)
async def test_refusals_map_as_the_socket_handshake_s(
    answer: httpx.Response, kind: type[NetError], code: str
) -> None:
    with pytest.raises(kind) as refused:
        async with open_scripted(answer):
            pass
    assert refused.value.code == code


# --- LiveSession over the stream -------------------------------------------------------


class FrameLog:
    """A SessionHandler that keeps what it gets."""

    def __init__(self) -> None:
        self.frames: list[protocol.ServerFrame] = []
        self.changed = asyncio.Event()
        self.states: list[ConnectionState] = []

    def cursor(self) -> int:
        return 0

    async def handle_frame(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
        self.frames.append(frame)
        self.changed.set()

    def handle_state(self, change: StateChange) -> None:
        self.states.append(change.state)


@pytest.mark.asyncio
async def test_live_session_reads_the_stream_as_it_reads_the_socket(
    demo_server: RunningServer,
) -> None:
    async with ApiClient(demo_server.url) as api:
        await api.login("alice", "demo")
        log = FrameLog()
        # No application pings: a stream takes no client frames (its heartbeats are the
        # server's comments, watched by the connection itself).
        session = LiveSession(
            api,
            log,
            connect=stream_connector(Transport(proxy="none")),
            ping_interval=3600,
        )
        task = asyncio.get_running_loop().create_task(session.run())
        async with asyncio.timeout(WAIT):
            while not any(isinstance(f, protocol.CaughtUp) for f in log.frames):
                log.changed.clear()
                await log.changed.wait()
        assert log.states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
        assert isinstance(log.frames[0], protocol.Hello)
        await session.stop()
        async with asyncio.timeout(WAIT):
            await task
        assert log.states[-1] is ConnectionState.STOPPED


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out_at_open() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    connect = stream_connector(
        Transport(proxy="none"), open_timeout=0.2, http_transport=httpx.MockTransport(never)
    )
    with pytest.raises(ServerUnreachable) as failed:
        async with asyncio.timeout(WAIT), connect("ws://server.test/ws/notifications/", {}):
            pass
    assert failed.value.code == "server_timeout"
