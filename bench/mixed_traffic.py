"""B3 mixed traffic, B4 ceiling and B6 slow consumers, for ours and the peers P0, P1.

Every server meets the same audience structure and the same publish schedule:

- N clients, one per user; user ``i`` is in project ``i // 50`` (projects of
  50 members) and in role ``i % 4`` (four roles of N/4, 500 at N = 2,000).
- Ours (``python -m backend.cli serve --demo --port 0``, the embedded default:
  SQLite, in-process delivery) is seeded with those users (tokens minted in a
  ``manage shell``), projects (``Membership`` rows) and roles (``User.role``),
  and an admin publishes with ``POST /api/notifications/`` to
  ``{"usernames": [...]}``, ``{"projects": [id]}``, ``{"roles": [name]}`` or
  ``{"everyone": true}``.
- P0 (``bench/peers/p0_websockets.py``, ``websockets.broadcast()``) and P1
  (``bench/peers/p1_channels.py`` on Daphne, Channels' in-memory layer; P1-redis
  on channels-redis when asked for) get the same groups in the socket's query
  (``/ws/?user=uI&groups=project.K,role.rJ``) and a publish is
  ``GET /publish?title=T&group=G&body=PAD``, the body padding their frames to
  the size of ours.

The schedule is open-loop: notification ``k`` is published at ``start + k /
rate`` by its own task over a pool of HTTP connections, whether or not earlier
ones were delivered, in the issue's mix (70% one user, 20% a project, 8% a
role, 2% everyone, drawn from one seeded generator so every server gets the
same sequence). A delivery's latency runs from the moment its publish request
is started to the moment the recipient's reader has the frame; every
(notification, recipient) pair that should arrive is counted, and one that did
not arrive by the end of the drain is a missing delivery, reported as an error.

The load generator (``bench/load_generator.py``) is several processes: this
one publishes on the schedule and does the accounting, and the sockets are
spread over ``generator_processes`` reader processes (client ``i`` in reader
``i % K``), each timing the frames it reads with ``perf_counter`` (one
monotonic clock for every process) and reporting them in batches. They all
run on CPU 1 by default (the server has CPU 0 of this 2-core machine);
``spread_generator`` lets the readers use every CPU but the server's on a
bigger machine. Every window records the publisher's and each reader's share
of a core, so a step where the generator, not the server, was the floor shows.

Every target is a ratio to P0 in the same run (issue 14):

- B3: the issue's rate (10k/min) for a window; p50 and p99 over every
  delivery, ours' p99 at most 3x P0's and nothing missing after the drain;
  server CPU (utime + stime over the window) per delivery, at most 1.5x P0's.
  For ours the same schedule also runs first with no socket connected, which
  is the cost of publishing (HTTP, auth, database writes); ours' delivery CPU
  is (CPU with sockets - CPU without) / deliveries, set against P0's.
- B6: right after B3 on the same server and sockets, 1% of the clients stop
  reading (the reader pauses their transports, and their receive buffers
  are small, so TCP backs up into the server); the others' p99, at most 3x P0's in the same
  window with nothing missing (ours' B3 p99 over the same clients beside it),
  the server's RSS over the run, the server-side send queue of the stopped
  sockets (``/proc/net/tcp``) and the close codes they get once they read
  again.
- B4: a fresh server and sockets; the same mix at multiples of the issue's
  rate (every step the same sequence of audiences, ``ceiling_plan``), 10 s
  steps: doubling from x1 while steps pass, quartering while they fail, then
  bisecting (the geometric middle of the highest pass and the lowest failure)
  until those are within ``ceiling_precision`` (10%), for at most
  ``ceiling_steps`` steps. A step passes when its p99 stays under 250 ms with
  nothing missing and no publish error; the figure is the delivered
  deliveries/s of the highest step that passed, ours at least 50%
  of P0's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httptools

from bench.common import (
    CLIENT_CPU,
    OURS_WITH_METRICS,
    PING_INTERVAL_SECONDS,
    SERVER_CPU,
    BenchError,
    HttpConnection,
    Outcome,
    ServerProcess,
    bench_env,
    cpu_seconds,
    free_port,
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
from bench.load_generator import ReaderPool

Returned = TypeVar("Returned")
SERVERS = ("ours", "P0", "P1")
# OURS_WITH_METRICS: ours with metrics on, beside "ours" (bench/common.py).
OPTIONAL_SERVERS = ("P1-redis", OURS_WITH_METRICS)
PROJECT_SIZE = 50
ROLE_COUNT = 4
# The issue's rate: 10k notifications a minute.
ISSUE_RATE = 10_000 / 60
# The issue's mix, by audience kind.
MIX = (("user", 0.70), ("project", 0.20), ("role", 0.08), ("everyone", 0.02))
# Issue 14's targets, every one a ratio to P0 measured in the same run.
P99_RATIO_TARGET = 3.0
CEILING_SHARE_TARGET = 0.5
CPU_RATIO_TARGET = 1.5
CEILING_P99_MS = 250.0
SLOW_SHARE = 0.01
CDF_POINTS = 5000
PLAN_SEED = 5
PUBLISHER = "admin"
DAPHNE_FLAGS = (
    # The counterparts of the product's uvicorn settings (backend/cli.py _run_uvicorn),
    # as bench/connections.py runs daphne.
    *("--ping-interval", str(PING_INTERVAL_SECONDS), "--ping-timeout", str(PING_INTERVAL_SECONDS)),
    *("--websocket-max-message-size", "65536", "--websocket_timeout", "-1", "-v", "0"),
)
# uvicorn's default transport high-water mark (64 KiB) as the per-socket buffer
# above the consumer's queue, for the stated bound.
TRANSPORT_HIGH_WATER = 64 * 1024
# backend/config/settings.py's TRAY_WS_SEND_QUEUE default (bench_env sets none).
WS_SEND_QUEUE_DEFAULT = 1000
# Ours' frame size before ours has run (measured and replaced on every run with ours).
DEFAULT_FRAME_BYTES = 330


@dataclass(frozen=True)
class Profile:
    """How much load one invocation puts on each server."""

    connections: int
    rate: float
    window: float
    # B4 searches the rate (as multiples of ``rate``): doubling from 1x while steps
    # pass, quartering while they fail, then bisecting (geometric middle) until the
    # highest pass and the lowest failure are within ``ceiling_precision`` of each
    # other, for at most this many steps per server.
    ceiling_steps: int
    ceiling_window: float
    # After the last publish of a window, how long deliveries may still take to arrive.
    drain: float
    publishers: int
    connectors: int
    # Ceiling found when lowest failure / highest pass is below this (1.10: within 10%).
    ceiling_precision: float = 1.10
    # The load generator's reader processes (bench/load_generator.py), the sockets
    # spread over them; the publisher and the accounting stay in this process.
    generator_processes: int = 2
    # False: the readers share CPU 1 with this process (a 2-core machine: CPU 0 is the
    # server's); True: they may use every CPU but the server's (a bigger machine).
    spread_generator: bool = False


PROFILES = {
    "quick": Profile(
        connections=400,
        rate=ISSUE_RATE,
        window=20.0,
        ceiling_steps=8,
        ceiling_window=10.0,
        drain=10.0,
        publishers=16,
        connectors=8,
    ),
    "full": Profile(
        connections=2000,
        rate=ISSUE_RATE,
        window=60.0,
        # Enough for ours (x1 down to ~x0.005 in quarters) and P0 (x1 up to ~x2) to
        # be bracketed and then bisected to within 10%.
        ceiling_steps=12,
        ceiling_window=10.0,
        drain=10.0,
        publishers=16,
        connectors=8,
    ),
}


def profile_for(name: str, *, smoke: bool) -> Profile:
    """The named profile; a smoke run only proves the module works."""
    profile = PROFILES[name]
    if smoke:
        return replace(
            profile,
            connections=20,
            rate=20.0,
            window=2.0,
            ceiling_steps=2,
            ceiling_window=1.0,
            drain=5.0,
        )
    return profile


# --- the audience structure and the schedule (pure) -------------------------------------


@dataclass(frozen=True)
class Layout:
    """Who is in which group: clients ``0..n-1``, one user each."""

    n: int

    @property
    def projects(self) -> int:
        return max(1, self.n // PROJECT_SIZE)

    def project_of(self, client: int) -> int:
        return min(client // PROJECT_SIZE, self.projects - 1)

    @staticmethod
    def role_of(client: int) -> int:
        return client % ROLE_COUNT

    def groups_of(self, client: int) -> list[str]:
        """The groups of client ``client`` besides ``user.uI`` and ``everyone``."""
        return [f"project.{self.project_of(client)}", f"role.r{self.role_of(client)}"]

    def members(self) -> dict[str, list[int]]:
        """Group name -> its clients, for every group a publish may name."""
        groups: dict[str, list[int]] = {"everyone": list(range(self.n))}
        for client in range(self.n):
            groups[f"user.u{client}"] = [client]
            for name in self.groups_of(client):
                groups.setdefault(name, []).append(client)
        return groups


def make_plan(layout: Layout, count: int, seed: int) -> list[str]:
    """``count`` audiences (group names) drawn in the issue's mix."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    plan: list[str] = []
    for kind in rng.choices(kinds, weights=weights, k=count):
        if kind == "user":
            plan.append(f"user.u{rng.randrange(layout.n)}")
        elif kind == "project":
            plan.append(f"project.{rng.randrange(layout.projects)}")
        elif kind == "role":
            plan.append(f"role.r{rng.randrange(ROLE_COUNT)}")
        else:
            plan.append("everyone")
    return plan


