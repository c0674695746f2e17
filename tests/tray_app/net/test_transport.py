"""Trust and proxy settings: CA bundles, certificate failures that say which certificate
and why, and the proxy resolution (configuration > environment > system settings).

TLS servers are small real ones (tests/tray_app/net/scripted_servers.py) presenting
certificates from a throwaway CA (tests/fixtures/tls.py). GNOME's proxy setting is
read by the real ``gsettings`` with its keyfile backend in a temporary directory; the
setting read is kept for ``SYSTEM_PROXY_TTL`` seconds, on a clock the tests replace.
"""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.tls import ThrowawayCA
from tests.tray_app.net.scripted_servers import ScriptedRequest, ScriptedServer, http_response
from tray_app.net.api import ApiClient
from tray_app.net.errors import TlsFailure
from tray_app.net.transport import (
    SYSTEM_PROXY_TTL,
    Transport,
    TransportSettingError,
    _system_proxy_cache,
    gnome_proxies,
)

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No proxy variable from the machine, and a GNOME setting store of this test's own
    (gsettings' keyfile backend, empty: mode 'none'), read afresh: no setting kept from
    an earlier test, and none left for a later one (in this process, for 30 s)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("GSETTINGS_BACKEND", "keyfile")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _system_proxy_cache.clear()
    yield
    _system_proxy_cache.clear()


def _token_pair(_request: ScriptedRequest) -> bytes:
    return http_response(
        200, '{"access": "a.b.c", "refresh": "r.s.t"}', content_type="application/json"
    )


# --- trust -------------------------------------------------------------------------------


def test_the_context_always_verifies(tls_ca: ThrowawayCA) -> None:
    for transport in (Transport(), Transport(ca_bundle=tls_ca.cert_path)):
        context = transport.ssl_context()
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname is True


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read"),
        (b"", "holds no PEM certificate"),
        (b"\x30\x82\x01\x0a\xff\xfe binary DER", "binary data"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", "damaged"),
        ("directory", "cannot be read"),
    ],
)
def test_a_bad_ca_bundle_is_a_clear_error_naming_the_file(
    tmp_path: Path, content: bytes | str | None, problem: str
) -> None:
    bundle = tmp_path / "corp-ca.pem"
    if content == "directory":
        bundle.mkdir()
    elif isinstance(content, bytes):
        bundle.write_bytes(content)
    with pytest.raises(TransportSettingError) as bad:
        Transport(ca_bundle=bundle).ssl_context()
    assert bad.value.code == "ca_bundle_invalid"
    for text in (str(bad.value), bad.value.user_message):
        assert str(bundle) in text
        assert problem in text


@pytest.mark.asyncio
async def test_a_bad_ca_bundle_fails_the_request_not_the_client(tmp_path: Path) -> None:
    """The app builds its client at start; the broken setting shows on the first request."""
    client = ApiClient("https://127.0.0.1:9", transport=Transport(ca_bundle=tmp_path / "no.pem"))
    async with client:
        with pytest.raises(TransportSettingError) as bad:
            await client.login("alice", "demo")
    assert str(tmp_path / "no.pem") in bad.value.user_message


@pytest.mark.asyncio
async def test_the_ca_bundle_is_trusted_besides_the_system_store(tls_ca: ThrowawayCA) -> None:
    issued = tls_ca.issue()
    async with ScriptedServer(_token_pair, issued.server_context()) as server:
        async with ApiClient(server.url, transport=Transport(proxy="none")) as client:
            with pytest.raises(TlsFailure):
                await client.login("alice", "demo")
        trusting = Transport(ca_bundle=tls_ca.cert_path, proxy="none")
        async with ApiClient(server.url, transport=trusting) as client:
            tokens = await client.login("alice", "demo")
    assert tokens.refresh == "r.s.t"
    assert len(server.requests) == 1  # nothing was sent over the refused connection


NOW = datetime.datetime.now(datetime.UTC)


