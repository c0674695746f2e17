"""The keyring's Secret Service backend, without loading ``keyring`` (the fast path of the
app's own process and of the keyring helper).

On Linux, reading and saving the refresh token is a few D-Bus calls to the Secret
Service, made on every start. ``keyring`` costs ~0.17 s of CPU before the first of them:
its import pulls ``urllib.request``, ``http.client`` and ``email`` through
``jaraco.context``, and choosing a backend imports every backend it knows through entry
points. Where that choice is certain to be its Secret Service backend, this module makes
the same calls itself, over ``jeepney`` (pure Python, ~10 ms to import): in the app's
process (:func:`tray_app.store.secrets._default_keyring`), and in the helper
(:mod:`tray_app.store.vault_helper`) when a vault is given one.

"Certain" means what ``keyring`` itself would decide (``keyring.core._detect_backend``):
Linux, no ``PYTHON_KEYRING_BACKEND``, no ``keyringrc.cfg`` (either may name another
backend), not a KDE session (there KWallet's priority, 5.1, beats Secret Service's 5),
and a Secret Service on the session bus. Anything else goes through ``keyring`` as before.

Entries are the backend's own: the same item attributes (``service``, ``username``, and
``application`` on write), label, content type and collection (the default one, created
as ``secretstorage`` creates it when there is none), so a token saved by either path is
found by the other.

The session uses the Secret Service's ``plain`` algorithm, not the ``dh-ietf1024-sha256-
aes128-cbc-pkcs7`` one ``secretstorage`` negotiates: that one needs AES, which means
``cryptography`` (~60 ms of CPU and 3 MiB to import, most of what ``secretstorage``
cost). The secret then crosses the user's own session bus in the clear. The bus is a
socket only this user's processes can open, and any of those can ask the Secret Service
for the same item anyway; the encryption guards against a bus monitor of the same user,
who could equally call ``GetSecret``. The keyring's storage on disk is unchanged
(encrypted by the daemon). Go's widely used ``zalando/go-keyring`` (the GitHub CLI keeps
its tokens through it) talks ``plain`` for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tray_app.store.secrets import KeyringFailure

if TYPE_CHECKING:
    from jeepney.io.blocking import DBusConnection

__all__ = ["SecretServiceBackend", "keyring_would_choose_secret_service", "open_if_chosen"]

# keyring's names, so that statuses, messages and stored items read the same either way.
BACKEND_NAME: Final = "SecretService Keyring"
_APPLICATION: Final = "Python keyring library"
# keyring's exception type names, which the app's reasons and logs carry.
_LOCKED: Final = "KeyringLocked"
_NOT_FOUND: Final = "PasswordDeleteError"

_BUS_NAME: Final = "org.freedesktop.secrets"
_PREFIX: Final = "org.freedesktop.Secret."
_SERVICE_PATH: Final = "/org/freedesktop/secrets"
_DEFAULT_COLLECTION: Final = "/org/freedesktop/secrets/aliases/default"
_NO_OBJECT: Final = "/"
_CONTENT_TYPE: Final = "text/plain"  # secretstorage's default, which keyring leaves as is
# D-Bus errors meaning "no such collection or item" (secretstorage's ItemNotFound).
_UNKNOWN_OBJECT_ERRORS: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.Secret.Error.NoSuchObject",
    }
)


def keyring_config_file() -> Path:
    """Where ``keyring`` reads its configuration on Linux (``keyring.util.platform_``)."""
    root = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(root, "python_keyring", "keyringrc.cfg")


def keyring_would_choose_secret_service() -> bool:
    """Whether, if a Secret Service answers, ``keyring`` is sure to use it (see the
    module's docstring); the bus is not asked here."""
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return False
    if "KDE" in os.environ.get("XDG_CURRENT_DESKTOP", "").split(":"):
        return False
    try:
        return not keyring_config_file().exists()
    except OSError:  # an unreadable home: let keyring decide, and say why
        return False


def open_if_chosen() -> SecretServiceBackend | None:
    """The Secret Service, when ``keyring`` would choose it and it answers; None means
    "ask ``keyring``" (it then finds the same answer, or the reason there is none)."""
    if not keyring_would_choose_secret_service():
        return None
    try:
        from jeepney.io.blocking import open_dbus_connection
    except ImportError:
        return None
    try:
        connection = open_dbus_connection(bus="SESSION")
    except Exception:  # no session bus, or one that refuses us: keyring says which
        return None
    backend = SecretServiceBackend(connection)
    if not backend.available():
        backend.close()
        return None
    return backend


class NoSuchObject(Exception):
    """The object asked for does not exist (a collection or an item that went)."""


class SecretServiceBackend:
    """``keyring.backends.SecretService.Keyring``'s three operations over one connection.

    Every failure is a :class:`KeyringFailure` (never the D-Bus error's message, which
    may echo arguments).

    Args:
        connection: A jeepney blocking connection to the session bus; closed by
            :meth:`close`.
    """

    name = BACKEND_NAME

    def __init__(self, connection: DBusConnection) -> None:
        self._connection = connection
        self._session: str | None = None
        # A vault keeps its backend for the life of the process; one dropped earlier
        # (a vault replaced at a new login, a test's) closes its socket with it.
        self._closer = weakref.finalize(self, _close_quietly, connection)

    def close(self) -> None:
        self._closer()

    def available(self) -> bool:
        """Whether a Secret Service runs on the bus or can be started by it (what
        ``secretstorage.check_service_availability`` asks)."""
        from jeepney.bus_messages import message_bus

        try:
            (running,) = self._call(message_bus, "NameHasOwner", "s", _BUS_NAME)
            if running:
                return True
            (names,) = self._call(message_bus, "ListActivatableNames")
        except Exception:
            return False
        return _BUS_NAME in names

    def get_password(self, service: str, username: str) -> str | None:
        with _failures():
            for item in self._search({"username": username, "service": service}):
                self._unlock_if_locked(item, "Item")
                (secret,) = self._call(
                    self._address(item, "Item"), "GetSecret", "o", self._session_path()
                )
                return bytes(secret[2]).decode("utf-8")
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        attributes = {"username": username, "service": service, "application": _APPLICATION}
        properties = {
            _PREFIX + "Item.Label": ("s", f"Password for '{username}' on '{service}'"),
            _PREFIX + "Item.Attributes": ("a{ss}", attributes),
        }
        with _failures():
            collection = self._collection()
            secret = (self._session_path(), b"", password.encode("utf-8"), _CONTENT_TYPE)
            item, prompt = self._call(
                self._address(collection, "Collection"),
                "CreateItem",
                "a{sv}(oayays)b",
                properties,
                secret,
                True,  # replace the entry with the same attributes
            )
            if item == _NO_OBJECT:
                self._prompt(prompt)

    def delete_password(self, service: str, username: str) -> None:
        with _failures():
            for item in self._search({"username": username, "service": service}):
                (prompt,) = self._call(self._address(item, "Item"), "Delete")
                if prompt != _NO_OBJECT:
                    self._prompt(prompt)
                return
        raise KeyringFailure("not_found", _NOT_FOUND)

    # --- the Secret Service API --------------------------------------------------------

    def _collection(self) -> str:
        """The default collection's path, unlocked (the desktop's prompt may ask a
        person), created if there is none."""
        try:
            self._unlock_if_locked(_DEFAULT_COLLECTION, "Collection")
        except NoSuchObject:
            properties = {_PREFIX + "Collection.Label": ("s", "Default")}
            path, prompt = self._call(
                self._address(_SERVICE_PATH, "Service"),
                "CreateCollection",
                "a{sv}s",
                properties,
                "default",
            )
            if path == _NO_OBJECT:
                _, path = self._prompt(prompt)
            return str(path)
        return _DEFAULT_COLLECTION

    def _search(self, attributes: dict[str, str]) -> list[str]:
        """Items of the default collection with ``attributes`` (keyring's backend looks
        in that collection only)."""
        collection = self._collection()
        (items,) = self._call(
            self._address(collection, "Collection"), "SearchItems", "a{ss}", attributes
        )
        return list(items)

    def _unlock_if_locked(self, path: str, kind: str) -> None:
        from jeepney import Properties

        (variant,) = self._call(Properties(self._address(path, kind)).get("Locked"))
        if not variant[1]:
            return
        _, prompt = self._call(self._address(_SERVICE_PATH, "Service"), "Unlock", "ao", [path])
        if prompt != _NO_OBJECT:
            self._prompt(prompt)  # the desktop's prompt; it may wait for a person
        (variant,) = self._call(Properties(self._address(path, kind)).get("Locked"))
        if variant[1]:  # they dismissed it, or the service would not
            raise KeyringFailure("locked", _LOCKED)

    def _session_path(self) -> str:
        if self._session is None:
            _, path = self._call(
                self._address(_SERVICE_PATH, "Service"), "OpenSession", "sv", "plain", ("s", "")
            )
            self._session = str(path)
        return self._session

    def _prompt(self, prompt: str) -> tuple[str, Any]:
        """Show ``prompt`` and wait for its answer: the result's (signature, value).

        Raises:
            KeyringFailure: ``kind="locked"``: the person dismissed it.
        """
        from jeepney import MatchRule, MessageType
        from jeepney.bus_messages import message_bus

        # The bus routes by the service's well-known name; the signal itself carries
        # its unique name (":1.5"), so the local filter matches on the path instead.
        rule = MatchRule(
            type=MessageType.signal, path=prompt, interface=_PREFIX + "Prompt", member="Completed"
        )
        bus_rule = MatchRule(
            type=MessageType.signal, sender=_BUS_NAME, path=prompt, interface=_PREFIX + "Prompt"
        )
        self._call(message_bus, "AddMatch", "s", bus_rule.serialise())
        try:
            with self._connection.filter(rule) as signals:
                self._call(self._address(prompt, "Prompt"), "Prompt", "s", "")
                dismissed, result = self._connection.recv_until_filtered(signals).body
        finally:
            # The app keeps this connection for the life of the process.
            with contextlib.suppress(Exception):
                self._call(message_bus, "RemoveMatch", "s", bus_rule.serialise())
        if dismissed:
            raise KeyringFailure("locked", _LOCKED)
        return result  # type: ignore[no-any-return]

    @staticmethod
    def _address(path: str, kind: str) -> Any:
        from jeepney import DBusAddress

        return DBusAddress(path, bus_name=_BUS_NAME, interface=_PREFIX + kind)

    def _call(self, target: Any, method: str | None = None, signature: str = "", *body: Any) -> Any:
        """The reply's body to a method call (``target`` is an address, with ``method``,
        or a ready message), or the error reply raised.

        Raises:
            NoSuchObject: the object does not exist.
            jeepney.wrappers.DBusErrorResponse: any other error reply.
        """
        from jeepney import new_method_call
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        message = target if method is None else new_method_call(target, method, signature, body)
        try:
            return unwrap_msg(self._connection.send_and_get_reply(message))
        except DBusErrorResponse as error:
            if error.name in _UNKNOWN_OBJECT_ERRORS:
                raise NoSuchObject(error.name) from None
            raise


def _close_quietly(connection: DBusConnection) -> None:
    with contextlib.suppress(Exception):
        connection.close()


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """Any error of the bus or the service as a :class:`KeyringFailure` that names only
    its type (ours pass as they are)."""
    try:
        yield
    except KeyringFailure:
        raise
    except Exception as error:
        raise KeyringFailure("failed", type(error).__name__) from None
