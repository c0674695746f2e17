"""The account session (tray_app/account.py) against a real demo server: what is kept
in the vault and when, what is saved as the last account, the server address rule
the tray app and headless mode share, and what a typed server address means."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.services import RunningServer
from tests.tray_app.conftest import scaled
from tray_app import config
from tray_app.account import (
    AccountSession,
    ServerAddressProblem,
    keyring_refusal,
    normalize_server_url,
    server_address,
)
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


@pytest.mark.parametrize(
    ("typed", "used"),
    [
        # No scheme: https for a name, http for this computer (with or without a port).
        ("notify.example.com", "https://notify.example.com"),
        ("  Notify.Example.COM/  ", "https://notify.example.com"),
        ("notify.example.com:8443/tray/", "https://notify.example.com:8443/tray"),
        ("10.0.0.5:8000", "https://10.0.0.5:8000"),
        ("localhost", "http://localhost"),
        ("localhost:8000", "http://localhost:8000"),
        ("app.localhost", "http://app.localhost"),
        ("127.0.0.1", "http://127.0.0.1"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("127.8.9.10", "http://127.8.9.10"),
        ("[::1]", "http://[::1]"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("::1", "http://[::1]"),
        ("[2001:db8::1]:8000", "https://[2001:db8::1]:8000"),
        ("münchen.example", "https://münchen.example"),
        # An explicit scheme is kept, even http to a remote name: the user said so.
        ("http://notify.example.com", "http://notify.example.com"),
        ("HTTPS://notify.example.com/", "https://notify.example.com"),
        ("https://localhost:8443", "https://localhost:8443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_a_typed_server_address_is_completed(typed: str, used: str) -> None:
    assert normalize_server_url(typed) == used


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "Enter the server address."),
        ("   ", "Enter the server address."),
        ("notify example.com", "cannot contain spaces"),
        ("https://notify.example.com/a b", "cannot contain spaces"),
        ("notify.example.com\x00", "a character it cannot have"),
        ("ftp://x", "“ftp://” addresses cannot be used"),
        ("mailto:alice@example.com", "“mailto:” addresses cannot be used"),
        ("https:/notify.example.com", "two slashes after “https:”"),
        ("://notify.example.com", "start the address with https:// or http://"),
        ("https://", "no server name"),
        ("http://:8000", "no server name"),
        ("/just/a/path", "no server name"),
        ("notify.example.com:notaport", "port must be a number from 1 to 65535"),
        ("notify.example.com:0", "port must be a number from 1 to 65535"),
        ("notify.example.com:65536", "port must be a number from 1 to 65535"),
        ("alice@notify.example.com", "Leave your user name out"),
        ("notify.example.com/?next=x", "cannot contain ? or #"),
        ("notify..example.com", "server name is not valid"),
        ("-notify.example.com", "server name is not valid"),
        ("notify.example.com:80:80", "port must be"),
        ("127.1", "server name is not valid"),
        ("300.1.1.1", "server name is not valid"),
        ("[notipv6]:80", "server name is not valid"),
        ("[fe80::1%eth0]", "server name is not valid"),
        ("a" * 64 + ".example.com", "server name is not valid"),
    ],
)
def test_an_unusable_server_address_says_why(typed: str, words: str) -> None:
    with pytest.raises(ServerAddressProblem) as caught:
        normalize_server_url(typed)
    assert words.lower() in str(caught.value).lower()


FUZZ = settings(max_examples=scaled(300, minimum=50), deadline=None)
_LABELS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_NAMES = (
    st.lists(_LABELS, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda name: not name.split(".")[-1].isdigit())  # that would be an IPv4 address
    .filter(lambda name: name != "localhost" and not name.endswith(".localhost"))
)
_PORTS = st.one_of(st.none(), st.integers(1, 65535))
_PATHS = st.one_of(st.just(""), st.from_regex(r"(/[A-Za-z0-9._~-]{1,10}){1,3}", fullmatch=True))


def _port(port: int | None) -> str:
    return "" if port is None else f":{port}"


@FUZZ
@given(name=_NAMES, port=_PORTS, path=_PATHS, slash=st.booleans())
def test_any_host_name_without_a_scheme_gets_https(
    name: str, port: int | None, path: str, slash: bool
) -> None:
    typed = f"{name.upper()}{_port(port)}{path}{'/' if slash else ''}"
    assert normalize_server_url(typed) == f"https://{name}{_port(port)}{path}"


@FUZZ
@given(
    host=st.one_of(
        st.just("localhost"),
        _LABELS.map(lambda label: f"{label}.localhost"),
        st.ip_addresses(network="127.0.0.0/8").map(str),
        st.just("[::1]"),
        st.just("[0:0:0:0:0:0:0:1]"),
    ),
    port=_PORTS,
)
def test_this_computer_without_a_scheme_gets_http(host: str, port: int | None) -> None:
    used = normalize_server_url(f"{host}{_port(port)}")
    assert used.startswith("http://")
    assert urlsplit(used).port == port


@FUZZ
@given(address=st.ip_addresses(), port=_PORTS)
def test_an_ip_address_gets_http_exactly_when_it_is_this_computer(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None
) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)
    used = normalize_server_url(f"{host}{_port(port)}")
    assert used == f"{'http' if address.is_loopback else 'https'}://{host}{_port(port)}"


@FUZZ
@given(
    scheme=st.from_regex(r"[A-Za-z][A-Za-z0-9+-]{0,8}", fullmatch=True).filter(
        lambda scheme: scheme.lower() not in ("http", "https")
    ),
    name=_NAMES,
)
def test_any_other_scheme_is_refused(scheme: str, name: str) -> None:
    with pytest.raises(ServerAddressProblem, match="cannot be used"):
        normalize_server_url(f"{scheme}://{name}")


@FUZZ
@given(
    name=_NAMES,
    before=st.text(max_size=5),
    after=st.text(max_size=5),
    space=st.sampled_from(" \t\u00a0\u2003"),
)
def test_spaces_inside_an_address_are_refused(
    name: str, before: str, after: str, space: str
) -> None:
    typed = f"{before}{name}{space}{after}"
    if not typed.strip() or not any(char.isspace() for char in typed.strip()):
        return  # the space was only at an edge, which is trimmed
    with pytest.raises(ServerAddressProblem):
        normalize_server_url(typed)


@FUZZ
@given(
    typed=st.one_of(
        st.text(max_size=40),
        st.builds(
            "".join,
            st.lists(
                st.sampled_from(
                    [
                        "http",
                        "https",
                        "ftp",
                        ":",
                        "//",
                        "/",
                        "[",
                        "]",
                        "::1",
                        "@",
                        "%",
                        ".",
                        "localhost",
                        "example",
                        "com",
                        "8000",
                        "-",
                        "ü",
                        "?",
                        "#",
                        " ",
                        "127.0.0.1",
                    ]
                ),
                max_size=12,
            ),
        ),
    )
)
def test_any_text_is_an_address_or_a_plain_problem(typed: str) -> None:
    """Whatever is typed: a ServerAddressProblem with words, or an http(s) address with a
    host and no spaces that stays the same when normalised again (what the dialog says
    back is what it would use the next time)."""
    problem: str | None = None
    try:
        used = normalize_server_url(typed)
    except ServerAddressProblem as caught:
        problem = str(caught)
    if problem is not None:
        assert problem.endswith(".")
        return
    parts = urlsplit(used)
    assert parts.scheme in ("http", "https")
    assert parts.hostname
    assert not any(char.isspace() for char in used)
    assert not used.endswith("/")
    assert normalize_server_url(used) == used


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
    await vault.settled()  # kept on the vault's worker thread
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
    assert not await again.restore()  # nothing kept to restore
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
    assert await second.restore()
    me = await second.api.me()
    assert me["username"] == "alice"
    await second.close()


@pytest.mark.asyncio
async def test_without_remember_me_nothing_is_kept(demo_server: RunningServer) -> None:
    vault = TokenVault.in_memory()
    session = _session(demo_server, vault, remember=False)
    await session.log_in("demo")
    await vault.settled()
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
