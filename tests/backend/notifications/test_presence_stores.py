"""Both presence stores follow do-not-disturb the same way, and of several processes told
at once only one hears that it changed the status (backend/notifications/presence.py).
The Redis store runs against the session's real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from backend.notifications.presence import MemoryPresence, PresenceStore, RedisPresence

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[PresenceStore]:
    if request.param == "memory":
        yield MemoryPresence()
        return
    client: Any = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield RedisPresence(client, ttl=30, prefix="test:")
    finally:
        await client.aclose()


async def status(store: PresenceStore, user_id: int) -> str:
    await store.socket_opened((user_id, "s1"))
    return (await store.states([user_id]))[user_id].status


async def test_do_not_disturb_is_the_status_while_on(store: PresenceStore) -> None:
    assert await store.apply_dnd(7, dnd=False) is False  # nothing to end
    assert await store.apply_dnd(7, dnd=True) is True
    assert await store.apply_dnd(7, dnd=True) is False
    assert await status(store, 7) == "dnd"
    await store.set_status(7, "away")  # chosen meanwhile: shown once dnd ends
    assert await status(store, 7) == "dnd"
    assert await store.apply_dnd(7, dnd=False) is True
    assert await status(store, 7) == "away"
    assert await store.apply_dnd(8, dnd=True) is True
    assert (await store.states([8]))[8].status == "offline"  # no socket: offline


async def test_of_processes_told_at_once_one_changes_it(store: PresenceStore) -> None:
    changed = await asyncio.gather(*(store.apply_dnd(9, dnd=True) for _ in range(20)))
    assert changed.count(True) == 1
    changed = await asyncio.gather(*(store.apply_dnd(9, dnd=False) for _ in range(20)))
    assert changed.count(True) == 1


async def test_refresh_names_the_sockets_the_store_lost(store: PresenceStore) -> None:
    """Redis restarted empty (FLUSHALL here): the refresh says which sockets are gone, so
    the process puts them back (hub._reassert_presence); it never re-adds one itself."""
    sockets = [(11, "p:1"), (11, "p:2"), (12, "p:3")]
    for socket in sockets:
        await store.socket_opened(socket)
    assert await store.refresh(sockets) == []
    if isinstance(store, RedisPresence):
        await store._redis.flushall()
        assert await store.refresh(sockets) == sockets
        assert (await store.states([11, 12]))[11].online is False  # not re-added by refresh
        assert await store.socket_opened((11, "p:1")) is True
        assert await store.refresh(sockets) == [(11, "p:2"), (12, "p:3")]