def ceiling_plan(base: Sequence[str], count: int) -> list[str]:
    """A B4 step's ``count`` audiences: ``base`` (one step's worth at x1) over and over.

    Every step, at every multiple and on every server, publishes the same sequence
    of audiences, so a step's deliveries scale with its multiple and two servers are
    compared on the same load. (Each step used to draw a plan of its own: the share
    of broadcasts, and so the deliveries a second, varied by a third between steps,
    x1 carrying 18,100 a second where x0.917 carried 12,900.)
    """
    return [base[index % len(base)] for index in range(count)]


def downsample(values: Sequence[float], points: int = CDF_POINTS) -> list[float]:
    """At most ``points`` evenly spaced order statistics, in ms, for a CDF plot."""
    ordered = sorted(values)
    if len(ordered) <= points:
        return [round(v * 1000, 3) for v in ordered]
    last = len(ordered) - 1
    return [round(ordered[round(i * last / (points - 1))] * 1000, 3) for i in range(points)]


# --- servers ---------------------------------------------------------------------------


@dataclass
class Seeded:
    """Ours' database: tokens by client, project ids by project number, the admin's token."""

    env: dict[str, str]
    tokens: list[str]
    project_ids: list[int]
    admin_token: str


def layout_seed_code(layout: Layout) -> str:
    """Python for ``manage shell`` that creates the layout's users (``bu0``...), their
    roles (``bench-r0``...), sequence rows and projects (``made``, in order) and leaves
    ``users`` (in client order) and ``made`` defined."""
    return (
        "from backend.notifications.models import InboxSequence\n"
        "from backend.projects.models import Membership, Project\n"
        "from backend.users.models import Role, User\n"
        f"n, size, role_count, projects = {layout.n}, {PROJECT_SIZE}, {ROLE_COUNT}, "
        f"{layout.projects}\n"
        "roles = [Role.objects.create(name=f'bench-r{j}') for j in range(role_count)]\n"
        "User.objects.bulk_create([User(username=f'bu{i}', role=roles[i % role_count], "
        "password='!') for i in range(n)], batch_size=500)\n"
        "users = list(User.objects.filter(username__startswith='bu').order_by('id'))\n"
        "users.sort(key=lambda u: int(u.username[2:]))\n"
        "InboxSequence.objects.bulk_create([InboxSequence(user=u) for u in users], "
        "batch_size=500, ignore_conflicts=True)\n"
        "made = [Project.objects.create(title=f'Bench project {k}') for k in range(projects)]\n"
        "Membership.objects.bulk_create([Membership(project=made[min(i // size, projects - 1)], "
        "user=u, role='member') for i, u in enumerate(users)], batch_size=500)\n"
    )


def seed_ours(env: dict[str, str], layout: Layout) -> Seeded:
    """Migrate, seed the demo data, then the layout's users, roles and projects.

    Tokens are minted in a ``manage shell``: the password hasher is
    deliberately slow, and thousands of logins would measure it.
    """
    prepare_database(env)
    code = (
        "import json\n"
        "from backend.users.services import session_start\n"
        + layout_seed_code(layout)
        + "admin = User.objects.get(username='admin')\n"
        "print(json.dumps({'tokens': [session_start(user=u).access for u in users], "
        "'projects': [p.pk for p in made], 'admin': session_start(user=admin).access}))\n"
    )
    seeded = json.loads(run_cli(env, "manage", "shell", "-c", code).splitlines()[-1])
    if len(seeded["tokens"]) != layout.n:
        raise BenchError(f"seeded {len(seeded['tokens'])} users, wanted {layout.n}")
    return Seeded(
        env=env,
        tokens=seeded["tokens"],
        project_ids=seeded["projects"],
        admin_token=seeded["admin"],
    )


