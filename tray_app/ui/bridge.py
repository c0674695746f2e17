"""The one seam where engine events become Qt signals (shared/DESIGN.md).

The engine runs on the qasync loop, in the GUI thread, and calls its listeners
synchronously; this object re-emits each event as a typed Qt signal so that widgets
and the app's wiring never see engine types other than plain data.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from tray_app.engine import (
    AttentionChanged,
    AttentionChangeRefused,
    CatchUpFinished,
    ConnectionStateChanged,
    Engine,
    EngineEvent,
    HistoryReset,
    NotificationAdded,
    NotificationBatchAdded,
    NotificationsRemoved,
    PresenceSnapshotReceived,
    PresenceUpdated,
    ReadStateChanged,
    UnreadCountChanged,
)


class EngineBridge(QObject):
    """Re-emits one engine's events as Qt signals.

    Signals:
        notification_added(object, bool): a StoredNotification new to this device, and
            whether it arrived live (False: catch-up).
        notifications_added(object, bool): the same rows once more, a tuple per batch the
            engine stored, right after their ``notification_added``: connect to one of the
            two (a catch-up arrives in batches of ``engine.REPLAY_FLUSH_ROWS``).
        read_state_changed(list, bool): these ids became read (True) or unread.
        notifications_removed(list): these ids were deleted.
        unread_count_changed(int): the count the badge shows.
        catch_up_finished(int): a replay ended with this many new rows.
        history_reset(): the local history was dropped and refills.
        presence_snapshot_received(object): a protocol.PresenceSnapshot.
        presence_changed(object): a protocol.PresenceChanged or PresenceUnsubscribed.
        connection_state_changed(object): a live.StateChange.
        attention_changed(object): the attention settings in force (an
            attention.Attention), from any device or changed here.
        attention_change_refused(str): the server refused a change made here; why.
    """

    notification_added = Signal(object, bool)
    # object, not list: a Qt list type would copy the rows into a QVariantList.
    notifications_added = Signal(object, bool)
    read_state_changed = Signal(list, bool)
    notifications_removed = Signal(list)
    unread_count_changed = Signal(int)
    catch_up_finished = Signal(int)
    history_reset = Signal()
    presence_snapshot_received = Signal(object)
    presence_changed = Signal(object)
    connection_state_changed = Signal(object)
    attention_changed = Signal(object)
    attention_change_refused = Signal(str)

    def __init__(self, engine: Engine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._unsubscribe = engine.subscribe(self._relay)

    def detach(self) -> None:
        """Stop relaying (the engine is being replaced, e.g. after logout)."""
        self._unsubscribe()

    def _relay(self, event: EngineEvent) -> None:
        match event:
            case NotificationAdded(notification=row, live=live):
                self.notification_added.emit(row, live)
            case NotificationBatchAdded(notifications=rows, live=live):
                self.notifications_added.emit(rows, live)
            case ReadStateChanged(ids=ids, is_read=is_read):
                self.read_state_changed.emit(list(ids), is_read)
            case NotificationsRemoved(ids=ids):
                self.notifications_removed.emit(list(ids))
            case UnreadCountChanged(unread_count=count):
                self.unread_count_changed.emit(count)
            case CatchUpFinished(added=added):
                self.catch_up_finished.emit(added)
            case HistoryReset():
                self.history_reset.emit()
            case PresenceSnapshotReceived(snapshot=snapshot):
                self.presence_snapshot_received.emit(snapshot)
            case PresenceUpdated(change=change):
                self.presence_changed.emit(change)
            case ConnectionStateChanged(change=change):
                self.connection_state_changed.emit(change)
            case AttentionChanged(attention=attention):
                self.attention_changed.emit(attention)
            case AttentionChangeRefused(message=message):
                self.attention_change_refused.emit(message)
