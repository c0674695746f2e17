"""Native toasts with "Open" and "Mark read", and the tray balloon when there are none.

:class:`Toaster` shows what :class:`tray_app.toast_policy.ToastPlanner` decided, through
desktop-notifier (D-Bus ``org.freedesktop.Notifications`` on Linux, the native APIs on
Windows and macOS) on the app's asyncio (qasync) loop, and turns the user's clicks into
Qt signals. It decides nothing about which toasts to show.

Plain text: the D-Bus notification spec lets a server interpret the *body* as markup when
it advertises ``body-markup`` (xfce4-notifyd does, and renders valid markup such as
``<b>x</b>`` as bold; it shows the summary as plain text). So on D-Bus the body's ``&``,
``<`` and ``>`` are escaped when the server has that capability, and sent as they are when
it does not (the spec says such a server shows the text verbatim).

Urgent toasts look urgent: critical urgency (the D-Bus ``urgency`` hint 2, which keeps
them on screen on most servers) and the app icon with a red "!" mark; high-priority
toasts get an orange arrow mark (the words in their titles are the toast rules'). The
balloon shows its Critical and Warning icons for them.

When the native path fails (no session bus, no notification server, an error or a hang)
the toast goes to ``QSystemTrayIcon.showMessage`` instead; the first failure is logged
once as a warning, and the native path is tried again after ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_notifier import (
    DEFAULT_SOUND,
    Button,
    DesktopNotifier,
    Icon,
    Notification,
    Sound,
    Urgency,
)
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import Qt
from PySide6.QtWidgets import QSystemTrayIcon

from tray_app.toast_policy import (
    Toast,
    ToastEmphasis,
    ToastPlanner,
    ToastPreferences,
    ToastRequest,
)
from tray_app.ui.badge import AppMark, app_icon_file_name, icon_directories

if TYPE_CHECKING:
    from tray_app.store import StoredNotification

logger = logging.getLogger(__name__)

OPEN_LABEL = "Open"
MARK_READ_LABEL = "Mark read"
SHOW_ALL_LABEL = "Show all"
# A notification server that does not answer within this is as good as absent.
NATIVE_TIMEOUT = 5.0
BALLOON_MSECS = 8000
TOAST_ICON_SIZE = 64

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"

_URGENCY = {"low": Urgency.Low, "normal": Urgency.Normal, "critical": Urgency.Critical}
_MARKS: dict[ToastEmphasis, AppMark] = {"high": AppMark.HIGH, "urgent": AppMark.URGENT}
# The freedesktop icon theme's stand-in for an urgent toast when the marked icon is not
# installed; a high one then shows the plain app icon (its title still says "High").
_THEME_ICONS: dict[ToastEmphasis, str] = {"urgent": "dialog-warning"}
# The freedesktop sound theme's name for a new message; other platforms have a default.
_SOUND = Sound(name="message-new-instant") if sys.platform.startswith("linux") else DEFAULT_SOUND


class NativeToastError(Exception):
    """The native notification path could not show a toast."""


class Toaster(QObject):
    """Shows toasts natively, or in the tray icon's balloon when it must.

    Single toasts carry "Open" and "Mark read" buttons, and a click on the toast opens
    the notification (where the server supports clicks: xfce4-notifyd does not, hence the
    button). Summary and away toasts carry "Show all", and a click opens the history.

    Signals:
        open_requested(int, str): open this notification (id, url): its "Open" button or
            a click on its toast.
        mark_read_requested(int): its "Mark read" button was pressed.
        history_requested(): a summary or away toast was clicked, or its "Show all".
        fallback_used(str): a toast went to the tray balloon; why native failed.

    Args:
        tray: The tray icon for the fallback balloon (None: no fallback is shown).
        app_name: The name the notification server shows and groups by.
        notifier: The desktop-notifier instance to use; one is made when None.
        icon: An image file for the native toasts' icon; the app's shipped icon when None.
        emphasis_icons: Image files for high-priority and urgent toasts, by emphasis;
            the app's shipped marked icons when None.
        retry_after: Seconds to stay on the balloon after the native path failed.
        parent: The QObject parent.
    """

    open_requested = Signal(int, str)
    mark_read_requested = Signal(int)
    history_requested = Signal()
    fallback_used = Signal(str)

    def __init__(
        self,
        tray: QSystemTrayIcon | None,
        *,
        app_name: str = "Tray Notifier",
        notifier: DesktopNotifier | None = None,
        icon: Path | None = None,
        emphasis_icons: Mapping[ToastEmphasis, Path] | None = None,
        retry_after: float = 60.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._tray = tray
        icon = icon if icon is not None else _default_icon()
        self._app_icon = Icon(path=icon) if icon is not None else None
        if emphasis_icons is None:
            emphasis_icons = {
                emphasis: path
                for emphasis, mark in _MARKS.items()
                if (path := _default_icon(mark)) is not None
            }
        self._emphasis_icons = {
            emphasis: Icon(path=path) for emphasis, path in emphasis_icons.items()
        }
        self._own_notifier = notifier is None
        self._app_name = app_name
        self._notifier = notifier or self._new_notifier()
        self._retry_after = retry_after
        self._failed_at: float | None = None
        # Whether the notification server renders body markup; None until it is asked.
        self._body_markup: bool | None = None
        self._failure = ""
        self._warned = False
        # Notification id -> desktop-notifier identifier of its toast still on screen.
        self._shown: dict[int, str] = {}
        self._balloon: Toast | None = None
        self._showing = asyncio.Lock()
        if tray is not None:
            tray.messageClicked.connect(self._balloon_clicked)

    @property
    def native_available(self) -> bool:
        """False while the native path is known to be failing (within ``retry_after``)."""
        return self._failed_at is None

    async def show(self, toast: Toast) -> None:
        """Show ``toast`` natively, or in the tray balloon if the native path fails.

        Calls made at once are shown one after another, in call order: desktop-notifier
        opens its D-Bus connection on the first toast and must not open two.
        """
        async with self._showing:
            await self._show(toast)

    async def _show(self, toast: Toast) -> None:
        if self._may_try_native():
            try:
                async with asyncio.timeout(NATIVE_TIMEOUT):
                    await self._show_native(toast)
            except Exception as error:  # any failure of the native path means the balloon
                await self._native_failed(_describe(error))
            else:
                self._native_worked()
                return
        self._show_balloon(toast)

    async def withdraw(self, notification_ids: list[int]) -> None:
        """Close the toasts of notifications that were read or deleted meanwhile."""
        for notification_id in notification_ids:
            identifier = self._shown.pop(notification_id, None)
            if identifier is None:
                continue
            with contextlib.suppress(Exception):  # already closed by the user or the server
                async with asyncio.timeout(NATIVE_TIMEOUT):
                    await self._notifier.clear(identifier)

    async def close_all(self) -> None:
        """Close every toast this app still has on screen (on logout or quit)."""
        self._shown.clear()
        self._balloon = None
        if not self.native_available:
            return
        with contextlib.suppress(Exception):  # nothing to close if the server is gone
            async with asyncio.timeout(NATIVE_TIMEOUT):
                await self._notifier.clear_all()

    async def aclose(self) -> None:
        """Close this app's toasts and the connection to the notification server (at quit).

        A notifier passed in by the caller stays open: the caller owns it.
        """
        await self.close_all()
        if self._own_notifier:
            await _disconnect(self._notifier)

    # --- native --------------------------------------------------------------------------

    async def _show_native(self, toast: Toast) -> None:
        body = toast.body
        if sys.platform.startswith("linux"):
            if self._body_markup is None:
                # Asking first also tells a missing bus or server apart from a failed send,
                # which desktop-notifier only logs. Asked once, and again after a failure:
                # a server that goes away later fails the dispatch check below.
                self._body_markup = "body-markup" in await _dbus_capabilities()
            if self._body_markup:
                body = html.escape(body, quote=False)
        dispatched: list[bool] = []
        notification = Notification(
            title=toast.title,
            message=body,
            urgency=_URGENCY[toast.urgency],
            buttons=self._buttons(toast),
            on_clicked=self._click_handler(toast),
            on_dispatched=lambda: dispatched.append(True),
            sound=_SOUND if toast.sound else None,
            icon=self._icon(toast),
        )
        await self._notifier.send_notification(notification)
        if not dispatched:
            raise NativeToastError("the notification server did not take the toast")
        if toast.notification_id is not None:
            self._shown[toast.notification_id] = notification.identifier

    def _icon(self, toast: Toast) -> Icon | None:
        """The marked icon of a high or urgent toast; None: the app's own icon."""
        if toast.emphasis == "plain":
            return None
        icon = self._emphasis_icons.get(toast.emphasis)
        if icon is None and toast.emphasis in _THEME_ICONS:
            icon = Icon(name=_THEME_ICONS[toast.emphasis])
        return icon

    def _buttons(self, toast: Toast) -> tuple[Button, ...]:
        if toast.kind == "single" and toast.notification_id is not None:
            notification_id, url = toast.notification_id, toast.url or ""
            return (
                Button(OPEN_LABEL, on_pressed=lambda: self._open(notification_id, url)),
                Button(MARK_READ_LABEL, on_pressed=lambda: self._mark_read(notification_id)),
            )
        return (Button(SHOW_ALL_LABEL, on_pressed=self.history_requested.emit),)

    def _click_handler(self, toast: Toast) -> Callable[[], Any]:
        if toast.kind == "single" and toast.notification_id is not None:
            notification_id, url = toast.notification_id, toast.url or ""
            return lambda: self._open(notification_id, url)
        return self.history_requested.emit

    def _open(self, notification_id: int, url: str) -> None:
        self._shown.pop(notification_id, None)
        self.open_requested.emit(notification_id, url)

    def _mark_read(self, notification_id: int) -> None:
        self._shown.pop(notification_id, None)
        self.mark_read_requested.emit(notification_id)

    def _may_try_native(self) -> bool:
        return self._failed_at is None or time.monotonic() - self._failed_at >= self._retry_after

    async def _native_failed(self, reason: str) -> None:
        self._failed_at = time.monotonic()
        self._body_markup = None  # the server may be another one when it comes back
        self._failure = reason
        if self._warned:
            logger.debug("native notifications still unavailable (%s)", reason)
        else:
            self._warned = True
            logger.warning(
                "native notifications unavailable (%s): using the tray icon's balloon", reason
            )
        if self._own_notifier:
            # Its D-Bus connection may be the broken part; a new one connects afresh.
            broken, self._notifier = self._notifier, self._new_notifier()
            await _disconnect(broken)

    def _native_worked(self) -> None:
        if self._failed_at is not None:
            logger.info("native notifications are available again")
        self._failed_at = None
        self._failure = ""

    def _new_notifier(self) -> DesktopNotifier:
        return DesktopNotifier(app_name=self._app_name, app_icon=self._app_icon)

    # --- fallback ------------------------------------------------------------------------

    def _show_balloon(self, toast: Toast) -> None:
        if self._tray is not None:
            self._balloon = toast
            self._tray.showMessage(
                _balloon_text(toast.title),
                _balloon_text(toast.body),
                _balloon_icon(toast),
                BALLOON_MSECS,
            )
        self.fallback_used.emit(self._failure)

    def _balloon_clicked(self) -> None:
        toast, self._balloon = self._balloon, None
        if toast is None:
            return
        if toast.kind == "single" and toast.notification_id is not None:
            self._open(toast.notification_id, toast.url or "")
        else:
            self.history_requested.emit()


