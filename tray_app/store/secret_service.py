"""The keyring's Secret Service backend, without loading ``keyring`` (the helper's fast path).

The keyring helper (:mod:`tray_app.store.vault_helper`) runs on every start, right after
the tray icon appears, while the app loads; on Linux its one real job is three D-Bus calls
to the Secret Service. ``keyring`` costs ~0.17 s of CPU before the first of them: its
import pulls ``urllib.request``, ``http.client`` and ``email`` through ``jaraco.context``,
and choosing a backend imports every backend it knows through entry points. Where that
choice is certain to be its Secret Service backend, this module does the same calls
through ``secretstorage`` (the library that backend uses, ~0.05 s), so the helper competes
less with the app's own start.

"Certain" means what ``keyring`` itself would decide (``keyring.core._detect_backend``):
Linux, no ``PYTHON_KEYRING_BACKEND``, no ``keyringrc.cfg`` (either may name another
backend), not a KDE session (there KWallet's priority, 5.1, beats Secret Service's 5),
and a Secret Service on the session bus. Anything else goes through ``keyring`` as before.

Entries are the backend's own: the same item attributes (``service``, ``username``, and
``application`` on write), label and collection (the default one), so a token saved by
either path is found by the other.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tray_app.store.secrets import KeyringFailure

if TYPE_CHECKING:
    from jeepney.io.blocking import DBusConnection
    from secretstorage.collection import Collection

__all__ = ["SecretServiceBackend", "keyring_would_choose_secret_service", "open_if_chosen"]

# keyring's names, so that statuses, messages and stored items read the same either way.
BACKEND_NAME: Final = "SecretService Keyring"
_APPLICATION: Final = "Python keyring library"
# keyring's exception type names, which the app's reasons and logs carry.
_LOCKED: Final = "KeyringLocked"
_NOT_FOUND: Final = "PasswordDeleteError"


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
        import secretstorage
    except ImportError:
        return None
    try:
        connection = secretstorage.dbus_init()
    except Exception:  # no session bus, or one that refuses us: keyring says which
        return None
    try:
        available = secretstorage.check_service_availability(connection)
    except Exception:
        available = False
    if not available:
        connection.close()
        return None
    return SecretServiceBackend(connection)


class SecretServiceBackend:
    """``keyring.backends.SecretService.Keyring``'s three operations over one connection.

    Every failure is a :class:`KeyringFailure` (never the D-Bus error's message, which
    may echo arguments).

    Args:
        connection: A ``secretstorage.dbus_init()`` connection; closed by :meth:`close`.
    """

    name = BACKEND_NAME

    def __init__(self, connection: DBusConnection) -> None:
        self._connection = connection

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()

    def _collection(self) -> Collection:
        import secretstorage

        collection = secretstorage.get_default_collection(self._connection)
        if collection.is_locked():
            collection.unlock()  # the desktop's prompt; it may wait for a person
            if collection.is_locked():  # they dismissed it
                raise KeyringFailure("locked", _LOCKED)
        return collection

    def get_password(self, service: str, username: str) -> str | None:
        with _failures():
            for item in self._collection().search_items({"username": username, "service": service}):
                if item.is_locked():
                    item.unlock()
                    if item.is_locked():
                        raise KeyringFailure("locked", _LOCKED)
                return bytes(item.get_secret()).decode("utf-8")
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        attributes = {"username": username, "service": service, "application": _APPLICATION}
        label = f"Password for '{username}' on '{service}'"
        with _failures():
            self._collection().create_item(
                label, attributes, password.encode("utf-8"), replace=True
            )

    def delete_password(self, service: str, username: str) -> None:
        with _failures():
            for item in self._collection().search_items({"username": username, "service": service}):
                item.delete()
                return
        raise KeyringFailure("not_found", _NOT_FOUND)


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
