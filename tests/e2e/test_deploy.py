"""The server as docs/deployment.md deploys it: production mode, the systemd unit, and a
real nginx from the committed site file in front of ``tray-notifier-server serve --unix``.

nginx runs from Debian's ``nginx-light`` as a subprocess (``-p TMP -c CONF -g 'daemon
off;'``) on free ports, with the site file's proxy settings verbatim: the test only
points its placeholders (listen ports, upstream socket, certificate paths) at this test's
own. TLS at nginx uses a throwaway CA (tests/fixtures/tls.py). The server is started
with the unit's own ``ExecStart`` arguments and ``Environment=`` lines. Clients connect
from 127.0.0.2 so that the address the server logs can only have come from nginx's
X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import WAIT, Socket
from tests.fixtures.services import (
    REPO_ROOT,
    OutputPump,
    ServerFactory,
    free_port,
    run_cli,
    server_env,
)
from tests.fixtures.tls import ThrowawayCA
from tray_app.net.sse import SseDecoder, SseEvent

DEPLOY_DIR = REPO_ROOT / "resources" / "deploy"
UNIT_FILE = DEPLOY_DIR / "tray-notifier-server.service"
SITE_FILE = DEPLOY_DIR / "tray-notifier-server.nginx.conf"
ENV_EXAMPLE = DEPLOY_DIR / "env.example"
# Where the unit expects the server: a virtualenv under /opt (docs/deployment.md).
INSTALLED_PROGRAM = "/opt/tray-notifier-server/bin/tray-notifier-server"
SERVER_PROGRAM = Path(sys.executable).with_name("tray-notifier-server")
# Not 127.0.0.1: an address the server can only learn from the proxy's headers.
CLIENT_ADDRESS = "127.0.0.2"
HSTS_SECONDS = 3600


def _require(binary: str, package: str) -> str:
    """The path of ``binary``; skipped when missing, except under CI, where it fails."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{binary} is not installed (apt-get install {package}; scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# --- the committed files --------------------------------------------------------------


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each setting of a systemd unit, repeats kept in order."""
    entries = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(key: str) -> list[str]:
    return [value for _, name, value in unit_entries(UNIT_FILE.read_text()) if name == key]


def unit_environment() -> dict[str, str]:
    """The unit's ``Environment=`` assignments (unquoted KEY=VALUE, as the unit writes them)."""
    return dict(value.split("=", 1) for value in unit_values("Environment"))


def env_file_values(path: Path) -> dict[str, str]:
    """The KEY=value lines of an EnvironmentFile (comments and blank lines skipped)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def production_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A server environment as the unit gives it, with a real key and test host names."""
    settings = {
        **unit_environment(),
        "TRAY_DATA_DIR": str(data_dir),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "TRAY_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TRAY_HSTS_SECONDS": str(HSTS_SECONDS),
        **extra,
    }
    return server_env(data_dir=data_dir, extra=settings)


# --- production mode refuses a bad environment ----------------------------------------

GOOD_KEY = secrets.token_urlsafe(50)


