"""Server CPU per WebSocket delivery, measured alone (not part of the suite).

Starts the real server (embedded default, a fresh data directory) with N extra
users, then publishes M notifications to everyone twice: once with no socket
connected and once with one socket per user. Both runs write the same rows, so
the difference in the server's CPU (utime + stime from /proc) divided by
N x M is what delivering costs: hub -> consumer -> transport, per socket.

Run: ``python -m bench.socket_delivery_cpu --sockets 1000 --notifications 100``
(add ``--profile FILE`` to run the server under cProfile during the second run).
Nothing is pinned to a CPU; on a busy machine repeat it and take the lowest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from backend.cli import LISTENING_PREFIX
from bench.common import (
    REPO_ROOT,
    Fleet,
    bench_env,
    cpu_seconds,
    healthy,
    login,
    prepare_database,
    run_cli,
    wait_for,
)

MAKE_USERS = """
import json
from backend.users.models import User
from backend.users.services import session_start
users = User.objects.bulk_create(
    [User(username=f"cpu{{n}}", password="!") for n in range({count})]
)
print(json.dumps([session_start(user=u).access for u in users]))
"""

PROFILED = """
import cProfile, sys, time
from backend.cli import main
sys.argv[0] = "backend.cli"
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(main, sys.argv[1:])
finally:
    profiler.dump_stats({out!r})
"""


def start(
    env: dict[str, str], log: Path, profile: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable]
    if profile is not None:
        # Timed by the event loop thread's CPU clock, not the wall clock: on a busy machine
        # wall time lands in whatever function the scheduler preempted.
        command += ["-c", PROFILED.format(out=str(profile))]
    else:
        command += ["-m", "backend.cli"]
    command += ["serve", "--host", "127.0.0.1", "--port", "0"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
    url = ""

    def listening() -> bool:
        nonlocal url
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(LISTENING_PREFIX):
                url = line.removeprefix(LISTENING_PREFIX).strip()
                return healthy(url)
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        return False

    wait_for(listening, timeout=60, what="the server")
    return process, url


async def publish(http: httpx.AsyncClient, token: str, title: str) -> None:
    response = await http.post(
        "/api/notifications/",
        json={"audience": {"everyone": True}, "title": title, "message": "x" * 120},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()


async def run_phase(
    url: str, pid: int, tokens: list[str], admin: str, notifications: int, tag: str
) -> tuple[float, float]:
    """CPU seconds of the server and wall seconds for ``notifications`` publishes, each
    waited for on every socket in ``tokens`` before the next."""
    fleet = Fleet(url.replace("http://", "ws://", 1) + "/ws/notifications/", compression=None)
    for start_at in range(0, len(tokens), 100):
        opened = await asyncio.gather(
            *(fleet.open_one(t) for t in tokens[start_at : start_at + 100])
        )
        for ws in opened:
            fleet.adopt(ws)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await asyncio.sleep(1)  # let the connects' work settle
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for n in range(notifications):
            title = f"{tag}-{n}"
            fleet.expect(title)
            await publish(http, admin, title)
            if tokens:
                await fleet.wait_all_received(60)
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    await fleet.close()
    return cpu1 - cpu0, wall1 - wall0


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        env = bench_env(data)
        prepare_database(env)
        made = run_cli(env, "manage", "shell", "-c", MAKE_USERS.format(count=args.sockets))
        tokens = json.loads(made.strip().splitlines()[-1])
        process, url = start(env, data / "server.log", args.profile)
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                admin = await login(http, "admin")
            base_cpu, _ = await run_phase(url, process.pid, [], admin, args.notifications, "none")
            cpu, wall = await run_phase(url, process.pid, tokens, admin, args.notifications, "all")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    deliveries = args.sockets * args.notifications
    return {
        "sockets": args.sockets,
        "notifications": args.notifications,
        "cpu_s_without_sockets": round(base_cpu, 3),
        "cpu_s_with_sockets": round(cpu, 3),
        "wall_s_with_sockets": round(wall, 3),
        "cpu_us_per_delivery": round((cpu - base_cpu) / deliveries * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--notifications", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
