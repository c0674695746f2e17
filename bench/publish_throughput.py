"""Publish throughput: notifications per second into single-user inboxes (issue 5).

Run from the repository root::

    .venv/bin/python -m bench.publish_throughput                  # quick: 1,000 per database
    .venv/bin/python -m bench.publish_throughput --profile full   # 5,000 per database
    .venv/bin/python -m bench.publish_throughput --smoke          # 20, proves it runs

What is measured, per database (the embedded default's SQLite file, and a
private PostgreSQL cluster with fsync and synchronous_commit on, bench/postgres.py):

- **ours, HTTP**: the real server (``python -m backend.cli serve --demo --port
  0``, pinned to CPU 0, where PostgreSQL runs too) takes ``POST /api/notifications/`` from
  the staff user ``admin`` (a Bearer token), each to one user by username,
  rotating over many users, from CONCURRENCY keep-alive HTTP clients in this
  process (CPU 1). Throughput is the fixed count of notifications over the
  time from the first request to the last response, after a warm-up.
- **ours, service in-process**: ``backend.notifications.services.notification_create``
  called in a loop by one thread of a child process on CPU 0 (Django set up as
  the server sets it up, no HTTP, no ASGI), to separate the cost of HTTP, DRF
  and ASGI from the cost of the service and its database work.
- **ours, in batches** (issue 14): the same server taking ``POST
  /api/notifications/batch/`` (``{"notifications": [...]}``, ``batch_size``
  one-user bodies a request, from ``batch_concurrency`` clients), and
  ``notification_create_batch`` called in-process by one thread with
  ``batch_size`` items a call. Where the tree has no batch code (decided by
  importing it and resolving the URL, never by a response), the rows say
  "not in this tree" and carry no figure.
- **ratios** (issue 14, all from the same run): the HTTP batch rate at least
  70% of the in-process one-at-a-time rate; the server's CPU per
  notification over ``POST /api/notifications/`` (its process's utime +
  stime over the timed requests) at most 1.5x the in-process service's
  (the calling process's over the timed calls); the database server's CPU
  (PostgreSQL) in neither.
- **peers, the database's floor**: a bare driver (``sqlite3`` / ``psycopg``) in
  a child process on CPU 0 writing what the service writes for a one-user
  notification, one transaction each: the Message row, the user's seq (and unread
  count) bump and the Inbox row, into the product's own migrated schema (same tables,
  indexes and constraints), with the product's connection settings (SQLite:
  ``BEGIN IMMEDIATE``, journal_mode=WAL, synchronous=NORMAL, foreign_keys=ON).
  SQLite also runs with synchronous=FULL, the price of a commit that survives
  power loss (with NORMAL, a WAL commit is not fsynced until a checkpoint);
  PostgreSQL with 1 connection (its commit latency) and with CONCURRENCY
  connections (group commit), as the server gets.

What-ifs (not with ``--smoke``; ``raw["what_if"]`` only, never a row): ours
over HTTP again, WHAT_IF_COUNT notifications, under a settings module layered
on the product's (backend/ untouched), to measure a proposed fix beside the
product as shipped: SQLite without WhiteNoise's sync-only middleware;
PostgreSQL with ``CONN_MAX_AGE=0`` and with Django's psycopg pool (needs
``psycopg_pool``; skipped and said so in ``raw`` when it is not installed).

Every series starts from its own copy of one prepared database (migrated,
demo data, USERS fresh users) and, after it ran, every notification is checked
in the database: one Message and one Inbox row per notification published,
each user's seqs 1..k with no gap; a database holding anything else than the
notifications answered 201 is a BenchError. A request that did not answer 201
with one recipient means no throughput is claimed: the row's ``ours`` is None
and ``met`` false, with the failures in its metric. Every number reported is
for committed notifications.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import (
    REPO_ROOT,
    BenchError,
    HttpConnection,
    Outcome,
    bench_env,
    cpu_seconds,
    http_request,
    login,
    percentile,
    pin_to_client_cpu,
    pin_to_server_cpu,
    prepare_database,
    result,
    run_cli,
    start_server,
    stop_server,
)
from bench.postgres import PostgresCluster, postgres_cluster

USERNAME_PREFIX = "pub"
TITLE_PREFIX = "pub "
TARGET = "report; no target in the issue (met = every notification committed and counted)"
UNIT = "notifications/s"
HTTP_SINGLE = "ours (HTTP)"
SERVICE_SINGLE = "ours (service in-process)"
HTTP_BATCH = "ours (HTTP batch)"
SERVICE_BATCH = "ours (service batch in-process)"
# Issue 14: a batch over HTTP commits at least 70% of the in-process (one at a time)
# rate, and a single publish over HTTP costs the server at most 1.5x the CPU the
# in-process service spends on it.
BATCH_SHARE_TARGET = 0.7
HTTP_CPU_RATIO_TARGET = 1.5
# Said in a row's metric when the batch code (interfaces.md items 2 and 3) is not in
# the tree under test: nothing to measure, as opposed to a measured failure.
NOT_IN_TREE = "not in this tree"

# A full run takes minutes; the default 10-minute access token must not expire mid-run.
_TOKEN_MINUTES = "240"
_SQLITE_TIMEOUT_SECONDS = 20  # the product's "timeout" option


@dataclass(frozen=True)
class Settings:
    """The counts of one profile.

    Attributes:
        count: Notifications measured per series.
        warmup: Notifications sent first and not timed (they are verified too).
        users: Recipients rotated over (notification i goes to user i mod users).
        concurrency: HTTP clients at once (and bare psycopg connections).
    """

    count: int
    warmup: int
    users: int
    concurrency: int
    # Notifications per batch (POST /api/notifications/batch/, notification_create_batch)
    # and the HTTP clients sending batches at once.
    batch_size: int = 100
    batch_concurrency: int = 4


PROFILES = {
    "quick": Settings(count=1_000, warmup=100, users=100, concurrency=16),
    # 5,000, not 10,000: ours over HTTP runs at tens per second here, and the
    # module must finish in about ten minutes on this 2-core machine.
    "full": Settings(count=5_000, warmup=200, users=200, concurrency=16),
}
SMOKE = Settings(count=20, warmup=4, users=5, concurrency=4, batch_size=5, batch_concurrency=2)


@dataclass
class Series:
    """One measured series: a rate, its samples and what it cost."""

    name: str
    count: int
    warmup: int
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float]
    cpu: dict[str, float]
    extra: dict[str, Any]
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.count / self.elapsed_s

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "name": self.name,
            "count": self.count,
            "warmup": self.warmup,
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed_s, 4),
            "rate_per_s": round(self.rate, 2),
            "latency_ms_p50": round(percentile(lat, 50), 3),
            "latency_ms_p99": round(percentile(lat, 99), 3),
            "cpu": {key: round(value, 3) for key, value in self.cpu.items()},
            "error": self.error,
            **self.extra,
            "latencies_ms": [round(value, 3) for value in lat],
        }


# --- databases ---------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """Where one series writes: the server's environment and how to reach its database."""

    env: dict[str, str]
    sqlite_path: Path | None = None
    dsn: str | None = None

    def connect_target(self) -> str:
        """What a bare worker connects to: the SQLite file or the PostgreSQL DSN."""
        if self.sqlite_path is not None:
            return str(self.sqlite_path)
        assert self.dsn is not None
        return self.dsn


