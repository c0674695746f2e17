"""The whole app in-process: the real TrayApp on a qasync loop (offscreen Qt), logged in
to the real server in a subprocess, driven through the tray's own signals as a click
would drive it, and checked against what the server says afterwards.

No notification daemon or tray host here (offscreen); toasts take the balloon fallback.
The end-to-end tests on Xvfb with xfce4-panel and xfce4-notifyd cover the real desktop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import qasync

from tests.fixtures.services import RunningServer
from tray_app.net.live import ConnectionState
from tray_app.ui.app import AppOptions, TrayApp

WAIT = 20.0
# The offscreen platform has no tray host; Qt says so when the icon is shown.
pytestmark = pytest.mark.qt_log_ignore(
    "No such signal QPlatformNativeInterface::systemTrayWindowChanged"
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real user's files, bus, keyring or IT policy reaches the app under test."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(tmp_path / "no-managed.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    return tmp_path


def options_for(server: RunningServer, root: Path, *, password: str) -> AppOptions:
    return AppOptions(
        server_url=server.url,
        username="alice",
        data_dir=root / "data",
        config_dir=root / "config",
        password=password,
        session_only=True,
    )


def server_unread(server: RunningServer) -> int:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = client.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        ).json()["access"]
        state = client.get(
            "/api/inbox/unread-count/", headers={"Authorization": f"Bearer {token}"}
        ).json()
        return int(state["unread_count"])


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition while the qasync loop runs Qt and asyncio work in between."""
    async with asyncio.timeout(timeout):
        # The conditions span widgets, store and server; no single signal covers them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def test_logs_in_shows_the_count_and_marks_read_through_the_server(
    qtbot, demo_server: RunningServer, isolated: Path
):
    options = options_for(demo_server, isolated, password="demo")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        tray = app.tray
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        expected = await asyncio.to_thread(server_unread, demo_server)
        await until(lambda: tray.state.unread == expected)
        assert tray.state.username == "alice"
        assert "alice" in tray.tray_icon.toolTip() or str(expected) in tray.tray_icon.toolTip()

        # The history, opened from the tray once the catch-up is stored, lists the store.
        engine = app.account.engine if app.account else None
        assert engine is not None
        await until(lambda: not engine.session.replaying and engine.inbox.cursor() > 0)
        tray.history_requested.emit()
        history = app.history
        assert history is not None
        stored = history.model.total

        # A new notification: the badge counts it, the menu and the history list it first.
        result = await asyncio.to_thread(
            demo_server.cli, "notify", "--user", "alice", "--title", "Deploy finished"
        )
        assert result.returncode == 0, result.stderr
        await until(lambda: tray.state.unread == expected + 1)
        newest = tray.state.recent[0]
        assert newest.title == "Deploy finished"
        await until(lambda: history.model.total == stored + 1)
        assert history.model.notification(0).title == "Deploy finished"

        # "Mark read" in the menu: the server applies it and the badge follows.
        tray.notification_mark_read_requested.emit(newest.id)
        await until(lambda: tray.state.unread == expected)
        await until(lambda: server_unread(demo_server) == expected, timeout=WAIT)

        # "Mark all read".
        tray.mark_all_read_requested.emit()
        await until(lambda: tray.state.unread == 0)
        assert await asyncio.to_thread(server_unread, demo_server) == 0

        # Quit from the menu ends run() and closes everything.
        tray.quit_requested.emit()
        async with asyncio.timeout(WAIT):
            await running
        assert app.account is None

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_a_wrong_saved_password_opens_the_login_with_plain_words(
    qtbot, demo_server: RunningServer, isolated: Path
):
    options = options_for(demo_server, isolated, password="not-the-password")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.login is not None and app.login.isVisible())
        assert app.account is None
        assert app.tray.state.look.name == "LOGIN_REQUIRED"
        login = app.login
        assert login is not None
        # The dialog's own submit path, as the Log in button would take it.
        login.login_submitted.emit(demo_server.url, "alice", "demo", False)
        await until(lambda: app.account is not None)
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())
