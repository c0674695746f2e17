"""The login window's log-in (tray_app/ui/login_flow.py), against the real demo server on
a qasync loop (offscreen Qt), driven through the window's own submit signal and fields;
and its retry of a server that cannot be reached, on a real closed port that a real
server then starts listening on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest

from tests.fixtures.services import RunningServer, ServerFactory, free_port
from tray_app.account import AccountSession
from tray_app.net import Backoff, Transport
from tray_app.net.errors import (
    AccountDisabled,
    InvalidCredentials,
    NetError,
    NotOurServer,
    ProxyFailure,
    RateLimited,
    ServerFailure,
    ServerUnreachable,
    TlsFailure,
)
from tray_app.store import TokenVault
from tray_app.store.secrets import KeyringUnavailable
from tray_app.tasks import BackgroundTasks
from tray_app.ui.login import LoginDialog, LoginField
from tray_app.ui.login_flow import (
    RETRY_CAP,
    LoginFlow,
    field_at_fault,
    login_backoff,
    retries,
    retry_message,
)

WAIT = 20.0
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def _run(scenario: object) -> None:
    # As the app does: a window that closes (the login, once logged in) must not end it.
    application = QGuiApplication.instance()
    assert isinstance(application, QGuiApplication)
    quit_on_last = application.quitOnLastWindowClosed()
    application.setQuitOnLastWindowClosed(False)
    try:
        with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
            runner.run(scenario)  # type: ignore[arg-type]
    finally:
        application.setQuitOnLastWindowClosed(quit_on_last)


def _session(server: str, username: str, remember: bool) -> AccountSession:
    return AccountSession(
        server_url=server,
        username=username,
        vault=TokenVault.in_memory(),
        transport=Transport(),
        remember=lambda: remember,
    )


def _show(flow: LoginFlow, server: RunningServer, *, locked: bool) -> LoginDialog:
    flow.show(
        server_url=server.url,
        username="alice",
        server_locked=locked,
        remember_me=False,
        keyring_reason=None,
    )
    assert flow.dialog is not None
    assert flow.dialog.isVisible()
    return flow.dialog


def test_a_locked_server_is_the_one_logged_in_to_whatever_is_submitted(
    qtbot: object, demo_server: RunningServer
) -> None:
    made: list[tuple[str, str, bool]] = []

    def new_session(server: str, username: str, remember: bool) -> AccountSession:
        made.append((server, username, remember))
        return _session(server, username, remember)

    async def scenario() -> None:
        tasks = BackgroundTasks()
        flow = LoginFlow(new_session=new_session, spawn=tasks.spawn)
        logged_in: asyncio.Future[AccountSession] = asyncio.get_running_loop().create_future()
        flow.logged_in.connect(logged_in.set_result)
        dialog = _show(flow, demo_server, locked=True)
        elsewhere = f"http://127.0.0.1:{free_port()}/"
        dialog.login_submitted.emit(elsewhere, "alice", "demo", True)
        async with asyncio.timeout(WAIT):
            session = await logged_in
        assert made == [(demo_server.url.rstrip("/"), "alice", True)]
        assert session.server_url == demo_server.url.rstrip("/")
        assert flow.dialog is None  # closed once logged in
        await session.close()

    _run(scenario())


def test_a_refused_login_says_why_and_keeps_the_window(
    qtbot: object, demo_server: RunningServer
) -> None:
    async def scenario() -> None:
        attempts: list[asyncio.Task[object]] = []

        def spawn(coroutine: Coroutine[Any, Any, object]) -> None:
            attempts.append(asyncio.get_running_loop().create_task(coroutine))

        flow = LoginFlow(new_session=_session, spawn=spawn)
        emitted: list[object] = []
        flow.logged_in.connect(emitted.append)
        dialog = _show(flow, demo_server, locked=False)
        dialog.login_submitted.emit(demo_server.url, "alice", "not-the-password", False)
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*attempts)  # the log-in the window asked for, to its end
        assert emitted == []
        assert flow.dialog is dialog  # still open, saying why
        assert not dialog.busy
        assert dialog.error_label.text()
        assert dialog.isVisible()

    _run(scenario())


# --- the rules, without Qt ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried", "field"),
    [
        (ServerUnreachable(code="connection_refused"), True, "server"),
        (ServerUnreachable(code="server_not_found"), True, "server"),
        (ServerUnreachable(code="server_timeout"), True, "server"),
        (ServerUnreachable(), True, "server"),
        (InvalidCredentials(), False, "password"),
        (AccountDisabled(), False, "username"),
        (TlsFailure(), False, "server"),
        (NotOurServer(), False, "server"),
        (RateLimited(), False, None),
        (ServerFailure(status=502), False, None),
        (ProxyFailure(), False, None),
    ],
)
def test_only_an_unreachable_server_is_retried(
    error: NetError, retried: bool, field: LoginField | None
) -> None:
    assert retries(error) is retried
    assert field_at_fault(error) == field


def test_a_keyring_failure_points_at_no_field() -> None:
    assert field_at_fault(KeyringUnavailable("The keyring is locked.")) is None


def test_the_retry_message_says_where_why_and_when() -> None:
    refused = ServerUnreachable(code="connection_refused")
    server = "https://notify.example.com"
    assert retry_message(server, refused, 5) == (
        "Cannot reach https://notify.example.com (nothing answers there); retrying in 5 s."
    )
    assert retry_message(server, refused, 0).endswith("retrying in 1 s.")  # never "in 0 s"
    assert retry_message(server, ServerUnreachable(), None) == (
        "Cannot reach https://notify.example.com; trying again…"
    )


def test_the_login_backoff_grows_to_its_cap() -> None:
    backoff = login_backoff()
    bounds = []
    for _ in range(8):
        bounds.append(backoff.bound())
        assert 0 <= backoff.next_delay() <= RETRY_CAP
    assert bounds == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


# --- retrying an unreachable server ---------------------------------------------------


class Counting(AccountSession):
    """A real session that counts its login attempts."""

    attempts = 0

    async def log_in(self, password: str) -> None:
        Counting.attempts += 1
        await super().log_in(password)


def _counting(server: str, username: str, remember: bool) -> AccountSession:
    return Counting(
        server_url=server,
        username=username,
        vault=TokenVault.in_memory(),
        transport=Transport(),
        remember=lambda: remember,
    )


def _quick() -> Backoff:
    return Backoff(base=0.05, cap=0.2)


class Messages:
    """Every message the dialog is asked to show, in order, and a way to wait for one."""

    def __init__(self, dialog: LoginDialog) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()
        show = dialog.show_error

        def recording(message: str, **kwargs: Any) -> None:
            show(message, **kwargs)
            self.seen.append(message)
            self._changed.set()

        dialog.show_error = recording  # type: ignore[method-assign]

    async def until(self, condition: Callable[[str], bool]) -> str:
        async with asyncio.timeout(WAIT):
            while True:
                for message in self.seen:
                    if condition(message):
                        return message
                self._changed.clear()
                await self._changed.wait()


class Harness:
    """A login flow with a window open at a server, its log-in tasks kept to await."""

    def __init__(
        self,
        server_url: str,
        *,
        retry_backoff: Callable[[], Backoff] = _quick,
        new_session: Callable[[str, str, bool], AccountSession] = _counting,
    ) -> None:
        Counting.attempts = 0
        self.jobs: list[asyncio.Task[object]] = []
        self.flow = LoginFlow(
            new_session=new_session, spawn=self._spawn, retry_backoff=retry_backoff
        )
        self.sessions: asyncio.Future[AccountSession] = asyncio.get_running_loop().create_future()
        self.flow.logged_in.connect(self.sessions.set_result)
        self.flow.show(
            server_url=server_url,
            username="alice",
            server_locked=False,
            remember_me=False,
            keyring_reason=None,
        )
        assert self.flow.dialog is not None
        self.dialog = self.flow.dialog
        self.messages = Messages(self.dialog)

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        self.jobs.append(asyncio.get_running_loop().create_task(coroutine))

    def submit(self, password: str = "demo") -> None:
        """Type the password and press Enter, as the user does."""
        self.dialog.password_edit.setText(password)
        QTest.keyClick(self.dialog.password_edit, Qt.Key.Key_Return)

    async def jobs_ended(self) -> None:
        async with asyncio.timeout(WAIT):
            await asyncio.wait(self.jobs)


def _closed_port() -> int:
    """A port that refuses connections: bound once, closed, nobody listening now."""
    return free_port()


def _unreachable(message: str) -> bool:
    return message.startswith("Cannot reach") and "nothing answers there" in message


def test_a_refused_connection_is_retried_until_the_server_is_up(
    qtbot: object, server_factory: ServerFactory
) -> None:
    port = _closed_port()
    address = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        harness = Harness(address)
        dialog = harness.dialog
        harness.submit()
        await harness.messages.until(_unreachable)
        await harness.messages.until(lambda message: message.endswith("trying again…"))
        assert harness.flow.retrying
        assert harness.flow.dialog is dialog
        assert dialog.isVisible()
        assert not dialog.busy  # the fields stay editable: an edit stops the retry
        assert dialog.server_edit.isEnabled()
        assert dialog.focusWidget() is dialog.server_edit  # the field at fault
        tried = Counting.attempts
        assert tried >= 2  # the first try and at least one by itself
        server = await asyncio.to_thread(server_factory, "--port", str(port), demo=True)
        assert server.url.rstrip("/") == address
        async with asyncio.timeout(WAIT):
            session = await harness.sessions  # nobody pressed anything
        assert Counting.attempts > tried
        assert session.server_url == address
        assert harness.flow.dialog is None
        assert not dialog.isVisible()
        assert dialog.result() == LoginDialog.DialogCode.Accepted
        assert not harness.flow.retrying
        assert (await session.api.me())["username"] == "alice"
        await session.close()
        await harness.jobs_ended()

    _run(scenario())


def test_the_countdown_counts_down_whole_seconds(qtbot: object) -> None:
    class Fixed(Backoff):
        def next_delay(self) -> float:
            self.failures += 1
            return 2.5

    async def scenario() -> None:
        harness = Harness(f"http://127.0.0.1:{_closed_port()}", retry_backoff=Fixed)
        harness.submit()
        await harness.messages.until(lambda message: message.endswith("trying again…"))
        harness.dialog.reject()
        await harness.jobs_ended()
        seen = harness.messages.seen
        first_round = seen[: seen.index(next(m for m in seen if m.endswith("again…"))) + 1]
        assert [message.rsplit(";", 1)[1] for message in first_round] == [
            " retrying in 3 s.",
            " retrying in 2 s.",
            " retrying in 1 s.",
            " trying again…",
        ]

    _run(scenario())


@pytest.mark.parametrize("how", ["server", "username", "password", "remember"])
def test_an_edit_stops_the_retry_and_clears_the_message(qtbot: object, how: str) -> None:
    async def scenario() -> None:
        harness = Harness(f"http://127.0.0.1:{_closed_port()}")
        dialog = harness.dialog
        harness.submit()
        await harness.messages.until(_unreachable)
        assert harness.flow.retrying
        if how == "remember":
            QTest.mouseClick(dialog.remember_check, Qt.MouseButton.LeftButton)
        else:
            QTest.keyClicks(getattr(dialog, f"{how}_edit"), "x")
        assert not harness.flow.retrying
        await harness.jobs_ended()  # the retry ended with the edit: no try is left
        assert harness.jobs[0].cancelled()
        assert dialog.message == ""
        assert not dialog.busy
        assert dialog.isVisible()
        assert not harness.sessions.done()

    _run(scenario())


def test_closing_the_window_stops_the_retry(qtbot: object) -> None:
    async def scenario() -> None:
        harness = Harness(f"http://127.0.0.1:{_closed_port()}")
        dialog = harness.dialog
        harness.submit()
        await harness.messages.until(_unreachable)
        with_window_open = Counting.attempts
        QTest.keyClick(dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible()
        await harness.jobs_ended()
        assert harness.jobs[0].cancelled()
        assert not harness.flow.retrying
        assert Counting.attempts == with_window_open
        # Shown again, it is ready for a new try, not counting down to a dead one.
        harness.flow.show(
            server_url="", username="", server_locked=False, remember_me=False, keyring_reason=None
        )
        assert harness.flow.dialog is dialog
        assert dialog.isVisible()
        assert dialog.message == ""
        assert not dialog.busy

    _run(scenario())


def test_a_new_submit_replaces_the_retry(qtbot: object, demo_server: RunningServer) -> None:
    async def scenario() -> None:
        harness = Harness(f"http://127.0.0.1:{_closed_port()}")
        dialog = harness.dialog
        harness.submit()
        await harness.messages.until(_unreachable)
        # The user fixes the address while it counts down (that edit stops the retry)
        # and logs in again.
        dialog.server_edit.selectAll()
        QTest.keyClicks(dialog.server_edit, demo_server.url)
        assert not harness.flow.retrying
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Return)
        async with asyncio.timeout(WAIT):
            session = await harness.sessions
        assert session.server_url == demo_server.url.rstrip("/")
        await session.close()
        await harness.jobs_ended()

    _run(scenario())


def test_a_wrong_password_is_never_retried(qtbot: object, demo_server: RunningServer) -> None:
    async def scenario() -> None:
        harness = Harness(demo_server.url)
        dialog = harness.dialog
        harness.submit("not-the-password")
        await harness.jobs_ended()  # the log-in ended: nothing is left to try again
        assert Counting.attempts == 1
        assert not harness.flow.retrying
        assert harness.messages.seen == [InvalidCredentials.user_message]
        assert dialog.message == InvalidCredentials.user_message
        assert dialog.focusWidget() is dialog.password_edit
        assert dialog.password_edit.selectedText() == "not-the-password"
        assert not harness.sessions.done()

    _run(scenario())


def test_an_address_without_a_scheme_logs_in_to_the_full_one(
    qtbot: object, demo_server: RunningServer
) -> None:
    bare = demo_server.url.removeprefix("http://").rstrip("/")  # 127.0.0.1:PORT

    async def scenario() -> None:
        harness = Harness(bare)
        harness.submit()
        async with asyncio.timeout(WAIT):
            session = await harness.sessions
        assert session.server_url == f"http://{bare}"
        assert harness.dialog.hint == f"Using http://{bare}"
        await session.close()
        await harness.jobs_ended()

    _run(scenario())


def test_a_keyring_failure_is_shown_in_the_message_area(qtbot: object) -> None:
    """The vault saves the refresh token during the log-in; a keyring that fails there
    must end in words in the window, not in a window left busy."""

    class KeyringFails(AccountSession):
        async def log_in(self, password: str) -> None:
            raise KeyringUnavailable("The keyring did not answer. Restart your session.")

    def new_session(server: str, username: str, remember: bool) -> AccountSession:
        return KeyringFails(
            server_url=server,
            username=username,
            vault=TokenVault.in_memory(),
            transport=Transport(),
        )

    async def scenario() -> None:
        harness = Harness("https://notify.example.com", new_session=new_session)
        harness.submit()
        await harness.jobs_ended()
        assert harness.dialog.message == "The keyring did not answer. Restart your session."
        assert not harness.dialog.busy
        assert not harness.flow.retrying

    _run(scenario())
