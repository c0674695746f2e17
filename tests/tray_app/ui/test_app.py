"""The whole app in-process: the real TrayApp on a qasync loop (offscreen Qt), logged in
to the real server in a subprocess, driven through the tray's own signals as a click
would drive it, and checked against what the server says afterwards.

No notification daemon or tray host here (offscreen); toasts take the balloon fallback.
The end-to-end tests on Xvfb with xfce4-panel and xfce4-notifyd cover the real desktop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import qasync
from msgspec.structs import replace
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QSystemTrayIcon

from tests.fixtures.services import RunningServer, free_port
from tests.tray_app.conftest import WaitingKeyring
from tray_app import autostart
from tray_app.net.connection_state import ConnectionState
from tray_app.preferences import PREFERENCES_FILE
from tray_app.ui.account_view import AccountView
from tray_app.ui.app import AppOptions, TrayApp
from tray_app.ui.history import HistoryWindow

WAIT = 20.0
# The offscreen platform has no tray host; Qt says so when the icon is shown. It cannot pass
# a window's size hints on either, and says so when a laid-out window (a notice) is shown.
pytestmark = pytest.mark.qt_log_ignore(
    "No such signal QPlatformNativeInterface::systemTrayWindowChanged",
    r"This plugin does not support propagateSizeHints",
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real user's files, bus, keyring or IT policy reaches the app under test."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(tmp_path / "no-managed.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    # The system-wide autostart entry an installed package puts in /etc/xdg stays out too.
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
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


class OpenedUrls(QObject):
    """Receives the URLs the app hands to the desktop (``QDesktopServices.openUrl``)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toString())


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

        async def notify(title: str, unread: int) -> Any:
            """Send alice ``title`` from the CLI; the newest in the menu once counted."""
            result = await asyncio.to_thread(
                demo_server.cli, "notify", "--user", "alice", "--title", title
            )
            assert result.returncode == 0, result.stderr
            await until(lambda: tray.state.unread == unread)
            newest = tray.state.recent[0]
            assert newest.title == title
            return newest

        # A new notification: the badge counts it, the menu and the history list it first.
        newest = await notify("Deploy finished", expected + 1)
        await until(lambda: history.model.total == stored + 1)
        assert history.model.notification(0).title == "Deploy finished"

        # "Mark read" on its toast: the server applies it and the badge follows.
        failed = await notify("Build failed", expected + 2)
        app.toaster.mark_read_requested.emit(failed.id)
        await until(lambda: tray.state.unread == expected + 1)
        await until(lambda: server_unread(demo_server) == expected + 1, timeout=WAIT)

        # "Open" on a notification without a link: its page in the server's web
        # companion, handed to the desktop (Qt's own URL handler hook records it), and
        # it is marked read.
        opened = OpenedUrls()
        # PySide6 takes the slot's name as str at run time; its stub says bytes.
        QDesktopServices.setUrlHandler("http", opened, "open")  # type: ignore[arg-type]
        try:
            tray.notification_opened.emit(newest.id)
            await until(lambda: bool(opened.urls))
        finally:
            QDesktopServices.unsetUrlHandler("http")
        assert opened.urls == [f"{demo_server.url}/notifications/{newest.id}"]
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


def test_session_only_never_asks_a_keyring_that_waits_for_a_person(
    qtbot, demo_server: RunningServer, isolated: Path, waiting_keyring: WaitingKeyring
):
    """The login keyring is locked and its unlock prompt is up with nobody to answer it:
    with ``--session-only`` the app never asks the keyring anything, so its tray icon
    shows and it logs in and connects as usual."""
    options = options_for(demo_server, isolated, password="demo")
    assert options.session_only

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.tray.tray_icon.isVisible())
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        assert "session-only" in app.vault.status.reason  # not the keyring's "locked"
        assert waiting_keyring.prompt_is_up()
        app.tray.quit_requested.emit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_a_keyring_waiting_for_a_person_leaves_the_tray_up_and_quit_working(
    qtbot, demo_server: RunningServer, isolated: Path, waiting_keyring: WaitingKeyring
):
    """Remembering logins, the app opens the keyring off the GUI thread: while the
    locked keyring's unlock prompt waits, the tray icon is up, the app waits to log in,
    and Quit ends it at once."""
    options = replace(options_for(demo_server, isolated, password="demo"), session_only=False)

    async def scenario() -> None:
        app = TrayApp(options)  # on the GUI thread: nothing here may wait for the keyring
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.tray.tray_icon.isVisible())
        assert "session-only" in app.vault.status.reason  # the keyring not opened yet
        assert app.state.state is ConnectionState.STOPPED  # no login without it
        assert waiting_keyring.prompt_is_up()
        app.tray.quit_requested.emit()
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


# --- IT's managed configuration ------------------------------------------------------------


