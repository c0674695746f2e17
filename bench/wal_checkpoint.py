"""SQLite's WAL checkpoint in the publish lane's writer, or on a thread beside it (issue 14).

Run from the repository root::

    .venv/bin/python -m bench.wal_checkpoint              # 3 rounds of 2,000 publishes
    .venv/bin/python -m bench.wal_checkpoint --count 500 --rounds 1

One SQLite database is seeded as B3 seeds it (bench/mixed_traffic.py: 2,000 users
in four roles of 500 and projects of 50, plus the demo data). Then, each in a child
process on its own copy of that database, the publish lane's writer
(``publish_route.publish_batch``, one publish per call, as the lane writes them on
SQLite where group commit is off) replays the same 2,000 publishes in B3's mix
(70% one user, 20% a project, 8% a role, 2% everyone; Bearer, as admin), one after
the other on one thread, in three modes taking turns:

- ``auto``: ``TRAY_SQLITE_CHECKPOINT=0``, SQLite's automatic checkpoint every
  1,000 pages in the writer's commit (before this change);
- ``thread``: ``TRAY_SQLITE_CHECKPOINT=1``, the server's checkpointer
  (backend/sqlite_checkpoint.py) on its thread, started as the lifespan starts it;
- ``none``: no checkpoint at all (``wal_autocheckpoint=0``, no thread): the floor.

Reported per mode: publishes per second and the wall time of one publish (p50,
p99, max), over all rounds; and the WAL written per publish (what sizes
``WAL_RESET_BYTES``). Results go to ``bench/results/wal_checkpoint.json``
(``--output`` elsewhere) and a table on stdout. Not a suite profile: it pins
nothing and takes about a minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, BenchError, bench_env, percentile, prepare_database, run_cli
from bench.common import machine as describe_machine
from bench.mixed_traffic import PLAN_SEED, Layout, layout_seed_code, make_plan

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "wal_checkpoint.json"
USERS = 2000
WARMUP = 100
MODES = ("auto", "thread", "none")


def _mode_settings(mode: str) -> tuple[str, str, int | None]:
    """(kind, TRAY_SQLITE_CHECKPOINT, reset bytes) of a mode: ``auto``, ``none``,
    ``thread`` (the defaults) or ``thread:INTERVAL:MIB`` (another interval and bound)."""
    kind, _, rest = mode.partition(":")
    if kind != "thread":
        return kind, "0", None
    if not rest:
        return kind, "1", None
    interval, _, mib = rest.partition(":")
    return kind, interval, int(float(mib) * 1024 * 1024)


def _seed(env: dict[str, str]) -> list[int]:
    """B3's users, roles and projects; returns the project ids."""
    prepare_database(env)
    code = (
        "import json\n"
        + layout_seed_code(Layout(USERS))
        + "print(json.dumps([p.pk for p in made]))\n"
    )
    projects: list[int] = json.loads(run_cli(env, "manage", "shell", "-c", code).splitlines()[-1])
    return projects


def _audience(group: str, projects: Sequence[int]) -> dict[str, Any]:
    kind, _, name = group.partition(".")
    if kind == "user":
        return {"usernames": [f"b{name}"]}
    if kind == "project":
        return {"projects": [projects[int(name)]]}
    if kind == "role":
        return {"roles": [f"bench-{name}"]}
    return {"everyone": True}


