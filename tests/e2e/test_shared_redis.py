"""Two deployments on one redis-server never hear each other.

A throwaway ``--demo`` server (its own data directory: its own SQLite database and
signing key) shares the production server's redis-server. Both were seeded by
``--demo``, so their users, projects and seqs have the same ids: exactly what made
the throwaway's notifications and presence show on production's clients while the
doorbell channel and presence keys had fixed names. Redis pub/sub ignores database
numbers, so the throwaway's ``/1`` URL does not separate them either.

Absence is proven with a barrier, not a pause: everything the other deployment
publishes reaches Redis (its own socket sees it) before production publishes, and
one pub/sub channel delivers in publish order, so a leaked event would arrive at
production's socket before production's own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.conftest import WAIT, Socket, doorbell_channel, login
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.redis]


def other_database_number(url: str) -> str:
    """The same redis-server, database 1 instead of 0 (which pub/sub ignores)."""
    assert url.endswith("/0"), url
    return url[:-1] + "1"


async def publish(rest: httpx.AsyncClient, server: RunningServer, title: str) -> dict[str, Any]:
    """Send ``title`` to alice through ``server``'s publish API, as its admin."""
    response = await rest.post(
        f"{server.url}/api/notifications/",
        json={"audience": {"usernames": ["alice"]}, "title": title},
        headers={"Authorization": f"Bearer {login(server, 'admin')}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def me(rest: httpx.AsyncClient, server: RunningServer, username: str) -> dict[str, Any]:
    response = await rest.get(
        f"{server.url}/api/me", headers={"Authorization": f"Bearer {login(server, username)}"}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def frames_until(socket: Socket, kind: str, **match: Any) -> list[dict[str, Any]]:
    """Every frame up to and including the first ``kind`` frame with the ``match`` items."""
    deadline = time.monotonic() + WAIT
    frames: list[dict[str, Any]] = []
    while True:
        frame = await socket.receive(max(0.01, deadline - time.monotonic()))
        frames.append(frame)
        if frame["type"] == kind and all(frame["payload"].get(k) == v for k, v in match.items()):
            return frames


async def test_a_notification_of_another_deployment_never_reaches_a_socket(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    production = server_factory(demo=True, data_dir=tmp_path / "production", redis_url=redis_url)
    throwaway = server_factory(
        demo=True, data_dir=tmp_path / "throwaway", redis_url=other_database_number(redis_url)
    )
    async with httpx.AsyncClient(timeout=30) as rest:
        # The premise of the finding: the same user id on both deployments.
        alice = await me(rest, production, "alice")
        assert alice["id"] == (await me(rest, throwaway, "alice"))["id"]
        on_production = await Socket.open(production, login(production, "alice"))
        on_throwaway = await Socket.open(throwaway, login(throwaway, "alice"))

        await publish(rest, throwaway, "demo: not for production")
        # The throwaway's doorbell went through Redis (it has no other way to its socket).
        demo = await on_throwaway.receive_until("notification_created")
        assert demo["payload"]["title"] == "demo: not for production"

        await publish(rest, production, "real: deploy at 18:00")
        frames = await frames_until(on_production, "notification_created")
    assert [f["payload"]["title"] for f in frames if f["type"] == "notification_created"] == [
        "real: deploy at 18:00"
    ]
    # Delivered, not dropped as a duplicate of the demo's seq, and with the next seq.
    assert frames[-1]["payload"]["seq"] == on_production.hello["latest_seq"] + 1
    await on_production.close()
    await on_throwaway.close()


async def test_presence_of_another_deployments_users_never_shows(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    # The same Redis database too: presence keys of both would meet there.
    production = server_factory(demo=True, data_dir=tmp_path / "production", redis_url=redis_url)
    throwaway = server_factory(demo=True, data_dir=tmp_path / "throwaway", redis_url=redis_url)
    async with httpx.AsyncClient(timeout=30) as rest:
        bob = await me(rest, production, "bob")
        assert bob["projects"] == (await me(rest, throwaway, "bob"))["projects"]
    mobile_app = next(p["id"] for p in bob["projects"] if p["title"] == "Mobile App")

    watcher = await Socket.open(production, login(production, "bob"))
    await watcher.send("subscribe_presence", {"project_id": mobile_app})
    snapshot = await watcher.receive_until("presence_snapshot")
    members = {m["user"]["username"]: m for m in snapshot["payload"]["members"]}
    assert members["alice"]["online"] is False
    alice_id, carol_id = members["alice"]["user"]["id"], members["carol"]["user"]["id"]

    # On the throwaway: alice comes online and sets dnd; its own watcher sees both.
    other_watcher = await Socket.open(throwaway, login(throwaway, "bob"))
    await other_watcher.send("subscribe_presence", {"project_id": mobile_app})
    await other_watcher.receive_until("presence_snapshot")
    other_alice = await Socket.open(throwaway, login(throwaway, "alice"))
    await other_alice.send("set_status", {"status": "dnd"})
    await other_watcher.receive_until("presence_changed", user_id=alice_id, status="dnd")

    # Barrier: production's own presence event, published after all of the above.
    carol = await Socket.open(production, login(production, "carol"))
    frames = await frames_until(watcher, "presence_changed", user_id=carol_id, online=True)
    leaked = [
        f for f in frames if f["type"] == "presence_changed" and f["payload"]["user_id"] == alice_id
    ]
    assert leaked == []
    # Nor does production's presence store count the throwaway's socket.
    await watcher.send("subscribe_presence", {"project_id": mobile_app})
    again = await watcher.receive_until("presence_snapshot")
    members = {m["user"]["username"]: m for m in again["payload"]["members"]}
    assert members["alice"]["online"] is False
    assert members["alice"]["status"] == "offline"
    assert members["carol"]["online"] is True
    for socket in (watcher, other_watcher, other_alice, carol):
        await socket.close()


async def test_a_forged_doorbell_on_this_deployments_channel_is_dropped(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    """Defence in depth: even on the deployment's own channel, an event that does not
    carry this deployment's id (another deployment's, or none, as an older server or a
    hand-typed PUBLISH would send) never reaches a socket."""
    production = server_factory(demo=True, data_dir=tmp_path / "production", redis_url=redis_url)
    async with httpx.AsyncClient(timeout=30) as rest:
        alice_id = (await me(rest, production, "alice"))["id"]
        on_production = await Socket.open(production, login(production, "alice"))
        channel = doorbell_channel(redis_url)
        seq = on_production.hello["latest_seq"] + 1
        forged = {
            "kind": "notification",
            "message_id": 10**9,
            "shared": {"title": "forged", "message": "", "priority": "urgent"},
            "recipients": [[alice_id, 10**9, seq]],
        }
        with redis.Redis.from_url(redis_url) as admin:
            for deployment in ({"deployment": "someone-else"}, {}):
                assert admin.publish(channel, json.dumps({**forged, **deployment})) == 1
        await publish(rest, production, "real: after the forgeries")
        frames = await frames_until(on_production, "notification_created")
    assert [f["payload"]["title"] for f in frames if f["type"] == "notification_created"] == [
        "real: after the forgeries"
    ]
    assert frames[-1]["payload"]["seq"] == seq
    assert "another deployment" in production.output()
    await on_production.close()
