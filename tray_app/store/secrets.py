"""The refresh token in the OS keyring, one entry per server and user.

The token goes to the operating system's secret store (Secret Service on Linux,
KWallet, the Windows Credential Locker, the macOS Keychain) and nowhere else:
never a file of ours, a log line or an exception message. Passwords are never
stored at all.

When no trustworthy keyring is available (no keyring daemon, a locked or broken
one, or only a backend that writes plain files such as ``keyrings.alt``'s), the
vault keeps tokens in memory for the life of the process and says so through
:attr:`TokenVault.status` and :attr:`TokenVault.session_only`, so the UI can tell
the user that their login will not be remembered.

Keyring calls block (they talk D-Bus or the OS), so async callers run them in a
thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import keyring
import keyring.backend
import keyring.errors
from keyring.backends.chainer import ChainerBackend

from tray_app.store.errors import StoreError

__all__ = [
    "KeyringStatus",
    "KeyringUnavailable",
    "TokenVault",
    "keyring_entry_name",
    "keyring_status",
]

logger = logging.getLogger(__name__)

# The backends keyring itself recommends: each hands the secret to an OS secret store
# that encrypts it. Anything else (keyrings.alt, unknown third-party backends) is refused,
# because keyrings.alt's file backends write the token to disk in plain text or behind a
# password prompt on a terminal the tray app does not have.
_TRUSTED_BACKENDS = frozenset(
    {
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
        "keyring.backends.kwallet.DBusKeyringKWallet4",
        "keyring.backends.Windows.WinVaultKeyring",
        "keyring.backends.macOS.Keyring",
    }
)
_NO_KEYRING_BACKENDS = frozenset({"keyring.backends.fail.Keyring"})
_DISABLED_BACKENDS = frozenset({"keyring.backends.null.Keyring"})
_PLAINTEXT_MODULE_PREFIX = "keyrings.alt"

# A read of an entry that never exists: it proves the keyring answers (and unlocks it,
# prompting the user if their desktop can) without touching a real entry.
_PROBE_USERNAME = "keyring-probe"

_STILL_LOG_IN = "You can still log in for this session."
_REASON_NO_SERVICE = (
    "No keyring service is running (such as GNOME Keyring or KWallet), so the app cannot "
    f"remember your login. {_STILL_LOG_IN}"
)
_REASON_DISABLED = (
    "The keyring is turned off for this app (PYTHON_KEYRING_BACKEND or keyringrc.cfg selects "
    f"the null backend), so the app cannot remember your login. {_STILL_LOG_IN}"
)
_REASON_PLAINTEXT = (
    "The only keyring available ({backend}) would store your login in a plain file on disk, "
    "which this app refuses to do. Start your desktop's keyring service (such as GNOME Keyring "
    f"or KWallet) so the app can remember your login. {_STILL_LOG_IN}"
)
_REASON_UNTRUSTED = (
    "The keyring in use ({backend}) is not one this app knows to keep secrets encrypted, so "
    f"it will not store your login there. {_STILL_LOG_IN}"
)
_REASON_LOCKED = (
    "Your keyring is locked and was not unlocked, so the app cannot remember your login. "
    f"Unlock the keyring (for example by logging in to your desktop again) and restart the app. "
    f"{_STILL_LOG_IN}"
)
_REASON_NOT_OPENED = (
    "The keyring is not used: this login lasts until the app stops (--session-only)."
)
_REASON_BROKEN = (
    "The keyring service ({backend}) did not answer ({error}), so the app cannot remember "
    f"your login. Restarting your desktop session usually fixes this. {_STILL_LOG_IN}"
)


class KeyringUnavailable(StoreError):
    """The keyring could not do something the user asked for (such as forget a login).

    Attributes:
        user_message: Plain words for the UI: what went wrong and what the user can do.
            Never contains a token.
    """

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


@dataclass(frozen=True)
class KeyringStatus:
    """Whether the app can keep the refresh token in the keyring.

    Attributes:
        usable: True when tokens are stored in a trusted, answering keyring.
        backend: The keyring backend's display name, e.g. ``"SecretService Keyring"``.
        reason: Empty when usable; otherwise plain words for the UI saying what is wrong
            and what the user can do.
    """

    usable: bool
    backend: str
    reason: str


def _class_path(backend: keyring.backend.KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_name(backend: keyring.backend.KeyringBackend) -> str:
    try:
        return str(backend.name)
    except Exception:  # a third-party backend's name property is not ours to trust
        return _class_path(backend)


def _refusal(backend: keyring.backend.KeyringBackend) -> str:
    """Why ``backend`` (not a chainer) may not hold the token, in plain words."""
    path = _class_path(backend)
    name = _backend_name(backend)
    if path in _NO_KEYRING_BACKENDS:
        return _REASON_NO_SERVICE
    if path in _DISABLED_BACKENDS:
        return _REASON_DISABLED
    if path.startswith(_PLAINTEXT_MODULE_PREFIX):
        return _REASON_PLAINTEXT.format(backend=name)
    return _REASON_UNTRUSTED.format(backend=name)


def _members(backend: keyring.backend.KeyringBackend) -> list[keyring.backend.KeyringBackend]:
    """The backends a write would go to, in keyring's own order (a chainer's members)."""
    if isinstance(backend, ChainerBackend):
        return list(backend.backends)
    return [backend]


def _chainer_refusal(members: list[keyring.backend.KeyringBackend]) -> str:
    reasons = [_refusal(member) for member in members]
    # A plain-file member is the one worth naming: it is what keyring would silently use.
    for member, reason in zip(members, reasons, strict=True):
        if _class_path(member).startswith(_PLAINTEXT_MODULE_PREFIX):
            return reason
    return reasons[0] if reasons else _REASON_NO_SERVICE


def _failure_reason(backend_name: str, error: BaseException) -> str:
    if isinstance(error, keyring.errors.KeyringLocked):
        return _REASON_LOCKED
    # Only the error's type: messages of D-Bus errors may echo arguments.
    return _REASON_BROKEN.format(backend=backend_name, error=type(error).__name__)


def _assess(
    backend: keyring.backend.KeyringBackend | None,
) -> tuple[KeyringStatus, keyring.backend.KeyringBackend | None]:
    """The status, and the trusted backend to use (None when refused or not answering).

    A chainer's first trusted member is used directly, so that a write can never fall
    through to a plain-file member.
    """
    if backend is None:
        try:
            backend = keyring.get_keyring()
        except Exception as error:
            logger.warning("keyring: no backend could be loaded (%s)", type(error).__name__)
            return KeyringStatus(False, "none", _REASON_NO_SERVICE), None
    members = _members(backend)
    trusted = [member for member in members if _class_path(member) in _TRUSTED_BACKENDS]
    if not trusted:
        name = _backend_name(backend)
        reason = _chainer_refusal(members) if isinstance(backend, ChainerBackend) else None
        status = KeyringStatus(False, name, reason or _refusal(backend))
        logger.info("keyring: refusing backend %s", name)
        return status, None
    chosen = trusted[0]
    name = _backend_name(chosen)
    try:
        chosen.get_password(TokenVault.SERVICE, _PROBE_USERNAME)
    except Exception as error:
        logger.warning("keyring: %s did not answer a probe read (%s)", name, type(error).__name__)
        return KeyringStatus(False, name, _failure_reason(name, error)), chosen
    return KeyringStatus(True, name, ""), chosen


async def open_token_vault(*, session_only: bool = False) -> TokenVault:
    """``TokenVault(session_only=...)``, built on a daemon thread of its own.

    Its probe may wait for a person (a locked keyring's unlock prompt): the event loop
    goes on meanwhile, and a process that quits while it waits is not held up by it,
    as it would be by asyncio's executor, whose threads are joined at exit. Cancelling
    the await leaves the thread to finish (or be ended with the process) unheard.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[TokenVault] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # a cancelled await no longer wants it
            outcome()

    def run() -> None:
        try:
            vault = TokenVault(session_only=session_only)
        except BaseException as error:  # handed to the awaiting side as is
            outcome: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            outcome = functools.partial(future.set_result, vault)
        # RuntimeError: the loop closed meanwhile, and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="keyring-open", daemon=True).start()
    return await future


async def open_token_vault_unless(stop: asyncio.Event) -> TokenVault | None:
    """``open_token_vault()``, or None if ``stop`` is set first.

    A locked keyring puts up its unlock prompt and answers only when someone does: the
    caller's loop goes on meanwhile, and stopping does not wait for the prompt either
    (the probe's thread keeps waiting, and nothing awaits it).
    """
    opened: asyncio.Future[TokenVault | bool] = asyncio.ensure_future(open_token_vault())
    stopping: asyncio.Future[TokenVault | bool] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({opened, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not opened.done():
        opened.cancel()
        return None
    vault = opened.result()
    assert isinstance(vault, TokenVault)
    return vault


def keyring_status(backend: keyring.backend.KeyringBackend | None = None) -> KeyringStatus:
    """Whether ``backend`` (default: keyring's own choice) can hold the refresh token.

    Refuses backends that do not keep secrets in an OS secret store: keyring's ``fail``
    (no keyring service) and ``null`` (keyring disabled) backends, every ``keyrings.alt``
    backend (plain or password-prompted files), unknown third-party backends, and a chainer
    with none of the trusted backends among its members. A trusted backend must also answer
    a probe read: a locked keyring, a vanished daemon or any other error makes it unusable.

    Args:
        backend: The backend to judge; None for ``keyring.get_keyring()``.

    Returns:
        The verdict, with a plain-words reason when unusable. Never raises.
    """
    return _assess(backend)[0]


def _normalise_server_url(server_url: str) -> str:
    text = server_url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        # The address is not echoed: it may carry a password in its user-info part.
        raise ValueError("server address is not an http:// or https:// URL with a host name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("server address has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    default_port = 443 if scheme == "https" else 80
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


def keyring_entry_name(server_url: str, username: str) -> str:
    """The keyring "username" of one account's entry: ``"alice@https://host:8000"``.

    The server URL is normalised (scheme and host lower-cased, default port and trailing
    slash dropped, query and fragment ignored) so spellings of one server share an entry.

    Raises:
        ValueError: The username is empty, or the server URL is not http(s) with a host.
    """
    if not username:
        raise ValueError("username must not be empty")
    return f"{username}@{_normalise_server_url(server_url)}"


class TokenVault:
    """Refresh tokens per server and user: in the keyring, or in memory when it can't be.

    Safe to share between threads. Tokens kept in memory (``session_only``) are gone when
    the process exits.
    """

    SERVICE = "tray-notifier"

    def __init__(
        self,
        *,
        backend: keyring.backend.KeyringBackend | None = None,
        session_only: bool = False,
        use_keyring: bool = True,
    ) -> None:
        """Judge the keyring once (a probe read) and pick where tokens go.

        The probe may wait for a person: a locked keyring puts up its unlock prompt and
        answers when it is dismissed. Build it off a GUI thread; where the keyring must
        not be touched at all, use :meth:`in_memory`.

        Args:
            backend: The keyring backend; None for keyring's own choice.
            session_only: Keep new tokens in memory only (the user chose not to be
                remembered). Deleting still removes an entry an earlier session stored.
            use_keyring: False: never touch the keyring, not even to look at it.
        """
        self._lock = threading.Lock()
        self._memory: dict[str, str] = {}
        self._forced_session_only = session_only or not use_keyring
        if use_keyring:
            self._status, self._backend = _assess(backend)
        else:
            self._status, self._backend = KeyringStatus(False, "none", _REASON_NOT_OPENED), None

    @classmethod
    def in_memory(cls) -> TokenVault:
        """A vault that keeps tokens in this process's memory and never touches the
        keyring (``--session-only``, and the tray app until its keyring is opened off the
        GUI thread)."""
        return cls(use_keyring=False)

    @property
    def status(self) -> KeyringStatus:
        """The keyring's state; turns unusable (with a reason) if a later call fails."""
        with self._lock:
            return self._status

    @property
    def session_only(self) -> bool:
        """True when tokens live only in this process's memory (forced, or no keyring)."""
        with self._lock:
            return self._forced_session_only or not self._status.usable

    def save_refresh_token(self, server_url: str, username: str, token: str) -> bool:
        """Remember ``token`` for this account, replacing any earlier one.

        Returns:
            True if stored in the keyring; False if kept in memory for this session only
            (session-only vault, or the keyring failed just now; ``status`` then says why).

        Raises:
            ValueError: Empty token or username, or a server URL that is not http(s).
        """
        if not token:
            raise ValueError("refusing to save an empty refresh token")
        entry = keyring_entry_name(server_url, username)
        with self._lock:
            backend = self._writable_backend()
            if backend is not None:
                try:
                    backend.set_password(self.SERVICE, entry, token)
                except Exception as error:
                    self._mark_failed("save", entry, error)
                else:
                    self._memory.pop(entry, None)
                    return True
            self._memory[entry] = token
            return False

    def load_refresh_token(self, server_url: str, username: str) -> str | None:
        """The token remembered for this account, or None.

        A token kept in memory this session wins over the keyring. A keyring error is
        logged and answered with None (the user logs in again), never raised.

        Raises:
            ValueError: Empty username, or a server URL that is not http(s).
        """
        entry = keyring_entry_name(server_url, username)
        with self._lock:
            if entry in self._memory:
                return self._memory[entry]
            backend = self._writable_backend()
            if backend is None:
                return None
            try:
                token = backend.get_password(self.SERVICE, entry)
            except Exception as error:
                self._mark_failed("load", entry, error)
                return None
            return token or None

    def delete_refresh_token(self, server_url: str, username: str) -> None:
        """Forget this account's token, in memory and in the keyring. Idempotent.

        The keyring entry is removed even from a session-only vault, and retried even after
        an earlier keyring error, so logging out never leaves a login behind silently.

        Raises:
            ValueError: Empty username, or a server URL that is not http(s).
            KeyringUnavailable: A trusted keyring holds (or may hold) the entry but failed
                to remove it; ``user_message`` tells the user what to do.
        """
        entry = keyring_entry_name(server_url, username)
        with self._lock:
            self._memory.pop(entry, None)
            if self._backend is None:
                return
            try:
                self._backend.delete_password(self.SERVICE, entry)
            except keyring.errors.PasswordDeleteError:
                return  # nothing stored: already forgotten
            except Exception as error:
                self._mark_failed("delete", entry, error)
                problem = (
                    "the keyring is locked"
                    if isinstance(error, keyring.errors.KeyringLocked)
                    else "the keyring service did not answer"
                )
                raise KeyringUnavailable(
                    f"Your login could not be removed from the keyring: {problem}. Try again "
                    "once the keyring is unlocked, or delete the entry for "
                    f"'{self.SERVICE}' in your keyring manager (such as Seahorse or KWallet "
                    "Manager)."
                ) from None

    def _writable_backend(self) -> keyring.backend.KeyringBackend | None:
        if self._forced_session_only or not self._status.usable:
            return None
        return self._backend

    def _mark_failed(self, action: str, entry: str, error: BaseException) -> None:
        """Switch to memory for the rest of the session; log without the token."""
        name = self._status.backend
        logger.warning(
            "keyring: %s of the refresh token for %s failed (%s); keeping tokens in memory "
            "for this session",
            action,
            entry,
            type(error).__name__,
        )
        self._status = KeyringStatus(False, name, _failure_reason(name, error))
