"""The server benchmarks of issue 5 with their peers, in one invocation.

Run from the repository root::

    .venv/bin/python -m bench                          # full profile: N = 1,000 and 5,000
    .venv/bin/python -m bench --profile quick          # N = 200, a few minutes
    .venv/bin/python -m bench --profile quick --only B1 --smoke --output /tmp/r.json

Servers, each started fresh for every connection count N, pinned to CPU 0
while this process (the load generator) runs on CPU 1:

- ``ours``: ``python -m backend.cli serve --demo --port 0``, the embedded
  default (SQLite, in-process delivery), with N extra active users so that N
  sockets are N distinct authenticated users; an admin publishes to everyone
  with ``POST /api/notifications/``.
- ``P0``: ``bench/peers/p0_websockets.py``, raw ``websockets`` with
  ``broadcast()``.
- ``P1``: ``bench/peers/p1_channels.py`` on Daphne with Channels'
  in-memory layer, ``group_send`` to the ``everyone`` group.
- ``P1-redis``: the same on channels-redis, against a private redis-server
  (also on CPU 0; its memory and CPU are counted with Daphne's).

Benchmarks (``--only``):

- B1: memory per idle connection (server RSS after N sockets sat idle for the
  window, minus RSS before them, over N) and CPU per 1k idle connections
  (utime + stime over the window, minus the same over half a window with no
  socket open, scaled to 1,000; every server pings each socket every 10 s).
- B2: broadcast to everyone at N connections: the time from sending the
  publish request to the last of the N sockets having the frame, p50 and p99.

Writes ``bench/results/latest.json`` (``--output``) in the format issue 5
names, and beside it ``<name>-raw.json`` with the settings and every sample.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    RESULTS_DIR,
    BenchError,
    Fleet,
    ServerProcess,
    bench_env,
    cpu_seconds,
    free_port,
    login,
    machine,
    percentile,
    pin_to_client_cpu,
    prepare_database,
    raise_fd_limit,
    rss_kib,
    run_cli,
    start_redis,
    start_server,
    stop_server,
)

RESULTS_PATH = RESULTS_DIR / "latest.json"
SERVERS = ("ours", "P0", "P1", "P1-redis")
BENCHMARKS = ("B1", "B2")
PUBLISHER = "admin"
PACKAGES = (
    "uvicorn",
    "websockets",
    "uvloop",
    "django",
    "channels",
    "channels-redis",
    "daphne",
    "redis",
    "httpx",
)
DAPHNE_FLAGS = (
    # The counterparts of the product's uvicorn settings (backend/cli.py _run_uvicorn),
    # as bench/asgi_servers.py runs daphne.
    *("--ping-interval", "10", "--ping-timeout", "10"),
    *("--websocket-max-message-size", "65536", "--websocket_timeout", "-1", "-v", "0"),
)
WARM_UP_SOCKETS = 3
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Profile:
    """How much load one invocation puts on each server."""

    name: str
    sizes: tuple[int, ...]
    rounds: int
    idle_window: float
    connectors: int
    # B2 stops after this many seconds of rounds (once MIN_ROUNDS are done):
    # P1's in-memory layer takes seconds per broadcast at thousands of sockets.
    round_budget: float


PROFILES = {
    "quick": Profile(
        name="quick", sizes=(200,), rounds=20, idle_window=10.0, connectors=8, round_budget=30.0
    ),
    "full": Profile(
        name="full",
        sizes=(1000, 5000),
        rounds=50,
        # Three of the servers' 10 s ping intervals.
        idle_window=30.0,
        connectors=8,
        round_budget=180.0,
    ),
}


def smoke(profile: Profile) -> Profile:
    """A run that only proves the suite works: tiny N, one round, a short window."""
    return replace(profile, sizes=(20,), rounds=1, idle_window=2.0, round_budget=5.0)


@dataclass
class Session:
    """What one server measured at one connection count."""

    server: str
    connections: int
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    empty_window: float = 0.0
    cpu_empty_seconds: float = 0.0
    idle_window: float = 0.0
    cpu_idle_seconds: float = 0.0
    connect_seconds: float = 0.0
    # From sending the publish request to the last socket's frame, and the request alone.
    latency_seconds: list[float] = field(default_factory=list)
    publish_seconds: list[float] = field(default_factory=list)


@dataclass
class Target:
    """A started server under test and how to connect to it and publish on it."""

    name: str
    server: ServerProcess
    # The processes whose memory and CPU count as the server's (redis for P1-redis).
    pids: list[int]
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    admin_token: str = ""

    def credentials(self, index: int) -> tuple[str | None, str]:
        """Bearer token and query string of socket ``index``."""
        if self.name == "ours":
            return self.tokens[index], ""
        return None, f"?user=u{index}" if self.name.startswith("P1") else ""

    async def publish(self, http: httpx.AsyncClient, title: str) -> None:
        """Send ``title`` to everyone; returns when the server answered."""
        if self.name == "ours":
            response = await http.post(
                "/api/notifications/",
                json={"audience": {"everyone": True}, "title": title},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            expected = 201
        else:
            response = await http.get("/publish", params={"title": title})
            expected = 200
        if response.status_code != expected:
            raise BenchError(f"{self.name} publish: HTTP {response.status_code} {response.text}")

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)


# --- servers ---------------------------------------------------------------------------


def seed_users(env: dict[str, str], count: int) -> list[str]:
    """Create ``count`` active users (role developer) and return an access token for each.

    Tokens are minted in a ``manage shell`` rather than by logging in: the
    password hasher is deliberately slow, and 5,000 logins would measure it.
    """
    code = (
        "import json\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "from backend.users.models import Role, User\n"
        "role = Role.objects.get(name='developer')\n"
        f"User.objects.bulk_create([User(username=f'bench{{i}}', role=role, password='!')"
        f" for i in range({count})], batch_size=500)\n"
        "users = User.objects.filter(username__startswith='bench').order_by('id')\n"
        "print(json.dumps([str(AccessToken.for_user(u)) for u in users]))\n"
    )
    tokens: list[str] = json.loads(run_cli(env, "manage", "shell", "-c", code).splitlines()[-1])
    if len(tokens) != count:
        raise BenchError(f"seeded {len(tokens)} users, wanted {count}")
    return tokens


def start_target(
    name: str, env: dict[str, str], scratch: Path, label: str, tokens: list[str]
) -> Target:
    """Start server ``name`` for one session."""
    log_path = scratch / f"{name}-{label}.log"
    python = sys.executable
    if name == "ours":
        command = [python, "-m", "backend.cli", "serve", "--demo", "--port", "0"]
        server = start_server(name, command, env, log_path)
        return Target(name=name, server=server, pids=[server.process.pid], tokens=tokens)
    port = free_port()
    if name == "P0":
        command = [python, "-m", "bench.peers.p0_websockets", "--port", str(port)]
        server = start_server(name, command, env, log_path, port=port, ws_path="/ws/")
        return Target(name=name, server=server, pids=[server.process.pid])
    # The peer configures its own Django settings; the product's must not leak in.
    peer_env = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
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


# --- measuring -------------------------------------------------------------------------


async def measure(target: Target, n: int, profile: Profile, only: set[str]) -> Session:
    """Open ``n`` sockets on a started server and measure the selected benchmarks."""
    session = Session(server=target.name, connections=n)
    ws_url = target.server.ws_url
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=600) as http:
        if target.name == "ours":
            target.admin_token = await login(http, PUBLISHER)

        # Warm-up: every code path once (handshake, delivery, close) before the baseline.
        warm = Fleet(ws_url, compression=None)
        for index in range(WARM_UP_SOCKETS):
            token, query = target.credentials(index)
            warm.adopt(await warm.open_one(token, query=query))
        warm.expect(f"warm-up {target.name} {n}")
        await target.publish(http, warm.title)
        await warm.wait_all_received(120)
        await warm.close()
        if "B1" in only:
            # The server's own timers with no socket open, subtracted from the idle cost.
            before = target.cpu_seconds()
            await asyncio.sleep(profile.idle_window / 2)
            session.cpu_empty_seconds = target.cpu_seconds() - before
            session.empty_window = profile.idle_window / 2
        session.rss_before_kib = target.rss_kib()

        fleet = Fleet(ws_url, compression=None)
        pending = iter(range(n))

        async def connector() -> None:
            # One shared iterator: each connector takes the next index when it is free.
            for index in pending:
                token, query = target.credentials(index)
                fleet.adopt(await fleet.open_one(token, query=query))

        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(profile.connectors)))
        session.connect_seconds = time.perf_counter() - started

        if "B1" in only:
            # A measurement window, not a wait for a condition: idle cost accrues over time.
            before = target.cpu_seconds()
            await asyncio.sleep(profile.idle_window)
            session.cpu_idle_seconds = target.cpu_seconds() - before
            session.idle_window = profile.idle_window
            session.rss_idle_kib = target.rss_kib()

        if "B2" in only:
            rounds_started = time.monotonic()
            for number in range(profile.rounds):
                fleet.expect(f"bench {target.name} {n} round {number}")
                sent = time.perf_counter()
                await target.publish(http, fleet.title)
                answered = time.perf_counter()
                await fleet.wait_all_received(600)
                session.latency_seconds.append(fleet.last_at - sent)
                session.publish_seconds.append(answered - sent)
                spent = time.monotonic() - rounds_started
                if number + 1 >= MIN_ROUNDS and spent > profile.round_budget:
                    break
        await fleet.close()
    return session


def measure_in_loop(target: Target, n: int, profile: Profile, only: set[str]) -> Session:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(measure(target, n, profile, only))


# --- results ---------------------------------------------------------------------------


def _ratio(ours: float | None, peer: float | None) -> float | None:
    return None if ours is None or not peer else ours / peer


def idle_cpu_per_1k(session: Session) -> float:
    """% of a core the open sockets cost per 1,000, over the server's empty baseline."""
    busy = session.cpu_idle_seconds / session.idle_window
    empty = session.cpu_empty_seconds / session.empty_window
    return (busy - empty) * 100 / (session.connections / 1000)