@dataclass
class Target:
    """A started server under test and how to connect to it and publish on it."""

    name: str
    server: ServerProcess
    # The processes whose memory and CPU count as the server's (redis for P1-redis).
    pids: list[int]
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    seeded: Seeded | None = None
    # The peers' ``body``: padding that makes their frames as large as ours.
    body: str = ""

    @property
    def is_ours(self) -> bool:
        return self.seeded is not None

    def credentials(self, layout: Layout, client: int) -> tuple[str | None, str]:
        """Bearer token and query string of client ``client``."""
        if self.seeded is not None:
            return self.seeded.tokens[client], ""
        return None, f"?user=u{client}&groups={','.join(layout.groups_of(client))}"

    def request(self, group: str, title: str) -> bytes:
        """The HTTP/1.1 request that publishes ``title`` to ``group``."""
        host = urlsplit(self.server.base_url).netloc
        if self.seeded is None:
            query = urlencode({"title": title, "group": group, "body": self.body})
            return f"GET /publish?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        kind, _, name = group.partition(".")
        audience: dict[str, Any]
        if kind == "user":
            audience = {"usernames": [f"b{name}"]}
        elif kind == "project":
            audience = {"projects": [self.seeded.project_ids[int(name)]]}
        elif kind == "role":
            audience = {"roles": [f"bench-{name}"]}
        else:
            audience = {"everyone": True}
        body = json.dumps({"audience": audience, "title": title}).encode()
        head = (
            f"POST /api/notifications/ HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {self.seeded.admin_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    @property
    def publish_status(self) -> int:
        return 201 if self.is_ours else 200

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


def start_target(name: str, seeded: Seeded, scratch: Path, label: str) -> Target:
    """Start server ``name`` (ours, P0, P1, P1-redis) for one session."""
    log_path = scratch / f"{name}-{label}.log"
    python = sys.executable
    if name in ("ours", OURS_WITH_METRICS):
        command = [python, "-m", "backend.cli", "serve", "--demo", "--port", "0"]
        server = start_server(name, command, ours_env(name, seeded.env), log_path)
        return Target(name=name, server=server, pids=[server.process.pid], seeded=seeded)
    port = free_port()
    if name == "P0":
        command = [python, "-m", "bench.peers.p0_websockets", "--port", str(port)]
        command += ["--ping-interval", str(PING_INTERVAL_SECONDS)]
        server = start_server(name, command, seeded.env, log_path, port=port, ws_path="/ws/")
        return Target(name=name, server=server, pids=[server.process.pid])
    # The peer configures its own Django settings; the product's must not leak in.
    peer_env = {k: v for k, v in seeded.env.items() if k != "DJANGO_SETTINGS_MODULE"}
    helpers: list[subprocess.Popen[bytes]] = []
    if name == "P1-redis":
        redis_process, redis_url = start_redis(scratch)
        helpers.append(redis_process)
        peer_env["BENCH_P1_REDIS_URL"] = redis_url
    command = [
        *(python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)),
        *DAPHNE_FLAGS,
        "bench.peers.p1_channels:application",
    ]
    try:
        server = start_server(name, command, peer_env, log_path, port=port, ws_path="/ws/")
    except BaseException:
        stop_helpers(helpers)
        raise
    pids = [server.process.pid, *(helper.pid for helper in helpers)]
    return Target(name=name, server=server, pids=pids, helpers=helpers)


def stop_helpers(helpers: Sequence[subprocess.Popen[bytes]]) -> None:
    for helper in helpers:
        helper.terminate()
        try:
            helper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


def stop_target(target: Target) -> None:
    stop_server(target.server)
    stop_helpers(target.helpers)


# --- the load generator ----------------------------------------------------------------


@dataclass
class Phase:
    """One window's deliveries, as the readers record them."""

    name: str
    # Whether the slow clients' frames count (False while they are stopped: B6).
    count_slow: bool = True
    latencies: array[float] = field(default_factory=lambda: array("d"))
    slow_latencies: array[float] = field(default_factory=lambda: array("d"))
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    outstanding: int = 0
    publishes_done: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    # The slow clients that got a frame of this phase (in time or late).
    slow_seen: set[int] = field(default_factory=set)

    def check_settled(self) -> None:
        if self.publishes_done and self.outstanding <= 0:
            self.settled.set()


class Clients:
    """N client sockets, spread over the load generator's reader processes, and the
    accounting of every notification frame they read.

    Notifications are numbered globally (title ``n<k>``); ``sent_at[k]`` is
    when its publish request started, ``expected[k]``/``received[k]`` count its
    recipients, and ``phase_of[k]`` names the window it belongs to. A frame of
    a window that is already closed counts as late, not as delivered. The
    readers (``bench/load_generator.py``) time each frame when they read it
    and report in batches; the accounting happens here, as the batches come.
    """

    def __init__(self, layout: Layout, slow: set[int], profile: Profile, log_dir: Path) -> None:
        self.layout = layout
        self.slow = slow
        self.connected: set[int] = set()
        self.close_codes: dict[int, int | None] = {}
        self.pool = ReaderPool(
            profile.generator_processes,
            generator_cpus(profile),
            self._on_frames,
            self._on_closed,
            log_dir,
        )
        self.started = False
        self.sent_at = array("d")
        self.expected = array("l")
        self.received = array("l")
        self.phase_of: list[Phase | None] = []
        self.open_phases: set[int] = set()
        self.late: Counter[str] = Counter()
        self.frame_bytes: list[int] = []

    # -- sockets

    async def open(self, target: Target, count: int, connectors: int) -> float:
        """Connect ``count`` clients, ``connectors`` at a time over all readers; returns
        the seconds it took."""
        if not self.started:
            await self.pool.start()
            self.started = True
        clients = [
            (client, *target.credentials(self.layout, client), client in self.slow)
            for client in range(count)
        ]
        seconds = await self.pool.open(target.server.ws_url, clients, connectors)
        self.connected.update(range(count))
        return seconds

    async def flush(self) -> None:
        """Until every frame the readers read so far has been counted here."""
        self.frame_bytes = (await self.pool.flush())[:100]

    async def set_gate(self, open_: bool) -> None:
        """Whether the slow clients read (B6 stops them)."""
        await self.pool.set_gate(open_)

    def _on_closed(self, client: int, code: int | None) -> None:
        self.close_codes[client] = code

    def _on_frames(self, clients: array[int], indexes: array[int], times: array[float]) -> None:
        slow = self.slow
        for client, index, now in zip(clients, indexes, times, strict=True):
            self._on_frame(client, client in slow, index, now)

    def _on_frame(self, client: int, slow: bool, index: int, now: float) -> None:
        if index >= len(self.phase_of):
            return
        phase = self.phase_of[index]
        if slow and phase is not None:
            phase.slow_seen.add(client)
        if phase is None or id(phase) not in self.open_phases:
            self.late[phase.name if phase else "?"] += 1
            return
        latency = now - self.sent_at[index]
        if slow and not phase.count_slow:
            phase.slow_latencies.append(latency)
            return
        self.received[index] += 1
        if self.received[index] > self.expected[index]:
            phase.duplicates += 1
            return
        (phase.slow_latencies if slow else phase.latencies).append(latency)
        phase.received += 1
        phase.outstanding -= 1
        phase.check_settled()

    async def close(self) -> None:
        if not self.started:
            return
        codes = await self.pool.close()
        for client, code in codes.items():
            self.close_codes.setdefault(client, code)

    def generator_cpu(self) -> list[float]:
        """CPU seconds so far: this process (the publisher), then each reader."""
        return [time.process_time(), *self.pool.cpu_seconds()]

    # -- notifications

    def register(self, phase: Phase, recipients: int) -> int:
        """A new notification of ``phase`` with ``recipients`` expected deliveries."""
        index = len(self.phase_of)
        self.phase_of.append(phase)
        self.sent_at.append(0.0)
        self.expected.append(recipients)
        self.received.append(0)
        phase.expected += recipients
        phase.outstanding += recipients
        return index

    def recipients(self, members: list[int], phase: Phase) -> int:
        """How many of ``members`` are connected and count in ``phase``."""
        return sum(
            1
            for client in members
            if client in self.connected
            and client not in self.close_codes
            and (phase.count_slow or client not in self.slow)
        )


