"""B1 (idle connections) and B2 (broadcast) for ours and the peers P0, P1, P1-redis.

Servers, each started fresh for every connection count N, pinned to CPU 0
while the load generator runs on CPU 1:

- ``ours``: ``python -m backend.cli serve --demo --port 0``, the embedded
  default (SQLite, in-process delivery), with N extra active users so that N
  sockets are N distinct authenticated users; an admin publishes with
  ``POST /api/notifications/``.
- ``ours-scale``: scale mode, two ``serve`` processes on one PostgreSQL
  database and one redis-server (all four on CPU 0), the sockets split
  between them in turn, publishing through the first.
- ``P0``: ``bench/peers/p0_websockets.py``, raw ``websockets`` with
  ``broadcast()``.
- ``P1``: ``bench/peers/p1_channels.py`` on Daphne with Channels'
  in-memory layer, one ``group_send`` per publish.
- ``P1-redis``: the same on channels-redis, against a private redis-server
  (also on CPU 0; its memory and CPU are counted with Daphne's).
- ``ours+metrics`` (only when named, ``--servers ours,ours+metrics``): ``ours`` with
  ``TRAY_METRICS_TOKEN`` set, on the same database; its rows stand beside ``ours``
  (metrics off) to show what the counting costs (issue 19).

Figures:

- B1: memory per idle connection (server RSS after N sockets sat idle for the
  window, minus RSS before them, over N) and CPU per 1k idle connections
  (utime + stime over the window, minus the same over half a window with no
  socket open, scaled to 1,000; every server pings each socket every 10 s).
  RSS is also sampled as the sockets open, for the memory curve.
- B2: broadcast at N connections, to everyone and to a project of
  ``min(N, 1000)`` members: the time from sending the publish request to the
  last recipient having the frame, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    OURS_WITH_METRICS,
    PING_INTERVAL_SECONDS,
    BenchError,
    Fleet,
    Outcome,
    ServerProcess,
    bench_env,
    cpu_seconds,
    free_port,
    login,
    ours_env,
    percentile,
    pin_to_client_cpu,
    prepare_database,
    print_outcome,
    process_trees,
    raise_fd_limit,
    result,
    rss_kib,
    run_cli,
    server_names,
    start_redis,
    start_server,
    stop_server,
)

SERVERS = ("ours", "ours-scale", "P0", "P1", "P1-redis")
OPTIONAL_SERVERS = (OURS_WITH_METRICS,)
PEERS = ("P0", "P1", "P1-redis")
# What the counting may cost (issue 19), as a ratio of metrics on over off.
METRICS_BUDGET = 1.05
METRICS_OFF = "ours, metrics off"
PUBLISHER = "admin"
# The members of the B2 project: the first PROJECT_SIZE sockets (fewer at smaller N).
PROJECT_SIZE = 1000
PROJECT_GROUP = "project.bench"
DAPHNE_FLAGS = (
    # The counterparts of the product's uvicorn settings (backend/cli.py _run_uvicorn),
    # as bench/asgi_servers.py runs daphne.
    *("--ping-interval", str(PING_INTERVAL_SECONDS), "--ping-timeout", str(PING_INTERVAL_SECONDS)),
    *("--websocket-max-message-size", "65536", "--websocket_timeout", "-1", "-v", "0"),
)
WARM_UP_SOCKETS = 3
# Issue 14: idle CPU per 1k connections at most 1.5x P0's at the same ping interval.
IDLE_CPU_RATIO_TARGET = 1.5
MIN_ROUNDS = 3
RSS_CURVE_POINTS = 10


@dataclass(frozen=True)
class Profile:
    """How much load one invocation puts on each server."""

    sizes: tuple[int, ...]
    rounds: int
    idle_window: float
    connectors: int
    # B2 stops a kind of broadcast after this many seconds of rounds (once
    # MIN_ROUNDS are done): P1's in-memory layer takes seconds per broadcast
    # at thousands of sockets.
    round_budget: float


PROFILES = {
    "quick": Profile(sizes=(200,), rounds=20, idle_window=10.0, connectors=8, round_budget=30.0),
    "full": Profile(
        sizes=(1000, 5000),
        rounds=50,
        # Three of the servers' 10 s ping intervals.
        idle_window=30.0,
        connectors=8,
        round_budget=60.0,
    ),
}


def profile_for(name: str, *, smoke: bool) -> Profile:
    """The named profile; a smoke run only proves the module works: tiny N, one round."""
    profile = PROFILES[name]
    if smoke:
        return replace(profile, sizes=(20,), rounds=1, idle_window=2.0, round_budget=5.0)
    return profile


@dataclass
class Session:
    """What one server measured at one connection count."""

    server: str
    connections: int
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    # [sockets open, server RSS in KiB] while the sockets were opening.
    rss_curve: list[list[int]] = field(default_factory=list)
    # Pings the sockets received over the idle window (see ping_interval_seen).
    idle_pings: int = 0
    empty_window: float = 0.0
    cpu_empty_seconds: float = 0.0
    idle_window: float = 0.0
    cpu_idle_seconds: float = 0.0
    connect_seconds: float = 0.0
    # From sending the publish request to the last recipient's frame, per kind.
    latency_seconds: dict[str, list[float]] = field(default_factory=dict)
    publish_seconds: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Target:
    """Started server processes under test and how to connect to and publish on them."""

    name: str
    servers: list[ServerProcess]
    # The processes whose memory and CPU count as the server's (redis, postgres too).
    pids: list[int]
    tokens: list[str] = field(default_factory=list)
    project_id: int = 0
    admin_token: str = ""
    # Processes to stop with the servers (P1-redis's redis-server).
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def is_ours(self) -> bool:
        return self.name.startswith("ours")

    def ws_url(self, index: int) -> str:
        """Socket ``index``'s server: scale mode splits the sockets in turn."""
        return self.servers[index % len(self.servers)].ws_url

    def credentials(self, index: int) -> tuple[str | None, str]:
        """Bearer token and query string of socket ``index``."""
        if self.is_ours:
            return self.tokens[index], ""
        groups = f"&groups={PROJECT_GROUP}" if index < PROJECT_SIZE else ""
        return None, f"?user=u{index}{groups}"

    async def publish(self, http: httpx.AsyncClient, title: str, *, project: bool) -> None:
        """Send ``title`` to everyone or to the B2 project; returns when the server answered."""
        if self.is_ours:
            audience: dict[str, Any] = (
                {"projects": [self.project_id]} if project else {"everyone": True}
            )
            response = await http.post(
                "/api/notifications/",
                json={"audience": audience, "title": title},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            expected = 201
        else:
            group = PROJECT_GROUP if project else "everyone"
            response = await http.get("/publish", params={"title": title, "group": group})
            expected = 200
        if response.status_code != expected:
            raise BenchError(f"{self.name} publish: HTTP {response.status_code} {response.text}")

    def rss_kib(self) -> int:
        return int(sum(_alive(rss_kib, pid) for pid in process_trees(self.pids)))

    def cpu_seconds(self) -> float:
        return sum(_alive(cpu_seconds, pid) for pid in process_trees(self.pids))


def _alive(read: Callable[[int], float], pid: int) -> float:
    """``read(pid)``, or 0 for a process that exited since it was listed."""
    try:
        return read(pid)
    except FileNotFoundError:
        return 0


# --- servers ---------------------------------------------------------------------------


def seed_users(env: dict[str, str], count: int) -> list[str]:
    """Create ``count`` active users (role developer) and return an access token for each.

    Tokens are minted in a ``manage shell`` rather than by logging in: the
    password hasher is deliberately slow, and 5,000 logins would measure it.
    """
    code = (
        "import json\n"
        "from backend.users.services import session_start\n"
        "from backend.users.models import Role, User\n"
        "role = Role.objects.get(name='developer')\n"
        f"User.objects.bulk_create([User(username=f'bench{{i}}', role=role, password='!')"
        f" for i in range({count})], batch_size=500)\n"
        "users = User.objects.filter(username__startswith='bench').order_by('id')\n"
        "print(json.dumps([session_start(user=u).access for u in users]))\n"
    )
    tokens: list[str] = json.loads(run_cli(env, "manage", "shell", "-c", code).splitlines()[-1])
    if len(tokens) != count:
        raise BenchError(f"seeded {len(tokens)} users, wanted {count}")
    return tokens


def seed_project(env: dict[str, str], members: int) -> int:
    """A project whose members are the first ``members`` bench users; returns its id."""
    code = (
        "from backend.projects.models import Membership, Project\n"
        "from backend.users.models import User\n"
        "project = Project.objects.create(title='Bench broadcast')\n"
        "users = User.objects.filter(username__startswith='bench').order_by('id')"
        f"[:{members}]\n"
        "Membership.objects.bulk_create("
        "[Membership(project=project, user=u, role='member') for u in users], batch_size=500)\n"
        "print(project.pk)\n"
    )
    return int(run_cli(env, "manage", "shell", "-c", code).splitlines()[-1])


@dataclass
class Database:
    """One seeded database the ``ours`` servers share across connection counts."""

    env: dict[str, str]
    tokens: list[str]
    project_id: int
    # Shared services whose memory and CPU count as the servers' (scale mode).
    service_pids: list[int] = field(default_factory=list)


def prepare_ours(env: dict[str, str], largest: int) -> Database:
    prepare_database(env)
    tokens = seed_users(env, largest)
    return Database(env=env, tokens=tokens, project_id=seed_project(env, PROJECT_SIZE))


def start_ours(name: str, database: Database, scratch: Path, label: str, count: int) -> Target:
    """``count`` ``serve`` processes on ``database`` (one: the embedded default)."""
    python = sys.executable
    servers: list[ServerProcess] = []
    try:
        for number in range(count):
            command = [python, "-m", "backend.cli", "serve", "--port", "0"]
            log_path = scratch / f"{name}-{label}-{number}.log"
            servers.append(start_server(name, command, ours_env(name, database.env), log_path))
    except BaseException:
        for server in servers:
            stop_server(server)
        raise
    return Target(
        name=name,
        servers=servers,
        pids=[server.process.pid for server in servers],
        tokens=database.tokens,
        project_id=database.project_id,
    )


def start_peer(name: str, env: dict[str, str], scratch: Path, label: str) -> Target:
    """Start peer ``name`` (P0, P1 or P1-redis) for one session."""
    log_path = scratch / f"{name}-{label}.log"
    python = sys.executable
    port = free_port()
    if name == "P0":
        command = [python, "-m", "bench.peers.p0_websockets", "--port", str(port)]
        command += ["--ping-interval", str(PING_INTERVAL_SECONDS)]
        server = start_server(name, command, env, log_path, port=port, ws_path="/ws/")
        return Target(name=name, servers=[server], pids=[server.process.pid])
    # The peer configures its own Django settings; the product's must not leak in.
    peer_env = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
    redis_process: subprocess.Popen[bytes] | None = None
    if name == "P1-redis":
        redis_process, redis_url = start_redis(scratch)
        peer_env["BENCH_P1_REDIS_URL"] = redis_url
    command = [
        *(python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)),
        *DAPHNE_FLAGS,
        "bench.peers.p1_channels:application",
    ]
    try:
        server = start_server(name, command, peer_env, log_path, port=port, ws_path="/ws/")
    except BaseException:
        if redis_process is not None:
            stop_process(redis_process)
        raise
    pids = [server.process.pid]
    if redis_process is not None:
        pids.append(redis_process.pid)
    helpers = [redis_process] if redis_process else []
    return Target(name=name, servers=[server], pids=pids, helpers=helpers)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_target(target: Target) -> None:
    for server in target.servers:
        stop_server(server)
    for helper in target.helpers:
        stop_process(helper)