def _environment(data_dir: Path, dsn: str | None) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = bench_env(data_dir)
    env["TRAY_ACCESS_TOKEN_MINUTES"] = _TOKEN_MINUTES
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return env


def _create_users(env: dict[str, str], users: int) -> None:
    # User.objects.create (not bulk_create): its post_save signal creates each
    # user's InboxSequence row, as for any user the product creates.
    code = (
        "from django.db import transaction\n"
        "from backend.users.models import User\n"
        "with transaction.atomic():\n"
        f"    for i in range({users}):\n"
        f"        User.objects.create(username=f'{USERNAME_PREFIX}{{i:05d}}')\n"
    )
    run_cli(env, "manage", "shell", "-c", code)


def _sqlite_template(workdir: Path, users: int) -> Path:
    """Migrate, seed the demo data and add the users once; return the template file."""
    env = _environment(workdir / "template", None)
    prepare_database(env)
    _create_users(env, users)
    return workdir / "template" / "db.sqlite3"


def _sqlite_copy(template: Path, data_dir: Path) -> Database:
    env = _environment(data_dir, None)
    target = data_dir / "db.sqlite3"
    # The backup API copies a consistent database whatever the state of its WAL.
    with sqlite3.connect(template) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    source.close()
    copy.close()
    return Database(env=env, sqlite_path=target)


def _postgres_template(cluster: PostgresCluster, workdir: Path, users: int) -> str:
    dsn = cluster.create_database("pub_template")
    env = _environment(workdir / "template", dsn)
    prepare_database(env)
    _create_users(env, users)
    return "pub_template"


