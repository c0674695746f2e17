"""One running app per user: a second launch hands over to the first and exits.

On Linux with a session bus (the tray icon talks over it anyway) the first instance owns
a well-known name on that bus (:func:`bus_service_name`; the session bus is the user's
own) and exports an ``Activate`` method; a later launch finds the name taken, calls the
method (waiting at most two seconds for the answer) and exits. The bus gives the name to
exactly one of several simultaneous launches, and takes it back when its owner dies, so
there is nothing to lock and nothing left behind. Qt's network module stays unloaded
(issue 20: about 2.6 MiB).

Elsewhere, or with no session bus, the first instance listens on a per-user
:class:`QLocalServer`. A later one connects, sends ``activate`` and waits (at most two
seconds) for ``ok``; the first instance answers and emits ``activation_requested`` so
the app can show itself. A socket file left behind by a crashed instance refuses
connections; it is removed and claimed.

The whole socket claim runs under a :class:`QLockFile` next to the socket, so two
instances started at the same moment cannot both decide the socket is stale
(and a lock left by a crash is detected by Qt through its dead process id).

On Linux the socket lives in ``$XDG_RUNTIME_DIR`` (private to the user) when
there is one, else in the temporary directory with the user id in its name.
"""

from __future__ import annotations

import getpass
import itertools
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    ClassInfo,
    QByteArray,
    QDir,
    QEventLoop,
    QLockFile,
    QObject,
    QTimer,
    Signal,
    Slot,
)

if TYPE_CHECKING:
    from PySide6.QtDBus import QDBusConnection
    from PySide6.QtNetwork import QLocalServer, QLocalSocket

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIVATE",
    "BUS_INTERFACE",
    "BUS_PATH",
    "HANDOVER_TIMEOUT_MS",
    "SESSION_BUS",
    "SingleInstance",
    "bus_service_name",
    "server_name",
]

ACTIVATE = b"activate\n"
_ANSWER = b"ok\n"
_MAX_REQUEST = 256  # bytes: anything longer is not one of ours
HANDOVER_TIMEOUT_MS = 2000
_MAX_SOCKET_PATH = 100
# The bus way (Linux): the name's prefix, the object and its interface.
BUS_SERVICE_PREFIX = "com.traynotifier.app.instance"
BUS_PATH = "/com/traynotifier/app/Instance"
BUS_INTERFACE = "com.traynotifier.app.Instance"
SESSION_BUS = "session"  # SingleInstance(bus=...): the user's session bus
# Each instance's own named connection when given a bus address (Qt shares them by name).
_connection_names = (f"tray-notifier-instance-{n}" for n in itertools.count(1))


def _user_tag() -> str:
    if hasattr(os, "getuid"):
        return str(os.getuid())
    return re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser())