@pytest.mark.parametrize(
    ("issue", "code", "words"),
    [
        (
            {"valid_from": NOW - datetime.timedelta(days=3)},
            "tls_certificate_expired",
            "expired on " + f"{NOW - datetime.timedelta(days=2):%Y-%m-%d}",
        ),
        (
            {"valid_from": NOW + datetime.timedelta(days=3)},
            "tls_certificate_not_yet_valid",
            "not valid until " + f"{NOW + datetime.timedelta(days=3):%Y-%m-%d}",
        ),
        (
            {"dns_names": ["tray.example.com"], "ips": []},
            "tls_hostname_mismatch",
            "issued for other names (tray.example.com), not for 127.0.0.1",
        ),
    ],
)
@pytest.mark.asyncio
async def test_a_refused_certificate_is_named_with_the_reason(
    tls_ca: ThrowawayCA, issue: dict[str, object], code: str, words: str
) -> None:
    issued = tls_ca.issue(**issue)  # type: ignore[arg-type]
    transport = Transport(ca_bundle=tls_ca.cert_path, proxy="none")
    async with (
        ScriptedServer(_token_pair, issued.server_context()) as server,
        ApiClient(server.url, transport=transport) as client,
    ):
        with pytest.raises(TlsFailure) as refused:
            await client.login("alice", "demo")
    error = refused.value
    assert error.code == code
    assert error.certificate is not None
    assert error.certificate.subject == issued.common_name
    for text in (error.user_message, str(error)):
        assert words in text
        assert issued.common_name in text
        assert tls_ca.common_name in text


# --- proxies ---------------------------------------------------------------------------


def test_a_configured_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    configured = Transport(proxy="http://corp-proxy:8080")
    assert configured.proxy_for("https://tray.example.com") == "http://corp-proxy:8080"
    assert configured.proxy_for("wss://tray.example.com/ws/") == "http://corp-proxy:8080"
    for direct in ("none", "DIRECT", " none "):
        assert Transport(proxy=direct).proxy_for("https://tray.example.com") is None
    assert Transport().proxy_for("https://tray.example.com") == "http://env-proxy:3128"


def test_the_environment_in_either_case_with_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Transport()
    assert transport.proxy_for("https://tray.example.com") is None
    monkeypatch.setenv("https_proxy", "secure-proxy:3128")  # a bare host:port is http://
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    assert transport.proxy_for("https://tray.example.com") == "http://secure-proxy:3128"
    assert transport.proxy_for("wss://tray.example.com") == "http://secure-proxy:3128"
    assert transport.proxy_for("http://tray.example.com") == "http://plain-proxy:3128"
    assert transport.proxy_for("ws://tray.example.com:8000") == "http://plain-proxy:3128"
    monkeypatch.setenv("no_proxy", "example.com,10.0.0.1")
    assert transport.proxy_for("https://tray.example.com") is None
    assert transport.proxy_for("https://10.0.0.1:8443") is None
    assert transport.proxy_for("https://tray.example.org") == "http://secure-proxy:3128"


def test_all_proxy_serves_both_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://any-proxy:3128")
    assert Transport().proxy_for("https://tray.example.com") == "http://any-proxy:3128"
    assert Transport().proxy_for("ws://tray.example.com") == "http://any-proxy:3128"


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "http://proxy:port", "ftp://x"])
def test_a_proxy_that_is_not_http_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    with pytest.raises(TransportSettingError) as configured:
        Transport(proxy=proxy).proxy_for("https://tray.example.com")
    assert configured.value.code == "proxy_invalid"
    assert "configured proxy" in configured.value.user_message
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(TransportSettingError) as environment:
        Transport().proxy_for("https://tray.example.com")
    assert "environment" in environment.value.user_message


GSETTINGS_OUTPUT = """\
org.gnome.system.proxy autoconfig-url ''
org.gnome.system.proxy ignore-hosts ['localhost', '127.0.0.0/8', '::1', '*.internal']
org.gnome.system.proxy mode 'manual'
org.gnome.system.proxy.http host 'web-proxy'
org.gnome.system.proxy.http port 8080
org.gnome.system.proxy.https host 'secure-proxy'
org.gnome.system.proxy.https port 3128
"""


def test_gnome_proxies_are_read_in_manual_mode_only() -> None:
    proxies, bypass = gnome_proxies(GSETTINGS_OUTPUT)
    assert proxies == {"http": "http://web-proxy:8080", "https": "http://secure-proxy:3128"}
    assert bypass == ["localhost", "127.0.0.0/8", "::1", "*.internal"]
    assert gnome_proxies(GSETTINGS_OUTPUT.replace("'manual'", "'none'")) == ({}, [])
    assert gnome_proxies(GSETTINGS_OUTPUT.replace("'manual'", "'auto'")) == ({}, [])
    assert gnome_proxies("") == ({}, [])


def _real_gsettings() -> str:
    gsettings = shutil.which("gsettings")
    assert gsettings, "gsettings (libglib2.0-bin) is needed; scripts/test installs it"
    return gsettings


def gset(schema: str, key: str, value: str, *, gsettings: str | None = None) -> None:
    subprocess.run(
        [gsettings or _real_gsettings(), "set", schema, key, value],
        check=True,
        env=dict(os.environ),
        timeout=10,
    )


