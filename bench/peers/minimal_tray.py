"""The lower bound of B8: the smallest PySide6 tray app, with the product's icon.

``python -m bench.peers.minimal_tray`` shows a ``QSystemTrayIcon`` with
``tray_app.ui.badge.app_icon()`` (the same PNGs from ``resources/icons`` the
product ships) and runs Qt's event loop: no store, no network, no timers. Its
start-up time, resident memory and wakeups are what any PySide6 tray app pays.

With ``--ws-url URL`` (and the access token in the environment variable
``MINIMAL_TRAY_TOKEN``) it is also the lower bound of "frame received to toast
requested": a ``websockets`` sync client in one thread reads the product's socket
(``Authorization: Bearer``, no compression, as the product's client connects),
prints ``live`` once the server's ``hello`` arrived, and hands every
``notification_created`` frame's title and message to the GUI thread through a
queued Qt signal, which shows it with ``QSystemTrayIcon.showMessage`` (under
xfce4-panel a ``Notify`` call on the session bus). It sends nothing itself: no
resume, no heartbeats of its own (the library answers the server's pings).

With ``--list-window`` it is also the lower bound of B8's "RSS growth after use": each
SIGUSR1 opens a window like the smallest history a notifier could have (a search line
over a list of ``LIST_ROWS`` rows in a ``QListView``), which Ctrl+W closes and deletes;
then, as the product does after its history closes, garbage is collected and glibc's
freed heap handed back. What its resident size keeps after that is Qt's own: the
library pages and caches that showing such a window touches.

SIGTERM ends it (Python's default action; there is nothing to save).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from PySide6.QtCore import (
    QObject,
    QSocketNotifier,
    QStringListModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QLineEdit,
    QListView,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from tray_app.ui.badge import app_icon

TOKEN_VARIABLE = "MINIMAL_TRAY_TOKEN"
LIVE_LINE = "live"
LIST_TITLE = "Minimal list window"
LIST_ROWS = 200
_kept: list[object] = []  # the wakeup pipe and its notifier, for the process's life


class FrameRelay(QObject):
    """Carries a frame's title and message from the socket thread to the GUI thread."""

    notification = Signal(str, str)


class TrayToaster(QObject):
    """Lives in the GUI thread, so the relay's signal reaches it queued, as Qt requires
    for widgets touched from another thread."""

    def __init__(self, tray: QSystemTrayIcon) -> None:
        super().__init__()
        self._tray = tray

    @Slot(str, str)
    def show(self, title: str, message: str) -> None:
        self._tray.showMessage(title, message)


def _release_freed_memory() -> None:
    """What the product does after its history window closes (tray_app/memory.py),
    written out here so the peer imports nothing of the product's beyond its icon."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


def open_list_window() -> QWidget:
    """A search line over ``LIST_ROWS`` rows; Ctrl+W closes and deletes it."""
    window = QWidget()
    window.setWindowTitle(LIST_TITLE)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    layout = QVBoxLayout(window)
    layout.addWidget(QLineEdit(placeholderText="Search"))
    view = QListView()
    view.setModel(QStringListModel([f"Notification {n}" for n in range(LIST_ROWS)], view))
    layout.addWidget(view)
    _kept.append(window)  # Python's reference keeps the window; closing lets it go

    def close() -> None:
        window.close()  # deleted by Qt (WA_DeleteOnClose), and let go here
        _kept.remove(window)
        QTimer.singleShot(0, _release_freed_memory)

    QShortcut(QKeySequence(QKeySequence.StandardKey.Close), window, close)
    window.resize(480, 600)
    window.show()
    return window


def open_list_window_on_sigusr1(app: QApplication) -> QSocketNotifier:
    """Open a list window on every SIGUSR1 (Qt's loop hears it through a wakeup pipe)."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    signal.signal(signal.SIGUSR1, lambda _number, _frame: None)  # the wakeup byte does it
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, app)

    def woken() -> None:
        with contextlib.suppress(BlockingIOError):
            for number in reader.recv(64):
                if number == signal.SIGUSR1:
                    open_list_window()

    notifier.activated.connect(woken)
    _kept.extend((reader, writer, notifier))
    return notifier


def read_socket(ws_url: str, token: str, relay: FrameRelay) -> None:
    """Read frames until the socket closes; relay each notification to the GUI thread."""
    # Imported here so that the icon-only mode's memory holds no WebSocket library.
    from websockets.sync.client import connect

    with connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        open_timeout=30,
    ) as socket:
        for raw in socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "hello":
                print(LIVE_LINE, flush=True)
            elif kind == "notification_created":
                payload = frame.get("payload", {})
                relay.notification.emit(
                    str(payload.get("title", "")), str(payload.get("message", ""))
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minimal_tray", description=__doc__)
    parser.add_argument("--ws-url", help="also toast every notification_created frame")
    parser.add_argument(
        "--list-window", action="store_true", help="open a list window on every SIGUSR1"
    )
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("minimal-tray")
    app.setQuitOnLastWindowClosed(False)
    tray = QSystemTrayIcon(app_icon())
    tray.setToolTip("minimal tray")
    tray.show()
    if args.list_window:
        open_list_window_on_sigusr1(app)
    relay = FrameRelay()
    toaster = TrayToaster(tray)
    if args.ws_url:
        token = os.environ.get(TOKEN_VARIABLE, "")
        relay.notification.connect(toaster.show)
        threading.Thread(
            target=read_socket, args=(args.ws_url, token, relay), daemon=True, name="socket"
        ).start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