def test_a_broken_managed_file_is_shown_and_the_app_still_works(
    qtbot, demo_server: RunningServer, isolated: Path, monkeypatch: pytest.MonkeyPatch
):
    managed = isolated / "managed.json"
    managed.write_text('{\n  "server_url": "https://it.example.com"\n  "sound": false\n}\n')
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(managed))
    options = options_for(demo_server, isolated, password="demo")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        # Offscreen Qt has no tray to carry a message: the notice is a window.
        await until(lambda: app.managed_notice is not None and app.managed_notice.isVisible())
        notice = app.managed_notice
        assert notice is not None
        shown = notice.text() + "\n" + notice.informativeText()
        assert f"{managed}, line 3, column 3: not valid JSON" in shown
        assert "safe defaults" in shown
        # Nothing of the broken file applies: the app logs in to the user's own server.
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        assert app.account is not None
        assert app.account.server_url == demo_server.url
        assert app.preferences.sound is True
        # The settings window keeps the message for later.
        app.tray.settings_requested.emit()
        dialog = app._settings_dialog
        assert dialog.problems_label.isVisible()
        assert f"{managed}, line 3" in dialog.problems_label.text()
        # The live connection and its transport, from the engine's state.
        assert dialog.connection_label.text() == "Connection: Connected over WebSocket"
        dialog.close()
        notice.accept()
        await until(lambda: app.managed_notice is None)
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_the_managed_file_sets_server_and_locks_that_stay_locked(
    qtbot, demo_server: RunningServer, isolated: Path, monkeypatch: pytest.MonkeyPatch
):
    """The app finds its server only through the managed file (its own address points at a
    closed port), starts at login because IT locked it, and a settings result that tries to
    change a locked key changes neither what is in force nor the user's file."""
    managed = isolated / "managed.json"
    managed.write_text(
        json.dumps(
            {
                "server_url": demo_server.url,
                "start_at_login": True,
                "sound": False,
                "quiet_hours": {"value": ["22:00", "07:00"], "locked": False},
                "toasts_enabled": "sometimes",
            },
            indent=2,
        )
    )
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(managed))
    options = replace(
        options_for(demo_server, isolated, password="demo"),
        server_url=f"http://127.0.0.1:{free_port()}",
    )
    entry = Path(autostart.location())
    assert entry.is_relative_to(isolated)
    assert not entry.exists()

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        assert app.account is not None
        assert app.account.server_url == demo_server.url
        assert autostart.is_enabled()  # IT's locked start-at-login, applied at start
        notice = app.managed_notice
        assert notice is not None
        lines = managed.read_text().splitlines()
        line = next(n for n, text in enumerate(lines, 1) if '"toasts_enabled"' in text)
        assert f'{managed}, line {line}: "toasts_enabled": expected true or false' in (
            notice.informativeText()
        )
        assert app.preferences.sound is False
        # IT's suggested quiet hours are handed to the server once (the user never set
        # attention settings there) and come back as the account's.
        account = app.account
        await until(
            lambda: (
                account.engine.attention_store.pending() is None and account.attention.version >= 1
            )
        )
        assert account.attention.quiet_hours == (time(22), time(7))

        app.tray.settings_requested.emit()
        dialog = app._settings_dialog
        assert not dialog.sound_check.isEnabled()
        assert not dialog.start_at_login_check.isEnabled()
        # A result that says otherwise for the locked keys, and turns pop-ups off.
        forged = replace(
            dialog.preferences(), sound=True, start_at_login=False, toasts_enabled=False
        )
        dialog.preferences_changed.emit(forged)
        assert app.preferences.sound is False
        assert app.preferences.start_at_login is True
        assert app.preferences.toasts_enabled is False  # unlocked: the user's choice wins
        assert autostart.is_enabled()
        saved = json.loads((options.config_dir / PREFERENCES_FILE).read_text())
        assert saved == {"toasts_enabled": False}
        dialog.close()
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_a_packaged_autostart_entry_shows_as_on_and_the_user_can_switch_it_off(
    qtbot, isolated: Path
):
    """The .deb installs a system-wide autostart entry: the settings show start-at-login
    on (the entry is the truth, not a preference saved before the package came), and
    switching it off hides the package's entry for this user only."""
    system_entry = isolated / "etc-xdg" / "autostart" / autostart.DESKTOP_FILE_NAME
    system_entry.parent.mkdir(parents=True)
    system_entry.write_text(autostart.desktop_entry(["/usr/bin/tray-notifier"]))
    options = AppOptions(
        server_url=f"http://127.0.0.1:{free_port()}",
        username="",
        data_dir=isolated / "data",
        config_dir=isolated / "config",
        password=None,
        session_only=True,
    )

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.login is not None)
        assert app.preferences.start_at_login is True
        app.tray.settings_requested.emit()
        dialog = app._settings_dialog
        assert dialog.start_at_login_check.isEnabled()
        assert dialog.start_at_login_check.isChecked()
        dialog.start_at_login_check.setChecked(False)
        dialog.preferences_changed.emit(dialog.preferences())
        dialog.close()
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())
    assert not autostart.is_enabled()
    assert "Hidden=true" in Path(autostart.location()).read_text()
    assert system_entry.is_file()  # the package's file is not the app's to remove


