"""XP: cross-process delivery latency on the embedded default (issue 14).

A notification committed by another process on the same machine (the CLI's
``tray-notifier-server notify``, a cron job calling the service) must reach
the sockets within 50 ms p99 (interfaces.md item 6: the cross-process
doorbell; the 0.5 s database poll stays as the safety net).

Run from the repository root::

    .venv/bin/python -m bench.cross_process [--profile quick|full] [--smoke]

What runs:

- the real server, ``python -m backend.cli serve --port 0`` on a migrated,
  demo-seeded SQLite database (the embedded default), pinned to CPU 0;
- one client socket, ``alice`` (Bearer token), in this process (CPU 1);
- a publisher process (``python -m bench.cross_process --publisher``, on CPU 1
  with this one: it is the other program on the machine, not part of the
  server) with Django set up on the same SQLite file, calling
  ``backend.notifications.services.notification_create`` for alice when told
  to, and answering with ``time.perf_counter()`` right after the call
  returned, that is after its transaction committed.

XP's latency runs from that instant to the moment the client has the
``notification_created`` frame. ``perf_counter`` is ``CLOCK_MONOTONIC`` on
Linux, one clock for every process, so the two instants compare. The
notifications go one at a time (the next once the frame is in, or after
FRAME_TIMEOUT, when it counts as missing), with a random 0-100 ms pause
between them so they do not fall in step with a periodic poll.

Baseline in the same run, on the same server and socket: the in-process
publish, ``POST /api/notifications/`` to the server as ``admin``, from
sending the request to the frame (the server's commit happens in between;
the figure includes the HTTP request, so it is an upper bound of the same
delivery path inside the process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    REPO_ROOT,
    BenchError,
    Outcome,
    bench_env,
    login,
    percentile,
    pin_to_client_cpu,
    prepare_database,
    result,
    start_server,
    stop_server,
)

RECIPIENT = "alice"
PUBLISHER = "admin"
P99_TARGET_MS = 50.0
FRAME_TIMEOUT = 5.0
MAX_PAUSE = 0.1
SEED = 14
PROFILES = {"quick": 50, "full": 200}
SMOKE_COUNT = 5


@dataclass
class Series:
    """One way of publishing: each notification's latency, and what never arrived."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0

    def at(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None


# --- the publisher process -------------------------------------------------------------


def publisher_main() -> int:
    """Publish to RECIPIENT for every ``TITLE`` line on stdin; answer ``perf_counter``
    right after the service returned (committed), one line each."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    django.setup()
    from backend.notifications.selectors import Audience
    from backend.notifications.services import CLI_PUBLISHER, notification_create
    from backend.users.models import User

    recipient = User.objects.get(username=RECIPIENT)
    print("ready", flush=True)
    for line in sys.stdin:
        title = line.strip()
        if not title:
            continue
        notification_create(
            audience=Audience(users=(recipient.pk,)), title=title, publisher=CLI_PUBLISHER
        )
        committed = time.perf_counter()
        print(f"{committed!r}", flush=True)
    return 0


class Publisher:
    """The publisher process, driven over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, env: dict[str, str]) -> Publisher:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.cross_process",
            "--publisher",
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        publisher = cls(process)
        if await publisher._line(60) != "ready":
            raise BenchError("the publisher process did not start")
        return publisher

    async def _line(self, seconds: float) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        if not line:
            raise BenchError(f"the publisher process exited ({self.process.returncode})")
        return line.decode().strip()

    async def publish(self, title: str) -> float:
        """Have it publish ``title``; the instant its call returned."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{title}\n".encode())
        await self.process.stdin.drain()
        return float(await self._line(60))

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# --- the client ------------------------------------------------------------------------


class Inbox:
    """The client socket's reader: when each titled notification arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.arrived: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") != "notification_created":
                continue
            title = str(frame["payload"]["title"])
            self.arrived[title] = now
            future = self.waiting.pop(title, None)
            if future is not None and not future.done():
                future.set_result(now)

    def expect(self, title: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if title in self.arrived:
            future.set_result(self.arrived[title])
        else:
            self.waiting[title] = future
        return future

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.task, return_exceptions=True)