def _postgres_copy(cluster: PostgresCluster, template: str, name: str, data_dir: Path) -> Database:
    import psycopg

    with psycopg.connect(cluster.admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    dsn = cluster.dsn(name)
    return Database(env=_environment(data_dir, dsn), dsn=dsn)


def _count_rows(database: Database) -> list[tuple[int, int, int, int]]:
    """Per recipient of the benchmark's notifications: (user, rows, lowest seq, highest seq).

    On SQLite the rows a publish left pending (backend/notifications/inbox_log.py) count:
    they are as durable, and a server stopped at once had no time to write them.
    """
    query = (
        "WITH inbox AS (SELECT user_id, message_id, seq FROM notifications_inbox{pending}) "
        "SELECT i.user_id, COUNT(*), MIN(i.seq), MAX(i.seq) FROM inbox i "
        "JOIN notifications_message m ON m.id = i.message_id "
        "WHERE m.title LIKE {p} GROUP BY i.user_id ORDER BY i.user_id"
    )
    if database.sqlite_path is not None:
        with sqlite3.connect(database.sqlite_path) as connection:
            pending = (
                " UNION ALL SELECT j.value ->> 0, p.message_id, j.value ->> 1 "
                "FROM notifications_inboxpending p, json_each(p.rows) j"
            )
            rows = connection.execute(
                query.format(p="?", pending=pending), [TITLE_PREFIX + "%"]
            ).fetchall()
        connection.close()
    else:
        import psycopg

        assert database.dsn is not None
        with psycopg.connect(database.dsn) as pg:
            rows = pg.execute(query.format(p="%s", pending=""), [TITLE_PREFIX + "%"]).fetchall()
    return [(int(u), int(n), int(lo), int(hi)) for u, n, lo, hi in rows]


def _count_messages(database: Database) -> int:
    query = "SELECT COUNT(*) FROM notifications_message WHERE title LIKE {p}"
    if database.sqlite_path is not None:
        with sqlite3.connect(database.sqlite_path) as connection:
            row = connection.execute(query.format(p="?"), [TITLE_PREFIX + "%"]).fetchone()
        connection.close()
    else:
        import psycopg

        assert database.dsn is not None
        with psycopg.connect(database.dsn) as pg:
            row = pg.execute(query.format(p="%s"), [TITLE_PREFIX + "%"]).fetchone()
    assert row is not None
    return int(row[0])


def verify(database: Database, *, published: int, users: int, series: str) -> dict[str, Any]:
    """Check that every published notification is committed, once, gap-free per user.

    Raises:
        BenchError: a row is missing or extra, or a user's seqs are not 1..k.
    """
    rows = _count_rows(database)
    inbox_rows = sum(n for _, n, _, _ in rows)
    messages = _count_messages(database)
    gaps = [(u, n, lo, hi) for u, n, lo, hi in rows if lo != 1 or hi != n]
    if inbox_rows != published or messages != published or len(rows) > users or gaps:
        raise BenchError(
            f"{series}: published {published} notifications to at most {users} users, "
            f"found {messages} messages and {inbox_rows} inbox rows for {len(rows)} users; "
            f"users whose seqs are not 1..k: {gaps[:5]}"
        )
    return {"verified_messages": messages, "verified_inbox_rows": inbox_rows, "users": len(rows)}


# --- ours over HTTP ----------------------------------------------------------------


async def _publish_all(
    base_url: str, *, settings: Settings, usernames: list[str], timed: Callable[[], None]
) -> tuple[float, list[float], list[str]]:
    """Warm up, then publish ``settings.count`` notifications from CONCURRENCY clients.

    The clients are keep-alive connections sending prebuilt requests
    (``HttpConnection``), not httpx: httpx cost this process ~1 ms of CPU a request,
    so 16 of them kept the server a third idle, and a server that waits between
    requests on this machine pays for it in CPU (docs/performance.md, "The single
    publish at load"): the rate and the CPU per publish measured the generator.

    Returns the measured window in seconds, each measured request's time in ms,
    and the failures (anything but 201 with one recipient).
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        token = await login(client, "admin")
    url = urlsplit(base_url)
    host = url.netloc
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    failures: list[str] = []

    def request(index: int) -> bytes:
        body = {
            "audience": {"usernames": [usernames[index % len(usernames)]]},
            "title": f"{TITLE_PREFIX}{index}",
        }
        return http_request("POST", "/api/notifications/", host, headers, json.dumps(body).encode())

    async def publish(connection: HttpConnection, index: int) -> float:
        raw = request(index)
        started = time.perf_counter()
        status, answer = await connection.request(raw)
        took = time.perf_counter() - started
        if status != 201 or json.loads(answer).get("recipients") != 1:
            failures.append(f"#{index}: HTTP {status} {answer[:200]!r}")
        return took * 1000

    connections = [HttpConnection.to(base_url) for _ in range(settings.concurrency)]

    async def batch(first: int, total: int) -> list[float]:
        indexes = iter(range(first, first + total))
        samples: list[float] = []

        async def worker(connection: HttpConnection) -> None:
            for index in indexes:
                samples.append(await publish(connection, index))

        await asyncio.gather(*(worker(connection) for connection in connections))
        return samples

    try:
        await batch(0, settings.warmup)
        timed()
        started = time.perf_counter()
        samples = await batch(settings.warmup, settings.count)
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
    return elapsed, samples, failures


async def _publish_batches(
    base_url: str, *, settings: Settings, usernames: list[str], timed: Callable[[], None]
) -> tuple[float, list[float], list[str]]:
    """Warm up, then publish ``settings.count`` notifications in batches of
    ``batch_size`` through ``POST /api/notifications/batch/`` (interfaces.md item 3)
    from ``batch_concurrency`` clients.

    Returns the measured window in seconds, each measured request's time in ms,
    and the failures (an item not answered "created" with one recipient).
    """
    size = settings.batch_size
    limits = httpx.Limits(
        max_connections=settings.batch_concurrency,
        max_keepalive_connections=settings.batch_concurrency,
    )
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=300) as client:
        token = await login(client, "admin")
        client.headers["Authorization"] = f"Bearer {token}"
        failures: list[str] = []

        async def publish(first: int, end: int) -> float:
            body = {
                "notifications": [
                    {
                        "audience": {"usernames": [usernames[index % len(usernames)]]},
                        "title": f"{TITLE_PREFIX}{index}",
                    }
                    for index in range(first, end)
                ]
            }
            started = time.perf_counter()
            response = await client.post("/api/notifications/batch/", json=body)
            took = time.perf_counter() - started
            if response.status_code != 200:
                failures.extend(
                    f"#{index}: HTTP {response.status_code} {response.text[:200]}"
                    for index in range(first, end)
                )
                return took * 1000
            results = response.json().get("results", [])
            answered = {int(item.get("index", -1)): item for item in results}
            for offset in range(end - first):
                item = answered.get(offset)
                if item is None or item.get("status") != "created" or item.get("recipients") != 1:
                    failures.append(f"#{first + offset}: {json.dumps(item)[:200]}")
            return took * 1000

        async def batches(first: int, total: int) -> list[float]:
            starts = iter(range(first, first + total, size))
            samples: list[float] = []

            async def worker() -> None:
                for start in starts:
                    samples.append(await publish(start, min(start + size, first + total)))

            await asyncio.gather(*(worker() for _ in range(settings.batch_concurrency)))
            return samples

        await batches(0, settings.warmup)
        timed()
        started = time.perf_counter()
        samples = await batches(settings.warmup, settings.count)
        elapsed = time.perf_counter() - started
    return elapsed, samples, failures


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_http(
    database: Database,
    *,
    settings: Settings,
    log_path: Path,
    cluster: PostgresCluster | None,
    name: str = HTTP_SINGLE,
    batch: bool = False,
) -> Series:
    """Ours: the real server publishing through ``POST /api/notifications/``
    (``batch``: ``POST /api/notifications/batch/``, ``batch_size`` a request).

    Requests the server refuses do not stop the run: the series then carries
    ``error`` (how many failed, and the server's last error line) and the
    database must hold exactly the notifications that were answered 201.

    Raises:
        BenchError: the database holds other rows than the 201 answers promised.
    """
    usernames = [f"{USERNAME_PREFIX}{i:05d}" for i in range(settings.users)]
    sessions_before = _pg_sessions(cluster, database)
    server = start_server(
        name,
        [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"],
        database.env,
        log_path,
    )
    extra: dict[str, Any] = {}
    try:
        # The window's CPU includes the warm-up's; both are the same work per request.
        server_cpu = cpu_seconds(server.process.pid)
        pg_cpu = cluster.cpu_seconds() if cluster is not None else 0.0
        client_cpu = _client_cpu()
        wall = time.perf_counter()
        publish = _publish_batches if batch else _publish_all
        # The server's CPU when the timed requests start (after login and warm-up).
        marks: list[float] = []
        elapsed, samples, failures = asyncio.run(
            publish(
                server.base_url,
                settings=settings,
                usernames=usernames,
                timed=lambda: marks.append(cpu_seconds(server.process.pid)),
            )
        )
        server_timed_s = cpu_seconds(server.process.pid) - marks[0]
        wall = time.perf_counter() - wall
        cpu = {
            "window_s": wall,
            "server_s": cpu_seconds(server.process.pid) - server_cpu,
            "load_generator_s": _client_cpu() - client_cpu,
        }
        if cluster is not None:
            cpu["postgres_s"] = cluster.cpu_seconds() - pg_cpu
            extra["postgres_connections_open_after_load"] = _pg_backends(cluster, database)
    finally:
        stop_server(server)
    attempts = settings.warmup + settings.count
    # CPU per notification over the whole window (warm-up and login included).
    extra["server_cpu_ms_per_request"] = round(cpu["server_s"] / attempts * 1000, 3)
    # CPU per notification over the timed requests only (no login, no warm-up).
    extra["server_cpu_ms_per_notification"] = round(server_timed_s / settings.count * 1000, 3)
    if batch:
        extra["batch_size"] = settings.batch_size
    if cluster is not None:
        extra["postgres_cpu_ms_per_request"] = round(cpu["postgres_s"] / attempts * 1000, 3)
    published = attempts - len(failures)
    extra.update(verify(database, published=published, users=settings.users, series=name))
    if cluster is not None:
        # Sessions are counted when they end; the server has stopped, so all have.
        extra["postgres_sessions_opened"] = _pg_sessions(cluster, database) - sessions_before
    error = None
    if failures:
        error = (
            f"{len(failures)} of {settings.warmup + settings.count} notifications failed "
            f"(first: {failures[0]}); server's last error: {_last_error(server.log_path)}"
        )
    return Series(
        name=name,
        count=settings.count,
        warmup=settings.warmup,
        concurrency=settings.batch_concurrency if batch else settings.concurrency,
        elapsed_s=elapsed,
        latencies_ms=samples,
        cpu=cpu,
        extra=extra,
        error=error,
    )


def _last_error(log_path: Path) -> str:
    """The last exception line of a server log (``SomeError: message``)."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "(empty log)"


def _pg_backends(cluster: PostgresCluster, database: Database) -> int:
    """Connections to the series' database open right now (pg_stat_activity)."""
    import psycopg

    assert database.dsn is not None
    name = database.dsn.rsplit("/", 1)[1]
    with psycopg.connect(cluster.admin_dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0]) if row is not None else 0


def _pg_sessions(cluster: PostgresCluster | None, database: Database) -> int:
    """Connections ever made to the series' database (pg_stat_database.sessions)."""
    if cluster is None or database.dsn is None:
        return 0
    import psycopg

    name = database.dsn.rsplit("/", 1)[1]
    with psycopg.connect(cluster.admin_dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


# --- workers in a child process on the server CPU ------------------------------------


def measure_worker(
    database: Database,
    *,
    kind: str,
    name: str,
    settings: Settings,
    concurrency: int,
    **options: Any,
) -> Series:
    """Run one worker (bare driver or in-process service) pinned to the server CPU."""
    spec = {
        "kind": kind,
        "target": database.connect_target(),
        "count": settings.count,
        "warmup": settings.warmup,
        "concurrency": concurrency,
        **options,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.publish_throughput", "--worker", json.dumps(spec)],
        cwd=REPO_ROOT,
        env=database.env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        preexec_fn=pin_to_server_cpu,
    )
    if done.returncode != 0:
        raise BenchError(f"{name} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    published = settings.warmup + settings.count
    extra = verify(database, published=published, users=settings.users, series=name)
    return Series(
        name=name,
        count=settings.count,
        warmup=settings.warmup,
        concurrency=concurrency,
        elapsed_s=float(report["elapsed_s"]),
        latencies_ms=[float(value) for value in report["latencies_ms"]],
        cpu={"window_s": float(report["elapsed_s"]), "worker_s": float(report["cpu_s"])},
        extra={
            **extra,
            **options,
            "worker_cpu_ms_per_notification": round(report["cpu_s"] / settings.count * 1000, 3),
        },
    )


def _run_threads(
    count: int, warmup: int, concurrency: int, make_writer: Callable[[], Callable[[int], None]]
) -> dict[str, Any]:
    """Call a writer for notifications 0..warmup+count-1 from ``concurrency`` threads,
    each with its own writer (connection); time the last ``count`` of them."""
    writers = [make_writer() for _ in range(concurrency)]
    lock = threading.Lock()
    samples: list[float] = []
    errors: list[BaseException] = []

    def drain(next_index: Iterator[int], writer: Callable[[int], None], timed: bool) -> None:
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                started = time.perf_counter()
                writer(index)
                if timed:
                    took = (time.perf_counter() - started) * 1000
                    with lock:
                        samples.append(took)
        except BaseException as error:
            errors.append(error)

    def phase(indexes: range, timed: bool) -> float:
        shared = iter(indexes)
        threads = [
            threading.Thread(target=drain, args=(shared, writer, timed)) for writer in writers
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - started

    phase(range(warmup), False)
    cpu_before = _client_cpu()
    elapsed = phase(range(warmup, warmup + count), True)
    return {"elapsed_s": elapsed, "latencies_ms": samples, "cpu_s": _client_cpu() - cpu_before}


def _user_ids(fetch: Callable[[str, list[Any]], list[tuple[Any, ...]]], mark: str) -> list[int]:
    rows = fetch(
        f"SELECT id FROM users_user WHERE username LIKE {mark} ORDER BY username",
        [USERNAME_PREFIX + "%"],
    )
    return [int(row[0]) for row in rows]


def _admin_id(fetch: Callable[[str, list[Any]], list[tuple[Any, ...]]], mark: str) -> int:
    return int(fetch(f"SELECT id FROM users_user WHERE username = {mark}", ["admin"])[0][0])


def _bare_sqlite(spec: dict[str, Any]) -> dict[str, Any]:
    path = spec["target"]
    synchronous = spec["synchronous"]

    def open_connection() -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, timeout=_SQLITE_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        # The product's init_command, with the synchronous level under test.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    probe = open_connection()
    fetch = lambda sql, params: probe.execute(sql, params).fetchall()  # noqa: E731
    users = _user_ids(fetch, "?")
    actor = _admin_id(fetch, "?")
    probe.close()

    def make_writer() -> Callable[[int], None]:
        connection = open_connection()

        def write(index: int) -> None:
            user = users[index % len(users)]
            # Django's SQLite format for an aware datetime in UTC.
            now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + ".000000"
            connection.execute("BEGIN IMMEDIATE")
            try:
                message = connection.execute(
                    "INSERT INTO notifications_message (event_type, title, message, priority, "
                    "url, project_id, project_title, data, audience, idempotency_key, "
                    "created_at, actor_id) VALUES ('announcement', ?, '', 'normal', '', NULL, "
                    "'', '{}', ?, NULL, ?, ?) RETURNING id",
                    [f"{TITLE_PREFIX}{index}", json.dumps({"users": [user]}), now, actor],
                ).fetchone()[0]
                seq = connection.execute(
                    "UPDATE notifications_inboxsequence "
                    "SET last_seq = last_seq + 1, unread = unread + 1 "
                    "WHERE user_id = ? RETURNING last_seq",
                    [user],
                ).fetchone()[0]
                connection.execute(
                    "INSERT INTO notifications_inbox (user_id, message_id, seq) VALUES (?, ?, ?)",
                    [user, message, seq],
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        return write

    return _run_threads(spec["count"], spec["warmup"], spec["concurrency"], make_writer)


def _bare_psycopg(spec: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    dsn = spec["target"]
    with psycopg.connect(dsn) as probe:
        fetch = lambda sql, params: probe.execute(sql, params).fetchall()  # noqa: E731
        users = _user_ids(fetch, "%s")
        actor = _admin_id(fetch, "%s")

    def make_writer() -> Callable[[int], None]:
        connection = psycopg.connect(dsn)

        def write(index: int) -> None:
            user = users[index % len(users)]
            with connection.transaction():
                row = connection.execute(
                    "INSERT INTO notifications_message (event_type, title, message, priority, "
                    "url, project_id, project_title, data, audience, idempotency_key, "
                    "created_at, actor_id) VALUES ('announcement', %s, '', 'normal', '', NULL, "
                    "'', '{}', %s, NULL, now(), %s) RETURNING id",
                    [f"{TITLE_PREFIX}{index}", json.dumps({"users": [user]}), actor],
                ).fetchone()
                assert row is not None
                seq = connection.execute(
                    "UPDATE notifications_inboxsequence "
                    "SET last_seq = last_seq + 1, unread = unread + 1 "
                    "WHERE user_id = %s RETURNING last_seq",
                    [user],
                ).fetchone()
                assert seq is not None
                connection.execute(
                    "INSERT INTO notifications_inbox (user_id, message_id, seq) "
                    "VALUES (%s, %s, %s)",
                    [user, row[0], seq[0]],
                )

        return write

    return _run_threads(spec["count"], spec["warmup"], spec["concurrency"], make_writer)


def _service(spec: dict[str, Any]) -> dict[str, Any]:
    """The product's service in this process, set up as the server sets Django up."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    django.setup()
    from backend.notifications.selectors import Audience
    from backend.notifications.services import notification_create
    from backend.users.models import User

    users = list(
        User.objects.filter(username__startswith=USERNAME_PREFIX)
        .order_by("username")
        .values_list("id", flat=True)
    )
    actor = User.objects.get(username="admin")

    def make_writer() -> Callable[[int], None]:
        def write(index: int) -> None:
            created = notification_create(
                audience=Audience(users=(users[index % len(users)],)),
                title=f"{TITLE_PREFIX}{index}",
                actor=actor,
            )
            if created.recipient_count != 1:
                raise BenchError(f"#{index} reached {created.recipient_count} users, not 1")

        return write

    if spec["concurrency"] != 1:
        raise BenchError("the in-process service runs with one caller")
    return _run_threads(spec["count"], spec["warmup"], 1, make_writer)


def _service_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """``notification_create_batch`` (interfaces.md item 2) in this process, one caller,
    ``batch_size`` one-user notifications a call; times each call."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    django.setup()
    import importlib

    from backend.notifications.selectors import Audience
    from backend.users.models import User

    # By name: the batch code (h-batch's) may not be in the tree this module is
    # type-checked against; batch_code_missing() decided it is there.
    publish_item: Any = importlib.import_module("backend.notifications.publish_input").PublishItem
    create_batch: Any = importlib.import_module(
        "backend.notifications.services"
    ).notification_create_batch

    users = list(
        User.objects.filter(username__startswith=USERNAME_PREFIX)
        .order_by("username")
        .values_list("id", flat=True)
    )
    actor = User.objects.get(username="admin")
    size = int(spec["batch_size"])

    def call(first: int, end: int) -> None:
        items = [
            publish_item(
                audience=Audience(users=(users[index % len(users)],)),
                title=f"{TITLE_PREFIX}{index}",
                message="",
                priority="normal",
                url="",
                event_type="announcement",
                idempotency_key=None,
            )
            for index in range(first, end)
        ]
        outcomes = create_batch(items=items, actor=actor)
        for offset, outcome in enumerate(outcomes):
            if outcome.status != "created" or outcome.recipients != 1:
                raise BenchError(f"#{first + offset}: {outcome!r}")

    def run_range(first: int, end: int, samples: list[float] | None) -> None:
        for start in range(first, end, size):
            began = time.perf_counter()
            call(start, min(start + size, end))
            if samples is not None:
                samples.append((time.perf_counter() - began) * 1000)

    warmup, count = int(spec["warmup"]), int(spec["count"])
    run_range(0, warmup, None)
    samples: list[float] = []
    cpu_before = _client_cpu()
    started = time.perf_counter()
    run_range(warmup, warmup + count, samples)
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "latencies_ms": samples, "cpu_s": _client_cpu() - cpu_before}


_WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "bare-sqlite": _bare_sqlite,
    "bare-psycopg": _bare_psycopg,
    "service": _service,
    "service-batch": _service_batch,
}


def batch_code_missing(env: dict[str, str]) -> dict[str, str | None]:
    """What of the batch code (interfaces.md items 2 and 3) the tree lacks: for the
    ``service`` and the ``endpoint``, None when present, else why not. Decided by the
    code (import, URL resolution), never by a response, so a present endpoint that
    fails is a failure, not a skip."""
    code = (
        "import json\n"
        "from django.urls import Resolver404, resolve\n"
        "found = {}\n"
        "try:\n"
        "    from backend.notifications.services import notification_create_batch\n"
        "    from backend.notifications.publish_input import PublishItem\n"
        "    found['service'] = None\n"
        "except ImportError as error:\n"
        "    found['service'] = str(error)\n"
        "try:\n"
        "    match = resolve('/api/notifications/batch/')\n"
        "    found['endpoint'] = None if 'batch' in match.route else 'no batch route'\n"
        "except Resolver404:\n"
        "    found['endpoint'] = 'no URL /api/notifications/batch/'\n"
        "print(json.dumps(found))\n"
    )
    found: dict[str, str | None] = json.loads(
        run_cli(env, "manage", "shell", "-c", code).splitlines()[-1]
    )
    return found


def worker_main(spec_json: str) -> int:
    """The child process: run one worker and print its report as one JSON line."""
    spec = json.loads(spec_json)
    report = _WORKERS[spec["kind"]](spec)
    print(json.dumps(report))
    return 0


# --- the benchmark -------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIf:
    """A proposed change to the product's settings, measured over HTTP beside it.

    Diagnostics for a fix, not figures of the product: they go to ``raw``
    only. Applied as a settings module on top of ``backend.config.settings``
    (``DJANGO_SETTINGS_MODULE``); backend/ itself is untouched.

    Attributes:
        name: What is changed, as the raw results name it.
        code: Python run after ``from backend.config.settings import *``.
        needs: A module that must be importable (else the what-if is skipped
            and ``raw`` says why).
    """

    name: str
    code: str
    needs: str | None = None


SQLITE_WHAT_IFS = (
    # WhiteNoise's middleware is sync-only: Django then adapts the async chain
    # around it, hopping threads twice more per request.
    WhatIf(
        "what-if: without WhiteNoiseMiddleware",
        "MIDDLEWARE = [m for m in MIDDLEWARE if 'whitenoise' not in m]\n",
    ),
)
POSTGRES_WHAT_IFS = (
    # Django's docs: under ASGI, disable persistent connections; every request
    # runs in a new thread, so CONN_MAX_AGE=60 leaves one open connection per request.
    WhatIf("what-if: CONN_MAX_AGE=0", "DATABASES['default']['CONN_MAX_AGE'] = 0\n"),
    WhatIf(
        "what-if: psycopg pool (CONN_MAX_AGE=0, pool 4..16)",
        "DATABASES['default']['CONN_MAX_AGE'] = 0\n"
        "DATABASES['default'].setdefault('OPTIONS', {})['pool'] = "
        "{'min_size': 4, 'max_size': 16}\n",
        needs="psycopg_pool",
    ),
)
# What-ifs are diagnostics: a thousand notifications show the difference.
WHAT_IF_COUNT = 1_000


def _with_settings(database: Database, directory: Path, what_if: WhatIf) -> Database:
    module = "bench_what_if_settings"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(
        "from backend.config.settings import *  # noqa: F403\n"
        "from backend.config.settings import DATABASES, MIDDLEWARE  # noqa: F401\n\n" + what_if.code
    )
    env = dict(database.env)
    env["DJANGO_SETTINGS_MODULE"] = module
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    return Database(env=env, sqlite_path=database.sqlite_path, dsn=database.dsn)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _measure_what_ifs(
    what_ifs: tuple[WhatIf, ...],
    copy: Callable[[str, Path], Database],
    *,
    settings: Settings,
    workdir: Path,
    cluster: PostgresCluster | None,
) -> list[dict[str, Any]]:
    reduced = Settings(
        count=min(settings.count, WHAT_IF_COUNT),
        warmup=settings.warmup,
        users=settings.users,
        concurrency=settings.concurrency,
    )
    measured: list[dict[str, Any]] = []
    for number, what_if in enumerate(what_ifs):
        if what_if.needs is not None and not _importable(what_if.needs):
            measured.append({"name": what_if.name, "skipped": f"{what_if.needs} not installed"})
            continue
        directory = workdir / f"what-if-{number}"
        database = _with_settings(copy(f"pub_what_if_{number}", directory), directory, what_if)
        series = measure_http(
            database,
            settings=reduced,
            log_path=directory / "server.log",
            cluster=cluster,
            name=what_if.name,
        )
        measured.append({**series.summary(), "settings_code": what_if.code})
    return measured


def _measure_ours(
    copy: Callable[[str], Database],
    *,
    settings: Settings,
    workdir: Path,
    cluster: PostgresCluster | None,
    missing: dict[str, str | None],
) -> list[Series]:
    """Ours four ways, each on its own copy of the database: one at a time over HTTP
    and in-process, then in batches over HTTP and in-process (where the tree has them)."""
    measured = [
        measure_http(
            copy("http"), settings=settings, log_path=workdir / "server.log", cluster=cluster
        ),
        measure_worker(
            copy("service"), kind="service", name=SERVICE_SINGLE, settings=settings, concurrency=1
        ),
    ]
    if missing.get("endpoint") is None:
        measured.append(
            measure_http(
                copy("http_batch"),
                settings=settings,
                log_path=workdir / "server-batch.log",
                cluster=cluster,
                name=HTTP_BATCH,
                batch=True,
            )
        )
    if missing.get("service") is None:
        measured.append(
            measure_worker(
                copy("service_batch"),
                kind="service-batch",
                name=SERVICE_BATCH,
                settings=settings,
                concurrency=1,
                batch_size=settings.batch_size,
            )
        )
    return measured


def _measure_sqlite(
    settings: Settings, workdir: Path, *, what_ifs: bool
) -> tuple[list[Series], list[dict[str, Any]], dict[str, str | None]]:
    template = _sqlite_template(workdir, settings.users)
    missing = batch_code_missing(_environment(workdir / "template", None))
    measured: list[Series] = []
    for synchronous in ("NORMAL", "FULL"):
        label = "bare sqlite3" if synchronous == "NORMAL" else "bare sqlite3, synchronous=FULL"
        database = _sqlite_copy(template, workdir / f"bare-{synchronous.lower()}")
        measured.append(
            measure_worker(
                database,
                kind="bare-sqlite",
                name=label,
                settings=settings,
                concurrency=1,
                synchronous=synchronous,
            )
        )
    measured.extend(
        _measure_ours(
            lambda label: _sqlite_copy(template, workdir / label),
            settings=settings,
            workdir=workdir,
            cluster=None,
            missing=missing,
        )
    )
    extra = (
        _measure_what_ifs(
            SQLITE_WHAT_IFS,
            lambda _name, directory: _sqlite_copy(template, directory),
            settings=settings,
            workdir=workdir,
            cluster=None,
        )
        if what_ifs
        else []
    )
    return measured, extra, missing


def _measure_postgres(
    settings: Settings, workdir: Path, *, what_ifs: bool, missing: dict[str, str | None]
) -> tuple[list[Series], list[dict[str, Any]], dict[str, str]]:
    measured: list[Series] = []
    with postgres_cluster(workdir) as cluster:
        template = _postgres_template(cluster, workdir, settings.users)
        for connections in sorted({1, settings.concurrency}):
            database = _postgres_copy(
                cluster, template, f"pub_bare_{connections}", workdir / f"bare-{connections}"
            )
            noun = "connection" if connections == 1 else "connections"
            measured.append(
                measure_worker(
                    database,
                    kind="bare-psycopg",
                    name=f"bare psycopg, {connections} {noun}",
                    settings=settings,
                    concurrency=connections,
                )
            )
        measured.extend(
            _measure_ours(
                lambda label: _postgres_copy(cluster, template, f"pub_{label}", workdir / label),
                settings=settings,
                workdir=workdir,
                cluster=cluster,
                missing=missing,
            )
        )
        extra = (
            _measure_what_ifs(
                POSTGRES_WHAT_IFS,
                lambda name, directory: _postgres_copy(cluster, template, name, directory),
                settings=settings,
                workdir=workdir,
                cluster=cluster,
            )
            if what_ifs
            else []
        )
        return measured, extra, dict(cluster.settings)


def _rows(
    database: str, measured: list[Series], settings: Settings, missing: dict[str, str | None]
) -> list[dict[str, Any]]:
    """PUB's rows for one database: ours one at a time and in batches, over HTTP and
    in-process, each beside the bare drivers; then HTTP's CPU beside the service's."""
    by_name = {series.name: series for series in measured}
    bare: dict[str, float | None] = {
        name: s.rate for name, s in by_name.items() if name.startswith("bare")
    }
    http = by_name[HTTP_SINGLE]
    service = by_name[SERVICE_SINGLE]
    http_batch = by_name.get(HTTP_BATCH)
    service_batch = by_name.get(SERVICE_BATCH)

    def failed(series: Series | None) -> str:
        return f"; FAILED: {series.error}" if series is not None and series.error else ""

    def rate(series: Series | None) -> float | None:
        # A run with refused requests has no throughput to claim.
        return None if series is None or series.error else series.rate

    def absent(part: str) -> str:
        why = missing.get(part)
        return f" ({NOT_IN_TREE}: {why})" if why else ""

    size = settings.batch_size
    rows = [
        result(
            id="PUB",
            metric=(
                f"publish throughput on {database}, POST /api/notifications/ to one user each, "
                f"{settings.count} notifications, {settings.concurrency} HTTP clients, "
                f"every one committed and counted{failed(http)}"
            ),
            unit=UNIT,
            ours=rate(http),
            peers=bare,
            target=TARGET,
            met=http.error is None,
        ),
        result(
            id="PUB",
            metric=(
                f"publish throughput on {database}, notification_create called in-process "
                f"(no HTTP), one caller, {settings.count} notifications, committed and counted"
            ),
            unit=UNIT,
            ours=service.rate,
            peers=bare,
            target=TARGET,
            met=True,
        ),
        result(
            id="PUB",
            metric=(
                f"publish throughput on {database}, POST /api/notifications/batch/ with "
                f"{size} one-user notifications a request, {settings.count} notifications, "
                f"{settings.batch_concurrency} HTTP clients, every one committed and counted"
                f"{absent('endpoint')}{failed(http_batch)}"
            ),
            unit=UNIT,
            ours=rate(http_batch),
            peers={
                "ours in-process, one at a time": service.rate,
                "ours in-process batch": rate(service_batch),
                **bare,
            },
            target=f"at least {BATCH_SHARE_TARGET:.0%} of the in-process (notification_create, "
            "one at a time) rate in the same run",
            met=http_batch is not None
            and http_batch.error is None
            and http_batch.rate >= BATCH_SHARE_TARGET * service.rate,
        ),
        result(
            id="PUB",
            metric=(
                f"publish throughput on {database}, notification_create_batch called "
                f"in-process, {size} one-user notifications a call, one caller, "
                f"{settings.count} notifications, committed and counted{absent('service')}"
            ),
            unit=UNIT,
            ours=rate(service_batch),
            peers={"ours in-process, one at a time": service.rate, **bare},
            target=TARGET,
            met=service_batch is not None and service_batch.error is None,
        ),
    ]
    http_cpu = http.extra.get("server_cpu_ms_per_notification")
    service_cpu = service.extra.get("worker_cpu_ms_per_notification")
    rows.append(
        result(
            id="PUB",
            metric=(
                f"CPU per notification on {database}: the server's over POST "
                "/api/notifications/ (utime + stime of the server process over the timed "
                "requests, after login and warm-up) beside the in-process service's (the "
                "calling process's over the timed calls); the database server's own CPU in "
                f"neither{failed(http)}"
            ),
            unit="CPU ms",
            ours=None if http.error else http_cpu,
            peers={"ours in-process service": service_cpu},
            target=f"at most {HTTP_CPU_RATIO_TARGET:g}x the in-process service's CPU",
            met=http.error is None
            and http_cpu is not None
            and service_cpu is not None
            and http_cpu <= HTTP_CPU_RATIO_TARGET * service_cpu,
        )
    )
    return rows


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    """Publish throughput on SQLite and on PostgreSQL, beside the bare drivers.

    Rows: ``PUB-SQLite`` and ``PUB-PostgreSQL`` (ours over HTTP; ``ours`` is
    None and ``met`` false when the server refused requests), and
    ``PUB-SQLite-service`` and ``PUB-PostgreSQL-service`` (the service called
    in-process), each in notifications/s with the bare drivers as peers. The
    what-ifs (proposed settings changes, not run with ``smoke``) go to ``raw``.
    """
    settings = SMOKE if smoke else PROFILES[profile]
    sqlite_series, sqlite_what_ifs, missing = _measure_sqlite(
        settings, scratch / "sqlite", what_ifs=not smoke
    )
    postgres_series, postgres_what_ifs, postgres_settings = _measure_postgres(
        settings, scratch / "postgres", what_ifs=not smoke, missing=missing
    )
    results = [
        *_rows("SQLite", sqlite_series, settings, missing),
        *_rows("PostgreSQL", postgres_series, settings, missing),
    ]
    raw = {
        "settings": asdict(settings),
        "batch_code_missing": missing,
        "sqlite_pragmas": "journal_mode=WAL, synchronous=NORMAL, foreign_keys=ON, BEGIN IMMEDIATE",
        "postgres_settings": postgres_settings,
        "sqlite": [series.summary() for series in sqlite_series],
        "postgresql": [series.summary() for series in postgres_series],
        "what_if": {"sqlite": sqlite_what_ifs, "postgresql": postgres_what_ifs},
    }
    cdfs = {
        f"PUB on {database}: time per notification as its caller sees it": {
            _cdf_label(series): series.latencies_ms for series in measured
        }
        for database, measured in (("SQLite", sqlite_series), ("PostgreSQL", postgres_series))
    }
    return Outcome(results=results, raw=raw, cdfs=cdfs)


def _cdf_label(series: Series) -> str:
    if series.name == HTTP_SINGLE:
        return f"ours (HTTP, {series.concurrency} clients)"
    if series.name in (HTTP_BATCH, SERVICE_BATCH):
        return f"{series.name}, per call of {series.extra.get('batch_size', '?')}"
    return series.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: only proves it runs")
    parser.add_argument("--output", type=Path, help="write the rows and raw samples as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    pin_to_client_cpu()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-pub-") as scratch:
        outcome = run(args.profile, smoke=args.smoke, scratch=Path(scratch))
    took = time.monotonic() - started
    if args.output is not None:
        args.output.write_text(
            json.dumps({"results": outcome.results, "raw": outcome.raw, "took_s": took}, indent=1)
        )
    for row in outcome.results:
        peers = ", ".join(f"{name} {value}" for name, value in row["peers"].items())
        ours = "n/a" if row["ours"] is None else row["ours"]
        print(f"{row['id']:24} {ours:>10} {row['unit']}  met={row['met']}  (peers: {peers})")
        if not row["met"]:
            print(f"{'':24} {row['metric']}")
    for database in ("sqlite", "postgresql"):
        for series in [*outcome.raw[database], *outcome.raw["what_if"][database]]:
            shown = {k: v for k, v in series.items() if k != "latencies_ms"}
            print(f"{database:10} {json.dumps(shown)}")
    print(f"took {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
