"""One account's session, without Qt: the tray app and headless mode both run through it.

What it holds is the account's whole life after the password: the server address
rules (``server_address``: which one; ``normalize_server_url``: what a typed one
means), the REST client whose refresh token is kept in the
keyring only while the remember-me rule says so (``AccountSession``), the account's
store and engine once opened, and their end (with or without logging out).
``tray_app/ui/app.py`` adds the windows, ``tray_app/headless.py`` the JSON lines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from tray_app import config
from tray_app.engine import Engine, OpenedAccount, open_account
from tray_app.managed import REMEMBER_ME_TURNED_OFF, ManagedConfig
from tray_app.net import ApiClient, NetError, Tokens, Transport
from tray_app.store import TokenVault
from tray_app.store.secrets import KeyringUnavailable

logger = logging.getLogger(__name__)


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


class ServerAddressProblem(ValueError):
    """A typed server address that cannot be used; ``str(problem)`` says why in plain
    words, fit to show the user as it is."""


# "word:" followed by something that is not a port number: the user meant a scheme
# (``ftp://x``, ``https:/x``, ``mailto:x``), not ``host:port``. A dot means a host name
# ("notify.example.com:abc" is a bad port, not a scheme).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+-]*):(?=\D)")
# One label of a host name, as ASCII after IDNA. Underscores are tolerated: internal
# DNS has them, and the resolver, not this check, is the judge of a name that exists.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NOT_A_NAME = "The server name is not valid. Check the address."


def normalize_server_url(text: str) -> str:
    """The full address for what the user typed as the server: ``scheme://host[:port][/path]``.

    A typed address without a scheme gets one: ``http://`` for this computer
    (``localhost``, ``127.0.0.1``, ``[::1]``: a developer's server, which rarely has a
    certificate), ``https://`` for every other name, so a login never goes out in
    clear text by accident. An explicit ``http://`` is kept: the user asked for it.
    The host is lowercased and trailing slashes are dropped, so the result is what
    the UI shows back and the same result when normalised again.

    Args:
        text: what the user typed (surrounding spaces are ignored).

    Returns:
        The address to log in to.

    Raises:
        ServerAddressProblem: the text cannot be a server address; the message says
            what is wrong in words for the user.
    """
    address = text.strip()
    if not address:
        raise ServerAddressProblem("Enter the server address.")
    if any(char.isspace() for char in address):
        raise ServerAddressProblem("The server address cannot contain spaces.")
    if not address.isprintable():
        raise ServerAddressProblem("The server address contains a character it cannot have.")
    scheme: str | None = None
    rest = address
    explicit = _SCHEME.match(address)
    if explicit is not None:
        scheme = explicit.group(1).lower()
        slashes = address[explicit.end() :].startswith("//")
        if scheme not in ("http", "https"):
            shown = f"{scheme}://" if slashes else f"{scheme}:"
            raise ServerAddressProblem(
                f"“{shown}” addresses cannot be used: start the address with https:// "
                "or http://, or leave that out."
            )
        if not slashes:
            raise ServerAddressProblem(
                f"Write two slashes after “{scheme}:”, as in {scheme}://notify.example.com."
            )
        rest = address[explicit.end() + 2 :]
    elif address.startswith("://"):
        raise ServerAddressProblem("Start the address with https:// or http://, or leave that out.")
    elif _bare_ipv6(address):
        rest = f"[{address}]"  # an IPv6 address needs brackets before a port or a path
    if "?" in rest or "#" in rest:
        raise ServerAddressProblem("The server address cannot contain ? or #.")
    if "@" in rest.split("/", 1)[0]:
        raise ServerAddressProblem(
            "Leave your user name out of the server address: enter it under Username."
        )
    try:
        parts = urlsplit("//" + rest)
    except ValueError:  # a bracketed host that is not an IPv6 address
        raise ServerAddressProblem(_NOT_A_NAME) from None
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        raise ServerAddressProblem("The port must be a number from 1 to 65535.")
    host = parts.hostname or ""
    if not host:
        raise ServerAddressProblem("The address has no server name.")
    is_ipv6 = parts.netloc.startswith("[")
    local = _check_host(host, is_ipv6=is_ipv6)
    if scheme is None:
        scheme = "http" if local else "https"
    netloc = f"[{host}]" if is_ipv6 else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _bare_ipv6(text: str) -> bool:
    if text.count(":") < 2 or "/" in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_host(host: str, *, is_ipv6: bool) -> bool:
    """Raise ``ServerAddressProblem`` unless ``host`` (lowercased, without brackets) is
    an IP address or a host name; whether it is this computer (loopback)."""
    if is_ipv6:
        if "%" in host:  # a zone index names a network card, not a server
            raise ServerAddressProblem(_NOT_A_NAME)
        return ipaddress.IPv6Address(host).is_loopback  # urlsplit checked the brackets
    labels = host.split(".")
    if labels[-1].isdigit():
        # Top-level domains are never numbers: this is an IPv4 address or a mistake.
        # (getaddrinfo would read "127.1" as 127.0.0.1; only the usual form is taken.)
        try:
            return ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            raise ServerAddressProblem(_NOT_A_NAME) from None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ServerAddressProblem(_NOT_A_NAME) from None
    if not all(_LABEL.fullmatch(label) for label in ascii_host.lower().split(".")):
        raise ServerAddressProblem(_NOT_A_NAME)
    return ascii_host == "localhost" or ascii_host.endswith(".localhost")


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

    Life: ``await restore()`` or ``log_in()``; ``open()``; ``start()`` (or ``run()``);
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
        # Called on the event loop's thread: the keyring (a helper process, maybe an
        # unlock prompt) is left to the vault's one worker thread, which keeps the order
        # (a later save is never overtaken by an earlier one; a delete after a save wins).
        # close() waits for it.
        if tokens is None:
            written: concurrent.futures.Future[Any] = self.vault.delete_in_background(
                self.server_url, self.username
            )
        elif self._remember():
            written = self.vault.save_in_background(self.server_url, self.username, tokens.refresh)
        else:
            return
        written.add_done_callback(_report_keyring_failure)

    async def restore(self) -> bool:
        """Resume the login the vault kept for this account; whether there was one.

        The vault is read off the event loop (the keyring may take a helper process, or
        wait for its unlock prompt). Nothing is asked of the server: the first request
        refreshes the token, and a refused one says ``LoginRequired`` then.
        """
        saved = await self.vault.load_in_background(self.server_url, self.username)
        if not saved:
            return False
        self.api.restore(saved)
        return True

    async def log_in(self, password: str) -> None:
        """Log in with the password (raises ``NetError``: wrong password, offline, ...)."""
        await self.api.login(self.username, password)

    async def projects(self) -> tuple[tuple[int, str], ...]:
        """The account's projects as (id, title), from the server (raises ``NetError``).

        Asked on the open socket when there is one (a session that needs no REST call
        never loads the REST client's stack, issue 20), else over REST. Entries of
        another shape are left out: the list only names projects for the presence panel
        and the settings' mutes.
        """
        entries: list[Any] | None = None
        if self._opened is not None:
            try:
                entries = await self._opened.engine.session.list_projects()
            except NetError as error:
                logger.debug("projects over REST (%s)", error)
        if entries is None:
            entries = (await self.api.me()).get("projects", [])
        return tuple(
            (project["id"], project["title"])
            for project in entries
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
            # The logout's delete, and a token rotated just before: done before the
            # caller goes on (a new login, or the process's exit, which would drop them).
            await self.vault.settled()


def _report_keyring_failure(written: concurrent.futures.Future[Any]) -> None:
    """Log what keeping or forgetting the refresh token in the background ran into."""
    if written.cancelled():
        return
    error = written.exception()
    if isinstance(error, KeyringUnavailable):
        logger.warning("%s", error.user_message)
    elif error is not None:
        logger.error("keeping the refresh token failed", exc_info=error)


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