async def measure(base_url: str, ws_url: str, env: dict[str, str], count: int) -> list[Series]:
    """Cross-process then in-process publishes, ``count`` each, to one socket."""
    rng = random.Random(SEED)
    cross = Series(name="cross-process (service in another process)")
    local = Series(name="in-process (POST /api/notifications/)")
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        token = await login(http, RECIPIENT)
        admin = await login(http, PUBLISHER)
        ws = await connect(
            ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            ping_interval=None,
            compression=None,
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if hello.get("type") != "hello":
            raise BenchError(f"expected hello, got {hello!r}")
        inbox = Inbox(ws)
        publisher = await Publisher.start(env)
        try:
            # One of each first, not timed: every path has run once.
            for number in range(count + 1):
                title = f"xp {number}"
                arrival = inbox.expect(title)
                committed = await publisher.publish(title)
                try:
                    arrived = await asyncio.wait_for(arrival, FRAME_TIMEOUT)
                    if number:
                        cross.latencies_ms.append((arrived - committed) * 1000)
                except TimeoutError:
                    cross.missing += 1
                await asyncio.sleep(rng.uniform(0, MAX_PAUSE))
            for number in range(count + 1):
                title = f"xh {number}"
                arrival = inbox.expect(title)
                sent = time.perf_counter()
                response = await http.post(
                    "/api/notifications/",
                    json={"audience": {"usernames": [RECIPIENT]}, "title": title},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                if response.status_code != 201:
                    raise BenchError(f"publish: HTTP {response.status_code} {response.text}")
                try:
                    arrived = await asyncio.wait_for(arrival, FRAME_TIMEOUT)
                    if number:
                        local.latencies_ms.append((arrived - sent) * 1000)
                except TimeoutError:
                    local.missing += 1
                await asyncio.sleep(rng.uniform(0, MAX_PAUSE))
        finally:
            await publisher.stop()
            await inbox.close()
    return [cross, local]


def summarize(cross: Series, local: Series, count: int) -> list[dict[str, Any]]:
    rows = []
    for q in (99, 50):
        ours = cross.at(q)
        rows.append(
            result(
                id="XP",
                metric=f"cross-process delivery latency p{q}: notification_create in another "
                f"process on the same SQLite file (the embedded default), from its commit to "
                f"the frame at the one connected client, {count} notifications one at a "
                f"time; missing after {FRAME_TIMEOUT:.0f} s: {cross.missing} (baseline: POST "
                f"/api/notifications/ to the server, request sent to frame; missing: "
                f"{local.missing})",
                unit="ms",
                ours=ours,
                peers={"in-process publish (HTTP POST)": local.at(q)},
                target=f"p99 under {P99_TARGET_MS:.0f} ms, none missing"
                + ("" if q == 99 else " (this row: p50, for context)"),
                met=cross.at(99) is not None
                and (cross.at(99) or 0) < P99_TARGET_MS
                and cross.missing == 0,
            )
        )
    return rows


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    """XP for the embedded default: the server, one socket, a publisher process."""
    count = SMOKE_COUNT if smoke else PROFILES[profile]
    data_dir = scratch / "data"
    data_dir.mkdir()
    env = bench_env(data_dir)
    prepare_database(env)
    server = start_server(
        "ours",
        [sys.executable, "-m", "backend.cli", "serve", "--port", "0"],
        env,
        scratch / "ours.log",
    )
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            cross, local = runner.run(measure(server.base_url, server.ws_url, env, count))
    except BaseException:
        print(f"ours log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        stop_server(server)
    return Outcome(
        results=summarize(cross, local, count),
        raw={
            "count": count,
            "frame_timeout_s": FRAME_TIMEOUT,
            "series": [asdict(cross), asdict(local)],
        },
        cdfs={
            "XP cross-process delivery, commit to frame": {
                "cross-process": cross.latencies_ms,
                "in-process (HTTP POST)": local.latencies_ms,
            }
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cross_process", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true", help="a few notifications: it runs")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.publisher:
        return publisher_main()
    pin_to_client_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-xp-") as scratch:
        outcome = run(options.profile, smoke=options.smoke, scratch=Path(scratch))
    for row in outcome.results:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
