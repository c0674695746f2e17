"""Pieces every benchmark in ``bench/`` shares.

Server processes (started pinned to the server CPU, waited for on ``/healthz``),
readers of a process's RSS and CPU time from ``/proc``, the load generator's
client ``Fleet``, the embedded default's environment and demo data, and the
machine description that goes into every results file.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from backend.cli import LISTENING_PREFIX, WEBSOCKET_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SERVER_CPU = 0
CLIENT_CPU = 1
DEMO_PASSWORD = "demo"
# Every server the benchmarks run pings each socket this often: the product's uvicorn
# (backend/cli.py, ws_ping_interval), P0 (--ping-interval) and Daphne (--ping-interval).
# B1 counts the pings the clients see, so a server that pings at another rate shows.
PING_INTERVAL_SECONDS = 10
# "ours+metrics": ours with TRAY_METRICS_TOKEN set, so every counter of backend/metrics.py
# counts (nothing scrapes it: the cost is the increments), beside "ours" (metrics off).
# bench.mixed_traffic (B3, B4, B6) and bench.connections (B1, B2) take it by this name.
OURS_WITH_METRICS = "ours+metrics"
METRICS_TOKEN = "bench-metrics-token-0123456789abcdefghijklmnop"


class BenchError(Exception):
    """The benchmark could not measure something (a server failed, a frame went missing)."""


def print_outcome(outcome: Outcome, output: Path | None) -> None:
    """A module run alone: its rows on stdout, one JSON object a line, and the whole
    ``outcome`` as JSON in ``output`` when given."""
    for row in outcome.results:
        print(json.dumps(row))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(asdict(outcome), indent=1) + "\n")


def ours_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """The environment of our server ``name``: ``env``, with the metrics token for
    ``OURS_WITH_METRICS``."""
    if name != OURS_WITH_METRICS:
        return env
    return {**env, "TRAY_METRICS_TOKEN": METRICS_TOKEN}


def server_names(text: str, known: Sequence[str]) -> list[str] | None:
    """The servers a ``--servers`` option names (comma-separated, in its order); None
    when it names none or one not in ``known``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or set(names) - set(known):
        return None
    return names


PROFILE_NAMES = ("quick", "full")


@dataclass
class Outcome:
    """What one benchmark module measured, for ``python -m bench`` to merge.

    Every module of the suite exposes ``run(profile: str, *, smoke: bool,
    scratch: Path) -> Outcome`` (``profile`` one of PROFILE_NAMES; ``smoke``
    shrinks every count so the run only proves it works; ``scratch`` is an
    empty directory the module may fill and that is deleted afterwards).

    Attributes:
        results: One row per figure, in issue 5's format (see ``result``).
        raw: JSON-safe settings and every sample behind the rows.
        cdfs: Latency samples for the CDF plots: plot title -> series name
            (``ours``, ``P0``, ...) -> samples in milliseconds.
    """

    results: list[dict[str, Any]]
    raw: dict[str, Any]
    cdfs: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def result(
    *,
    id: str,
    metric: str,
    unit: str,
    ours: float | None,
    peers: dict[str, float | None],
    target: str,
    met: bool,
) -> dict[str, Any]:
    """One row of ``latest.json`` in issue 5's format; numbers rounded to 3 places.

    Args:
        id: The benchmark's id in the issue (``B3``, ``PUB``...).
        metric: What was measured, with its conditions (counts, percentile).
        unit: The unit of ``ours`` and every peer.
        ours: The product's figure; None when it could not be measured here.
        peers: The baselines run in the same invocation, by name (``P0``,
            ``P1``, ``minimal tray app``...), None where not measured.
        target: The issue's target in words.
        met: Whether ``ours`` meets it.
    """

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(float(value), 3)

    return {
        "id": id,
        "metric": metric,
        "unit": unit,
        "ours": rounded(ours),
        "peers": {name: rounded(value) for name, value in peers.items()},
        "target": target,
        "met": bool(met),
    }


# --- /proc -------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def rss_parts_kib(pid: int) -> dict[str, int]:
    """The resident set split as /proc/PID/status splits it: ``anon`` (heap, stacks:
    the process's own), ``file`` (mapped libraries and files, clean pages the kernel may
    drop and reread) and ``shmem``."""
    parts = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line else ""
        if key in parts:
            found[parts[key]] = int(line.split()[1])
    if len(found) != len(parts):
        raise BenchError(f"no RssAnon/RssFile/RssShmem for process {pid}")
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def process_trees(pids: Sequence[int]) -> list[int]:
    """``pids`` and all their living descendants (PostgreSQL's backends are the
    postmaster's children), from /proc/PID/task/TID/children."""
    found: list[int] = []
    pending = list(pids)
    while pending:
        pid = pending.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


# --- the product's environment -----------------------------------------------------


