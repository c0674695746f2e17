"""B7: permessage-deflate off, at the library's defaults and tuned; which one ships.

Run from the repository root (``python -m bench --only B7`` once wired)::

    .venv/bin/python -m bench.compression --profile quick
    .venv/bin/python -m bench.compression --profile full --output /tmp/b7.json

For each value of ``TRAY_WS_COMPRESSION`` (``backend/ws_compression.py``:
``off``, ``default`` = websockets' defaults as uvicorn enables them, ``tuned``
= no context takeover, 11-bit windows, memLevel 4) a fresh
``python -m backend.cli serve --demo --port 0`` (pinned to CPU 0) on its own
copy of one seeded database gets N authenticated sockets, one per user, whose
clients offer permessage-deflate as browsers do. Measured per setting:

- memory per idle connection: server RSS after the N sockets sat open for the
  idle window, minus RSS before them, over N;
- server CPU per 1k deliveries: the server's utime + stime over K broadcasts
  to everyone (``POST /api/notifications/``, a title and a two-sentence body),
  each round waiting until every socket has the frame, minus the idle window's
  CPU rate times the rounds' duration, over N x K, x 1,000. It is the whole
  cost of a delivery (database writes included), which is what compression
  adds to;
- bytes on the wire per delivery: the WebSocket bytes the N clients received
  during the rounds (frame headers included, TCP/IP not), over N x K.

There is no P0 row: the settings are compared with each other in the same
invocation, ``ours`` being the shipped default (``SHIPPED_COMPRESSION``) and
the peers the other two. ``choose`` states the rule that picks the setting
from the numbers; a row is met when the shipped default is the one it picks.

``candidates`` adds an in-process measurement (no server, on the load
generator's CPU) of the deflate parameters ``tuned`` was chosen from: zlib's
memory per idle server socket, CPU per compressed message and bytes per
message for each, on websockets' sans-I/O protocols.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from backend.ws_compression import COMPRESSION_CHOICES, SHIPPED_COMPRESSION, TUNED_PARAMETERS
from bench.common import (
    RESULTS_DIR,
    BenchError,
    Fleet,
    Outcome,
    ServerProcess,
    bench_env,
    cpu_seconds,
    login,
    machine,
    pin_to_client_cpu,
    prepare_database,
    raise_fd_limit,
    result,
    rss_kib,
    start_server,
    stop_server,
)
from bench.connections import seed_users

RESULTS_PATH = RESULTS_DIR / "compression.json"
PUBLISHER = "admin"
WARM_UP_SOCKETS = 3
PACKAGES = ("uvicorn", "websockets", "uvloop", "django", "httpx")

# The rule that picks the shipped setting (see ``choose``). Compression has to be
# nearly free for the server: memory per socket bounds how many idle desktops one
# process holds (B1), CPU per delivery bounds the fan-out (B3, B4), while a
# notification is a few hundred bytes on a LAN or VPN. The tray app does not even
# offer the extension; only browser clients would get it.
MIN_BYTES_SAVED = 0.30
MAX_EXTRA_MEMORY = 0.10
MAX_EXTRA_CPU = 0.10
RULE = (
    "ship the compressed setting that saves the most bytes per delivery among those "
    f"saving at least {MIN_BYTES_SAVED:.0%} of off's bytes at most {MAX_EXTRA_MEMORY:.0%} "
    f"more memory per connection and at most {MAX_EXTRA_CPU:.0%} more CPU per delivery "
    "than off; otherwise off"
)


@dataclass(frozen=True)
class Profile:
    """How much load each setting gets."""

    name: str
    sizes: tuple[int, ...]
    rounds: int
    # A fixed measurement window: sockets sit open this long before RSS is read.
    idle_window: float
    connectors: int = 8
    # In-process candidates: server sockets and messages per candidate.
    candidate_sockets: int = 500
    candidate_messages: int = 20


PROFILES = {
    "quick": Profile(name="quick", sizes=(200,), rounds=20, idle_window=10.0),
    "full": Profile(
        name="full",
        # 5,000 was measured once (docs/performance.md, B7) and chose the same; the
        # suite's full run keeps to 1,000 to stay within its time.
        sizes=(1000,),
        rounds=20,
        idle_window=10.0,
        candidate_sockets=2000,
        candidate_messages=20,
    ),
}


def profile_for(name: str, *, smoke: bool) -> Profile:
    """The named profile, shrunk to a run that only proves the module works when ``smoke``."""
    if name not in PROFILES:
        raise BenchError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if smoke:
        return replace(
            profile,
            sizes=(20,),
            rounds=2,
            idle_window=1.0,
            candidate_sockets=20,
            candidate_messages=2,
        )
    return profile


# --- realistic notifications ---------------------------------------------------------

_PEOPLE = ("Bob Baker", "Carol Chen", "Dmitri Ivanov", "Aisha Khan", "Lena Vogel", "Tom Ortiz")
_PROJECTS = ("Mobile App", "Billing", "Website relaunch", "Data platform", "Support portal")
_TEMPLATES = (
    (
        "Release {n}.{m} of {project} is ready for review",
        "{person} moved the release candidate to staging and asks every reviewer to check "
        "the login flow and the new settings page before Friday. Reply in the project "
        "channel if anything blocks you.",
    ),
    (
        "Maintenance window tonight at {hour}:00 ({n})",
        "The {project} database will be read-only for about {m} minutes while it is "
        "upgraded. Save your work before then; {person} will post here when it is done.",
    ),
    (
        "Milestone {n} of {project} is due in {m} days",
        "{m} tasks are still open, three of them unassigned. {person} asks the owners "
        "to update their estimates today so the plan can be reviewed tomorrow morning.",
    ),
    (
        "New policy on expense reports, revision {n}",
        "Receipts over {m} euros now need a scanned copy attached to the report. "
        "{person} from finance has updated the handbook page and will answer questions "
        "at the all-hands on Thursday.",
    ),
    (
        "Build {n} of {project} failed on main",
        "The integration tests timed out after {m} minutes on the payments step. "
        "{person} is looking into it; please hold merges to main until the build is "
        "green again.",
    ),
)


def notification(round_number: int, rng: random.Random) -> tuple[str, str]:
    """A title (unique per round) and a two-sentence body, as a team sends them."""
    title, body = _TEMPLATES[round_number % len(_TEMPLATES)]
    values = {
        "n": 100 + round_number,
        "m": rng.randint(2, 90),
        "hour": rng.randint(18, 23),
        "person": rng.choice(_PEOPLE),
        "project": rng.choice(_PROJECTS),
    }
    return title.format(**values), body.format(**values)


# --- one setting against the real server -----------------------------------------------


class CountingConnection(ClientConnection):
    """A client connection that counts the bytes it receives from its socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bytes_received = 0

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        super().data_received(data)