def generator_cpus(profile: Profile) -> set[int]:
    """The CPUs of the load generator's readers: CPU 1 (CLIENT_CPU) alone, as the
    suite pins itself, or with ``spread_generator`` every CPU but the server's."""
    if profile.spread_generator:
        spread = set(range(os.cpu_count() or 2)) - {SERVER_CPU}
        return spread or {CLIENT_CPU}
    return {CLIENT_CPU}


def describe_cpus(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


@dataclass
class WindowResult:
    """What one publish window measured."""

    phase: str
    rate: float
    notifications: int
    window_seconds: float
    settle_seconds: float
    expected: int
    received: int
    missing: int
    duplicates: int
    publish_errors: int
    publish_errors_sample: list[str]
    # Publishes the server answered as it should (201 or 200).
    answered: int
    # The share of the server CPU (CPU 0) that other processes used during the window:
    # this machine is shared, and a busy neighbour shows up here.
    others_on_server_cpu: float
    cpu_seconds: float
    # The publisher's (this process's) share of a core over the window, then each
    # reader process's; a generator near a full core is the floor, not the server.
    client_cpu_share: float
    reader_cpu_shares: list[float]
    generator_lag_max_ms: float
    publish_p99_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    slow_p99_ms: float | None
    rss_start_kib: int
    rss_peak_kib: int
    rss_end_kib: int
    latencies: list[float] = field(default_factory=list, repr=False)
    slow_latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.window_seconds if self.window_seconds else 0.0

    @property
    def cpu_per_delivery_us(self) -> float | None:
        return self.cpu_seconds / self.received * 1e6 if self.received else None

    def generator_saturated(self, cpus: int) -> bool:
        """Whether the load generator used 90% of its CPUs (or one process 90% of a
        core) over the window: then it, not the server, may have set the pace."""
        shares = [self.client_cpu_share, *self.reader_cpu_shares]
        return sum(shares) >= 0.9 * cpus or max(shares) >= 0.9

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies")
        data.pop("slow_latencies")
        data["deliveries_per_second"] = round(self.deliveries_per_second, 1)
        data["cpu_per_delivery_us"] = self.cpu_per_delivery_us
        return data


def _ms(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) * 1000 if values else None


async def sample_rss(target: Target, series: list[tuple[float, int]], every: float) -> None:
    """Append (time, RSS KiB) every ``every`` seconds until cancelled (a sampling loop)."""
    started = time.perf_counter()
    while True:
        series.append((round(time.perf_counter() - started, 2), target.rss_kib()))
        await asyncio.sleep(every)


async def run_window(
    target: Target,
    clients: Clients | None,
    connections: list[HttpConnection],
    phase: Phase,
    plan: list[str],
    rate: float,
    drain: float,
    members: dict[str, list[int]],
    rss_series: list[tuple[float, int]],
) -> WindowResult:
    """Publish ``plan`` open-loop at ``rate`` a second and wait (up to ``drain`` seconds
    after the last publish) for every delivery; ``clients`` None means no socket."""
    errors: list[str] = []
    publish_seconds: list[float] = []
    lag = 0.0
    indices: list[int] = []
    if clients is not None:
        clients.open_phases.add(id(phase))
        for group in plan:
            indices.append(clients.register(phase, clients.recipients(members[group], phase)))
    else:
        indices = list(range(len(plan)))
    # Open-loop: the schedule hands each notification to the queue at its instant,
    # whatever became of the earlier ones; its latency runs from that instant, so
    # waiting for a free connection (a server that fell behind) counts too.
    queue: asyncio.Queue[tuple[int, str, float]] = asyncio.Queue()

    async def publisher(connection: HttpConnection) -> None:
        while True:
            index, group, issued = await queue.get()
            try:
                status, body = await connection.request(target.request(group, f"n{index}"))
                if status != target.publish_status:
                    errors.append(f"HTTP {status} {body[:200]!r}")
            except (OSError, httptools.HttpParserError) as error:
                errors.append(f"{type(error).__name__}: {error}")
            publish_seconds.append(time.perf_counter() - issued)
            queue.task_done()

    workers = [asyncio.ensure_future(publisher(c)) for c in connections]
    rss_start = target.rss_kib()
    peak_before = len(rss_series)
    cpu_before = target.cpu_seconds()
    busy_before = server_cpu_busy()
    generator_before = clients.generator_cpu() if clients is not None else [time.process_time()]
    started = time.perf_counter()
    for position, group in enumerate(plan):
        at = started + position / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        issued = time.perf_counter()
        if clients is not None:
            clients.sent_at[indices[position]] = issued
        queue.put_nowait((indices[position], group, issued))
    window_end = time.perf_counter()
    deadline = window_end + drain
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.1, deadline - time.perf_counter())):
            await queue.join()
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    # A worker cancelled mid-request leaves its connection in an unknown state.
    for connection in connections:
        connection.close()
    unanswered = len(plan) - len(publish_seconds)
    if unanswered:
        errors.append(f"{unanswered} publishes unanswered at the end of the drain")
        errors.extend([""] * (unanswered - 1))
    if clients is not None:
        phase.publishes_done = True
        phase.check_settled()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - time.perf_counter())):
                await phase.settled.wait()
        if not phase.settled.is_set():
            # Frames the readers read by now but have not reported yet still count.
            await clients.flush()
        clients.open_phases.discard(id(phase))
    settled_at = time.perf_counter()
    cpu = target.cpu_seconds() - cpu_before
    generator_after = clients.generator_cpu() if clients is not None else [time.process_time()]
    elapsed = settled_at - started
    generator_shares = [
        max(0.0, after - before) / elapsed
        for before, after in zip(generator_before, generator_after, strict=False)
    ]
    rss_end = target.rss_kib()
    peak = max([rss for _, rss in rss_series[peak_before:]] + [rss_start, rss_end])
    latencies = list(phase.latencies)
    slow_latencies = list(phase.slow_latencies)
    return WindowResult(
        phase=phase.name,
        rate=rate,
        notifications=len(plan),
        window_seconds=window_end - started,
        settle_seconds=settled_at - window_end,
        expected=phase.expected,
        received=phase.received,
        missing=phase.expected - phase.received,
        duplicates=phase.duplicates,
        publish_errors=len(errors),
        publish_errors_sample=[e for e in errors if e][:5],
        answered=len(publish_seconds) - sum(1 for e in errors if e and "unanswered" not in e),
        others_on_server_cpu=max(
            0.0, (server_cpu_busy() - busy_before - cpu) / (settled_at - started)
        ),
        cpu_seconds=cpu,
        client_cpu_share=generator_shares[0],
        reader_cpu_shares=[round(share, 3) for share in generator_shares[1:]],
        generator_lag_max_ms=lag * 1000,
        publish_p99_ms=_ms(publish_seconds, 99),
        p50_ms=_ms(latencies, 50),
        p99_ms=_ms(latencies, 99),
        slow_p99_ms=_ms(slow_latencies, 99),
        rss_start_kib=rss_start,
        rss_peak_kib=peak,
        rss_end_kib=rss_end,
        latencies=latencies,
        slow_latencies=slow_latencies,
    )


