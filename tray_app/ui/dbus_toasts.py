"""Native toasts on Linux: the freedesktop notification server over the session bus.

:class:`DBusNotifier` speaks ``org.freedesktop.Notifications`` on one connection to the
session bus, on the app's asyncio (qasync) loop, with jeepney (pure Python; its parser
and its asyncio router). It sends what desktop-notifier sent before it: the app name,
the toast's icon (or the app's) as a ``file://`` URI or a theme icon name, the summary,
the body, the actions (``default`` first where the server reports clicks on the body:
all but xfce4-notifyd), the hints ``urgency`` (a byte) and ``sound-name``, and the
server's default expiry. It listens to ``ActionInvoked`` and ``NotificationClosed`` from
the server that took the toasts, and closes toasts with ``CloseNotification``.

Why not Qt's D-Bus module, which the tray icon already loads: PySide6 marshals a Python
int as a D-Bus ``int32`` (``QDBusArgument << int`` as ``uint16``) and has no way to make
a ``uint32`` or a lone ``byte``, so ``Notify`` (``susssasa{sv}i``, urgency ``y``) and
``CloseNotification`` (``u``) cannot be sent with the types the spec requires, and
servers built on GDBus (xfce4-notifyd, GNOME Shell, dunst) refuse the call. Its typed
path, ``QDBusInterface``, introspects and calls blockingly and cannot pass an ``a{sv}``.

The pure parts (what goes into a ``Notify`` call) are the functions at the top; the I/O
is :class:`DBusNotifier`, which takes the bus address so tests can use a private bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, HeaderFields, Message, MessageType, new_method_call
from jeepney.auth import BEGIN, Authenticator
from jeepney.bus import get_bus
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.io.asyncio import DBusConnection, DBusRouter

from tray_app.ui.native_toasts import CLICK, NativeToast, NativeToastError, Urgency

logger = logging.getLogger(__name__)

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
NOTIFICATIONS = DBusAddress(
    NOTIFICATIONS_PATH, bus_name=NOTIFICATIONS_NAME, interface=NOTIFICATIONS_NAME
)
NOTIFY_SIGNATURE = "susssasa{sv}i"
# xfce4-notifyd has no "default" action (a click on the body): its docs say so, and
# desktop-notifier left it out for that server by name.
NO_CLICK_SERVERS = frozenset({"Xfce Notify Daemon"})
# The freedesktop sound theme's name for a new message.
SOUND_NAME = "message-new-instant"
URGENCY_BYTES: dict[Urgency, int] = {"low": 0, "normal": 1, "critical": 2}
EXPIRE_DEFAULT = -1
# The server's signals: only from the server's own connection (see DBusNotifier).
SIGNAL_RULE = MatchRule(
    type="signal",
    sender=NOTIFICATIONS_NAME,
    interface=NOTIFICATIONS_NAME,
    path=NOTIFICATIONS_PATH,
)


# --- what goes into a Notify call (pure) ---------------------------------------------------


def notify_body(body: str, capabilities: Iterable[str]) -> str:
    """``body`` as the server must get it to show it verbatim: escaped where the server
    reads markup (``body-markup``), as it is elsewhere (such a server shows it as is)."""
    if "body-markup" not in capabilities:
        return body
    # html.escape(quote=False) does the same, but importing html builds its table of
    # 2,231 named entities (~0.1 MiB) in a process that never needs one.
    return body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def notify_actions(buttons: Sequence[tuple[str, str]], *, clickable: bool) -> list[str]:
    """The flat (key, label, ...) action list: the body's click first where supported."""
    actions = [CLICK, ""] if clickable else []
    for key, label in buttons:
        actions += [key, label]
    return actions


def notify_hints(urgency: Urgency, *, sound: bool) -> dict[str, tuple[str, Any]]:
    """The hints (jeepney's ``(signature, value)`` variants): urgency, and the sound."""
    hints: dict[str, tuple[str, Any]] = {"urgency": ("y", URGENCY_BYTES[urgency])}
    if sound:
        hints["sound-name"] = ("s", SOUND_NAME)
    return hints