def bench_env(data_dir: Path) -> dict[str, str]:
    """The environment of every server and CLI process: the embedded default in
    ``data_dir``, and nothing of this process's own TRAY_* configuration.

    A setting to measure goes in as ``BENCH_TRAY_<NAME>=value`` (``TRAY_<NAME>`` for
    every server and CLI process of the run, ours and the peers alike), so that a
    TRAY_* variable left in a shell never changes a benchmark unseen.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRAY_")
        and key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="backend.config.settings",
        TRAY_DATA_DIR=str(data_dir),
        TRAY_LOG_LEVEL="WARNING",
        # Every run logs four users in; the default 20/min would throttle quick runs.
        TRAY_LOGIN_RATE="1000/min",
        PYTHONUNBUFFERED="1",
    )
    env.update(
        (key.removeprefix("BENCH_"), value)
        for key, value in os.environ.items()
        if key.startswith("BENCH_TRAY_")
    )
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    """``python -m backend.cli ARGS``; returns stdout, a failure stops the benchmark."""
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"backend.cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare_database(env: dict[str, str]) -> None:
    """Migrate and seed the demo data once, as ``serve --demo`` does on its first start."""
    run_cli(env, "manage", "migrate", "--verbosity", "0")
    run_cli(env, "manage", "shell", "-c", "from backend.demo import seed_demo; seed_demo()")


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_to_server_cpu() -> None:
    """``preexec_fn`` of every server-side process.

    Runs in the child before exec, so every thread the server starts inherits it.
    """
    os.sched_setaffinity(0, {SERVER_CPU})


def pin_to_client_cpu() -> None:
    """Pin this process (the load generator); call before any thread exists."""
    os.sched_setaffinity(0, {CLIENT_CPU})


@dataclass
class ServerProcess:
    """A started server: its process, where it answers HTTP, and its log."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    ws_path: str = WEBSOCKET_PATH

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + self.ws_path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def healthy(url: str) -> bool:
    """Whether ``URL/healthz`` answers 200."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(
    name: str,
    command: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    *,
    port: int | None = None,
    ws_path: str = WEBSOCKET_PATH,
) -> ServerProcess:
    """Start ``command`` pinned to the server CPU and return it once /healthz answers.

    Args:
        name: What the server is called in results and errors.
        command: The argv to run from the repository root.
        env: Its environment.
        log_path: Where its stdout and stderr go.
        port: The port it was told to listen on; None when it picks its own and
            prints ``LISTENING_PREFIX URL`` (``backend.cli serve --port 0``).
        ws_path: The WebSocket path on that server.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to_server_cpu,
        )
    base_url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        nonlocal base_url
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
        if port is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith(LISTENING_PREFIX):
                    base_url = line.removeprefix(LISTENING_PREFIX).strip()
                    break
            else:
                return False
        return healthy(base_url)

    try:
        wait_for(listening, timeout=60, what=f"{name} to answer /healthz")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return ServerProcess(
        name=name, process=process, base_url=base_url, log_path=log_path, ws_path=ws_path
    )


def stop_server(server: ServerProcess) -> None:
    """Make sure the process is gone."""
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(timeout=30)


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private ``redis-server`` on a free port, pinned to the server CPU, as the
    test fixture starts it; returns the process and its ``redis://`` URL."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    with (workdir / f"redis-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to_server_cpu,
        )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)

    def answers() -> bool:
        if process.poll() is not None:
            raise BenchError(f"redis-server exited with {process.returncode}")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for(answers, timeout=20, what="redis-server to answer PING")
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        client.close()
    return process, url


# --- load generator ------------------------------------------------------------------