def server_cpu_busy() -> float:
    """Seconds CPU 0 (the server CPU) has been busy since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{SERVER_CPU} "):
            ticks = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal ...: busy is all but idle+iowait.
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    raise BenchError(f"no cpu{SERVER_CPU} line in /proc/stat")


def tcp_queues(server_port: int, client_ports: set[int]) -> dict[str, list[int]]:
    """Bytes queued on loopback TCP sockets, from /proc/net/tcp: the server side's
    send queue and the client side's receive queue of the given client ports."""
    sent: list[int] = []
    unread: list[int] = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        tx_queue, rx_queue = (int(part, 16) for part in fields[4].split(":"))
        if local_port == server_port and remote_port in client_ports:
            sent.append(tx_queue)
        elif local_port in client_ports and remote_port == server_port:
            unread.append(rx_queue)
    return {"server_send_queue_bytes": sorted(sent), "client_receive_queue_bytes": sorted(unread)}


# --- sessions --------------------------------------------------------------------------


@dataclass
class TrafficSession:
    """B3 (and ours' no-socket baseline) then B6, on one server and one set of sockets."""

    server: str
    connections: int
    slow_clients: int
    connect_seconds: float = 0.0
    baseline: WindowResult | None = None
    b3: WindowResult | None = None
    b6: WindowResult | None = None
    rss_series: list[tuple[float, int]] = field(default_factory=list)
    slow_queues: dict[str, list[int]] = field(default_factory=dict)
    slow_close_codes: dict[str, int] = field(default_factory=dict)
    slow_resume_seconds: float = 0.0
    late_frames: dict[str, int] = field(default_factory=dict)
    other_close_codes: dict[str, int] = field(default_factory=dict)
    frame_bytes: int = 0


@dataclass
class CeilingSession:
    """B4's steps on one server: every step run, the last one the first to fail."""

    server: str
    connections: int
    multiples: list[float] = field(default_factory=list)
    steps: list[WindowResult] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)
    # False when the server was still busy 30 s after a failed step (search stopped).
    recovered: bool = True
    # The lowest multiple at which the load generator used (nearly) all its CPU.
    generator_bound: float | None = None


def step_passes(window: WindowResult) -> bool:
    """A ceiling step holds when p99 stays under 250 ms and nothing is missing or failed."""
    return (
        window.p99_ms is not None
        and window.p99_ms < CEILING_P99_MS
        and window.missing == 0
        and window.duplicates == 0
        and window.publish_errors == 0
    )


def next_multiple(
    multiples: Sequence[float], passed: Sequence[bool], precision: float = 1.10
) -> float | None:
    """The next B4 rate multiple: x2 above every pass while nothing failed, /4 below
    every failure while nothing passed, then the geometric middle of the highest pass
    and the lowest failure above it; None once lowest failure / highest pass is under
    ``precision`` (the ceiling is known to that factor)."""
    held = [m for m, ok in zip(multiples, passed, strict=True) if ok]
    failed = [m for m, ok in zip(multiples, passed, strict=True) if not ok]
    if not failed:
        return max(held) * 2
    if not held:
        return min(failed) / 4
    low = max(held)
    above = [m for m in failed if m > low]
    if not above:
        return low * 2
    high = min(above)
    if high / low < precision:
        return None
    return float((low * high) ** 0.5)


async def wait_until_idle(target: Target, *, deadline: float) -> bool:
    """Whether the server came to use under 10% of a core over half a second (the
    backlog an overloaded step left is done) within ``deadline`` seconds."""
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        before = target.cpu_seconds()
        await asyncio.sleep(0.5)
        if target.cpu_seconds() - before < 0.05:
            return True
    return False


def slow_set(layout: Layout) -> set[int]:
    """1% of the clients (at least one), spread over the projects and roles."""
    count = max(1, round(layout.n * SLOW_SHARE))
    return {round(k * layout.n / count) + 1 for k in range(count)} & set(range(layout.n))


def _connections(target: Target, profile: Profile) -> list[HttpConnection]:
    return [HttpConnection.to(target.server.base_url) for _ in range(profile.publishers)]


async def warm_up(
    target: Target, clients: Clients, connections: list[HttpConnection], layout: Layout
) -> None:
    """One notification to everyone, every socket has it: every path ran once."""
    phase = Phase(name="warm-up")
    members = {"everyone": list(range(layout.n))}
    await run_window(target, clients, connections, phase, ["everyone"], 1.0, 60.0, members, [])
    if phase.received != phase.expected:
        raise BenchError(
            f"{target.name}: warm-up reached {phase.received} of {phase.expected} sockets"
        )


