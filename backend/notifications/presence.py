"""Who is online: per user, the sockets they have open, their chosen status, last seen.

Two stores with one interface. ``MemoryPresence`` serves the embedded default
(one process: when it dies, everyone is offline anyway). ``RedisPresence``
serves several processes: every socket is an entry with an expiry that its
process refreshes every TTL/3, so the users of a process that dies without
saying goodbye go offline within TTL; ``reap`` finds them so that watchers are
told. ``refresh`` also says which of a process's sockets Redis no longer holds
(it restarted empty), so that the process puts them back within TTL/3.

The status a user chose and when they were last seen are also kept in the database
(``PresenceRecord``): each store notes who went offline (``seen_log``, flushed in
batches by the hub) and, when it starts empty (``needs_seed``: a new process's memory,
Redis restarted without persistence), is seeded from there (``seed``).

A user is online while any of their sockets, on any process, is live.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from backend.notifications.presence_selectors import KeptPresence

Socket = tuple[int, str]  # (user_id, socket id unique across processes)


@dataclass(frozen=True)
class PresenceState:
    online: bool
    status: str  # "online" | "away" | "dnd" | "offline"
    last_seen: float | None  # epoch seconds; None if never seen

    def as_payload(self) -> dict[str, Any]:
        return {"online": self.online, "status": self.status, "last_seen": self.last_seen}


def _state(
    online: bool, chosen: str | None, last_seen: float | None, *, dnd: bool = False
) -> PresenceState:
    """Do-not-disturb, while on, is the status; otherwise what the user chose."""
    status = ("dnd" if dnd else chosen or "online") if online else "offline"
    return PresenceState(
        online=online, status=status, last_seen=time.time() if online else last_seen
    )


class SeenLog:
    """Who went offline since the last flush, and when (epoch seconds): the hub writes
    them to the database in one transaction every few seconds (``take``), so that a
    reconnect storm is not a database write per disconnect."""

    def __init__(self) -> None:
        self._pending: dict[int, float] = {}

    def note(self, user_id: int, at: float) -> None:
        if at > self._pending.get(user_id, 0.0):
            self._pending[user_id] = at

    def take(self) -> dict[int, float]:
        """Everything noted since the last ``take``; noted again (``put_back``) if it
        could not be written."""
        pending, self._pending = self._pending, {}
        return pending

    def put_back(self, seen: Mapping[int, float]) -> None:
        for user_id, at in seen.items():
            self.note(user_id, at)


class PresenceStore(Protocol):
    # Who went offline, for the database (the hub flushes it).
    seen_log: SeenLog

    async def socket_opened(self, socket: Socket) -> bool:
        """Record a socket; True when its user was offline until now."""
        ...

    async def socket_closed(self, socket: Socket) -> bool:
        """Forget a socket; True when its user has no socket left."""
        ...

    async def set_status(self, user_id: int, status: str) -> None: ...

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        """Follow the user's do-not-disturb (their attention settings): while it is on,
        their status shows as ``dnd`` whatever they chose with ``set_status``. True when
        this call changed it, so that of several processes told at once, one announces it."""
        ...

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]: ...

    async def refresh(self, sockets: list[Socket]) -> list[Socket]:
        """Keep this process's sockets alive (called every TTL/3). Returns those the
        store no longer holds (Redis restarted empty, or another process reaped them
        while this one stalled): the caller re-asserts the ones still open."""
        ...

    async def reap(self) -> list[int]:
        """Drop sockets whose process stopped refreshing them; users now offline."""
        ...

    async def needs_seed(self) -> bool:
        """True while the store holds nothing kept (started, or Redis restarted, empty):
        the caller reads the database and calls ``seed``."""
        ...

    async def seed(self, kept: Mapping[int, KeptPresence]) -> None:
        """Put back what the database keeps: chosen statuses (the database's win: it is
        written first) and last-seen times (only where the store has none: its own are
        newer). Then ``needs_seed`` is False until the store is emptied again."""
        ...

    async def close(self) -> None: ...


class MemoryPresence:
    def __init__(self) -> None:
        self._sockets: dict[int, set[str]] = {}
        self._status: dict[int, str] = {}
        self._dnd: set[int] = set()
        self._last_seen: dict[int, float] = {}
        self.seen_log = SeenLog()
        self._seeded = False

    async def socket_opened(self, socket: Socket) -> bool:
        user_id, socket_id = socket
        sockets = self._sockets.setdefault(user_id, set())
        sockets.add(socket_id)
        return len(sockets) == 1

    async def socket_closed(self, socket: Socket) -> bool:
        user_id, socket_id = socket
        sockets = self._sockets.get(user_id)
        if not sockets or socket_id not in sockets:
            return False
        sockets.discard(socket_id)
        if sockets:
            return False
        del self._sockets[user_id]
        now = time.time()
        self._last_seen[user_id] = now
        self.seen_log.note(user_id, now)
        return True

    async def set_status(self, user_id: int, status: str) -> None:
        self._status[user_id] = status

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        if dnd == (user_id in self._dnd):
            return False
        if dnd:
            self._dnd.add(user_id)
        else:
            self._dnd.discard(user_id)
        return True

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        return {
            uid: _state(
                uid in self._sockets,
                self._status.get(uid),
                self._last_seen.get(uid),
                dnd=uid in self._dnd,
            )
            for uid in user_ids
        }

    async def refresh(self, sockets: list[Socket]) -> list[Socket]:
        return []

    async def reap(self) -> list[int]:
        return []

    async def needs_seed(self) -> bool:
        return not self._seeded

    async def seed(self, kept: Mapping[int, KeptPresence]) -> None:
        for user_id, record in kept.items():
            if record.chosen_status:
                self._status[user_id] = record.chosen_status
            if record.last_seen is not None and user_id not in self._last_seen:
                self._last_seen[user_id] = record.last_seen
        self._seeded = True

    async def close(self) -> None:
        return None


class RedisPresence:
    """Presence in Redis, shared by every server process.

    Keys: ``conns`` is a sorted set of "uid|socket" scored by expiry (for
    reaping); ``user:<uid>`` holds that user's socket ids scored by expiry (for
    counting live ones); ``status`` and ``seen`` are hashes by user id; ``dnd`` is
    the set of users whose do-not-disturb is on; ``seeded`` says ``status`` and
    ``seen`` hold what the database keeps (gone after an empty restart). Every key
    starts with ``prefix``, the deployment's (``namespace.presence_prefix``): user
    ids of two deployments sharing a redis-server collide, so there is no default.
    """

    def __init__(self, redis: Any, *, ttl: float, prefix: str) -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix
        self.seen_log = SeenLog()

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _live_count(self, pipe: Any, user_id: int, now: float) -> None:
        pipe.zcount(self._key(f"user:{user_id}"), f"({now}", "+inf")

    async def socket_opened(self, socket: Socket) -> bool:
        user_id, socket_id = socket
        now = time.time()
        expiry = now + self._ttl
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._key("conns"), {f"{user_id}|{socket_id}": expiry})
            pipe.zadd(self._key(f"user:{user_id}"), {socket_id: expiry})
            self._live_count(pipe, user_id, now)
            results = await pipe.execute()
        return int(results[-1]) == 1

    async def socket_closed(self, socket: Socket) -> bool:
        user_id, socket_id = socket
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._key("conns"), f"{user_id}|{socket_id}")
            pipe.zrem(self._key(f"user:{user_id}"), socket_id)
            self._live_count(pipe, user_id, now)
            removed, _, live = await pipe.execute()
        if int(removed) == 0 or int(live) > 0:
            return False
        self.seen_log.note(user_id, now)
        await self._redis.hset(self._key("seen"), str(user_id), str(now))
        return True

    async def set_status(self, user_id: int, status: str) -> None:
        await self._redis.hset(self._key("status"), str(user_id), status)

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        # SADD and SREM say 1 to exactly one of several processes told at once.
        if dnd:
            return bool(await self._redis.sadd(self._key("dnd"), str(user_id)))
        return bool(await self._redis.srem(self._key("dnd"), str(user_id)))

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        if not user_ids:
            return {}
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                self._live_count(pipe, uid, now)
            pipe.hmget(self._key("status"), [str(uid) for uid in user_ids])
            pipe.hmget(self._key("seen"), [str(uid) for uid in user_ids])
            pipe.smismember(self._key("dnd"), [str(uid) for uid in user_ids])
            results = await pipe.execute()
        counts = results[: len(user_ids)]
        statuses, seen, dnd = results[-3], results[-2], results[-1]
        return {
            uid: _state(
                int(count) > 0,
                status.decode() if status else None,
                float(last) if last else None,
                dnd=bool(on),
            )
            for uid, count, status, last, on in zip(
                user_ids, counts, statuses, seen, dnd, strict=True
            )
        }

    async def refresh(self, sockets: list[Socket]) -> list[Socket]:
        if not sockets:
            return []
        expiry = time.time() + self._ttl
        async with self._redis.pipeline(transaction=False) as pipe:
            # XX: only refresh what exists (a socket closed meanwhile stays gone); CH
            # says which did: the others are missing, and the caller re-asserts them.
            pipe.zadd(self._key("conns"), {f"{u}|{s}": expiry for u, s in sockets}, xx=True)
            for user_id, socket_id in sockets:
                pipe.zadd(self._key(f"user:{user_id}"), {socket_id: expiry}, xx=True, ch=True)
            results = await pipe.execute()
        return [
            socket for socket, found in zip(sockets, results[1:], strict=True) if not int(found)
        ]

    async def reap(self) -> list[int]:
        now = time.time()
        expired = await self._redis.zrangebyscore(self._key("conns"), "-inf", now)
        affected: dict[int, float] = {}
        for raw in expired:
            member = raw.decode()
            # ZREM says 1 to exactly one reaper, so each dead socket is counted once.
            if not await self._redis.zrem(self._key("conns"), member):
                continue
            user_part, _, socket_id = member.partition("|")
            user_id = int(user_part)
            await self._redis.zrem(self._key(f"user:{user_id}"), socket_id)
            affected[user_id] = now - self._ttl
        offline: list[int] = []
        for user_id, last_seen in affected.items():
            if await self._redis.zcount(self._key(f"user:{user_id}"), f"({now}", "+inf") == 0:
                self.seen_log.note(user_id, last_seen)
                await self._redis.hset(self._key("seen"), str(user_id), str(last_seen))
                offline.append(user_id)
        return offline

    async def needs_seed(self) -> bool:
        return not await self._redis.exists(self._key("seeded"))

    async def seed(self, kept: Mapping[int, KeptPresence]) -> None:
        statuses = {str(u): r.chosen_status for u, r in kept.items() if r.chosen_status}
        seen = [(str(u), str(r.last_seen)) for u, r in kept.items() if r.last_seen is not None]
        async with self._redis.pipeline(transaction=True) as pipe:
            if statuses:
                pipe.hset(self._key("status"), mapping=statuses)
            for user_id, last_seen in seen:
                # A time Redis holds is newer than the database's (written at once there,
                # in batches here).
                pipe.hsetnx(self._key("seen"), user_id, last_seen)
            # Last: a process that fails before it seeds leaves the marker unset, so the
            # next refresh (of any process) seeds again. Two seeding at once is harmless.
            pipe.set(self._key("seeded"), "1")
            await pipe.execute()

    async def close(self) -> None:
        return None
