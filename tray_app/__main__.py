"""The composition root: ``tray-notifier [--headless] [--server URL] [--username NAME]``.

Paths and settings are resolved here and handed down; nothing below reads the
environment on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from tray_app import __version__, config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tray-notifier",
        description="Desktop notifications from a tray-notifier server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no window or tray icon: print each notification as one JSON line",
    )
    parser.add_argument(
        "--server", metavar="URL", help="server address, e.g. https://notify.example.com"
    )
    parser.add_argument("--username", metavar="NAME", help="the account to log in as")
    parser.add_argument(
        "--session-only",
        action="store_true",
        help="do not use the OS keyring: the login lasts until the app exits",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TRAY_NOTIFIER_LOG_LEVEL", "WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.headless:
        return run_gui(args)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")

    from tray_app.headless import EXIT_USAGE, HeadlessOptions, run_headless

    settings = config.Settings.load()
    server_url = (
        args.server or os.environ.get("TRAY_NOTIFIER_SERVER") or settings.server_url
    ).rstrip("/")
    username = args.username or (settings.username if server_url == settings.server_url else "")
    if not username:
        print("tray-notifier: which account? pass --username NAME", file=sys.stderr)
        return EXIT_USAGE
    if not server_url.startswith(("http://", "https://")):
        print(
            f"tray-notifier: {server_url!r} is not a server address; "
            "use one starting with http:// or https://",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = HeadlessOptions(
        server_url=server_url,
        username=username,
        data_dir=config.data_dir(),
        config_dir=config.config_dir(),
        session_only=args.session_only,
    )
    try:
        return asyncio.run(run_headless(options))
    except KeyboardInterrupt:
        return 0


def run_gui(args: argparse.Namespace) -> int:
    """The tray app: one instance per user, on a qasync loop, until the user quits."""
    import getpass
    import signal

    import qasync
    from PySide6.QtWidgets import QApplication

    from tray_app.logs import configure_logging
    from tray_app.ui.app import AppOptions, TrayApp
    from tray_app.ui.badge import app_icon
    from tray_app.ui.single_instance import SingleInstance

    log_file = configure_logging(args.log_level if args.log_level != "WARNING" else "INFO")
    app = QApplication(sys.argv[:1])
    app.setApplicationName("tray-notifier")
    app.setApplicationDisplayName("Tray Notifier")
    app.setDesktopFileName("tray-notifier")
    app.setQuitOnLastWindowClosed(False)  # closing a window leaves the app in the tray
    app.setWindowIcon(app_icon())
    instance = SingleInstance()
    if not instance.claim(f"tray-notifier-{getpass.getuser()}"):
        print("tray-notifier: already running; brought it forward", file=sys.stderr)
        return 0
    settings = config.Settings.load()
    server_url = args.server or os.environ.get("TRAY_NOTIFIER_SERVER") or settings.server_url
    options = AppOptions(
        server_url=server_url.rstrip("/"),
        username=args.username or settings.username,
        data_dir=config.data_dir(),
        config_dir=config.config_dir(),
        password=os.environ.get("TRAY_NOTIFIER_PASSWORD") or None,
        session_only=args.session_only,
    )
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    tray = TrayApp(options)
    instance.activation_requested.connect(tray.activate)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(tray.quit))
    # Python runs its signal handlers only when it gets control; an idle Qt loop may
    # not give it any, so a light tick lets SIGTERM through within a quarter second.
    from PySide6.QtCore import QTimer

    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    logging.getLogger(__name__).info("started; logging to %s", log_file)
    with loop:
        loop.run_until_complete(tray.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
