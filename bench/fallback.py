"""B10: the HTTP fallback (Server-Sent Events at ``/api/stream/``) beside the
WebSocket (``/ws/notifications/``) on the same server (issue 18).

Run from the repository root::

    .venv/bin/python -m bench --profile quick --only B10      # in the suite
    .venv/bin/python -m bench.fallback [--profile quick|full] [--smoke]

What runs:

- the real server, ``python -m backend.cli serve --port 0`` on a migrated,
  demo-seeded SQLite database (the embedded default) with N + 1 extra users
  (``bench.connections.seed_users``: tokens minted in a shell, no logins),
  pinned to CPU 0, every setting at its default; ``TRAY_STREAM_HEARTBEAT``
  (15 s unless ``BENCH_TRAY_STREAM_HEARTBEAT`` says otherwise) is reported;
- N clients of one transport in this process (CPU 1), one per user:
  - ``socket``: ``websockets`` as the tray app opens it (Bearer token, no
    compression, a client ping every 15 s as ``tray_app/net/live.py``); the
    server pings every 10 s (``backend/cli.py``);
  - ``stream``: a raw HTTP/1.1 ``GET /api/stream/`` (Bearer token) on an
    ``asyncio.Protocol``, the body de-chunked by httptools (uvicorn's parser)
    and decoded by ``tray_app.net.sse.SseDecoder``; the server sends a
    ``: ping`` comment every ``TRAY_STREAM_HEARTBEAT`` seconds, the client
    sends nothing.

  Each client timestamps a frame (``time.perf_counter()``) where its protocol
  parses the bytes (the socket's ``process_event``, the stream's
  ``data_received``), so neither pays a task wake-up the other does not.

The two transports take turns, each on a fresh server process on the same
database (RSS does not shrink after clients leave, so one server cannot measure
both): round r runs socket then stream when r is even, stream then socket when
odd, so drift on this shared machine falls on both. Each session:

1. warm-up: one socket and one stream (the spare user) get one notification,
   so both code paths are loaded before any baseline;
2. an empty burst: B publishes with no client connected (the server CPU of
   writing the rows), then an empty window of W/2 s (the server's own timers),
   then RSS (the empty window and the empty burst are repeated after the
   clients leave; each baseline is the mean of before and after);
3. N clients connect (8 at a time; server CPU over the connects), sit idle for
   W s (server CPU, the keep-alives each client saw), then RSS again;
4. latency: M publishes (``POST /api/notifications/`` to everyone as admin),
   one at a time with a random 0-100 ms pause, from sending the request to the
   frame at each of the N clients;
5. a burst: B publishes back to back, server CPU until all N x B frames are in,
   minus the empty burst's.

Figures (``ours`` = the stream, the fallback under test; ``socket`` beside it,
so the table's ratio is stream/socket): delivery latency p50/p95/p99 over every
client and notification of every round; memory per idle client; idle CPU per
1k clients (minus the empty window, B1's unit); server CPU per client connect;
server CPU per delivered notification. Scalars are the median over rounds.
Server CPU is the sum over its threads of /proc/PID/task/*/schedstat
(nanoseconds), not /proc/PID/stat's 10 ms ticks.
Issue 18 sets no target: the rows report, and ``met`` only says nothing was
missing.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

import httptools
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from bench.common import (
    BenchError,
    Outcome,
    ServerProcess,
    bench_env,
    cpu_seconds,
    http_request,
    login,
    percentile,
    pin_to_client_cpu,
    prepare_database,
    process_trees,
    result,
    rss_kib,
    start_server,
    stop_server,
)
from tray_app.net.sse import Heartbeat, SseDecoder

ID = "B10"
TRANSPORTS = ("socket", "stream")
STREAM_PATH = "/api/stream/"
PUBLISHER = "admin"
# tray_app/net/live.py's PING_INTERVAL: the tray app pings its socket this often.
CLIENT_PING_INTERVAL = 15.0
# backend/config/settings.py's default TRAY_STREAM_HEARTBEAT, and the server's socket
# pings (backend/cli.py ws_ping_interval).
DEFAULT_STREAM_HEARTBEAT = 15.0
SERVER_PING_INTERVAL = 10.0
MAX_PAUSE = 0.1
# Seconds a burst's after-work (logging, the doorbell's look at the database) is given
# inside its CPU window, the same with clients and without.
SETTLE = 1.0
# Seconds the server is left alone before an empty window (a burst's after-work and the
# last clients' leaving are not in it).
QUIET = 2.0
SEED = 18
# How long the frames of one publish (or one burst) may take before the rest count as
# missing, plus this much per thousand expected frames.
FRAME_TIMEOUT = 10.0
FRAME_TIMEOUT_PER_1K = 2.0
PERCENTILES = (50, 95, 99)
TARGET = "report: issue 18 sets no target (nothing missing on either transport)"


@dataclass(frozen=True)
class Profile:
    """How much one invocation measures.

    Attributes:
        clients: N, the clients of each transport.
        rounds: Sessions per transport, alternating which transport goes first.
        idle_window: W, seconds the N clients sit idle (the empty window is W/2).
        latency_rounds: M, publishes timed one at a time per session.
        burst: B, publishes sent back to back per session for the CPU figure.
        connectors: Clients opened concurrently.
    """

    clients: int
    rounds: int
    idle_window: float
    latency_rounds: int
    burst: int
    connectors: int = 8


PROFILES = {
    # 15 s: one heartbeat per stream at the default interval, 1.5 server pings and one
    # client ping per socket.
    "quick": Profile(clients=100, rounds=2, idle_window=15.0, latency_rounds=20, burst=50),
    # 30 s: two heartbeats, three server pings and two client pings; four rounds, so
    # each transport goes first twice.
    "full": Profile(clients=500, rounds=4, idle_window=30.0, latency_rounds=50, burst=50),
}


def profile_for(name: str, *, smoke: bool) -> Profile:
    """The named profile; a smoke run only proves the module works."""
    profile = PROFILES[name]
    if smoke:
        return replace(profile, clients=5, rounds=1, idle_window=1.0, latency_rounds=2, burst=2)
    return profile


def session_order(rounds: int) -> list[tuple[int, str]]:
    """(round, transport) in the order they run: the first transport alternates."""
    order: list[tuple[int, str]] = []
    for number in range(rounds):
        transports = TRANSPORTS if number % 2 == 0 else TRANSPORTS[::-1]
        order.extend((number, transport) for transport in transports)
    return order


def frame_title(frame: str | bytes) -> str | None:
    """The title of a ``notification_created`` frame (text or UTF-8 bytes); None for
    any other frame."""
    if isinstance(frame, str):
        if '"notification_created"' not in frame[:48]:
            return None
    elif b'"notification_created"' not in frame[:48]:
        return None
    document = json.loads(frame)
    if not isinstance(document, dict) or document.get("type") != "notification_created":
        return None
    title = document.get("payload", {}).get("title")
    return title if isinstance(title, str) else None


def frame_timeout(expected: int) -> float:
    return FRAME_TIMEOUT + FRAME_TIMEOUT_PER_1K * expected / 1000


# --- the clients -----------------------------------------------------------------------


class Tracker:
    """When each expected notification reached each client, by title."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.expected = 0
        self.count = 0
        self._done = asyncio.Event()

    def expect(self, titles: Iterable[str], clients: int) -> None:
        """Count frames titled ``titles``, one per client each."""
        self.times = {title: [] for title in titles}
        self.expected = len(self.times) * clients
        self.count = 0
        self._done = asyncio.Event()
        if not self.expected:
            self._done.set()

    def seen(self, title: str, at: float) -> None:
        arrivals = self.times.get(title)
        if arrivals is None:
            return
        arrivals.append(at)
        self.count += 1
        if self.count == self.expected:
            self._done.set()

    async def wait(self, seconds: float) -> int:
        """Wait for every expected frame; the number still missing after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._done.wait()
        return self.expected - self.count


class Client(Protocol):
    def keepalives(self) -> int: ...

    async def close(self) -> None: ...


class TimedSocket(ClientConnection):
    """A socket that timestamps notification frames where websockets parses them and
    counts the server's pings and the pongs to its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker: Tracker | None = None
        self.pings_seen = 0
        self.pongs_seen = 0

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame):
            if event.opcode is Opcode.TEXT and self.tracker is not None:
                title = frame_title(bytes(event.data))
                if title is not None:
                    self.tracker.seen(title, time.perf_counter())
            elif event.opcode is Opcode.PING:
                self.pings_seen += 1
            elif event.opcode is Opcode.PONG:
                self.pongs_seen += 1
        super().process_event(event)


