"""Scale mode when Redis fails: real redis-servers stopped and restarted under real
server processes (two ``serve`` processes on one PostgreSQL database, or one on SQLite
where one is enough), real WebSocket clients on each.

- Redis restarted empty (no persistence): every process puts its own open sockets, and
  their users' do-not-disturb, back into presence, and watchers are told, within the
  presence TTL.
- Redis stopped: a process still delivers what it publishes itself to its own sockets,
  live; a socket on the other process gets it once Redis is back, exactly once; a
  session ended on one process meanwhile closes its socket on the other then.
- The log says once that Redis is lost and once that it is back; no traceback.
- A process started while Redis is down serves, and catches up once it is back.
- A chosen status and last seen survive an empty Redis restart (kept in the database),
  and last seen a restart of the embedded default.
- While Redis is down, presence requests answer ``presence_unavailable``; the socket
  stays open.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import WAIT, Socket, login
from tests.e2e.crash_harness import RestartableRedis
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.redis]

PRESENCE_TTL = 6.0  # seconds; the product's default is 30
LOST = "lost the Redis doorbell"  # backend/notifications/doorbell.py RedisLink
BACK = "Redis is back"


class StoppableRedis(RestartableRedis):
    """A private redis-server on a fixed port, stopped and started again on demand
    (empty each time: it keeps nothing on disk)."""

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)

    def start(self) -> None:
        self.restarts += 1
        self._process = self._start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[StoppableRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    server = StoppableRedis(tmp_path)
    try:
        yield server
    finally:
        server.close()


def two_processes(
    server_factory: ServerFactory, database_url: str, redis: StoppableRedis
) -> tuple[RunningServer, RunningServer]:
    env = {"TRAY_PRESENCE_TTL": str(PRESENCE_TTL)}
    # One after the other: the first migrates and seeds, the second finds it done.
    first = server_factory(demo=True, database_url=database_url, redis_url=redis.url, env=env)
    second = server_factory(database_url=database_url, redis_url=redis.url, env=env)
    return first, second


async def project_of(server: RunningServer, username: str, title: str) -> int:
    async with httpx.AsyncClient(timeout=30) as rest:
        response = await rest.get(
            f"{server.url}/api/me",
            headers={"Authorization": f"Bearer {login(server, username)}"},
        )
    response.raise_for_status()
    return next(int(p["id"]) for p in response.json()["projects"] if p["title"] == title)


async def publish(server: RunningServer, admin: str, title: str, usernames: list[str]) -> None:
    async with httpx.AsyncClient(timeout=30) as rest:
        response = await rest.post(
            f"{server.url}/api/notifications/",
            json={"audience": {"usernames": usernames}, "title": title},
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert response.status_code == 201, response.text


async def presence_until(
    watcher: Socket, expected: dict[int, dict[str, Any]], timeout: float
) -> dict[int, dict[str, Any]]:
    """Read ``presence_changed`` frames until each user's latest has the ``expected``
    items; the latest payload per user. Fails at the deadline."""
    deadline = time.monotonic() + timeout
    latest: dict[int, dict[str, Any]] = {}

    def done() -> bool:
        return all(
            user_id in latest and all(latest[user_id].get(k) == v for k, v in items.items())
            for user_id, items in expected.items()
        )

    while not done():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"presence not back in {timeout:.1f} s: {latest}"
        try:
            frame = await watcher.receive(remaining)
        except TimeoutError:
            continue  # the assertion above reports it
        if frame["type"] == "presence_changed":
            latest[int(frame["payload"]["user_id"])] = frame["payload"]
    return latest


async def snapshot(watcher: Socket, project_id: int) -> dict[str, dict[str, Any]]:
    await watcher.send("subscribe_presence", {"project_id": project_id})
    frame = await watcher.receive_until("presence_snapshot")
    return {m["user"]["username"]: m for m in frame["payload"]["members"]}


async def notifications_until(socket: Socket, title: str, timeout: float = WAIT) -> list[int]:
    """The seqs of every ``notification_created`` up to the one titled ``title``."""
    deadline = time.monotonic() + timeout
    seqs: list[int] = []
    while True:
        frame = await socket.receive(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "notification_created":
            seqs.append(int(frame["payload"]["seq"]))
            if frame["payload"]["title"] == title:
                return seqs


async def nothing_delivered(socket: Socket, seconds: float) -> None:
    """No ``notification_created`` reaches ``socket`` for ``seconds``."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame = await socket.receive(remaining)
        except TimeoutError:
            return
        assert frame["type"] != "notification_created", frame


