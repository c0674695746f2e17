"""The per-process hub: this process's sockets, and the doorbell fanned out to them.

Every server process has one hub (bound to its event loop). It is the listener of
the process's doorbell (backend/notifications/doorbell.py): it receives each
doorbell event exactly once (in-process, or one Redis message per process) and
hands it to the local sockets it concerns, so the cost of a broadcast is one event
per process plus one frame per local recipient.

In the embedded default another process's commit (``tray-notifier-server notify``,
``manage shell``, a second server) reaches this hub as a "look" datagram: the
database watch then looks for new notifications and ended sessions at once; it
also looks every ``TRAY_DB_WATCH_INTERVAL`` as a safety net.

The event kinds are typed in backend/notifications/events.py, and so is what the
hub needs of a socket (``events.ClientSocket``); the hub imports no consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Container, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from backend import db_faults, metrics
from backend.attention import rules as attention_rules
from backend.attention.models import Attention
from backend.attention.selectors import attention_payload
from backend.notifications import (
    namespace,
    presence_selectors,
    presence_services,
    protocol,
    selectors,
)
from backend.notifications.connections import ConnectionStore, MemoryConnections, RedisConnections
from backend.notifications.doorbell import Doorbell, RedisDoorbell, current_namespace, redis_fault
from backend.notifications.doorbell import current as current_doorbell
from backend.notifications.events import (
    AttentionEvent,
    ClientSocket,
    Event,
    NotificationEvent,
    PresenceEvent,
    ReadStateEvent,
    SessionsEndedEvent,
)
from backend.notifications.models import Message
from backend.notifications.payloads import message_payload
from backend.notifications.presence import MemoryPresence, PresenceStore, RedisPresence, Socket
from backend.users.models import LoginSession

logger = logging.getLogger(__name__)

# How often who went offline is written to the database (``PresenceRecord.last_seen``):
# a batch every few seconds, not a write per disconnect.
SEEN_FLUSH_INTERVAL = 5.0


def _watch_new_messages(
    after_id: int, user_ids: list[int], rung: Container[int]
) -> tuple[int, list[NotificationEvent]]:
    """Notifications committed by another process (the ``notify`` command) since
    ``after_id``, as doorbell events for the given (locally connected) users.
    Messages in ``rung`` already rang this process's doorbell and are skipped
    before their rows are read."""
    # Ids first: nearly every new message is this process's own (already rung), and
    # building its model instance was most of a look's cost at 170 publishes a second.
    ids = list(
        Message.objects.filter(id__gt=after_id).order_by("id").values_list("id", flat=True)[:500]
    )
    unrung = [message_id for message_id in ids if message_id not in rung] if user_ids else []
    messages = (
        Message.objects.filter(id__in=unrung).select_related("actor").order_by("id")
        if unrung
        else []
    )
    events: list[NotificationEvent] = []
    for message in messages:
        rows = selectors.inbox_rows_for_users(message_id=message.pk, user_ids=user_ids)
        if rows:
            events.append(
                {
                    "kind": "notification",
                    "message_id": message.pk,
                    "shared": message_payload(message),
                    "recipients": [list(row) for row in rows],
                }
            )
    return (ids[-1] if ids else after_id), events


def _watch_ended_sessions(since: datetime) -> tuple[datetime, list[SessionsEndedEvent]]:
    """Sessions that ended at or after ``since``
    (a logout, password change or deactivation in another process, such as ``manage
    shell``), as ``sessions_ended`` events; and the ``since`` of the next look.

    The next look starts a little before this one, because a session's end is
    stamped before its transaction commits: ending twice is harmless.
    """
    now = timezone.now()
    ended = (
        LoginSession.objects.filter(ended_at__gte=since)
        .values_list("user_id", "id", "end_reason")
        .order_by()
    )
    return now - timedelta(seconds=10), [
        {"kind": "sessions_ended", "user_id": user_id, "session_ids": [sid], "reason": reason}
        for user_id, sid, reason in ended
    ]


def _attentions(user_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each user's attention payload, 500 users a query (presence re-asserted after
    Redis restarted empty)."""
    now = timezone.now()
    stored: dict[int, tuple[Any, int]] = {}
    for start in range(0, len(user_ids), 500):
        rows = Attention.objects.filter(user_id__in=user_ids[start : start + 500])
        for user_id, state, version in rows.values_list("user_id", "state", "version"):
            stored[user_id] = (state, version)
    return {
        user_id: attention_payload(
            state=stored.get(user_id, (None, 0))[0],
            version=stored.get(user_id, (None, 0))[1],
            now=now,
        )
        for user_id in user_ids
    }