def summarize(sessions: list[Session], profile: Profile, only: set[str]) -> list[dict[str, Any]]:
    """One result per figure, in the issue's format."""
    by_key = {(s.server, s.connections): s for s in sessions}
    results: list[dict[str, Any]] = []

    def values(n: int, figure: Any) -> tuple[float | None, dict[str, float | None]]:
        def value(server: str) -> float | None:
            session = by_key.get((server, n))
            return None if session is None else round(float(figure(session)), 3)

        return value("ours"), {peer: value(peer) for peer in SERVERS[1:]}

    for n in profile.sizes:
        if "B1" in only:
            ours, peers = values(n, lambda s: (s.rss_idle_kib - s.rss_before_kib) / s.connections)
            results.append(
                {
                    "id": "B1",
                    "metric": f"memory per idle connection at {n} connections",
                    "unit": "KiB",
                    "ours": ours,
                    "peers": peers,
                    "target": "at most 2x P0's memory per connection",
                    "met": ours is not None and peers["P0"] is not None and ours <= 2 * peers["P0"],
                }
            )
            ours, peers = values(n, idle_cpu_per_1k)
            results.append(
                {
                    "id": "B1",
                    "metric": (
                        f"idle CPU per 1k connections at {n} connections "
                        "(minus the server's CPU with none open)"
                    ),
                    "unit": "% of a core",
                    "ours": ours,
                    "peers": peers,
                    "target": "under 1% of a core per 1k idle connections",
                    "met": ours is not None and ours < 1.0,
                }
            )
        if "B2" in only:
            for q in (50, 99):
                ours, peers = values(n, lambda s, q=q: percentile(s.latency_seconds, q) * 1000)
                p0, p1 = peers["P0"], peers["P1"]
                at = "" if n == 1000 else f" (the issue sets it at 1k; this row is at {n})"
                results.append(
                    {
                        "id": "B2",
                        "metric": (
                            f"broadcast to everyone at {n} connections, publish sent to "
                            f"the last client's frame, p{q}"
                        ),
                        "unit": "ms",
                        "ours": ours,
                        "peers": peers,
                        "target": f"at most 3x P0, and at least 10x faster than P1{at}",
                        "met": ours is not None
                        and p0 is not None
                        and p1 is not None
                        and ours <= 3 * p0
                        and ours * 10 <= p1,
                    }
                )
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """The results as aligned text, with ours over each peer."""
    header = ("id", "metric", "unit", "ours", *SERVERS[1:], "ours/P0", "ours/P1", "met")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [header]
    for row in results:
        peers = row["peers"]
        rows.append(
            (
                row["id"],
                row["metric"],
                row["unit"],
                cell(row["ours"]),
                *(cell(peers[peer]) for peer in SERVERS[1:]),
                cell(_ratio(row["ours"], peers["P0"])),
                cell(_ratio(row["ours"], peers["P1"])),
                "yes" if row["met"] else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


# --- command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Issue 5's server benchmarks (B1, B2) for ours and the peers P0, P1.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="e.g. B1,B2")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="subset of ours,P0,P1,P1-redis"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="N=20, one round: proves it runs, measures nothing"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON file")
    options = parser.parse_args(argv)
    options.only = {item.strip().upper() for item in options.only.split(",") if item.strip()}
    unknown = options.only - set(BENCHMARKS)
    if unknown or not options.only:
        parser.error(f"--only takes some of {','.join(BENCHMARKS)}; unknown: {sorted(unknown)}")
    options.servers = [item.strip() for item in options.servers.split(",") if item.strip()]
    unknown_servers = set(options.servers) - set(SERVERS)
    if unknown_servers or not options.servers:
        parser.error(f"--servers takes some of {','.join(SERVERS)}")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    profile = PROFILES[options.profile]
    if options.smoke:
        profile = smoke(profile)
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the server on one, the load generator on the other")
        return 1
    # Before any thread exists, so every thread of this process stays on the client CPU.
    pin_to_client_cpu()
    largest = max(profile.sizes)
    raise_fd_limit(largest * 2 + 1024)

    started = time.monotonic()
    sessions: list[Session] = []
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as scratch_name:
        scratch = Path(scratch_name)
        data_dir = scratch / "data"
        data_dir.mkdir()
        env = bench_env(data_dir)
        # Sessions outlive the default 10 min access token in the full profile.
        env["TRAY_ACCESS_TOKEN_MINUTES"] = "1440"
        tokens: list[str] = []
        if "ours" in options.servers:
            prepare_database(env)
            tokens = seed_users(env, largest)
        for n in profile.sizes:
            for name in options.servers:
                target = start_target(name, env, scratch, str(n), tokens)
                try:
                    session = measure_in_loop(target, n, profile, options.only)
                except BaseException:
                    print(f"{name} log:\n{target.server.log_tail()}", file=sys.stderr)
                    raise
                finally:
                    stop_target(target)
                sessions.append(session)
                print(
                    f"{name} at {n}: connected in {session.connect_seconds:.2f} s, "
                    f"{len(session.latency_seconds)} broadcast rounds",
                    flush=True,
                )

    results = summarize(sessions, profile, options.only)
    report = {
        "machine": machine(PACKAGES),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": profile.name,
        "results": results,
    }
    raw = {
        **report,
        "smoke": options.smoke,
        "settings": asdict(profile),
        "servers": options.servers,
        "duration_seconds": round(time.monotonic() - started, 1),
        "sessions": [asdict(session) for session in sessions],
    }
    output: Path = options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    raw_path = output.with_name(f"{output.stem}-raw.json")
    raw_path.write_text(json.dumps(raw, indent=2) + "\n")
    print(format_table(results))
    print(f"written to {output} (every sample: {raw_path})")
    return 0