@pytest.mark.postgres
async def test_presence_is_rebuilt_from_open_sockets_when_redis_restarts_empty(
    server_factory: ServerFactory, postgres_url: str, private_redis: StoppableRedis
) -> None:
    a, b = two_processes(server_factory, postgres_url, private_redis)
    mobile_app = await project_of(a, "bob", "Mobile App")
    watcher = await Socket.open(a, login(a, "bob"))
    members = await snapshot(watcher, mobile_app)
    alice_id, carol_id = members["alice"]["user"]["id"], members["carol"]["user"]["id"]
    alice = await Socket.open(a, login(a, "alice"))  # on the watcher's process
    carol = await Socket.open(b, login(b, "carol"))  # on the other one
    await carol.send("set_status", {"status": "dnd"})
    await presence_until(
        watcher,
        {alice_id: {"online": True}, carol_id: {"online": True, "status": "dnd"}},
        timeout=WAIT,
    )

    private_redis.stop()
    private_redis.start()  # empty: no socket, no status, no do-not-disturb in it
    restarted = time.monotonic()
    latest = await presence_until(
        watcher,
        {
            alice_id: {"online": True, "status": "online"},
            carol_id: {"online": True, "status": "dnd"},
        },
        timeout=PRESENCE_TTL * 3,
    )
    rebuilt_after = time.monotonic() - restarted
    assert rebuilt_after < PRESENCE_TTL, f"presence rebuilt {rebuilt_after:.1f} s after"
    assert latest[alice_id]["online"] is True

    # A snapshot taken now, on the other process, reads the rebuilt presence.
    other_watcher = await Socket.open(b, login(b, "bob"))
    members = await snapshot(other_watcher, mobile_app)
    states = {name: (m["online"], m["status"]) for name, m in members.items()}
    assert states["alice"] == (True, "online")
    assert states["bob"] == (True, "online")
    assert states["carol"] == (True, "dnd")
    # And it stays so past a TTL (nothing reaped: the refresh keeps the entries alive).
    await asyncio.sleep(PRESENCE_TTL * 1.2)
    members = await snapshot(other_watcher, mobile_app)
    assert members["alice"]["online"] is True
    assert members["carol"]["status"] == "dnd"
    print(f"presence rebuilt {rebuilt_after:.2f} s after an empty Redis restart")
    for socket in (watcher, other_watcher, alice, carol):
        await socket.close()
    for server in (a, b):
        assert "Traceback" not in server.output(), server.output()


@pytest.mark.postgres
async def test_while_redis_is_down_a_process_delivers_its_own_publishes_and_the_rest_catch_up(
    server_factory: ServerFactory, postgres_url: str, private_redis: StoppableRedis
) -> None:
    a, b = two_processes(server_factory, postgres_url, private_redis)
    admin = login(a, "admin")
    on_a = await Socket.open(a, login(a, "alice"))
    on_b = await Socket.open(b, login(b, "carol"))
    # Another session of alice's, on A, that she ends through B during the outage.
    async with httpx.AsyncClient(timeout=30) as rest:
        response = await rest.post(
            f"{a.url}/api/auth/token/", json={"username": "alice", "password": "demo"}
        )
    response.raise_for_status()
    laptop_session = response.json()
    laptop = await Socket.open(a, laptop_session["access"])
    alice_next = on_a.hello["latest_seq"] + 1
    carol_next = on_b.hello["latest_seq"] + 1

    private_redis.stop()
    stopped = time.monotonic()
    assert a.wait_for_output(LOST)
    assert b.wait_for_output(LOST)
    # Published through A while Redis is down: stored, and live on A's own socket.
    await publish(a, admin, "during the outage", ["alice", "carol"])
    assert await notifications_until(on_a, "during the outage") == [alice_next]
    live_after = time.monotonic() - stopped
    # B cannot hear A's doorbell while Redis is down.
    await nothing_delivered(on_b, 2.0)
    async with httpx.AsyncClient(timeout=30) as rest:
        response = await rest.post(
            f"{b.url}/api/auth/logout/", json={"refresh": laptop_session["refresh"]}
        )
    assert response.status_code == 204, response.text
    # Presence lives in Redis: its REST routes answer 503 with Retry-After, not a 500.
    async with httpx.AsyncClient(timeout=30) as rest:
        refused = await rest.post(
            f"{b.url}/api/presence/status/",
            json={"status": "away"},
            headers={"Authorization": f"Bearer {login(b, 'carol')}"},
        )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "presence_unavailable"
    assert refused.headers["retry-after"] == "5"

    private_redis.start()
    returned = time.monotonic()
    assert await notifications_until(on_b, "during the outage") == [carol_next]
    caught_up_after = time.monotonic() - returned
    # The session B ended while A could not hear it: its socket on A closes now.
    assert await laptop.close_code() == 4001

    # Exactly once: the next notification (Redis up) comes with the next seq on both,
    # with nothing repeated in between.
    await publish(a, admin, "after the outage", ["alice", "carol"])
    assert await notifications_until(on_a, "after the outage") == [alice_next + 1]
    assert await notifications_until(on_b, "after the outage") == [carol_next + 1]
    print(
        f"live on A {live_after:.2f} s into the outage; B caught up "
        f"{caught_up_after:.2f} s after Redis returned"
    )
    for socket in (on_a, on_b):
        await socket.close()
    for server in (a, b):
        output = server.output()
        assert output.count(LOST) == 1, output
        assert output.count(BACK) == 1, output
        assert "Traceback" not in output, output


