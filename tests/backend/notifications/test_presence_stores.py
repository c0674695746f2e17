"""Both presence stores follow do-not-disturb the same way, and of several processes told
at once only one hears that it changed the status (backend/notifications/presence.py);
both are seeded from what the database keeps and note who went offline for it.
The Redis store runs against the session's real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from backend.notifications.presence import MemoryPresence, PresenceStore, RedisPresence
from backend.notifications.presence_selectors import KeptPresence

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


async def test_seeding_puts_back_what_the_database_keeps(store: PresenceStore) -> None:
    """An empty store (a new process's memory, Redis restarted empty) asks to be seeded;
    chosen statuses come back, and last-seen times where the store has none."""
    if isinstance(store, RedisPresence):
        await store._redis.flushall()
    assert await store.needs_seed() is True
    await store.socket_opened((33, "s"))
    await store.socket_closed((33, "s"))  # seen just now: newer than the database's
    seen_here = (await store.states([33]))[33].last_seen
    await store.seed(
        {
            31: KeptPresence(chosen_status="away", last_seen=1_000.5),
            32: KeptPresence(chosen_status="", last_seen=2_000.25),
            33: KeptPresence(chosen_status="online", last_seen=3.0),
        }
    )
    assert await store.needs_seed() is False
    states = await store.states([31, 32, 33])
    assert (states[31].online, states[31].status, states[31].last_seen) == (
        False,
        "offline",
        1_000.5,
    )
    assert states[32].last_seen == 2_000.25
    assert states[33].last_seen == seen_here  # not replaced by an older time
    assert await status(store, 31) == "away"
    assert await status(store, 32) == "online"
    if isinstance(store, RedisPresence):
        await store._redis.flushall()  # an empty restart: seeded again
        assert await store.needs_seed() is True


async def test_who_went_offline_is_noted_for_the_database(store: PresenceStore) -> None:
    before = time.time()
    await store.socket_opened((41, "a"))
    await store.socket_opened((41, "b"))
    await store.socket_closed((41, "a"))
    assert store.seen_log.take() == {}  # still online
    await store.socket_closed((41, "b"))
    seen = store.seen_log.take()
    assert list(seen) == [41]
    assert before <= seen[41] <= time.time()
    assert store.seen_log.take() == {}  # taken once
    store.seen_log.put_back(seen)  # a flush that failed: kept for the next one
    store.seen_log.put_back({41: seen[41] - 10})  # an older time never wins
    assert store.seen_log.take() == seen


async def test_a_reaped_user_is_noted_for_the_database(redis_url: str) -> None:
    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        store = RedisPresence(client, ttl=0.2, prefix="test-reap:")
        await store.socket_opened((51, "dead-process:1"))
        # Its process stopped refreshing: reaped once the ttl has passed.
        deadline = time.monotonic() + 5
        while not (reaped := await store.reap()):
            assert time.monotonic() < deadline, "never reaped"
            await asyncio.sleep(0.05)
        assert reaped == [51]
        seen = store.seen_log.take()
        assert list(seen) == [51]
        assert seen[51] == (await store.states([51]))[51].last_seen
    finally:
        await client.aclose()