# --- measuring -------------------------------------------------------------------------


async def measure(target: Target, n: int, profile: Profile) -> Session:
    """Open ``n`` sockets on a started server and measure B1 and B2."""
    session = Session(server=target.name, connections=n)
    base_url = target.servers[0].base_url
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        if target.is_ours:
            target.admin_token = await login(http, PUBLISHER)

        # Warm-up: every code path once (handshake, delivery, close) before the baseline.
        warm = Fleet(target.ws_url(0), compression=None)
        for index in range(WARM_UP_SOCKETS):
            token, query = target.credentials(index)
            warm.adopt(await warm.open_one(token, query=query, url=target.ws_url(index)))
        warm.expect(f"warm-up {target.name} {n}")
        await target.publish(http, warm.title, project=False)
        await warm.wait_all_received(120)
        await warm.close()
        # The server's own timers with no socket open, subtracted from the idle cost;
        # a measurement window, not a wait for a condition.
        before = target.cpu_seconds()
        await asyncio.sleep(profile.idle_window / 2)
        session.cpu_empty_seconds = target.cpu_seconds() - before
        session.empty_window = profile.idle_window / 2
        session.rss_before_kib = target.rss_kib()

        fleet = Fleet(target.ws_url(0), compression=None)
        pending = iter(range(n))
        step = max(1, n // RSS_CURVE_POINTS)

        async def connector() -> None:
            # One shared iterator: each connector takes the next index when it is free.
            for index in pending:
                token, query = target.credentials(index)
                fleet.adopt(await fleet.open_one(token, query=query, url=target.ws_url(index)))
                if len(fleet.sockets) % step == 0:
                    session.rss_curve.append([len(fleet.sockets), target.rss_kib()])

        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(profile.connectors)))
        session.connect_seconds = time.perf_counter() - started

        # A measurement window: idle cost accrues over time.
        before, pings = target.cpu_seconds(), fleet.pings()
        await asyncio.sleep(profile.idle_window)
        session.cpu_idle_seconds = target.cpu_seconds() - before
        session.idle_pings = fleet.pings() - pings
        session.idle_window = profile.idle_window
        session.rss_idle_kib = target.rss_kib()

        for kind in ("everyone", "project"):
            latencies = session.latency_seconds.setdefault(kind, [])
            publishes = session.publish_seconds.setdefault(kind, [])
            recipients = n if kind == "everyone" else min(n, PROJECT_SIZE)
            rounds_started = time.monotonic()
            for number in range(profile.rounds):
                fleet.expect(f"bench {target.name} {n} {kind} {number}", recipients)
                sent = time.perf_counter()
                await target.publish(http, fleet.title, project=kind == "project")
                answered = time.perf_counter()
                await fleet.wait_all_received(600)
                latencies.append(fleet.last_at - sent)
                publishes.append(answered - sent)
                spent = time.monotonic() - rounds_started
                if number + 1 >= MIN_ROUNDS and spent > profile.round_budget:
                    break
        await fleet.close()
    return session


