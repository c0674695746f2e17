"""The composition root: ``tray-notifier [--headless] [--server URL] [--username NAME]``.

Paths and settings are resolved here and handed down; nothing below reads the
environment on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tray_app import __version__

if TYPE_CHECKING:
    # Imported where they are first needed: in the tray app, after the icon is shown
    # (asyncio brings ssl, subprocess and concurrent.futures with it, ~30 ms; issue 20).
    import asyncio
    import concurrent.futures

# Enough for a keyring prompt the user leaves open plus a host name lookup or two.
IO_THREADS = 4


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
    # The keyring helper (tray_app/store/vault_helper.py): the frozen bundle runs itself
    # with this to reach the keyring from a short-lived process. Not for users.
    parser.add_argument("--vault-helper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TRAY_NOTIFIER_LOG_LEVEL", "WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.vault_helper:  # before Qt, logging or anything else of the app's
        from tray_app.store.vault_helper import main as vault_helper

        return vault_helper()
    # What libraries import and the app never uses, imported only if something does.
    from tray_app.deferred import defer_rarely_used_modules

    defer_rarely_used_modules()
    if not args.headless:
        return run_gui(args)
    from tray_app import config

    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    # At DEBUG, websockets logs its handshake headers: "Authorization: Bearer <token>".
    from tray_app.logs import RedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())

    from tray_app.account import server_address
    from tray_app.headless import EXIT_USAGE, HeadlessOptions, run_headless
    from tray_app.managed import load_managed_config

    settings = config.Settings.load()
    managed = load_managed_config()
    chosen = args.server or os.environ.get("TRAY_NOTIFIER_SERVER") or settings.server_url
    server_url = server_address(chosen, managed)
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
    from tray_app.preferences import SavedPreferences

    options = HeadlessOptions(
        server_url=server_url,
        username=username,
        data_dir=config.data_dir(),
        config_dir=config.config_dir(),
        session_only=args.session_only,
        transport=managed.transport(os.environ),
        remember_refusal=managed.remember_me_refusal(SavedPreferences.load(config.config_dir())),
    )
    import asyncio

    try:
        return asyncio.run(run_headless(options))
    except KeyboardInterrupt:
        return 0


def run_gui(args: argparse.Namespace) -> int:
    """The tray app: one instance per user, on a qasync loop, until the user quits.

    The tray icon comes first (issue 20): Qt, the icon with the last unread count the
    local store knows (greyed until connected) and nothing else; only once it is on the
    bus are the rest of the app, the network stack and the keyring loaded.
    """
    import getpass

    from PySide6.QtWidgets import QApplication

    from tray_app import config
    from tray_app.ui.pyside_sources import stop_keeping_module_sources

    stop_keeping_module_sources()  # before the rest of the app is imported (13.7 MiB)

    from tray_app.store.glance import last_unread_count
    from tray_app.ui.badge import app_icon
    from tray_app.ui.single_instance import SingleInstance
    from tray_app.ui.tray import TrayController, TrayState

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
    username = args.username or settings.username
    data_dir = config.data_dir()
    tray = TrayController(
        state=TrayState.starting(
            username=username or None,
            unread=last_unread_count(data_dir, server_url, username),
        )
    )
    tray.show()
    # The registration is on the bus before the imports below hold this thread.
    app.processEvents()
    if username and not args.session_only:
        # The keyring's answer (and the saved login) is read by the helper process while
        # this one loads the rest of the app.
        from tray_app.store.secrets import start_reading_early

        start_reading_early(server_url.rstrip("/"), username)

    # The log file after the icon too (platformdirs, logging.handlers): until here only a
    # warning could be logged, and Python's last-resort handler prints it to stderr.
    from tray_app.logs import configure_logging

    log_file = configure_logging(args.log_level if args.log_level != "WARNING" else "INFO")
    import asyncio

    import qasync

    from tray_app.ui.app import AppOptions, TrayApp

    options = AppOptions(
        server_url=server_url.rstrip("/"),
        username=username,
        data_dir=data_dir,
        config_dir=config.config_dir(),
        password=os.environ.get("TRAY_NOTIFIER_PASSWORD") or None,
        session_only=args.session_only,
    )
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    loop.set_default_executor(io_executor())
    tray_app = TrayApp(options, tray=tray)
    instance.activation_requested.connect(tray_app.activate)
    wakeup = quit_on_signals(loop, tray_app.quit)
    logging.getLogger(__name__).info("started; logging to %s", log_file)
    try:
        with loop:
            loop.run_until_complete(tray_app.run())
    finally:
        if wakeup is not None:
            wakeup.close()
    return 0


def quit_on_signals(
    loop: asyncio.AbstractEventLoop, quit_app: Callable[[], None]
) -> SignalWakeup | None:
    """Make SIGTERM (a session logout, a service manager) and SIGINT (Ctrl+C) quit the app.

    The loop's own signal handling is used where it has some (Unix): the C-level handler
    writes the signal's number to the loop's self-pipe (``signal.set_wakeup_fd``), which
    qasync watches with a QSocketNotifier, so an idle app sleeps until a signal comes
    instead of waking up on a timer to give Python's handlers a chance to run. Elsewhere
    (qasync's Windows loop) Python's handlers are installed and a :class:`SignalWakeup`
    wakes Qt for them.

    Returns:
        The SignalWakeup, which must be kept while the loop runs; None where the loop
        handles signals itself.
    """
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for signum in signals:
            loop.add_signal_handler(signum, quit_app)
    except NotImplementedError:
        pass
    else:
        return None
    wakeup = SignalWakeup()
    for signum in signals:
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(quit_app))
    return wakeup


class SignalWakeup:
    """Wakes an idle Qt event loop when a signal arrives, so Python's handler runs at once.

    CPython runs a signal handler only when the interpreter next gets control, which an
    idle Qt loop does not give it. Here the C-level handler writes the signal's number to
    one end of a socket pair (``signal.set_wakeup_fd``) and a QSocketNotifier on the other
    end calls back into Python. One per process: it replaces any earlier wakeup file.
    """

    def __init__(self) -> None:
        from PySide6.QtCore import QSocketNotifier

        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._drain)

    def _drain(self) -> None:
        # Reading is all there is to do: the handlers run as this callback returns.
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(512):
                pass

    def close(self) -> None:
        """Stop waking Qt; the wakeup file in place before comes back."""
        self._notifier.setEnabled(False)
        signal.set_wakeup_fd(self._previous)
        self._reader.close()
        self._writer.close()


def io_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The loop's default executor: blocking calls (keyring, host name lookups) run here.

    qasync's own default starts ten QThreads at once, for an app that needs a thread a
    few times a session; this one starts a thread only when a call finds none idle.
    """
    import concurrent.futures

    return concurrent.futures.ThreadPoolExecutor(
        max_workers=IO_THREADS, thread_name_prefix="tray-io"
    )


if __name__ == "__main__":
    sys.exit(main())
