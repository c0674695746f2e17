"""The tray icon and its menu.

Passive like every widget here: :class:`TrayController` shows the :class:`TrayState` it is
given and turns clicks into request signals; ``app.py`` wires those to the engine.

Every menu entry is a plain :class:`QAction` or a submenu, never a ``QWidgetAction``: on
Linux the tray menu travels over D-Bus (StatusNotifierItem + com.canonical.dbusmenu) and
on macOS it becomes an NSMenu, and neither carries embedded widgets. So a notification
row opens on click (the common case, one click) and the app marks it read; "Mark all
read" clears the list. No second list repeats the rows to mark one read without opening
it: the history window does that, one click away.

The menu's head says what needs saying now: who is logged in and the connection, "Log
in…" when a login is needed, "Reconnect now" while the connection is down, and while
pop-ups are held back, why and until when, with the one click that ends it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Final

import msgspec
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QColor,
    QGuiApplication,
    QIcon,
    QPainter,
    QPixmap,
    Qt,
)
from PySide6.QtWidgets import QMenu, QMessageBox, QSystemTrayIcon

from tray_app.attention import Silence, SilenceReason, silence_words
from tray_app.net import ConnectionState, StateChange
from tray_app.store import StoredNotification
from tray_app.time_words import as_aware, describe_age
from tray_app.toast_policy import BIDI_CONTROLS
from tray_app.ui.badge import TrayIconCache, TrayIconKey, TrayLook, render_mark_pixmap

logger = logging.getLogger(__name__)

APP_NAME: Final = "Tray Notifier"
#: The menu lists at most this many unread notifications, newest first.
MAX_RECENT: Final = 10
ROW_SEPARATOR: Final = "  —  "  # between a row's title and its "project · age"
#: Titles longer than this are cut with an ellipsis so the menu keeps a sane width.
TITLE_LIMIT: Final = 48
PROJECT_LIMIT: Final = 24
USERNAME_LIMIT: Final = 32

DND_ONE_HOUR: Final = "1h"
DND_TOMORROW: Final = "tomorrow"
DND_OFF: Final = "off"
DND_ON: Final = "on"  # until turned off

_WHITESPACE: Final = re.compile(r"\s+")
# Controls that mean nothing in a menu label, and the bidi controls (see BIDI_CONTROLS).
_INVISIBLE: Final = re.compile(rf"[\x00-\x08\x0e-\x1f\x7f-\x9f{BIDI_CONTROLS}]")
_STATUS_COLOURS: Final = {
    TrayLook.CONNECTED: QColor("#2eb67d"),
    TrayLook.OFFLINE: QColor("#9aa0a6"),
    TrayLook.LOGIN_REQUIRED: QColor("#f5a524"),
    TrayLook.DND: QColor("#6246ea"),
    TrayLook.QUIET_HOURS: QColor("#0b7a75"),
}
_SILENCE_LOOKS: Final[dict[SilenceReason, TrayLook]] = {
    "dnd": TrayLook.DND,
    "quiet_hours": TrayLook.QUIET_HOURS,
}
# The connection states "Reconnect now" can cut short (not CONNECTING: it is trying now).
_RECONNECTABLE: Final = frozenset({ConnectionState.RECONNECTING, ConnectionState.OFFLINE})


class MenuNotification(msgspec.Struct, frozen=True):
    """One unread notification as the menu shows it. Text fields are plain text."""

    id: int
    title: str
    project: str | None
    created_at: datetime
    url: str

    @classmethod
    def of(cls, row: StoredNotification) -> MenuNotification:
        """The menu's view of a stored notification."""
        return cls(
            id=row.id,
            title=row.title,
            project=row.project_title,
            created_at=row.created_at,
            url=row.url,
        )


