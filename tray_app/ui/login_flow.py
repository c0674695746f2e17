"""The login window and the log-in it asks for, up to a logged-in account session.

The window (``login.LoginDialog``) is passive and imported when first shown: an app
that restores its saved login never opens it (B8 idle RSS).

A server that cannot be reached (refused, not found, timed out) is tried again with
backoff for as long as the window is open and the user changes nothing: someone who
starts the app before the server or the VPN is up gets logged in once it is, without
pressing "Log in" again and again. Any other answer (a wrong password above all) is
final until the user submits again. The rules (:func:`retries`, :func:`field_at_fault`,
:func:`retry_message`) are Qt-free.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from tray_app.account import AccountSession
from tray_app.net import Backoff, NetError
from tray_app.net.errors import (
    AccountDisabled,
    InvalidCredentials,
    NotOurServer,
    ServerUnreachable,
    TlsFailure,
)
from tray_app.store import StoreError
from tray_app.ui.account_view import bring_forward

if TYPE_CHECKING:
    from tray_app.ui.login import LoginDialog, LoginField

# The longest wait between two tries. Longer than the engine's 10 s (tray_app/net/
# backoff.py): a login window left open on a server that is down for the day need not
# knock every few seconds; someone waiting for it can press "Log in".
RETRY_CAP = 30.0

_UNREACHABLE_REASONS = {
    "connection_refused": "nothing answers there",
    "server_not_found": "the name was not found",
    "server_timeout": "it did not answer in time",
}


def login_backoff() -> Backoff:
    """The delays between automatic tries: full jitter, bounds 2, 4, 8, 16, then 30 s."""
    return Backoff(base=2.0, cap=RETRY_CAP)


def retries(error: NetError) -> bool:
    """Whether a failed login is tried again by itself: only when the server could not
    be reached at all. A server that answered (wrong password, disabled account,
    throttled, broken) would answer the same again, or must not be hammered."""
    return isinstance(error, ServerUnreachable)


def field_at_fault(error: NetError | StoreError) -> LoginField | None:
    """The field a failed login points at (it gets the focus), or None when no field
    would fix it (a throttled or failing server, a keyring problem)."""
    if isinstance(error, InvalidCredentials):
        return "password"
    if isinstance(error, AccountDisabled):
        return "username"
    if isinstance(error, ServerUnreachable | TlsFailure | NotOurServer):
        return "server"
    return None


def retry_message(server: str, error: NetError, seconds: int | None) -> str:
    """What the window says while it waits to try ``server`` again.

    Args:
        server: the address being logged in to.
        error: why the last try failed.
        seconds: whole seconds until the next try; None while that try runs.
    """
    reason = _UNREACHABLE_REASONS.get(error.code)
    why = f" ({reason})" if reason else ""
    when = "trying again…" if seconds is None else f"retrying in {max(1, seconds)} s."
    return f"Cannot reach {server}{why}; {when}"


class LoginFlow(QObject):
    """Shows the login window and logs in with what it submits.

    One login runs at a time, as one task: submitting again replaces it; the user
    changing a field or closing the window cancels it, and with it any retry.

    Args:
        new_session: Makes the session to log in with, from the server address, the
            username and whether to remember the login (the app records that choice).
        spawn: Runs a coroutine in the background (the app's task set).
        retry_backoff: Makes the delay policy for one login's automatic tries (tests
            pass one with short delays).
        parent: The owning QObject.

    Signals:
        logged_in(object): the ``AccountSession`` now logged in; the window is closed.
    """

    logged_in = Signal(object)

    def __init__(
        self,
        *,
        new_session: Callable[[str, str, bool], AccountSession],
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        retry_backoff: Callable[[], Backoff] = login_backoff,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._new_session = new_session
        self._spawn = spawn
        self._retry_backoff = retry_backoff
        self.dialog: LoginDialog | None = None
        self._locked_server: str | None = None
        self._job: asyncio.Task[None] | None = None
        self._waiting = False

    @property
    def retrying(self) -> bool:
        """Whether a login is waiting for, or running, an automatic try."""
        return self._waiting and self._job is not None and not self._job.done()

    def show(
        self,
        *,
        server_url: str,
        username: str,
        server_locked: bool,
        remember_me: bool,
        keyring_reason: str | None,
        message: str | None = None,
    ) -> None:
        """Bring the window forward (made with these values if it is not open), with
        ``message`` as its error if given.

        Args:
            server_url: The address to offer.
            username: The username to offer.
            server_locked: IT fixed the address: the window shows it locked, and only
                it is used whatever is submitted.
            remember_me: Whether "Remember me" starts ticked.
            keyring_reason: Why the login cannot be remembered here, or None.
            message: An error to show.
        """
        if self.dialog is None:
            from tray_app.ui.login import LoginDialog

            dialog = LoginDialog(
                server_url=server_url,
                username=username,
                server_locked=server_locked,
                remember_me=remember_me,
                keyring_reason=keyring_reason,
            )
            dialog.login_submitted.connect(
                lambda server, user, password, remember: self._spawn(
                    self._log_in(server, user, password, remember)
                )
            )
            # A try that goes on with values the user has since changed, or after the
            # window closed, would log in as someone they no longer asked for.
            dialog.edited.connect(self._stop)
            dialog.cancelled.connect(self._closed)
            self.dialog = dialog
            self._locked_server = server_url if server_locked else None
        if message:
            self.dialog.show_error(message)
        bring_forward(self.dialog)

    def _stop(self) -> None:
        job, self._job = self._job, None
        self._waiting = False
        if job is not None and not job.done():
            job.cancel()

    def _closed(self) -> None:
        self._stop()
        if self.dialog is not None:
            # Shown again later, it must not look busy or count down to nothing.
            self.dialog.set_busy(False)
            self.dialog.clear_message()

    async def _log_in(self, server: str, username: str, password: str, remember: bool) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        previous = self._job
        self._stop()
        self._job = asyncio.current_task()
        dialog.set_busy(True)
        if previous is not None:
            await asyncio.wait({previous})  # its session is closed before a new one opens
        server = (self._locked_server or server).rstrip("/")
        session = self._new_session(server, username, remember)
        backoff = self._retry_backoff()
        logged_in = False
        try:
            while True:
                try:
                    await session.log_in(password)
                except NetError as error:
                    if not retries(error):
                        dialog.show_error(error.user_message, field=field_at_fault(error))
                        return
                    await self._wait_to_retry(dialog, server, error, backoff)
                    continue
                except StoreError as error:  # the keyring failed while keeping the login
                    dialog.show_error(str(error), field=field_at_fault(error))
                    return
                logged_in = True
                break
        finally:
            if self._job is asyncio.current_task():
                self._job = None
                self._waiting = False
            if not logged_in:
                await session.close()
        dialog.set_busy(False)
        dialog.accept()
        self.dialog = None
        self.logged_in.emit(session)

    async def _wait_to_retry(
        self, dialog: LoginDialog, server: str, error: NetError, backoff: Backoff
    ) -> None:
        """Count down to the next try in the window; the fields stay editable meanwhile,
        and an edit cancels the wait (``_stop``)."""
        first = not self._waiting
        self._waiting = True
        loop = asyncio.get_running_loop()
        delay = backoff.next_delay()
        deadline = loop.time() + delay
        seconds = max(1, math.ceil(delay))
        while seconds > 0:
            # Announced and focused once per login: a countdown read out every second,
            # or the focus pulled back each round, would drown the user.
            dialog.show_error(
                retry_message(server, error, seconds),
                field=field_at_fault(error) if first else None,
                announce=first,
            )
            first = False
            # Counted down, not recomputed from the clock: a timer that fires a
            # millisecond early would otherwise show the same second twice.
            await asyncio.sleep(max(0.0, deadline - (seconds - 1) - loop.time()))
            seconds -= 1
        dialog.show_error(retry_message(server, error, None), field=None, announce=False)