async def open_counted(ws_url: str, token: str) -> CountingConnection:
    """An authenticated socket offering permessage-deflate, once it got ``hello``.

    Like ``Fleet.open_one``, with a byte-counting connection class.
    """
    ws = await connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        # Only the server pings, as in B1.
        ping_interval=None,
        compression="deflate",
        open_timeout=60,
        close_timeout=5,
        create_connection=CountingConnection,
    )
    assert isinstance(ws, CountingConnection)
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
    if first.get("type") != "hello":
        await ws.close()
        raise BenchError(f"expected hello, got {first!r}")
    return ws


def negotiated(ws: ClientConnection) -> str:
    """The server's Sec-WebSocket-Extensions answer, "" when it accepted none."""
    return "" if ws.response is None else ws.response.headers.get("Sec-WebSocket-Extensions", "")


def check_negotiated(setting: str, header: str) -> None:
    """Stop the benchmark when the server did not apply the setting it was given."""
    expected: dict[str, Callable[[str], bool]] = {
        "off": lambda h: h == "",
        "default": lambda h: h.startswith("permessage-deflate") and "no_context" not in h,
        "tuned": lambda h: "server_no_context_takeover" in h and "client_no_context" in h,
    }
    if not expected[setting](header):
        raise BenchError(f"TRAY_WS_COMPRESSION={setting} negotiated {header!r}")