async def traffic_session(
    target: Target, layout: Layout, profile: Profile, plans: dict[str, list[str]], log_dir: Path
) -> TrafficSession:
    """B3, then B6 with the slow clients stopped, on one server (ours: the no-socket
    baseline first)."""
    slow = slow_set(layout)
    session = TrafficSession(server=target.name, connections=layout.n, slow_clients=len(slow))
    members = layout.members()
    sampler = asyncio.ensure_future(sample_rss(target, session.rss_series, 0.25))
    clients = Clients(layout, slow, profile, log_dir)
    connections = _connections(target, profile)
    try:
        if target.is_ours:
            # Warm the publish path, then the same schedule with no socket open.
            nobody = Phase(name="no-socket warm-up")
            await run_window(target, None, connections, nobody, ["everyone"], 1.0, 60.0, {}, [])
            session.baseline = await run_window(
                target,
                None,
                connections,
                Phase(name="B3 no sockets"),
                plans["B3"],
                profile.rate,
                profile.drain,
                members,
                session.rss_series,
            )
        session.connect_seconds = await clients.open(target, layout.n, profile.connectors)
        await warm_up(target, clients, connections, layout)
        await clients.flush()
        session.frame_bytes = max(clients.frame_bytes, default=0)
        session.b3 = await run_window(
            target,
            clients,
            connections,
            Phase(name="B3"),
            plans["B3"],
            profile.rate,
            profile.drain,
            members,
            session.rss_series,
        )
        await clients.set_gate(False)
        b6_phase = Phase(name="B6", count_slow=False)
        probe = asyncio.ensure_future(
            _probe_queues(target, clients, slow, profile.window * 0.9, session)
        )
        session.b6 = await run_window(
            target,
            clients,
            connections,
            b6_phase,
            plans["B6"],
            profile.rate,
            profile.drain,
            members,
            session.rss_series,
        )
        await probe
        # Let the stopped clients read again: each drains its backlog and then
        # either its close frame or, still open, this marker sent to everyone.
        resumed = time.perf_counter()
        await clients.set_gate(True)
        marker = Phase(name="B6 marker", count_slow=False)
        await run_window(target, clients, connections, marker, ["everyone"], 1.0, 60.0, members, [])
        await _wait_slow_settled(clients, slow, marker, deadline=60.0)
        session.slow_resume_seconds = time.perf_counter() - resumed
        session.late_frames = dict(clients.late)
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await clients.close()
    codes = Counter(
        "open" if clients.close_codes.get(c) in (None, 1000) else str(clients.close_codes[c])
        for c in slow
    )
    session.slow_close_codes = dict(codes)
    session.other_close_codes = dict(
        Counter(str(code) for c, code in clients.close_codes.items() if c not in slow)
    )
    return session


async def _probe_queues(
    target: Target, clients: Clients, slow: set[int], after: float, session: TrafficSession
) -> None:
    """Late in the B6 window: how much the server's side of each stopped socket holds."""
    await asyncio.sleep(after)
    port = urlsplit(target.server.base_url).port or 0
    ports = await clients.pool.slow_ports()
    session.slow_queues = tcp_queues(port, ports)
    session.slow_queues["open_slow_sockets"] = [len(ports)]


async def _wait_slow_settled(
    clients: Clients, slow: set[int], marker: Phase, deadline: float
) -> None:
    """Until every slow client has been closed or has read up to ``marker``."""
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        if all(c in clients.close_codes or c in marker.slow_seen for c in slow):
            return
        # Polling two sets the readers fill; the condition has no single event.
        await asyncio.sleep(0.05)


async def ceiling_session(
    target: Target, layout: Layout, profile: Profile, plans: dict[str, list[str]], log_dir: Path
) -> CeilingSession:
    """B4: the search for the highest rate whose step holds (see ``next_multiple``)."""
    session = CeilingSession(server=target.name, connections=layout.n)
    members = layout.members()
    clients = Clients(layout, set(), profile, log_dir)
    cpus = len(generator_cpus(profile) | {CLIENT_CPU})
    connections = _connections(target, profile)
    try:
        await clients.open(target, layout.n, profile.connectors)
        await warm_up(target, clients, connections, layout)
        multiple: float | None = 1.0
        for _ in range(profile.ceiling_steps):
            if multiple is None:
                break
            step_rate = profile.rate * multiple
            plan = ceiling_plan(plans["B4"], round(step_rate * profile.ceiling_window))
            window = await run_window(
                target,
                clients,
                connections,
                Phase(name=f"B4 x{multiple:.3g}"),
                plan,
                step_rate,
                profile.drain,
                members,
                [],
            )
            session.multiples.append(multiple)
            session.steps.append(window)
            session.passed.append(step_passes(window))
            if window.generator_saturated(cpus) and session.generator_bound is None:
                session.generator_bound = multiple
            print(
                f"  {target.name} B4 x{multiple:.3g}: {window.deliveries_per_second:.0f}/s "
                f"p99 {window.p99_ms} ms missing {window.missing} "
                f"errors {window.publish_errors} publisher CPU {window.client_cpu_share:.0%}, "
                f"readers {', '.join(f'{x:.0%}' for x in window.reader_cpu_shares)}, "
                f"others on the server CPU {window.others_on_server_cpu:.0%}",
                flush=True,
            )
            # What a failed step left queued must not land in the next one; a server
            # that does not get through it in time ends the search.
            if not session.passed[-1] and not await wait_until_idle(target, deadline=30.0):
                session.recovered = False
                break
            multiple = next_multiple(session.multiples, session.passed, profile.ceiling_precision)
    finally:
        await clients.close()
    return session


def in_loop(work: Coroutine[Any, Any, Returned]) -> Returned:
    """Run one session on a fresh uvloop (the product and P0 run on uvloop too)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


# --- results ---------------------------------------------------------------------------


def ratio_met(ours: float | None, baseline: float | None, factor: float) -> bool:
    """Whether ``ours`` is at most ``factor`` times ``baseline`` (both measured)."""
    return ours is not None and baseline is not None and ours <= factor * baseline


def ceiling_of(session: CeilingSession | None) -> float | None:
    """B4's figure: the delivered deliveries/s of the highest step that held."""
    if session is None:
        return None
    pairs = zip(session.steps, session.passed, strict=True)
    held = [window.deliveries_per_second for window, ok in pairs if ok]
    return max(held) if held else 0.0


def ceiling_bracket(session: CeilingSession) -> tuple[float | None, float | None]:
    """The highest multiple that held and the lowest failed one above it."""
    held = [m for m, ok in zip(session.multiples, session.passed, strict=True) if ok]
    low = max(held) if held else None
    above = [
        m
        for m, ok in zip(session.multiples, session.passed, strict=True)
        if not ok and (low is None or m > low)
    ]
    return low, (min(above) if above else None)


