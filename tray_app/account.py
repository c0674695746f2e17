"""One account's session, without Qt: the tray app and headless mode both run through it.

What it holds is the account's whole life after the password: the server address
rule (``server_address``), the REST client whose refresh token is kept in the
keyring only while the remember-me rule says so (``AccountSession``), the account's
store and engine once opened, and their end (with or without logging out).
``tray_app/ui/app.py`` adds the windows, ``tray_app/headless.py`` the JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tray_app import config
from tray_app.engine import Engine, OpenedAccount, open_account
from tray_app.managed import REMEMBER_ME_TURNED_OFF, ManagedConfig
from tray_app.net import ApiClient, Tokens, Transport
from tray_app.store import TokenVault


def server_address(chosen: str, managed: ManagedConfig) -> str:
    """The server to use, without a trailing slash.

    IT's locked address always wins; its unlocked address wins only over the built-in
    default (``config.DEFAULT_SERVER_URL``), which is nobody's choice.

    Args:
        chosen: what the user chose: the command line, the environment, or the last
            account's server (``config.Settings``).
        managed: IT's configuration for this computer.
    """
    user_choice = None if chosen == config.DEFAULT_SERVER_URL else chosen
    return (managed.effective_server_url(user_choice) or chosen).rstrip("/")


def keyring_refusal(managed: ManagedConfig, vault: TokenVault) -> str | None:
    """Why a login cannot be kept in the keyring on this computer, or None: IT's policy
    first, then a keyring that is missing or unusable (the login dialog says so and
    turns "remember me" off)."""
    if not managed.allow_remember_me:
        return REMEMBER_ME_TURNED_OFF
    if not vault.status.usable:
        return vault.status.reason
    return None


class AccountSession:
    """One user's login at one server: its REST client, then its store and engine.

    The refresh token goes into ``vault`` whenever the server hands out a new one and
    ``remember()`` says to keep logins (the caller's remember-me rule: IT's policy and
    the user's preference; a vault built with ``TokenVault.in_memory()`` keeps it in
    this process only), and leaves the vault when the server ends the session.

    Life: ``restore()`` or ``log_in()``; ``open()``; ``start()`` (or ``run()``);
    ``close()``. ``close()`` is safe at any point and more than once.
    """

    def __init__(
        self,
        *,
        server_url: str,
        username: str,
        vault: TokenVault,
        transport: Transport,
        remember: Callable[[], bool] = lambda: True,
    ) -> None:
        self.server_url = server_url
        self.username = username
        self.vault = vault
        self.transport = transport
        self._remember = remember
        self.api = ApiClient(server_url, transport=transport, on_tokens_changed=self._keep)
        self._opened: OpenedAccount | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def _keep(self, tokens: Tokens | None) -> None:
        if tokens is None:
            self.vault.delete_refresh_token(self.server_url, self.username)
        elif self._remember():
            self.vault.save_refresh_token(self.server_url, self.username, tokens.refresh)

    def restore(self) -> bool:
        """Resume the login the vault kept for this account; whether there was one.

        Nothing is asked of the server: the first request refreshes the token, and a
        refused one says ``LoginRequired`` then.
        """
        saved = self.vault.load_refresh_token(self.server_url, self.username)
        if not saved:
            return False
        self.api.restore(saved)
        return True

    async def log_in(self, password: str) -> None:
        """Log in with the password (raises ``NetError``: wrong password, offline, ...)."""
        await self.api.login(self.username, password)

    async def projects(self) -> tuple[tuple[int, str], ...]:
        """The account's projects as (id, title), from the server (raises ``NetError``).

        Entries of another shape are left out: the list only names projects for the
        presence panel.
        """
        me = await self.api.me()
        return tuple(
            (project["id"], project["title"])
            for project in me.get("projects", [])
            if isinstance(project, dict)
            and isinstance(project.get("id"), int)
            and not isinstance(project.get("id"), bool)
            and isinstance(project.get("title"), str)
        )

    def open(self, *, data_dir: Path, config_dir: Path, settings: config.Settings) -> OpenedAccount:
        """Open the account's store (rebuilt if damaged) and its engine, not running yet,
        and save this account as the one to start with next time."""
        opened = open_account(
            api=self.api,
            data_dir=data_dir,
            server_url=self.server_url,
            username=self.username,
            retention=timedelta(days=settings.retention_days),
            retention_rows=settings.retention_rows,
            transport=self.transport,
        )
        self._opened = opened
        settings.server_url, settings.username = self.server_url, self.username
        settings.save(config_dir)
        return opened

    @property
    def engine(self) -> Engine:
        """The opened account's engine (``open()`` first)."""
        return self._opened_account().engine

    def _opened_account(self) -> OpenedAccount:
        if self._opened is None:
            raise RuntimeError("the account is not open yet: call open() first")
        return self._opened

    def start(self) -> None:
        """Run the engine in the background until ``close()``."""
        self._task = asyncio.get_running_loop().create_task(self.engine.run())

    async def run(self) -> None:
        """Run the engine here until it stops (``engine.stop()``, or login required)."""
        await self.engine.run()

    async def close(self, *, logout: bool = False) -> None:
        """Stop the engine, end the session on the server if ``logout`` (which also
        forgets the kept login), and close the REST client and the store."""
        if self._closed:
            return
        self._closed = True
        opened = self._opened
        if opened is not None:
            await opened.engine.stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        try:
            if logout:
                await self.api.logout()
        finally:
            await self.api.aclose()
            if opened is not None:
                opened.database.connection.close()


def web_link(server_url: str, url: str) -> str | None:
    """The address "Open" may hand to the desktop: ``url`` resolved against the server,
    and only when it is a web page. A ``file:``, ``javascript:`` or other scheme from a
    server (or anyone who publishes through it) would otherwise run or reveal local things.
    """
    if not url:
        return None
    target = urljoin(server_url.rstrip("/") + "/", url.strip())
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return target


def open_target(server_url: str, url: str, notification_id: int) -> str:
    """Where "Open" leads: the notification's own web link (``web_link``), else its page
    in the server's web companion, so every notification opens somewhere."""
    own = web_link(server_url, url)
    if own is not None:
        return own
    return f"{server_url.rstrip('/')}/notifications/{int(notification_id)}"