async def _dbus_capabilities() -> list[str]:
    """The session notification server's capabilities, on a short-lived connection.

    Raises:
        NativeToastError: No session bus, or no notification server on it.
    """
    # Linux only, where desktop-notifier itself depends on dbus-fast.
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus().connect()
    try:
        reply = await bus.call(
            Message(
                destination=NOTIFICATIONS_NAME,
                path=NOTIFICATIONS_PATH,
                interface=NOTIFICATIONS_NAME,
                member="GetCapabilities",
            )
        )
    finally:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # untyped upstream
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.error_name if reply is not None else "no reply"
        raise NativeToastError(f"no notification server on the session bus: {detail}")
    return [str(capability) for capability in reply.body[0]]


def _default_icon(mark: AppMark | None = None) -> Path | None:
    """The shipped app icon (with ``mark``) at a size notification servers draw well, if
    it is there."""
    for directory in icon_directories():
        path = directory / app_icon_file_name(TOAST_ICON_SIZE, mark)
        if path.is_file():
            return path
    return None


def _balloon_icon(toast: Toast) -> QSystemTrayIcon.MessageIcon:
    """The balloon's icon: Critical for urgent, Warning for high, Information otherwise."""
    if toast.emphasis == "urgent" or toast.urgency == "critical":
        return QSystemTrayIcon.MessageIcon.Critical
    if toast.emphasis == "high":
        return QSystemTrayIcon.MessageIcon.Warning
    return QSystemTrayIcon.MessageIcon.Information