class TrayState(msgspec.Struct, frozen=True):
    """Everything the tray shows.

    Attributes:
        connection: Words for the header and tooltip: "Connected", "Reconnecting in 12 s",
            "Offline", "Login required".
        look: How the icon draws the state.
        username: The signed-in user, or None.
        unread: The server's unread count (not negative).
        recent: The most recent unread notifications, newest first; the menu shows the
            first :data:`MAX_RECENT`.
        silence: Why pop-ups are held back right now (do-not-disturb or quiet hours)
            and until when, or None.
        reconnectable: The connection is down and waiting to retry: the menu offers
            "Reconnect now".
        quiet_hours_locked: IT sets the quiet hours on this computer: the menu then
            names them but offers no "Turn off quiet hours", which would only remove the
            user's own, on their other devices.
    """

    connection: str
    look: TrayLook
    username: str | None
    unread: int
    recent: tuple[MenuNotification, ...] = ()
    silence: Silence | None = None
    reconnectable: bool = False
    quiet_hours_locked: bool = False

    def __post_init__(self) -> None:
        if self.unread < 0:
            raise ValueError(f"an unread count cannot be negative, got {self.unread}")

    @property
    def dnd_on(self) -> bool:
        return self.silence is not None and self.silence.reason == "dnd"

    @property
    def dnd_until(self) -> datetime | None:
        """When a do-not-disturb in force ends by itself (None: off, or until turned off)."""
        return self.silence.until if self.silence is not None and self.dnd_on else None

    @classmethod
    def starting(cls, *, username: str | None, unread: int | None) -> TrayState:
        """What the tray shows while the app loads, before the account opens: greyed,
        with the unread count the local store last knew (None: not known, shown as 0).

        Args:
            username: The account about to be opened; None: nobody (the login comes).
            unread: The last known unread count.
        """
        if username is None:
            return cls.of(connection=StateChange(ConnectionState.STOPPED), username=None)
        return cls(
            connection="Starting…",
            look=TrayLook.OFFLINE,
            username=username,
            unread=max(0, unread or 0),
        )

    @classmethod
    def of(
        cls,
        *,
        connection: StateChange,
        username: str | None,
        unread: int = 0,
        recent: Sequence[StoredNotification] = (),
        silence: Silence | None = None,
        quiet_hours_locked: bool = False,
    ) -> TrayState:
        """What the tray shows.

        Args:
            connection: The engine's last connection state.
            username: Who is logged in; None: nobody (the other values are then
                ignored).
            unread: The unread count.
            recent: The most recent unread rows, newest first.
            silence: Why pop-ups are held back now, or None.
            quiet_hours_locked: IT's managed configuration sets the quiet hours here.
        """
        if username is None:
            return cls(
                connection="Not logged in",
                look=TrayLook.LOGIN_REQUIRED,
                username=None,
                unread=0,
            )
        return cls(
            connection=describe_connection(connection),
            look=connection_look(
                connection.state, silence=None if silence is None else silence.reason
            ),
            username=username,
            unread=unread,
            recent=tuple(MenuNotification.of(row) for row in recent),
            silence=silence,
            reconnectable=connection.state in _RECONNECTABLE,
            quiet_hours_locked=quiet_hours_locked,
        )


def connection_look(state: ConnectionState, *, silence: SilenceReason | None = None) -> TrayLook:
    """How the icon draws a connection state, and why pop-ups are held back if they are.

    The silence marks (a moon for do-not-disturb, a clock for quiet hours) show while
    connected. Offline, the greyed icon says the one thing that matters then: nothing
    arrives at all, held back or not; the tooltip and the menu still name the silence.
    """
    if state is ConnectionState.LOGIN_REQUIRED:
        return TrayLook.LOGIN_REQUIRED
    if state is not ConnectionState.CONNECTED:
        return TrayLook.OFFLINE
    return TrayLook.CONNECTED if silence is None else _SILENCE_LOOKS[silence]


