"""Who is online: per user, the sockets they have open, their chosen status, last seen.

Two stores with one interface. ``MemoryPresence`` serves the embedded default
(one process: when it dies, everyone is offline anyway). ``RedisPresence``
serves several processes: every socket is an entry with an expiry that its
process refreshes every TTL/3, so the users of a process that dies without
saying goodbye go offline within TTL; ``reap`` finds them so that watchers are
told.

A user is online while any of their sockets, on any process, is live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

Socket = tuple[int, str]  # (user_id, socket id unique across processes)


@dataclass(frozen=True)
class PresenceState:
    online: bool
    status: str  # "online" | "away" | "dnd" | "offline"
    last_seen: float | None  # epoch seconds; None if never seen

    def as_payload(self) -> dict[str, Any]:
        return {"online": self.online, "status": self.status, "last_seen": self.last_seen}


def _state(online: bool, chosen: str | None, last_seen: float | None) -> PresenceState:
    status = (chosen or "online") if online else "offline"
    return PresenceState(
        online=online, status=status, last_seen=time.time() if online else last_seen
    )


def _dnd_status(before: str | None, dnd: bool) -> str | None:
    if dnd:
        return "dnd"
    return "online" if before == "dnd" else before


# KEYS[1]: the status hash; ARGV: user id, "1" for dnd. The same rule as _dnd_status.
_APPLY_DND = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
local after = before
if ARGV[2] == '1' then after = 'dnd' elseif before == 'dnd' then after = 'online' end
if after == before then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], after)
return 1
"""


class PresenceStore(Protocol):
    async def socket_opened(self, socket: Socket) -> bool:
        """Record a socket; True when its user was offline until now."""
        ...

    async def socket_closed(self, socket: Socket) -> bool:
        """Forget a socket; True when its user has no socket left."""
        ...

    async def set_status(self, user_id: int, status: str) -> None: ...

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        """Follow the user's do-not-disturb: ``dnd`` while it holds, and back to
        ``online`` from ``dnd`` when it ends (``away`` stays away). True when this call
        changed the status, so that of several processes told at once, one announces it."""
        ...

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]: ...

    async def refresh(self, sockets: list[Socket]) -> None:
        """Keep this process's sockets alive (called every TTL/3)."""
        ...

    async def reap(self) -> list[int]:
        """Drop sockets whose process stopped refreshing them; users now offline."""
        ...

    async def close(self) -> None: ...


class MemoryPresence:
    def __init__(self) -> None:
        self._sockets: dict[int, set[str]] = {}
        self._status: dict[int, str] = {}
        self._last_seen: dict[int, float] = {}

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
        self._last_seen[user_id] = time.time()
        return True

    async def set_status(self, user_id: int, status: str) -> None:
        self._status[user_id] = status

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        before = self._status.get(user_id)
        after = _dnd_status(before, dnd)
        if after is None or after == before:
            return False
        self._status[user_id] = after
        return True

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        return {
            uid: _state(uid in self._sockets, self._status.get(uid), self._last_seen.get(uid))
            for uid in user_ids
        }

    async def refresh(self, sockets: list[Socket]) -> None:
        return None

    async def reap(self) -> list[int]:
        return []

    async def close(self) -> None:
        return None


class RedisPresence:
    """Presence in Redis, shared by every server process.

    Keys: ``conns`` is a sorted set of "uid|socket" scored by expiry (for
    reaping); ``user:<uid>`` holds that user's socket ids scored by expiry (for
    counting live ones); ``status`` and ``seen`` are hashes by user id. Every key
    starts with ``prefix``, the deployment's (``namespace.presence_prefix``): user
    ids of two deployments sharing a redis-server collide, so there is no default.
    """

    def __init__(self, redis: Any, *, ttl: float, prefix: str) -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix

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
        await self._redis.hset(self._key("seen"), str(user_id), str(now))
        return True

    async def set_status(self, user_id: int, status: str) -> None:
        await self._redis.hset(self._key("status"), str(user_id), status)

    async def apply_dnd(self, user_id: int, dnd: bool) -> bool:
        # One script, so that two processes told at once cannot both see the old value.
        changed = await self._redis.eval(
            _APPLY_DND, 1, self._key("status"), str(user_id), "1" if dnd else "0"
        )
        return bool(changed)

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        if not user_ids:
            return {}
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                self._live_count(pipe, uid, now)
            pipe.hmget(self._key("status"), [str(uid) for uid in user_ids])
            pipe.hmget(self._key("seen"), [str(uid) for uid in user_ids])
            results = await pipe.execute()
        counts = results[: len(user_ids)]
        statuses, seen = results[-2], results[-1]
        return {
            uid: _state(
                int(count) > 0,
                status.decode() if status else None,
                float(last) if last else None,
            )
            for uid, count, status, last in zip(user_ids, counts, statuses, seen, strict=True)
        }

    async def refresh(self, sockets: list[Socket]) -> None:
        if not sockets:
            return
        expiry = time.time() + self._ttl
        async with self._redis.pipeline(transaction=False) as pipe:
            # XX: only refresh what exists, so a socket already reaped stays gone.
            pipe.zadd(self._key("conns"), {f"{u}|{s}": expiry for u, s in sockets}, xx=True)
            for user_id, socket_id in sockets:
                pipe.zadd(self._key(f"user:{user_id}"), {socket_id: expiry}, xx=True)
            await pipe.execute()

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
                await self._redis.hset(self._key("seen"), str(user_id), str(last_seen))
                offline.append(user_id)
        return offline

    async def close(self) -> None:
        return None