def server_name(name: str) -> str:
    """The per-user local server name (a socket path on Unix, a pipe name on Windows).

    Args:
        name: the application's name, e.g. ``"tray-notifier"``; characters other
            than letters, digits, ``.``, ``_`` and ``-`` are replaced.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "app"
    base = f"{safe}-{_user_tag()}.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.name == "posix" and runtime and Path(runtime).is_dir():
        path = str(Path(runtime) / base)
        # A Unix socket path must fit sockaddr_un (108 bytes on Linux, 104 on macOS).
        if len(os.fsencode(path)) < _MAX_SOCKET_PATH:
            return path
    return base


def bus_service_name(name: str) -> str:
    """The well-known bus name the running instance owns on the (per-user) session bus.

    Args:
        name: the application's name; characters a bus name element cannot hold
            (anything but letters, digits and ``_``) are replaced by ``_``.
    """
    element = re.sub(r"[^A-Za-z0-9_]", "_", name) or "app"
    if element[0].isdigit():
        element = "_" + element
    return f"{BUS_SERVICE_PREFIX}.{element}"


# PySide6's stubs give ClassInfo neither a positional dict nor a __call__; it has both.
@ClassInfo({"D-Bus Interface": BUS_INTERFACE})  # type: ignore[call-arg]
class _Activation(QObject):  # type: ignore[operator]
    """The object the running instance exports on the bus: its slots are the methods."""

    requested = Signal()

    @Slot()
    def Activate(self) -> None:  # noqa: N802 (a D-Bus method name)
        self.requested.emit()


class SingleInstance(QObject):
    """Decides whether this process is the one running instance of the app.

    Call :meth:`claim` once at startup, before the asyncio loop runs: it spins a
    short local Qt event loop while it waits for the other instance's answer.

    Signals:
        activation_requested(): another launch asked this (first) instance to
            show itself.
    """

    activation_requested = Signal()

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        timeout_ms: int = HANDOVER_TIMEOUT_MS,
        bus: str | None = SESSION_BUS if sys.platform == "linux" else None,
    ) -> None:
        """Create an instance guard that has not claimed anything yet.

        Args:
            parent: the Qt parent.
            timeout_ms: how long a second launch waits for the first one's answer.
            bus: where the instances meet: :data:`SESSION_BUS` (the default on Linux),
                a D-Bus address, or None for the local socket alone (the default
                elsewhere). With no such bus to connect to, the local socket is used.
        """
        super().__init__(parent)
        self._timeout_ms = timeout_ms
        self._bus_choice = bus
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytes] = {}
        self._bus: QDBusConnection | None = None  # while owning the name
        self._service = ""
        self._activation: _Activation | None = None

    @property
    def listening(self) -> bool:
        """Whether this object holds the instance's server (or bus name)."""
        if self._bus is not None:
            return True
        return self._server is not None and self._server.isListening()

    @property
    def full_server_name(self) -> str:
        """The listening socket's full path (or pipe name), or the bus name this instance
        owns; empty when not listening."""
        if self._bus is not None:
            return self._service
        return self._server.fullServerName() if self._server is not None else ""

    def claim(self, name: str) -> bool:
        """Become the running instance, or hand over to the one that already is.

        Args:
            name: the application's name; the user id is added (see :func:`server_name`).

        Returns:
            True when this process is now the running instance; False when
            another instance is running and was asked to show itself (the
            caller should exit with status 0).
        """
        if self._server is not None or self._bus is not None:
            return True
        if self._bus_choice is not None:
            claimed = self._claim_on_bus(name)
            if claimed is not None:
                return claimed
        full = server_name(name)
        lock = QLockFile(self._lock_path(full))
        if not lock.tryLock(self._timeout_ms):
            # Another launch is mid-claim right now: it will be the instance.
            logger.info("another instance is starting (lock %s held)", lock.error())
            return False
        try:
            if self._hand_over(full):
                return False
            return self._listen(full)
        finally:
            lock.unlock()

    def release(self) -> None:
        """Stop being the running instance (gives up the bus name, or removes the socket
        file)."""
        self._release_bus()
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None

    # --- over the session bus ----------------------------------------------------------

    def _connect_bus(self) -> QDBusConnection | None:
        from PySide6.QtDBus import QDBusConnection

        if self._bus_choice == SESSION_BUS:
            bus = QDBusConnection.sessionBus()
            if not bus.isConnected():
                logger.info("no session bus (%s)", bus.lastError().message() or "not connected")
                return None
            return bus
        name = next(_connection_names)
        bus = QDBusConnection.connectToBus(self._bus_choice or "", name)
        if not bus.isConnected():
            logger.info("no bus at %s (%s)", self._bus_choice, bus.lastError().message())
            QDBusConnection.disconnectFromBus(name)
            return None
        return bus

    def _claim_on_bus(self, name: str) -> bool | None:
        """Own the name, or hand over to its owner; None when there is no bus to use."""
        from PySide6.QtDBus import QDBusConnection

        bus = self._connect_bus()
        if bus is None:
            return None
        service = bus_service_name(name)
        activation = _Activation(self)
        # The object first: whoever sees the name owned can call it at once.
        if not bus.registerObject(
            BUS_PATH, activation, QDBusConnection.RegisterOption.ExportAllSlots
        ):
            # This connection already exports one (another guard in this process).
            activation.deleteLater()
            return False if self._hand_over_on_bus(bus, service) else None
        if bus.registerService(service):
            activation.requested.connect(self.activation_requested)
            self._bus, self._service, self._activation = bus, service, activation
            return True
        bus.unregisterObject(BUS_PATH)
        activation.deleteLater()
        if self._hand_over_on_bus(bus, service):
            return False
        logger.warning("could not own %s on the bus; using a local socket", service)
        return None

    def _hand_over_on_bus(self, bus: QDBusConnection, service: str) -> bool:
        """Ask the owner of ``service`` to show itself; True when there is one."""
        from PySide6.QtDBus import QDBus, QDBusMessage

        call = QDBusMessage.createMethodCall(service, BUS_PATH, BUS_INTERFACE, "Activate")
        # BlockWithGui: a local event loop while waiting, as the owner may live in this
        # very thread (tests do that) and must get to run its own handler.
        reply = bus.call(call, QDBus.CallMode.BlockWithGui, self._timeout_ms)
        if reply.type() == QDBusMessage.MessageType.ReplyMessage:
            return True
        error = reply.errorName()
        if error in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ):
            return False  # its owner just quit
        # The name is owned, so a live process holds it, but it did not answer as it
        # should (in time): do not start a second copy.
        logger.warning("the running instance did not answer (%s: %s)", error, reply.errorMessage())
        return True

    def _release_bus(self) -> None:
        if self._bus is not None:
            self._bus.unregisterService(self._service)
            self._bus.unregisterObject(BUS_PATH)
            self._bus, self._service = None, ""
        if self._activation is not None:
            self._activation.deleteLater()
            self._activation = None
        # A connection of our own (a bus address: tests) stays open: PySide6 6.11 then
        # deadlocks in the next connectToBus, whose GIL the D-Bus thread needs to finish
        # deleting the disconnected one. The session bus is Qt's and shared anyway.

    # --- second instance ---------------------------------------------------------------

    def _hand_over(self, full: str) -> bool:
        """Ask a running instance to show itself; True when one is there."""
        from PySide6.QtNetwork import QLocalSocket  # not loaded on the bus way

        socket = QLocalSocket(self)
        try:
            socket.connectToServer(full)
            if not socket.waitForConnected(self._timeout_ms):
                error = socket.error()
                if error not in (
                    QLocalSocket.LocalSocketError.ServerNotFoundError,
                    QLocalSocket.LocalSocketError.ConnectionRefusedError,
                ):
                    logger.info("no running instance at %s (%s)", full, socket.errorString())
                return False
            socket.write(QByteArray(ACTIVATE))
            socket.flush()
            if not self._await_answer(socket):
                # It accepted the connection, so a live process holds the socket,
                # but it did not answer in time: do not start a second copy.
                logger.warning("the running instance did not answer within %d ms", self._timeout_ms)
            return True
        finally:
            socket.abort()
            socket.deleteLater()

    def _await_answer(self, socket: QLocalSocket) -> bool:
        # A nested loop rather than waitForReadyRead: the first instance may live in
        # this very thread (tests do that) and must get to run its own handler.
        loop = QEventLoop()
        received = bytearray()

        def read() -> None:
            received.extend(socket.readAll().data())
            if _ANSWER in received:
                loop.quit()

        socket.readyRead.connect(read)
        socket.disconnected.connect(loop.quit)
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        timer.start(self._timeout_ms)
        if socket.bytesAvailable():
            read()
        if _ANSWER not in received:
            loop.exec()
        timer.stop()
        return _ANSWER in received

    # --- first instance ----------------------------------------------------------------

    def _listen(self, full: str) -> bool:
        from PySide6.QtNetwork import QAbstractSocket, QLocalServer

        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(full):
            if server.serverError() != QAbstractSocket.SocketError.AddressInUseError:
                raise OSError(f"cannot listen on {full}: {server.errorString()}")
            # Nobody answered on it (we just tried, under the lock): a crashed
            # instance left it behind.
            logger.info("removing a stale instance socket %s", full)
            QLocalServer.removeServer(full)
            if not server.listen(full):
                raise OSError(f"cannot listen on {full}: {server.errorString()}")
        server.newConnection.connect(self._accept)
        self._server = server
        return True

    def _accept(self) -> None:
        server = self._server
        if server is None:
            return
        while server.hasPendingConnections():
            connection = server.nextPendingConnection()
            self._buffers[connection] = b""
            connection.readyRead.connect(lambda c=connection: self._read(c))
            connection.disconnected.connect(lambda c=connection: self._forget(c))
            if connection.bytesAvailable():
                self._read(connection)

    def _read(self, connection: QLocalSocket) -> None:
        if connection not in self._buffers:
            return
        data = self._buffers[connection] + connection.readAll().data()
        self._buffers[connection] = data
        if ACTIVATE in data:
            connection.write(QByteArray(_ANSWER))
            connection.flush()
            connection.disconnectFromServer()
            self.activation_requested.emit()
        elif len(data) > _MAX_REQUEST or (b"\n" in data):
            logger.info("ignoring an unknown request on the instance socket")
            connection.abort()

    def _forget(self, connection: QLocalSocket) -> None:
        self._buffers.pop(connection, None)
        connection.deleteLater()

    @staticmethod
    def _lock_path(full: str) -> str:
        if os.path.isabs(full):
            return full + ".lock"
        return str(Path(QDir.tempPath()) / f"{full}.lock")
