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
import resource
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


# --- the documented steps, as written in docs/deployment.md ---------------------------
#
# The doc marks each block these tests run with an HTML comment just above its fence,
# ``<!-- tested: NAME ... -->``. A test takes the block's text from the doc, replaces
# only the machine's paths, user and port (each found exactly once, so an edit to the
# doc cannot leave the test behind silently) and runs it.

DEPLOYMENT_DOC = REPO_ROOT / "docs" / "deployment.md"
DOC_ENV_FILE = "/etc/tray-notifier-server/env"
DOC_DATA_DIR = "/var/lib/tray-notifier-server"
# What the tested wrapper runs as in this test: an unprivileged user every Debian has.
WRAPPER_TEST_USER = "nobody"


def documented_block(name: str) -> str:
    """The text of the fenced block marked ``<!-- tested: NAME ... -->`` in the doc."""
    pattern = re.compile(
        rf"^<!-- tested: {re.escape(name)}\b[^\n]*-->\n```[a-z]*\n(.*?)^```$", re.M | re.S
    )
    blocks = pattern.findall(DEPLOYMENT_DOC.read_text())
    assert len(blocks) == 1, f"docs/deployment.md must mark exactly one block {name!r}"
    return str(blocks[0])


def substituted(text: str, replacements: Mapping[str, str]) -> str:
    for placeholder, value in replacements.items():
        assert text.count(placeholder) == 1, placeholder
        text = text.replace(placeholder, value)
    return text