def test_the_gnome_setting_is_used_when_the_environment_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = Transport()
    assert transport.proxy_for("https://tray.example.com") is None  # mode 'none'
    gset("org.gnome.system.proxy", "mode", "manual")
    gset("org.gnome.system.proxy.https", "host", "gnome-proxy")
    gset("org.gnome.system.proxy.https", "port", "3128")
    gset("org.gnome.system.proxy", "ignore-hosts", "['localhost', '127.0.0.0/8', '*.internal']")
    _system_proxy_cache.clear()  # as if SYSTEM_PROXY_TTL had passed (tested below)
    assert transport.proxy_for("https://tray.example.com") == "http://gnome-proxy:3128"
    assert transport.proxy_for("wss://tray.example.com") == "http://gnome-proxy:3128"
    assert transport.proxy_for("https://127.0.0.1:8443") is None
    assert transport.proxy_for("https://tray.corp.internal") is None
    # The environment comes first, and a configured proxy before both.
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    assert transport.proxy_for("https://tray.example.com") == "http://env-proxy:3128"
    assert Transport(proxy="none").proxy_for("https://tray.example.com") is None


class CountedGsettings:
    """A ``gsettings`` first on PATH that notes each run, then runs the real one (or
    fails, when ``failing``)."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = _real_gsettings()
        self.log = directory / "runs"
        self.log.touch()
        self._script = directory / "bin" / "gsettings"
        self._script.parent.mkdir()
        self.failing = False
        monkeypatch.setenv("PATH", f"{self._script.parent}{os.pathsep}{os.environ['PATH']}")

    @property
    def failing(self) -> bool:
        return self._failing

    @failing.setter
    def failing(self, failing: bool) -> None:
        self._failing = failing
        then = "exit 1" if failing else f'exec "{self.real}" "$@"'
        self._script.write_text(f'#!/bin/sh\necho "$@" >> "{self.log}"\n{then}\n')
        self._script.chmod(0o755)

    @property
    def runs(self) -> int:
        return len(self.log.read_text().splitlines())


class FakeClock:
    """The proxy cache's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted_gsettings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CountedGsettings:
    return CountedGsettings(tmp_path, monkeypatch)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_system_proxy_cache, "clock", fake)
    return fake


def _gnome_https_proxy(host: str, counted: CountedGsettings) -> None:
    for schema, key, value in (
        ("org.gnome.system.proxy", "mode", "manual"),
        ("org.gnome.system.proxy.https", "host", host),
        ("org.gnome.system.proxy.https", "port", "3128"),
    ):
        gset(schema, key, value, gsettings=counted.real)  # not counted: not a read


def test_the_gnome_setting_is_read_once_per_ttl(
    counted_gsettings: CountedGsettings, clock: FakeClock
) -> None:
    _gnome_https_proxy("first-proxy", counted_gsettings)
    # One connection: the REST client and the socket, each with a Transport of its own.
    assert Transport().proxy_for("https://tray.example.com") == "http://first-proxy:3128"
    assert Transport().proxy_for("wss://tray.example.com/ws/") == "http://first-proxy:3128"
    assert counted_gsettings.runs == 1

    _gnome_https_proxy("second-proxy", counted_gsettings)
    clock.now += SYSTEM_PROXY_TTL - 0.001
    assert Transport().proxy_for("https://tray.example.com") == "http://first-proxy:3128"
    assert counted_gsettings.runs == 1
    clock.now += 0.001
    assert Transport().proxy_for("https://tray.example.com") == "http://second-proxy:3128"
    assert Transport().proxy_for("wss://tray.example.com/ws/") == "http://second-proxy:3128"
    assert counted_gsettings.runs == 2


def test_a_failed_gnome_read_is_no_proxy_and_kept_too(
    counted_gsettings: CountedGsettings, clock: FakeClock
) -> None:
    _gnome_https_proxy("gnome-proxy", counted_gsettings)
    counted_gsettings.failing = True
    for _ in range(3):
        assert Transport().proxy_for("https://tray.example.com") is None
    assert counted_gsettings.runs == 1
    counted_gsettings.failing = False
    clock.now += SYSTEM_PROXY_TTL
    assert Transport().proxy_for("https://tray.example.com") == "http://gnome-proxy:3128"
    assert counted_gsettings.runs == 2


def test_threads_asking_at_once_share_one_gnome_read(
    counted_gsettings: CountedGsettings, clock: FakeClock
) -> None:
    _gnome_https_proxy("gnome-proxy", counted_gsettings)
    threads = 8
    start = threading.Barrier(threads)
    found: list[str | None] = []

    def ask() -> None:
        start.wait(timeout=10)
        found.append(Transport().proxy_for("https://tray.example.com"))

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert found == ["http://gnome-proxy:3128"] * threads
    assert counted_gsettings.runs == 1
