"""The refresh token in the OS keyring: a real gnome-keyring-daemon on a private D-Bus bus.

Every test that needs a keyring talks to a real ``gnome-keyring-daemon`` (Debian package
``gnome-keyring``) on a private ``dbus-daemon`` session started by
:class:`tests.tray_app.desktop_session.DesktopSession`. "A new process" is a real Python
subprocess, so keyring picks its backend afresh, as the app would at start-up.

The one stand-in is :class:`PlaintextFileKeyring`: a plaintext backend like
``keyrings.alt.file.PlaintextKeyring`` (which is not installed here, so as not to change
the backend every other process in the venv picks). It really writes tokens to a file, so
the test can show the file would hold the token, and that the vault refuses it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyring.backend
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.backends import SecretService
from keyring.backends.chainer import ChainerBackend
from keyring.compat import properties

from tests.tray_app.conftest import (
    KeyringDesktop,
    WaitingKeyring,
    client_env,
    process_gone,
    require_programs,
)
from tests.tray_app.desktop_session import LOGIN_COLLECTION, SECRETS_NAME, DesktopSession
from tray_app.store.errors import StoreError
from tray_app.store.secrets import (
    KeyringStatus,
    KeyringUnavailable,
    TokenVault,
    keyring_entry_name,
    keyring_status,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVER = "http://127.0.0.1:8000"
TOKEN = "refresh-token-7f3c9a1e5b2d4c6e8a0b"


def make(cls: type[keyring.backend.KeyringBackend]) -> keyring.backend.KeyringBackend:
    """A new instance of a keyring backend class (keyring's ``__init__`` is untyped)."""
    return cls()


def secret_service() -> keyring.backend.KeyringBackend:
    """A new Secret Service backend: it finds the bus through DBUS_SESSION_BUS_ADDRESS."""
    return make(SecretService.Keyring)


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    """Environment of an app process whose every file goes under ``tmp_path/app``.

    No D-Bus session and no keyring configuration of the test process leak in.
    """
    return client_env(tmp_path / "app", password=None)


# Runs a list of vault calls in a fresh interpreter; keyring chooses its backend itself.
_VAULT_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from tray_app.store.secrets import TokenVault
vault = TokenVault()
results = [getattr(vault, name + "_refresh_token")(*args) for name, *args in json.load(sys.stdin)]
status = vault.status
print(json.dumps({"usable": status.usable, "backend": status.backend, "reason": status.reason,
                  "session_only": vault.session_only, "results": results}))
"""


def run_vault(env: dict[str, str], *calls: tuple[str, ...]) -> dict[str, Any]:
    """``TokenVault()`` in a new Python process: the results of ``calls``, and its status.

    Fails if the process logged the token (its log goes to stderr at DEBUG level).
    """
    completed = subprocess.run(
        [sys.executable, "-c", _VAULT_SCRIPT],
        input=json.dumps(calls),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert TOKEN not in completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every regular file under ``root`` whose raw bytes contain ``needle`` (SQLite too)."""
    data = needle.encode()
    return [path for path in root.rglob("*") if path.is_file() and data in path.read_bytes()]


class PlaintextFileKeyring(keyring.backend.KeyringBackend):
    """Test stand-in for keyrings.alt's PlaintextKeyring: writes secrets to a JSON file.

    Never chosen by keyring's own detection (no viable priority), so it cannot leak into
    other tests in this process.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path

    @properties.classproperty
    def priority(cls) -> float:  # noqa: N805 (keyring's classproperty)
        raise RuntimeError("test stand-in: never picked by keyring's detection")

    def _entries(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        entries: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8"))
        return entries

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}/{username}"] = password
        self.path.write_text(json.dumps(entries), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        entries.pop(f"{service}/{username}", None)
        self.path.write_text(json.dumps(entries), encoding="utf-8")


class OnlyRefusedChainer(ChainerBackend):
    """A chainer (as keyring builds when several backends are viable) of refused members."""

    viable = False  # keyring's own detection must never pick this test class

    members: list[keyring.backend.KeyringBackend] = []

    @properties.classproperty
    def backends(cls) -> list[keyring.backend.KeyringBackend]:  # noqa: N805
        return cls.members


# --- with a real keyring daemon -----------------------------------------------------


def test_a_token_round_trips_through_the_daemon_and_into_a_new_process(
    keyring_desktop: KeyringDesktop, app_env: dict[str, str], tmp_path: Path
) -> None:
    vault = TokenVault(backend=secret_service())
    assert vault.status == KeyringStatus(True, "SecretService Keyring", "")
    assert vault.session_only is False

    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True

    assert TokenVault(backend=secret_service()).load_refresh_token(SERVER, "alice") == TOKEN
    # A separate interpreter that picks its own backend reads it back: it is in the daemon.
    env = {**app_env, **keyring_desktop.session.env}
    other = run_vault(env, ("load", SERVER, "alice"))
    assert other["usable"] is True
    assert other["backend"] == "SecretService Keyring"
    assert other["results"] == [TOKEN]
    assert files_containing(tmp_path / "app", TOKEN) == []
    # gnome-keyring's own file is encrypted: the token is not in it either.
    assert files_containing(keyring_desktop.session.root, TOKEN) == []


def test_a_new_process_with_the_daemon_stores_in_it_and_writes_no_app_file(
    keyring_desktop: KeyringDesktop, app_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**app_env, **keyring_desktop.session.env}

    first = run_vault(env, ("save", SERVER, "bob", TOKEN))

    assert first["results"] == [True]
    assert first["session_only"] is False
    assert TokenVault(backend=secret_service()).load_refresh_token(SERVER, "bob") == TOKEN
    assert files_containing(tmp_path / "app", TOKEN) == []


def test_delete_removes_the_entry_and_is_idempotent(keyring_desktop: KeyringDesktop) -> None:
    vault = TokenVault(backend=secret_service())
    vault.save_refresh_token(SERVER, "alice", TOKEN)

    vault.delete_refresh_token(SERVER, "alice")
    vault.delete_refresh_token(SERVER, "alice")
    TokenVault(backend=secret_service()).delete_refresh_token(SERVER, "nobody")

    assert vault.load_refresh_token(SERVER, "alice") is None
    assert TokenVault(backend=secret_service()).load_refresh_token(SERVER, "alice") is None
    assert vault.status.usable is True


def test_servers_and_users_have_separate_entries(keyring_desktop: KeyringDesktop) -> None:
    vault = TokenVault(backend=secret_service())
    accounts = {
        ("http://127.0.0.1:8000", "alice"): "token-a",
        ("http://127.0.0.1:8000", "bob"): "token-b",
        ("http://127.0.0.1:9000", "alice"): "token-c",
        ("https://notify.example.com/team", "alice"): "token-d",
    }
    for (server, user), token in accounts.items():
        assert vault.save_refresh_token(server, user, token) is True

    fresh = TokenVault(backend=secret_service())
    for (server, user), token in accounts.items():
        assert fresh.load_refresh_token(server, user) == token
    # Spellings of one server share its entry.
    assert fresh.load_refresh_token("HTTPS://Notify.Example.com:443/team/", "alice") == "token-d"
    assert fresh.load_refresh_token("http://127.0.0.1:8000", "carol") is None

    fresh.delete_refresh_token("http://127.0.0.1:8000", "alice")
    assert vault.load_refresh_token("http://127.0.0.1:8000", "alice") is None
    assert vault.load_refresh_token("http://127.0.0.1:8000", "bob") == "token-b"
    assert vault.load_refresh_token("http://127.0.0.1:9000", "alice") == "token-c"


def test_a_session_only_vault_keeps_tokens_out_of_the_keyring(
    keyring_desktop: KeyringDesktop,
) -> None:
    remembered = TokenVault(backend=secret_service())
    remembered.save_refresh_token(SERVER, "alice", "earlier-token")
    vault = TokenVault(backend=secret_service(), session_only=True)
    assert vault.session_only is True
    assert vault.status.usable is True  # the keyring works; the user chose not to use it

    assert vault.save_refresh_token(SERVER, "bob", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "bob") == TOKEN
    assert TokenVault(backend=secret_service()).load_refresh_token(SERVER, "bob") is None

    # Logging out of a session-only vault still removes what an earlier session stored.
    vault.delete_refresh_token(SERVER, "alice")
    assert remembered.load_refresh_token(SERVER, "alice") is None


def test_an_in_memory_vault_never_touches_a_keyring_that_waits_for_a_person(
    waiting_keyring: WaitingKeyring,
) -> None:
    """``--session-only`` and the tray app's start: no keyring call at all, so a locked
    keyring whose unlock prompt nobody answers holds nothing up and reports nothing."""
    vault = TokenVault.in_memory()
    assert vault.session_only is True
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    vault.delete_refresh_token(SERVER, "alice")  # a keyring call would raise: locked
    assert vault.load_refresh_token(SERVER, "alice") is None
    # Not the keyring's verdict (locked): the vault never asked it.
    assert vault.status == KeyringStatus(False, "none", vault.status.reason)
    assert "session-only" in vault.status.reason
    assert waiting_keyring.prompt_is_up()


def test_a_locked_keyring_is_unusable_and_the_token_stays_in_memory(
    keyring_desktop: KeyringDesktop, caplog: pytest.LogCaptureFixture
) -> None:
    """Locked over D-Bus; with no prompter on the private bus the unlock is dismissed."""
    caplog.set_level(logging.DEBUG)
    earlier = TokenVault(backend=secret_service())
    earlier.save_refresh_token(SERVER, "alice", "earlier-token")
    keyring_desktop.session.dbus_send(
        SECRETS_NAME,
        "/org/freedesktop/secrets",
        "org.freedesktop.Secret.Service.Lock",
        f"array:objpath:{LOGIN_COLLECTION}",
    )

    status = keyring_status(secret_service())
    vault = TokenVault(backend=secret_service())

    assert status.usable is False
    assert "locked" in status.reason
    assert "log in for this session" in status.reason
    assert vault.status == status
    assert vault.session_only is True
    assert vault.save_refresh_token(SERVER, "bob", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "bob") == TOKEN
    # Logging out must not silently leave the earlier login in the locked keyring.
    with pytest.raises(KeyringUnavailable) as raised:
        vault.delete_refresh_token(SERVER, "alice")
    assert isinstance(raised.value, StoreError)
    assert "locked" in raised.value.user_message
    assert vault.load_refresh_token(SERVER, "bob") == TOKEN
    assert TOKEN not in caplog.text


def test_a_daemon_that_dies_mid_session_leaves_the_token_in_memory(
    keyring_desktop: KeyringDesktop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault = TokenVault(backend=secret_service())
    assert vault.save_refresh_token(SERVER, "alice", "first-token") is True

    keyring_desktop.session.stop(keyring_desktop.daemon)
    assert not keyring_desktop.session.name_has_owner(SECRETS_NAME)

    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.status.usable is False
    assert vault.status.backend == "SecretService Keyring"
    assert "did not answer" in vault.status.reason
    assert vault.session_only is True
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert "keeping tokens in memory" in caplog.text
    assert TOKEN not in caplog.text


def test_a_load_that_fails_answers_none_and_switches_to_memory(
    keyring_desktop: KeyringDesktop,
) -> None:
    vault = TokenVault(backend=secret_service())
    keyring_desktop.session.stop(keyring_desktop.daemon)

    assert vault.load_refresh_token(SERVER, "alice") is None
    assert vault.session_only is True
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN


# --- without a keyring --------------------------------------------------------------


def test_without_a_dbus_session_tokens_live_only_in_the_process(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    assert "DBUS_SESSION_BUS_ADDRESS" not in app_env

    first = run_vault(app_env, ("save", SERVER, "alice", TOKEN), ("load", SERVER, "alice"))
    second = run_vault(app_env, ("load", SERVER, "alice"))

    assert first["usable"] is False
    assert first["backend"] == "fail Keyring"
    assert first["reason"].startswith("No keyring service is running")
    assert "log in for this session" in first["reason"]
    assert first["session_only"] is True
    assert first["results"] == [False, TOKEN]
    assert second["results"] == [None]
    assert files_containing(tmp_path / "app", TOKEN) == []


def test_a_plaintext_backend_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app_data = tmp_path / "app-data"
    app_data.mkdir()
    plaintext = PlaintextFileKeyring(app_data / "keyring_pass.cfg")
    # The stand-in really does what keyrings.alt does, and the search would see it:
    plaintext.set_password(TokenVault.SERVICE, "control", "control-token")
    assert files_containing(app_data, "control-token") == [plaintext.path]

    vault = TokenVault(backend=plaintext)

    assert vault.status.usable is False
    assert "not one this app knows to keep secrets encrypted" in vault.status.reason
    assert vault.session_only is True
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert files_containing(app_data, TOKEN) == []
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("backend", "reason_start"),
    [
        (make(keyring.backends.fail.Keyring), "No keyring service is running"),
        (make(keyring.backends.null.Keyring), "The keyring is turned off"),
    ],
)
def test_keyrings_fail_and_null_backends_are_refused(
    backend: keyring.backend.KeyringBackend, reason_start: str
) -> None:
    status = keyring_status(backend)

    assert status.usable is False
    assert status.backend == backend.name
    assert status.reason.startswith(reason_start)
    assert TokenVault(backend=backend).save_refresh_token(SERVER, "alice", TOKEN) is False


def test_a_chainer_of_only_refused_backends_is_refused(tmp_path: Path) -> None:
    plaintext = PlaintextFileKeyring(tmp_path / "plain.json")
    OnlyRefusedChainer.members = [plaintext, make(keyring.backends.fail.Keyring)]
    try:
        vault = TokenVault(backend=make(OnlyRefusedChainer))
        assert vault.status.usable is False
        assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    finally:
        OnlyRefusedChainer.members = []
    assert not plaintext.path.exists()


def test_a_chainer_writes_only_to_its_trusted_member(
    keyring_desktop: KeyringDesktop, tmp_path: Path
) -> None:
    plaintext = PlaintextFileKeyring(tmp_path / "plain.json")
    OnlyRefusedChainer.members = [plaintext, secret_service()]
    try:
        vault = TokenVault(backend=make(OnlyRefusedChainer))
        assert vault.status == KeyringStatus(True, "SecretService Keyring", "")
        assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True
    finally:
        OnlyRefusedChainer.members = []
    assert not plaintext.path.exists()
    assert TokenVault(backend=secret_service()).load_refresh_token(SERVER, "alice") == TOKEN


# --- input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://127.0.0.1:8000", "alice@http://127.0.0.1:8000"),
        ("HTTP://LocalHost:8000/", "alice@http://localhost:8000"),
        ("https://host:443", "alice@https://host"),
        ("http://host:80/", "alice@http://host"),
        ("https://host/sub/path/?q=1#frag", "alice@https://host/sub/path"),
        ("  https://[::1]:8443 ", "alice@https://[::1]:8443"),
    ],
)
def test_entry_names_normalise_the_server_url(server: str, expected: str) -> None:
    assert keyring_entry_name(server, "alice") == expected


@pytest.mark.parametrize(
    ("server", "user"),
    [("", "alice"), ("127.0.0.1:8000", "alice"), ("ftp://host", "alice"),
     ("http://host:99999", "alice"), ("http://", "alice"), (SERVER, "")],
)  # fmt: skip
def test_bad_account_input_is_a_clear_value_error(server: str, user: str) -> None:
    vault = TokenVault(backend=make(keyring.backends.null.Keyring))
    with pytest.raises(ValueError, match=r"server address|username"):
        vault.save_refresh_token(server, user, TOKEN)
    with pytest.raises(ValueError, match=r"server address|username"):
        vault.load_refresh_token(server, user)


def test_an_empty_token_is_refused() -> None:
    vault = TokenVault(backend=make(keyring.backends.null.Keyring))
    with pytest.raises(ValueError, match="empty refresh token"):
        vault.save_refresh_token(SERVER, "alice", "")


# --- the session helper -------------------------------------------------------------


def test_closing_the_desktop_session_kills_every_process_it_started(tmp_path: Path) -> None:
    require_programs("dbus-daemon", "dbus-send", "gnome-keyring-daemon")
    session = DesktopSession(tmp_path / "desktop")
    try:
        session.start_keyring()
        pids = session.pids
        assert len(pids) == 2
        assert not any(process_gone(pid) for pid in pids)
        assert session.name_has_owner(SECRETS_NAME)
    finally:
        session.close()
    session.close()  # idempotent
    assert all(process_gone(pid) for pid in pids)
