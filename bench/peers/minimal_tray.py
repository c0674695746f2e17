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

SIGTERM ends it (Python's default action; there is nothing to save).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from tray_app.ui.badge import app_icon

TOKEN_VARIABLE = "MINIMAL_TRAY_TOKEN"
LIVE_LINE = "live"


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
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("minimal-tray")
    app.setQuitOnLastWindowClosed(False)
    tray = QSystemTrayIcon(app_icon())
    tray.setToolTip("minimal tray")
    tray.show()
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