def measure_in_loop(target: Target, n: int, profile: Profile) -> Session:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(measure(target, n, profile))


# --- results ---------------------------------------------------------------------------


def idle_cpu_per_1k(session: Session) -> float:
    """% of a core the open sockets cost per 1,000, over the server's empty baseline."""
    busy = session.cpu_idle_seconds / session.idle_window
    empty = session.cpu_empty_seconds / session.empty_window
    return (busy - empty) * 100 / (session.connections / 1000)


def ping_interval_seen(session: Session) -> float | None:
    """The seconds between pings each socket saw over the idle window (window x
    sockets / pings); None when no ping came (a window shorter than the interval)."""
    if not session.idle_pings:
        return None
    return session.idle_window * session.connections / session.idle_pings


def same_ping_interval(ours: float | None, p0: float | None) -> bool:
    """Whether both servers pinged, within 20% of each other's interval."""
    return ours is not None and p0 is not None and 1 / 1.2 <= ours / p0 <= 1.2


def memory_per_connection(session: Session) -> float:
    """KiB of server RSS per idle socket."""
    return (session.rss_idle_kib - session.rss_before_kib) / session.connections


def summarize(sessions: list[Session], profile: Profile) -> list[dict[str, Any]]:
    """One result per figure, in the issue's format; scale mode gets rows of its own,
    and so does ours with metrics on (``metrics_rows``)."""
    by_key = {(s.server, s.connections): s for s in sessions}
    rows: list[dict[str, Any]] = []

    def value(server: str, n: int, figure: Any) -> float | None:
        session = by_key.get((server, n))
        return None if session is None else float(figure(session))

    def peers(n: int, figure: Any) -> dict[str, float | None]:
        return {peer: value(peer, n, figure) for peer in PEERS}

    for ours_name, mode in (("ours", ""), ("ours-scale", " (scale mode: 2 processes on Redis)")):
        for n in profile.sizes:
            if (ours_name, n) not in by_key:
                continue

            memory = memory_per_connection
            ours, others = value(ours_name, n, memory), peers(n, memory)
            rows.append(
                result(
                    id="B1",
                    metric=f"memory per idle connection at {n} connections{mode}",
                    unit="KiB",
                    ours=ours,
                    peers=others,
                    target="at most 2x P0's memory per connection",
                    met=ours is not None and others["P0"] is not None and ours <= 2 * others["P0"],
                )
            )
            ours, others = value(ours_name, n, idle_cpu_per_1k), peers(n, idle_cpu_per_1k)
            ours_ping = ping_interval_seen(by_key[(ours_name, n)])
            p0_session = by_key.get(("P0", n))
            p0_ping = ping_interval_seen(p0_session) if p0_session else None
            rows.append(
                result(
                    id="B1",
                    metric=(
                        f"idle CPU per 1k connections at {n} connections{mode} "
                        "(minus the server's CPU with none open); pings each socket saw: "
                        f"every {_seconds(ours_ping)} (ours), {_seconds(p0_ping)} (P0), "
                        f"all set to {PING_INTERVAL_SECONDS} s"
                    ),
                    unit="% of a core",
                    ours=ours,
                    peers=others,
                    target=f"at most {IDLE_CPU_RATIO_TARGET:g}x P0's at the same ping interval",
                    met=ours is not None
                    and others["P0"] is not None
                    and ours <= IDLE_CPU_RATIO_TARGET * others["P0"]
                    and same_ping_interval(ours_ping, p0_ping),
                )
            )
            for audience, q, latency in b2_figures(n):
                ours, others = value(ours_name, n, latency), peers(n, latency)
                p0, p1 = others["P0"], others["P1"]
                # The issue sets the P1 comparison at 1k; it is kept below that too.
                against_p1 = n <= 1000
                target = "at most 3x P0" + (
                    ", and at least 10x faster than P1" if against_p1 else ""
                )
                rows.append(
                    result(
                        id="B2",
                        metric=(
                            f"broadcast to {audience} at {n} connections{mode}, publish "
                            f"sent to the last recipient's frame, p{q}"
                        ),
                        unit="ms",
                        ours=ours,
                        peers=others,
                        target=target,
                        met=ours is not None
                        and p0 is not None
                        and ours <= 3 * p0
                        and (not against_p1 or (p1 is not None and ours * 10 <= p1)),
                    )
                )
    return rows + metrics_rows(sessions, profile)