class PingCountingConnection(ClientConnection):
    """A client connection that counts the pings its server sends (B1 compares
    idle CPU only between servers pinging at the same interval)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings_seen = 0

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings_seen += 1
        super().process_event(event)


class Fleet:
    """N client sockets, each with a reader that counts the benchmark's notifications.

    Every server the benchmarks drive (ours and the peers in ``bench/peers``)
    sends ``{"type": "hello"}`` once a socket is live and
    ``{"type": "notification_created", "payload": {"title": ...}}`` per
    notification, so one fleet measures them all the same way.
    """

    def __init__(self, ws_url: str, *, compression: str | None = "deflate") -> None:
        self.ws_url = ws_url
        self.compression = compression
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.close_codes: Counter[str] = Counter()
        self.title = ""
        self._expected = 0
        self._count = 0
        self.last_at = 0.0
        self._all_received = asyncio.Event()

    async def open_one(
        self, token: str | None = None, *, query: str = "", url: str | None = None
    ) -> ClientConnection:
        """Connect (with a Bearer token when given) and wait for ``hello``.

        Args:
            token: The access token, sent as ``Authorization: Bearer``.
            query: Appended to the URL (the peers take the user and groups there).
            url: Another server's WebSocket URL (scale mode has two); default ``ws_url``.
        """
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        ws = await connect(
            (url or self.ws_url) + query,
            additional_headers=headers,
            # Only the server pings, so idle CPU is the server's own keep-alive cost.
            ping_interval=None,
            compression=self.compression,
            open_timeout=60,
            close_timeout=5,
            create_connection=PingCountingConnection,
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
        if first.get("type") != "hello":
            await ws.close()
            raise BenchError(f"expected hello, got {first!r}")
        return ws

    def pings(self) -> int:
        """Pings the fleet's sockets have received from their servers so far."""
        return sum(ws.pings_seen for ws in self.sockets if isinstance(ws, PingCountingConnection))

    def adopt(self, ws: ClientConnection) -> None:
        """Keep ``ws`` open and count the notifications it receives."""
        self.sockets.append(ws)
        self.readers.append(asyncio.ensure_future(self._read(ws)))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                # A substring test first: most frames are not the ones being timed.
                if isinstance(raw, str) and "notification_created" in raw:
                    frame = json.loads(raw)
                    if frame["type"] == "notification_created":
                        self._on_notification(frame["payload"]["title"])
        except ConnectionClosed:
            pass
        code = ws.close_code
        self.close_codes[str(code) if code is not None else "none"] += 1

    def _on_notification(self, title: str) -> None:
        if title != self.title:
            return
        self._count += 1
        if self._count == self._expected:
            self.last_at = time.perf_counter()
            self._all_received.set()

    def expect(self, title: str, count: int | None = None) -> None:
        """Start counting frames titled ``title``: ``count`` sockets (default every
        socket) should get one."""
        self.title = title
        self._expected = len(self.sockets) if count is None else count
        self._count = 0
        self._all_received = asyncio.Event()

    async def wait_all_received(self, deadline_seconds: float) -> None:
        """Wait until every socket got the expected frame; BenchError past the deadline."""
        try:
            async with asyncio.timeout(deadline_seconds):
                await self._all_received.wait()
        except TimeoutError:
            raise BenchError(
                f"only {self._count} of {self._expected} sockets got {self.title!r}"
            ) from None

    async def close(self) -> None:
        """Close every socket and wait for the readers."""
        await asyncio.gather(*(ws.close() for ws in self.sockets))
        await asyncio.gather(*self.readers)


async def login(client: httpx.AsyncClient, username: str) -> str:
    """An access token for a demo user."""
    response = await client.post(
        "/api/auth/token/", json={"username": username, "password": DEMO_PASSWORD}
    )
    if response.status_code != 200:
        raise BenchError(f"login as {username}: HTTP {response.status_code} {response.text}")
    return str(response.json()["access"])


# --- report --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine(packages: Sequence[str]) -> dict[str, Any]:
    """The machine and the versions of ``packages``, for a results file."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def raise_fd_limit(needed: int) -> None:
    """Client sockets live in this process; the servers inherit the limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise BenchError(f"need {needed} open files, the hard limit is {hard}")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection of the load generator's publishers.

    Not httpx: its connection pool does work proportional to the requests queued
    on it for every request, so once a server falls behind an open-loop schedule
    the load generator, not the server, became the bottleneck. Requests here are
    prebuilt bytes and responses are parsed by httptools (uvicorn's parser).
    """

    # uvicorn closes idle keep-alive connections after 5 s; reconnect well before.
    IDLE_LIMIT = 2.0

    @classmethod
    def to(cls, base_url: str) -> HttpConnection:
        """A connection to the server at ``base_url`` (``http://host:port``)."""
        url = urlsplit(base_url)
        return cls(url.hostname or "127.0.0.1", url.port or 80)

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used_at = 0.0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send ``raw`` and return the response's status and body."""
        if self.writer is not None and time.monotonic() - self.used_at > self.IDLE_LIMIT:
            self.close()
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        body = bytearray()
        complete = False
        keep_alive = False

        class Collector:
            def on_body(self, data: bytes) -> None:
                body.extend(data)

            def on_message_complete(self) -> None:
                # Asked here: once the message is fed through, llhttp has reset and
                # ``should_keep_alive()`` is always False (every publish then opened
                # a connection of its own: fixed at issue 14's fifth stop).
                nonlocal complete, keep_alive
                complete = True
                keep_alive = parser.should_keep_alive()

        parser = httptools.HttpResponseParser(Collector())
        try:
            writer.write(raw)
            while not complete:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection mid-response")
                parser.feed_data(data)
        except BaseException:
            self.close()
            raise
        if keep_alive:
            self.used_at = time.monotonic()
        else:
            self.close()
        return parser.get_status_code(), bytes(body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """The bytes of one HTTP/1.1 request for ``HttpConnection.request``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