async def test_an_outage_is_logged_once_lost_and_once_back_without_a_traceback(
    server_factory: ServerFactory, private_redis: StoppableRedis
) -> None:
    """Several seconds without Redis while a socket is open (presence refreshes every
    TTL/3 fail), a publish rings, the subscription retries with backoff: one WARNING
    with the reason, one INFO when it is back."""
    server = server_factory(
        demo=True, redis_url=private_redis.url, env={"TRAY_PRESENCE_TTL": "1.5"}
    )
    admin = login(server, "admin")
    socket = await Socket.open(server, login(server, "alice"))
    private_redis.stop()
    await publish(server, admin, "while Redis is away", ["alice"])
    assert (await socket.receive_until("notification_created"))["payload"]["seq"] == (
        socket.hello["latest_seq"] + 1
    )
    await asyncio.sleep(6)  # several retries and refreshes
    private_redis.start()
    assert server.wait_for_output(BACK, timeout=WAIT)
    await publish(server, admin, "Redis is back", ["alice"])
    await socket.receive_until("notification_created", title="Redis is back")
    await socket.close()
    output = server.output()
    lost = [line for line in output.splitlines() if LOST in line]
    back = [line for line in output.splitlines() if BACK in line]
    assert len(lost) == 1, output
    assert len(back) == 1, output
    assert "WARNING" in lost[0], lost[0]
    assert "ConnectionError" in lost[0], lost[0]
    assert "INFO" in back[0], back[0]
    assert "Traceback" not in output, output