def b2_figures(n: int) -> Iterator[tuple[str, int, Callable[[Session], float]]]:
    """B2's figures at ``n`` connections: (audience, percentile, latency in ms)."""
    for kind in ("everyone", "project"):
        audience = "everyone" if kind == "everyone" else f"a {min(n, PROJECT_SIZE)}-member project"
        for q in (50, 99):

            def latency(s: Session, q: int = q, kind: str = kind) -> float:
                return percentile(s.latency_seconds[kind], q) * 1000

            yield audience, q, latency


def metrics_rows(sessions: list[Session], profile: Profile) -> list[dict[str, Any]]:
    """B1 and B2 of ours with metrics on, beside ours with them off (``METRICS_OFF``)
    in the same run: what the counters cost on the hot path (issue 19)."""
    by_key = {(s.server, s.connections): s for s in sessions}
    rows: list[dict[str, Any]] = []
    for n in profile.sizes:
        on, off = by_key.get((OURS_WITH_METRICS, n)), by_key.get(("ours", n))
        if on is None:
            continue
        figures: list[tuple[str, str, str, Callable[[Session], float]]] = [
            ("B1", f"memory per idle connection at {n} connections", "KiB", memory_per_connection),
            (
                "B1",
                f"idle CPU per 1k connections at {n} connections",
                "% of a core",
                idle_cpu_per_1k,
            ),
        ]
        for audience, q, latency in b2_figures(n):
            metric = (
                f"broadcast to {audience} at {n} connections, publish sent to the last "
                f"recipient's frame, p{q}"
            )
            figures.append(("B2", metric, "ms", latency))
        for id_, metric, unit, figure in figures:
            ours, beside = figure(on), None if off is None else figure(off)
            rows.append(
                result(
                    id=id_,
                    metric=f"{metric}, metrics on (TRAY_METRICS_TOKEN set, never scraped)",
                    unit=unit,
                    ours=ours,
                    peers={METRICS_OFF: beside},
                    target=f"at most {METRICS_BUDGET:g}x ours with metrics off, same run",
                    met=beside is not None and ours <= METRICS_BUDGET * beside,
                )
            )
    return rows


