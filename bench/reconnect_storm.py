"""B5: a reconnect storm with resume, on ours, beside P0's bare reconnect.

N clients (2,000 in the full profile) connect to ours (the embedded default)
as N distinct users and note the cursor ``hello`` gives them. Then every
client's connection is cut at once (the transport aborted, as a network drop
looks to the client), 20 notifications are published to everyone while they
are away, and all N reconnect at once, each with its cursor on the URL
(``/ws/notifications/?after_seq=N``, docs/protocol.md): the server sends
``hello``, replays the rows above N and ends with ``caught_up``, and the
client reads until that ``caught_up``. A server that ignores the parameter
(it answers a probe socket with no ``caught_up``) gets the ``resume`` frame
after ``hello`` instead, and the rows say so.

Figures:

- the time from the start of the storm until the last client has its
  ``caught_up``, beside P0, where the same N clients only reconnect and wait
  for ``hello`` (P0 has nothing to resume: the lower bound of the reconnect
  itself); target (issue 14): at most 3x P0's;
- database statements per reconnecting client: the server runs with
  ``bench.query_counting.settings``, which counts every statement; the count
  over the storm less what the idle server runs on its own over as long (its
  database watch, counted for ``IDLE_WINDOW`` seconds before the clients
  come) and less the statements that wrote the missed notifications' Inbox
  rows (their publishes left them pending, backend/notifications/inbox_log.py;
  the storm's first reader or the publish lane writes them, a few statements
  per storm whatever N), over N (target: at most one, user + session + inbox
  state + replay in one), and for context the storm's count minus the same
  clients' first connection's;
- gaps and duplicates: each client must receive exactly the seqs
  ``cursor + 1 .. cursor + 20``, in order, once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    BenchError,
    Outcome,
    bench_env,
    free_port,
    login,
    result,
    start_server,
    stop_server,
)
from bench.connections import prepare_ours

MISSED = 20
PUBLISHER = "admin"
STORM_RATIO_TARGET = 3.0
# How long the probe socket waits for the caught_up that ?after_seq=0 should bring.
PROBE_SECONDS = 5.0
# How long the idle server's own statements are counted before the storm.
IDLE_WINDOW = 3.0


@dataclass(frozen=True)
class Profile:
    clients: int
    # Concurrent connection attempts while the fleet first forms (not during the storm).
    connectors: int = 16


PROFILES = {"quick": Profile(clients=500), "full": Profile(clients=2000)}


def profile_for(name: str, *, smoke: bool) -> Profile:
    return replace(PROFILES[name], clients=20) if smoke else PROFILES[name]


@dataclass
class Storm:
    """One server's storm."""

    server: str
    clients: int
    connect_seconds: float = 0.0
    storm_seconds: float = 0.0
    queries_connect: int = 0
    queries_storm: int = 0
    # Of the storm's statements, those that wrote the missed notifications' Inbox rows,
    # which their publishes left pending (once per storm, whatever the clients).
    queries_settle: int = 0
    # Statements per second of the idle server (its database watch, TRAY_DB_WATCH_INTERVAL:
    # two every 0.5 s however many sockets there are), measured before the clients come.
    queries_idle_per_second: float = 0.0
    # Clients whose replay was not exactly cursor+1..cursor+MISSED, and how.
    gaps: int = 0
    duplicates: int = 0
    wrong_clients: list[str] = field(default_factory=list)
    # True: the cursor went on the URL (?after_seq=N); False: the resume frame.
    resume_at_connect: bool = True
    # When each client had its caught_up (or hello, on P0), from the storm's start.
    done_seconds: list[float] = field(default_factory=list)


