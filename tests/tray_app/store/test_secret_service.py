"""The Secret Service asked in the app's own process, over jeepney (issue 20).

Where keyring is sure to choose its Secret Service backend, a vault built without a
backend makes the same D-Bus calls itself (a plain session: no secretstorage, no
cryptography) instead of starting the keyring helper. These tests run it against a real
``gnome-keyring-daemon`` on a private D-Bus session (``keyring_desktop``), beside
keyring's own backend in this process, which must find what it wrote and the other way
round; and check that no helper process is started, except where keyring might choose
another backend.
"""

from __future__ import annotations

from pathlib import Path

import keyring.backend
import pytest
from keyring.backends import SecretService

from tests.tray_app.conftest import KeyringDesktop
from tests.tray_app.desktop_session import LOGIN_COLLECTION, SECRETS_NAME
from tests.tray_app.store.test_vault_helper import helper_children
from tray_app.store import secret_service
from tray_app.store.secrets import (
    KeyringUnavailable,
    TokenVault,
    keyring_entry_name,
    start_reading_early,
)

SERVER = "http://127.0.0.1:8000"
TOKEN = "refresh-token-7c1e5a9b3d2f4e6a8c0b"
ENTRY = keyring_entry_name(SERVER, "alice")


def keyrings_own() -> keyring.backend.KeyringBackend:
    """keyring's Secret Service backend in this process (the test's own, not the app's)."""
    keyring_class: type[keyring.backend.KeyringBackend] = SecretService.Keyring
    return keyring_class()


@pytest.fixture
def direct(
    keyring_desktop: KeyringDesktop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> KeyringDesktop:
    """The keyring desktop where keyring would choose the Secret Service: no backend
    named in the environment or a keyringrc.cfg, not KDE."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "XFCE")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    assert secret_service.keyring_would_choose_secret_service()
    return keyring_desktop


def test_the_vault_asks_the_secret_service_itself_and_starts_no_helper(
    direct: KeyringDesktop,
) -> None:
    earlier = set(helper_children())  # kept by earlier tests' vaults, idle

    start_reading_early(SERVER, "alice")
    vault = TokenVault(preload=(SERVER, "alice"))
    assert vault.status.usable
    assert vault.status.backend == "SecretService Keyring"
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True

    assert TokenVault().load_refresh_token(SERVER, "alice") == TOKEN
    assert set(helper_children()) - earlier == set()


def test_entries_cross_between_the_direct_path_and_keyrings_own(direct: KeyringDesktop) -> None:
    """The same collection, attributes and label: what one writes, the other reads and
    deletes (an upgrade from a release that went through keyring keeps its login)."""
    keyrings_own().set_password(TokenVault.SERVICE, ENTRY, "saved-by-keyring")
    assert TokenVault(preload=(SERVER, "alice")).load_refresh_token(SERVER, "alice") == (
        "saved-by-keyring"
    )

    TokenVault().save_refresh_token(SERVER, "alice", TOKEN)
    assert keyrings_own().get_password(TokenVault.SERVICE, ENTRY) == TOKEN
    keyrings_own().delete_password(TokenVault.SERVICE, ENTRY)

    TokenVault().delete_refresh_token(SERVER, "alice")  # nothing left: not an error
    assert TokenVault().load_refresh_token(SERVER, "alice") is None


def test_a_locked_keyring_says_locked_as_through_the_helper(direct: KeyringDesktop) -> None:
    """The unlock prompt comes and is dismissed (no prompter on this bus): the same
    verdict and reason as keyring's, and the token kept in memory for the session."""
    TokenVault().save_refresh_token(SERVER, "alice", "earlier-token")
    direct.session.dbus_send(
        SECRETS_NAME,
        "/org/freedesktop/secrets",
        "org.freedesktop.Secret.Service.Lock",
        f"array:objpath:{LOGIN_COLLECTION}",
    )

    vault = TokenVault(preload=(SERVER, "alice"))

    assert vault.status.usable is False
    assert vault.status.reason.startswith("Your keyring is locked and was not unlocked")
    assert vault.load_refresh_token(SERVER, "alice") is None
    assert vault.save_refresh_token(SERVER, "bob", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "bob") == TOKEN
    with pytest.raises(KeyringUnavailable, match="the keyring is locked"):
        vault.delete_refresh_token(SERVER, "alice")


@pytest.mark.parametrize(
    "setting", ["env", "config", "kde"]
)  # each may make keyring choose another backend
def test_where_keyring_might_choose_another_backend_the_helper_runs(
    direct: KeyringDesktop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    if setting == "env":
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    elif setting == "config":
        config = tmp_path / "config" / "python_keyring" / "keyringrc.cfg"
        config.parent.mkdir(parents=True)
        config.write_text("[backend]\ndefault-keyring=keyring.backends.SecretService.Keyring\n")
    else:
        monkeypatch.setenv("XDG_CURRENT_DESKTOP", "KDE")
    earlier = set(helper_children())

    vault = TokenVault()

    assert set(helper_children()) - earlier, "no helper was started"
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True
    assert keyrings_own().get_password(TokenVault.SERVICE, ENTRY) == TOKEN


def test_without_a_secret_service_on_the_bus_the_helper_says_why(
    direct: KeyringDesktop,
) -> None:
    """The bus answers but nobody owns (or can start) org.freedesktop.secrets: the
    direct path steps aside and keyring, in the helper, gives its reason."""
    direct.daemon.terminate()
    direct.daemon.wait(timeout=30)
    direct.session.wait_until(
        lambda: not secret_service_running(), what="the Secret Service to leave the bus"
    )

    assert secret_service.open_if_chosen() is None
    vault = TokenVault()
    assert vault.status.usable is False
    assert vault.session_only


def secret_service_running() -> bool:
    backend = secret_service.open_if_chosen()
    if backend is None:
        return False
    backend.close()
    return True
