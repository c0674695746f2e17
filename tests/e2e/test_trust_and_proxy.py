"""TLS trust and proxies end to end: the real server serving https and wss with a
certificate from a throwaway CA (``serve --certfile/--keyfile``), the real client
(``ApiClient`` and ``LiveSession``), and a real proxy, Debian's tinyproxy, run as a
subprocess on a free port of 127.0.0.1 whose log shows what went through it.

The operating system's trust store is exercised in a subprocess whose OpenSSL default
locations (``SSL_CERT_FILE``/``SSL_CERT_DIR``, which truststore reads on Linux) point
at a temporary bundle of the system's CAs plus the throwaway CA: the same files
``update-ca-certificates`` writes, without touching /etc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.fixtures.services import REPO_ROOT, RunningServer, ServerFactory, free_port
from tests.fixtures.tls import ThrowawayCA
from tests.tray_app.conftest import HeadlessClient, client_env
from tests.tray_app.net.test_live import Recorder
from tray_app.net import protocol
from tray_app.net.api import ApiClient
from tray_app.net.connection_state import ConnectionState
from tray_app.net.errors import NetError, ProxyFailure, TlsFailure
from tray_app.net.live import LiveSession, websocket_connector
from tray_app.net.transport import Transport

pytestmark = pytest.mark.asyncio

WAIT = 20.0
PASSWORD = "demo"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the proxy it means; none leaks in from the machine running it."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def tls_server(server_factory: ServerFactory, tls_ca: ThrowawayCA) -> RunningServer:
    """The demo server on https/wss with a certificate for 127.0.0.1 from ``tls_ca``."""
    issued = tls_ca.issue()
    server = server_factory(
        "--certfile", str(issued.cert_path), "--keyfile", str(issued.key_path), demo=True
    )
    assert server.url.startswith("https://127.0.0.1:"), server.url
    return server


# --- a real proxy ------------------------------------------------------------------------


@dataclass
class Tinyproxy:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connect_requests(self, target: str) -> int:
        """How many CONNECT tunnels to ``host:port`` the proxy opened (its request lines)."""
        return sum(1 for line in self.log().splitlines() if f"CONNECT {target} HTTP/1.1" in line)


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
def tinyproxy(tmp_path: Path, tls_server: RunningServer) -> Iterator[Tinyproxy]:
    """tinyproxy in the foreground (-d) on a free port, allowing CONNECT to the server."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.fail("tinyproxy is not installed (apt-get install tinyproxy; scripts/test does)")
    port = free_port()
    log_path = tmp_path / "tinyproxy.log"
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\n"
        "Listen 127.0.0.1\n"
        "Timeout 60\n"
        f'LogFile "{log_path}"\n'
        "LogLevel Info\n"
        "MaxClients 20\n"
        "Allow 127.0.0.1\n"
        f"ConnectPort {_port_of(tls_server.url)}\n"
    )
    # tinyproxy drops to its configured user when started as root; none is set, so it
    # stays the current user, who owns the log file's directory.
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tinyproxy did not start (exit {process.poll()}):\n{log_path}")
            time.sleep(0.05)  # polling the port with a deadline: the condition is the port
        yield Tinyproxy(url=f"http://127.0.0.1:{port}", log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- the client against it ------------------------------------------------------------


Publish = Callable[[str], Awaitable[None]]


def _titles(recorder: Recorder) -> list[str]:
    return [frame.notification.title for frame in recorder.of(protocol.NotificationCreated)]


def _errors(recorder: Recorder) -> list[NetError]:
    return [change.error for change in recorder.states if change.error is not None]


@pytest_asyncio.fixture
async def published(tls_server: RunningServer, tls_ca: ThrowawayCA) -> AsyncIterator[Publish]:
    """A function publishing a notification to alice over https, as the demo admin."""
    context = ssl.create_default_context(cafile=tls_ca.cert_path)
    async with httpx.AsyncClient(base_url=tls_server.url, verify=context, timeout=WAIT) as http:

        async def publish(title: str) -> None:
            login = await http.post(
                "/api/auth/token/", json={"username": "admin", "password": PASSWORD}
            )
            login.raise_for_status()
            answer = await http.post(
                "/api/notifications/",
                json={"audience": {"usernames": ["alice"]}, "title": title},
                headers={"Authorization": f"Bearer {login.json()['access']}"},
            )
            assert answer.status_code == 201, answer.text

        yield publish


async def _live_notification(server: RunningServer, transport: Transport, publish: Publish) -> None:
    """Log in over https, connect over wss, and receive a notification published now."""
    async with ApiClient(server.url, transport=transport) as api:
        await api.login("alice", PASSWORD)
        assert api.ws_url.startswith("wss://127.0.0.1:")
        recorder = Recorder(cursor=0)
        session = LiveSession(api, recorder, connect=websocket_connector(transport))
        task = asyncio.get_running_loop().create_task(session.run())
        try:
            await recorder.until(lambda: bool(recorder.of(protocol.Hello)))
            await publish("over wss")
            await recorder.until(lambda: "over wss" in _titles(recorder))
        finally:
            await session.stop()
            async with asyncio.timeout(WAIT):
                await task


async def test_the_ca_bundle_from_the_configuration_is_trusted_for_rest_and_wss(
    tls_server: RunningServer, tls_ca: ThrowawayCA, published: Publish
) -> None:
    await _live_notification(
        tls_server, Transport(ca_bundle=tls_ca.cert_path, proxy="none"), published
    )


async def test_without_the_ca_rest_names_the_certificate_and_why(
    tls_server: RunningServer, tls_ca: ThrowawayCA, caplog: pytest.LogCaptureFixture
) -> None:
    async with ApiClient(tls_server.url, transport=Transport(proxy="none")) as api:
        with pytest.raises(TlsFailure) as refused:
            await api.login("alice", PASSWORD)
    error = refused.value
    assert error.code == "tls_untrusted_certificate"
    assert error.certificate is not None
    assert error.certificate.issuer == tls_ca.common_name
    for text in (error.user_message, str(error)):
        assert "unknown issuer" in text
        assert "tray-notifier test server" in text  # the certificate's subject
        assert tls_ca.common_name in text  # its issuer
        assert "127.0.0.1" in text
    # The way out is trusting the right CA, never switching the check off.
    assert not any(word in error.user_message.lower() for word in ("disable", "turn off"))
    assert any(tls_ca.common_name in record.getMessage() for record in caplog.records)


async def test_without_the_ca_the_websocket_names_the_certificate_and_why(
    tls_server: RunningServer, tls_ca: ThrowawayCA
) -> None:
    # The REST login trusts the CA; the socket's transport does not: its own error shows.
    async with ApiClient(tls_server.url, transport=Transport(ca_bundle=tls_ca.cert_path)) as api:
        await api.login("alice", PASSWORD)
        recorder = Recorder(cursor=0)
        untrusting = websocket_connector(Transport(proxy="none"))
        session = LiveSession(api, recorder, connect=untrusting)
        task = asyncio.get_running_loop().create_task(session.run())
        try:
            await recorder.until(lambda: bool(_errors(recorder)))
        finally:
            await session.stop()
            async with asyncio.timeout(WAIT):
                await task
    error = _errors(recorder)[0]
    assert isinstance(error, TlsFailure)
    assert error.code == "tls_untrusted_certificate"
    assert "unknown issuer" in error.user_message
    assert "tray-notifier test server" in error.user_message
    assert tls_ca.common_name in error.user_message
    assert not recorder.of(protocol.Hello)
    assert recorder.states[-1].state is ConnectionState.STOPPED


async def test_a_self_signed_server_certificate_is_called_self_signed(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    # A CA's certificate is self-signed: served with the CA's own key, it is that case.
    alone = ThrowawayCA.create(tmp_path / "self-signed", common_name="lonely server")
    server = server_factory("--certfile", str(alone.cert_path), "--keyfile", str(alone.key_path))
    async with ApiClient(server.url, transport=Transport(proxy="none")) as api:
        with pytest.raises(TlsFailure) as refused:
            await api.login("alice", PASSWORD)
    assert refused.value.code == "tls_untrusted_certificate"
    assert "self-signed" in refused.value.user_message
    assert "lonely server" in refused.value.user_message


CHECK_OS_TRUST = """
import asyncio, sys
from tray_app.net.api import ApiClient
from tray_app.net.transport import Transport

async def main() -> None:
    async with ApiClient(sys.argv[1], transport=Transport(proxy="none")) as api:
        await api.login("alice", "demo")
    print("logged in")

asyncio.run(main())
"""


def _os_trust_store(directory: Path, extra_ca: Path | None) -> Path:
    """A copy of the system's CA bundle (plus ``extra_ca``), as update-ca-certificates
    would write it; returns the bundle (its sibling ``certs/`` is an empty CA directory)."""
    directory.mkdir()
    (directory / "certs").mkdir()
    system_bundle = Path(ssl.get_default_verify_paths().openssl_cafile)
    text = system_bundle.read_text() if system_bundle.exists() else ""
    if extra_ca is not None:
        text += "\n" + extra_ca.read_text()
    bundle = directory / "ca-certificates.crt"
    bundle.write_text(text or "\n")
    return bundle


def _log_in_with_os_trust(url: str, bundle: Path) -> subprocess.CompletedProcess[str]:
    """Log in from a subprocess whose OpenSSL default locations are ``bundle``."""
    env = {**os.environ, "SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(bundle.parent / "certs")}
    return subprocess.run(
        [sys.executable, "-c", CHECK_OS_TRUST, url],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_ca_in_the_operating_system_trust_store_needs_no_bundle(
    tls_server: RunningServer, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    """The CA goes into a copy of the system's bundle that OpenSSL's default location
    variables name, in a subprocess: what update-ca-certificates does to /etc."""
    with_ca = _os_trust_store(tmp_path / "with-ca", tls_ca.cert_path)
    trusted = await asyncio.to_thread(_log_in_with_os_trust, tls_server.url, with_ca)
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == "logged in"
    # The same without the CA in the store: refused, so the store is what made the difference.
    without_ca = _os_trust_store(tmp_path / "without-ca", None)
    refused = await asyncio.to_thread(_log_in_with_os_trust, tls_server.url, without_ca)
    assert refused.returncode != 0
    assert "TlsFailure" in refused.stderr
    assert "unknown issuer" in refused.stderr


async def test_rest_and_websocket_go_through_the_configured_proxy(
    tls_server: RunningServer, tls_ca: ThrowawayCA, tinyproxy: Tinyproxy, published: Publish
) -> None:
    target = tls_server.url.removeprefix("https://")
    transport = Transport(ca_bundle=tls_ca.cert_path, proxy=tinyproxy.url)
    await _live_notification(tls_server, transport, published)
    # One tunnel for the REST pool, one for the socket (the publisher goes direct).
    assert tinyproxy.connect_requests(target) >= 2, tinyproxy.log()


async def test_rest_and_websocket_take_the_proxy_from_https_proxy(
    tls_server: RunningServer,
    tls_ca: ThrowawayCA,
    tinyproxy: Tinyproxy,
    published: Publish,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tls_server.url.removeprefix("https://")
    monkeypatch.setenv("HTTPS_PROXY", tinyproxy.url)
    transport = Transport(ca_bundle=tls_ca.cert_path)
    assert transport.proxy_for(tls_server.url) == tinyproxy.url
    await _live_notification(tls_server, transport, published)
    assert tinyproxy.connect_requests(target) >= 2, tinyproxy.log()

    # NO_PROXY for the server's address: both go direct, the proxy sees nothing more.
    before = tinyproxy.connect_requests(target)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    await _live_notification(tls_server, transport, published)
    assert tinyproxy.connect_requests(target) == before


async def test_an_untrusted_certificate_is_described_through_the_proxy(
    tls_server: RunningServer, tls_ca: ThrowawayCA, tinyproxy: Tinyproxy
) -> None:
    async with ApiClient(tls_server.url, transport=Transport(proxy=tinyproxy.url)) as api:
        with pytest.raises(TlsFailure) as refused:
            await api.login("alice", PASSWORD)
    assert refused.value.certificate is not None
    assert tls_ca.common_name in refused.value.user_message
    # The refused connection and the describing one both went through the proxy.
    assert tinyproxy.connect_requests(tls_server.url.removeprefix("https://")) == 2


async def test_a_proxy_that_is_down_is_named(
    tls_server: RunningServer, tls_ca: ThrowawayCA
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    transport = Transport(ca_bundle=tls_ca.cert_path, proxy=down)
    where = down.removeprefix("http://")
    async with ApiClient(tls_server.url, transport=transport) as api:
        with pytest.raises(ProxyFailure) as rest:
            await api.login("alice", PASSWORD)
        assert rest.value.code == "proxy_unreachable"
        assert where in rest.value.user_message

        connect = websocket_connector(transport)
        with pytest.raises(ProxyFailure) as socket:
            async with connect(api.ws_url, {}):
                pass
    assert socket.value.code == "proxy_unreachable"
    assert where in socket.value.user_message


# --- the whole client, configured only through IT's managed file --------------------------


def _managed_env(root: Path, managed: dict[str, object]) -> dict[str, str]:
    """A client environment whose only configuration is IT's file with ``managed``."""
    env = client_env(root / "app")
    path = root / "managed.json"
    path.write_text(json.dumps(managed, indent=2))
    env["TRAY_NOTIFIER_MANAGED_FILE"] = str(path)
    return env


async def test_the_managed_file_gives_server_ca_and_proxy_to_the_whole_client(
    tls_server: RunningServer, tls_ca: ThrowawayCA, tinyproxy: Tinyproxy, tmp_path: Path
) -> None:
    """``tray-notifier --headless`` with no --server: the managed file names the https
    server, the CA bundle that trusts it and the proxy; a notification arrives live, and the
    proxy's log shows the REST calls and the socket going through it."""
    env = _managed_env(
        tmp_path,
        {"server_url": tls_server.url, "ca_bundle": str(tls_ca.cert_path), "proxy": tinyproxy.url},
    )
    client = HeadlessClient(env, "--username", "alice")
    try:
        await asyncio.to_thread(client.wait_for_state, "connected")
        published = tls_server.cli("notify", "--user", "alice", "--title", "Through the proxy")
        assert published.returncode == 0, published.stderr
        rows = await asyncio.to_thread(
            client.wait_for_notifications,
            lambda rows: any(row["title"] == "Through the proxy" for row in rows),
            what="the live line",
        )
        assert [row["arrival"] for row in rows if row["title"] == "Through the proxy"] == ["live"]
        # The login (REST) and the socket each opened a tunnel: at least two CONNECTs.
        target = tls_server.url.removeprefix("https://")
        assert tinyproxy.connect_requests(target) >= 2, tinyproxy.log()
    finally:
        client.terminate()


async def test_without_the_managed_ca_the_client_says_which_certificate_and_why(
    tls_server: RunningServer, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    env = _managed_env(tmp_path, {"server_url": tls_server.url, "proxy": "none"})
    client = HeadlessClient(env, "--username", "alice")
    try:
        lines = await asyncio.to_thread(client.wait_for_stderr, "unknown issuer")
        assert tls_ca.common_name in lines[0]
        assert "tray-notifier test server" in lines[0]
        assert not client.notifications()
    finally:
        client.terminate()
