"""One running app per user: a second launch hands over to the first and exits.

The first instance listens on a per-user :class:`QLocalServer`. A later one
connects, sends ``activate`` and waits (at most two seconds) for ``ok``; the
first instance answers and emits ``activation_requested`` so the app can show
itself. A socket file left behind by a crashed instance refuses connections;
it is removed and claimed.

The whole claim runs under a :class:`QLockFile` next to the socket, so two
instances started at the same moment cannot both decide the socket is stale
(and a lock left by a crash is detected by Qt through its dead process id).

On Linux the socket lives in ``$XDG_RUNTIME_DIR`` (private to the user) when
there is one, else in the temporary directory with the user id in its name.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from pathlib import Path

from PySide6.QtCore import QByteArray, QDir, QEventLoop, QLockFile, QObject, QTimer, Signal
from PySide6.QtNetwork import QAbstractSocket, QLocalServer, QLocalSocket

logger = logging.getLogger(__name__)

__all__ = ["ACTIVATE", "HANDOVER_TIMEOUT_MS", "SingleInstance", "server_name"]

ACTIVATE = b"activate\n"
_ANSWER = b"ok\n"
_MAX_REQUEST = 256  # bytes: anything longer is not one of ours
HANDOVER_TIMEOUT_MS = 2000
_MAX_SOCKET_PATH = 100


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
        self, parent: QObject | None = None, *, timeout_ms: int = HANDOVER_TIMEOUT_MS
    ) -> None:
        """Create an instance guard that has not claimed anything yet.

        Args:
            parent: the Qt parent.
            timeout_ms: how long a second launch waits for the first one's answer.
        """
        super().__init__(parent)
        self._timeout_ms = timeout_ms
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytes] = {}

    @property
    def listening(self) -> bool:
        """Whether this object holds the instance's server."""
        return self._server is not None and self._server.isListening()

    @property
    def full_server_name(self) -> str:
        """The listening socket's full path (or pipe name); empty when not listening."""
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
        if self._server is not None:
            return True
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
        """Stop being the running instance (removes the socket file)."""
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None

    # --- second instance ---------------------------------------------------------------

    def _hand_over(self, full: str) -> bool:
        """Ask a running instance to show itself; True when one is there."""
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
