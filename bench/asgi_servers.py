"""uvicorn against daphne, both serving this project's ASGI application.

Run from the repository root::

    .venv/bin/python -m bench.asgi_servers          # full: 1,000 sockets, 3 runs per server
    .venv/bin/python -m bench.asgi_servers --quick  # 200 sockets, 1 run per server

Both servers run ``backend.config.asgi:application`` in the embedded default
(SQLite in a temporary ``TRAY_DATA_DIR``, in-process delivery), on one
database migrated and seeded with the demo data once, one server at a time,
alternating (uvicorn, daphne, uvicorn, daphne, ...). uvicorn is started the way
the product starts it (``python -m backend.cli serve --demo --port 0``, so with
the settings in ``backend/cli.py``); daphne is started with the flags that
mirror those settings (pings every 10 s with a 10 s timeout, 64 KiB message
limit, no 24 h socket lifetime). Both log at WARNING, so neither pays for
access logs.

The server is pinned to CPU 0 and this process (the load generator: asyncio on
uvloop, the ``websockets`` client, ``httpx``) to CPU 1. Per run it measures:

- memory per idle authenticated socket (server RSS from /proc before and
  after N sockets, after an idle window);
- handshake rate (connect + ``hello`` per second, a few connectors at once);
- idle CPU of the server with no sockets and with N sockets (utime + stime);
- delivery latency: an admin publishes to the connected users with
  ``POST /api/notifications/``; the time from the POST's response to the last
  of the N sockets receiving ``notification_created`` (and from the POST's
  start), R times;
- shutdown on SIGTERM with N sockets open: the close codes the clients get,
  the exit code and how long the server takes to exit.

Results go to ``bench/results/asgi_servers.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    CLIENT_CPU,
    REPO_ROOT,
    BenchError,
    Fleet,
    ServerProcess,
    bench_env,
    cpu_seconds,
    free_port,
    login,
    percentile,
    prepare_database,
    raise_fd_limit,
    rss_kib,
    stop_server,
)
from bench.common import machine as describe_machine
from bench.common import start_server as start_process

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "asgi_servers.json"
SERVERS = ("uvicorn", "daphne")
# Socket owners, round-robin; admin only publishes.
SOCKET_USERS = ("alice", "bob", "carol")
PUBLISHER = "admin"
PACKAGES = (
    "uvicorn",
    "daphne",
    "twisted",
    "autobahn",
    "websockets",
    "uvloop",
    "httptools",
    "django",
    "channels",
)


@dataclass(frozen=True)
class Profile:
    """How much load one invocation puts on each server."""

    name: str
    connections: int
    connectors: int
    latency_rounds: int
    idle_window: float
    empty_idle_window: float
    runs_per_server: int


PROFILES = {
    "quick": Profile(
        name="quick",
        connections=200,
        connectors=8,
        latency_rounds=20,
        idle_window=10.0,
        empty_idle_window=5.0,
        runs_per_server=1,
    ),
    "full": Profile(
        name="full",
        connections=1000,
        connectors=8,
        latency_rounds=100,
        # Three of the servers' 10 s ping intervals.
        idle_window=30.0,
        empty_idle_window=10.0,
        runs_per_server=3,
    ),
}


@dataclass
class RunResult:
    """What one run of one server measured."""

    server: str
    rss_empty_kib: int = 0
    rss_connected_kib: int = 0
    rss_idle_kib: int = 0
    handshake_seconds: float = 0.0
    cpu_empty_seconds: float = 0.0
    cpu_idle_seconds: float = 0.0
    post_seconds: list[float] = field(default_factory=list)
    after_response_seconds: list[float] = field(default_factory=list)
    after_start_seconds: list[float] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    shutdown_close_codes: dict[str, int] = field(default_factory=dict)
    shutdown_seconds: float | None = None
    exit_code: int | None = None


# --- servers -----------------------------------------------------------------------


def start_server(name: str, env: dict[str, str], log_dir: Path, run: int) -> ServerProcess:
    """Start ``name`` pinned to the server CPU and return it once /healthz answers."""
    log_path = log_dir / f"{name}-{run}.log"
    port = 0
    if name == "uvicorn":
        command = [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"]
    else:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            # The counterparts of the uvicorn.Config in backend/cli.py _run_uvicorn.
            "--ping-interval",
            "10",
            "--ping-timeout",
            "10",
            "--websocket-max-message-size",
            "65536",
            "--websocket_timeout",
            "-1",
            # No access log, as uvicorn at TRAY_LOG_LEVEL=WARNING.
            "-v",
            "0",
            "backend.config.asgi:application",
        ]
    return start_process(name, command, env, log_path, port=port or None)


# --- load generator ------------------------------------------------------------------


async def publish(client: httpx.AsyncClient, token: str, title: str) -> None:
    response = await client.post(
        "/api/notifications/",
        json={"audience": {"usernames": list(SOCKET_USERS)}, "title": title},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 201:
        raise BenchError(f"publish: HTTP {response.status_code} {response.text}")


async def measure(server: ServerProcess, profile: Profile, run: int) -> RunResult:
    """One run against a started server; ends by sending it SIGTERM."""
    pid = server.process.pid
    result = RunResult(server=server.name)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        tokens = [await login(http, user) for user in SOCKET_USERS]
        admin = await login(http, PUBLISHER)

        # Warm-up: every code path once (handshake, delivery, close) before the baseline.
        warm = Fleet(server.ws_url)
        for token in tokens:
            warm.adopt(await warm.open_one(token))
        result.extensions = sorted(
            {str(ext.name) for ws in warm.sockets for ext in ws.protocol.extensions}
        )
        warm.expect(f"warm-up {server.name} {run}")
        await publish(http, admin, warm.title)
        await warm.wait_all_received(60)
        for ws in warm.sockets:
            await ws.close()
        await asyncio.gather(*warm.readers)

        # The idle cost of the application itself (hub timers), with no socket open.
        before = cpu_seconds(pid)
        await asyncio.sleep(profile.empty_idle_window)
        result.cpu_empty_seconds = cpu_seconds(pid) - before
        result.rss_empty_kib = rss_kib(pid)

        fleet = Fleet(server.ws_url)
        pending = iter(range(profile.connections))

        async def connector() -> None:
            # One shared iterator: each connector takes the next index when it is free.
            for index in pending:
                fleet.adopt(await fleet.open_one(tokens[index % len(tokens)]))

        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(profile.connectors)))
        result.handshake_seconds = time.perf_counter() - started
        result.rss_connected_kib = rss_kib(pid)

        before = cpu_seconds(pid)
        await asyncio.sleep(profile.idle_window)
        result.cpu_idle_seconds = cpu_seconds(pid) - before
        result.rss_idle_kib = rss_kib(pid)

        for number in range(profile.latency_rounds):
            fleet.expect(f"bench {server.name} run {run} round {number}")
            sent = time.perf_counter()
            await publish(http, admin, fleet.title)
            answered = time.perf_counter()
            await fleet.wait_all_received(60)
            result.post_seconds.append(answered - sent)
            result.after_start_seconds.append(fleet.last_at - sent)
            # Negative when the last frame arrived before the response did.
            result.after_response_seconds.append(fleet.last_at - answered)

    # Shutdown as a service manager does it, with every socket still open.
    stopping = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        result.exit_code = await asyncio.to_thread(server.process.wait, 30)
        result.shutdown_seconds = time.perf_counter() - stopping
    done, _ = await asyncio.wait(fleet.readers, timeout=30)
    for ws in fleet.sockets:
        await ws.close()
    await asyncio.gather(*fleet.readers)
    result.shutdown_close_codes = dict(fleet.close_codes)
    if len(done) < len(fleet.readers):
        result.shutdown_close_codes["still_open_30s_after_sigterm"] = len(fleet.readers) - len(done)
    return result


def measure_in_loop(server: ServerProcess, profile: Profile, run: int) -> RunResult:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(measure(server, profile, run))


# --- report --------------------------------------------------------------------------


def summarize(runs: dict[str, list[RunResult]], profile: Profile) -> list[dict[str, Any]]:
    """The metrics of both servers: the median over runs, percentiles over all samples."""
    n = profile.connections

    def median(server: str, value: Callable[[RunResult], float]) -> float:
        return statistics.median(value(run) for run in runs[server])

    def pooled(server: str, samples: Callable[[RunResult], list[float]], q: float) -> float:
        return percentile([s for run in runs[server] for s in samples(run)], q)

    metrics: list[tuple[str, str, str, str, Callable[[str], float]]] = [
        (
            "A1",
            f"memory per idle authenticated socket ({n} sockets)",
            "KiB",
            "lower",
            lambda s: median(s, lambda r: (r.rss_idle_kib - r.rss_empty_kib) / n),
        ),
        (
            "A2",
            f"handshake rate (connect + hello, {profile.connectors} connectors)",
            "1/s",
            "higher",
            lambda s: median(s, lambda r: n / r.handshake_seconds),
        ),
        (
            "A3",
            f"publish to the last of {n} sockets (POST sent to last frame), p50",
            "ms",
            "lower",
            lambda s: pooled(s, lambda r: r.after_start_seconds, 50) * 1000,
        ),
        (
            "A4",
            f"publish to the last of {n} sockets (POST sent to last frame), p99",
            "ms",
            "lower",
            lambda s: pooled(s, lambda r: r.after_start_seconds, 99) * 1000,
        ),
        (
            "A5",
            f"last of {n} frames minus POST response (negative: frames first), p50",
            "ms",
            "signed",
            lambda s: pooled(s, lambda r: r.after_response_seconds, 50) * 1000,
        ),
        (
            "A6",
            f"last of {n} frames minus POST response (negative: frames first), p99",
            "ms",
            "signed",
            lambda s: pooled(s, lambda r: r.after_response_seconds, 99) * 1000,
        ),
        (
            "A7",
            f"POST /api/notifications/ response time with {n} sockets, p50",
            "ms",
            "lower",
            lambda s: pooled(s, lambda r: r.post_seconds, 50) * 1000,
        ),
        (
            "A8",
            f"idle server CPU with {n} sockets open",
            "% of a core",
            "lower",
            lambda s: median(s, lambda r: r.cpu_idle_seconds / profile.idle_window * 100),
        ),
        (
            "A9",
            "idle server CPU with no socket open",
            "% of a core",
            "lower",
            lambda s: median(s, lambda r: r.cpu_empty_seconds / profile.empty_idle_window * 100),
        ),
        (
            "A10",
            "server RSS after warm-up, no socket open",
            "MiB",
            "lower",
            lambda s: median(s, lambda r: r.rss_empty_kib / 1024),
        ),
    ]
    results = []
    for metric_id, metric, unit, better, value in metrics:
        uvicorn, daphne = value("uvicorn"), value("daphne")
        results.append(
            {
                "id": metric_id,
                "metric": metric,
                "unit": unit,
                "better": better,
                "uvicorn": round(uvicorn, 3),
                "daphne": round(daphne, 3),
                # A ratio of two signed offsets says nothing.
                "ratio": round(uvicorn / daphne, 3) if daphne and better != "signed" else None,
            }
        )
    return results


def observations(runs: dict[str, list[RunResult]]) -> dict[str, Any]:
    """Facts that are not numbers to compare: shutdown behaviour, negotiated extensions."""
    found: dict[str, Any] = {}
    for server, server_runs in runs.items():
        codes: Counter[str] = Counter()
        for run in server_runs:
            codes.update(run.shutdown_close_codes)
        found[server] = {
            "sigterm_close_codes": dict(codes),
            "sigterm_exit_codes": [run.exit_code for run in server_runs],
            "sigterm_exit_seconds": [
                None if run.shutdown_seconds is None else round(run.shutdown_seconds, 3)
                for run in server_runs
            ],
            "websocket_extensions": sorted({e for run in server_runs for e in run.extensions}),
        }
    return found


def format_table(results: list[dict[str, Any]]) -> str:
    header = ("id", "metric", "unit", "uvicorn", "daphne", "uvicorn/daphne", "better")
    rows = [header]
    for row in results:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        winner = _winner(row)
        rows.append(
            (
                row["id"],
                row["metric"],
                row["unit"],
                f"{row['uvicorn']:.2f}",
                f"{row['daphne']:.2f}",
                ratio,
                winner,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def _winner(row: dict[str, Any]) -> str:
    uvicorn, daphne = row["uvicorn"], row["daphne"]
    if row["better"] == "signed":
        return "-"
    if uvicorn == daphne:
        return "tie"
    lower_wins = row["better"] == "lower"
    return "uvicorn" if (uvicorn < daphne) == lower_wins else "daphne"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_servers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 sockets, one run per server")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    options = parser.parse_args(argv)
    profile = PROFILES["quick" if options.quick else "full"]
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the server on one, the load generator on the other")
        return 1
    # Before any thread exists, so every thread of this process stays on the client CPU.
    os.sched_setaffinity(0, {CLIENT_CPU})
    raise_fd_limit(profile.connections * 2 + 1024)

    started = time.monotonic()
    runs: dict[str, list[RunResult]] = {name: [] for name in SERVERS}
    with tempfile.TemporaryDirectory(prefix="bench-asgi-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        env = bench_env(data_dir)
        prepare_database(env)
        for run in range(profile.runs_per_server):
            # Alternate which server goes first so neither always meets the fresher database.
            order = SERVERS if run % 2 == 0 else SERVERS[::-1]
            for name in order:
                server = start_server(name, env, Path(scratch), run)
                try:
                    result = measure_in_loop(server, profile, run)
                except BaseException:
                    print(f"{name} log:\n{server.log_tail()}", file=sys.stderr)
                    raise
                finally:
                    stop_server(server)
                runs[name].append(result)
                print(
                    f"{name} run {run}: {profile.connections} sockets in "
                    f"{result.handshake_seconds:.2f} s, shutdown codes "
                    f"{result.shutdown_close_codes}",
                    flush=True,
                )

    results = summarize(runs, profile)
    report = {
        "machine": describe_machine(PACKAGES),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": profile.name,
        "settings": asdict(profile),
        "duration_seconds": round(time.monotonic() - started, 1),
        "results": results,
        "observations": observations(runs),
        "runs": {name: [asdict(run) for run in server_runs] for name, server_runs in runs.items()},
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(results))
    print(json.dumps(report["observations"], indent=2))
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