def test_with_a_tray_the_problem_is_a_tray_message(
    qtbot, isolated: Path, monkeypatch: pytest.MonkeyPatch
):
    """Offscreen Qt has no tray host, so one is declared available and the tray icon's
    showMessage is recorded (the desktop end-to-end tests show real tray messages)."""
    managed = isolated / "managed.json"
    managed.mkdir()
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(managed))
    messages: list[tuple[Any, ...]] = []
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    monkeypatch.setattr(QSystemTrayIcon, "supportsMessages", lambda _self: True)
    monkeypatch.setattr(QSystemTrayIcon, "showMessage", lambda _self, *a: messages.append(a))
    options = AppOptions(
        server_url=f"http://127.0.0.1:{free_port()}",
        username="",
        data_dir=isolated / "data",
        config_dir=isolated / "config",
        session_only=True,
    )

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.login is not None and app.login.isVisible())
        assert app.managed_notice is None
        assert len(messages) == 1
        title, body, icon = messages[0]
        assert "IT department" in title
        assert body.startswith(f"{managed}: it is a directory, not a file")
        assert icon == QSystemTrayIcon.MessageIcon.Warning
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_do_not_disturb_from_the_tray_is_the_status_the_presence_window_shows(
    qtbot, demo_server: RunningServer, isolated: Path
):
    """One status for teammates: the tray's do-not-disturb sets it, the presence window
    shows it (opened before or after), and a status chosen there is the account's."""
    options = options_for(demo_server, isolated, password="demo")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await until(lambda: app.state.state is ConnectionState.CONNECTED)
        account = app.account
        assert account is not None
        # The projects are asked for once connected (over the socket).
        titles = ["Mobile App", "Website Redesign"]
        await until(lambda: sorted(title for _, title in account.projects) == titles)
        app.tray.dnd_requested.emit("1h")
        assert account.own_status == "dnd"
        app.tray.presence_requested.emit()
        presence = account.presence
        assert presence is not None
        combo = presence.project_combo
        assert sorted(combo.itemText(i) for i in range(combo.count())) == titles
        assert presence.own_status() == "dnd"  # opened after: shows it
        app.tray.dnd_requested.emit("off")
        assert presence.own_status() == "online"  # open: follows it
        presence.status_chosen.emit("away")  # the user's own choice in the window
        assert account.own_status == "away"
        assert presence.own_status() == "away"
        app.tray.quit_requested.emit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


async def _history_with_a_delete_offered_for_undo(
    app: TrayApp,
) -> tuple[AccountView, HistoryWindow, int]:
    """Once ``app`` is connected and caught up: its history window, open, with its first
    row deleted and the undo still offered; the account, the window and the row's id."""
    await until(lambda: app.state.state is ConnectionState.CONNECTED)
    account = app.account
    assert account is not None
    await until(lambda: account.engine.inbox.cursor() > 0)
    account.show_history()
    history = account.history
    assert history is not None
    await until(lambda: history.model.rowCount() > 0)
    history.list_view.setCurrentIndex(history.model.index(0, 0))
    [doomed] = history.selected_ids()
    history.delete_action.trigger()
    return account, history, doomed


def test_a_delete_still_offered_for_undo_reaches_the_server_when_the_account_closes(
    qtbot, demo_server: RunningServer, isolated: Path
):
    """Logging out within the history's undo window does not lose the delete: it goes to
    the outbox before the account closes, and the server has it."""
    options = options_for(demo_server, isolated, password="demo")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        _account, history, doomed = await _history_with_a_delete_offered_for_undo(app)
        assert doomed not in history.model.ids(range(history.model.rowCount()))
        # The account closes its windows last, after sending the outbox and ending the
        # session (app.account is None from the start of it).
        closed = asyncio.Event()
        history.destroyed.connect(lambda _object=None: closed.set())
        app.tray.logout_requested.emit()
        async with asyncio.timeout(WAIT):
            await closed.wait()
        assert app.account is None
        assert doomed not in _server_inbox_ids(demo_server)
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def test_a_closed_history_window_is_let_go_and_its_pending_delete_is_sent(
    qtbot, demo_server: RunningServer, isolated: Path
):
    """Closing the history deletes the window (its rows and widgets are not kept while
    hidden, issue 20) after requesting the delete its undo offer still held; opening it
    again makes a new one, without the deleted row."""
    options = options_for(demo_server, isolated, password="demo")

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        account, first, doomed = await _history_with_a_delete_offered_for_undo(app)
        destroyed = asyncio.Event()
        first.destroyed.connect(lambda _object=None: destroyed.set())
        first.close()
        async with asyncio.timeout(WAIT):
            await destroyed.wait()
        assert account.history is None
        await until(lambda: doomed not in _server_inbox_ids(demo_server))
        account.show_history()
        second = account.history
        assert second is not None
        assert second is not first
        await until(lambda: second.model.rowCount() > 0)
        assert doomed not in second.model.ids(range(second.model.rowCount()))
        app.quit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())


def _server_inbox_ids(server: RunningServer) -> set[int]:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        token = client.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        ).json()["access"]
        page = client.get(
            "/api/inbox/", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        ).json()
    return {int(row["id"]) for row in page["results"]}