@dataclass
class Sample:
    """What one setting measured at one connection count."""

    setting: str
    connections: int
    negotiated: str = ""
    connect_seconds: float = 0.0
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    rss_after_rounds_kib: int = 0
    idle_window: float = 0.0
    cpu_idle_seconds: float = 0.0
    rounds: int = 0
    deliveries: int = 0
    cpu_rounds_seconds: float = 0.0
    rounds_seconds: float = 0.0
    bytes_received: int = 0
    # Per round: from sending the publish request to the last socket's frame.
    latency_seconds: list[float] = field(default_factory=list)

    @property
    def memory_per_connection_kib(self) -> float:
        return (self.rss_idle_kib - self.rss_before_kib) / self.connections

    @property
    def cpu_ms_per_1k_deliveries(self) -> float:
        # Net of the server's idle cost (pings, timers) at the rate the idle window
        # measured: slower client-side decompression stretches the rounds, and that
        # background would otherwise count as delivery cost.
        background = self.cpu_idle_seconds / self.idle_window * self.rounds_seconds
        return (self.cpu_rounds_seconds - background) * 1000 / self.deliveries * 1000

    @property
    def bytes_per_delivery(self) -> float:
        return self.bytes_received / self.deliveries

    def figures(self) -> dict[str, Any]:
        """The derived figures, for the raw results."""
        return {
            "memory_per_connection_kib": round(self.memory_per_connection_kib, 3),
            "cpu_ms_per_1k_deliveries": round(self.cpu_ms_per_1k_deliveries, 3),
            "bytes_per_delivery": round(self.bytes_per_delivery, 1),
        }


async def measure(
    setting: str, server: ServerProcess, tokens: list[str], profile: Profile
) -> Sample:
    """Open one socket per token on a started server and measure ``setting``."""
    n = len(tokens)
    pid = server.process.pid
    sample = Sample(setting=setting, connections=n)
    rng = random.Random(f"{setting}-{n}")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as http:
        admin = await login(http, PUBLISHER)

        async def publish(title: str, message: str) -> None:
            response = await http.post(
                "/api/notifications/",
                json={"audience": {"everyone": True}, "title": title, "message": message},
                headers={"Authorization": f"Bearer {admin}"},
            )
            if response.status_code != 201:
                raise BenchError(f"publish: HTTP {response.status_code} {response.text}")

        # Warm-up: handshake, compression, delivery and close once before the baseline.
        warm = Fleet(server.ws_url, compression="deflate")
        for token in tokens[:WARM_UP_SOCKETS]:
            warm.adopt(await warm.open_one(token))
        warm.expect(f"warm-up {setting} {n}")
        await publish(warm.title, "warm-up")
        await warm.wait_all_received(120)
        await warm.close()
        sample.rss_before_kib = rss_kib(pid)

        fleet = Fleet(server.ws_url, compression="deflate")
        counted: list[CountingConnection] = []
        pending = iter(tokens)

        async def connector() -> None:
            # One shared iterator: each connector takes the next token when it is free.
            for token in pending:
                ws = await open_counted(server.ws_url, token)
                counted.append(ws)
                fleet.adopt(ws)

        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(profile.connectors)))
        sample.connect_seconds = time.perf_counter() - started
        headers = {negotiated(ws) for ws in counted}
        if len(headers) != 1:
            raise BenchError(f"{setting}: sockets negotiated different extensions: {headers}")
        sample.negotiated = headers.pop()
        check_negotiated(setting, sample.negotiated)

        # A fixed measurement window, not a wait for a condition: the sockets sit idle
        # (server pings included) before their memory is read.
        before = cpu_seconds(pid)
        await asyncio.sleep(profile.idle_window)
        sample.cpu_idle_seconds = cpu_seconds(pid) - before
        sample.idle_window = profile.idle_window
        sample.rss_idle_kib = rss_kib(pid)

        bytes_before = sum(ws.bytes_received for ws in counted)
        cpu_before = cpu_seconds(pid)
        rounds_started = time.perf_counter()
        for number in range(profile.rounds):
            title, message = notification(number, rng)
            fleet.expect(title)
            sent = time.perf_counter()
            await publish(title, message)
            await fleet.wait_all_received(600)
            sample.latency_seconds.append(fleet.last_at - sent)
        sample.cpu_rounds_seconds = cpu_seconds(pid) - cpu_before
        sample.rounds_seconds = time.perf_counter() - rounds_started
        sample.bytes_received = sum(ws.bytes_received for ws in counted) - bytes_before
        sample.rounds = profile.rounds
        sample.deliveries = n * profile.rounds
        sample.rss_after_rounds_kib = rss_kib(pid)
        await fleet.close()
    return sample


