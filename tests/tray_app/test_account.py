"""The account session (tray_app/account.py) against a real demo server: what is kept
in the vault and when, what is saved as the last account, and the server address rule
the tray app and headless mode share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.services import RunningServer
from tray_app import config
from tray_app.account import AccountSession, keyring_refusal, server_address
from tray_app.managed import REMEMBER_ME_TURNED_OFF, ManagedConfig, parse_managed_config
from tray_app.net.errors import InvalidCredentials
from tray_app.net.transport import Transport
from tray_app.store.secrets import TokenVault

SOURCE = Path("/etc/tray-notifier/managed.json")


def _managed(text: str) -> ManagedConfig:
    config_ = parse_managed_config(text, SOURCE)
    assert config_.problems == ()
    return config_


@pytest.mark.parametrize(
    ("chosen", "managed", "expected"),
    [
        # Nothing managed: the user's choice, without a trailing slash.
        ("https://mine.example/", "{}", "https://mine.example"),
        (config.DEFAULT_SERVER_URL, "{}", config.DEFAULT_SERVER_URL.rstrip("/")),
        # IT's locked address beats everything.
        ("https://mine.example", '{"server_url": "https://it.example"}', "https://it.example"),
        # IT's unlocked address beats only the built-in default, nobody's choice.
        (
            config.DEFAULT_SERVER_URL,
            '{"server_url": {"value": "https://it.example", "locked": false}}',
            "https://it.example",
        ),
        (
            "https://mine.example",
            '{"server_url": {"value": "https://it.example", "locked": false}}',
            "https://mine.example",
        ),
    ],
)
def test_server_address(chosen: str, managed: str, expected: str) -> None:
    assert server_address(chosen, _managed(managed)) == expected


def _session(server: RunningServer, vault: TokenVault, *, remember: bool) -> AccountSession:
    return AccountSession(
        server_url=server.url,
        username="alice",
        vault=vault,
        transport=Transport(),
        remember=lambda: remember,
    )


@pytest.mark.asyncio
async def test_a_login_is_kept_opened_and_forgotten_at_logout(
    demo_server: RunningServer, tmp_path: Path
) -> None:
    vault = TokenVault.in_memory()
    session = _session(demo_server, vault, remember=True)
    await session.log_in("demo")
    assert vault.load_refresh_token(demo_server.url, "alice")  # kept
    settings = config.Settings()
    opened = session.open(data_dir=tmp_path / "data", config_dir=tmp_path, settings=settings)
    assert opened.engine is session.engine
    saved = config.Settings.load(tmp_path)
    assert (saved.server_url, saved.username) == (demo_server.url, "alice")
    await session.close(logout=True)
    assert vault.load_refresh_token(demo_server.url, "alice") is None
    await session.close()  # twice is harmless

    again = _session(demo_server, vault, remember=True)
    assert not again.restore()  # nothing kept to restore
    await again.close()


@pytest.mark.asyncio
async def test_a_kept_login_is_restored_without_the_password(
    demo_server: RunningServer,
) -> None:
    vault = TokenVault.in_memory()
    first = _session(demo_server, vault, remember=True)
    await first.log_in("demo")
    await first.close()  # the process ends; the login stays kept

    second = _session(demo_server, vault, remember=True)
    assert second.restore()
    me = await second.api.me()
    assert me["username"] == "alice"
    await second.close()


@pytest.mark.asyncio
async def test_without_remember_me_nothing_is_kept(demo_server: RunningServer) -> None:
    vault = TokenVault.in_memory()
    session = _session(demo_server, vault, remember=False)
    await session.log_in("demo")
    assert vault.load_refresh_token(demo_server.url, "alice") is None
    with pytest.raises(RuntimeError, match="open"):
        _ = session.engine
    await session.close()


@pytest.mark.asyncio
async def test_a_wrong_password_keeps_nothing(demo_server: RunningServer) -> None:
    vault = TokenVault.in_memory()
    session = _session(demo_server, vault, remember=True)
    with pytest.raises(InvalidCredentials):
        await session.log_in("not the password")
    assert vault.load_refresh_token(demo_server.url, "alice") is None
    await session.close()


def test_keyring_refusal_names_its_policy_first_then_the_keyring() -> None:
    unopened = TokenVault.in_memory()  # never opened: unusable, with its reason
    assert keyring_refusal(ManagedConfig(), unopened) == unopened.status.reason
    assert unopened.status.reason
    forbidding = _managed('{"allow_remember_me": false}')
    assert keyring_refusal(forbidding, unopened) == REMEMBER_ME_TURNED_OFF


@pytest.mark.asyncio
async def test_projects_names_the_accounts_projects(demo_server: RunningServer) -> None:
    session = _session(demo_server, TokenVault.in_memory(), remember=False)
    await session.log_in("demo")
    projects = await session.projects()
    await session.close()
    assert sorted(title for _, title in projects) == ["Mobile App", "Website Redesign"]
    assert all(isinstance(project_id, int) for project_id, _ in projects)
