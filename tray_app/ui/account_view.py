"""One logged-in account on screen: the engine's events (through the bridge) to the tray's
state, the toasts and the windows, and the user's actions back to the engine.

``TrayApp`` makes one when an account opens and closes it with the account, so nothing
here asks whether anyone is logged in; the app keeps what outlives an account (the
tray icon, the login, the preferences, the settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices

from tray_app.account import AccountSession, open_target
from tray_app.attention import Attention
from tray_app.engine import Engine
from tray_app.memory import release_freed_memory
from tray_app.net import (
    ConnectionState,
    NetError,
    PresenceChanged,
    PresenceSnapshot,
    PresenceUnsubscribed,
    StateChange,
)
from tray_app.store import StoredNotification
from tray_app.ui.bridge import EngineBridge
from tray_app.ui.toasts import ToastPresenter
from tray_app.ui.tray import TrayState

if TYPE_CHECKING:
    # Imported where first opened: an app that sits in the tray never opens them and
    # should not carry their code (B8 idle RSS).
    from tray_app.ui.history import HistoryWindow
    from tray_app.ui.presence import PresenceWindow

logger = logging.getLogger(__name__)

# How many unread notifications the tray's menu lists.
MENU_ROWS = 10
# How long closing an account waits for a last delete to reach the server.
CLOSING_SEND_SECONDS = 5.0


class AccountView(QObject):
    """The account's engine wired to what the user sees and does.

    Signals:
        login_required(object): the server no longer takes this login (the message to
            show, or None); the app closes the account and asks for a login.
        tray_changed(bool): the tray's state changed; True when the history's rows did.
        attention_changed(object): the attention settings in force (an
            attention.Attention, IT's locks on top) changed.
        problem_reported(str): something the user should read (a refused change).
    """

    login_required = Signal(object)
    tray_changed = Signal(bool)
    attention_changed = Signal(object)
    problem_reported = Signal(str)

    def __init__(
        self,
        session: AccountSession,
        *,
        toasts: ToastPresenter,
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        quiet_hours_lock: tuple[time, time] | Literal[False] | None = False,
        seed: Mapping[str, Any] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """
        Args:
            session: the logged-in account.
            toasts: where new notifications are offered for toasts.
            spawn: runs a coroutine in the background.
            quiet_hours_lock: IT's locked quiet hours (``ManagedConfig.quiet_hours_lock``).
            seed: attention settings to hand the server once, if it has never had any
                (this computer's from before they moved there, IT's suggestions).
            parent: the owning QObject.
        """
        super().__init__(parent)
        self._quiet_hours_lock = quiet_hours_lock
        self._seed = dict(seed or {})
        self.session = session
        self.state = StateChange(ConnectionState.STOPPED)
        self.projects: tuple[tuple[int, str], ...] = ()
        # The list is asked for once connected (on the socket: no REST call), until it came.
        self._projects_loaded = False
        self._projects_loading = False
        # What teammates see (the presence window's choice, or do-not-disturb).
        self.own_status = "online"
        self.history: HistoryWindow | None = None
        self.presence: PresenceWindow | None = None
        self._toasts = toasts
        self._spawn = spawn
        self.bridge = EngineBridge(session.engine, self)
        self._connect_bridge(self.bridge)
        if self.attention.dnd_active(datetime.now(UTC)):
            self.own_status = "dnd"  # as last heard: the tray shows it before connecting

    @property
    def engine(self) -> Engine:
        return self.session.engine

    @property
    def server_url(self) -> str:
        return self.session.server_url

    @property
    def username(self) -> str:
        return self.session.username

    async def close(self, *, logout: bool) -> None:
        """Stop hearing the engine, close the account (and its windows)."""
        if self.history is not None and self.history.commit_delete():
            # A delete the history still offered to undo went to the outbox: sent now,
            # before the session ends (kept there for the next login if it cannot be).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSING_SEND_SECONDS):
                    await self.engine.send_outbox()
        self.bridge.detach()
        await self.session.close(logout=logout)
        for window in (self.history, self.presence):
            if window is not None:
                window.close()
        self.history = self.presence = None

    async def load_projects(self) -> None:
        """Ask the server for the account's projects; a failure is tried again at the
        next connection."""
        self._projects_loading = True
        try:
            projects = await self.session.projects()
        except NetError as error:
            logger.info("could not load the project list yet (%s)", error.code)
            return
        finally:
            self._projects_loading = False
        self._projects_loaded = True
        self.projects = projects
        if self.presence is not None:
            self.presence.set_projects(list(projects))

    @property
    def attention(self) -> Attention:
        """The attention settings in force: every device's, with IT's locks on top."""
        return self.engine.attention.locked(quiet_hours=self._quiet_hours_lock)

    def tray_state(self, now: datetime) -> TrayState:
        """What the tray shows for this account at ``now``."""
        engine = self.engine
        return TrayState.of(
            connection=self.state,
            username=self.username,
            unread=engine.unread_count(),
            recent=engine.recent(MENU_ROWS, unread_only=True),
            silence=self.attention.silence(now),
            # "Turn off quiet hours" would end the user's own on their other devices
            # while IT's keep this computer quiet: not offered then.
            quiet_hours_locked=self._quiet_hours_lock is not False,
        )

    # --- engine -> widgets ---------------------------------------------------------------

    def _connect_bridge(self, bridge: EngineBridge) -> None:
        bridge.notifications_added.connect(self._notifications_added)
        bridge.read_state_changed.connect(self._read_state_changed)
        bridge.notifications_removed.connect(self._notifications_removed)
        bridge.unread_count_changed.connect(lambda _count: self.tray_changed.emit(False))
        bridge.catch_up_finished.connect(self._toasts.catch_up_finished)
        bridge.history_reset.connect(lambda: self.tray_changed.emit(True))
        bridge.connection_state_changed.connect(self._connection_state_changed)
        bridge.presence_snapshot_received.connect(self._presence_snapshot)
        bridge.presence_changed.connect(self._presence_changed)
        bridge.attention_changed.connect(lambda _attention: self._attention_changed())
        bridge.attention_change_refused.connect(self.problem_reported)

    def _notifications_added(self, rows: Sequence[StoredNotification], live: bool) -> None:
        # Toasts first: each one's Notify call goes out in its task's first step, which
        # then runs before the refresh (icon, menu, history) rather than after it (B8).
        self._toasts.offer(rows, live=live)
        self.tray_changed.emit(True)

    def _read_state_changed(self, ids: list[int], is_read: bool) -> None:
        self.tray_changed.emit(False)
        if is_read:
            self._toasts.withdraw(ids)
        if self.history is not None:
            self.history.apply_read(ids, is_read)

    def _notifications_removed(self, ids: list[int]) -> None:
        self.tray_changed.emit(False)
        if self.history is not None:
            self.history.apply_removed(ids)

    def _connection_state_changed(self, change: StateChange) -> None:
        if change.state is not self.state.state:
            # States and error codes only: support can follow a session without content.
            reason = f" ({change.error.code})" if change.error is not None else ""
            logger.info("connection %s%s", change.state.value, reason)
        self.state = change
        connected = change.state is ConnectionState.CONNECTED
        if connected and not (self._projects_loaded or self._projects_loading):
            self._spawn(self.load_projects())
        self.tray_changed.emit(False)
        if self.history is not None:
            self.history.set_offline(change.state is not ConnectionState.CONNECTED)
        if change.state is ConnectionState.LOGIN_REQUIRED:
            self.login_required.emit(change.error.user_message if change.error else None)

    def _presence_snapshot(self, snapshot: PresenceSnapshot) -> None:
        if self.presence is not None:
            from tray_app.ui.presence import member_from_protocol

            members = [member_from_protocol(member) for member in snapshot.members]
            self.presence.show_snapshot(snapshot.project_id, members)

    def _presence_changed(self, change: PresenceChanged | PresenceUnsubscribed) -> None:
        if self.presence is None:
            return
        from tray_app.ui.presence import last_seen_from_epoch

        if isinstance(change, PresenceUnsubscribed):
            self.presence.remove_project(change.project_id)
            return
        self.presence.apply_change(
            change.project_id,
            change.user_id,
            change.online,
            change.status,
            last_seen_from_epoch(change.last_seen),
        )

    def _attention_changed(self) -> None:
        attention = self.attention
        if self._seed and self.engine.heard_attention() and attention.version == 0:
            # The server never had settings for this user: hand it this computer's.
            seed, self._seed = self._seed, {}
            self.engine.change_attention(seed)
            return  # told again with the seed in force
        self._seed = {}
        dnd = attention.dnd_active(datetime.now(UTC))
        status = "dnd" if dnd else "online" if self.own_status == "dnd" else self.own_status
        if status != self.own_status:
            self.own_status = status
            if self.presence is not None:
                self.presence.set_own_status(status)
        self.attention_changed.emit(attention)
        self.tray_changed.emit(False)

    # --- widgets -> engine -----------------------------------------------------------------

    def mark_read(self, ids: list[int]) -> None:
        if ids:
            self.engine.mark_read(ids)

    def open_notification(self, notification_id: int) -> None:
        """Open its own web link, or its page in the web companion, and mark it read."""
        row = self.engine.get(notification_id)
        url = row.url if row is not None else ""
        QDesktopServices.openUrl(QUrl(open_target(self.server_url, url, notification_id)))
        self.mark_read([notification_id])

    def set_own_status(self, status: str) -> None:
        """The user's status for teammates, from the presence window or the tray's
        do-not-disturb: told to the server and shown in the presence window."""
        self.own_status = status
        if self.presence is not None:
            self.presence.set_own_status(status)
        self._spawn(self.engine.set_status(status))

    # --- windows -------------------------------------------------------------------------

    def show_history(self) -> None:
        if self.history is None:
            from tray_app.ui.history import HistoryWindow

            engine = self.engine
            history = HistoryWindow(engine)
            history.mark_read_requested.connect(engine.mark_read)
            history.mark_unread_requested.connect(engine.mark_unread)
            history.delete_requested.connect(engine.delete)
            history.open_requested.connect(lambda i, _url: self.open_notification(i))
            history.mark_all_read_requested.connect(lambda: engine.mark_all_read())
            # The server's unread count changes without a row changing: the window hears it.
            self.bridge.unread_count_changed.connect(history.set_unread_count)
            # Closed, it is deleted rather than kept hidden: its rows and widgets go back
            # to the OS (issue 20: memory after use), and opening it again takes ~10 ms.
            history.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            history.destroyed.connect(lambda _object=None: self._history_destroyed(history))
            self.history = history
        self.history.set_offline(self.state.state is not ConnectionState.CONNECTED)
        bring_forward(self.history)

    def _history_destroyed(self, window: HistoryWindow) -> None:
        if self.history is window:
            self.history = None
        # After this turn: the window's Python side is released once the slot returns.
        QTimer.singleShot(0, release_freed_memory)

    def show_presence(self) -> None:
        if self.presence is None:
            from tray_app.ui.presence import PresenceWindow

            engine = self.engine
            presence = PresenceWindow()
            presence.project_selected.connect(lambda pid: self._spawn(engine.watch_presence(pid)))
            presence.status_chosen.connect(self.set_own_status)
            presence.set_own_status(self.own_status)
            presence.set_projects(list(self.projects))
            self.presence = presence
        bring_forward(self.presence)


def bring_forward(window: Any) -> None:
    """Show a window and give it the focus."""
    window.show()
    window.raise_()
    window.activateWindow()