def notify_icon(icon: Path | str | None, app_icon: Path | None) -> str:
    """The ``app_icon`` argument: a file as a ``file://`` URI, a theme name as it is, the
    app's icon when the toast has none, or "" when there is no icon at all."""
    chosen = icon if icon is not None else app_icon
    if chosen is None:
        return ""
    return chosen.as_uri() if isinstance(chosen, Path) else chosen


def notify_message(
    toast: NativeToast,
    *,
    app_name: str,
    app_icon: Path | None,
    capabilities: Iterable[str],
    clickable: bool,
) -> Message:
    """The ``Notify`` method call for ``toast``."""
    return new_method_call(
        NOTIFICATIONS,
        "Notify",
        NOTIFY_SIGNATURE,
        (
            app_name,
            0,  # replaces_id: a new toast
            notify_icon(toast.icon, app_icon),
            toast.title,
            notify_body(toast.body, capabilities),
            notify_actions(toast.buttons, clickable=clickable),
            notify_hints(toast.urgency, sound=toast.sound),
            EXPIRE_DEFAULT,
        ),
    )


def error_name(reply: Message) -> str | None:
    """The D-Bus error name of an error reply; None for a method return."""
    if reply.header.message_type is not MessageType.error:
        return None
    return str(reply.header.fields.get(HeaderFields.error_name, "an unnamed error"))


# --- the connection ------------------------------------------------------------------------