def describe_connection(change: StateChange, *, now: float | None = None) -> str:
    """Words for the menu's header and the tooltip: "Connected", "Reconnecting in 12 s",
    "Connected (HTTP fallback: WebSockets are blocked on this network)".

    Args:
        change: The engine's last connection state.
        now: The wall clock (``time.time()``) the retry countdown counts from.
    """
    match change.state:
        case ConnectionState.CONNECTED if change.fallback_reason:
            return f"Connected ({change.fallback_reason})"
        case ConnectionState.CONNECTED:
            return "Connected"
        case ConnectionState.CONNECTING:
            return "Connecting…"
        case ConnectionState.RECONNECTING if change.next_attempt_at is not None:
            clock = time.time() if now is None else now
            seconds = max(0, round(change.next_attempt_at - clock))
            return f"Reconnecting in {seconds} s" if seconds else "Reconnecting…"
        case ConnectionState.RECONNECTING:
            return "Reconnecting…"
        case ConnectionState.OFFLINE:
            return "Offline"
        case ConnectionState.LOGIN_REQUIRED:
            return "Login required"
        case _:
            return "Not connected"


def describe_transport(change: StateChange, *, now: float | None = None) -> str:
    """:func:`describe_connection` with the transport named while connected, for the
    settings window: "Connected over WebSocket", "Connected (HTTP fallback: ...)"."""
    words = describe_connection(change, now=now)
    if change.state is ConnectionState.CONNECTED and not change.fallback_reason:
        return f"{words} over WebSocket"
    return words


def _local_now() -> datetime:
    return datetime.now().astimezone()


def elide(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters: whitespace runs (newlines, tabs) become
    one space and a longer text ends in "…"."""
    line = _WHITESPACE.sub(" ", _INVISIBLE.sub("", text)).strip()
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


def menu_text(text: str) -> str:
    """``text`` made safe as a QAction label: "&" would otherwise mark a mnemonic."""
    return text.replace("&", "&&")


def _dnd_choice(state: TrayState, now: datetime) -> str:
    """Which do-not-disturb entry the state matches: off, for an hour, until tomorrow, or
    until turned off."""
    if not state.dnd_on:
        return DND_OFF
    dnd_until = state.dnd_until
    if dnd_until is None:
        return DND_ON
    if as_aware(dnd_until) <= now:
        return DND_OFF
    if as_aware(dnd_until).astimezone(now.tzinfo).date() > now.date():
        return DND_TOMORROW
    return DND_ONE_HOUR


def _describe_until(dnd_until: datetime, now: datetime) -> str:
    # On this computer's clock, as every other time the tray words (silence_words).
    until = as_aware(dnd_until).astimezone()
    now = as_aware(now).astimezone()
    if until.date() == now.date():
        return f"until {until:%H:%M}"
    if until.date() == now.date() + timedelta(days=1):
        return f"until tomorrow {until:%H:%M}"
    return f"until {until.day} {until:%b %H:%M}"


def silence_line(silence: Silence, now: datetime) -> str:
    """The menu's line on a silence: "Do not disturb until 08:00", "Quiet hours until
    07:00", "Do not disturb until you turn it off"."""
    if silence.reason == "dnd" and silence.until is None:
        # A sentence of its own, not the tooltip's bracketed "(until you turn it off)",
        # which would read like the state of the "Do not disturb (on)" submenu below.
        return "Do not disturb until you turn it off"
    return silence_words(silence, now)


def tooltip_text(state: TrayState, now: datetime) -> str:
    """The tray tooltip: "Tray Notifier — 3 unread — Connected"."""
    count = f"{state.unread} unread" if state.unread else "no unread"
    parts = [APP_NAME, count, state.connection]
    if state.silence is not None:
        parts.append(silence_words(state.silence, now))
    return " — ".join(parts)


def _connect_trigger(action: QAction, emit: Callable[[], None]) -> None:
    """Call ``emit`` when ``action`` is triggered, dropping triggered()'s checked flag."""

    def on_triggered(_checked: bool = False) -> None:
        emit()

    action.triggered.connect(on_triggered)


def _status_dot(look: TrayLook) -> QIcon:
    """A coloured dot for the header, the same when the (disabled) header greys its icon."""
    icon = QIcon()
    for ratio in (1.0, 2.0):
        side = round(16 * ratio)
        pixmap = QPixmap(side, side)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_STATUS_COLOURS[look])
            painter.drawEllipse(QRectF(4, 4, 8, 8))
        finally:
            painter.end()
        icon.addPixmap(pixmap, QIcon.Mode.Normal)
        icon.addPixmap(pixmap, QIcon.Mode.Disabled)
    return icon


