"""Server CPU of one publish over HTTP, beside the in-process service it calls (issue 14).

Run from the repository root::

    .venv/bin/python -m bench.publish_cpu            # 1,000 publishes per identity
    .venv/bin/python -m bench.publish_cpu --quick    # 200

The product's server (``python -m backend.cli serve --demo --port 0``, embedded
default, pinned to CPU 0) takes ``POST /api/notifications/`` one request at a
time from this process (CPU 1, one keep-alive connection), to alice alone
(``{"users": [id]}``), first with an integration key (``Authorization:
Api-Key``), then as the staff user ``admin`` (``Authorization: Bearer``). The
server's CPU per request is its utime+stime (``/proc/PID/stat``) over the
requests, less what it burns idle over the same time (its database watch and
presence timers, measured first in the same run), over the number of requests.

Beside it, in the same run, a child process with the same settings and its own
copy of the same database (migrated, demo data, one key) calls
``backend.notifications.services.notification_create`` with what the view
passes for each identity (``Audience(users=(alice,))``, the key's publisher and
no actor; admin as actor and publisher), and reports its CPU per call
(``time.process_time``). The ratio HTTP / service is the figure of issue 14
(target: at most 1.5). The same child then runs the publish lane's writer
(``publish_route.publish_batch``) on batches of 16 publishes, what the writer
gets with 16 publishers waiting, with group commit on and off in turns, and
reports wall and CPU time per publish: whether one transaction per batch pays
on this database, measured without HTTP's noise.

With ``--concurrent N`` (default 16; 0 skips it) the server also takes the
same publishes from N concurrent keep-alive clients (integration key), and the
rate and server CPU per publish are reported (the publish lane's group commit,
backend/notifications/publish_lane.py, decides there). ``--postgres`` runs the
whole comparison on a private PostgreSQL cluster (bench/postgres.py) instead of
the SQLite file; ``--set TRAY_NAME=VALUE`` gives the server (and the service's
process) a setting, e.g. ``--set TRAY_PUBLISH_GROUP_COMMIT=on`` or
``--set TRAY_PUBLISH_FAST_PATH=0`` (the full stack, as before issue 14).

Results go to ``bench/results/publish_cpu.json`` (``--output`` elsewhere) and a
table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import (
    REPO_ROOT,
    BenchError,
    HttpConnection,
    bench_env,
    cpu_seconds,
    http_request,
    percentile,
    pin_to_client_cpu,
    pin_to_server_cpu,
    prepare_database,
    run_cli,
    start_server,
    stop_server,
)
from bench.common import machine as describe_machine

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "publish_cpu.json"
PUBLISH = "/api/notifications/"
TARGET_RATIO = 1.5
IDLE_WINDOW_S = 2.0
# The pause before each paced service call: about a sequential publish's round trip.
PACE_S = 0.001


def _alice_id(env: dict[str, str]) -> int:
    out = run_cli(
        env,
        "manage",
        "shell",
        "-c",
        "from backend.users.models import User; print(User.objects.get(username='alice').pk)",
    )
    return int(out.strip().splitlines()[-1])


def _create_key(env: dict[str, str]) -> str:
    return run_cli(env, "create-api-key", "bench").strip().split()[-1]


def _body(alice: int, index: int) -> dict[str, Any]:
    return {"audience": {"users": [alice]}, "title": f"cpu {index}", "message": "bench"}


def _sequential(
    client: httpx.Client, pid: int, headers: dict[str, str], alice: int, count: int, idle: float
) -> dict[str, Any]:
    """``count`` publishes one after another; server CPU per request, less idle CPU."""
    latencies: list[float] = []
    started_cpu, started = cpu_seconds(pid), time.monotonic()
    for index in range(count):
        sent = time.perf_counter()
        answer = client.post(PUBLISH, json=_body(alice, index), headers=headers)
        latencies.append((time.perf_counter() - sent) * 1000)
        if answer.status_code != 201 or answer.json()["recipients"] != 1:
            raise BenchError(f"publish #{index}: {answer.status_code} {answer.text}")
    elapsed = time.monotonic() - started
    spent = cpu_seconds(pid) - started_cpu - idle * elapsed
    return {
        "requests": count,
        "server_cpu_ms_per_request": round(spent / count * 1000, 3),
        "latency_ms_p50": round(percentile(latencies, 50), 3),
        "latency_ms_p99": round(percentile(latencies, 99), 3),
    }


async def _concurrent_async(
    base_url: str, headers: dict[str, str], alice: int, count: int, clients: int
) -> tuple[float, dict[int, int]]:
    """``count`` publishes from ``clients`` keep-alive connections at once (prebuilt
    requests, ``HttpConnection``: httpx's own CPU kept the server idle part of the time)."""
    statuses: dict[int, int] = {}
    next_index = iter(range(count))
    url = urlsplit(base_url)
    connections = [HttpConnection.to(base_url) for _ in range(clients)]
    sent = {**headers, "Content-Type": "application/json"}

    async def worker(connection: HttpConnection) -> None:
        for index in next_index:
            raw = http_request(
                "POST", PUBLISH, url.netloc, sent, json.dumps(_body(alice, index)).encode()
            )
            status, _ = await connection.request(raw)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return time.monotonic() - started, statuses


def _concurrent(
    base_url: str, pid: int, headers: dict[str, str], alice: int, count: int, clients: int
) -> dict[str, Any]:
    started_cpu = cpu_seconds(pid)
    elapsed, statuses = asyncio.run(_concurrent_async(base_url, headers, alice, count, clients))
    spent = cpu_seconds(pid) - started_cpu
    created = statuses.get(201, 0)
    return {
        "clients": clients,
        "requests": count,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "created_per_s": round(created / elapsed, 1),
        "server_cpu_ms_per_created": round(spent / max(created, 1) * 1000, 3),
        # The server's share of its CPU over the run: near 1, it never waited for work.
        "server_busy": round(spent / elapsed, 3),
    }


def _idle_rate(pid: int) -> float:
    """The server's CPU seconds per second with nothing to do (timers, database watch)."""
    started_cpu, started = cpu_seconds(pid), time.monotonic()
    time.sleep(IDLE_WINDOW_S)
    return (cpu_seconds(pid) - started_cpu) / (time.monotonic() - started)


def _service(env: dict[str, str], count: int, warmup: int, key: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.publish_cpu", "--worker", str(count), str(warmup), key],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=pin_to_server_cpu,
    )
    if done.returncode != 0:
        raise BenchError(f"service worker failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def worker(count: int, warmup: int, raw_key: str) -> dict[str, Any]:
    """The child: ``notification_create`` as the view calls it, CPU per call; then
    the publish lane's writer (``publish_batch``) on batches of GROUP_BATCH, with
    and without group commit, taking turns."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    django.setup()
    from backend.notifications.models import ApiKey
    from backend.notifications.selectors import Audience
    from backend.notifications.services import (
        api_key_publisher,
        notification_create,
        user_publisher,
    )
    from backend.users.models import User

    alice = User.objects.get(username="alice")
    admin = User.objects.get(username="admin")
    key = ApiKey.objects.get(name="bench")
    callers = {
        "api_key": {"actor": None, "publisher": api_key_publisher(key)},
        "bearer": {"actor": admin, "publisher": user_publisher(admin)},
    }
    audience = Audience(users=(alice.pk,))
    report: dict[str, Any] = {}
    for name, caller in callers.items():
        for index in range(warmup):
            notification_create(audience=audience, title=f"warm {index}", **caller)  # type: ignore[arg-type]
        started = time.process_time()
        for index in range(count):
            result = notification_create(
                audience=audience,
                title=f"cpu {index}",
                message="bench",
                **caller,  # type: ignore[arg-type]
            )
            if result.recipient_count != 1:
                raise BenchError(f"#{index} reached {result.recipient_count} users")
        spent = time.process_time() - started
        report[name] = {"calls": count, "cpu_ms_per_call": round(spent / count * 1000, 3)}
    # The same calls with the processor left idle for PACE_S before each, as a server
    # answering one request at a time is between them: what idling costs here.
    spent = 0.0
    for index in range(count):
        time.sleep(PACE_S)
        started = time.process_time()
        notification_create(audience=audience, title=f"paced {index}", **callers["api_key"])  # type: ignore[arg-type]
        spent += time.process_time() - started
    report["api_key_paced"] = {
        "calls": count,
        "pause_ms": PACE_S * 1000,
        "cpu_ms_per_call": round(spent / count * 1000, 3),
    }
    report["group_commit"] = _group_commit(raw_key, alice.pk, count)
    return report


GROUP_BATCH = 16
GROUP_ROUNDS = 4


def _group_commit(raw_key: str, alice: int, count: int) -> dict[str, Any]:
    """Wall and CPU time per publish of ``publish_batch`` over batches of GROUP_BATCH
    (what the lane's writer gets with 16 publishers waiting), on and off in turns."""
    from backend.notifications.publish_route import Request, publish_batch

    authorization = f"Api-Key {raw_key}".encode()
    batches = max(1, count // GROUP_BATCH // GROUP_ROUNDS)
    totals = {mode: {"wall": 0.0, "cpu": 0.0, "publishes": 0} for mode in ("on", "off")}
    for round_index in range(GROUP_ROUNDS):
        for mode in ("off", "on") if round_index % 2 == 0 else ("on", "off"):
            requests = [
                [
                    Request(authorization, json.dumps(_body(alice, b * GROUP_BATCH + i)).encode())
                    for i in range(GROUP_BATCH)
                ]
                for b in range(batches)
            ]
            started, started_cpu = time.perf_counter(), time.process_time()
            for batch in requests:
                answers = publish_batch(batch, group_commit=mode == "on")
                if any(answer is None or answer.status != 201 for answer in answers):
                    raise BenchError(f"group commit {mode}: a publish was not created")
            totals[mode]["wall"] += time.perf_counter() - started
            totals[mode]["cpu"] += time.process_time() - started_cpu
            totals[mode]["publishes"] += batches * GROUP_BATCH
    return {
        "batch": GROUP_BATCH,
        **{
            mode: {
                "publishes": int(row["publishes"]),
                "wall_ms_per_publish": round(row["wall"] / row["publishes"] * 1000, 3),
                "cpu_ms_per_publish": round(row["cpu"] / row["publishes"] * 1000, 3),
            }
            for mode, row in totals.items()
        },
    }


def measure(
    *, count: int, warmup: int, concurrent: int, postgres: bool, settings: dict[str, str]
) -> dict[str, Any]:
    pin_to_client_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-publish-cpu-") as scratch_name:
        scratch = Path(scratch_name)
        if postgres:
            from bench.postgres import postgres_cluster

            (scratch / "pg").mkdir()
            with postgres_cluster(scratch / "pg") as cluster:
                return _measure_on(
                    scratch,
                    lambda name: cluster.create_database(name),
                    count=count,
                    warmup=warmup,
                    concurrent=concurrent,
                    database="postgresql",
                    settings=settings,
                )
        return _measure_on(
            scratch,
            None,
            count=count,
            warmup=warmup,
            concurrent=concurrent,
            database="sqlite",
            settings=settings,
        )


def _measure_on(
    scratch: Path,
    new_database: Any,
    *,
    count: int,
    warmup: int,
    concurrent: int,
    database: str,
    settings: dict[str, str],
) -> dict[str, Any]:
    envs: dict[str, dict[str, str]] = {}
    keys: dict[str, str] = {}
    for role in ("server", "service"):
        data = scratch / role
        data.mkdir()
        env = bench_env(data)
        env["TRAY_ACCESS_TOKEN_MINUTES"] = "240"
        env.update(settings)
        if new_database is not None:
            env["DATABASE_URL"] = new_database(f"publish_cpu_{role}")
        prepare_database(env)
        keys[role] = _create_key(env)
        envs[role] = env
    alice = _alice_id(envs["server"])
    service = _service(envs["service"], count, warmup, keys["service"])
    server = start_server(
        "ours",
        [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"],
        envs["server"],
        scratch / "server.log",
    )
    pid = server.process.pid
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            access = client.post(
                "/api/auth/token/", json={"username": "admin", "password": "demo"}
            ).json()["access"]
            identities = {
                "api_key": {"Authorization": f"Api-Key {keys['server']}"},
                "bearer": {"Authorization": f"Bearer {access}"},
            }
            for headers in identities.values():
                for index in range(warmup):
                    client.post(PUBLISH, json=_body(alice, index), headers=headers)
            idle = _idle_rate(pid)
            http = {
                name: _sequential(client, pid, headers, alice, count, idle)
                for name, headers in identities.items()
            }
        together = (
            _concurrent(server.base_url, pid, identities["api_key"], alice, count * 10, concurrent)
            if concurrent
            else None
        )
    finally:
        stop_server(server)
    ratios = {
        name: round(http[name]["server_cpu_ms_per_request"] / service[name]["cpu_ms_per_call"], 2)
        for name in http
    }
    service_calls = {name: service[name] for name in http}
    service_calls["api_key_paced"] = service["api_key_paced"]
    # One at a time the server waits for every request, and on this machine the same
    # code costs more CPU after a wait (the paced service series says how much); with
    # the publishers at once it never waits, as the service's own loop never does.
    concurrent_ratio = (
        round(together["server_cpu_ms_per_created"] / service["api_key"]["cpu_ms_per_call"], 2)
        if together
        else None
    )
    paced_ratio = round(
        http["api_key"]["server_cpu_ms_per_request"] / service["api_key_paced"]["cpu_ms_per_call"],
        2,
    )
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(["django", "uvicorn", "djangorestframework"]),
        "database": database,
        "settings": settings,
        "requests_per_identity": count,
        "server_idle_cpu_ms_per_s": round(idle * 1000, 3),
        "http": http,
        "service": service_calls,
        "lane_writer_group_commit": service["group_commit"],
        "ratio_http_to_service": ratios,
        "ratio_sequential_to_paced_service": paced_ratio,
        "ratio_concurrent_to_service": concurrent_ratio,
        "target_ratio": TARGET_RATIO,
        # The target's figure: the publishers at once (sequential when not measured).
        "met": (
            concurrent_ratio <= TARGET_RATIO
            if concurrent_ratio is not None
            else all(ratio <= TARGET_RATIO for ratio in ratios.values())
        ),
        "concurrent": together,
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--worker"]:
        print(json.dumps(worker(int(arguments[1]), int(arguments[2]), arguments[3])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.publish_cpu", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 publishes per identity")
    parser.add_argument("--concurrent", type=int, default=16, help="clients at once (0: skip)")
    parser.add_argument("--postgres", action="store_true", help="on a private PostgreSQL")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TRAY_NAME=VALUE",
        help="a server setting for the run, e.g. TRAY_PUBLISH_GROUP_COMMIT=on (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    options = parser.parse_args(arguments)
    settings = dict(item.split("=", 1) for item in options.set)
    if not all(name.startswith("TRAY_") for name in settings):
        parser.error("--set takes TRAY_* settings only")
    count = 200 if options.quick else 1000
    outcome = measure(
        count=count,
        warmup=max(20, count // 10),
        concurrent=options.concurrent,
        postgres=options.postgres,
        settings=settings,
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(outcome, indent=1) + "\n")
    print(f"database: {outcome['database']} {settings or ''}")
    print("| identity | server CPU ms/request | service CPU ms/call | ratio | p50 ms |")
    print("|---|---|---|---|---|")
    for name, row in outcome["http"].items():
        print(
            f"| {name} | {row['server_cpu_ms_per_request']} | "
            f"{outcome['service'][name]['cpu_ms_per_call']} | "
            f"{outcome['ratio_http_to_service'][name]}x | {row['latency_ms_p50']} |"
        )
    paced = outcome["service"]["api_key_paced"]
    print(
        f"service paced ({paced['pause_ms']} ms idle before each call): "
        f"{paced['cpu_ms_per_call']} ms CPU per call; sequential api_key over it: "
        f"{outcome['ratio_sequential_to_paced_service']}x"
    )
    if outcome["concurrent"]:
        row = outcome["concurrent"]
        print(
            f"{row['clients']} clients at once: {row['created_per_s']} created/s, "
            f"{row['server_cpu_ms_per_created']} ms server CPU each "
            f"({outcome['ratio_concurrent_to_service']}x the service), server busy "
            f"{row['server_busy']:.0%}, statuses {row['statuses']}"
        )
    group = outcome["lane_writer_group_commit"]
    print(
        f"lane writer, batches of {group['batch']}: group commit on "
        f"{group['on']['wall_ms_per_publish']} ms wall / {group['on']['cpu_ms_per_publish']} ms "
        f"CPU per publish, off {group['off']['wall_ms_per_publish']} / "
        f"{group['off']['cpu_ms_per_publish']}"
    )
    print(
        f"target <= {TARGET_RATIO}x (the clients at once): {'met' if outcome['met'] else 'not met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
