"""The sync engine: keeps the local store in step with the server, and tells the UI.

It wires the socket session (:mod:`tray_app.net.live`), the REST client
(:mod:`tray_app.net.api`) and the store (:mod:`tray_app.store`), and has no Qt in
it: the tray UI listens through ``ui/bridge.py``, the headless mode prints.

The rules it keeps (shared/DESIGN.md, invariants 3 and 4):

- Rows and the cursor are written in one transaction; a seq at or below the cursor
  is a duplicate. A gap seen on live traffic asks the server for a replay.
- Replayed rows are buffered and stored in batches; the ``caught_up`` frame's
  ``through_seq`` lets the cursor pass seqs the user deleted on another device.
- A user's action (mark read, delete, ...) is applied locally at once and queued in
  the outbox in the same transaction; the outbox is sent in order whenever the
  server is reachable, and each action is idempotent there.
- The unread count the UI shows is the server's whenever the server has spoken
  since the last local change; otherwise the local store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from tray_app.attention import DEFAULT as DEFAULT_ATTENTION
from tray_app.attention import (
    Attention,
    AttentionFormatError,
    dnd_change,
    parse_attention,
)
from tray_app.net import (
    ApiClient,
    Backoff,
    ConnectionState,
    Connector,
    InboxChange,
    LiveSession,
    LoginRequired,
    NetError,
    RequestRejected,
    StateChange,
    TokenSource,
    Transport,
    protocol,
    websocket_connector,
)
from tray_app.net.live import ChangeKind, Connection
from tray_app.net.transport_choice import PROBE_INTERVAL, TransportChoice
from tray_app.store import (
    AttentionStore,
    Filters,
    Inbox,
    OpenedDatabase,
    Outbox,
    OutboxAction,
    StoredNotification,
    account_database_path,
    open_database,
)

logger = logging.getLogger(__name__)

# A replay is stored this many rows per transaction. Storing a batch holds the event loop
# (the UI's too) for the whole transaction: 100 rows take ~3-5 ms of CPU here, and a 10k
# catch-up costs no more than in batches of 200 (measured by bench/client_store.py, B9).
REPLAY_FLUSH_ROWS = 100
REST_PAGE = 200
# The outbox's kinds, each the name of its socket request.
_CHANGE_KINDS: dict[str, ChangeKind] = {
    "mark_read": "mark_read",
    "mark_unread": "mark_unread",
    "delete": "delete",
    "mark_all_read": "mark_all_read",
}


# --- events for the UI ---------------------------------------------------------------


class NotificationAdded(msgspec.Struct, frozen=True):
    """A notification new to this device. ``live`` is false for catch-up (replay, REST
    paging): a UI toasts live ones and sums up the rest."""

    notification: StoredNotification
    live: bool


class NotificationBatchAdded(msgspec.Struct, frozen=True):
    """The rows one store added (a live notification, a replay batch, a REST page), as one
    event, right after their :class:`NotificationAdded` events.

    A listener takes one kind or the other: this one suits work done once per batch (a UI
    refreshing its lists), where a catch-up of thousands of rows would otherwise cost
    thousands of calls.
    """

    notifications: tuple[StoredNotification, ...]
    live: bool


class ReadStateChanged(msgspec.Struct, frozen=True):
    ids: tuple[int, ...]
    is_read: bool


class NotificationsRemoved(msgspec.Struct, frozen=True):
    ids: tuple[int, ...]


class UnreadCountChanged(msgspec.Struct, frozen=True):
    unread_count: int


class CatchUpFinished(msgspec.Struct, frozen=True):
    """A replay ended; ``added`` rows were new (the "N new while you were away" toast)."""

    added: int


class HistoryReset(msgspec.Struct, frozen=True):
    """The local history was dropped (the server's data was reset); it refills."""


class PresenceSnapshotReceived(msgspec.Struct, frozen=True):
    snapshot: protocol.PresenceSnapshot


class PresenceUpdated(msgspec.Struct, frozen=True):
    change: protocol.PresenceChanged | protocol.PresenceUnsubscribed


class ConnectionStateChanged(msgspec.Struct, frozen=True):
    change: StateChange


class AttentionChanged(msgspec.Struct, frozen=True):
    """The attention settings in force changed: from the server (any device), or a change
    made here that the server has not confirmed yet."""

    attention: Attention


class AttentionChangeRefused(msgspec.Struct, frozen=True):
    """The server refused a change made here for good (``message`` says why, in words
    a user can act on); the settings went back to the server's."""

    message: str


EngineEvent = (
    NotificationAdded
    | NotificationBatchAdded
    | ReadStateChanged
    | NotificationsRemoved
    | UnreadCountChanged
    | CatchUpFinished
    | HistoryReset
    | PresenceSnapshotReceived
    | PresenceUpdated
    | ConnectionStateChanged
    | AttentionChanged
    | AttentionChangeRefused
)
Listener = Callable[[EngineEvent], None]


class Engine:
    """Session + store + outbox for one account.

    Args:
        api: the REST client, logged in or restored with a refresh token.
        inbox: the account's notification store.
        outbox: the account's queue of actions not yet confirmed by the server.
        tokens: where the socket gets its address and tokens; ``api`` unless a test
            scripts the transport.
        connect: the socket transport (a scripted one in tests).
        backoff: the reconnect policy.
        stream_connect: the HTTP stream's transport, the fallback where WebSockets are
            blocked (none: the socket only).
        choice: which transport to use when (automatic, default timings, when None).
    """

    def __init__(
        self,
        *,
        api: ApiClient,
        inbox: Inbox,
        outbox: Outbox,
        tokens: TokenSource | None = None,
        connect: Connector | None = None,
        backoff: Backoff | None = None,
        attention: AttentionStore | None = None,
        stream_connect: Connector | None = None,
        choice: TransportChoice | None = None,
    ) -> None:
        self.api = api
        self.inbox = inbox
        self.outbox = outbox
        self.attention_store = attention or AttentionStore(inbox.connection)
        self._attention_lock = asyncio.Lock()
        self._attention_task: asyncio.Task[None] | None = None
        self.session = LiveSession(
            tokens or api,
            self,
            connect=connect,
            backoff=backoff,
            stream_connect=stream_connect,
            choice=choice,
            post_status=api.set_presence_status,
        )
        self._listeners: list[Listener] = []
        self._replay_buffer: list[protocol.Notification] = []
        self._replay_added = 0
        self._server_unread: int | None = None
        # hello's latest_seq: rows above it committed after hello counted the unread ones.
        self._counted_through = 0
        self._drain_lock = asyncio.Lock()
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_again = False  # an action was queued while a drain was running
        self._stopped = False

    # --- listening ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("an engine listener failed on %s", type(event).__name__)

    # --- reading (the UI's history, menu and badge read through these) -----------------

    def unread_count(self) -> int:
        return self._server_unread if self._server_unread is not None else self.inbox.unread_count()

    def recent(self, limit: int = 10, *, unread_only: bool = False) -> list[StoredNotification]:
        return self.inbox.recent(limit, unread_only=unread_only)

    def search(
        self, filters: Filters | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[StoredNotification]:
        return self.inbox.search(filters or Filters(), limit=limit, offset=offset)

    def count(self, filters: Filters | None = None) -> int:
        return self.inbox.count(filters or Filters())

    def projects(self) -> list[tuple[int, str]]:
        """``(project_id, title)`` of every project the local history has seen."""
        return self.inbox.projects()

    def get(self, notification_id: int) -> StoredNotification | None:
        return self.inbox.get(notification_id)

    @property
    def state(self) -> StateChange:
        return self.session.state

    @property
    def attention(self) -> Attention:
        """The attention settings in force: the server's last word with any change made
        here that it has not confirmed yet (the defaults before it ever spoke)."""
        known = self.attention_store.known() or {}
        pending = self.attention_store.pending() or {}
        try:
            return parse_attention({**known, **pending})
        except AttentionFormatError:
            logger.warning("ignoring unreadable local attention settings")
            return parse_attention(known) if known else DEFAULT_ATTENTION

    # --- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, catch up and stay live until :meth:`stop` or until login is required.

        The local history is readable before this is called (offline review)."""
        try:
            await self.session.run()
        finally:
            await self._cancel_drain()
            self._stopped = False  # a stop before this started ended it; it may run again

    async def stop(self) -> None:
        self._stopped = True
        await self.session.stop()
        await self._cancel_drain()

    def wake(self) -> None:
        """The network came back or the machine woke up: reconnect now."""
        self.session.wake()

    def set_network_available(self, available: bool) -> None:
        """What the operating system says of the network: while it says "down", the
        session is offline and retries only at its slowest pace."""
        self.session.set_network_available(available)

    # --- user actions: local at once, to the server through the outbox ----------------

    def mark_read(self, ids: Sequence[int]) -> None:
        self._act(self.outbox.mark_read(ids), ReadStateChanged(tuple(ids), True))

    def mark_unread(self, ids: Sequence[int]) -> None:
        self._act(self.outbox.mark_unread(ids), ReadStateChanged(tuple(ids), False))

    def mark_all_read(self, up_to_seq: int | None = None) -> None:
        """Mark read every row up to ``up_to_seq`` (what the user saw when they clicked)."""
        bound = up_to_seq if up_to_seq is not None else self.inbox.cursor()
        ids = tuple(self.inbox.unread_ids(bound))  # exactly what the outbox will change
        self._act(self.outbox.mark_all_read(bound), ReadStateChanged(ids, True))

    def delete(self, ids: Sequence[int]) -> None:
        self._act(self.outbox.delete(ids), NotificationsRemoved(tuple(ids)))

    def _act(self, action: OutboxAction, event: EngineEvent) -> None:
        del action  # queued; the drain sends it
        self._server_unread = None  # the server has not seen this change yet
        self._emit(event)
        self._emit(UnreadCountChanged(self.unread_count()))
        if self.session.connected:
            self._schedule_drain()

    async def set_status(self, status: str) -> None:
        """The user's status for teammates, as the presence window offers it: ``dnd`` is
        do-not-disturb on every device (the attention settings); ``online`` and ``away``
        end it and are what teammates see once it is off."""
        if status == "dnd":
            self.change_attention(dnd_change(None))
            return
        if self.attention.dnd:
            self.change_attention(dnd_change(None, on=False))
        await self.session.set_status(status)

    def apply_retention(self, *, max_age: timedelta, max_rows: int) -> int:
        """Drop stored notifications older than ``max_age`` or beyond the newest
        ``max_rows`` now; how many went. Raises StoreError."""
        return self.inbox.prune(max_age=max_age, max_rows=max_rows)

    def clear_local_history(self) -> None:
        """Drop this device's copy of the history and download again what the server
        has, now rather than at the next reconnect. Raises StoreError."""
        self.inbox.reset()
        self.session.request_resume()

    def change_attention(self, change: Mapping[str, Any]) -> None:
        """Change attention settings: in force here at once, kept until the server
        confirms it (sent now if connected, else when it is next reachable)."""
        self.attention_store.add_change(change)
        self._emit(AttentionChanged(self.attention))
        if self.session.connected:
            self._schedule_attention_send()

    async def watch_presence(self, project_id: int) -> None:
        await self.session.subscribe_presence(project_id)

    # --- SessionHandler ----------------------------------------------------------------

    def cursor(self) -> int:
        return self.inbox.cursor()

    def handle_state(self, change: StateChange) -> None:
        if change.state is not ConnectionState.CONNECTED:
            self._replay_buffer.clear()
            self._replay_added = 0
        self._emit(ConnectionStateChanged(change))

    async def handle_frame(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
        match frame:
            case protocol.Hello():
                self._replay_buffer.clear()
                self._replay_added = 0
                self._counted_through = frame.latest_seq
                self._set_server_unread(frame.unread_count)
                self._schedule_drain()
                if frame.attention is not None:
                    # The server's current word, whatever version this device kept (its
                    # versions start over on a new server); told even when nothing
                    # changed: listeners learn the server spoke.
                    self._heard_attention(frame.attention, always=True, current=True)
                self._schedule_attention_send()
                if frame.latest_seq == self.inbox.cursor():
                    self._emit(CatchUpFinished(0))  # nothing missed: in step at once
            case protocol.NotificationCreated():
                if replaying:
                    self._replay_buffer.append(frame.notification)
                    if len(self._replay_buffer) >= REPLAY_FLUSH_ROWS:
                        self._flush_replay(through_seq=None)
                else:
                    self._store([frame.notification], live=True, through_seq=None)
            case protocol.CaughtUp():
                # through_seq may pass seqs that never came (deleted on another device) only
                # when this replay covered everything above our cursor: a run the server
                # started on its own can begin above it while our resume is still queued.
                # The store checks that in the same transaction; a server too old to say
                # where its replay began gets no say over the cursor.
                known = frame.after_seq is not None
                self._flush_replay(
                    through_seq=frame.through_seq if known else None,
                    replay_after_seq=frame.after_seq,
                )
                if not replaying or self.session.replaying:
                    return  # not the end of our replay: more is coming
                self._emit(CatchUpFinished(self._replay_added))
                self._replay_added = 0
            case protocol.ResyncRequired():
                self._flush_replay(through_seq=None)
                added = await self._page_over_rest()
                self._emit(CatchUpFinished(self._replay_added + added))
                self._replay_added = 0
            case protocol.NotificationUpdated():
                changed = self.inbox.set_read([frame.id], frame.is_read)
                if changed:
                    self._emit(ReadStateChanged(tuple(changed), frame.is_read))
            case protocol.NotificationDeleted():
                removed = self.inbox.remove([frame.id])
                if removed:
                    self._emit(NotificationsRemoved(tuple(removed)))
            case protocol.AllRead():
                changed = self.inbox.mark_all_read(frame.up_to_seq)
                if changed:
                    self._emit(ReadStateChanged(tuple(changed), True))
            case protocol.UnreadCount():
                self._set_server_unread(frame.unread_count)
            case protocol.ServerErrorFrame(code="cursor_ahead"):
                # The server's data was reset: our history belongs to a database that is gone.
                logger.warning("the server's inbox is behind our cursor: dropping local history")
                self._replay_buffer.clear()
                self.inbox.reset()
                # A queued mark_all_read(up_to_seq) would mean other rows on the new server.
                self.outbox.clear()
                self._emit(HistoryReset())
                self.session.request_resume()
            case protocol.ServerErrorFrame():
                logger.info("the server answered %s: %s", frame.code, frame.message)
            case protocol.PresenceSnapshot():
                self._emit(PresenceSnapshotReceived(frame))
            case protocol.PresenceChanged() | protocol.PresenceUnsubscribed():
                self._emit(PresenceUpdated(frame))
            case protocol.AttentionChanged():
                self._heard_attention(frame.attention)
            case _:
                pass

    # --- storing -----------------------------------------------------------------------

    def _store(
        self,
        notifications: Sequence[protocol.Notification],
        *,
        live: bool,
        through_seq: int | None,
        replay_after_seq: int | None = None,
    ) -> int:
        result = self.inbox.ingest(
            notifications, through_seq=through_seq, replay_after_seq=replay_after_seq
        )
        for row in result.added:
            self._emit(NotificationAdded(row, live=live))
        if result.added:
            self._emit(NotificationBatchAdded(tuple(result.added), live=live))
        # The server sends no unread_count with a new notification: count it here, once,
        # unless hello's figure already included it.
        fresh = [r for r in result.added if not r.is_read and r.seq > self._counted_through]
        if fresh and self._server_unread is not None:
            self._server_unread += len(fresh)
            self._emit(UnreadCountChanged(self._server_unread))
        elif fresh:
            self._emit(UnreadCountChanged(self.unread_count()))
        if result.gap and live:
            # Frames for one user arrive in seq order; a jump means we missed one.
            logger.info("gap above seq %s: asking for a replay", result.cursor)
            self.session.request_resume()
        return len(result.added)

    def _flush_replay(
        self, *, through_seq: int | None, replay_after_seq: int | None = None
    ) -> None:
        rows, self._replay_buffer = self._replay_buffer, []
        if rows or through_seq is not None:
            # A replay after a seamless switch (the stream reopened, the socket retried)
            # covers a moment the user was connected: live rows, no "while you were away".
            live = self.session.seamless
            added = self._store(
                rows, live=live, through_seq=through_seq, replay_after_seq=replay_after_seq
            )
            if not live:
                self._replay_added += added

    async def _page_over_rest(self) -> int:
        """A backlog too large for the socket: page ``GET /api/inbox/?after_seq=`` to the end."""
        added = 0
        after: int | None = self.inbox.cursor()
        while after is not None:
            page = await self.api.inbox_page(after_seq=after, limit=REST_PAGE)
            after = page.next_after_seq
            # The walk from our cursor is contiguous: at its end, nothing up to latest_seq is
            # left but deleted rows.
            through = page.latest_seq if after is None else None
            added += self._store(page.results, live=False, through_seq=through)
            self._set_server_unread(page.unread_count)
        return added

    def _set_server_unread(self, count: int) -> None:
        if self.outbox.pending():
            return  # the server has not applied our queued actions yet
        if count != self._server_unread:
            self._server_unread = count
            self._emit(UnreadCountChanged(count))

    # --- attention -------------------------------------------------------------------------

    def _heard_attention(
        self,
        heard: Attention,
        *,
        always: bool = False,
        before: Attention | None = None,
        current: bool = False,
    ) -> None:
        """The server's settings (hello, attention_changed, an answer): kept if newer,
        or whatever their version with ``current`` (hello's). Listeners are told when
        what is in force differs from ``before`` (now, by default)."""
        if before is None:
            before = self.attention
        if current:
            self.attention_store.replace(heard.payload())
        else:
            self.attention_store.remember(heard.payload())
        after = self.attention
        if after != before or always:
            self._emit(AttentionChanged(after))

    def heard_attention(self) -> bool:
        """Whether the server has ever told this device the attention settings."""
        return self.attention_store.known() is not None

    def _schedule_attention_send(self) -> None:
        if self._stopped or self.attention_store.pending() is None:
            return
        if self._attention_task is not None and not self._attention_task.done():
            return  # the running send looks for more when it is done
        self._attention_task = asyncio.get_running_loop().create_task(self._send_attention())

    async def _send_attention(self) -> None:
        async with self._attention_lock:
            while (pending := self.attention_store.pending()) is not None:
                try:
                    answer = await self.api.change_attention(pending)
                except LoginRequired:
                    return  # the session reports it; the change waits for the next login
                except RequestRejected as refused:
                    if refused.status in (401, 403, 429) or refused.status >= 500:
                        logger.info("attention change not taken now (%s)", refused.code)
                        return  # tried again on the next connection
                    logger.warning("the server refused an attention change: %s", refused.code)
                    self.attention_store.drop_pending()
                    self._emit(AttentionChangeRefused(refused.user_message))
                    self._emit(AttentionChanged(self.attention))
                    return
                except NetError as error:
                    logger.info("could not send an attention change (%s); will retry", error.code)
                    return
                # "Before" is taken ahead of change_sent: a newer push from another
                # device that came meanwhile must still reach the listeners.
                before = self.attention
                self.attention_store.change_sent(pending)
                self._heard_attention(answer, before=before)

    # --- the outbox ----------------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if self._stopped:
            return
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_again = True
            return
        self._drain_again = False
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await self._drain_once()
            if not self._drain_again or self._stopped:
                return
            self._drain_again = False

    async def send_outbox(self) -> None:
        """Send what the outbox holds now, if the server is reachable (what cannot be
        sent stays queued for the next connection)."""
        await self._drain_once()

    async def _drain_once(self) -> None:
        async with self._drain_lock:
            for action in self.outbox.pending():
                try:
                    change = await self._send(action)
                except LoginRequired:
                    return  # the session reports it; the queue waits for the next login
                except RequestRejected as refused:
                    if refused.status in (401, 403):
                        return
                    logger.warning(
                        "the server refused a queued %s (%s); dropping it",
                        action.kind,
                        refused.code,
                    )
                    self.outbox.drop(action.id)
                    continue
                except NetError as error:
                    attempts = self.outbox.record_failure(action.id)
                    logger.info(
                        "could not send a queued %s (%s, attempt %d); will retry",
                        action.kind,
                        error.code,
                        attempts,
                    )
                    return
                self.outbox.complete(action.id)
                if not self.outbox.pending():
                    self._server_unread = None
                    self._set_server_unread(change.unread_count)

    async def _send(self, action: OutboxAction) -> InboxChange:
        """On the open socket when there is one (a session that only reads and marks
        never loads the REST client's stack, issue 20); over REST otherwise, or when the
        socket gave no answer (the change is idempotent: sending it twice is harmless)."""
        kind = _CHANGE_KINDS.get(action.kind)
        if kind is None:
            raise ValueError(f"unknown outbox action {action.kind!r}")
        payload: dict[str, Any] = (
            {"ids": list(action.ids)}
            if kind != "mark_all_read"
            else ({} if action.up_to_seq is None else {"up_to_seq": action.up_to_seq})
        )
        try:
            return await self.session.send_change(kind, payload)
        except (RequestRejected, LoginRequired):
            raise
        except NetError as error:
            logger.debug("%s over REST (%s)", kind, error.code)
        if kind == "mark_read":
            return await self.api.mark_read(action.ids)
        if kind == "mark_unread":
            return await self.api.mark_unread(action.ids)
        if kind == "delete":
            return await self.api.delete(action.ids)
        return await self.api.mark_all_read(action.up_to_seq)

    async def _cancel_drain(self) -> None:
        for task in (self._drain_task, self._attention_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class OpenedAccount(msgspec.Struct, frozen=True):
    """An account's engine on its local store; close ``database`` after the engine stops."""

    engine: Engine
    database: OpenedDatabase


def open_account(
    *,
    api: ApiClient,
    data_dir: Path,
    server_url: str,
    username: str,
    retention: timedelta,
    retention_rows: int,
    transport: Transport | None = None,
) -> OpenedAccount:
    """Open (or rebuild) the account's SQLite store, apply retention, build its engine.

    ``transport`` (trust, proxy, and which live transport) is the socket's and the HTTP
    stream's; give the REST client ``api`` the same.
    A damaged file was moved aside by the store (``database.rebuilt``); the caller says so
    in its own words. The engine is not running yet: the history is readable at once."""
    database = open_database(account_database_path(data_dir, server_url, username))
    inbox = Inbox(database.connection)
    pruned = inbox.prune(max_age=retention, max_rows=retention_rows)
    if pruned:
        logger.info("retention removed %d old notifications", pruned)
    engine = Engine(
        api=api,
        inbox=inbox,
        outbox=Outbox(database.connection, inbox),
        connect=websocket_connector(transport),
        stream_connect=lazy_stream_connector(transport),
        choice=transport_choice(transport),
    )
    return OpenedAccount(engine=engine, database=database)


def lazy_stream_connector(transport: Transport | None) -> Connector:
    """:func:`tray_app.net.stream.stream_connector`, its modules (the stream and its event
    parser, ~0.2 MiB) imported at the first connection over the HTTP stream: most
    sessions never fall back from the socket (issue 20)."""
    connector: Connector | None = None

    def connect(
        url: str, headers: dict[str, str]
    ) -> contextlib.AbstractAsyncContextManager[Connection]:
        nonlocal connector
        if connector is None:
            from tray_app.net.stream import stream_connector

            connector = stream_connector(transport)
        return connector(url, headers)

    return connect


def transport_choice(transport: Transport | None) -> TransportChoice:
    """The live connection's policy from the settings (IT's forced transport, the retry
    interval of the socket while on the stream)."""
    if transport is None:
        return TransportChoice.create()
    interval = transport.websocket_retry or PROBE_INTERVAL
    return TransportChoice.create(transport.live, probe_interval=interval)