def _mark_icon(look: TrayLook) -> QIcon:
    """The tray icon's mark for a silence (moon, clock), for the menu line that names it;
    in colour though the line is disabled, like the header's dot."""
    icon = QIcon()
    for ratio in (1.0, 2.0):
        pixmap = render_mark_pixmap(look, 16, ratio)
        icon.addPixmap(pixmap, QIcon.Mode.Normal)
        icon.addPixmap(pixmap, QIcon.Mode.Disabled)
    return icon


def sync_menu_actions(menu: QMenu, wanted: Sequence[QAction]) -> None:
    """Make ``menu`` list exactly ``wanted``, in order, with as few changes as it takes.

    Every insertion or removal is a ``LayoutUpdated`` signal on D-Bus menus (Linux panels
    then fetch the layout again), so entries that stay stay, and a list that is already
    right costs nothing.
    """
    current = menu.actions()
    if len(current) == len(wanted) and all(a is b for a, b in zip(current, wanted, strict=True)):
        return
    wanted_ids = {id(action) for action in wanted}
    for action in current:
        if id(action) not in wanted_ids:
            menu.removeAction(action)
    current = [action for action in current if id(action) in wanted_ids]
    for index, action in enumerate(wanted):
        if index < len(current) and current[index] is action:
            continue
        if any(action is other for other in current):  # it moves: out first, in below
            menu.removeAction(action)
            current = [other for other in current if other is not action]
        if index < len(current):
            menu.insertAction(current[index], action)
        else:
            menu.addAction(action)
        current.insert(index, action)


