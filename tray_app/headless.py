"""``tray-notifier --headless``: the engine with no Qt, one JSON line per notification.

Useful on servers, in scripts and in tests. Standard output carries only the
notification lines; what happens to the connection goes to standard error in
plain words.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import msgspec

from tray_app import config
from tray_app.account import AccountSession
from tray_app.attention import silence_words
from tray_app.engine import (
    AttentionChanged,
    ConnectionStateChanged,
    Engine,
    EngineEvent,
    HistoryReset,
    NotificationAdded,
)
from tray_app.net import (
    Backoff,
    ConnectionState,
    InvalidCredentials,
    LoginRequired,
    NetError,
    StateChange,
    Transport,
)
from tray_app.store import StoredNotification, TokenVault, open_token_vault

logger = logging.getLogger(__name__)

PASSWORD_VARIABLE = "TRAY_NOTIFIER_PASSWORD"

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOGIN = 3


class HeadlessOptions(msgspec.Struct, frozen=True):
    server_url: str
    username: str
    data_dir: Path
    config_dir: Path
    session_only: bool = False
    # Trust and proxy, for the REST client and the socket alike.
    transport: Transport = msgspec.field(default_factory=Transport)
    # Why the login must not be kept in the keyring (ManagedConfig.remember_me_refusal:
    # IT's policy, then the user's own choice), or None.
    remember_refusal: str | None = None


class UsageError(Exception):
    """Something the user must fix before the app can run (missing username, password)."""


def notification_line(
    notification: StoredNotification, *, live: bool, interrupt: bool = False
) -> str:
    """The JSON line printed for one notification (pure, for tests). ``interrupt``: the
    user's attention settings let it interrupt now (a live, unread one that is not muted,
    held back by do-not-disturb or quiet hours, or below the minimum priority)."""
    return json.dumps(
        {
            "seq": notification.seq,
            "id": notification.id,
            "title": notification.title,
            "message": notification.message,
            "priority": notification.priority,
            "event_type": notification.event_type,
            "url": notification.url,
            "created_at": notification.created_at.isoformat(),
            "project": (
                {"id": notification.project_id, "title": notification.project_title}
                if notification.project_id is not None
                else None
            ),
            "actor": (notification.actor or {}).get("username"),
            "is_read": notification.is_read,
            "arrival": "live" if live else "catch_up",
            "interrupt": interrupt,
        },
        ensure_ascii=False,
    )


# How long the keyring may take to open before the client says it is waiting for it.
KEYRING_NOTICE_SECONDS = 1.0
KEYRING_WAITING = (
    "waiting for the keyring to be unlocked (answer its prompt, or run with --session-only)"
)


def _say(err: TextIO, text: str) -> None:
    print(f"tray-notifier: {text}", file=err, flush=True)


def _read_password(username: str, server_url: str) -> str:
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"Password for {username} at {server_url}: ")
    raise UsageError(
        f"no saved login for {username} at {server_url}: set {PASSWORD_VARIABLE} or run "
        "this in a terminal to type the password"
    )


async def _log_in(session: AccountSession, options: HeadlessOptions, err: TextIO) -> None:
    """A working session: the saved refresh token if it is still good, else the password.

    A server that cannot be reached is waited for (with backoff) rather than an exit:
    a headless notifier started before its server should simply catch up later."""
    if await session.restore():
        try:
            await session.api.access_token()
            return
        except LoginRequired:
            _say(err, "the saved login has expired; logging in again")
        except NetError as error:
            # Offline with a saved login: run anyway, the session retries.
            _say(err, f"{error.user_message} (using the saved login)")
            return
    password = _read_password(options.username, options.server_url)
    backoff = Backoff()
    while True:
        try:
            await session.log_in(password)
            return
        except InvalidCredentials:
            raise
        except NetError as error:
            delay = backoff.next_delay()
            _say(err, f"{error.user_message} Retrying in {max(1, round(delay))} s.")
            await asyncio.sleep(delay)


async def run_headless(
    options: HeadlessOptions, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Log in, catch up and print notifications until SIGINT/SIGTERM; the exit code."""
    # Signals first: a SIGTERM while the server is still unreachable (a login retry, a
    # password prompt) is as much a request to stop as one while connected.
    loop = asyncio.get_running_loop()
    this_task = asyncio.current_task()
    running: list[Engine] = []
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        if running:
            stopping.append(loop.create_task(running[0].stop()))
        elif this_task is not None:
            this_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C only
            loop.add_signal_handler(signum, stop)
    try:
        return await _run(options, out=out, err=err, running=running)
    except asyncio.CancelledError:
        return EXIT_OK


