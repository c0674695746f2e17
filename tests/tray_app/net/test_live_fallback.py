"""The session's HTTP fallback against the real server: a network that breaks WebSockets
sends it to the stream (``GET /api/stream/``), and it comes back to the socket once the
socket works again, with every notification delivered exactly once across the switches.

The broken network is real: the "socket" connector dials the server's stream path, which
answers the upgrade request with a plain ``200 text/event-stream`` instead of ``101``,
as a proxy that strips ``Upgrade`` makes the server do.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.fixtures.services import RunningServer, ServerFactory
from tests.tray_app.net.test_live import Recorder
from tray_app.net import protocol
from tray_app.net.api import ApiClient
from tray_app.net.backoff import Backoff
from tray_app.net.connection_state import ConnectionState
from tray_app.net.live import Connection, LiveSession, websocket_connector
from tray_app.net.stream import stream_connector
from tray_app.net.transport import Transport
from tray_app.net.transport_choice import REASON_BLOCKED, TransportChoice
from tray_app.net.transport_choice import Transport as Via

pytestmark = pytest.mark.asyncio

WAIT = 30.0
PROBE = 0.5


class BreakableSocket:
    """A socket connector whose network strips ``Upgrade`` while ``broken`` is set."""

    def __init__(self) -> None:
        self.broken = True
        self.attempts: list[bool] = []  # broken or not, per attempt
        self._real = websocket_connector(Transport(proxy="none"))

    @contextlib.asynccontextmanager
    async def __call__(self, url: str, headers: dict[str, str]) -> AsyncIterator[Connection]:
        broken = self.broken
        self.attempts.append(broken)
        if broken:
            # The upgrade request reaches a plain HTTP endpoint: a 200, not a 101.
            url = url.replace("/ws/notifications/", "/api/stream/")
        async with self._real(url, headers) as connection:
            yield connection


@pytest_asyncio.fixture
async def alice(demo_server: RunningServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(demo_server.url) as api:
        await api.login("alice", "demo")
        yield api


async def notify(server: RunningServer, title: str) -> None:
    result = await asyncio.to_thread(server.cli, "notify", "--user", "alice", "--title", title)
    assert result.returncode == 0, result.stderr


async def first_project(server: RunningServer, api: ApiClient) -> int:
    token = await api.access_token()
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(
            f"{server.url}/api/projects/", headers={"Authorization": f"Bearer {token}"}
        )
    answer.raise_for_status()
    body = answer.json()
    rows = body["results"] if isinstance(body, dict) else body
    return int(rows[0]["id"])


def created_seqs(recorder: Recorder) -> list[int]:
    return [frame.seq for frame in recorder.of(protocol.NotificationCreated)]


async def test_falls_back_to_the_stream_and_comes_back_without_loss_or_duplicates(
    demo_server: RunningServer, alice: ApiClient
) -> None:
    socket = BreakableSocket()
    recorder = Recorder(cursor=0)
    session = LiveSession(
        alice,
        recorder,
        connect=socket,
        stream_connect=stream_connector(Transport(proxy="none")),
        choice=TransportChoice.create(probe_interval=PROBE, probe_cap=2 * PROBE),
        backoff=Backoff(base=0.05, cap=0.2, rng=random.Random(1)),
    )
    task = asyncio.get_running_loop().create_task(session.run())
    try:
        # Three refused upgrades, then the stream: the replay arrives over it.
        await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)), timeout=WAIT)
        assert session.transport is Via.HTTP
        assert socket.attempts[:3] == [True, True, True]
        assert session.state.state is ConnectionState.CONNECTED
        # A wait after the first two refusals; after the third, the stream at once.
        before = recorder.states[
            : [c.state for c in recorder.states].index(ConnectionState.CONNECTED)
        ]
        assert len([change for change in before if change.next_attempt_at is not None]) == 2
        assert session.state.fallback_reason == REASON_BLOCKED
        latest = recorder.of(protocol.Hello)[0].latest_seq
        assert recorder.position == latest

        # Live notifications over the stream (probes of the still broken socket between).
        for n in range(3):
            await notify(demo_server, f"over the stream {n}")
        await recorder.until(lambda: recorder.position == latest + 3, timeout=WAIT)

        # At least one probe of the still broken socket failed, and the stream went on.
        await recorder.until(lambda: len(socket.attempts) >= 4, timeout=WAIT)
        await recorder.until(lambda: session.transport is Via.HTTP and session.connected)

        # The network is fixed: the next probe moves the session back to the socket.
        socket.broken = False
        await recorder.until(
            lambda: session.transport is Via.WEBSOCKET and session.connected, timeout=WAIT
        )
        assert recorder.states[-1].fallback_reason is None
        # The first probe after the fix was the one that worked.
        assert socket.attempts[socket.attempts.index(False) :] == [False]
        # Probes that failed went straight back to the stream: no "reconnecting" shown
        # between the first connect over the stream and the move back.
        shown = [change.state for change in recorder.states]
        connected = shown.index(ConnectionState.CONNECTED)
        assert set(shown[connected:]) == {ConnectionState.CONNECTED}
        for n in range(2):
            await notify(demo_server, f"over the socket {n}")
        await recorder.until(lambda: recorder.position == latest + 5, timeout=WAIT)
    finally:
        await session.stop()
        async with asyncio.timeout(WAIT):
            await task

    seqs = created_seqs(recorder)
    assert seqs == list(range(1, latest + 6))  # each exactly once, in order
    assert True in socket.attempts
    assert False in socket.attempts


async def test_a_forced_stream_subscribes_presence_by_reopening(
    demo_server: RunningServer, alice: ApiClient
) -> None:
    posted: list[str] = []

    async def post_status(status: str) -> None:
        posted.append(status)

    socket = BreakableSocket()
    recorder = Recorder(cursor=0)
    session = LiveSession(
        alice,
        recorder,
        connect=socket,
        stream_connect=stream_connector(Transport(proxy="none")),
        choice=TransportChoice.create("http"),
        post_status=post_status,
    )
    task = asyncio.get_running_loop().create_task(session.run())
    try:
        await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)), timeout=WAIT)
        assert socket.attempts == []  # IT's choice: never the socket
        project_id = await first_project(demo_server, alice)
        await session.subscribe_presence(project_id)
        await recorder.until(lambda: bool(recorder.of(protocol.PresenceSnapshot)), timeout=WAIT)
        await session.set_status("away")  # over REST, never NotOverHttp
        assert posted == ["away"]
        session.request_resume()
        await recorder.until(lambda: len(recorder.of(protocol.Hello)) >= 3, timeout=WAIT)
        assert session.state.state is ConnectionState.CONNECTED
    finally:
        await session.stop()
        async with asyncio.timeout(WAIT):
            await task
    seqs = created_seqs(recorder)
    assert len(seqs) == len(set(seqs))


async def test_on_the_stream_the_token_is_renewed_by_reopening_without_a_gap(
    server_factory: ServerFactory,
) -> None:
    """Access tokens live 3 s and the server ends a stream whose token expired (4001)
    within 0.2 s: the session renews before that, reopening the stream with the new token
    and its cursor, quietly (never "reconnecting"), and every notification arrives once."""
    server = server_factory(
        demo=True,
        env={"TRAY_ACCESS_TOKEN_MINUTES": "0.05", "TRAY_TOKEN_SWEEP_INTERVAL": "0.2"},
    )
    async with ApiClient(server.url) as api:
        await api.login("alice", "demo")
        first_refresh = api.tokens.refresh if api.tokens else None
        recorder = Recorder(cursor=0)
        session = LiveSession(
            api,
            recorder,
            connect=BreakableSocket(),
            stream_connect=stream_connector(Transport(proxy="none")),
            choice=TransportChoice.create("http"),
        )
        task = asyncio.get_running_loop().create_task(session.run())
        try:
            await recorder.until(lambda: bool(recorder.of(protocol.CaughtUp)), timeout=WAIT)
            latest = recorder.of(protocol.Hello)[0].latest_seq
            # Past three token lifetimes, publishing all along.
            for n in range(6):
                await notify(server, f"renewal {n}")
                await recorder.until(lambda: recorder.position == latest + n + 1, timeout=WAIT)  # noqa: B023
            await recorder.until(lambda: len(recorder.of(protocol.Hello)) >= 4, timeout=WAIT)
            assert api.tokens is not None
            assert api.tokens.refresh != first_refresh  # refreshed (the refresh token rotates)
        finally:
            await session.stop()
            async with asyncio.timeout(WAIT):
                await task
    shown = [change.state for change in recorder.states]
    assert shown[: shown.index(ConnectionState.CONNECTED) + 1] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]
    assert set(shown[1:-1]) == {ConnectionState.CONNECTED}, shown  # then only STOPPED
    seqs = created_seqs(recorder)
    assert seqs == list(range(1, latest + 7))  # each exactly once, in order