class DBusNotifier:
    """Toasts through the session bus's notification server, on one bus connection.

    The connection opens on the first toast, asks the server for its capabilities and
    name (a missing bus or server fails there, before anything is sent), and stays open
    for the server's signals until :meth:`aclose`. Signals are believed only from the
    connection that answered our calls: the bus routes ``ActionInvoked`` to us only from
    the owner of the server's name, and a unicast forgery from anyone else is dropped.

    Args:
        app_name: The name the server shows and groups by.
        app_icon: An image file for toasts without an icon of their own.
        bus_address: A D-Bus address; the session bus (``DBUS_SESSION_BUS_ADDRESS``, read
            when connecting) when None.
    """

    def __init__(
        self, *, app_name: str, app_icon: Path | None, bus_address: str | None = None
    ) -> None:
        self._app_name = app_name
        self._app_icon = app_icon
        self._bus_address = bus_address
        self._connection: DBusConnection | None = None
        self._router: DBusRouter | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._capabilities: frozenset[str] = frozenset()
        self._clickable = False
        # The server's unique bus name: the sender of its replies.
        self._server: str | None = None
        # Server notification id -> what to call with the action key, while it is shown.
        self._on_action: dict[int, Callable[[str], object]] = {}

    async def send(self, toast: NativeToast, on_action: Callable[[str], object]) -> int:
        router = await self._router_now()
        message = notify_message(
            toast,
            app_name=self._app_name,
            app_icon=self._app_icon,
            capabilities=self._capabilities,
            clickable=self._clickable,
        )
        reply = await router.send_and_get_reply(message)
        failure = error_name(reply)
        if failure is not None:
            raise NativeToastError(f"the notification server did not take the toast: {failure}")
        self._server = reply.header.fields.get(HeaderFields.sender, self._server)
        notification_id = int(reply.body[0])
        self._on_action[notification_id] = on_action
        return notification_id

    async def close(self, handle: object) -> None:
        """``CloseNotification``; a toast the server already closed is no error."""
        if not isinstance(handle, int) or self._on_action.pop(handle, None) is None:
            return  # closed already: clicked, dismissed or expired
        if self._router is None:
            return
        reply = await self._router.send_and_get_reply(
            new_method_call(NOTIFICATIONS, "CloseNotification", "u", (handle,))
        )
        if error_name(reply) is not None:
            logger.debug("the server had closed toast %d already", handle)

    async def close_all(self) -> None:
        for notification_id in list(self._on_action):
            await self.close(notification_id)

    async def aclose(self) -> None:
        """Close the bus connection (the toasts stay; :meth:`close_all` closes them)."""
        dispatcher, self._dispatcher = self._dispatcher, None
        router, self._router = self._router, None
        connection, self._connection = self._connection, None
        self._on_action.clear()
        if dispatcher is not None:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await dispatcher
        if router is not None:
            with contextlib.suppress(Exception):  # its reader's error, if the bus went away
                await router.__aexit__(None, None, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    # --- connecting --------------------------------------------------------------------

    async def _router_now(self) -> DBusRouter:
        async with self._connecting:
            if self._router is None:
                await self._connect()
            assert self._router is not None
            return self._router

    async def _connect(self) -> None:
        connection = await _open_connection(self._bus_address)
        router = DBusRouter(connection)
        self._connection, self._router = connection, router
        try:
            hello = await router.send_and_get_reply(message_bus.Hello())
            if error_name(hello) is not None:
                raise NativeToastError(f"the session bus refused us: {error_name(hello)}")
            signals: asyncio.Queue[Message] = asyncio.Queue()
            router.filter(
                MatchRule(type="signal", interface=NOTIFICATIONS_NAME, path=NOTIFICATIONS_PATH),
                queue=signals,
            )
            await router.send_and_get_reply(message_bus.AddMatch(SIGNAL_RULE))
            self._dispatcher = asyncio.create_task(self._dispatch(signals))
            capabilities = await router.send_and_get_reply(
                new_method_call(NOTIFICATIONS, "GetCapabilities")
            )
            failure = error_name(capabilities)
            if failure is not None:
                raise NativeToastError(f"no notification server on the session bus: {failure}")
            self._server = capabilities.header.fields.get(HeaderFields.sender)
            self._capabilities = frozenset(str(c) for c in capabilities.body[0])
            information = await router.send_and_get_reply(
                new_method_call(NOTIFICATIONS, "GetServerInformation")
            )
            name = str(information.body[0]) if error_name(information) is None else ""
            self._clickable = name not in NO_CLICK_SERVERS
        except BaseException:
            await self.aclose()
            raise

    async def _dispatch(self, signals: asyncio.Queue[Message]) -> None:
        while True:
            message = await signals.get()
            try:
                self._on_signal(message)
            except Exception:  # a failing handler must not stop the signals
                logger.exception("handling a notification server signal failed")

    def _on_signal(self, message: Message) -> None:
        fields = message.header.fields
        if self._server is None or fields.get(HeaderFields.sender) != self._server:
            return
        member = fields.get(HeaderFields.member)
        signature = fields.get(HeaderFields.signature)
        if member == "ActionInvoked" and signature == "us":
            notification_id, key = message.body
            on_action = self._on_action.pop(notification_id, None)
            if on_action is not None:
                on_action(key)
        elif member == "NotificationClosed" and signature == "uu":
            self._on_action.pop(message.body[0], None)


async def _open_connection(bus_address: str | None) -> DBusConnection:
    """An authenticated connection to the bus (before Hello); closed again on failure.

    Raises:
        NativeToastError: No session bus address in the environment.
        OSError: Nothing listens at the address.
    """
    try:
        path = get_bus(bus_address if bus_address is not None else "SESSION")
    except KeyError:
        raise NativeToastError("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)") from None
    except RuntimeError as error:  # no transport jeepney can use in the address
        raise NativeToastError(str(error)) from None
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        authenticator = Authenticator()
        for data in authenticator:
            writer.write(data)
            await writer.drain()
            received = await reader.read(1024)
            if not received:
                raise EOFError("the session bus closed the connection while authenticating")
            authenticator.feed(received)
        writer.write(BEGIN)
        await writer.drain()
    except BaseException:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        raise
    return DBusConnection(reader, writer)
