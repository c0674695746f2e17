"""The login window's log-in (tray_app/ui/login_flow.py), against the real demo server on
a qasync loop (offscreen Qt), driven through the window's own submit signal."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import qasync
from PySide6.QtGui import QGuiApplication

from tests.fixtures.services import RunningServer, free_port
from tray_app.account import AccountSession
from tray_app.net import Transport
from tray_app.store import TokenVault
from tray_app.tasks import BackgroundTasks
from tray_app.ui.login import LoginDialog
from tray_app.ui.login_flow import LoginFlow

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