@pytest.mark.parametrize(
    ("bad", "variable", "hint"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY", "secrets.token_urlsafe(50)"),
        ({"DJANGO_SECRET_KEY": "x" * 20}, "DJANGO_SECRET_KEY", "secrets.token_urlsafe(50)"),
        ({"DJANGO_SECRET_KEY": "ab" * 40}, "DJANGO_SECRET_KEY", "at least 50 characters"),
        ({"TRAY_ALLOWED_HOSTS": None}, "TRAY_ALLOWED_HOSTS", "notify.example.com"),
        ({"TRAY_ALLOWED_HOSTS": "*"}, "TRAY_ALLOWED_HOSTS", "must not be '*'"),
        ({"TRAY_ALLOWED_HOSTS": "notify.example.com, *"}, "TRAY_ALLOWED_HOSTS", "'*'"),
        ({"TRAY_DEBUG": "1"}, "TRAY_DEBUG", "must be off"),
        ({"TRAY_FORWARDED_ALLOW_IPS": "nginx.local"}, "TRAY_FORWARDED_ALLOW_IPS", "IP addresses"),
    ],
)
@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("create-api-key", "ci")])
def test_production_refuses_a_bad_environment_in_one_line(
    tmp_path: Path,
    bad: Mapping[str, str | None],
    variable: str,
    hint: str,
    command: tuple[str, ...],
):
    """A clean environment (PATH and HOME only) plus production settings with one flaw."""
    data_dir = tmp_path / "data"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TRAY_DATA_DIR": str(data_dir),
        "TRAY_ENV": "production",
        "DJANGO_SECRET_KEY": GOOD_KEY,
        "TRAY_ALLOWED_HOSTS": "notify.example.com",
    }
    for key, value in bad.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    result = subprocess.run(
        [str(SERVER_PROGRAM), *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""  # no listening line: nothing was served
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tray-notifier-server: error: ")
    assert variable in lines[0]
    assert hint in lines[0]
    assert "Traceback" not in result.stderr
    # Production never falls back to a generated key, and nothing was migrated.
    assert not (data_dir / "secret_key").exists()
    assert not (data_dir / "db.sqlite3").exists()


def test_the_shipped_env_example_is_refused_until_edited(tmp_path: Path):
    """Copied to /etc unedited, the example must not run with its placeholder key."""
    example = env_file_values(ENV_EXAMPLE)
    assert set(example) == {"DJANGO_SECRET_KEY", "TRAY_ALLOWED_HOSTS"}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **unit_environment(),
        "TRAY_DATA_DIR": str(tmp_path / "data"),
        **example,
    }
    result = subprocess.run(
        [str(SERVER_PROGRAM), "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too short" in result.stderr
    assert "TRAY_ALLOWED_HOSTS" not in result.stderr  # the example's host name is accepted


def test_django_deploy_check_passes_in_production(tmp_path: Path):
    """Django's own deployment checklist (``check --deploy``) finds nothing that
    production mode is responsible for."""
    env = production_env(tmp_path / "data", TRAY_HSTS_INCLUDE_SUBDOMAINS="1")
    result = run_cli("manage", "check", "--deploy", env=env)
    assert result.returncode == 0, result.stderr
    report = result.stdout + result.stderr
    for check in (
        "security.W004",  # HSTS (opt-in, set here)
        "security.W005",  # HSTS include subdomains (opt-in, set here)
        "security.W008",  # SSL redirect: nginx does it
        "security.W009",  # weak SECRET_KEY
        "security.W012",  # session cookie not secure
        "security.W016",  # CSRF cookie not secure
        "security.W018",  # DEBUG
        "security.W020",  # ALLOWED_HOSTS empty
    ):
        assert check not in report, report


# --- the systemd unit -----------------------------------------------------------------


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path):
    """``systemd-analyze verify`` parses the unit (it works without systemd as PID 1);
    its program path is pointed at this checkout's script, since verify insists the
    program exists. ``security --offline`` scores the hardening."""
    analyze = _require("systemd-analyze", "systemd")
    text = UNIT_FILE.read_text()
    assert text.count(INSTALLED_PROGRAM) == 1
    unit = tmp_path / "tray-notifier-server.service"
    unit.write_text(text.replace(INSTALLED_PROGRAM, str(SERVER_PROGRAM)))
    verify = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    # Unknown keys and bad values are only warnings to verify; any line is a finding.
    assert verify.stdout + verify.stderr == ""
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
    assert "Overall exposure level" in security.stdout

    values = {key: value for _, key, value in unit_entries(text)}
    assert values["User"] == "tray-notifier"
    assert values["EnvironmentFile"] == "/etc/tray-notifier-server/env"
    assert unit_environment()["TRAY_ENV"] == "production"
    program, *args = shlex.split(values["ExecStart"])
    assert program == INSTALLED_PROGRAM
    assert args[:2] == ["serve", "--unix"]
    # The socket lives in the unit's RuntimeDirectory, where nginx's site looks for it.
    assert Path(args[2]).parent == Path("/run") / values["RuntimeDirectory"]
    assert f"server unix:{args[2]};" in SITE_FILE.read_text()


# --- the server behind a real nginx ---------------------------------------------------


@dataclass
class UnixServer:
    """``tray-notifier-server`` started as the unit starts it, on a unix socket."""

    process: subprocess.Popen[bytes]
    pump: OutputPump
    socket_path: Path
    env: dict[str, str]

    def output(self) -> str:
        return self.pump.text()

    def wait_for_output(self, pattern: str, timeout: float = WAIT) -> bool:
        found = self.pump.wait_for(lambda line: re.search(pattern, line) is not None, timeout)
        return found is not None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self.pump.close()
        return code


def seed_demo_accounts(env: dict[str, str]) -> None:
    """The demo's accounts in a production database, as an operator's shell would add
    accounts (``serve --demo`` is refused in production)."""
    run_cli("manage", "migrate", "--verbosity", "0", env=env, check=True)
    code = "from backend.demo import seed_demo; seed_demo()"
    run_cli("manage", "shell", "-c", code, env=env, check=True)


@contextlib.contextmanager
def unix_server(env: dict[str, str], socket_path: Path) -> Iterator[UnixServer]:
    seed_demo_accounts(env)
    _program, *args = shlex.split(unit_values("ExecStart")[0])
    unit_socket = args[args.index("--unix") + 1]
    command = [str(SERVER_PROGRAM), *(str(socket_path) if a == unit_socket else a for a in args)]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = UnixServer(process, OutputPump(process.stdout), socket_path, env)  # type: ignore[arg-type]
    try:
        line = server.pump.wait_for(lambda text: "listening on " in text, 60)
        assert line is not None, f"server did not start:\n{server.output()}"
        assert line.strip() == f"tray-notifier-server: listening on unix:{socket_path}"
        yield server
    finally:
        server.stop()


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    http_port: int
    https_port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def access_log(self) -> str:
        return (self.prefix / "access.log").read_text()


def render_site(site: str, *, socket_path: Path, http_port: int, https_port: int, cert) -> str:
    """The committed site with its placeholders pointed at this test's ports, socket and
    certificate; every proxy setting stays as committed. Each placeholder must be found
    exactly once, so a change to the file cannot silently leave the test behind."""
    replacements = {
        "server unix:/run/tray-notifier-server/server.sock;": f"server unix:{socket_path};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        # IPv6 loopback is not there in every container.
        "listen [::]:80;": "",
        "listen [::]:443 ssl;": "",
        "/etc/ssl/certs/notify.example.com.pem": str(cert.cert_path),
        "/etc/ssl/private/notify.example.com.key": str(cert.key_path),
    }
    for placeholder, value in replacements.items():
        assert site.count(placeholder) == 1, placeholder
        site = site.replace(placeholder, value)
    return site


def nginx_conf(prefix: Path, site_path: Path) -> str:
    """A minimal main configuration around the site, everything nginx writes in ``prefix``."""
    user = ""
    if os.geteuid() == 0:
        # Workers would drop to "nobody", who may not open the 0660 socket of a root server.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    temp = " ".join(
        f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return f"""
{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "access.log"};
    {temp}
    uwsgi_temp_path {prefix / "uwsgi"};
    scgi_temp_path {prefix / "scgi"};
    include {site_path};
}}
"""


@contextlib.contextmanager
def running_nginx(socket_path: Path, cert) -> Iterator[Nginx]:
    binary = _require("nginx", "nginx-light")
    prefix = Path(tempfile.mkdtemp(prefix="tray-nginx-"))
    try:
        for _attempt in range(3):
            http_port, https_port = free_port(), free_port()
            site = prefix / "site.conf"
            site.write_text(
                render_site(
                    SITE_FILE.read_text(),
                    socket_path=socket_path,
                    http_port=http_port,
                    https_port=https_port,
                    cert=cert,
                )
            )
            conf = prefix / "nginx.conf"
            conf.write_text(nginx_conf(prefix, site))
            test = subprocess.run(
                [binary, "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert test.returncode == 0, test.stderr
            process = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

            def listening(process=process, port=https_port) -> bool:
                if process.poll() is not None:
                    return True
                with socket.socket() as probe:
                    return probe.connect_ex(("127.0.0.1", port)) == 0

            _wait_for(listening, timeout=20, what="nginx to listen")
            if process.poll() is None:
                break
            errors = process.stderr.read().decode() if process.stderr else ""
            if "Address already in use" not in errors:
                raise RuntimeError(f"nginx did not start:\n{errors}")
        else:
            raise RuntimeError("nginx lost its ports three times")
        nginx = Nginx(process, http_port, https_port, prefix)
        try:
            yield nginx
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful: finishes open requests
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stderr:
                process.stderr.close()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[UnixServer, Nginx, ssl.SSLContext]]:
    """The server on a unix socket as the unit runs it, behind nginx with TLS."""
    ca = ThrowawayCA.create(tmp_path / "ca")
    cert = ca.issue("nginx")
    # Short: a unix socket path has a limit of 107 bytes, and pytest's tmp_path is long.
    socket_dir = Path(tempfile.mkdtemp(prefix="tray-sock-"))
    try:
        socket_path = socket_dir / "server.sock"
        env = production_env(tmp_path / "data")
        with unix_server(env, socket_path) as server, running_nginx(socket_path, cert) as nginx:
            yield server, nginx, ssl.create_default_context(cafile=str(ca.cert_path))
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.mark.asyncio
async def test_rest_and_websocket_through_nginx(deployment):
    server, nginx, tls = deployment
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=CLIENT_ADDRESS)
    async with httpx.AsyncClient(base_url=nginx.url, transport=transport, timeout=30) as rest:
        response = await rest.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        )
        assert response.status_code == 200, response.text
        access = response.json()["access"]
        # The server sent HSTS, which Django does only for a request it knows came in
        # over HTTPS: the scheme came from nginx's X-Forwarded-Proto.
        assert response.headers["strict-transport-security"] == f"max-age={HSTS_SECONDS}"
        # The address came from X-Forwarded-For: the server's own peer is nginx.
        assert server.wait_for_output(
            rf'{re.escape(CLIENT_ADDRESS)}:\d+ - "POST /api/auth/token/ HTTP/1\.1" 200'
        ), server.output()

    connection = await websockets.connect(
        nginx.url.replace("https://", "wss://") + "/ws/notifications/",
        ssl=tls,
        additional_headers={"Authorization": f"Bearer {access}"},
        local_addr=(CLIENT_ADDRESS, 0),
        open_timeout=WAIT,
    )
    try:
        hello = json.loads(await asyncio.wait_for(connection.recv(), WAIT))
        assert hello["type"] == "hello", hello
        assert hello["payload"]["user"]["username"] == "alice"
        live = Socket(connection, hello["payload"])
        result = await asyncio.to_thread(
            run_cli, "notify", "--user", "alice", "--title", "Through nginx", env=server.env
        )
        assert result.returncode == 0, result.stderr
        frame = await live.receive_until("notification_created")
        assert frame["payload"]["title"] == "Through nginx"
        assert frame["payload"]["seq"] == hello["payload"]["latest_seq"] + 1
        # The socket stays usable both ways through the proxy.
        await live.send("ping", {"n": 1})
        assert (await live.receive_until("pong"))["payload"] == {"n": 1}
    finally:
        await connection.close()
    assert server.wait_for_output(
        rf'{re.escape(CLIENT_ADDRESS)}:\d+ - "WebSocket /ws/notifications/" \[accepted\]'
    ), server.output()
    # nginx's own log: the upgrade went through it (101), the REST call too.
    log = nginx.access_log()
    assert re.search(r'"GET /ws/notifications/ HTTP/1\.1" 101 ', log), log
    assert re.search(r'"POST /api/auth/token/ HTTP/1\.1" 200 ', log), log


@pytest.mark.asyncio
async def test_the_http_fallback_streams_through_the_shipped_nginx_site(deployment):
    """The stream needs no location of its own: events pass at once (the server's
    X-Accel-Buffering: no against nginx's default buffering) and the body stays open."""
    server, nginx, tls = deployment
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=CLIENT_ADDRESS)
    async with httpx.AsyncClient(base_url=nginx.url, transport=transport, timeout=30) as rest:
        response = await rest.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        )
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access']}"}
        async with rest.stream("GET", "/api/stream/", headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            decoder = SseDecoder()
            chunks = stream.aiter_text()

            async def next_frame(kind: str) -> dict[str, Any]:
                async with asyncio.timeout(WAIT):
                    while True:
                        for event in decoder.feed(await anext(chunks)):
                            if isinstance(event, SseEvent):
                                frame: dict[str, Any] = json.loads(event.data)
                                if frame["type"] == kind:
                                    return frame

            hello = await next_frame("hello")
            result = await asyncio.to_thread(
                run_cli, "notify", "--user", "alice", "--title", "Streamed", env=server.env
            )
            assert result.returncode == 0, result.stderr
            live = await next_frame("notification_created")
            assert live["payload"]["title"] == "Streamed"
            assert live["payload"]["seq"] == hello["payload"]["latest_seq"] + 1
    # nginx logs a request when it ends: here, after the client closed the stream.
    _wait_for(
        lambda: re.search(r'"GET /api/stream/ HTTP/1\.1" 200 ', nginx.access_log()) is not None,
        timeout=WAIT,
        what="the stream in nginx's access log",
    )


def test_admin_login_through_nginx_with_secure_cookies(deployment):
    """The admin behind TLS: CSRF accepts the browser's Origin (nginx forwards Host with
    its port, the server knows the scheme), and the cookies are Secure."""
    _server, nginx, tls = deployment
    transport = httpx.HTTPTransport(verify=tls, local_address=CLIENT_ADDRESS)
    with httpx.Client(base_url=nginx.url, transport=transport, timeout=30) as browser:
        page = browser.get("/admin/login/", params={"next": "/admin/"})
        assert page.status_code == 200
        csrf_cookie = next(
            c for c in page.headers.get_list("set-cookie") if c.startswith("csrftoken=")
        )
        assert "; Secure" in csrf_cookie
        login = browser.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "username": "admin",
                "password": "demo",
                "next": "/admin/",
            },
            headers={"Origin": nginx.url, "Referer": f"{nginx.url}/admin/login/"},
        )
        assert login.status_code == 302, login.text[:2000]
        assert login.headers["location"] == "/admin/"
        session_cookie = next(
            c for c in login.headers.get_list("set-cookie") if c.startswith("sessionid=")
        )
        assert "; Secure" in session_cookie
        home = browser.get("/admin/")
        assert home.status_code == 200
        assert "Site administration" in home.text


