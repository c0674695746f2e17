"""After a full run at DEBUG, no token or password is anywhere it could be read back.

A real server subprocess (``TRAY_LOG_LEVEL=DEBUG``) serves a REST session this test runs
itself (login, refresh, inbox, a browser-style ``?token=`` WebSocket, a header WebSocket,
``authenticate`` on it, logout) and a full run of the headless client
(``--log-level DEBUG``: login, catch-up, a live notification, SIGTERM). Then the server's
output (its log lines, access log URLs included), the client's stdout, stderr and log
files, and every file under the client's data, config, cache, state, runtime and home
directories are searched for: each token the test was issued (whole, and the distinctive
parts of it: payload and signature, and a 16-character prefix of the signature), the
password, and anything shaped like a JWT at all (the client's own tokens, which the test
cannot see: with no D-Bus session it keeps them in memory only).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.fixtures.services import RunningServer, ServerFactory
from tests.tray_app.conftest import HeadlessClient, client_env

WAIT = 20.0
JWT_SHAPE = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def needles(token: str) -> list[str]:
    """The token and the parts that identify it (the header is the same for every token)."""
    _header, payload, signature = token.split(".")
    return [token, payload, signature, signature[:16]]


async def rest_and_socket_session(server: RunningServer, username: str, password: str) -> list[str]:
    secrets: list[str] = [password]
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as rest:
        first = (
            await rest.post("/api/auth/token/", json={"username": username, "password": password})
        ).json()
        secrets += [first["access"], first["refresh"]]
        second = (
            await rest.post("/api/auth/token/refresh/", json={"refresh": first["refresh"]})
        ).json()
        secrets += [second["access"], second["refresh"]]
        bearer = {"Authorization": f"Bearer {second['access']}"}
        assert (await rest.get("/api/inbox/", headers=bearer)).status_code == 200
        # Tokens where they do not belong: in a URL, and a refused one (logged as a 401).
        await rest.get(f"/api/inbox/?token={second['access']}&access={second['access']}")
        await rest.get("/api/me", headers={"Authorization": f"Bearer {first['access']}x"})
        # A browser client: the token in the query string, which the access log records.
        async with connect(f"{server.ws_url}?token={second['access']}") as browser:
            assert json.loads(await browser.recv())["type"] == "hello"
        async with connect(server.ws_url, additional_headers=bearer) as desktop:
            assert json.loads(await desktop.recv())["type"] == "hello"
            auth = {"type": "authenticate", "ref": "a", "payload": {"token": second["access"]}}
            await desktop.send(json.dumps(auth))
            async with asyncio.timeout(WAIT):
                while json.loads(await desktop.recv()).get("ref") != "a":
                    pass
            bad = {"type": "authenticate", "ref": "b", "payload": {"token": first["refresh"]}}
            await desktop.send(json.dumps(bad))
            async with asyncio.timeout(WAIT):
                while json.loads(await desktop.recv()).get("ref") != "b":
                    pass
        out = await rest.post(
            "/api/auth/logout/", json={"refresh": second["refresh"]}, headers=bearer
        )
        assert out.status_code < 500
        # A failed login with a wrong password that looks like the real one.
        await rest.post("/api/auth/token/", json={"username": username, "password": password + "!"})
    return secrets


def test_no_token_or_password_in_any_log_file_or_url(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(
        demo=True, env={"TRAY_LOG_LEVEL": "DEBUG", "TRAY_LOGIN_RATE": "10000/min"}
    )
    username, password = "sam", f"pw-{uuid.uuid4().hex}"
    made = server.cli(
        "manage", "shell", "-c",
        f"from backend.users.models import User; User.objects.create_user({username!r}, "
        f"password={password!r})",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert server.cli("notify", "--user", username, "--title", "before").returncode == 0

    secrets = asyncio.run(rest_and_socket_session(server, username, password))

    root = tmp_path / "client"
    env = client_env(root, password=password)
    env["TRAY_NOTIFIER_LOG_DIR"] = str(root / "logs")
    client = HeadlessClient(
        env, "--server", server.url, "--username", username, "--log-level", "DEBUG"
    )
    try:
        client.wait_for_notifications(lambda rows: len(rows) >= 1, what="the catch-up line")
        client.wait_for_state("connected")
        assert server.cli("notify", "--user", username, "--title", "live").returncode == 0
        client.wait_for_notifications(lambda rows: len(rows) >= 2, what="the live line")
        assert client.terminate() == 0
    finally:
        client.kill()

    server_text = server.output()
    assert "GET /ws/notifications/?token=" in server_text or "/ws/notifications/" in server_text
    assert "DEBUG" in server_text  # the server really logged at DEBUG
    places: dict[str, bytes] = {
        "server output": server_text.encode(),
        "client stdout": client.out.text().encode(),
        "client stderr": client.err.text().encode(),
    }
    for path in root.rglob("*"):
        if path.is_file():
            places[str(path.relative_to(root))] = path.read_bytes()
    # Headless logs to stderr (the tray app to its log directory, searched too if present).
    assert client.err.text().strip(), "the client logged nothing"

    leaks = []
    for where, content in places.items():
        for secret in secrets:
            for needle in needles(secret) if secret.count(".") == 2 else [secret]:
                if needle.encode() in content:
                    leaks.append(f"{where}: {needle[:6]}…")
        if JWT_SHAPE.search(content):
            leaks.append(f"{where}: something shaped like a JWT")
    assert leaks == []
    assert server.is_running()