def measure_in_loop(
    setting: str, server: ServerProcess, tokens: list[str], profile: Profile
) -> Sample:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(measure(setting, server, tokens, profile))


def seeded_database(scratch: Path, n: int) -> tuple[Path, list[str]]:
    """A data directory migrated and seeded with the demo data and ``n`` users, and
    their tokens; every setting runs on its own copy, so none meets another's rows."""
    data_dir = scratch / f"seed-{n}"
    data_dir.mkdir()
    env = server_env(data_dir, "off")
    prepare_database(env)
    return data_dir, seed_users(env, n)


def server_env(data_dir: Path, setting: str) -> dict[str, str]:
    env = bench_env(data_dir)
    env["TRAY_WS_COMPRESSION"] = setting
    # Tokens minted at seeding must outlive a full run.
    env["TRAY_ACCESS_TOKEN_MINUTES"] = "1440"
    return env


def run_setting(
    setting: str, seed_dir: Path, tokens: list[str], scratch: Path, profile: Profile
) -> Sample:
    """Start ours with ``setting`` on a copy of the seeded database and measure it."""
    n = len(tokens)
    data_dir = scratch / f"data-{setting}-{n}"
    shutil.copytree(seed_dir, data_dir)
    command = [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"]
    server = start_server(
        f"ours ({setting})",
        command,
        server_env(data_dir, setting),
        scratch / f"ours-{setting}-{n}.log",
    )
    try:
        return measure_in_loop(setting, server, tokens, profile)
    except BaseException:
        print(f"ours ({setting}) log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        stop_server(server)


# --- the rule ---------------------------------------------------------------------------


def _extra(cpu: float, off_cpu: float) -> float | None:
    """``cpu`` over ``off_cpu``, less one; None when ``off_cpu`` is under what the CPU
    clock resolves (a smoke run's few deliveries: 0 ticks) and ``cpu`` is not."""
    if off_cpu > 0:
        return cpu / off_cpu - 1
    return 0.0 if cpu <= off_cpu else None


def choose(samples: dict[str, Sample]) -> tuple[str, dict[str, dict[str, float | None]]]:
    """The setting ``RULE`` picks from one connection count's samples, and why.

    Returns:
        The chosen setting and, per compressed setting, its byte saving and its
        extra memory and CPU relative to ``off`` (fractions; the CPU None when off's was
        too small to measure and the setting's was not: never chosen then).
    """
    off = samples["off"]
    reasons: dict[str, dict[str, float | None]] = {}
    eligible: list[tuple[float, str]] = []
    for setting in COMPRESSION_CHOICES:
        if setting == "off":
            continue
        sample = samples[setting]
        saved = 1 - sample.bytes_per_delivery / off.bytes_per_delivery
        # Relative to off's memory per connection, a positive figure on every run seen.
        extra_memory = (sample.memory_per_connection_kib - off.memory_per_connection_kib) / max(
            off.memory_per_connection_kib, 1.0
        )
        extra_cpu = _extra(sample.cpu_ms_per_1k_deliveries, off.cpu_ms_per_1k_deliveries)
        reasons[setting] = {
            "bytes_saved": round(saved, 3),
            "extra_memory": round(extra_memory, 3),
            "extra_cpu": None if extra_cpu is None else round(extra_cpu, 3),
        }
        if (
            saved >= MIN_BYTES_SAVED
            and extra_memory <= MAX_EXTRA_MEMORY
            and extra_cpu is not None
            and extra_cpu <= MAX_EXTRA_CPU
        ):
            eligible.append((saved, setting))
    return (max(eligible)[1] if eligible else "off"), reasons


def summarize(samples: list[Sample], profile: Profile) -> tuple[list[dict[str, Any]], Any]:
    """Three rows per connection count (ours = the shipped setting), and each count's choice."""
    rows: list[dict[str, Any]] = []
    choices: dict[str, Any] = {}
    ours = SHIPPED_COMPRESSION
    others = [setting for setting in COMPRESSION_CHOICES if setting != ours]
    for n in profile.sizes:
        by_setting = {s.setting: s for s in samples if s.connections == n}
        chosen, reasons = choose(by_setting)
        choices[str(n)] = {"chosen": chosen, "shipped": ours, "relative_to_off": reasons}
        target = f"choose the shipped setting from the numbers: {RULE} (chosen here: {chosen})"
        figures: tuple[tuple[str, str, Callable[[Sample], float]], ...] = (
            (
                "memory per idle connection",
                "KiB",
                lambda s: s.memory_per_connection_kib,
            ),
            (
                "server CPU per 1k deliveries (broadcasts to everyone, database writes "
                "included, idle background subtracted)",
                "CPU ms",
                lambda s: s.cpu_ms_per_1k_deliveries,
            ),
            (
                "WebSocket bytes received per delivery (frame headers included)",
                "bytes",
                lambda s: s.bytes_per_delivery,
            ),
        )
        for metric, unit, figure in figures:
            rows.append(
                result(
                    id="B7",
                    metric=(
                        f"{metric} at {n} connections offering permessage-deflate "
                        f"(ours: TRAY_WS_COMPRESSION={ours}, the shipped default)"
                    ),
                    unit=unit,
                    ours=figure(by_setting[ours]),
                    peers={setting: figure(by_setting[setting]) for setting in others},
                    target=target,
                    met=chosen == ours,
                )
            )
    return rows, choices


# --- the candidates tuned was chosen from (in process) ------------------------------------

CANDIDATES: dict[str, dict[str, Any]] = {
    "library default (12-bit windows, memLevel 5, context kept)": {
        "server_max_window_bits": 12,
        "client_max_window_bits": 12,
        "compress_settings": {"memLevel": 5},
    },
    "websockets docs' small (11-bit, memLevel 4, context kept)": {
        "server_max_window_bits": 11,
        "client_max_window_bits": 11,
        "compress_settings": {"memLevel": 4},
    },
    "no server context takeover (11-bit, memLevel 4)": {
        "server_no_context_takeover": True,
        "server_max_window_bits": 11,
        "client_max_window_bits": 11,
        "compress_settings": {"memLevel": 4},
    },
    "tuned: no context takeover either way (11-bit, memLevel 4)": TUNED_PARAMETERS,
    "no context takeover either way (12-bit, memLevel 5)": {
        **TUNED_PARAMETERS,
        "server_max_window_bits": 12,
        "client_max_window_bits": 12,
        "compress_settings": {"memLevel": 5},
    },
}


def product_frame(number: int, title: str, message: str) -> bytes:
    """A ``notification_created`` frame shaped as the product sends it (docs/protocol.md)."""
    payload = {
        "id": 50_000 + number,
        "seq": 1000 + number,
        "is_read": False,
        "read_at": None,
        "title": title,
        "message": message,
        "event_type": "announcement",
        "priority": "normal",
        "url": "",
        "created_at": f"2026-11-23T09:{number % 60:02d}:00.123456Z",
        "actor": {"id": 4, "username": "admin", "first_name": "", "last_name": ""},
        "project": None,
        "data": {},
    }
    return json.dumps({"type": "notification_created", "payload": payload}).encode()


def _handshake(extensions: list[ServerExtensionFactory], frame: bytes) -> ServerProtocol:
    """A server protocol that accepted a client offering deflate as browsers do, then
    exchanged ``frame`` each way: every zlib object a socket keeps exists by then."""
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/ws/"), extensions=[ClientPerMessageDeflateFactory()]
    )
    server = ServerProtocol(extensions=extensions)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    request = server.events_received()[0]
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    client.send_text(frame)
    server.receive_data(b"".join(client.data_to_send()))
    server.send_text(frame)
    server.data_to_send()
    server.events_received()
    return server


def candidates(profile: Profile) -> list[dict[str, Any]]:
    """zlib memory per idle server socket, CPU per message and bytes per message per candidate.

    Memory: Python-traced allocations (zlib allocates through PyMem_RawMalloc) of
    ``candidate_sockets`` server protocols (with their client's handshake garbage
    collected) after one message each way, over the count. CPU: process time of
    compressing ``candidate_messages`` notification frames (the product's frame
    shape) for every socket, without tracing. Bytes: compressed frame bytes.
    """
    rng = random.Random(7)
    frames = [product_frame(i, *notification(i, rng)) for i in range(profile.candidate_messages)]
    rows: list[dict[str, Any]] = []
    for name, parameters in {"off": None, **CANDIDATES}.items():
        extensions: list[ServerExtensionFactory] = (
            [] if parameters is None else [ServerPerMessageDeflateFactory(**parameters)]
        )
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        servers = [_handshake(extensions, frames[0]) for _ in range(profile.candidate_sockets)]
        # The clients' protocols hold reference cycles: free them (and their zlib state).
        gc.collect()
        per_socket = (tracemalloc.get_traced_memory()[0] - baseline) / len(servers)
        tracemalloc.stop()
        sent = 0
        started = time.process_time()
        for frame in frames:
            for server in servers:
                server.send_text(frame)
                sent += sum(len(chunk) for chunk in server.data_to_send())
        spent = time.process_time() - started
        count = len(frames) * len(servers)
        rows.append(
            {
                "candidate": name,
                "parameters": parameters,
                "memory_per_idle_socket_kib": round(per_socket / 1024, 2),
                "cpu_us_per_message": round(spent / count * 1e6, 2),
                "bytes_per_message": round(sent / count, 1),
                "uncompressed_bytes_per_message": round(sum(map(len, frames)) / len(frames), 1),
            }
        )
        del servers, server
        gc.collect()
    return rows


# --- entry points -----------------------------------------------------------------------


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    """B7 for every TRAY_WS_COMPRESSION value at every connection count of the profile."""
    settings = profile_for(profile, smoke=smoke)
    samples: list[Sample] = []
    for index, n in enumerate(settings.sizes):
        seed_dir, tokens = seeded_database(scratch, n)
        # Alternate the order between sizes so no setting always runs first.
        order = COMPRESSION_CHOICES if index % 2 == 0 else tuple(reversed(COMPRESSION_CHOICES))
        for setting in order:
            sample = run_setting(setting, seed_dir, tokens, scratch, settings)
            samples.append(sample)
            print(
                f"B7 {setting} at {n}: {sample.figures()} negotiated {sample.negotiated!r}",
                flush=True,
            )
    rows, choices = summarize(samples, settings)
    in_process = candidates(settings)
    return Outcome(
        results=rows,
        raw={
            "settings": asdict(settings),
            "shipped": SHIPPED_COMPRESSION,
            "rule": RULE,
            "choices": choices,
            "samples": [{**asdict(sample), **sample.figures()} for sample in samples],
            "candidates": in_process,
        },
        cdfs={
            f"B7 broadcast to everyone at {n} connections, publish to last frame": {
                sample.setting: [t * 1000 for t in sample.latency_seconds]
                for sample in samples
                if sample.connections == n
            }
            for n in settings.sizes
        },
    )


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as text: ours and each peer on one line."""
    lines = []
    for row in rows:
        peers = ", ".join(f"{name} {value}" for name, value in row["peers"].items())
        met = "met" if row["met"] else "NOT met"
        lines.append(f"{row['id']} {row['metric']}: ours {row['ours']} {row['unit']}; {peers}")
        lines.append(f"    {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: proves it runs")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON file")
    options = parser.parse_args(argv)
    # Before any thread exists, so every thread of this process stays on the client CPU.
    pin_to_client_cpu()
    profile = profile_for(options.profile, smoke=options.smoke)
    raise_fd_limit(max(profile.sizes) * 2 + 1024)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-b7-") as scratch:
        outcome = run(options.profile, smoke=options.smoke, scratch=Path(scratch))
    print(format_rows(outcome.results))
    for row in outcome.raw["candidates"]:
        print(
            f"candidate {row['candidate']}: {row['memory_per_idle_socket_kib']} KiB/idle socket, "
            f"{row['cpu_us_per_message']} us/message, {row['bytes_per_message']} of "
            f"{row['uncompressed_bytes_per_message']} bytes"
        )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(
        json.dumps(
            {
                "machine": machine(PACKAGES),
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "profile": options.profile,
                "seconds": round(time.monotonic() - started, 1),
                "results": outcome.results,
                "raw": outcome.raw,
                "cdfs": outcome.cdfs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {options.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