async def readyz_until(server: RunningServer, status: int, timeout: float = WAIT) -> float:
    """Poll ``/readyz`` until it answers ``status``; the seconds it took."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as rest:
        while True:
            answer = await rest.get(f"{server.url}/readyz")
            if answer.status_code == status:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, (
                f"/readyz still {answer.status_code} {answer.text!r} after {timeout} s"
            )
            await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_a_process_started_while_redis_is_down_serves_and_catches_up_once_it_is_back(
    server_factory: ServerFactory, postgres_url: str, private_redis: StoppableRedis
) -> None:
    env = {"TRAY_PRESENCE_TTL": str(PRESENCE_TTL)}
    a = server_factory(demo=True, database_url=postgres_url, redis_url=private_redis.url, env=env)
    admin = login(a, "admin")
    private_redis.stop()
    assert a.wait_for_output(LOST)

    # B starts with Redis down: it serves HTTP (a login) and sockets, not ready yet.
    started = time.monotonic()
    b = server_factory(database_url=postgres_url, redis_url=private_redis.url, env=env)
    start_took = time.monotonic() - started
    assert b.wait_for_output(LOST)
    async with httpx.AsyncClient(timeout=30) as rest:
        assert (await rest.get(f"{b.url}/readyz")).status_code == 503
    carol = await Socket.open(b, login(b, "carol"))
    carol_next = carol.hello["latest_seq"] + 1
    # Its own publish reaches its own socket live.
    await publish(b, login(b, "admin"), "from B while Redis is down", ["carol"])
    assert await notifications_until(carol, "from B while Redis is down") == [carol_next]
    # A's publish cannot ring B until Redis is back.
    await publish(a, admin, "from A while Redis is down", ["carol"])
    await nothing_delivered(carol, 1.0)

    private_redis.start()
    returned = time.monotonic()
    assert await notifications_until(carol, "from A while Redis is down") == [carol_next + 1]
    caught_up_after = time.monotonic() - returned
    ready_after = await readyz_until(b, 200)
    # Presence is re-asserted: A sees carol (connected to B before Redis existed) online.
    mobile_app = await project_of(a, "bob", "Mobile App")
    watcher = await Socket.open(a, login(a, "bob"))
    deadline = time.monotonic() + PRESENCE_TTL
    while not (members := await snapshot(watcher, mobile_app))["carol"]["online"]:
        assert time.monotonic() < deadline, members["carol"]
        await asyncio.sleep(0.2)
    online_after = time.monotonic() - returned
    # And live delivery through Redis from A to B, next seq, nothing repeated.
    await publish(a, admin, "after Redis returned", ["carol"])
    assert await notifications_until(carol, "after Redis returned") == [carol_next + 2]
    print(
        f"B started in {start_took:.2f} s with Redis down; after Redis returned: caught up "
        f"{caught_up_after:.2f} s, /readyz 200 {ready_after:.2f} s, carol online on A "
        f"{online_after:.2f} s"
    )
    for socket in (carol, watcher):
        await socket.close()
    output = b.output()
    assert output.count(LOST) == 1, output
    assert b.wait_for_output(BACK)
    assert b.output().count(BACK) == 1, output
    assert "Traceback" not in b.output(), b.output()


def kept_last_seen(database_url: str, username: str, timeout: float = WAIT) -> float:
    """When ``username`` was last seen, as the database keeps it (written in batches
    every few seconds): polled until there."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT r.last_seen FROM notifications_presencerecord r "
                "JOIN users_user u ON u.id = r.user_id WHERE u.username = %s",
                (username,),
            ).fetchone()
            if row is not None and row[0] is not None:
                return float(row[0].timestamp())
            assert time.monotonic() < deadline, f"no last seen of {username} kept"
            time.sleep(0.1)


@pytest.mark.postgres
async def test_a_chosen_status_and_last_seen_survive_an_empty_redis_restart(
    server_factory: ServerFactory, postgres_url: str, private_redis: StoppableRedis
) -> None:
    a, b = two_processes(server_factory, postgres_url, private_redis)
    mobile_app = await project_of(a, "bob", "Mobile App")
    watcher = await Socket.open(a, login(a, "bob"))
    alice = await Socket.open(b, login(b, "alice"))
    await alice.send("set_status", {"status": "away"}, ref="s")
    assert (await alice.receive_until("ack"))["payload"]["status"] == "away"
    carol = await Socket.open(a, login(a, "carol"))
    await carol.close()
    deadline = time.monotonic() + WAIT
    while (before := await snapshot(watcher, mobile_app))["carol"]["online"]:
        assert time.monotonic() < deadline, before["carol"]
        await asyncio.sleep(0.1)
    assert (before["alice"]["online"], before["alice"]["status"]) == (True, "away")
    carol_seen = before["carol"]["last_seen"]
    assert kept_last_seen(postgres_url, "carol") == pytest.approx(carol_seen, abs=1e-5)

    private_redis.stop()
    private_redis.start()  # empty: no status, no last seen in it
    restarted = time.monotonic()
    deadline = restarted + PRESENCE_TTL * 2
    other_watcher = await Socket.open(b, login(b, "bob"))
    while True:
        after = await snapshot(other_watcher, mobile_app)
        if after["alice"]["status"] == "away" and after["carol"]["last_seen"] is not None:
            break
        assert time.monotonic() < deadline, (after["alice"], after["carol"])
        await asyncio.sleep(0.2)
    back_after = time.monotonic() - restarted
    assert (after["alice"]["online"], after["alice"]["status"]) == (True, "away")
    assert (after["carol"]["online"], after["carol"]["status"]) == (False, "offline")
    assert after["carol"]["last_seen"] == pytest.approx(carol_seen, abs=1e-5)
    # The watcher on A was told alice is back, away (not "online").
    alice_id = after["alice"]["user"]["id"]
    latest = await presence_until(watcher, {alice_id: {"online": True}}, timeout=WAIT)
    assert latest[alice_id]["status"] == "away"
    print(f"chosen status and last seen back {back_after:.2f} s after an empty Redis restart")
    for socket in (watcher, other_watcher, alice):
        await socket.close()
    for server in (a, b):
        assert "Traceback" not in server.output(), server.output()