class SocketClient:
    """One ``/ws/notifications/`` client, read (and drained) by a task of its own."""

    def __init__(self, ws: TimedSocket) -> None:
        self.ws = ws
        self.reader = asyncio.ensure_future(self._drain())

    @classmethod
    async def open(cls, server: ServerProcess, token: str, tracker: Tracker) -> SocketClient:
        ws = await connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            ping_interval=CLIENT_PING_INTERVAL,
            ping_timeout=CLIENT_PING_INTERVAL,
            compression=None,
            max_size=2**20,
            open_timeout=60,
            close_timeout=5,
            create_connection=TimedSocket,
        )
        assert isinstance(ws, TimedSocket)
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if first.get("type") != "hello":
            await ws.close()
            raise BenchError(f"socket: expected hello, got {first!r}")
        ws.tracker = tracker
        return cls(ws)

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in self.ws:
                pass

    def keepalives(self) -> int:
        """Server pings plus answered client pings so far."""
        return self.ws.pings_seen + self.ws.pongs_seen

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.reader, return_exceptions=True)


class StreamClient(asyncio.Protocol):
    """One ``GET /api/stream/`` client: httptools de-chunks the answer, SseDecoder
    decodes its events, notification frames are timestamped in ``data_received``."""

    def __init__(self, request: bytes, tracker: Tracker) -> None:
        self.request = request
        self.tracker = tracker
        self.parser = httptools.HttpResponseParser(self)
        self.decoder = SseDecoder()
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.refusal = bytearray()
        self.heartbeats = 0
        self.closed_frame: str | None = None
        self.now = 0.0
        loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    @classmethod
    async def open(cls, server: ServerProcess, token: str, tracker: Tracker) -> StreamClient:
        host, _, port = server.base_url.removeprefix("http://").partition(":")
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        request = http_request("GET", STREAM_PATH, f"{host}:{port}", headers)
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(request, tracker), host, int(port))
        try:
            await asyncio.wait_for(asyncio.shield(client.hello), 60)
        except BaseException:
            await client.close()
            raise
        return client

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclasses of asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(BenchError(f"stream: bad HTTP answer: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(BenchError(f"stream: connection lost before hello ({self.status}): {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            self.refusal.extend(body)
            return
        for item in self.decoder.feed(self.text.decode(body)):
            if isinstance(item, Heartbeat):
                self.heartbeats += 1
                continue
            data = item.data
            title = frame_title(data)
            if title is not None:
                self.tracker.seen(title, self.now)
            elif not self.hello.done():
                if '"type":"hello"' in data[:20]:
                    self.hello.set_result(None)
                else:
                    self._fail(BenchError(f"stream: expected hello, got {data[:200]!r}"))
            elif data.startswith('{"type":"closed"'):
                self.closed_frame = data

    def on_message_complete(self) -> None:
        if self.status != 200:
            self._fail(BenchError(f"stream: HTTP {self.status} {bytes(self.refusal)!r}"))

    def _fail(self, error: BenchError) -> None:
        if not self.hello.done():
            self.hello.set_exception(error)

    # the client

    def keepalives(self) -> int:
        return self.heartbeats

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await self.lost
        if not self.hello.done():
            self.hello.cancel()
        elif not self.hello.cancelled():
            self.hello.exception()  # retrieved: a failed open is reported by open()


# --- one session -------------------------------------------------------------------------


@dataclass
class Session:
    """What one transport measured on one fresh server."""

    transport: str
    round: int
    clients: int
    idle_window: float
    empty_window: float
    cpu_empty_seconds: float = 0.0
    cpu_empty_after_seconds: float = 0.0
    cpu_empty_burst_seconds: float = 0.0
    cpu_empty_burst_after_seconds: float = 0.0
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    cpu_connect_seconds: float = 0.0
    connect_seconds: float = 0.0
    cpu_idle_seconds: float = 0.0
    keepalives_idle: int = 0
    burst: int = 0
    cpu_burst_seconds: float = 0.0
    burst_wall_seconds: float = 0.0
    # This process's CPU over the idle window and the burst (shares of a core), to
    # show the clients' side kept up.
    client_cpu_share_idle: float = 0.0
    client_cpu_share_burst: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    burst_missing: int = 0
    closed_frames: int = 0


def memory_per_client(session: Session) -> float:
    """KiB of server RSS per idle client."""
    return (session.rss_idle_kib - session.rss_before_kib) / session.clients


def idle_cpu_per_1k(session: Session) -> float:
    """% of a core per 1,000 idle clients, over the server's empty baseline (B1's unit)."""
    busy = session.cpu_idle_seconds / session.idle_window
    empty = (session.cpu_empty_seconds + session.cpu_empty_after_seconds) / 2 / session.empty_window
    return (busy - empty) * 100 / (session.clients / 1000)


def cpu_per_connect_us(session: Session) -> float:
    """Server CPU per client opened (handshake or request, authentication, hello)."""
    return session.cpu_connect_seconds / session.clients * 1e6


def cpu_per_delivery_us(session: Session) -> float:
    """Server CPU per notification delivered to one client in the burst, minus the
    same burst's with no client connected."""
    deliveries = session.clients * session.burst
    empty = (session.cpu_empty_burst_seconds + session.cpu_empty_burst_after_seconds) / 2
    return (session.cpu_burst_seconds - empty) / deliveries * 1e6


def keepalive_interval(session: Session) -> float | None:
    """Seconds between keep-alives each client saw over the idle window."""
    if not session.keepalives_idle:
        return None
    return session.idle_window * session.clients / session.keepalives_idle


class Server:
    """A started server and the readers of its processes' memory and CPU."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process

    def cpu(self) -> float:
        """CPU seconds of the server's threads, to the nanosecond (schedstat)."""
        return sum(
            _alive(thread_cpu_seconds, pid) for pid in process_trees([self.process.process.pid])
        )

    def rss(self) -> int:
        return int(sum(_alive(rss_kib, pid) for pid in process_trees([self.process.process.pid])))


def thread_cpu_seconds(pid: int) -> float:
    """The on-CPU time of every living thread of ``pid`` (/proc/PID/task/*/schedstat,
    nanoseconds), where /proc/PID/stat counts 10 ms ticks: 100 idle clients cost a
    few ticks over a window. A thread that exits takes its time with it (the
    server's threads live as long as it does); without schedstat, /proc/PID/stat."""
    total = 0
    found = False
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9 if found else cpu_seconds(pid)


def _alive(read: Callable[[int], float], pid: int) -> float:
    try:
        return read(pid)
    except FileNotFoundError:
        return 0


async def _publish(http: httpx.AsyncClient, admin: str, title: str) -> None:
    response = await http.post(
        "/api/notifications/",
        json={"audience": {"everyone": True}, "title": title},
        headers={"Authorization": f"Bearer {admin}"},
    )
    if response.status_code != 201:
        raise BenchError(f"publish: HTTP {response.status_code} {response.text}")


async def _open_all(
    opener: Callable[[str], Awaitable[Client]], tokens: Sequence[str], connectors: int
) -> list[Client]:
    clients: list[Client] = []
    pending = iter(tokens)

    async def connector() -> None:
        for token in pending:
            clients.append(await opener(token))

    try:
        await asyncio.gather(*(connector() for _ in range(connectors)))
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        raise
    return clients


async def measure(
    server: Server, transport: str, number: int, tokens: Sequence[str], profile: Profile
) -> Session:
    """One session: ``transport``'s clients on a fresh ``server`` (module docstring)."""
    n = profile.clients
    session = Session(
        transport=transport,
        round=number,
        clients=n,
        idle_window=profile.idle_window,
        empty_window=profile.idle_window / 2,
        burst=profile.burst,
    )
    rng = random.Random(SEED + number)
    tracker = Tracker()
    process = server.process

    async def open_socket(token: str) -> Client:
        return await SocketClient.open(process, token, tracker)

    async def open_stream(token: str) -> Client:
        return await StreamClient.open(process, token, tracker)

    opener = open_socket if transport == "socket" else open_stream
    tag = f"{transport} {number}"
    async with httpx.AsyncClient(base_url=process.base_url, timeout=120) as http:
        admin = await login(http, PUBLISHER)
        # Warm-up: both transports' code paths once, on the spare user.
        spare = tokens[n]
        warm = [await open_socket(spare), await open_stream(spare)]
        tracker.expect([f"warm-up {tag}"], 2)
        await _publish(http, admin, f"warm-up {tag}")
        if await tracker.wait(frame_timeout(2)):
            raise BenchError("the warm-up notification did not reach both transports")
        await asyncio.gather(*(c.close() for c in warm))
        await asyncio.sleep(0.5)

        # The rows alone, with nobody to deliver to; then the server's own timers.
        session.cpu_empty_burst_seconds = await _empty_burst(server, http, admin, tag, 0, profile)
        session.cpu_empty_seconds = await _empty_window(server, session.empty_window)
        session.rss_before_kib = server.rss()

        before, started = server.cpu(), time.perf_counter()
        clients = await _open_all(opener, tokens[:n], profile.connectors)
        session.connect_seconds = time.perf_counter() - started
        session.cpu_connect_seconds = server.cpu() - before
        try:
            await asyncio.sleep(QUIET)  # the opens' last work (presence, logging) settles
            before, keepalives = server.cpu(), sum(c.keepalives() for c in clients)
            client_before = time.process_time()
            await asyncio.sleep(profile.idle_window)
            session.cpu_idle_seconds = server.cpu() - before
            session.client_cpu_share_idle = (
                time.process_time() - client_before
            ) / profile.idle_window
            session.keepalives_idle = sum(c.keepalives() for c in clients) - keepalives
            session.rss_idle_kib = server.rss()

            for index in range(profile.latency_rounds):
                title = f"latency {tag} {index}"
                tracker.expect([title], n)
                sent = time.perf_counter()
                await _publish(http, admin, title)
                session.missing += await tracker.wait(frame_timeout(n))
                session.latencies_ms.extend((at - sent) * 1000 for at in tracker.times[title])
                await asyncio.sleep(rng.uniform(0, MAX_PAUSE))

            titles = [f"burst {tag} {index}" for index in range(profile.burst)]
            tracker.expect(titles, n)
            await asyncio.sleep(0.5)
            before, started = server.cpu(), time.perf_counter()
            client_before = time.process_time()
            for title in titles:
                await _publish(http, admin, title)
            session.burst_missing = await tracker.wait(frame_timeout(n * profile.burst))
            await asyncio.sleep(SETTLE)
            session.burst_wall_seconds = time.perf_counter() - started
            session.cpu_burst_seconds = server.cpu() - before
            session.client_cpu_share_burst = (
                time.process_time() - client_before
            ) / session.burst_wall_seconds
        finally:
            session.closed_frames = sum(
                1 for c in clients if isinstance(c, StreamClient) and c.closed_frame
            )
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        # The server's timers and the rows alone again, after the clients: the mean of
        # before and after brackets the drift over the session.
        session.cpu_empty_after_seconds = await _empty_window(server, session.empty_window)
        session.cpu_empty_burst_after_seconds = await _empty_burst(
            server, http, admin, tag, 1, profile
        )
    return session


async def _empty_window(server: Server, seconds: float) -> float:
    """Server CPU over ``seconds`` with no client, after QUIET seconds of settling."""
    await asyncio.sleep(QUIET)
    before = server.cpu()
    await asyncio.sleep(seconds)
    return server.cpu() - before


async def _empty_burst(
    server: Server, http: httpx.AsyncClient, admin: str, tag: str, number: int, profile: Profile
) -> float:
    """Server CPU of the burst's publishes with no client connected, until they are
    answered and one second after (the burst with clients is measured to its last
    frame; the server's own timers over that second are in both)."""
    before = server.cpu()
    for index in range(profile.burst):
        await _publish(http, admin, f"empty {tag} {number} {index}")
    await asyncio.sleep(SETTLE)
    return server.cpu() - before


# --- results -----------------------------------------------------------------------------


def _median(sessions: list[Session], figure: Callable[[Session], float]) -> float | None:
    return statistics.median(figure(s) for s in sessions) if sessions else None


def _interval(value: float | None) -> str:
    return "- (none in the window)" if value is None else f"{value:.1f} s"


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """stream/socket per row, for the raw results."""
    out = []
    for row in results:
        socket = row["peers"].get("socket")
        stream = row["ours"]
        ratio = None if stream is None or not socket else round(stream / socket, 3)
        out.append({"metric": row["metric"], "stream/socket": ratio})
    return out


def summarize(sessions: list[Session], profile: Profile, heartbeat: float) -> list[dict[str, Any]]:
    """B10's rows: ``ours`` is the stream, the socket its peer."""
    by = {t: [s for s in sessions if s.transport == t] for t in TRANSPORTS}
    n = profile.clients
    rounds = len(by["stream"])
    missing = {t: sum(s.missing + s.burst_missing for s in by[t]) for t in TRANSPORTS}
    nothing_missing = not any(missing.values())
    measured = all(by[t] for t in TRANSPORTS)
    latencies = {t: [x for s in by[t] for x in s.latencies_ms] for t in TRANSPORTS}
    setup = (
        f"{n} clients of each transport, each its own user, on a fresh server per transport "
        f"and round ({rounds} rounds, alternating which goes first)"
    )
    rows = []
    for q in PERCENTILES:
        values = {t: percentile(latencies[t], q) if latencies[t] else None for t in TRANSPORTS}
        rows.append(
            result(
                id=ID,
                metric=f"delivery latency p{q}: POST /api/notifications/ to everyone sent to "
                f"the frame at each client, {profile.latency_rounds} notifications one at a "
                f"time per round; {setup}; missing: stream {missing['stream']}, socket "
                f"{missing['socket']} (ours: the SSE stream /api/stream/)",
                unit="ms",
                ours=values["stream"],
                peers={"socket": values["socket"]},
                target=TARGET,
                met=measured and nothing_missing,
            )
        )
    seen = {
        t: _median(
            [s for s in by[t] if keepalive_interval(s)], lambda s: keepalive_interval(s) or 0
        )
        for t in TRANSPORTS
    }
    figures: list[tuple[str, str, Callable[[Session], float]]] = [
        (
            f"server memory per connected idle client (RSS after {profile.idle_window:g} s "
            f"idle minus before the clients, over N); {setup}",
            "KiB",
            memory_per_client,
        ),
        (
            f"server idle CPU per 1k connected clients over {profile.idle_window:g} s (minus "
            f"the server's CPU with none); stream heartbeat every {heartbeat:g} s "
            f"(TRAY_STREAM_HEARTBEAT), socket pinged by the server every "
            f"{SERVER_PING_INTERVAL:g} s and by the client every {CLIENT_PING_INTERVAL:g} s "
            f"(the tray app's); a keep-alive each client saw every "
            f"{_interval(seen['stream'])} (stream), {_interval(seen['socket'])} (socket); "
            f"{setup}",
            "% of a core",
            idle_cpu_per_1k,
        ),
        (
            f"server CPU per client connect (handshake or GET, authentication, hello), "
            f"{profile.connectors} at a time; {setup}",
            "us",
            cpu_per_connect_us,
        ),
        (
            f"server CPU per delivered notification: a burst of {profile.burst} publishes "
            f"back to back to everyone, until every frame was in, minus the same burst with "
            f"no client connected, over {profile.burst} x N deliveries; {setup}",
            "us",
            cpu_per_delivery_us,
        ),
    ]
    for metric, unit, figure in figures:
        values = {t: _median(by[t], figure) for t in TRANSPORTS}
        rows.append(
            result(
                id=ID,
                metric=metric + " (ours: the SSE stream)",
                unit=unit,
                ours=values["stream"],
                peers={"socket": values["socket"]},
                target=TARGET,
                met=measured and nothing_missing,
            )
        )
    return rows


def stream_heartbeat(env: dict[str, str]) -> float:
    """The TRAY_STREAM_HEARTBEAT the servers run with."""
    raw = env.get("TRAY_STREAM_HEARTBEAT")
    return DEFAULT_STREAM_HEARTBEAT if raw is None else float(raw)


# --- the module's entry point ------------------------------------------------------------


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    """B10: N sockets and N streams in turn, each on a fresh server on one database."""
    from bench.connections import seed_users

    settings = profile_for(profile, smoke=smoke)
    data_dir = scratch / "data"
    data_dir.mkdir()
    env = bench_env(data_dir)
    # A stream (and a socket) ends when its access token expires: the default is 10 min.
    env["TRAY_ACCESS_TOKEN_MINUTES"] = "1440"
    heartbeat = stream_heartbeat(env)
    prepare_database(env)
    tokens = seed_users(env, settings.clients + 1)
    sessions: list[Session] = []
    import uvloop

    for number, transport in session_order(settings.rounds):
        process = start_server(
            f"ours ({transport})",
            [sys.executable, "-m", "backend.cli", "serve", "--port", "0"],
            env,
            scratch / f"ours-{transport}-{number}.log",
        )
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                session = runner.run(measure(Server(process), transport, number, tokens, settings))
        except BaseException:
            print(f"ours ({transport}) log:\n{process.log_tail()}", file=sys.stderr)
            raise
        finally:
            stop_server(process)
        sessions.append(session)
        print(
            f"B10 {transport} round {number}: {settings.clients} connected in "
            f"{session.connect_seconds:.2f} s, missing {session.missing + session.burst_missing}",
            flush=True,
        )
    rows = summarize(sessions, settings, heartbeat)
    return Outcome(
        results=rows,
        raw={
            "settings": asdict(settings),
            "stream_heartbeat_s": heartbeat,
            "server_ping_interval_s": SERVER_PING_INTERVAL,
            "client_ping_interval_s": CLIENT_PING_INTERVAL,
            "ratios": ratios(rows),
            "sessions": [asdict(session) for session in sessions],
        },
        cdfs={
            f"B10 delivery latency at {settings.clients} clients, stream beside socket": {
                transport: [x for s in sessions if s.transport == transport for x in s.latencies_ms]
                for transport in TRANSPORTS
            }
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fallback", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: it runs")
    options = parser.parse_args(argv)
    pin_to_client_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-fallback-") as scratch:
        outcome = run(options.profile, smoke=options.smoke, scratch=Path(scratch))
    for row in outcome.results:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