def _seconds(value: float | None) -> str:
    return "- (no ping in the window)" if value is None else f"{value:.1f} s"


def cdfs(sessions: list[Session]) -> dict[str, dict[str, list[float]]]:
    """Latency samples per plot: one plot per audience and connection count."""
    plots: dict[str, dict[str, list[float]]] = {}
    for session in sessions:
        for kind, samples in session.latency_seconds.items():
            title = f"B2 broadcast to {kind} at {session.connections} connections"
            plots.setdefault(title, {})[session.server] = [s * 1000 for s in samples]
    return plots


# --- the module's entry point ----------------------------------------------------------


@contextlib.contextmanager
def scale_services(
    scratch: Path, env: dict[str, str]
) -> Iterator[tuple[dict[str, str], list[int]]]:
    """Scale mode's shared services, a PostgreSQL database and a redis-server: the
    servers' environment and the services' process ids."""
    from bench.postgres import postgres_cluster

    redis_process, redis_url = start_redis(scratch)
    try:
        with postgres_cluster(scratch / "postgres") as cluster:
            dsn = cluster.create_database("bench_scale")
            scale_env = {**env, "DATABASE_URL": dsn, "REDIS_URL": redis_url}
            yield scale_env, [redis_process.pid, cluster.pid]
    finally:
        stop_process(redis_process)