def worker(mode: str, count: int, projects: list[int]) -> dict[str, Any]:
    """The child: the lane's writer on ``count`` publishes of B3's mix, one at a time."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    django.setup()
    from django.conf import settings
    from django.db import connection

    from backend import sqlite_checkpoint
    from backend.notifications.publish_route import Request, publish_batch
    from backend.users.models import User
    from backend.users.services import session_start

    kind, _, reset_bytes = _mode_settings(mode)
    if reset_bytes is not None:
        sqlite_checkpoint.WAL_RESET_BYTES = reset_bytes
    # As the lifespan does, before the first connection.
    checkpointer = sqlite_checkpoint.start_server_checkpointer()
    if (checkpointer is None) != (kind != "thread"):
        raise BenchError(f"{mode}: checkpointer {checkpointer!r}")
    if kind == "none":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
    token = session_start(user=User.objects.get(username="admin")).access
    authorization = f"Bearer {token}".encode()
    plan = make_plan(Layout(USERS), WARMUP + count, PLAN_SEED)
    requests = [
        Request(
            authorization,
            json.dumps({"audience": _audience(group, projects), "title": f"n{i}"}).encode(),
        )
        for i, group in enumerate(plan)
    ]
    wal = Path(str(settings.DATABASES["default"]["NAME"]) + "-wal")
    for request in requests[:WARMUP]:
        publish_batch([request], group_commit=False)
    times: list[float] = []
    started = time.perf_counter()
    for request in requests[WARMUP:]:
        before = time.perf_counter()
        (answer,) = publish_batch([request], group_commit=False)
        times.append(time.perf_counter() - before)
        if answer is None or answer.status != 201:
            raise BenchError(f"{mode}: a publish was not created: {answer!r}")
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        # Pages written to the WAL by the run (never reset: the bound is 64 MiB).
        wal_size = wal.stat().st_size if wal.exists() else 0
        cursor.execute("PRAGMA page_size")
        (page_size,) = cursor.fetchone()
    report: dict[str, Any] = {
        "mode": mode,
        "publishes": count,
        "seconds": elapsed,
        "times": times,
        "wal_bytes_at_end": wal_size,
        "page_size": page_size,
    }
    if checkpointer is not None:
        sqlite_checkpoint.stop_server_checkpointer()
        report["checkpointer"] = {
            "rounds": checkpointer.rounds,
            "resets": checkpointer.resets,
            "failures": checkpointer.failures,
            "longest_reset_ms": round(checkpointer.longest_reset * 1000, 3),
            "recent": [
                [c.mode, c.busy, c.wal_frames, c.copied, round(c.seconds * 1000, 2)]
                for c in checkpointer.recent
            ],
            "wal_file_bytes_at_end": wal_size,
        }
    return report


def _run(seed_dir: Path, scratch: Path, mode: str, count: int, projects: list[int]) -> Any:
    run_dir = scratch / f"run-{time.monotonic_ns()}"
    shutil.copytree(seed_dir, run_dir)
    env = bench_env(run_dir)
    env["TRAY_SQLITE_CHECKPOINT"] = _mode_settings(mode)[1]
    done = subprocess.run(
        [sys.executable, "-m", "bench.wal_checkpoint", "--worker", mode, str(count)],
        cwd=REPO_ROOT,
        env=env,
        input=json.dumps(projects),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(f"worker {mode} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(*, count: int, rounds: int, modes: Sequence[str] = MODES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-wal-checkpoint-") as scratch_name:
        scratch = Path(scratch_name)
        seed_dir = scratch / "seed"
        seed_dir.mkdir()
        projects = _seed(bench_env(seed_dir))
        runs: list[dict[str, Any]] = []
        for round_index in range(rounds):
            order = tuple(modes) if round_index % 2 == 0 else tuple(reversed(modes))
            for mode in order:
                runs.append(_run(seed_dir, scratch, mode, count, projects))
                print(
                    f"round {round_index + 1} {mode}: "
                    f"{runs[-1]['publishes'] / runs[-1]['seconds']:.0f}/s",
                    file=sys.stderr,
                )
    summary: dict[str, Any] = {}
    for mode in modes:
        mine = [run for run in runs if run["mode"] == mode]
        times = [t for run in mine for t in run["times"]]
        seconds = sum(run["seconds"] for run in mine)
        summary[mode] = {
            "publishes": len(times),
            "publishes_per_second": round(len(times) / seconds, 1),
            "per_round_per_second": [round(r["publishes"] / r["seconds"], 1) for r in mine],
            "mean_ms": round(seconds / len(times) * 1000, 3),
            "p50_ms": round(percentile(times, 50) * 1000, 3),
            "p99_ms": round(percentile(times, 99) * 1000, 3),
            "p999_ms": round(percentile(times, 99.9) * 1000, 3),
            "max_ms": round(max(times) * 1000, 3),
            "checkpointer": [run.get("checkpointer") for run in mine if "checkpointer" in run],
        }
        if mode == "none":
            summary[mode]["wal_bytes_per_publish"] = round(
                sum(run["wal_bytes_at_end"] for run in mine)
                / sum(r["publishes"] + WARMUP for r in mine)
            )
    return {
        "benchmark": "wal_checkpoint",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "count": count,
        "rounds": rounds,
        "users": USERS,
        "machine": describe_machine(["django"]),
        "load_average": os.getloadavg(),
        "modes": summary,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wal_checkpoint", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="publishes per run [2000]")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode, in turns [3]")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated: auto, none, thread, thread:INTERVAL_S:RESET_MIB [%(default)s]",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "COUNT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        mode, count = options.worker
        report = worker(mode, int(count), json.loads(sys.stdin.read()))
        print(json.dumps(report))
        return 0
    modes = [mode.strip() for mode in options.modes.split(",") if mode.strip()]
    result = measure(count=options.count, rounds=options.rounds, modes=modes)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'mode':16} {'/s':>8} {'mean ms':>8} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>7}")
    for mode, row in result["modes"].items():
        print(
            f"{mode:16} {row['publishes_per_second']:8.0f} {row['mean_ms']:8.2f} "
            f"{row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['p999_ms']:7.2f} {row['max_ms']:7.1f}"
        )
    if "none" in result["modes"]:
        print(f"WAL per publish: {result['modes']['none']['wal_bytes_per_publish']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