def test_plain_http_is_redirected_to_https(deployment):
    _server, nginx, _tls = deployment
    response = httpx.get(f"http://127.0.0.1:{nginx.http_port}/api/notifications/?limit=1")
    assert response.status_code == 301
    assert response.headers["location"] == "https://127.0.0.1/api/notifications/?limit=1"


def test_the_unix_socket_is_private_replaced_when_stale_and_refused_when_live(tmp_path: Path):
    """The socket is mode 0660; a second server on a live socket stops with one line; the
    socket a killed server left behind is taken over; a regular file is never deleted."""
    socket_dir = Path(tempfile.mkdtemp(prefix="tray-sock-"))
    try:
        socket_path = socket_dir / "server.sock"
        env = production_env(tmp_path / "data")
        serve = [str(SERVER_PROGRAM), "serve", "--unix", str(socket_path)]
        with unix_server(env, socket_path) as first:
            assert socket_path.stat().st_mode & 0o777 == 0o660
            second = subprocess.run(
                serve, env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert second.returncode == 1
            assert second.stderr == (
                f"tray-notifier-server: error: {socket_path} is already in use "
                "(another server running?)\n"
            )
            first.process.kill()
            first.process.wait(timeout=10)
            assert socket_path.exists()  # a crash leaves the file
        uds = httpx.HTTPTransport(uds=str(socket_path))
        with unix_server(env, socket_path), httpx.Client(transport=uds) as client:
            assert client.get("http://localhost/healthz").status_code == 200
        assert not socket_path.exists()  # a clean stop removes it

        socket_path.write_text("not a socket")
        refused = subprocess.run(
            serve, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert refused.returncode == 1
        assert "exists and is not a socket" in refused.stderr
        assert socket_path.read_text() == "not a socket"
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


# --- which proxies are believed -------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "trusted"),
    [(None, False), (f"{CLIENT_ADDRESS},::1", True), ("127.0.0.0/8", True)],
)
def test_forwarded_headers_are_believed_only_from_the_configured_proxy(
    server_factory: ServerFactory, tmp_path: Path, allow: str | None, trusted: bool
):
    """A client that reaches the port itself cannot claim another address or HTTPS;
    TRAY_FORWARDED_ALLOW_IPS names the proxies whose X-Forwarded-* are believed."""
    env = production_env(server_factory.data_dir)
    env.pop("TRAY_FORWARDED_ALLOW_IPS", None)
    if allow is not None:
        env["TRAY_FORWARDED_ALLOW_IPS"] = allow
    seed_demo_accounts(server_factory.env(env=env))
    server = server_factory(env=env)
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(base_url=server.url, transport=transport, timeout=30) as client:
        response = client.post(
            "/api/auth/token/", json={"username": "bob", "password": "demo"}, headers=forged
        )
    assert response.status_code == 200, response.text
    seen = "203.0.113.7" if trusted else CLIENT_ADDRESS
    assert server.wait_for_output('"POST /api/auth/token/ HTTP/1.1" 200'), server.output()
    assert re.search(rf'{re.escape(seen)}:\d+ - "POST /api/auth/token/', server.output())
    assert ("strict-transport-security" in response.headers) is trusted