def _look(
    after_id: int, user_ids: list[int], rung: Container[int], sessions_since: datetime
) -> tuple[int, list[NotificationEvent], datetime, list[SessionsEndedEvent]]:
    """Both looks of the database watch, in one trip to the database thread."""
    after_id, notifications = _watch_new_messages(after_id, user_ids, rung)
    sessions_since, ended = _watch_ended_sessions(sessions_since)
    return after_id, notifications, sessions_since, ended


class RecentIds:
    """The last ``limit`` ids added, from any thread; membership tests need no lock."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._ids: dict[int, None] = {}
        self._lock = threading.Lock()

    def add(self, item: int) -> None:
        with self._lock:
            self._ids[item] = None
            if len(self._ids) > self.limit:
                del self._ids[next(iter(self._ids))]

    def __contains__(self, item: object) -> bool:
        return item in self._ids


class Hub:
    """This process's sockets and what reaches them. Use ``Hub.current()``.

    Signals are plain method calls on the sockets (``events.ClientSocket``:
    ``deliver_notification``, ``deliver_frames``, ``close_with``,
    ``request_catch_up``); the hub never awaits a socket, so one slow client cannot
    stall a broadcast.
    """

    _current: ClassVar[Hub | None] = None

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex[:12]
        # Socket ids: this process's random id and a counter (a uuid4 per socket cost a
        # getrandom call on every connect of a reconnect storm).
        self._socket_numbers = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sockets_by_user: dict[int, set[ClientSocket]] = {}
        self.watchers: dict[int, set[ClientSocket]] = {}
        self.presence: PresenceStore = MemoryPresence()
        # Who is connected now, for staff (backend/notifications/connections.py).
        self.connections: ConnectionStore = MemoryConnections(self.sockets_by_user, self.process_id)
        self.doorbell: Doorbell = current_doorbell()
        self._tasks: list[asyncio.Task[None]] = []
        # Presence lives in Redis (several processes), not in this process's memory.
        self._shared_presence = False
        self._started = False
        # This process's notifications rung lately, noted by the thread that rang
        # (``rung``): the database watch, on the database thread, may run before the
        # loop dispatches them.
        self._recently_rung = RecentIds(limit=10_000)
        # Set by look() (another process's doorbell): the database watch looks at once.
        self._look_now = asyncio.Event()
        # Per user with sockets here: when their do-not-disturb ends by itself.
        self._dnd_timers: dict[int, asyncio.TimerHandle] = {}
        # One-off work started by a dispatch (kept so it is not garbage-collected).
        self._chores: set[asyncio.Task[None]] = set()

    @classmethod
    def current(cls) -> Hub:
        """The hub of the running event loop (a new one if the loop changed, as in tests)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        hub = cls._current
        if hub is None or (hub.loop is not None and loop is not None and hub.loop is not loop):
            hub = cls()
            cls._current = hub
        return hub

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.loop = asyncio.get_running_loop()
        metrics.hub_started(self.sockets_by_user.__len__)
        tray = settings.TRAY
        # Heard from now on, before the database watch reads where to start: nothing
        # committed in between is missed.
        await self.doorbell.open(self)
        if isinstance(self.doorbell, RedisDoorbell):
            self._shared_presence = True
            self.presence = RedisPresence(
                self.doorbell.client,
                ttl=tray["PRESENCE_TTL"],
                prefix=namespace.presence_prefix(current_namespace()),
            )
            self.connections = RedisConnections(
                self.doorbell.client,
                prefix=namespace.presence_prefix(current_namespace()),
                process=self.process_id,
            )
            self._spawn(self._every(tray["PRESENCE_TTL"] / 3, self._refresh_presence), "presence")
        else:
            latest = await database_sync_to_async(selectors.latest_message_id)()
            self._spawn(self._watch_database(latest), "database watch")
        # Chosen statuses and last seen, from the database (Redis may be down: then its
        # first refresh once it is back seeds it).
        await self._seed_presence()
        self._spawn(self._every(SEEN_FLUSH_INTERVAL, self._flush_seen), "last seen")
        self._spawn(self._every(tray["TOKEN_SWEEP_INTERVAL"], self._sweep_tokens), "token sweep")

    async def stop(self) -> None:
        """Close every socket with 1012 and tell presence this process is leaving."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for timer in self._dnd_timers.values():
            timer.cancel()
        self._dnd_timers.clear()
        for consumer in [c for group in self.sockets_by_user.values() for c in group]:
            consumer.close_with(protocol.CLOSE_RESTART)
            await self.socket_closed(consumer)
        # Everyone here just went offline: kept before the process ends.
        try:
            await self._flush_seen()
        except Exception:
            logger.exception("last seen could not be written while stopping")
        await self.doorbell.close(self)
        self._started = False
        if Hub._current is self:
            Hub._current = None

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub task %r stopped", name)

        # A fresh context: the hub may start in a socket's or a request's task, whose
        # ids must not tag the hub's own lines (nor what those tasks dispatch).
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(guarded(), context=contextvars.Context()))

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                logger.exception("periodic hub job failed; retrying in %.1fs", interval)

    # -- sockets ------------------------------------------------------------

    def new_socket_id(self) -> str:
        """An id unique across every process and socket (presence keys it in Redis)."""
        return f"{self.process_id}:{next(self._socket_numbers)}"

    def register(self, consumer: ClientSocket) -> None:
        sockets = self.sockets_by_user.setdefault(consumer.user_id, set())
        if consumer not in sockets:
            sockets.add(consumer)
            metrics.connection_opened(getattr(consumer, "kind", "socket"))

    async def socket_opened(
        self, consumer: ClientSocket, *, attention: dict[str, Any] | None = None
    ) -> None:
        """A socket said hello; with its user's ``attention``, presence follows their
        do-not-disturb (set, or ended, while none of their sockets was open)."""
        user_id = consumer.user_id
        changed = False
        try:
            if attention is not None:
                changed = await self._follow_dnd(user_id, attention)
            if await self.presence.socket_opened((user_id, consumer.socket_id)) or changed:
                await self.publish_presence(user_id)
        except Exception as error:
            # Redis away: the socket still opens; the refresh puts it in presence later.
            if not self.redis_lost(error):
                raise
        if consumer in self.sockets_by_user.get(user_id, ()):  # not closed meanwhile
            await self._note_connection(self.connections.opened(consumer))

    async def socket_closed(self, consumer: ClientSocket) -> None:
        sockets = self.sockets_by_user.get(consumer.user_id)
        if sockets is None or consumer not in sockets:
            return
        sockets.discard(consumer)
        metrics.connection_closed(getattr(consumer, "kind", "socket"))
        if not sockets:
            del self.sockets_by_user[consumer.user_id]
            timer = self._dnd_timers.pop(consumer.user_id, None)
            if timer is not None:
                timer.cancel()
        for project_id in list(consumer.watching):
            self.unwatch(consumer, project_id)
        try:
            if await self.presence.socket_closed((consumer.user_id, consumer.socket_id)):
                await self.publish_presence(consumer.user_id)
        except Exception as error:
            # Redis away: the socket's entry expires by itself (and is reaped) if it
            # is still there when Redis is back.
            if not self.redis_lost(error):
                raise
        await self._note_connection(self.connections.closed(consumer))

    async def _note_connection(self, note: Awaitable[None]) -> None:
        """Tell the connection store, after presence (a listing prunes the info of a
        socket presence does not hold)."""
        try:
            await note
        except Exception as error:
            # Redis away: a socket opened meanwhile is listed with an unknown client
            # (or its info again when Redis lost it); a closed one's info is pruned.
            if not self.redis_lost(error):
                raise

    def redis_lost(self, error: Exception) -> bool:
        """A presence call failed. True when it is because Redis cannot be reached
        (said once in the log, by the doorbell's ``RedisLink``): the refresh re-asserts
        this process's sockets once it is back, so the caller carries on."""
        doorbell = self.doorbell
        if not isinstance(doorbell, RedisDoorbell) or not redis_fault(error):
            return False
        doorbell.link.lost(error)
        return True

    def watch(self, consumer: ClientSocket, project_id: int) -> None:
        self.watchers.setdefault(project_id, set()).add(consumer)
        consumer.watching.add(project_id)

    def unwatch(self, consumer: ClientSocket, project_id: int) -> None:
        watchers = self.watchers.get(project_id)
        if watchers is not None:
            watchers.discard(consumer)
            if not watchers:
                del self.watchers[project_id]
        consumer.watching.discard(project_id)

    async def publish_presence(self, user_id: int) -> None:
        """Tell the watchers of every project the user is in (looked up now, so a
        project joined or left since the socket opened is accounted for)."""
        if not self._shared_presence and not self.watchers:
            # One process and nobody here watches a project: no one to tell, so no
            # queries (a reconnect storm would pay two per socket for nothing). Whoever
            # subscribes later gets the presence store's snapshot.
            return
        found = await database_sync_to_async(selectors.presence_audience)(user_id=user_id)
        if found is None or not found[1]:
            return
        user, project_ids = found
        state = (await self.presence.states([user_id]))[user_id]
        await self.publish(
            {
                "kind": "presence",
                "user_id": user_id,
                "user": user,
                "project_ids": project_ids,
                "state": state.as_payload(),
            }
        )

    async def publish(self, event: Event) -> None:
        """Ring from async code (presence): one Redis message, or straight to dispatch."""
        await self.doorbell.publish(event)

    # -- the doorbell's listener (doorbell.Listener) ---------------------------

    def look(self) -> None:
        """Another process committed something: the database watch looks now."""
        self._look_now.set()

    def rung(self, event: Event) -> None:
        """This process rang ``event`` (any thread): a notification's look is skipped."""
        if event["kind"] == "notification":
            self._recently_rung.add(int(event["message_id"]))

    def catch_up_all(self) -> None:
        """Doorbells may have been missed: every socket catches up from the database."""
        for consumer in [c for group in self.sockets_by_user.values() for c in group]:
            consumer.request_catch_up()
        if isinstance(self.doorbell, RedisDoorbell):
            # Redis is back, perhaps empty: presence is re-asserted now, not at the next
            # refresh; and sessions that other processes ended meanwhile close here.
            # Reseeded too: a status chosen while Redis was away is in the database only.
            self._chore(self._refresh_presence(reseed=True))
            self._chore(self._recheck_sessions(self.doorbell.link.lost_at))
            self._chore(self._resync_watchers(settings.TRAY["PRESENCE_TTL"] / 3 + 0.5))

    # -- fan-out ------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """Hand one doorbell event to the local sockets it concerns. Never raises."""
        try:
            if event["kind"] == "notification":
                self._dispatch_notification(event)
            elif event["kind"] == "read_state":
                self._dispatch_read_state(event)
            elif event["kind"] == "presence":
                self._dispatch_presence(event)
            elif event["kind"] == "attention":
                self._dispatch_attention(event)
            elif event["kind"] == "user_disabled":
                for consumer in list(self.sockets_by_user.get(int(event["user_id"]), ())):
                    consumer.close_with(protocol.CLOSE_FORBIDDEN)
            elif event["kind"] == "sessions_ended":
                self._dispatch_sessions_ended(event)
            elif event["kind"] == "membership_removed":
                project_id = int(event["project_id"])
                for consumer in list(self.sockets_by_user.get(int(event["user_id"]), ())):
                    if project_id in consumer.watching:
                        self.unwatch(consumer, project_id)
                        consumer.deliver_frames(
                            [
                                protocol.encode(
                                    "presence_unsubscribed",
                                    {"project_id": project_id, "reason": "removed"},
                                )
                            ]
                        )
            else:
                # A kind this server does not know (a newer server's, during an upgrade).
                logger.warning("ignored a doorbell event of unknown kind %r", event.get("kind"))
        except Exception:
            logger.exception("doorbell event could not be dispatched")

    def _dispatch_notification(self, event: NotificationEvent) -> None:
        self._recently_rung.add(int(event["message_id"]))
        if not self.sockets_by_user:
            return
        prefix = protocol.notification_frame_prefix(event["shared"])
        tail = protocol.notification_frame_tail(prefix)
        frame_of = protocol.notification_frame
        sockets_of = self.sockets_by_user.get
        delivered = 0
        for user_id, inbox_id, seq in event["recipients"]:
            sockets = sockets_of(user_id)
            if not sockets:
                continue
            frame = frame_of(prefix, inbox_id=inbox_id, seq=seq, tail=tail)
            delivered += len(sockets)
            for consumer in sockets:
                consumer.deliver_notification(seq, frame)
        metrics.notifications_delivered(delivered)

    def _dispatch_sessions_ended(self, event: SessionsEndedEvent) -> None:
        ended = set(event["session_ids"])
        # A deactivated account is told so (4003: ask an administrator); any other end
        # is a 4001 whose refresh fails, so the client asks its user to log in again.
        code = (
            protocol.CLOSE_FORBIDDEN
            if event.get("reason") == LoginSession.END_DEACTIVATED
            else protocol.CLOSE_TOKEN_INVALID
        )
        for consumer in list(self.sockets_by_user.get(int(event["user_id"]), ())):
            if consumer.session_id in ended:
                consumer.close_with(code)

    def _dispatch_read_state(self, event: ReadStateEvent) -> None:
        sockets = self.sockets_by_user.get(int(event["user_id"]))
        if not sockets:
            return
        frames = [
            protocol.encode("notification_updated", {"id": inbox_id, "updates": {"is_read": read}})
            for inbox_id, read in event["updates"]
        ]
        frames += [protocol.encode("notification_deleted", {"id": i}) for i in event["deleted"]]
        if event.get("all_read_up_to") is not None:
            frames.append(protocol.encode("all_read", {"up_to_seq": event["all_read_up_to"]}))
        unread = int(event["unread_count"])
        frames.append(protocol.unread_count_frame(unread))
        latest = event.get("latest_seq")
        for consumer in sockets:
            consumer.deliver_read_state(
                frames, unread_count=unread, latest_seq=None if latest is None else int(latest)
            )

    def _dispatch_presence(self, event: PresenceEvent) -> None:
        user_id = int(event["user_id"])
        for project_id in event["project_ids"]:
            watchers = self.watchers.get(project_id)
            if not watchers:
                continue
            frame = protocol.encode(
                "presence_changed",
                {
                    "project_id": project_id,
                    "user_id": user_id,
                    "user": event.get("user"),
                    **event["state"],
                },
            )
            for consumer in watchers:
                consumer.deliver_frames([frame])

    def _dispatch_attention(self, event: AttentionEvent) -> None:
        user_id, attention = int(event["user_id"]), event["attention"]
        sockets = self.sockets_by_user.get(user_id)
        if not sockets:
            return
        frame = protocol.encode("attention_changed", attention)
        for consumer in sockets:
            consumer.deliver_frames([frame])
        self._chore(self._announce_dnd(user_id, attention))

    async def _announce_dnd(self, user_id: int, attention: dict[str, Any]) -> None:
        """Presence follows do-not-disturb; told once, by whichever process changed it."""
        try:
            if await self._follow_dnd(user_id, attention):
                await self.publish_presence(user_id)
        except Exception as error:
            if not self.redis_lost(error):
                raise

    async def _follow_dnd(self, user_id: int, attention: dict[str, Any]) -> bool:
        """Set the user's presence status from their do-not-disturb, and have it follow
        its end; True when the status changed."""
        now = timezone.now()
        timer = self._dnd_timers.pop(user_id, None)
        if timer is not None:
            timer.cancel()
        ends_at = attention_rules.dnd_ends_at(attention)
        if ends_at is not None and ends_at > now and self.loop is not None:
            self._dnd_timers[user_id] = self.loop.call_later(
                (ends_at - now).total_seconds(),
                lambda: self._chore(self._announce_dnd(user_id, attention)),
            )
        return await self.presence.apply_dnd(user_id, attention_rules.dnd_active(attention, now))

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                logger.exception("a presence update failed")

        # A fresh context, as in _spawn (a do-not-disturb timer copies a socket's).
        task = asyncio.get_running_loop().create_task(guarded(), context=contextvars.Context())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # -- background jobs ----------------------------------------------------

    async def _watch_database(self, after_id: int) -> None:
        """Embedded mode: notice notifications and session ends written by another
        process on the same database (``tray-notifier-server notify``, ``manage
        shell``, another server), which cannot ring this hub directly: at once when
        its "look" datagram arrives (``look``), else every ``DB_WATCH_INTERVAL``."""
        interval = settings.TRAY["DB_WATCH_INTERVAL"]
        look = database_sync_to_async(_look)
        sessions_since = timezone.now() - timedelta(seconds=10)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._look_now.wait()
            # Cleared before the look: a ring during it calls for another look after.
            self._look_now.clear()
            try:
                after_id, events, sessions_since, ended = await look(
                    after_id, list(self.sockets_by_user), self._recently_rung, sessions_since
                )
            except Exception:
                logger.exception("database watch failed; retrying")
                continue
            for event in events:
                if event["message_id"] not in self._recently_rung:
                    self.dispatch(event)
            for ended_event in ended:
                self.dispatch(ended_event)

    async def _refresh_presence(self, *, reseed: bool = False) -> None:
        sockets = [
            (consumer.user_id, consumer.socket_id)
            for group in self.sockets_by_user.values()
            for consumer in group
        ]
        try:
            # Before the sockets are re-asserted, so that watchers are told their status.
            await self._seed_presence(force=reseed)
            missing = await self.presence.refresh(sockets)
            if missing:
                await self._reassert_presence(missing)
            for user_id in await self.presence.reap():
                await self.publish_presence(user_id)
        except Exception as error:
            if not self.redis_lost(error):
                raise

    async def _seed_presence(self, *, force: bool = False) -> None:
        """Seed presence from the database (chosen statuses, last seen) when it holds
        nothing kept (``needs_seed``: this process's memory at start, Redis after an
        empty restart), or when ``force``d. Redis away: skipped (the refresh after it is
        back seeds it)."""
        try:
            if not (force or await self.presence.needs_seed()):
                return
            kept = await database_sync_to_async(presence_selectors.presence_kept)()
            await self.presence.seed(kept)
        except Exception as error:
            if not self.redis_lost(error):
                raise

    async def _flush_seen(self) -> None:
        """Write who went offline lately (``presence.seen_log``) in one transaction; put
        back if the database is away, for the next flush."""
        seen = self.presence.seen_log.take()
        if not seen:
            return
        try:
            await database_sync_to_async(presence_services.presence_seen_record)(seen=seen)
        except Exception as error:
            self.presence.seen_log.put_back(seen)
            # The database away is logged by db_faults' own once-per-outage lines.
            if db_faults.classify(error) is None:
                raise

    async def _resync_watchers(self, delay: float) -> None:
        """Presence events were missed too while unsubscribed. After one refresh period
        (every live process has re-asserted its sockets by then), the watchers here get
        every member's state again, as ``presence_changed`` frames."""
        await asyncio.sleep(delay)
        members_of = database_sync_to_async(selectors.project_members)
        try:
            for project_id in list(self.watchers):
                members = await members_of(project_id=project_id)
                states = await self.presence.states([member["id"] for member in members])
                frames = [
                    protocol.encode(
                        "presence_changed",
                        {
                            "project_id": project_id,
                            "user_id": member["id"],
                            "user": member,
                            **states[member["id"]].as_payload(),
                        },
                    )
                    for member in members
                ]
                for consumer in list(self.watchers.get(project_id, ())):
                    consumer.deliver_frames(frames)
        except Exception as error:
            if not self.redis_lost(error):
                raise

    async def _recheck_sessions(self, lost_at: float) -> None:
        """After doorbells may have been missed: the sessions ended since Redis was lost
        (or in the last minute, when redis-py reconnected by itself) end here too."""
        now = time.time()
        since = now - 60 if not lost_at else min(lost_at, now) - 10
        watch = database_sync_to_async(_watch_ended_sessions)
        _, ended = await watch(datetime.fromtimestamp(since, tz=UTC))
        for event in ended:
            self.dispatch(event)

    async def _reassert_presence(self, missing: list[Socket]) -> None:
        """Sockets open here that presence no longer holds (Redis restarted empty, or a
        stalled process had them reaped): put them back, with their users'
        do-not-disturb, and tell the watchers of each user whose state changed."""
        open_here = {
            (consumer.user_id, consumer.socket_id): consumer
            for group in self.sockets_by_user.values()
            for consumer in group
        }
        by_user: dict[int, list[Socket]] = {}
        for socket in missing:
            if socket in open_here:
                by_user.setdefault(socket[0], []).append(socket)
        if not by_user:
            return
        attentions = await database_sync_to_async(_attentions)(sorted(by_user))
        now = timezone.now()
        for user_id, sockets in by_user.items():
            dnd = attention_rules.dnd_active(attentions[user_id], now)
            changed = await self.presence.apply_dnd(user_id, dnd)
            for socket in sockets:
                changed = await self.presence.socket_opened(socket) or changed
                if open_here[socket] not in self.sockets_by_user.get(user_id, ()):
                    # Closed meanwhile: its own removal may have come before the line above.
                    changed = await self.presence.socket_closed(socket) or changed
            if changed:
                await self.publish_presence(user_id)
        # Redis lost their info too (staff's "who is connected now").
        await self.connections.reasserted(
            [
                open_here[socket]
                for sockets in by_user.values()
                for socket in sockets
                if open_here[socket] in self.sockets_by_user.get(socket[0], ())
            ]
        )

    async def _sweep_tokens(self) -> None:
        """Close sockets whose access token expired without an in-band ``authenticate``."""
        now = time.time()
        for group in list(self.sockets_by_user.values()):
            for consumer in list(group):
                if consumer.token_expires_at <= now:
                    consumer.close_with(protocol.CLOSE_TOKEN_INVALID)
