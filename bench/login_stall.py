"""Another user's request while passwords are being checked (backend/login_lane.py).

Run from the repository root::

    .venv/bin/python -m bench.login_stall            # 8 loops, 200 requests, 15 logins
    .venv/bin/python -m bench.login_stall --quick    # 8 loops, 40 requests, 4 logins

The product's server (``python -m backend.cli serve --port 0``, embedded default,
demo data, pinned to CPU 0) answers alice's ``GET /api/inbox/unread-count/`` R
times with nothing else going on (the baseline, in the same run), then R times
while L threads of this process (pinned to CPU 1) loop wrong-password logins as
fast as they are answered. The login rate limit is lifted for the run, so every
login reaches a password check. Reported: p50/p99 of both phases and their
ratios, the logins answered per second, and how many of them the full login
lane turned away with 503.

Before the login lane (1789ebf), eight loops held this request ~2.4 s at the
median: every PBKDF2 ran on the one thread that serves everything.

The lane's threads run at nice +10 (``TRAY_LOGIN_NICENESS``) for that. The price is
paid by the logins themselves when some other busy process shares the server's core
and cgroup: a third phase times alice's own login with nothing else going on, then
beside one busy process pinned to the server's CPU. ``BENCH_TRAY_LOGIN_NICENESS=0``
runs the whole benchmark at the process's priority instead, to compare.

Results go to ``bench/results/login_stall.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    REPO_ROOT,
    bench_env,
    percentile,
    pin_to_client_cpu,
    pin_to_server_cpu,
    prepare_database,
    start_server,
    stop_server,
)
from bench.common import machine as describe_machine

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "login_stall.json"
PROBE = "/api/inbox/unread-count/"


def _probe(client: httpx.Client, headers: dict[str, str], count: int) -> list[float]:
    """``count`` authenticated requests one after another; their latencies in ms."""
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        client.get(PROBE, headers=headers).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _login_loop(base_url: str, stop: threading.Event, statuses: Counter[int]) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            answer = client.post("/api/auth/token/", json={"username": "bob", "password": "x"})
            statuses[answer.status_code] += 1


def _logins(client: httpx.Client, count: int) -> list[float]:
    """``count`` logins of alice one after another; their latencies in ms."""
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        client.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        ).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _beside_a_busy_process(client: httpx.Client, count: int) -> list[float]:
    """:func:`_logins` while a process spins on the server's CPU at the default nice."""
    spinner = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"], preexec_fn=pin_to_server_cpu
    )
    try:
        return _logins(client, count)
    finally:
        spinner.kill()
        spinner.wait()


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


def measure(*, loops: int, requests: int, logins: int) -> dict[str, Any]:
    pin_to_client_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-login-") as scratch:
        env = bench_env(Path(scratch) / "data")
        env["TRAY_LOGIN_RATE"] = "1000000/min"
        prepare_database(env)
        server = start_server(
            "ours",
            [sys.executable, "-m", "backend.cli", "serve", "--port", "0"],
            env,
            Path(scratch) / "server.log",
        )
        try:
            with httpx.Client(base_url=server.base_url, timeout=120) as client:
                pair = client.post(
                    "/api/auth/token/", json={"username": "alice", "password": "demo"}
                ).json()
                headers = {"Authorization": f"Bearer {pair['access']}"}
                _probe(client, headers, 20)  # warm-up
                idle = _probe(client, headers, requests)
                stop = threading.Event()
                statuses: Counter[int] = Counter()
                threads = [
                    threading.Thread(target=_login_loop, args=(server.base_url, stop, statuses))
                    for _ in range(loops)
                ]
                started = time.monotonic()
                for thread in threads:
                    thread.start()
                while sum(statuses.values()) < loops:  # every loop has been answered once
                    time.sleep(0.01)
                loaded = _probe(client, headers, requests)
                stop.set()
                for thread in threads:
                    thread.join()
                elapsed = time.monotonic() - started
                _logins(client, 2)  # warm-up
                alone = _logins(client, logins)
                beside = _beside_a_busy_process(client, logins)
        finally:
            stop_server(server)
    idle_summary, loaded_summary = _summary(idle), _summary(loaded)
    alone_summary, beside_summary = _summary(alone), _summary(beside)
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(["django", "uvicorn"]),
        "login_loops": loops,
        "requests_per_phase": requests,
        "idle": idle_summary,
        "during_logins": loaded_summary,
        "ratio_p50": round(loaded_summary["p50_ms"] / idle_summary["p50_ms"], 2),
        "ratio_p99": round(loaded_summary["p99_ms"] / idle_summary["p99_ms"], 2),
        "logins_per_second": round(sum(statuses.values()) / elapsed, 1),
        "login_statuses": {str(code): count for code, count in sorted(statuses.items())},
        "lane_niceness": env.get("TRAY_LOGIN_NICENESS", "default"),
        "login_alone": alone_summary,
        "login_beside_a_busy_process": beside_summary,
        "login_ratio_p50": round(beside_summary["p50_ms"] / alone_summary["p50_ms"], 2),
        "samples_ms": {
            "idle": idle,
            "during_logins": loaded,
            "login_alone": alone,
            "login_beside_a_busy_process": beside,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.login_stall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 requests per phase")
    parser.add_argument("--loops", type=int, default=8, help="concurrent login loops")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    options = parser.parse_args(argv)
    outcome = measure(
        loops=options.loops,
        requests=40 if options.quick else 200,
        logins=4 if options.quick else 15,
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(outcome, indent=1) + "\n")
    print("| phase | p50 ms | p99 ms | max ms |\n|---|---|---|---|")
    for phase in ("idle", "during_logins", "login_alone", "login_beside_a_busy_process"):
        row = outcome[phase]
        print(f"| {phase} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    print(
        f"ratio p50 {outcome['ratio_p50']}x, p99 {outcome['ratio_p99']}x; "
        f"{outcome['logins_per_second']} logins/s answered {outcome['login_statuses']}"
    )
    print(
        f"a login beside a busy process {outcome['login_ratio_p50']}x alone (p50), "
        f"lane niceness {outcome['lane_niceness']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