async def _open_vault(options: HeadlessOptions, err: TextIO) -> TokenVault:
    """The keyring's vault; says so when it waits (a locked keyring's unlock prompt)."""
    opening = asyncio.ensure_future(
        open_token_vault(
            session_only=options.remember_refusal is not None,
            preload=(options.server_url, options.username),
        )
    )
    done, _ = await asyncio.wait({opening}, timeout=KEYRING_NOTICE_SECONDS)
    if not done:
        _say(err, KEYRING_WAITING)
    return await opening


async def _run(options: HeadlessOptions, *, out: TextIO, err: TextIO, running: list[Engine]) -> int:
    if options.session_only:
        vault = TokenVault.in_memory()  # --session-only never touches the keyring
    else:
        vault = await _open_vault(options, err)
    if options.remember_refusal is not None and not options.session_only:
        _say(err, f"{options.remember_refusal} This login lasts until the client stops.")
    elif vault.session_only and not options.session_only:
        _say(err, vault.status.reason)

    # The vault is in memory when the login must not be kept (--session-only, or the
    # remember-me rule said so above): whatever it keeps ends with this process.
    session = AccountSession(
        server_url=options.server_url,
        username=options.username,
        vault=vault,
        transport=options.transport,
    )
    try:
        try:
            await _log_in(session, options, err)
        except InvalidCredentials as error:
            _say(err, error.user_message)
            return EXIT_LOGIN
        except UsageError as error:
            _say(err, str(error))
            return EXIT_USAGE
        opened = session.open(
            data_dir=options.data_dir,
            config_dir=options.config_dir,
            settings=config.Settings.load(options.config_dir),
        )
        database, engine = opened.database, opened.engine
        if database.rebuilt:
            _say(err, f"the local history was damaged; moved it to {database.moved_aside_to}")
        login_error: list[NetError] = []
        last_said: list[str] = [""]
        last_attention: list[str] = ["interruptions on"]

        def show(event: EngineEvent) -> None:
            match event:
                case NotificationAdded(notification=row, live=live):
                    interrupt = (
                        live
                        and not row.is_read
                        and engine.attention.may_interrupt(
                            priority=row.priority,
                            project_id=row.project_id,
                            event_type=row.event_type,
                            now=datetime.now(UTC),
                        )
                    )
                    line = notification_line(row, live=live, interrupt=interrupt)
                    print(line, file=out, flush=True)
                case AttentionChanged(attention=attention):
                    silence = attention.silence(datetime.now(UTC))
                    words = (
                        "interruptions on"
                        if silence is None
                        else silence_words(silence, datetime.now(UTC))
                    )
                    if words != last_attention[0]:
                        last_attention[0] = words
                        _say(err, words)
                case ConnectionStateChanged(change=change):
                    words = _describe(change)
                    if words != last_said[0]:  # one line per change, not per retry
                        last_said[0] = words
                        _say(err, words)
                    if change.state is ConnectionState.LOGIN_REQUIRED and change.error:
                        login_error.append(change.error)
                case HistoryReset():
                    _say(err, "the server's data was reset; fetching the history again")
                case _:
                    pass

        engine.subscribe(show)
        running.append(engine)
        await session.run()
        if login_error:
            _say(err, login_error[0].user_message)
            return EXIT_LOGIN
        return EXIT_OK
    finally:
        await session.close()


def _describe(change: StateChange) -> str:
    state, error = change.state, change.error
    words = {
        ConnectionState.CONNECTING: "connecting",
        ConnectionState.CONNECTED: "connected",
        ConnectionState.RECONNECTING: "reconnecting",
        ConnectionState.OFFLINE: "offline",
        ConnectionState.LOGIN_REQUIRED: "login required",
        ConnectionState.STOPPED: "stopped",
    }[state]
    if error is not None and state is not ConnectionState.CONNECTED:
        return f"{words} ({error.user_message})"
    if state is ConnectionState.CONNECTED and change.fallback_reason:
        return f"{words} ({change.fallback_reason})"
    return words
