"""Scale mode for real: two server processes sharing one PostgreSQL database and
one redis-server (both started by fixtures), real clients on each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import Socket, login
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.redis, pytest.mark.postgres]

PRESENCE_TTL = 2.0  # seconds; the product's default is 30


@pytest.fixture
def two_processes(
    server_factory: ServerFactory, postgres_url: str, redis_url: str
) -> Callable[[], tuple[RunningServer, RunningServer]]:
    def start() -> tuple[RunningServer, RunningServer]:
        env = {"TRAY_PRESENCE_TTL": str(PRESENCE_TTL)}
        # One after the other: the first migrates and seeds, the second finds it done.
        first = server_factory(demo=True, database_url=postgres_url, redis_url=redis_url, env=env)
        second = server_factory(database_url=postgres_url, redis_url=redis_url, env=env)
        return first, second

    return start


async def test_a_notification_published_on_one_process_reaches_a_client_on_the_other(two_processes):
    a, b = two_processes()
    async with httpx.AsyncClient(timeout=30) as rest:
        # Readiness pings Redis in scale mode (/healthz is liveness only, issue 19).
        ready = await rest.get(f"{b.url}/readyz")
        assert (ready.status_code, ready.text) == (200, "ok\n")
        on_b = await Socket.open(b, login(b, "alice"))
        admin = login(a, "admin")
        response = await rest.post(
            f"{a.url}/api/notifications/",
            json={
                "audience": {"everyone": True},
                "title": "Maintenance at 18:00",
                "priority": "urgent",
            },
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert response.status_code == 201, response.text
    frame = await on_b.receive_until("notification_created")
    assert frame["payload"]["title"] == "Maintenance at 18:00"
    assert frame["payload"]["seq"] == on_b.hello["latest_seq"] + 1
    await on_b.close()


async def test_read_state_from_one_process_reaches_the_users_socket_on_the_other(two_processes):
    a, b = two_processes()
    token = login(a, "alice")
    desktop, laptop = await Socket.open(a, token), await Socket.open(b, token)
    await desktop.send("resume", {"after_seq": 0})
    newest = None
    while True:
        frame = await desktop.receive()
        if frame["type"] == "caught_up":
            break
        newest = frame["payload"]
    assert newest is not None, "demo data gives alice notifications"
    await desktop.send("mark_read", {"ids": [newest["id"]]}, ref="r")
    updated = await laptop.receive_until("notification_updated")
    assert updated["payload"] == {"id": newest["id"], "updates": {"is_read": True}}
    count = await laptop.receive_until("unread_count")
    assert count["payload"]["unread_count"] == desktop.hello["unread_count"] - 1
    await desktop.close()
    await laptop.close()


async def test_presence_is_shared_and_a_killed_process_leaves_no_ghosts(two_processes):
    a, b = two_processes()
    watcher = await Socket.open(a, login(a, "bob"))
    async with httpx.AsyncClient(timeout=10) as rest:
        bob = {"Authorization": f"Bearer {login(a, 'bob')}"}
        me = await rest.get(f"{a.url}/api/me", headers=bob)
    mobile_app = next(p["id"] for p in me.json()["projects"] if p["title"] == "Mobile App")
    await watcher.send("subscribe_presence", {"project_id": mobile_app})
    snapshot = await watcher.receive_until("presence_snapshot")
    by_name = {m["user"]["username"]: m for m in snapshot["payload"]["members"]}
    assert by_name["bob"]["online"] is True
    assert by_name["alice"]["online"] is False
    alice_id = by_name["alice"]["user"]["id"]

    on_b = await Socket.open(b, login(b, "alice"))
    await watcher.receive_until("presence_changed", user_id=alice_id, online=True)
    await on_b.send("set_status", {"status": "away"})
    await watcher.receive_until("presence_changed", user_id=alice_id, status="away")

    b.kill()  # SIGKILL: process b never says goodbye
    killed_at = time.monotonic()
    gone = await watcher.receive_until(
        "presence_changed", timeout=PRESENCE_TTL * 5, user_id=alice_id, online=False
    )
    noticed_after = time.monotonic() - killed_at
    assert gone["payload"]["status"] == "offline"
    # Reported for the record (not a timing assertion): expiry is TTL plus one refresh period.
    print(f"alice went offline {noticed_after:.2f} s after SIGKILL (TTL {PRESENCE_TTL} s)")

    # A fresh snapshot agrees: no ghost.
    await watcher.send("subscribe_presence", {"project_id": mobile_app})
    again = await watcher.receive_until("presence_snapshot")
    assert {m["user"]["username"]: m["online"] for m in again["payload"]["members"]}[
        "alice"
    ] is False
    await watcher.close()
    await asyncio.sleep(0)