async def test_embedded_last_seen_survives_a_server_restart(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(demo=True)
    mobile_app = await project_of(server, "bob", "Mobile App")
    carol = await Socket.open(server, login(server, "carol"))
    await carol.close()
    watcher = await Socket.open(server, login(server, "bob"))
    deadline = time.monotonic() + WAIT
    while (before := await snapshot(watcher, mobile_app))["carol"]["online"]:
        assert time.monotonic() < deadline, before["carol"]
        await asyncio.sleep(0.1)
    await watcher.close()
    assert server.stop() == 0  # SIGTERM: who went offline is written before it exits

    again = server_factory()  # the same data directory: the same SQLite database
    watcher = await Socket.open(again, login(again, "bob"))
    after = await snapshot(watcher, mobile_app)
    assert after["carol"]["online"] is False
    assert after["carol"]["last_seen"] == pytest.approx(before["carol"]["last_seen"], abs=1e-5)
    await watcher.close()


async def test_while_redis_is_down_presence_requests_answer_presence_unavailable(
    server_factory: ServerFactory, private_redis: StoppableRedis
) -> None:
    server = server_factory(
        demo=True, redis_url=private_redis.url, env={"TRAY_PRESENCE_TTL": str(PRESENCE_TTL)}
    )
    admin = login(server, "admin")
    mobile_app = await project_of(server, "bob", "Mobile App")
    bob_token = login(server, "bob")
    bob = await Socket.open(server, bob_token)
    alice = await Socket.open(server, login(server, "alice"))
    private_redis.stop()

    asked = time.monotonic()
    await bob.send("subscribe_presence", {"project_id": mobile_app}, ref="p")
    refused = await bob.receive_until("error")
    answered_after = time.monotonic() - asked
    assert refused["ref"] == "p"
    assert refused["payload"]["code"] == "presence_unavailable"
    assert "temporarily unavailable" in refused["payload"]["message"]
    await alice.send("set_status", {"status": "away"}, ref="s")
    refused = await alice.receive_until("error")
    assert (refused["ref"], refused["payload"]["code"]) == ("s", "presence_unavailable")
    assert "saved" in refused["payload"]["message"]
    # Do-not-disturb is an attention setting, in the database: answered as always.
    await bob.send("set_status", {"status": "dnd"}, ref="d")
    assert (await bob.receive_until("ack"))["payload"] == {"for": "set_status", "status": "dnd"}
    # The HTTP stream's ?watch= opens anyway: the error event follows hello.
    async with (
        httpx.AsyncClient(timeout=30) as rest,
        rest.stream(
            "GET",
            f"{server.url}/api/stream/?watch={mobile_app}",
            headers={"Authorization": f"Bearer {bob_token}"},
        ) as streamed,
    ):
        assert streamed.status_code == 200
        kinds: list[str] = []
        async for line in streamed.aiter_lines():
            if line.startswith("data: "):
                frame = json.loads(line[len("data: ") :])
                kinds.append(frame["type"])
                if frame["type"] == "error":
                    assert frame["payload"]["code"] == "presence_unavailable"
                    break
        assert kinds[:2] == ["hello", "error"], kinds
    # Both sockets stay open and usable.
    await publish(server, admin, "still delivered", ["alice", "bob"])
    for socket in (alice, bob):
        await socket.receive_until("notification_created", title="still delivered")

    private_redis.start()
    assert server.wait_for_output(BACK, timeout=WAIT * 2)
    # The status chosen while Redis was away was kept, and shows now.
    deadline = time.monotonic() + PRESENCE_TTL
    while (members := await snapshot(bob, mobile_app))["alice"]["status"] != "away":
        assert time.monotonic() < deadline, members["alice"]
        await asyncio.sleep(0.2)
    print(f"presence_unavailable answered in {answered_after:.3f} s")
    for socket in (alice, bob):
        await socket.close()
    output = server.output()
    assert output.count(LOST) == 1, output
    assert "Traceback" not in output, output
