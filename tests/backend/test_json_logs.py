"""``TRAY_LOG_FORMAT=json``: one JSON object per line with the request or socket id and the
user id, redacted exactly as the human format is (backend/logging_json.py)."""

from __future__ import annotations

import json
import logging
import re
from io import StringIO
from typing import Any

import httpx
from websockets.sync.client import connect

from backend import log_context
from backend.cli import PROG
from backend.logging_filters import RedactSecrets
from backend.logging_json import JsonFormatter
from tests.fixtures.services import ServerFactory, run_cli, server_env

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PASSWORD = "Json-Logs-Pass-8d1c"
NEW_PASSWORD = "Json-Logs-New-Pass-5e7a"
STAFF_PASSWORD = "Json-Logs-Staff-Pass-2b9f"


def _login(url: str, username: str, password: str) -> dict[str, str]:
    answer = httpx.post(
        url + "/api/auth/token/", json={"username": username, "password": password}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_debug_run_logs_json_lines_with_ids_and_no_secret(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(env={"TRAY_LOG_FORMAT": "json", "TRAY_LOG_LEVEL": "DEBUG"})
    for name, password, flags in (("jo", PASSWORD, ()), ("boss", STAFF_PASSWORD, ("--staff",))):
        created = server.cli("create-user", name, *flags, "--password-stdin", stdin=password)
        assert created.returncode == 0, created.stderr
    jo = _login(server.url, "jo", PASSWORD)
    other = _login(server.url, "jo", PASSWORD)
    boss = _login(server.url, "boss", STAFF_PASSWORD)
    secrets = [*jo.values(), *other.values(), *boss.values()]
    jo_id = httpx.get(
        server.url + "/api/me", headers={"Authorization": f"Bearer {jo['access']}"}, timeout=10
    ).json()["id"]

    # A browser-style socket (token in the query string) and a desktop's (Authorization),
    # which also renews its token in band; a publish reaches them.
    with (
        connect(f"{server.ws_url}?token={jo['access']}", open_timeout=10) as browser,
        connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {other['access']}"},
            open_timeout=10,
        ) as desktop,
    ):
        assert json.loads(browser.recv(timeout=10))["type"] == "hello"
        assert json.loads(desktop.recv(timeout=10))["type"] == "hello"
        desktop.send(json.dumps({"type": "authenticate", "payload": {"token": other["access"]}}))
        published = httpx.post(
            server.url + "/api/notifications/",
            headers={"Authorization": f"Bearer {boss['access']}"},
            json={"audience": {"usernames": ["jo"]}, "title": "Logged as JSON"},
            timeout=10,
        )
        assert published.status_code == 201, published.text
        # ... and a password change, whose body holds two passwords, ends the other session.
        changed = httpx.post(
            server.url + "/api/auth/password/",
            headers={"Authorization": f"Bearer {jo['access']}"},
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            timeout=10,
        )
        assert changed.status_code == 200, changed.text
        secrets += changed.json().values()
        httpx.post(
            server.url + "/api/auth/token/refresh/", json={"refresh": other["refresh"]}, timeout=10
        )
        httpx.get(f"{server.url}/healthz?access={jo['access']}", timeout=10)
    assert server.wait_for_output('"message": "socket closed')
    assert server.stop() == 0

    records = []
    for line in server.output().splitlines():
        if line.startswith(f"{PROG}: "):  # stdout: the listening lines
            continue
        record = json.loads(line)  # every other line is one JSON object
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        assert ISO_UTC.match(record["time"]), line
        records.append(record)
    output = server.output()
    for secret in (*secrets, PASSWORD, NEW_PASSWORD, STAFF_PASSWORD):
        assert secret not in output
    for token in secrets:  # not even a token's signature, wherever a line was cut
        assert token.rsplit(".", 1)[-1] not in output
    levels = {record["level"] for record in records}
    assert "DEBUG" in levels
    assert "INFO" in levels

    def find(**wanted: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if all(
                (key in r) if value is ... else r.get(key) == value for key, value in wanted.items()
            )
        ]

    me = [r for r in find(logger="uvicorn.access", user_id=jo_id) if "/api/me" in r["message"]]
    assert me
    assert "request_id" in me[0]
    opened = find(logger="backend.notifications.consumers", message="socket opened", user_id=jo_id)
    assert len(opened) == 2
    assert len({r["socket_id"] for r in opened}) == 2
    accepted = [r for r in records if "[accepted]" in r["message"]]
    assert accepted
    assert all("socket_id" in r for r in accepted)
    assert all("token=[redacted]" in r["message"] for r in accepted if "?token" in r["message"])
    publish = [r for r in find(logger="uvicorn.access") if "/api/notifications/" in r["message"]]
    assert publish
    assert "request_id" in publish[0]
    change = [r for r in find(logger="uvicorn.access") if "/api/auth/password/" in r["message"]]
    assert change
    assert change[0]["user_id"] == jo_id
    assert len({r["request_id"] for r in find(request_id=...)}) >= 6


def test_an_exception_is_one_redacted_string_field() -> None:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    logger.propagate = False
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    try:
        log_context.request_id.set("req-12345678")
        log_context.user_id.set(7)
        try:
            raise ValueError(f"bad url /ws/?token={token}")
        except ValueError:
            logger.exception("could not open %s", f"/ws/?access={token}")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "could not open /ws/?access=[redacted]"
    assert record["request_id"] == "req-12345678"
    assert record["user_id"] == 7
    assert "socket_id" not in record
    assert isinstance(record["exc_info"], str)
    assert "ValueError: bad url /ws/?token=[redacted]" in record["exc_info"]
    assert token not in lines[0]


def test_a_proxy_request_id_is_kept_only_when_plausible() -> None:
    def given(value: bytes) -> str:
        return log_context.start_request({"headers": [(b"x-request-id", value)]})

    assert given(b"0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"
    for forged in (b'x" "level": "ERROR', b"short", b"a" * 65, b"new\nline-12345"):
        assert re.fullmatch(r"[0-9a-f]{16}", given(forged)), forged


def test_an_unknown_log_format_is_refused_in_one_line(tmp_path: Any) -> None:
    result = run_cli(
        "manage",
        "check",
        env=server_env(data_dir=tmp_path, extra={"TRAY_LOG_FORMAT": "xml"}),
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["TRAY_LOG_FORMAT must be one of text, json, got 'xml'"], result.stderr
