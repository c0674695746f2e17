"""Native toasts with "Open" and "Mark read", and the tray balloon when there are none.

:class:`Toaster` shows what :class:`tray_app.toast_policy.ToastPlanner` decided, through
the platform's native path (:mod:`tray_app.ui.native_toasts`: D-Bus
``org.freedesktop.Notifications`` on Linux, desktop-notifier's Windows and macOS
backends elsewhere) on the app's asyncio (qasync) loop, and turns the user's clicks into
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
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from tray_app.ui.native_toasts import (
    CLICK,
    NativeNotifier,
    NativeToast,
    NativeToastError,
    new_native_notifier,
)

if TYPE_CHECKING:
    from tray_app.store import StoredNotification

logger = logging.getLogger(__name__)

OPEN_LABEL = "Open"
MARK_READ_LABEL = "Mark read"
SHOW_ALL_LABEL = "Show all"
# The buttons' action keys.
OPEN_ACTION = "open"
MARK_READ_ACTION = "mark-read"
SHOW_ALL_ACTION = "show-all"
# A notification server that does not answer within this is as good as absent.
NATIVE_TIMEOUT = 5.0
BALLOON_MSECS = 8000
TOAST_ICON_SIZE = 64

_MARKS: dict[ToastEmphasis, AppMark] = {"high": AppMark.HIGH, "urgent": AppMark.URGENT}
# The freedesktop icon theme's stand-in for an urgent toast when the marked icon is not
# installed; a high one then shows the plain app icon (its title still says "High").
_THEME_ICONS: dict[ToastEmphasis, str] = {"urgent": "dialog-warning"}


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
        icon: Path | None = None,
        emphasis_icons: Mapping[ToastEmphasis, Path] | None = None,
        retry_after: float = 60.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._tray = tray
        self._app_icon = icon if icon is not None else _default_icon()
        if emphasis_icons is None:
            emphasis_icons = {
                emphasis: path
                for emphasis, mark in _MARKS.items()
                if (path := _default_icon(mark)) is not None
            }
        self._emphasis_icons = dict(emphasis_icons)
        self._app_name = app_name
        # Made on the first native toast, and again after the native path failed.
        self._notifier: NativeNotifier | None = None
        self._retry_after = retry_after
        self._failed_at: float | None = None
        self._failure = ""
        self._warned = False
        # Notification id -> the native path's handle of its toast still on screen.
        self._shown: dict[int, object] = {}
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

        Calls made at once are shown one after another, in call order: the native path
        opens its connection on the first toast and must not open two.
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
            handle = self._shown.pop(notification_id, None)
            if handle is None or self._notifier is None:
                continue
            with contextlib.suppress(Exception):  # already closed by the user or the server
                async with asyncio.timeout(NATIVE_TIMEOUT):
                    await self._notifier.close(handle)

    async def close_all(self) -> None:
        """Close every toast this app still has on screen (on logout or quit)."""
        self._shown.clear()
        self._balloon = None
        if not self.native_available or self._notifier is None:
            return
        with contextlib.suppress(Exception):  # nothing to close if the server is gone
            async with asyncio.timeout(NATIVE_TIMEOUT):
                await self._notifier.close_all()

    async def aclose(self) -> None:
        """Close this app's toasts and the connection to the notification server (at quit)."""
        await self.close_all()
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            await _release(notifier)

    # --- native --------------------------------------------------------------------------

    async def _show_native(self, toast: Toast) -> None:
        if self._notifier is None:
            self._notifier = new_native_notifier(self._app_name, self._app_icon)
        native = NativeToast(
            title=toast.title,
            body=toast.body,
            urgency=toast.urgency,
            buttons=self._buttons(toast),
            icon=self._icon(toast),
            sound=toast.sound,
        )
        handle = await self._notifier.send(native, lambda key: self._on_action(toast, key))
        if toast.notification_id is not None:
            self._shown[toast.notification_id] = handle

    def _icon(self, toast: Toast) -> Path | str | None:
        """The marked icon of a high or urgent toast (a file, or a theme icon name for an
        urgent one without it); None: the app's own icon."""
        if toast.emphasis == "plain":
            return None
        icon: Path | str | None = self._emphasis_icons.get(toast.emphasis)
        if icon is None and toast.emphasis in _THEME_ICONS:
            icon = _THEME_ICONS[toast.emphasis]
        return icon

    @staticmethod
    def _buttons(toast: Toast) -> tuple[tuple[str, str], ...]:
        if toast.kind == "single" and toast.notification_id is not None:
            return ((OPEN_ACTION, OPEN_LABEL), (MARK_READ_ACTION, MARK_READ_LABEL))
        return ((SHOW_ALL_ACTION, SHOW_ALL_LABEL),)

    def _on_action(self, toast: Toast, key: str) -> None:
        """A button of ``toast`` was pressed (by its key), or the toast clicked (CLICK)."""
        if toast.kind == "single" and toast.notification_id is not None:
            notification_id, url = toast.notification_id, toast.url or ""
            if key in (OPEN_ACTION, CLICK):
                self._open(notification_id, url)
            elif key == MARK_READ_ACTION:
                self._mark_read(notification_id)
        elif key in (SHOW_ALL_ACTION, CLICK):
            self.history_requested.emit()

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
        self._failure = reason
        if self._warned:
            logger.debug("native notifications still unavailable (%s)", reason)
        else:
            self._warned = True
            logger.warning(
                "native notifications unavailable (%s): using the tray icon's balloon", reason
            )
        # Its connection may be the broken part (and the server may be another one when
        # it comes back): the next try starts afresh, asking the server again.
        broken, self._notifier = self._notifier, None
        if broken is not None:
            await _release(broken)

    def _native_worked(self) -> None:
        if self._failed_at is not None:
            logger.info("native notifications are available again")
        self._failed_at = None
        self._failure = ""

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


async def _release(notifier: NativeNotifier) -> None:
    """Close ``notifier``'s connection to the notification server, whatever happens."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(NATIVE_TIMEOUT):
            await notifier.aclose()


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