def summarize(
    traffic: dict[str, TrafficSession],
    ceilings: dict[str, CeilingSession],
    peers: Sequence[str],
    profile: Profile,
) -> list[dict[str, Any]]:
    """One result row per figure, in the issue's format; every target a ratio to P0."""
    n = profile.connections
    mix = (
        f"{n} connections, {profile.rate * 60:.0f} notifications/min open-loop "
        f"(70% one user, 20% projects of {PROJECT_SIZE}, 8% roles of {n // ROLE_COUNT}, "
        f"2% everyone)"
    )
    generator = (
        f"; load generator: {profile.generator_processes} reader processes + the "
        f"publisher on CPU(s) {describe_cpus(generator_cpus(profile))}"
    )

    def b3(server: str, figure: Callable[[WindowResult], float | None]) -> float | None:
        session = traffic.get(server)
        return None if session is None or session.b3 is None else figure(session.b3)

    rows: list[dict[str, Any]] = []
    ours_missing = b3("ours", _missing)
    for q in (99, 50):
        ours, p0 = b3("ours", latency_at(q)), b3("P0", latency_at(q))
        rows.append(
            result(
                id="B3",
                metric=f"delivery latency p{q}, publish request started to each recipient's "
                f"frame, {mix}, {profile.window:.0f} s window{generator}",
                unit="ms",
                ours=ours,
                peers={p: b3(p, latency_at(q)) for p in peers},
                target=f"at most {P99_RATIO_TARGET:g}x P0's p{q} in the same run, and nothing "
                "missing after the drain" + ("" if q == 99 else " (this row: p50, for context)"),
                met=ratio_met(ours, p0, P99_RATIO_TARGET) and ours_missing == 0,
            )
        )
    rows.append(
        result(
            id="B3",
            metric=f"deliveries missing or duplicated after a {profile.drain:.0f} s drain, {mix}",
            unit="deliveries",
            ours=ours_missing,
            peers={p: b3(p, _missing) for p in peers},
            target="every delivery arrives, once (P0 beside it: the generator loses none)",
            met=ours_missing == 0,
        )
    )
    ours_session = traffic.get("ours")
    delivery_cpu: float | None = None
    if ours_session and ours_session.b3 and ours_session.baseline:
        delivery_cpu = delivery_cpu_us(ours_session.b3, ours_session.baseline)
    p0_cpu = b3("P0", lambda w: w.cpu_per_delivery_us)
    rows.append(
        result(
            id="B3",
            metric="server CPU per delivery; ours: (CPU with the sockets - the CPU per "
            "answered publish of the same schedule with no socket connected (HTTP, auth, "
            "database writes) x the publishes answered) / deliveries; peers: CPU / "
            f"deliveries; {mix}",
            unit="us",
            ours=delivery_cpu,
            peers={p: b3(p, lambda w: w.cpu_per_delivery_us) for p in peers},
            target=f"at most {CPU_RATIO_TARGET:g}x P0's CPU per delivery in the same run",
            met=ratio_met(delivery_cpu, p0_cpu, CPU_RATIO_TARGET),
        )
    )

    ours_ceiling, p0_ceiling = ceiling_of(ceilings.get("ours")), ceiling_of(ceilings.get("P0"))
    brackets = "; ".join(
        f"{name} held x{_g(low)}, "
        + ("no step failed" if high is None else f"failed x{_g(high)}")
        + f", {len(session.steps)} steps"
        + ("" if session.recovered else ", stopped: still busy 30 s after a failed step")
        + (f", generator saturated at x{_g(sat)}" if (sat := session.generator_bound) else "")
        for name, session in ceilings.items()
        for low, high in [ceiling_bracket(session)]
    )
    rows.append(
        result(
            id="B4",
            metric=f"highest sustained deliveries/s with p99 under 250 ms and none missing, "
            f"{n} connections, the B3 mix at multiples of the issue's rate (x1 = "
            f"{profile.rate * 60:.0f}/min), steps of {profile.ceiling_window:.0f} s: x2 from "
            f"x1 while passing, /4 while failing, then bisecting until the highest pass and "
            f"the lowest failure are within {(profile.ceiling_precision - 1) * 100:.0f}% "
            f"(at most {profile.ceiling_steps} steps per server){generator}; {brackets}",
            unit="deliveries/s",
            ours=ours_ceiling,
            peers={p: ceiling_of(ceilings.get(p)) for p in peers},
            target=f"at least {CEILING_SHARE_TARGET:.0%} of P0's ceiling in the same run",
            met=ours_ceiling is not None
            and p0_ceiling is not None
            and p0_ceiling > 0
            and ours_ceiling >= CEILING_SHARE_TARGET * p0_ceiling,
        )
    )

    def b6_others(server: str) -> float | None:
        session = traffic.get(server)
        return None if session is None or session.b6 is None else session.b6.p99_ms

    ours_b6, p0_b6 = b6_others("ours"), b6_others("P0")
    ours_b3_same = b3("ours", lambda w: _ms(w.latencies, 99))
    slow_count = ours_session.slow_clients if ours_session else max(1, round(n * SLOW_SHARE))
    ours_b6_missing = (
        None
        if ours_session is None or ours_session.b6 is None
        else ours_session.b6.missing + ours_session.b6.duplicates
    )
    rows.append(
        result(
            id="B6",
            metric=f"p99 delivery of the other clients while {slow_count} of {n} (1%) stop "
            f"reading, {mix}{generator}; ours' B3 p99 over the same clients in this run: "
            f"{'-' if ours_b3_same is None else f'{ours_b3_same:.1f}'} ms; ours' deliveries "
            f"missing or duplicated: {'-' if ours_b6_missing is None else ours_b6_missing}",
            unit="ms",
            ours=ours_b6,
            peers={p: b6_others(p) for p in peers},
            target=f"at most {P99_RATIO_TARGET:g}x P0's p99 in the same B6 window, and nothing "
            "missing",
            met=ratio_met(ours_b6, p0_b6, P99_RATIO_TARGET) and ours_b6_missing == 0,
        )
    )

    def rss_growth(server: str) -> float | None:
        session = traffic.get(server)
        if session is None or session.b6 is None or session.b3 is None:
            return None
        return (session.b6.rss_peak_kib - session.b3.rss_peak_kib) / 1024

    frame = ours_session.frame_bytes if ours_session else DEFAULT_FRAME_BYTES
    queue = WS_SEND_QUEUE_DEFAULT
    bound_mib = slow_count * (queue * frame + TRANSPORT_HIGH_WATER) / 2**20
    ours_growth = rss_growth("ours")
    codes = ours_session.slow_close_codes if ours_session else {}
    rows.append(
        result(
            id="B6",
            metric=f"server peak RSS in the B6 window minus the peak in B3 (same load, every "
            f"client reading), with {slow_count} clients not reading; bound: per stopped "
            f"socket TRAY_WS_SEND_QUEUE ({queue}) "
            f"frames x {frame} B + the transport's 64 KiB high-water mark = "
            f"{bound_mib:.1f} MiB for {slow_count} (kernel socket buffers, outside RSS, "
            f"besides); ours' stopped clients' close codes: {codes}",
            unit="MiB",
            ours=ours_growth,
            peers={p: rss_growth(p) for p in peers},
            target="server memory stays bounded (the bound named and enforced)",
            met=ours_growth is not None and ours_growth <= bound_mib,
        )
    )
    return rows


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def delivery_cpu_us(with_sockets: WindowResult, without: WindowResult) -> float | None:
    """Ours' CPU per delivery beyond publishing: the no-socket run's CPU per answered
    publish stands for the publishing part (scaled by answers, not by the window, since
    an overloaded server answers fewer than were sent)."""
    if not with_sockets.received or not without.answered:
        return None
    publishing = without.cpu_seconds / without.answered * with_sockets.answered
    return (with_sockets.cpu_seconds - publishing) / with_sockets.received * 1e6