def postgres_admin(postgres_server: Any, *statements: str) -> None:
    import psycopg

    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def run_documented_postgres_setup(postgres_server: Any, env_file: Path) -> str:
    """The doc's role-and-database block against the test's PostgreSQL cluster; returns
    the DATABASE_URL the block appended to ``env_file``."""
    # The cluster lives for the whole session: start from no role and no database.
    postgres_admin(postgres_server, "DROP DATABASE IF EXISTS tray", "DROP ROLE IF EXISTS tray")
    replacements = {
        DOC_ENV_FILE: str(env_file),
        "@127.0.0.1:5432/": f"@{postgres_server.host}:{postgres_server.port}/",
    }
    runs_as_postgres = os.geteuid() == 0 and shutil.which("runuser", path="/usr/sbin:/sbin")
    if not runs_as_postgres:
        # runuser needs root; without it psql runs as this user, as the same superuser.
        replacements["runuser -u postgres -- "] = ""
    script = substituted(documented_block("postgres-role"), replacements)
    before = env_file.read_text() if env_file.exists() else ""
    done = subprocess.run(
        ["bash", "-e", "-u", "-o", "pipefail", "-c", script],
        # Where the cluster listens; the rest as a root shell would have it.
        env={
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "PGHOST": postgres_server.host,
            "PGPORT": str(postgres_server.port),
            "PGUSER": "postgres",
        },
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    added = env_file.read_text()[len(before) :].splitlines()
    assert len(added) == 1, added
    assert added[0].startswith("DATABASE_URL="), added
    url = added[0].removeprefix("DATABASE_URL=")
    # A generated password, usable in a URL and in the env file as it stands.
    assert re.fullmatch(
        rf"postgres://tray:[A-Za-z0-9_-]{{40,}}@{re.escape(postgres_server.host)}:"
        rf"{postgres_server.port}/tray",
        url,
    ), url
    return url


@pytest.mark.postgres
def test_the_documented_postgres_role_owns_its_database_and_migrates(
    postgres_server: Any, tmp_path: Path
):
    """PostgreSQL 15 took CREATE on the schema public from PUBLIC. The doc's commands
    make the server's role the database's owner, so the server migrates as that role;
    a role that merely connects (the control) fails on the same cluster."""
    import psycopg

    env_file = tmp_path / "env"
    url = run_documented_postgres_setup(postgres_server, env_file)
    with psycopg.connect(url) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()
        assert version is not None
        assert int(version[0]) >= 150000, version
    env = production_env(tmp_path / "data", DATABASE_URL=url)
    migrated = run_cli("manage", "migrate", "--verbosity", "1", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with psycopg.connect(url) as connection:
        owners = connection.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners == [("tray",)], owners
        assert connection.execute("SELECT count(*) FROM django_migrations").fetchone() != (0,)

    # The control: a role that does not own its database, as before the doc said so.
    postgres_admin(
        postgres_server,
        "DROP DATABASE IF EXISTS tray_guest",
        "DROP ROLE IF EXISTS tray_guest",
        "CREATE ROLE tray_guest LOGIN",
        "CREATE DATABASE tray_guest",
    )
    guest = f"postgres://tray_guest@{postgres_server.host}:{postgres_server.port}/tray_guest"
    refused = run_cli(
        "manage",
        "migrate",
        env=production_env(tmp_path / "guest", DATABASE_URL=guest),
        timeout=120,
    )
    assert refused.returncode != 0
    assert "permission denied for schema public" in refused.stdout + refused.stderr


def documented_wrapper(directory: Path, *, env_file: Path, data_dir: Path, user: str) -> Path:
    """The doc's ``tray-admin`` saved as ``directory/tray-admin``, pointed at this test's
    env file, data directory, program and user."""
    script = substituted(
        documented_block("tray-admin"),
        {
            f". {DOC_ENV_FILE}\n": f". {env_file}\n",
            f"TRAY_DATA_DIR={DOC_DATA_DIR}": f"TRAY_DATA_DIR={data_dir}",
            "runuser -u tray-notifier --": f"runuser -u {user} --",
            INSTALLED_PROGRAM: str(SERVER_PROGRAM),
        },
    )
    assert script.startswith("#!/bin/sh\n")
    wrapper = directory / "tray-admin"
    wrapper.write_text(script)
    wrapper.chmod(0o755)
    return wrapper


def _owner_paths(root: Path) -> dict[str, int]:
    return {str(path): path.lstat().st_uid for path in [root, *root.rglob("*")]}


@pytest.mark.postgres
def test_the_documented_first_admin_through_tray_admin_can_log_in(
    postgres_server: Any, tmp_path: Path
):
    """Root, without sudo: the doc's PostgreSQL block, its ``tray-admin`` wrapper (the
    service's settings from the env file, the service's user through runuser), and its
    first-admin block run as written with the password on stdin. The server, started
    through the same wrapper, migrates as the new role; the admin logs in over REST,
    receives the block's notification, and every file in the data directory belongs to
    the service's user."""
    if os.geteuid() != 0:
        pytest.skip("the wrapper is for root: runuser needs it")
    runuser = _require("runuser", "util-linux")
    # The service's user must be able to run this checkout's interpreter: not so when the
    # virtualenv's Python lives under /root (pyenv). Then the wrapper drops to root
    # itself, and everything but the change of user is still tested.
    probe = subprocess.run(
        [runuser, "-u", WRAPPER_TEST_USER, "--", str(SERVER_PROGRAM), "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    user_name = WRAPPER_TEST_USER if probe.returncode == 0 else "root"
    service_user = pwd.getpwnam(user_name)
    env_file = tmp_path / "env"
    env_file.write_text(
        f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\nTRAY_ALLOWED_HOSTS=127.0.0.1,localhost\n"
    )
    env_file.chmod(0o600)
    run_documented_postgres_setup(postgres_server, env_file)
    # pytest's tmp_path is private to root: the service's user gets a directory of its
    # own in /tmp, as StateDirectory= gives it one.
    data_dir = Path(tempfile.mkdtemp(prefix="tray-state-"))
    os.chown(data_dir, service_user.pw_uid, service_user.pw_gid)
    # Where root keeps it (/usr/local/sbin): readable by everyone, for the refusal below.
    bin_dir = Path(tempfile.mkdtemp(prefix="tray-bin-"))
    bin_dir.chmod(0o755)
    wrapper = documented_wrapper(bin_dir, env_file=env_file, data_dir=data_dir, user=user_name)
    # A root shell's environment: none of the settings, only what the env file gives.
    shell_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    process = subprocess.Popen(
        [str(wrapper), "serve", "--host", "127.0.0.1", "--port", "0"],
        env=shell_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pump = OutputPump(process.stdout)  # type: ignore[arg-type]
    try:
        line = pump.wait_for(lambda text: "listening on " in text, 120)
        assert line is not None, pump.text()
        url = line.split("listening on ", 1)[1].strip()
        password = secrets.token_urlsafe(18)
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", documented_block("first-admin")],
            env=shell_env,
            input=password + "\n",  # what `read -rs` would take from the terminal
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        with httpx.Client(base_url=url, timeout=30) as client:
            login = client.post(
                "/api/auth/token/", json={"username": "admin", "password": password}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access']}"}
            me = client.get("/api/me", headers=headers)
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "admin"
            assert me.json()["is_staff"] is True
            inbox = client.get("/api/inbox/", params={"limit": 1}, headers=headers)
            assert inbox.status_code == 200, inbox.text
            assert "Hello from production" in inbox.text
            wrong = client.post(
                "/api/auth/token/", json={"username": "admin", "password": password + "x"}
            )
            assert wrong.status_code == 401, wrong.text
        owners = _owner_paths(data_dir)
        assert set(owners.values()) == {service_user.pw_uid}, owners
        # Not as root, it says so and runs nothing.
        refused = subprocess.run(
            ["runuser", "-u", WRAPPER_TEST_USER, "--", str(wrapper), "create-api-key", "x"],
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1
        assert refused.stderr.startswith("tray-admin: run it as root")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # runuser passes it on to the server
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        pump.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(bin_dir, ignore_errors=True)
    assert "Traceback" not in pump.text(), pump.text()


def test_the_unit_and_the_site_are_sized_for_many_sockets():
    """The unit's descriptor limit, and least_conn in the site's upstream (before
    keepalive, where nginx requires balancing methods), as docs/deployment.md says."""
    assert unit_values("LimitNOFILE") == ["65536"]
    upstream = re.search(
        r"^upstream tray_notifier_server \{(.*?)^\}", SITE_FILE.read_text(), re.M | re.S
    )
    assert upstream is not None
    directives = [
        line.strip()
        for line in upstream.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert directives[0] == "least_conn;", directives
    assert directives[-1].startswith("keepalive "), directives
    doc = DEPLOYMENT_DOC.read_text()
    assert "LimitNOFILE=65536" in doc
    limits = documented_block("nginx-main")
    connections = int(re.search(r"worker_connections (\d+);", limits).group(1))  # type: ignore[union-attr]
    rlimit = int(re.search(r"worker_rlimit_nofile (\d+);", limits).group(1))  # type: ignore[union-attr]
    assert rlimit >= connections
    # Every connection nginx holds is a descriptor on the server too (one per socket).
    assert rlimit <= 65536


def test_the_documented_nginx_limits_and_two_least_conn_servers_pass_nginx_t(tmp_path: Path):
    """The doc's main-context block (worker_rlimit_nofile, worker_connections) around the
    shipped site with a second server line uncommented: ``nginx -t`` accepts it without a
    warning, and a running worker gets the descriptor limit the doc promises."""
    binary = _require("nginx", "nginx-light")
    ca = ThrowawayCA.create(tmp_path / "ca")
    cert = ca.issue("nginx")
    prefix = Path(tempfile.mkdtemp(prefix="tray-nginx-"))
    try:
        site = render_site(
            SITE_FILE.read_text(),
            socket_path=prefix / "one.sock",
            http_port=free_port(),
            https_port=free_port(),
            cert=cert,
        )
        site = substituted(
            site,
            {
                "#server unix:/run/tray-notifier-server-2/server.sock;": (
                    f"server unix:{prefix / 'two.sock'};"
                )
            },
        )
        (prefix / "site.conf").write_text(site)
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};"
        temp = " ".join(
            f"{kind}_temp_path {prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"{user}\n{documented_block('nginx-main')}\n"
            f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
            f"http {{ access_log off; {temp} include {prefix / 'site.conf'}; }}\n"
        )
        test = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert test.returncode == 0, test.stderr
        assert "[warn]" not in test.stderr, test.stderr
        assert "[emerg]" not in test.stderr, test.stderr
        assert "least_conn" in site

        # Running, a worker has the doc's descriptor limit, or nginx says why it could
        # not raise it (a hard limit below it, as in some containers; the doc says so).
        wanted = re.search(r"worker_rlimit_nofile (\d+);", documented_block("nginx-main"))
        assert wanted is not None
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")

            def workers() -> list[str]:
                if process.poll() is not None:
                    return ["gone"]
                return children.read_text().split()

            _wait_for(lambda: bool(workers()), timeout=20, what="nginx's workers")
            assert process.poll() is None, (prefix / "error.log").read_text()
            worker = workers()[0]
            limits = Path(f"/proc/{worker}/limits").read_text()
            soft = re.search(r"^Max open files\s+(\d+)", limits, re.M)
            assert soft is not None, limits
            if int(soft.group(1)) != int(wanted.group(1)):
                _wait_for(
                    lambda: "setrlimit(RLIMIT_NOFILE" in (prefix / "error.log").read_text(),
                    timeout=10,
                    what="nginx's reason for the descriptor limit",
                )
                # Legitimate only when nginx inherited a hard limit below the doc's.
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                assert hard < int(wanted.group(1)), (prefix / "error.log").read_text()
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