async def open_socket(url: str, token: str | None) -> tuple[ClientConnection, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await connect(
        url, additional_headers=headers, ping_interval=None, compression=None, open_timeout=120
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
    if hello.get("type") != "hello":
        raise BenchError(f"expected hello, got {hello!r}")
    return ws, hello


async def resume(ws: ClientConnection, cursor: int, *, send_frame: bool) -> list[int]:
    """The seqs replayed from ``cursor`` until the matching ``caught_up``; with
    ``send_frame`` the ``resume`` frame asks for them (else ``?after_seq`` did)."""
    if send_frame:
        await ws.send(json.dumps({"type": "resume", "ref": "r", "payload": {"after_seq": cursor}}))
    seqs: list[int] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
        kind = frame.get("type")
        if kind == "notification_created":
            seqs.append(int(frame["payload"]["seq"]))
        elif kind == "caught_up" and frame["payload"]["after_seq"] <= cursor:
            return seqs
        elif kind in ("error", "resync_required"):
            raise BenchError(f"resume from {cursor} answered {frame!r}")


def with_cursor(ws_url: str, cursor: int) -> str:
    """The socket URL carrying the client's cursor (docs/protocol.md, resume at connect)."""
    return f"{ws_url}{'&' if '?' in ws_url else '?'}after_seq={cursor}"


async def resumes_at_connect(ws_url: str, token: str) -> bool:
    """Whether the server answers ``?after_seq=0`` with a ``caught_up`` by itself."""
    ws, _hello = await open_socket(with_cursor(ws_url, 0), token)
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "caught_up":
                    return True
    except TimeoutError:
        return False
    finally:
        await ws.close()


async def queries(http: httpx.AsyncClient) -> int:
    """Statements the server has run since it started."""
    return (await counts(http))[0]


async def counts(http: httpx.AsyncClient) -> tuple[int, int]:
    """Statements the server has run since it started, and of them the settle's
    (writing Inbox rows the publishes left pending: bench/query_counting)."""
    response = await http.get("/bench/queries")
    response.raise_for_status()
    answer = response.json()
    return int(answer["queries"]), int(answer["settle"])


async def storm_ours(url: str, ws_url: str, tokens: list[str], profile: Profile) -> Storm:
    storm = Storm(server="ours", clients=len(tokens))
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        admin = await login(http, PUBLISHER)
        storm.resume_at_connect = await resumes_at_connect(ws_url, tokens[0])
        before, idle_started = await queries(http), time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW)  # a measurement window, not a wait for a condition
        storm.queries_idle_per_second = (await queries(http) - before) / (
            time.perf_counter() - idle_started
        )
        cursors: list[int] = [0] * len(tokens)
        sockets: list[ClientConnection] = [None] * len(tokens)  # type: ignore[list-item]
        pending = iter(range(len(tokens)))

        async def connector() -> None:
            for index in pending:
                sockets[index], hello = await open_socket(ws_url, tokens[index])
                cursors[index] = int(hello["payload"]["latest_seq"])

        before = await queries(http)
        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(profile.connectors)))
        storm.connect_seconds = time.perf_counter() - started
        storm.queries_connect = await queries(http) - before

        # The drop: no close frame, no FIN handshake from the client's side.
        for ws in sockets:
            ws.transport.abort()
        for number in range(MISSED):
            response = await http.post(
                "/api/notifications/",
                json={"audience": {"everyone": True}, "title": f"missed {number}"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            if response.status_code != 201:
                raise BenchError(f"publish: HTTP {response.status_code} {response.text}")

        before, settled_before = await counts(http)
        started = time.perf_counter()

        async def come_back(index: int) -> None:
            url = with_cursor(ws_url, cursors[index]) if storm.resume_at_connect else ws_url
            ws, _hello = await open_socket(url, tokens[index])
            seqs = await resume(ws, cursors[index], send_frame=not storm.resume_at_connect)
            storm.done_seconds.append(time.perf_counter() - started)
            expected = list(range(cursors[index] + 1, cursors[index] + MISSED + 1))
            if seqs != expected:
                storm.gaps += len(set(expected) - set(seqs))
                storm.duplicates += len(seqs) - len(set(seqs))
                if len(storm.wrong_clients) < 10:
                    storm.wrong_clients.append(f"client {index}: {seqs} (wanted {expected})")
            sockets[index] = ws

        await asyncio.gather(*(come_back(index) for index in range(len(tokens))))
        storm.storm_seconds = time.perf_counter() - started
        after, settled_after = await counts(http)
        storm.queries_storm = after - before
        storm.queries_settle = settled_after - settled_before
        await asyncio.gather(*(ws.close() for ws in sockets))
    return storm


async def storm_p0(ws_url: str, clients: int, profile: Profile) -> Storm:
    storm = Storm(server="P0", clients=clients)
    sockets: list[ClientConnection] = []
    pending = iter(range(clients))

    async def connector() -> None:
        for _ in pending:
            sockets.append((await open_socket(ws_url, None))[0])

    started = time.perf_counter()
    await asyncio.gather(*(connector() for _ in range(profile.connectors)))
    storm.connect_seconds = time.perf_counter() - started
    for ws in sockets:
        ws.transport.abort()
    started = time.perf_counter()

    async def come_back(index: int) -> None:
        ws, _hello = await open_socket(ws_url, None)
        storm.done_seconds.append(time.perf_counter() - started)
        sockets[index] = ws

    await asyncio.gather(*(come_back(index) for index in range(clients)))
    storm.storm_seconds = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return storm


def in_loop(work: Any) -> Storm:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        storm: Storm = runner.run(work)
        return storm


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    settings = profile_for(profile, smoke=smoke)
    data_dir = scratch / "data"
    data_dir.mkdir()
    env = bench_env(data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "bench.query_counting.settings"
    database = prepare_ours(env, settings.clients)
    python = sys.executable

    server = start_server(
        "ours",
        [python, "-m", "backend.cli", "serve", "--port", "0"],
        env,
        scratch / "ours.log",
    )
    try:
        ours = in_loop(storm_ours(server.base_url, server.ws_url, database.tokens, settings))
    except BaseException:
        print(f"ours log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        stop_server(server)

    port = free_port()
    peer = start_server(
        "P0",
        [python, "-m", "bench.peers.p0_websockets", "--port", str(port)],
        env,
        scratch / "p0.log",
        port=port,
        ws_path="/ws/",
    )
    try:
        p0 = in_loop(storm_p0(peer.ws_url, settings.clients, settings))
    finally:
        stop_server(peer)

    n = settings.clients
    # The idle server's own statements over the storm's length are no client's.
    background = ours.queries_idle_per_second * ours.storm_seconds
    # The missed publishes' rows, written during the storm (by its first reader or the
    # publish lane), are the publishes' work: counted apart, not per client.
    per_client = max(0.0, ours.queries_storm - ours.queries_settle - background) / n
    resume_part = (ours.queries_storm - ours.queries_connect) / n
    how = (
        "cursor on the URL (?after_seq=N)"
        if ours.resume_at_connect
        else "the server ignored ?after_seq: resume frame after hello"
    )
    clean = not ours.gaps and not ours.duplicates
    rows = [
        result(
            id="B5",
            metric=(
                f"{n} clients dropped at once, {MISSED} missed notifications each, {how}: "
                "storm start to the last client's caught_up (P0: to the last hello)"
            ),
            unit="s",
            ours=ours.storm_seconds,
            peers={"P0": p0.storm_seconds},
            target=f"at most {STORM_RATIO_TARGET:g}x P0's in the same run, no gap or duplicate",
            met=ours.storm_seconds <= STORM_RATIO_TARGET * p0.storm_seconds and clean,
        ),
        result(
            id="B5",
            metric=(
                f"database statements per reconnecting client over the storm, {how} "
                "(handshake, authentication, session, inbox state, replay, presence), less "
                f"the idle server's own over the same time ({background:.1f}: its database "
                f"watch, {ours.queries_idle_per_second:.1f}/s) and the {ours.queries_settle} "
                "that wrote the missed notifications' Inbox rows, which their publishes "
                f"left pending (raw {ours.queries_storm / n:.3f})"
            ),
            unit="statements",
            ours=per_client,
            peers={},
            target="at most one statement per reconnecting client",
            met=per_client <= 1,
        ),
        result(
            id="B5",
            metric=(
                "database statements per client, storm minus the same clients' first "
                f"connect (the resume's own share), {how}"
            ),
            unit="statements",
            ours=resume_part,
            peers={},
            target="for context: at most one statement per reconnecting client in all",
            met=resume_part <= 1,
        ),
        result(
            id="B5",
            metric=f"gaps plus duplicates over all {n} replays",
            unit="notifications",
            ours=float(ours.gaps + ours.duplicates),
            peers={},
            target="zero gaps and duplicates",
            met=clean,
        ),
    ]
    return Outcome(
        results=rows,
        raw={"settings": asdict(settings), "storms": [asdict(ours), asdict(p0)]},
        cdfs={
            f"B5 reconnect storm of {n} clients, storm start to caught up": {
                "ours": [s * 1000 for s in ours.done_seconds],
                "P0": [s * 1000 for s in p0.done_seconds],
            }
        },
    )