class TrayController(QObject):
    """The tray icon with its painted badge, its tooltip and its menu.

    Left click asks for the history window; the context menu (right click) offers the
    rest. The menu follows each :class:`TrayState` and is brought up to date again just
    before it opens, so ages stay fresh. It is updated in place: a notification keeps its
    entry while it stays listed, and what did not change is not touched, since on Linux
    every change travels to the panel over D-Bus. While the menu is open the tooltip is
    empty, so that it cannot cover the menu; it comes back as the menu closes.

    Signals:
        history_requested(): Left click on the icon, or "History…".
        presence_requested(): "Who's online…".
        settings_requested(): "Settings…".
        logout_requested(): "Log out".
        quit_requested(): "Quit".
        login_requested(): "Log in…" (shown while the look is LOGIN_REQUIRED).
        notification_opened(int): A notification row was clicked: open its link and mark
            it read. Carries the notification id (64-bit).
        mark_all_read_requested(): "Mark all read".
        dnd_requested(str): "1h", "tomorrow", "on" (until turned off) or "off" (also
            "Turn off do not disturb" at the head of the menu).
        quiet_hours_end_requested(): "Turn off quiet hours", shown while they hold.
        reconnect_requested(): "Reconnect now", shown while the connection is down.
    """

    history_requested = Signal()
    presence_requested = Signal()
    settings_requested = Signal()
    logout_requested = Signal()
    quit_requested = Signal()
    login_requested = Signal()
    # object, not int: ids are 64-bit and Signal(int) is a C++ int that wraps past 2**31.
    notification_opened = Signal(object)
    mark_all_read_requested = Signal()
    dnd_requested = Signal(str)
    quiet_hours_end_requested = Signal()
    reconnect_requested = Signal()

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        clock: Callable[[], datetime] = _local_now,
        state: TrayState | None = None,
    ) -> None:
        """``state`` is the one shown first (a starting, offline one when None): given
        here, the icon is drawn once, not once for a default and again for it."""
        super().__init__(parent)
        self._clock = clock
        self._state = state or TrayState(
            connection="Starting", look=TrayLook.OFFLINE, username=None, unread=0
        )
        self._icons = TrayIconCache()
        self._icon_key: TrayIconKey | None = None
        self._tooltip = ""
        self._menu_open = False
        self._header_look: TrayLook | None = None
        self._silence_look: TrayLook | None = None
        self._status_dots: dict[TrayLook, QIcon] = {}
        self._mark_icons: dict[TrayLook, QIcon] = {}
        self._menu = QMenu()
        self._menu.setToolTipsVisible(True)
        self._tray = QSystemTrayIcon(self)
        self._tray.setContextMenu(self._menu)
        self._tray.activated.connect(self._on_activated)
        self._build_fixed_actions()
        # The entries of the notifications listed now, by id. The entry of a notification
        # that leaves the list is deleted later, not at once: it may be the action whose
        # triggered() led to this update.
        self._rows: dict[int, QAction] = {}
        self._menu.aboutToShow.connect(self._on_menu_about_to_show)
        self._menu.aboutToHide.connect(self._on_menu_closed)
        # A click closes the menu too; should a panel leave out the "closed" event that
        # becomes aboutToHide on D-Bus, the tooltip still comes back.
        self._menu.triggered.connect(self._on_menu_closed)
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(self._on_color_scheme_changed)
        self._show(self._state)

    @property
    def tray_icon(self) -> QSystemTrayIcon:
        """The tray icon itself (for tests, and for toasts when no native path exists)."""
        return self._tray

    @property
    def menu(self) -> QMenu:
        """The context menu."""
        return self._menu

    @property
    def state(self) -> TrayState:
        """The state last shown."""
        return self._state

    def show(self) -> None:
        """Put the icon in the tray."""
        if not QSystemTrayIcon.isSystemTrayAvailable():
            logger.warning("no system tray is available; the icon may not be visible")
        self._tray.show()

    def hide(self) -> None:
        """Take the icon out of the tray."""
        self._tray.hide()

    def warn(self, title: str, problems: Sequence[str], summary: str) -> QMessageBox | None:
        """Tell the user of problems to pass on (to IT, to support).

        A tray message (the first problem and ``summary``) where the tray shows them;
        otherwise a window with every problem, returned, for the caller to keep while
        it is open: a message sent to no tray would be lost.
        """
        if QSystemTrayIcon.isSystemTrayAvailable() and self._tray.supportsMessages():
            text = "\n".join([*problems[:1], summary])
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning)
            return None
        notice = QMessageBox(
            QMessageBox.Icon.Warning, "Tray Notifier", title, QMessageBox.StandardButton.Ok
        )
        notice.setTextFormat(Qt.TextFormat.PlainText)
        notice.setInformativeText("\n\n".join([*problems, summary]))
        notice.setWindowModality(Qt.WindowModality.NonModal)
        notice.show()
        notice.raise_()
        notice.activateWindow()
        return notice

    def set_state(self, state: TrayState) -> None:
        """Show ``state``: icon, tooltip and menu. Only what changed is redrawn or resent.

        The same state again changes nothing: what depends on the clock (ages, the end of
        do-not-disturb) is brought up to date as the menu opens.
        """
        if state != self._state:
            self._show(state)

    # --- building ------------------------------------------------------------------

    def _on_menu_about_to_show(self) -> None:
        self._menu_open = True
        self._show(self._state)

    def _on_menu_closed(self, _action: QAction | None = None) -> None:
        self._menu_open = False
        self._update_tooltip()

    def _show(self, state: TrayState) -> None:
        self._state = state
        now = self._now()
        self._update_icon()
        self._tooltip = tooltip_text(state, now)
        self._update_tooltip()
        self._update_menu(now)

    def _update_tooltip(self) -> None:
        # QSystemTrayIcon cannot hide a tooltip on every platform; an empty one is none.
        wanted = "" if self._menu_open else self._tooltip
        if self._tray.toolTip() != wanted:  # on Linux each change is a D-Bus signal
            self._tray.setToolTip(wanted)

    def _now(self) -> datetime:
        return as_aware(self._clock())

    def _dark_panel(self) -> bool:
        # The panel's colour is not observable from Qt; the desktop's colour scheme is
        # the best available guess, and tray hosts follow it on every desktop we know.
        return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark

    def _on_color_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        self._update_icon()

    def _update_icon(self) -> None:
        key = TrayIconKey.of(self._state.unread, self._state.look, self._dark_panel())
        if key == self._icon_key:
            return  # painting, and a D-Bus round for the panel: only on change
        self._icon_key = key
        self._tray.setIcon(self._icons.icon(key))

    def _dot_for(self, look: TrayLook) -> QIcon:
        dot = self._status_dots.get(look)
        if dot is None:
            dot = self._status_dots[look] = _status_dot(look)
        return dot

    def _mark_icon_for(self, look: TrayLook) -> QIcon:
        icon = self._mark_icons.get(look)
        if icon is None:
            icon = self._mark_icons[look] = _mark_icon(look)
        return icon

    def _action(
        self, text: str, on_trigger: Callable[[], None] | None = None, *, tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if tip:
            # What the entry does beyond its words. A screen reader names a menu entry by
            # its text (Qt's accessible name, "&" stripped), so the text says it plainly.
            action.setToolTip(tip)
        if on_trigger is not None:
            _connect_trigger(action, on_trigger)
        return action

    def _build_fixed_actions(self) -> None:
        self._header = self._action("")
        self._header.setEnabled(False)
        self._login = self._action("Log in…", self.login_requested.emit)
        bold = self._login.font()
        bold.setBold(True)
        self._login.setFont(bold)
        self._reconnect = self._action(
            "Reconnect now",
            self.reconnect_requested.emit,
            tip="Try to reach the server now instead of waiting for the next attempt",
        )
        self._silence = self._action("")
        self._silence.setEnabled(False)
        self._end_dnd = self._action(
            "Turn off do not disturb",
            partial(self.dnd_requested.emit, DND_OFF),
            tip="Let pop-ups through again, on every device",
        )
        self._end_quiet_hours = self._action(
            "Turn off quiet hours",
            self.quiet_hours_end_requested.emit,
            tip="Remove the quiet hours, on every device; set them again in Settings",
        )
        self._empty = self._action("No unread notifications")
        self._empty.setEnabled(False)
        self._more = self._action("", self.history_requested.emit)
        self._mark_all = self._action("Mark all read", self.mark_all_read_requested.emit)
        self._history = self._action("History…", self.history_requested.emit)
        self._presence = self._action("Who's online…", self.presence_requested.emit)

        self._dnd_menu = QMenu("Do not disturb", self._menu)
        self._dnd_entry = self._dnd_menu.menuAction()
        self._dnd_group = QActionGroup(self)
        self._dnd_group.setExclusive(True)
        self._dnd_actions: dict[str, QAction] = {}
        for choice, text in (
            (DND_ONE_HOUR, "For 1 hour"),
            (DND_TOMORROW, "Until tomorrow"),
            (DND_ON, "Until I turn it off"),
            (DND_OFF, "Off"),
        ):
            action = self._action(text)
            action.setCheckable(True)
            _connect_trigger(action, partial(self.dnd_requested.emit, choice))
            self._dnd_group.addAction(action)
            self._dnd_menu.addAction(action)
            self._dnd_actions[choice] = action

        self._settings = self._action("Settings…", self.settings_requested.emit)
        self._logout = self._action("Log out", self.logout_requested.emit)
        self._quit = self._action("Quit", self.quit_requested.emit)
        self._separators = [self._action("") for _ in range(3)]
        for separator in self._separators:
            separator.setSeparator(True)

    def _row(self, item: MenuNotification) -> QAction:
        row = self._rows.get(item.id)
        if row is None:
            row = QAction(self)
            _connect_trigger(row, partial(self.notification_opened.emit, item.id))
            self._rows[item.id] = row
        return row

    def _update_row(self, row: QAction, item: MenuNotification, now: datetime) -> None:
        title = elide(item.title, TITLE_LIMIT) or "(no title)"
        details = describe_age(item.created_at, now)
        if item.project:
            details = f"{elide(item.project, PROJECT_LIMIT)} · {details}"
        # Not a tab: D-Bus menus (Linux panels) draw it as a ragged gap and macOS may drop
        # what follows it; a plain separator reads the same everywhere.
        label = menu_text(f"{title}{ROW_SEPARATOR}{details}")
        # The full title, for what the ellipsis hid. Qt guesses whether a tooltip is rich
        # text, so the title goes in as escaped HTML and can never be read as markup.
        tooltip = Qt.convertFromPlainText(_WHITESPACE.sub(" ", item.title).strip())
        # Each change is a D-Bus signal to the panel: only what differs is set.
        if row.text() != label:
            row.setText(label)
        if row.toolTip() != tooltip:
            row.setToolTip(tooltip)

    def _update_menu(self, now: datetime) -> None:
        state = self._state
        wanted: list[QAction] = []

        header = state.connection
        if state.username:
            header = f"{elide(state.username, USERNAME_LIMIT)} · {state.connection}"
        self._header.setText(menu_text(header))
        if state.look is not self._header_look:
            self._header_look = state.look
            self._header.setIcon(self._dot_for(state.look))
        wanted.append(self._header)
        if state.look is TrayLook.LOGIN_REQUIRED:
            wanted.append(self._login)
        if state.reconnectable:
            wanted.append(self._reconnect)
        wanted.extend(self._silence_entries(state, now))
        wanted.append(self._separators[0])

        shown = state.recent[:MAX_RECENT]
        listed = {item.id for item in shown}
        for gone in [ident for ident in self._rows if ident not in listed]:
            row = self._rows.pop(gone)
            self._menu.removeAction(row)
            row.deleteLater()
        rows = []
        for item in shown:
            row = self._row(item)
            self._update_row(row, item, now)
            rows.append(row)
        if not shown:
            wanted.append(self._empty)
        wanted.extend(rows)
        hidden = state.unread - len(shown)
        if shown and hidden > 0:
            self._more.setText(f"{hidden} more unread in History…")
            wanted.append(self._more)
        self._mark_all.setEnabled(state.unread > 0)
        wanted.append(self._mark_all)
        wanted.append(self._separators[1])

        wanted.append(self._history)
        wanted.append(self._presence)
        choice = _dnd_choice(state, now)
        self._dnd_actions[choice].setChecked(True)
        title = "Do not disturb"
        if choice != DND_OFF and state.dnd_until is not None:
            title += f" ({_describe_until(state.dnd_until, now)})"
        elif choice == DND_ON:
            title += " (on)"
        self._dnd_menu.setTitle(title)
        wanted.append(self._dnd_entry)
        wanted.append(self._separators[2])

        wanted.append(self._settings)
        if state.username:
            wanted.append(self._logout)
        wanted.append(self._quit)
        sync_menu_actions(self._menu, wanted)

    def _silence_entries(self, state: TrayState, now: datetime) -> list[QAction]:
        """The line that says why pop-ups are held back, and the click that ends it."""
        silence = state.silence
        if silence is None:
            return []
        text = menu_text(silence_line(silence, now))
        if self._silence.text() != text:
            self._silence.setText(text)
        look = _SILENCE_LOOKS[silence.reason]
        if look is not self._silence_look:
            self._silence_look = look
            self._silence.setIcon(self._mark_icon_for(look))
        if silence.reason == "dnd":
            return [self._silence, self._end_dnd]
        if state.quiet_hours_locked:
            return [self._silence]
        return [self._silence, self._end_quiet_hours]

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.history_requested.emit()