async def _disconnect(notifier: DesktopNotifier) -> None:
    """Close ``notifier``'s D-Bus connection, if it opened one.

    desktop-notifier has no close(); its D-Bus backend keeps the connection it opens on
    the first toast in ``bus``. Left open, the socket would only be closed by the garbage
    collector, with a ResourceWarning.
    """
    bus = getattr(getattr(notifier, "_backend", None), "bus", None)
    if bus is None or not getattr(bus, "connected", False):
        return
    bus.disconnect()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(NATIVE_TIMEOUT):
            await bus.wait_for_disconnect()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {NATIVE_TIMEOUT:g} s"
    text = str(error) or type(error).__name__
    return text if isinstance(error, NativeToastError) else f"{type(error).__name__}: {text}"


def _balloon_text(text: str) -> str:
    """``text`` so that the balloon shows it verbatim.

    Qt draws the balloon itself on X11 with labels that guess rich text from the first
    tag; text that looks rich is handed over as escaped rich text instead. Windows and
    macOS show the text as it is.
    """
    if sys.platform in ("win32", "darwin") or not Qt.mightBeRichText(text):
        return text
    return Qt.convertFromPlainText(text, Qt.WhiteSpaceMode.WhiteSpaceNormal)


class ToastPresenter(QObject):
    """What the engine stored, offered to the toast rules (``ToastPlanner``), and the
    toasts they pass shown by the ``Toaster``; held toasts go out when the planner says.

    Args:
        toaster: Shows the toasts.
        preferences: The toast rules' preferences in force (this computer's and the
            user's attention settings), asked at every offer.
        spawn: Runs a coroutine in the background (the app's task set), so that a slow
            notification daemon never holds the GUI thread.
        planner: The rules (a fresh ``ToastPlanner`` by default).
        parent: The owning QObject.
    """

    def __init__(
        self,
        toaster: Toaster,
        *,
        preferences: Callable[[], ToastPreferences],
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        planner: ToastPlanner | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._toaster = toaster
        self._preferences = preferences
        self._spawn = spawn
        self._planner = planner or ToastPlanner()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush)

    def offer(self, rows: Sequence[StoredNotification], *, live: bool) -> None:
        """A batch the engine stored: each row offered for a toast (catch-up rows are
        tallied for the "while you were away" toast)."""
        preferences = self._toast_preferences()
        arrived_at = time.monotonic()
        toasts: list[Toast] = []
        for row in rows:
            request = ToastRequest.of(row, live=live, arrived_at=arrived_at)
            toasts.extend(self._planner.offer(request, preferences))
        self._show(toasts)

    def catch_up_finished(self, added: int) -> None:
        self._show(self._planner.catch_up_finished(added, self._toast_preferences()))

    def withdraw(self, ids: Sequence[int]) -> None:
        """Read (here or on another device): their toasts, shown or held, go away."""
        self._planner.discard(list(ids))
        self._spawn(self._toaster.withdraw(list(ids)))

    def _flush(self) -> None:
        self._show(self._planner.flush(self._toast_preferences()))

    def _show(self, toasts: list[Toast]) -> None:
        for toast in toasts:
            self._spawn(self._toaster.show(toast))
        delay = self._planner.next_flush_in()
        if delay is not None:
            self._flush_timer.start(max(0, int(delay * 1000)))

    def _toast_preferences(self) -> ToastPreferences:
        return self._preferences()
