"""The native notification paths under :class:`tray_app.ui.toasts.Toaster`, one per platform.

A :class:`NativeNotifier` shows a :class:`NativeToast` and reports the user's clicks on it
by action key. On Linux it is :class:`tray_app.ui.dbus_toasts.DBusNotifier` (the
freedesktop notification server over D-Bus, with jeepney); on Windows and macOS it is
:class:`DesktopNotifierNotifier` (desktop-notifier's native backends). Each is imported
only on its own platform, when the first toast is shown: a Linux process never loads
desktop-notifier or dbus-fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from desktop_notifier import DesktopNotifier, Icon

# The action key of a click on the toast itself (the D-Bus spec's "default" action).
CLICK = "default"

Urgency = Literal["low", "normal", "critical"]


class NativeToastError(Exception):
    """The native notification path could not show a toast."""


class NativeToast(msgspec.Struct, frozen=True):
    """A toast as the native path shows it.

    Attributes:
        title: Shown as plain text.
        body: Plain text; the notifier escapes it where the server would read markup.
        urgency: The server's urgency level.
        buttons: (action key, label) per button, in order.
        icon: An image file, a freedesktop icon theme name, or None for the app's icon.
        sound: Whether to play the platform's sound for a new message.
    """

    title: str
    body: str
    urgency: Urgency
    buttons: tuple[tuple[str, str], ...]
    icon: Path | str | None
    sound: bool


class NativeNotifier(Protocol):
    """Shows native toasts. Failures raise; the caller bounds each call with a timeout."""

    async def send(self, toast: NativeToast, on_action: Callable[[str], object]) -> object:
        """Show ``toast``; its handle for :meth:`close`. ``on_action`` gets the key of
        the button pressed, or :data:`CLICK` for a click on the toast.

        Raises:
            NativeToastError: The notification server is missing or refused the toast
                (other exceptions: the connection to it failed).
        """
        ...

    async def close(self, handle: object) -> None:
        """Close the toast ``handle`` if it is still shown."""
        ...

    async def close_all(self) -> None:
        """Close every toast this notifier still has on screen."""
        ...

    async def aclose(self) -> None:
        """Release the connection to the notification server, if any."""
        ...


def new_native_notifier(app_name: str, app_icon: Path | None) -> NativeNotifier:
    """The native notifier of this platform."""
    if sys.platform.startswith("linux"):
        from tray_app.ui.dbus_toasts import DBusNotifier

        return DBusNotifier(app_name=app_name, app_icon=app_icon)
    return DesktopNotifierNotifier(app_name=app_name, app_icon=app_icon)


class DesktopNotifierNotifier:
    """Toasts through desktop-notifier: the Windows and macOS notification centres.

    Args:
        app_name: The name the notification centre shows and groups by.
        app_icon: An image file for the toasts' icon (None: the platform's default).
    """

    def __init__(self, *, app_name: str, app_icon: Path | None) -> None:
        from desktop_notifier import DesktopNotifier, Icon

        self._notifier: DesktopNotifier = DesktopNotifier(
            app_name=app_name, app_icon=Icon(path=app_icon) if app_icon is not None else None
        )

    async def send(self, toast: NativeToast, on_action: Callable[[str], object]) -> object:
        from desktop_notifier import DEFAULT_SOUND, Button, Notification, Urgency

        urgency = {"low": Urgency.Low, "normal": Urgency.Normal, "critical": Urgency.Critical}
        dispatched: list[bool] = []
        notification = Notification(
            title=toast.title,
            message=toast.body,
            urgency=urgency[toast.urgency],
            buttons=tuple(
                Button(label, on_pressed=partial(on_action, key)) for key, label in toast.buttons
            ),
            on_clicked=partial(on_action, CLICK),
            on_dispatched=lambda: dispatched.append(True),
            sound=DEFAULT_SOUND if toast.sound else None,
            icon=_icon(toast.icon),
        )
        await self._notifier.send_notification(notification)
        if not dispatched:
            # desktop-notifier logs a failed send instead of raising it.
            raise NativeToastError("the notification server did not take the toast")
        return notification.identifier

    async def close(self, handle: object) -> None:
        await self._notifier.clear(str(handle))

    async def close_all(self) -> None:
        await self._notifier.clear_all()

    async def aclose(self) -> None:
        """Nothing to release: these backends hold no connection of their own."""


def _icon(icon: Path | str | None) -> Icon | None:
    from desktop_notifier import Icon

    if icon is None:
        return None
    return Icon(path=icon) if isinstance(icon, Path) else Icon(name=icon)
