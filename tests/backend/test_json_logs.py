"""``TRAY_LOG_FORMAT=json``: one JSON object per line with the request or socket id and the
user id, redacted exactly as the human format is (backend/logging_json.py)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import httpx
import pytest
import redis.exceptions
from websockets.sync.client import connect

from backend import log_context
from backend.cli import PROG
from backend.logging_filters import RedactSecrets
from backend.logging_json import JsonFormatter
from backend.notifications import protocol
from backend.notifications.doorbell import LocalDoorbell, RedisDoorbell
from backend.notifications.events import Event
from backend.notifications.publish_route import Request, publish_batch
from backend.notifications.services import api_key_create
from backend.notifications.state_io import StateDelivery
from backend.users.services import session_start
from tests.fixtures.services import ServerFactory, run_cli, server_env

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PROXY_REQUEST_ID = "nginx-0123456789abcdef0123456789abcdef"
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
    key = server.cli("create-api-key", "ci-pipeline")
    assert key.returncode == 0, key.stderr
    api_key = key.stdout.strip().split()[-1]
    secrets = [*jo.values(), *other.values(), *boss.values(), api_key]

    def user_id_of(pair: dict[str, str]) -> int:
        answer = httpx.get(
            server.url + "/api/me",
            headers={"Authorization": f"Bearer {pair['access']}"},
            timeout=10,
        )
        return int(answer.json()["id"])

    jo_id, boss_id = user_id_of(jo), user_id_of(boss)

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
        # The full stack answered that one and taught the fast path its headers: these
        # two are answered below ASGI (backend/config/publish_protocol.py).
        for authorization, proxy_id, title in (
            (f"Bearer {boss['access']}", PROXY_REQUEST_ID, "Fast, from behind nginx"),
            (f"Api-Key {api_key}", None, "Fast, with a key"),
        ):
            headers = {"Authorization": authorization}
            if proxy_id is not None:
                headers["X-Request-ID"] = proxy_id
            fast = httpx.post(
                server.url + "/api/notifications/",
                headers=headers,
                json={"audience": {"usernames": ["jo"]}, "title": title},
                timeout=10,
            )
            assert fast.status_code == 201, fast.text
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
    assert len(publish) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["request_id"]) for r in publish[::2]), publish
    assert len({r["request_id"] for r in publish}) == 3
    # A fast publish's line: the proxy's request id, the publisher who authenticated.
    assert publish[1]["request_id"] == PROXY_REQUEST_ID
    assert publish[1]["user_id"] == boss_id
    assert publish[2]["api_key"] == api_key[:12]  # the key's prefix, as the admin shows it
    assert "user_id" not in publish[2]
    # The hub's close of jo's other socket (its session ended with the password change,
    # another request's doing) is logged under that socket's ids, none of the request's.
    (closing,) = [r for r in records if r["message"] == f"closing a socket of user {jo_id} (4001)"]
    assert closing["socket_id"] in {r["socket_id"] for r in opened}
    assert closing["user_id"] == jo_id
    assert "request_id" not in closing
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


# --- whose ids a delivery's lines carry (in this process) ------------------------------


class _Listener:
    """A hub stand-in that notes the log ids each dispatch ran under."""

    loop = None

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def dispatch(self, event: Event) -> None:
        self.seen.append(log_context.current())

    def rung(self, event: Event) -> None: ...

    def look(self) -> None: ...

    def catch_up_all(self) -> None: ...


class _LostRedis:
    async def publish(self, channel: str, message: str) -> None:
        raise redis.exceptions.ConnectionError("Redis is away")


def _as_publisher() -> contextvars.Context:
    """A context as a publishing request's (or socket's) task has it."""
    context = contextvars.Context()
    context.run(log_context.request_id.set, "req-publisher-1234")
    context.run(log_context.bind_socket, "hub:1", 1)
    return context


@pytest.mark.asyncio
async def test_the_hub_delivers_in_a_context_of_its_own_not_the_publishers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event: Event = {"kind": "user_disabled", "user_id": 2}
    local = LocalDoorbell(None)
    listener = _Listener()
    local._listener = listener
    await asyncio.get_running_loop().create_task(local.publish(event), context=_as_publisher())
    # Scale mode with Redis away: its own sockets still get it, the same way.
    scale = RedisDoorbell("redis://127.0.0.1:9/0")
    scale.client, scale._listener = _LostRedis(), listener
    with caplog.at_level(logging.CRITICAL, logger="backend.notifications.doorbell"):
        await asyncio.get_running_loop().create_task(scale.publish(event), context=_as_publisher())
    assert listener.seen == [{}, {}]


class _Connection(StateDelivery):
    """The delivery state's I/O with no transport: closing notes its task's ids."""

    def __init__(self, socket_id: str, user_id: int) -> None:
        self.socket_id, self.user_id = socket_id, user_id
        self.closed_under: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self.start_state()

    def _write(self) -> None:
        self.state.pending.clear()

    async def _close_quietly(self, code: int) -> None:
        self.closed_under.set_result(log_context.current())


@pytest.fixture
def json_lines() -> Iterator[StringIO]:
    """What backend.notifications.state_io logs at INFO, as the JSON format writes it."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("backend.notifications.state_io")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.asyncio