def run(profile: str, *, smoke: bool, scratch: Path, servers: Sequence[str] = SERVERS) -> Outcome:
    """B1 and B2 for ``servers`` at every connection count of the profile."""
    settings = profile_for(profile, smoke=smoke)
    largest = max(settings.sizes)
    data_dir = scratch / "data"
    data_dir.mkdir()
    env = bench_env(data_dir)
    # Sessions outlive the default 10 min access token in the full profile.
    env["TRAY_ACCESS_TOKEN_MINUTES"] = "1440"
    sessions: list[Session] = []
    with contextlib.ExitStack() as stack:
        databases: dict[str, Database] = {}
        if "ours" in servers or OURS_WITH_METRICS in servers:
            # Metrics on and off share one database, as in bench.mixed_traffic.
            databases["ours"] = databases[OURS_WITH_METRICS] = prepare_ours(env, largest)
        if "ours-scale" in servers:
            scale_env, service_pids = stack.enter_context(scale_services(scratch, env))
            databases["ours-scale"] = prepare_ours(scale_env, largest)
            databases["ours-scale"].service_pids = service_pids
        for n in settings.sizes:
            for name in servers:
                if name in databases:
                    database = databases[name]
                    target = start_ours(
                        name, database, scratch, str(n), 2 if name == "ours-scale" else 1
                    )
                    target.pids.extend(database.service_pids)
                else:
                    target = start_peer(name, env, scratch, str(n))
                try:
                    session = measure_in_loop(target, n, settings)
                except BaseException:
                    for server in target.servers:
                        print(f"{name} log:\n{server.log_tail()}", file=sys.stderr)
                    raise
                finally:
                    stop_target(target)
                sessions.append(session)
                print(
                    f"B1/B2 {name} at {n}: connected in {session.connect_seconds:.2f} s",
                    flush=True,
                )
    return Outcome(
        results=summarize(sessions, settings),
        raw={
            "settings": asdict(settings),
            "servers": list(servers),
            "sessions": [asdict(session) for session in sessions],
        },
        cdfs=cdfs(sessions),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """B1 and B2 alone, for the servers named (``python -m bench`` runs the default set)."""
    known = SERVERS + OPTIONAL_SERVERS
    parser = argparse.ArgumentParser(
        prog="python -m bench.connections",
        description="Issue 5's B1 (idle connections) and B2 (broadcast).",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: proves it runs")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"some of {','.join(known)}")
    parser.add_argument("--output", type=Path, help="write the Outcome as JSON here")
    options = parser.parse_args(argv)
    servers = server_names(options.servers, known)
    if servers is None:
        parser.error(f"--servers takes some of {','.join(known)}")
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the servers on one, the clients on the other")
        return 1
    pin_to_client_cpu()
    raise_fd_limit(max(PROFILES[options.profile].sizes) * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as scratch:
        outcome = run(options.profile, smoke=options.smoke, scratch=Path(scratch), servers=servers)
    print_outcome(outcome, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