def latency_at(q: float) -> Callable[[WindowResult], float | None]:
    """The window's delivery latency percentile ``q``, in ms."""
    return lambda window: _ms(window.latencies, q)


def _missing(window: WindowResult) -> float:
    return float(window.missing + window.duplicates)


def cdfs(traffic: dict[str, TrafficSession], profile: Profile) -> dict[str, dict[str, list[float]]]:
    n = profile.connections
    plots: dict[str, dict[str, list[float]]] = {}
    for title, attribute in (
        (f"B3 delivery latency at {n} connections", "b3"),
        (f"B6 delivery latency of the reading clients at {n} connections", "b6"),
    ):
        series = {}
        for server, session in traffic.items():
            window: WindowResult | None = getattr(session, attribute)
            if window is not None and window.latencies:
                series[server] = downsample(window.latencies)
        if series:
            plots[title] = series
    return plots


# --- entry points ----------------------------------------------------------------------


def run(
    profile: str,
    *,
    smoke: bool,
    scratch: Path,
    servers: Sequence[str] = SERVERS,
    generator: dict[str, Any] | None = None,
) -> Outcome:
    """B3, B4 and B6 for ``servers`` (ours first: the peers' frames are padded to its size);
    ``generator`` overrides the profile's ``generator_processes``/``spread_generator``."""
    settings = replace(profile_for(profile, smoke=smoke), **(generator or {}))
    layout = Layout(settings.connections)
    raise_fd_limit(settings.connections * 2 + 1024)
    started = time.monotonic()
    data_dir = scratch / "data"
    data_dir.mkdir()
    env = bench_env(data_dir)
    env["TRAY_ACCESS_TOKEN_MINUTES"] = "1440"
    seeded = (
        seed_ours(env, layout)
        if "ours" in servers or OURS_WITH_METRICS in servers
        else Seeded(env=env, tokens=[], project_ids=[], admin_token="")
    )
    count = round(settings.rate * settings.window)
    plans = {
        "B3": make_plan(layout, count, PLAN_SEED),
        "B6": make_plan(layout, count, PLAN_SEED + 1),
        "B4": make_plan(layout, round(settings.rate * settings.ceiling_window), PLAN_SEED + 10),
    }
    frame_bytes = DEFAULT_FRAME_BYTES
    traffic: dict[str, TrafficSession] = {}
    ceilings: dict[str, CeilingSession] = {}
    for name in servers:
        for kind in ("traffic", "ceiling"):
            target = start_target(name, seeded, scratch, kind)
            if not target.is_ours:
                # The peer's frame without a body is ~75 bytes; pad it to ours' size.
                target.body = "x" * max(0, frame_bytes - 75)
            try:
                if kind == "traffic":
                    session = in_loop(traffic_session(target, layout, settings, plans, scratch))
                    traffic[name] = session
                    if name == "ours" and session.frame_bytes:
                        frame_bytes = session.frame_bytes
                    _print_traffic(session)
                else:
                    ceilings[name] = in_loop(
                        ceiling_session(target, layout, settings, plans, scratch)
                    )
            except BaseException:
                print(f"{name} log:\n{target.server.log_tail()}", file=sys.stderr)
                raise
            finally:
                stop_target(target)
    peers = [s for s in servers if s not in ("ours", OURS_WITH_METRICS)]
    rows = summarize(traffic, ceilings, peers, settings)
    raw = {
        "settings": asdict(settings),
        "smoke": smoke,
        "layout": {
            "connections": layout.n,
            "projects": layout.projects,
            "project_size": PROJECT_SIZE,
            "roles": ROLE_COUNT,
        },
        "servers": list(servers),
        "duration_seconds": round(time.monotonic() - started, 1),
        "traffic": {
            name: {
                **{
                    key: value
                    for key, value in asdict(session).items()
                    if key not in ("baseline", "b3", "b6")
                },
                **{
                    key: None if window is None else window.summary()
                    for key, window in (
                        ("baseline", session.baseline),
                        ("b3", session.b3),
                        ("b6", session.b6),
                    )
                },
                "b3_latencies_ms": None if session.b3 is None else downsample(session.b3.latencies),
                "b6_latencies_ms": None if session.b6 is None else downsample(session.b6.latencies),
            }
            for name, session in traffic.items()
        },
        "ceiling": {
            name: {
                "multiples": session.multiples,
                "passed": session.passed,
                "recovered": session.recovered,
                "generator_bound": session.generator_bound,
                "steps": [window.summary() for window in session.steps],
            }
            for name, session in ceilings.items()
        },
    }
    return Outcome(results=rows, raw=raw, cdfs=cdfs(traffic, settings))


def _print_traffic(session: TrafficSession) -> None:
    for window in (session.baseline, session.b3, session.b6):
        if window is None:
            continue
        print(
            f"  {session.server} {window.phase}: {window.notifications} notifications, "
            f"{window.received}/{window.expected} deliveries, p50 {window.p50_ms} p99 "
            f"{window.p99_ms} ms, publish answered p99 {window.publish_p99_ms} ms, "
            f"CPU {window.cpu_seconds:.1f} s, client CPU "
            f"{window.client_cpu_share:.0%}, readers "
            f"{', '.join(f'{x:.0%}' for x in window.reader_cpu_shares)}, "
            f"errors {window.publish_errors}, "
            f"RSS peak {window.rss_peak_kib / 1024:.0f} MiB, others on the server CPU "
            f"{window.others_on_server_cpu:.0%}",
            flush=True,
        )
    print(
        f"  {session.server} slow clients: close codes {session.slow_close_codes}, "
        f"queues {session.slow_queues}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mixed_traffic",
        description="Issue 5's B3 (mixed traffic), B4 (ceiling) and B6 (slow consumers).",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: proves it runs")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"some of {','.join(SERVERS + OPTIONAL_SERVERS)} (ours first)",
    )
    parser.add_argument("--output", type=Path, help="write the Outcome as JSON here")
    parser.add_argument(
        "--generator-processes", type=int, help="reader processes (default: the profile's)"
    )
    parser.add_argument(
        "--spread-generator",
        action="store_true",
        help="let the readers use every CPU but the server's (default: CPU 1 only)",
    )
    options = parser.parse_args(argv)
    generator: dict[str, Any] = {}
    if options.generator_processes is not None:
        generator["generator_processes"] = max(1, options.generator_processes)
    if options.spread_generator:
        generator["spread_generator"] = True
    servers = server_names(options.servers, SERVERS + OPTIONAL_SERVERS)
    if servers is None:
        parser.error(f"--servers takes some of {','.join(SERVERS + OPTIONAL_SERVERS)}")
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the server on one, the load generator on the other")
        return 1
    pin_to_client_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-mixed-") as scratch:
        outcome = run(
            options.profile,
            smoke=options.smoke,
            scratch=Path(scratch),
            servers=servers,
            generator=generator,
        )
    print_outcome(outcome, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
