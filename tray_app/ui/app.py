"""The tray app: what outlives an account (the tray icon, the login, the preferences and
settings, IT's configuration), the login window's flow (``login_flow.LoginFlow``) and
the account's view while one is open (``account_view.AccountView``: the engine's events
to the widgets and back).

Widgets are passive; the rules live in Qt-free modules (the account session, the toast
rules, the preferences), and this wires them, in small methods named for the user's
intent. The app starts into the tray and opens a window only when it must (the login,
when no saved login works).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace
from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from tray_app import autostart, config
from tray_app.account import AccountSession, keyring_refusal, server_address
from tray_app.attention import (
    DEFAULT as DEFAULT_ATTENTION,
)
from tray_app.attention import (
    Attention,
    dnd_choice_change,
    local_time_zone,
    quiet_hours_change,
)
from tray_app.managed import PreferenceKeeper, load_managed_config
from tray_app.net import ConnectionState, NetError, StateChange, Transport
from tray_app.preferences import Preferences, legacy_attention_change
from tray_app.store import TokenVault, open_token_vault_unless
from tray_app.tasks import BackgroundTasks
from tray_app.toast_policy import ToastPreferences
from tray_app.ui.account_view import AccountView
from tray_app.ui.login_flow import LoginFlow
from tray_app.ui.toasts import Toaster, ToastPresenter
from tray_app.ui.tray import TrayController, TrayState, describe_transport
from tray_app.ui.wakeups import WakeWatcher

if TYPE_CHECKING:
    # The windows and dialogs are imported where they are first opened: an app that sits
    # in the tray never opens most of them and should not carry their code (B8 idle RSS).
    from tray_app.ui.history import HistoryWindow
    from tray_app.ui.login import LoginDialog
    from tray_app.ui.settings import SettingsDialog

logger = logging.getLogger(__name__)

# The tray and the history follow the store at most this often while rows keep coming (a
# catch-up stores a batch every few milliseconds); after a quiet spell, at once.
REFRESH_INTERVAL_S = 0.1


class AppOptions(msgspec.Struct, frozen=True):
    server_url: str
    username: str
    data_dir: Path
    config_dir: Path
    password: str | None = None  # a scripted first login (TRAY_NOTIFIER_PASSWORD)
    session_only: bool = False


class TrayApp(QObject):
    """The running app. ``run()`` returns when the user quits."""

    def __init__(
        self,
        options: AppOptions,
        parent: QObject | None = None,
        *,
        tray: TrayController | None = None,
    ) -> None:
        """
        Args:
            options: Where the app's files are, and the account to open.
            parent: The Qt parent.
            tray: The tray icon already shown while the app loaded (``__main__``
                shows it first); it keeps its state until the account opens or the
                login is needed. None: a new one.
        """
        super().__init__(parent)
        # Closing the login or history window must leave the app running in the tray.
        application = QGuiApplication.instance()
        if isinstance(application, QGuiApplication):
            application.setQuitOnLastWindowClosed(False)
        self.options = options
        self.settings = config.Settings.load(options.config_dir)
        # What IT set, laid over the user's own preferences; only the user's own are saved.
        self.managed = load_managed_config()
        # Trust and proxy for the REST client and the socket, from IT's configuration.
        self.transport: Transport = self.managed.transport(os.environ)
        self.preference_keeper = PreferenceKeeper(options.config_dir, self.managed)
        self.managed_notice: QMessageBox | None = None
        # Opened in run(), off the GUI thread: a locked keyring may put up an unlock
        # prompt and wait for the user, and the tray must stay responsive meanwhile.
        # Until then (and for good with --session-only) nothing touches the keyring.
        self.vault = TokenVault.in_memory()
        self.account: AccountView | None = None
        self.tasks = BackgroundTasks()
        # The icon's first state (``__main__``'s, greyed with the last known count) stays
        # until the saved login is tried: the keyring may keep it waiting.
        self._starting = tray is not None
        if tray is None:
            tray = TrayController(self)
        else:
            tray.setParent(self)
        self.tray = tray
        self.toaster = Toaster(self.tray.tray_icon, parent=self)
        self.toasts = ToastPresenter(
            self.toaster,
            preferences=lambda: ToastPreferences.of(self.preferences, self.attention),
            spawn=self.tasks.spawn,
            parent=self,
        )
        self.wakeups = WakeWatcher(self)
        self.login_flow = LoginFlow(
            new_session=self._session_for_login, spawn=self.tasks.spawn, parent=self
        )
        self.login_flow.logged_in.connect(lambda s: self.tasks.spawn(self._logged_in(s)))
        # Tray and history follow the store once per refresh, not once per row: a
        # catch-up of thousands of rows would otherwise rebuild the menu thousands of times.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.timeout.connect(self._refresh_now)
        # Do-not-disturb ending and quiet hours starting or ending change the tray with
        # no event to tell: it is refreshed then.
        self._silence_timer = QTimer(self)
        self._silence_timer.setSingleShot(True)
        self._silence_timer.timeout.connect(self._refresh_tray)
        self._history_stale = False
        self._refreshed_at = -REFRESH_INTERVAL_S
        self._open_settings: SettingsDialog | None = None  # told of connection changes
        self._quit = asyncio.Event()
        self._connect_widgets()

    # --- life ------------------------------------------------------------------------

    async def run(self) -> None:
        self.tray.show()
        self._refresh_tray()
        self._announce_managed_problems()
        self._settle_start_at_login()
        # Quit may come while the keyring waits for its unlock prompt: then no login.
        if self.options.session_only or await self._open_keyring():
            self.wakeups.watch_network()
            self.tasks.spawn(self.wakeups.watch_sleep())
            await self._start()
            self._starting = False
            self._refresh_tray()
            await self._quit.wait()
        await self._end_account(logout=False)
        self.wakeups.stop()
        await self.tasks.cancel_all()  # project list, toasts, status: before the loop goes
        await self.toaster.aclose()

    async def _open_keyring(self) -> bool:
        """Open the keyring off the GUI thread (its unlock prompt may wait for the user);
        False if the user quit first."""
        # The saved login is read along with the probe: one helper run, not two.
        username = self.options.username
        preload = (self._server_url(), username) if username else None
        vault = await open_token_vault_unless(self._quit, preload=preload)
        if vault is None:
            return False
        self.vault = vault
        if not vault.status.usable:
            logger.warning("keyring unusable: %s", vault.status.reason)
        return True

    @property
    def preferences(self) -> Preferences:
        """The preferences in force (the user's own under IT's)."""
        return self.preference_keeper.current

    @property
    def attention(self) -> Attention:
        """The user's attention settings in force (the defaults while nobody is logged in)."""
        return self.account.attention if self.account else DEFAULT_ATTENTION

    @property
    def state(self) -> StateChange:
        """The account's connection (stopped while nobody is logged in)."""
        return self.account.state if self.account else StateChange(ConnectionState.STOPPED)

    @property
    def history(self) -> HistoryWindow | None:
        return self.account.history if self.account else None

    @property
    def login(self) -> LoginDialog | None:
        """The login window while it is open."""
        return self.login_flow.dialog

    def quit(self) -> None:
        """End the app: from the menu, or SIGTERM/SIGINT."""
        self._quit.set()

    def activate(self) -> None:
        """A second launch asked this one to come forward."""
        if self.account is None:
            self.show_login()
        else:
            self.account.show_history()

    async def _start(self) -> None:
        username = self.options.username
        if not username:
            self.show_login()
            return
        session = self._new_session(self._server_url(), username)
        if await session.restore():
            self._open_account(session)
            return
        if self.options.password:
            try:
                await session.log_in(self.options.password)
            except NetError as error:
                await session.close()
                self.show_login(error.user_message)
                return
            self._open_account(session)
            return
        await session.close()
        self.show_login()

    def _new_session(self, server: str, username: str) -> AccountSession:
        return AccountSession(
            server_url=server,
            username=username,
            vault=self.vault,
            transport=self.transport,
            remember=lambda: self.preferences.remember_me,
        )

    def _open_account(self, session: AccountSession) -> None:
        opened = session.open(
            data_dir=self.options.data_dir,
            config_dir=self.options.config_dir,
            settings=self.settings,
        )
        if opened.database.rebuilt:
            logger.warning("the local history was damaged and is rebuilt from the server")
        account = AccountView(
            session,
            toasts=self.toasts,
            spawn=self.tasks.spawn,
            quiet_hours_lock=self.managed.quiet_hours_lock(),
            seed=self._attention_seed(),
            parent=self,
        )
        account.tray_changed.connect(lambda history: self._refresh_tray(history=history))
        account.login_required.connect(lambda message: self.tasks.spawn(self._login_again(message)))
        account.problem_reported.connect(
            lambda message: self.tray.tray_icon.showMessage("Tray Notifier", message)
        )
        self.account = account
        session.start()  # the account's projects are asked for once it is connected
        self._refresh_tray()

    def _attention_seed(self) -> dict[str, Any]:
        """What to hand a server that never had this user's attention settings: IT's
        suggested quiet hours, and this computer's settings from before they moved to
        the server (which win)."""
        seed: dict[str, Any] = {}
        suggested = self.managed.quiet_hours_default()
        if suggested is not False:
            seed.update(quiet_hours_change(suggested, time_zone=local_time_zone()))
        legacy = legacy_attention_change(self.options.config_dir, now=datetime.now(UTC))
        if "quiet_hours" in legacy:
            legacy["time_zone"] = local_time_zone()
        return {**seed, **legacy}

    async def _end_account(self, *, logout: bool) -> None:
        account, self.account = self.account, None
        if account is None:
            return
        await account.close(logout=logout)
        self._refresh_tray()

    async def _login_again(self, message: str | None) -> None:
        await self._end_account(logout=False)
        self.show_login(message)

    # --- wiring ------------------------------------------------------------------------

    def _connect_widgets(self) -> None:
        tray, toaster, wakeups, on_account = self.tray, self.toaster, self.wakeups, self._on_account
        tray.history_requested.connect(self.show_history)
        tray.presence_requested.connect(self.show_presence)
        tray.settings_requested.connect(self.show_settings)
        tray.login_requested.connect(self.show_login)
        tray.logout_requested.connect(lambda: self.tasks.spawn(self._logout()))
        tray.quit_requested.connect(self._quit.set)
        tray.dnd_requested.connect(self.set_do_not_disturb)
        tray.quiet_hours_end_requested.connect(lambda: self.change_attention({"quiet_hours": None}))
        tray.reconnect_requested.connect(on_account(lambda a: a.engine.wake()))
        tray.notification_opened.connect(on_account(AccountView.open_notification))
        tray.mark_all_read_requested.connect(on_account(lambda a: a.engine.mark_all_read()))
        toaster.open_requested.connect(on_account(lambda a, i, _url: a.open_notification(i)))
        toaster.mark_read_requested.connect(on_account(lambda a, i: a.mark_read([i])))
        toaster.history_requested.connect(self.show_history)
        wakeups.network_changed.connect(
            on_account(lambda a, on: a.engine.set_network_available(on))
        )
        wakeups.woke_up.connect(on_account(lambda a: a.engine.wake()))

    def _on_account(self, action: Callable[..., object]) -> Callable[..., None]:
        """A slot that does ``action(account, *arguments)`` while an account is open, and
        nothing otherwise (a click on a stale menu entry, a wake-up while logged out)."""

        def slot(*arguments: Any) -> None:
            if self.account is not None:
                action(self.account, *arguments)

        return slot

    def _refresh_tray(self, *, history: bool = False) -> None:
        """Bring the tray (and, with ``history``, the history window) up to date with the
        store: at the end of this loop turn, or REFRESH_INTERVAL_S after the last refresh."""
        self._history_stale = self._history_stale or history
        if not self._refresh_timer.isActive():
            wait = self._refreshed_at + REFRESH_INTERVAL_S - time.monotonic()
            self._refresh_timer.start(max(0, round(wait * 1000)))

    def _refresh_now(self) -> None:
        self._refreshed_at = time.monotonic()
        history = self.history
        if self._history_stale and history is not None:
            history.notifications_changed()
        self._history_stale = False
        self._show_tray_state()

    def _forget_settings_dialog(self, dialog: object) -> None:
        if self._open_settings is dialog:
            self._open_settings = None

    def _show_tray_state(self) -> None:
        now = datetime.now(UTC)
        if self.account is None and self._starting:
            return  # the icon's first state stands until the saved login is tried
        if self.account is None:
            state = TrayState.of(connection=self.state, username=None)
        else:
            state = self.account.tray_state(now)
        self.tray.set_state(state)
        if self._open_settings is not None and self.account is not None:
            self._open_settings.show_connection(describe_transport(self.account.state))
        upcoming = self.attention.next_change(now)
        if upcoming is None:
            self._silence_timer.stop()
        else:
            # Capped: a timer a day long may drift past a clock change or a suspend.
            wait = min((upcoming - now).total_seconds() + 0.5, 3600.0)
            self._silence_timer.start(max(0, round(wait * 1000)))

    # --- widgets -> engine -----------------------------------------------------------------

    def set_do_not_disturb(self, choice: str) -> None:
        """A do-not-disturb entry of the tray menu: on every device, through the server."""
        if self.account is None:
            return
        self.account.engine.change_attention(dnd_choice_change(choice, datetime.now(UTC)))
        self._refresh_tray()

    def change_attention(self, change: dict[str, Any]) -> None:
        """Attention settings changed in the settings window."""
        if self.account is not None:
            self.account.engine.change_attention(change)

    # --- windows -------------------------------------------------------------------------

    def show_history(self) -> None:
        if self.account is None:
            self.show_login()
        else:
            self.account.show_history()

    def show_presence(self) -> None:
        if self.account is None:
            self.show_login()
        else:
            self.account.show_presence()

    def show_settings(self) -> None:
        from datetime import timedelta

        from tray_app.store import StoreError
        from tray_app.ui.settings import Retention, SettingsDialog

        account = self.account
        dialog = SettingsDialog(
            self.preferences,
            list(account.projects) if account else [],
            attention=account.attention if account else None,
            retention=Retention.of(self.settings),
            username=account.username if account else None,
            server_url=account.server_url if account else None,
            connection=describe_transport(account.state) if account else None,
            managed=self.managed,
        )
        self._open_settings = dialog
        dialog.finished.connect(lambda _result: self._forget_settings_dialog(dialog))

        def retention_changed(retention: Retention) -> None:
            # Kept for every start (the store prunes as it opens), and applied at once to
            # the open account's history: a shorter retention is what the user expects now.
            self.settings.retention_days = retention.days
            self.settings.retention_rows = retention.rows
            try:
                self.settings.save(self.options.config_dir)
            except OSError as error:
                logger.warning("could not save the retention: %s", error)
                self.tray.tray_icon.showMessage(
                    "Tray Notifier", "The history's new retention could not be saved."
                )
            if self.account is None:
                return
            try:
                self.account.engine.apply_retention(
                    max_age=timedelta(days=retention.days), max_rows=retention.rows
                )
            except StoreError as error:
                logger.warning("could not apply the retention now: %s", error)
            self._refresh_tray(history=True)

        def clear_history() -> None:
            # Only the account the dialog showed: another may have logged in since.
            if account is None or self.account is not account:
                return
            try:
                account.engine.clear_local_history()
            except StoreError as error:
                logger.warning("could not clear the local history: %s", error)
                self.tray.tray_icon.showMessage(
                    "Tray Notifier", "The local history could not be cleared."
                )
                return
            self._refresh_tray(history=True)

        dialog.preferences_changed.connect(self._preferences_changed)
        dialog.attention_change_requested.connect(self.change_attention)
        dialog.retention_changed.connect(retention_changed)
        dialog.clear_history_requested.connect(clear_history)
        dialog.logout_requested.connect(lambda: self.tasks.spawn(self._logout()))
        dialog.login_requested.connect(self.show_login)
        dialog.open()
        self._settings_dialog = dialog  # keep it alive while open

    def _preferences_changed(self, preferences: Preferences) -> None:
        self._update_preferences(preferences)
        self._refresh_tray()

    def _update_preferences(self, edited: Preferences) -> None:
        try:
            self.preference_keeper.update(edited)
        except autostart.AutostartError as error:
            self._start_at_login_failed(error)

    def _settle_start_at_login(self) -> None:
        try:
            self.preference_keeper.settle_start_at_login()
        except autostart.AutostartError as error:
            self._start_at_login_failed(error)

    def _start_at_login_failed(self, error: autostart.AutostartError) -> None:
        logger.warning("could not change start at login: %s", error)
        self.tray.tray_icon.showMessage("Tray Notifier", error.user_message)

    def _server_url(self) -> str:
        return server_address(self.options.server_url, self.managed)

    def _announce_managed_problems(self) -> None:
        """Tell the user, once per start, that IT's file is broken and defaults apply
        (the settings window keeps the full list)."""
        problems = self.managed.problems
        if not problems:
            return
        notice = self.tray.warn(
            "Your IT department's settings could not all be used",
            problems,
            "Tray Notifier uses safe defaults instead. Please tell your IT department. "
            "Settings shows the details.",
        )
        if notice is not None:
            notice.finished.connect(self._managed_notice_closed)
            self.managed_notice = notice

    def _managed_notice_closed(self, _result: int) -> None:
        self.managed_notice = None

    def show_login(self, message: str | None = None) -> None:
        keyring_reason = keyring_refusal(self.managed, self.vault)
        self.login_flow.show(
            server_url=self._server_url(),
            username=self.options.username or self.settings.username,
            server_locked=self.managed.is_locked("server_url"),
            remember_me=self.preferences.remember_me and keyring_reason is None,
            keyring_reason=keyring_reason,
            message=message,
        )

    def _session_for_login(self, server: str, username: str, remember: bool) -> AccountSession:
        self._update_preferences(replace(self.preferences, remember_me=remember))
        return self._new_session(server, username)

    async def _logged_in(self, session: AccountSession) -> None:
        await self._end_account(logout=False)
        self._open_account(session)

    async def _logout(self) -> None:
        await self._end_account(logout=True)
        self.show_login()