async def test_a_line_about_a_socket_carries_its_ids_whoever_logs_it(
    json_lines: StringIO,
) -> None:
    """The hub closes a recipient's socket while delivering (here: in a publisher's
    context, the worst case): the line and the close's task carry the recipient's ids."""
    recipient = _Connection("hub:7", 42)
    _as_publisher().run(recipient.close_with, protocol.CLOSE_FORBIDDEN)
    assert await asyncio.wait_for(recipient.closed_under, 5) == {
        "socket_id": "hub:7",
        "user_id": 42,
    }
    (line,) = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    assert line["message"] == "closing a socket of user 42 (4003)"
    assert (line["socket_id"], line["user_id"]) == ("hub:7", 42)
    assert "request_id" not in line


@pytest.mark.django_db(transaction=True)
def test_each_fast_publish_is_written_in_its_own_context(make_user: Any) -> None:
    """The lane writes many requests' publishes in one go on the database thread: each
    is authenticated in its own request's context, and nothing stays behind there."""
    staff = make_user("boss", is_staff=True)
    make_user("dev")
    key, raw = api_key_create(name="CI")
    body = json.dumps({"audience": {"usernames": ["dev"]}, "title": "Build"}).encode()
    by_key, by_person = (
        Request(f"Api-Key {raw}".encode(), body),
        Request(f"Bearer {session_start(user=staff).access}".encode(), body),
    )
    by_key.context.run(log_context.request_id.set, "req-key-12345678")
    # In a context of the test's own: an earlier test may have left ids in this
    # thread's; the point is that the batch leaves none in its caller's.
    caller = contextvars.Context()
    answers = caller.run(publish_batch, [by_key, by_person], group_commit=True)
    assert [answer.status if answer else None for answer in answers] == [201, 201]
    assert by_key.context.run(log_context.current) == {
        "request_id": "req-key-12345678",
        "api_key": key.prefix,
    }
    assert by_person.context.run(log_context.current) == {"user_id": staff.pk}
    assert caller.run(log_context.current) == {}


def test_a_websocket_frame_logged_as_an_object_loses_its_token() -> None:
    """The WebSocket library logs frame objects at DEBUG, cut to their first 48 and
    last 24 characters: the token between its quotes goes, whichever part is shown."""
    from websockets.frames import Frame, Opcode

    token = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwidG9rZW5fdHlwZSI6InJlZnJlc2gifQ.c2lnbmF0dXJlX2xvbmc"
    )
    body = json.dumps({"type": "refresh", "payload": {"token": token}, "ref": "r1"})
    record = logging.LogRecord(
        "websockets.server",
        logging.DEBUG,
        __file__,
        1,
        "< %s",
        (Frame(Opcode.TEXT, body.encode()),),
        None,
    )
    RedactSecrets().filter(record)
    message = record.getMessage()
    assert "[redacted]" in message
    for piece in (token[:6], token[-6:]):  # what the cut leaves of each end
        assert piece not in message
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "%s at %d", (Opcode.TEXT, 3), None)
    RedactSecrets().filter(plain)
    assert plain.args == (Opcode.TEXT, 3)  # nothing secret: the objects are left as they are
