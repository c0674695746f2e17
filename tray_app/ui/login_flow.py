"""The login window and the log-in it asks for, up to a logged-in account session.

The window (``login.LoginDialog``) is passive and imported when first shown: an app
that restores its saved login never opens it (B8 idle RSS).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from tray_app.account import AccountSession
from tray_app.net import NetError
from tray_app.ui.account_view import bring_forward

if TYPE_CHECKING:
    from tray_app.ui.login import LoginDialog


class LoginFlow(QObject):
    """Shows the login window and logs in with what it submits.

    Args:
        new_session: Makes the session to log in with, from the server address, the
            username and whether to remember the login (the app records that choice).
        spawn: Runs a coroutine in the background (the app's task set).
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
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._new_session = new_session
        self._spawn = spawn
        self.dialog: LoginDialog | None = None
        self._locked_server: str | None = None

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
            self.dialog = dialog
            self._locked_server = server_url if server_locked else None
        if message:
            self.dialog.show_error(message)
        bring_forward(self.dialog)

    async def _log_in(self, server: str, username: str, password: str, remember: bool) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        dialog.set_busy(True)
        server = self._locked_server or server  # shown locked; nothing else is allowed
        session = self._new_session(server.rstrip("/"), username, remember)
        try:
            await session.log_in(password)
        except NetError as error:
            await session.close()
            dialog.set_busy(False)
            dialog.show_error(error.user_message)
            return
        dialog.set_busy(False)
        dialog.accept()
        self.dialog = None
        self.logged_in.emit(session)
