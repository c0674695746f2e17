"""Hostile WebSocket clients against the real server subprocess.

Every bad token kind, every bad frame kind, a flood, browser origin tricks, and requests
for other people's projects and notifications. Each attack gets the documented answer
(docs/protocol.md: an ``error`` frame with its exact code, a close code, or HTTP 403 at
the handshake) and, after every one, a bystander (bob, on a socket opened before the
attacks) still receives a notification published just then, and the server process is
still running. ``ATTACKS`` counts the cases run; the test prints it.

Tokens are forged with PyJWT and the server's real signing key, which the test sets
through ``DJANGO_SECRET_KEY`` as a deployment would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = pytest.mark.asyncio

SIGNING_KEY = "hostile-ws-test-signing-key-" + "k" * 40
WAIT = 10.0
MAX_FRAME = 64 * 1024


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Attacks:
    """The counter of attack cases and what the bystander saw after each."""

    server: RunningServer
    bystander: ClientConnection
    admin_token: str
    count: int = 0
    names: list[str] = field(default_factory=list)

    async def survived(self, name: str) -> None:
        """One attack is over: bob still gets a fresh notification, the server is up."""
        self.count += 1
        self.names.append(name)
        assert self.server.is_running(), f"server died after {name}:\n{self.server.output()}"
        title = f"bystander-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(timeout=WAIT) as rest:
            published = await rest.post(
                f"{self.server.url}/api/notifications/",
                json={"audience": {"usernames": ["bob"]}, "title": title},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
        assert published.status_code == 201, published.text
        async with asyncio.timeout(WAIT):
            while True:
                frame = json.loads(await self.bystander.recv())
                if frame["type"] == "notification_created" and frame["payload"]["title"] == title:
                    break


def login(server: RunningServer, username: str) -> dict[str, str]:
    response = httpx.post(
        f"{server.url}/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=WAIT,
    )
    response.raise_for_status()
    tokens: dict[str, str] = response.json()
    return tokens


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def forge(claims: dict[str, Any], *, key: str = SIGNING_KEY) -> str:
    return jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, algorithm="HS256")


def unsigned(claims: dict[str, Any]) -> str:
    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_socket(
    server: RunningServer,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    origin: str | None = None,
) -> ClientConnection:
    url = server.ws_url + (f"?{query}" if query else "")
    extra = dict(headers or {})
    if origin is not None:
        extra["Origin"] = origin
    return await connect(url, additional_headers=extra, open_timeout=WAIT, max_size=None)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        frame: dict[str, Any] = json.loads(await ws.recv())
        return frame


async def closed_with(ws: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the server closes; its close code and the frames before it."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), frames


async def hello(ws: ClientConnection) -> dict[str, Any]:
    frame = await receive(ws)
    assert frame["type"] == "hello", frame
    return frame


async def answered(ws: ClientConnection, ref: str) -> dict[str, Any]:
    """The frame answering ``ref``, skipping the socket's own pushes."""
    while True:
        frame = await receive(ws)
        if frame.get("ref") == ref or (frame["type"] == "error" and "ref" not in frame):
            return frame


async def still_open(ws: ClientConnection) -> None:
    ref = f"alive-{uuid.uuid4().hex[:8]}"
    await ws.send(json.dumps({"type": "ping", "ref": ref}))
    assert (await answered(ws, ref))["type"] == "pong"


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory(
        demo=True,
        env={
            "DJANGO_SECRET_KEY": SIGNING_KEY,
            "TRAY_TOKEN_SWEEP_INTERVAL": "0.2",
            "TRAY_LOGIN_RATE": "10000/min",
        },
    )


@pytest_asyncio.fixture
async def attacks(server: RunningServer) -> AsyncIterator[Attacks]:
    bob = login(server, "bob")["access"]
    bystander = await open_socket(server, headers=bearer(bob))
    await hello(bystander)
    recorder = Attacks(
        server=server, bystander=bystander, admin_token=login(server, "admin")["access"]
    )
    try:
        yield recorder
    finally:
        print(f"\nWebSocket attacks run: {recorder.count}")
        await bystander.close()
        async with httpx.AsyncClient(timeout=WAIT) as rest:
            health = await rest.get(f"{server.url}/healthz")
        assert health.json()["status"] == "ok"


# --- tokens ----------------------------------------------------------------------------


def manage_shell(server: RunningServer, code: str) -> None:
    done = server.cli("manage", "shell", "-c", code)
    assert done.returncode == 0, done.stderr


async def test_every_bad_token_is_refused_with_the_documented_code(
    server: RunningServer, attacks: Attacks
) -> None:
    alice = login(server, "alice")
    real = claims_of(alice["access"])
    now = int(time.time())
    manage_shell(
        server,
        "from backend.users.models import User; "
        "User.objects.create_user('gone', password='demo'); "
        "User.objects.create_user('frozen', password='demo')",
    )
    gone = login(server, "gone")["access"]
    frozen = login(server, "frozen")["access"]
    manage_shell(
        server,
        "from backend.users.models import User; "
        "User.objects.filter(username='gone').delete(); "
        "User.objects.filter(username='frozen').update(is_active=False)",
    )
    long_token = "a" * 5000
    cases: list[tuple[str, dict[str, Any], str, int]] = [
        ("no token", {}, "token_missing", 4001),
        ("empty query token", {"query": "token="}, "token_missing", 4001),
        ("empty bearer", {"headers": {"Authorization": "Bearer "}}, "token_missing", 4001),
        (
            "other scheme",
            {"headers": {"Authorization": f"Basic {alice['access']}"}},
            "token_missing",
            4001,
        ),
        ("garbage", {"headers": bearer("not-a-jwt")}, "token_invalid", 4001),
        ("garbage in query", {"query": "token=%00%ff%22"}, "token_invalid", 4001),
        ("huge", {"headers": bearer(long_token)}, "token_invalid", 4001),
        ("wrong signature", {"headers": bearer(forge(real, key="x" * 64))}, "token_invalid", 4001),
        (
            "expired",
            {"headers": bearer(forge({**real, "exp": now - 5, "iat": now - 700}))},
            "token_invalid",
            4001,
        ),
        ("refresh as access", {"headers": bearer(alice["refresh"])}, "token_invalid", 4001),
        ("alg none", {"headers": bearer(unsigned(real))}, "token_invalid", 4001),
        ("alg none in query", {"query": f"token={unsigned(real)}"}, "token_invalid", 4001),
        (
            "no user id",
            {"headers": bearer(forge({**real, "user_id": None}))},
            "token_invalid",
            4001,
        ),
        (
            "user id not a number",
            {"headers": bearer(forge({**real, "user_id": "1 OR 1=1"}))},
            "token_invalid",
            4001,
        ),
        (
            "user never existed",
            {"headers": bearer(forge({**real, "user_id": "999999"}))},
            "token_invalid",
            4001,
        ),
        ("deleted user", {"headers": bearer(gone)}, "token_invalid", 4001),
        ("deactivated user", {"headers": bearer(frozen)}, "account_disabled", 4003),
        # The header is the token when both come; a bad header is not rescued by the query.
        (
            "bad header, good query",
            {"headers": bearer("junk"), "query": f"token={alice['access']}"},
            "token_invalid",
            4001,
        ),
    ]
    for name, how, code, close_code in cases:
        ws = await open_socket(server, **how)
        got_code, frames = await closed_with(ws)
        assert got_code == close_code, name
        assert [f["type"] for f in frames] == ["error"], name
        assert frames[0]["payload"]["code"] == code, name
        await attacks.survived(f"token: {name}")

    # Both a header and a query token: the header's user, never the query's.
    bob = login(server, "bob")["access"]
    ws = await open_socket(server, headers=bearer(alice["access"]), query=f"token={bob}")
    assert (await hello(ws))["payload"]["user"]["username"] == "alice"
    await ws.close()
    await attacks.survived("token: header and query")

    # A token that runs out while connected: the sweep closes the socket with 4001.
    short = forge({**real, "exp": int(time.time()) + 2})
    ws = await open_socket(server, headers=bearer(short))
    await hello(ws)
    expired_code, _ = await closed_with(ws)
    assert expired_code == 4001
    await attacks.survived("token: expires while connected")

    # authenticate on an open socket with someone else's or a broken token.
    ws = await open_socket(server, headers=bearer(alice["access"]))
    await hello(ws)
    for name, token, code in [
        ("another user's token", bob, "wrong_user"),
        ("garbage", "junk", "token_invalid"),
        ("refresh token", alice["refresh"], "token_invalid"),
        ("alg none", unsigned(real), "token_invalid"),
        ("not text", 12345, "token_missing"),
    ]:
        ref = f"auth-{len(attacks.names)}"
        await ws.send(json.dumps({"type": "authenticate", "ref": ref, "payload": {"token": token}}))
        answer = await answered(ws, ref)
        assert answer["type"] == "error", name
        assert answer["payload"]["code"] == code, name
        await still_open(ws)
        await attacks.survived(f"authenticate: {name}")
    await ws.close()


# --- frames ----------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BIG = 2**64
# (name, frame text, the error code it must get). Each goes on a fresh socket, which then
# still answers a ping.
BAD_FRAMES: list[tuple[str, str, str]] = [
    ("not json", "{", "invalid_json"),
    ("empty", "", "invalid_json"),
    ("nan", "NaN", "invalid_frame"),
    ("deep nesting", nested(30_000), "invalid_json"),
    (
        "deep nesting in payload",
        '{"type":"ping","payload":{"a":' + nested(30_000) + "}}",
        "invalid_json",
    ),
    ("array", "[]", "invalid_frame"),
    ("string", '"ping"', "invalid_frame"),
    ("number", "1", "invalid_frame"),
    ("null", "null", "invalid_frame"),
    ("no type", "{}", "invalid_frame"),
    ("type not text", '{"type": 1}', "invalid_frame"),
    ("type an object", '{"type": {"a": 1}}', "invalid_frame"),
    ("unknown type", '{"type": "hello"}', "unknown_type"),
    ("unknown long type", json.dumps({"type": "x" * 10_000}), "unknown_type"),
    ("dunder type", '{"type": "__init__"}', "unknown_type"),
    ("payload a list", '{"type": "ping", "payload": []}', "invalid_frame"),
    ("payload text", '{"type": "resume", "payload": "after_seq=1"}', "invalid_frame"),
]
for kind in ("mark_read", "mark_unread", "delete"):
    for label, value in [
        ("absent", None),
        ("text", '"1"'),
        ("a number", "1"),
        ("zero", "[0]"),
        ("negative", "[-1]"),
        ("text ids", '["1"]'),
        ("booleans", "[true]"),
        ("fractions", "[1.5]"),
        ("too big", f"[{BIG}]"),
        ("nested", "[[1]]"),
        ("an object", '{"1": 1}'),
        ("too many", json.dumps(list(range(1, 1002)))),
    ]:
        payload = "{}" if value is None else f'{{"ids": {value}}}'
        BAD_FRAMES.append(
            (f"{kind} ids {label}", f'{{"type": "{kind}", "payload": {payload}}}', "invalid_ids")
        )
for kind, key in [("resume", "after_seq"), ("mark_all_read", "up_to_seq")]:
    for label, value in [
        ("text", '"abc"'),
        ("unicode digits", '"\\u00b2"'),
        ("negative", "-1"),
        ("fraction", "1.5"),
        ("boolean", "true"),
        ("too big", str(BIG)),
        ("a list", "[1]"),
        ("huge digits", '"' + "9" * 5000 + '"'),
    ]:
        BAD_FRAMES.append(
            (
                f"{kind} {label}",
                f'{{"type": "{kind}", "payload": {{"{key}": {value}}}}}',
                "invalid_cursor",
            )
        )
BAD_FRAMES.append(("resume absent cursor", '{"type": "resume"}', "invalid_cursor"))
BAD_FRAMES.append(
    ("resume ahead", '{"type": "resume", "payload": {"after_seq": 99999999}}', "cursor_ahead")
)
for kind in ("subscribe_presence", "unsubscribe_presence"):
    for label, value in [
        ("absent", None),
        ("text", '"1"'),
        ("zero", "0"),
        ("negative", "-1"),
        ("boolean", "true"),
        ("fraction", "1.5"),
        ("too big", str(2**63)),
        ("a list", "[1]"),
    ]:
        payload = "{}" if value is None else f'{{"project_id": {value}}}'
        BAD_FRAMES.append(
            (f"{kind} {label}", f'{{"type": "{kind}", "payload": {payload}}}', "invalid_project")
        )
for label, value in [
    ("absent", None),
    ("offline", '"offline"'),
    ("upper case", '"ONLINE"'),
    ("a number", "1"),
    ("a list", '["online"]'),
]:
    payload = "{}" if value is None else f'{{"status": {value}}}'
    BAD_FRAMES.append(
        (f"set_status {label}", f'{{"type": "set_status", "payload": {payload}}}', "invalid_status")
    )
for label, value in [("absent", None), ("a number", "1"), ("a list", '["x"]')]:
    payload = "{}" if value is None else f'{{"token": {value}}}'
    BAD_FRAMES.append(
        (
            f"authenticate {label}",
            f'{{"type": "authenticate", "payload": {payload}}}',
            "token_missing",
        )
    )


async def test_every_bad_frame_gets_its_error_and_the_socket_stays(
    server: RunningServer, attacks: Attacks
) -> None:
    access = login(server, "alice")["access"]
    for name, text, code in BAD_FRAMES:
        ws = await open_socket(server, headers=bearer(access))
        await hello(ws)
        await ws.send(text)
        frame = await receive(ws)
        assert frame["type"] == "error", (name, frame)
        assert frame["payload"]["code"] == code, (name, frame)
        assert len(json.dumps(frame)) < 2000, name  # the answer does not echo the attack
        await still_open(ws)
        await ws.close()
        await attacks.survived(f"frame: {name}")

    # A ref is echoed when it is well formed, and dropped when it is not.
    ws = await open_socket(server, headers=bearer(access))
    await hello(ws)
    for ref, echoed in [
        ("r" * 100, True),
        ("r" * 101, False),
        (7, True),
        (True, False),
        ({"a": 1}, False),
        ([1], False),
        (None, False),
    ]:
        await ws.send(json.dumps({"type": "nope", "ref": ref}))
        frame = await receive(ws)
        assert frame["payload"]["code"] == "unknown_type"
        assert ("ref" in frame) is echoed, ref
        if echoed:
            assert frame["ref"] == ref
        await attacks.survived(f"frame: ref {str(ref)[:10]}")
    await ws.close()

    # A binary frame is refused in words; the socket stays.
    ws = await open_socket(server, headers=bearer(access))
    await hello(ws)
    await ws.send(b'{"type": "ping"}')
    frame = await receive(ws)
    assert frame["payload"]["code"] == "binary_not_supported"
    await still_open(ws)
    await ws.close()
    await attacks.survived("frame: binary")


async def test_frames_that_break_the_transport_close_with_the_documented_code(
    server: RunningServer, attacks: Attacks
) -> None:
    access = login(server, "alice")["access"]
    # Exactly the limit is allowed: the pong comes (with an empty payload: it is big).
    ws = await open_socket(server, headers=bearer(access))
    await hello(ws)
    head = '{"type":"ping","ref":"edge","payload":{"x":"'
    edge = head + "y" * (MAX_FRAME - len(head) - 3) + '"}}'
    assert len(edge.encode()) == MAX_FRAME
    await ws.send(edge)
    assert await answered(ws, "edge") == {"type": "pong", "payload": {}, "ref": "edge"}
    await ws.close()
    await attacks.survived("transport: exactly the limit")

    closing: list[tuple[str, Callable[[ClientConnection], Any], int]] = [
        ("one byte over", lambda w: w.send(edge[:-2] + 'y"}}'), 1009),
        (
            "multi-byte text over",
            lambda w: w.send(
                json.dumps(
                    {"type": "ping", "payload": {"x": "é" * (MAX_FRAME // 2)}}, ensure_ascii=False
                )
            ),
            1009,
        ),
        ("binary over", lambda w: w.send(b"\x00" * (MAX_FRAME + 1)), 1009),
        ("deep nesting over", lambda w: w.send(nested(100_000)), 1009),
        ("a megabyte", lambda w: w.send("x" * 1_000_000), 1009),
        ("invalid utf-8", lambda w: w.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True), 1007),
        ("lone surrogate bytes", lambda w: w.send(b'"\xed\xa0\x80"', text=True), 1007),
        ("overlong encoding", lambda w: w.send(b'"\xc0\xaf"', text=True), 1007),
    ]
    for name, attack, code in closing:
        ws = await open_socket(server, headers=bearer(access))
        await hello(ws)
        got: int | None
        try:
            await attack(ws)
        except ConnectionClosed as closed:
            # The server read past its limit and closed while the client was still
            # writing (a megabyte): the close frame it sent carries the code.
            got = closed.rcvd.code if closed.rcvd else None
        else:
            got, _ = await closed_with(ws)
        assert got == code, name
        await attacks.survived(f"transport: {name}")


async def test_a_flood_closes_the_flooder_with_1008_only(
    server: RunningServer, attacks: Attacks
) -> None:
    access = login(server, "alice")["access"]
    neighbour = await open_socket(server, headers=bearer(access))  # the same user, calm
    await hello(neighbour)
    floods: list[tuple[str, str | bytes]] = [
        ("pings", '{"type":"ping"}'),
        ("garbage", "{"),
        ("binary", b"x"),
        ("mark_all_read", '{"type":"mark_all_read"}'),
    ]
    for name, frame in floods:
        ws = await open_socket(server, headers=bearer(access))
        await hello(ws)
        sent = 0
        try:
            for _ in range(500):
                await ws.send(frame)
                sent += 1
        except ConnectionClosed:
            pass
        code, frames = await closed_with(ws)
        assert code == 1008, name
        # The burst (60) was answered before the close.
        assert len([f for f in frames if f["type"] in {"pong", "error", "ack"}]) >= 50, name
        await still_open(neighbour)
        await attacks.survived(f"flood: {name}")
    await neighbour.close()


# --- origins ---------------------------------------------------------------------------


async def test_browser_origins_must_be_this_server(server: RunningServer, attacks: Attacks) -> None:
    access = login(server, "alice")["access"]
    host = f"127.0.0.1:{server.port}"
    allowed = [None, f"http://{host}", f"https://{host}"]
    refused = [
        "null",
        "",
        "http://evil.example",
        f"http://{host}.evil.example",
        f"http://127.0.0.1.evil.example:{server.port}",
        f"http://evil.example/{host}",
        f"http://{host}@evil.example",
        f"http://evil.example#{host}",
        f"HTTP://{host}",
        f"http://{host.upper()}X",
        f"http://{host}/",
        f"http://127.0.0.1:{server.port + 1}",
        "http://127.0.0.1",
        f"http://127.0.0.1:0{server.port}",
        f"http://localhost:{server.port}",
        f"ws://{host}",
        f"file://{host}",
        f"http://{host}, http://evil.example",
    ]
    for origin in allowed:
        ws = await open_socket(server, query=f"token={access}", origin=origin)
        await hello(ws)
        await ws.close()
        await attacks.survived(f"origin allowed: {origin}")
    for origin in refused:
        with pytest.raises(InvalidStatus) as refusal:
            await open_socket(server, query=f"token={access}", origin=origin)
        assert refusal.value.response.status_code == 403, origin
        await attacks.survived(f"origin refused: {origin!r}")


async def test_origins_follow_the_allowed_list_and_hosts(server_factory: ServerFactory) -> None:
    server = server_factory(
        demo=True,
        env={
            "TRAY_ALLOWED_ORIGINS": "https://app.example.com",
            "TRAY_ALLOWED_HOSTS": "127.0.0.1",
        },
    )
    access = login(server, "alice")["access"]
    ws = await open_socket(server, query=f"token={access}", origin="https://app.example.com")
    await hello(ws)
    await ws.close()
    for origin in [
        "https://app.example.com.evil.example",
        "https://APP.example.com",
        "http://app.example.com",
        "https://app.example.com:443",
        "null",
    ]:
        with pytest.raises(InvalidStatus) as refusal:
            await open_socket(server, query=f"token={access}", origin=origin)
        assert refusal.value.response.status_code == 403, origin
    # A page on a host this server does not serve (DNS rebinding) is not "the server itself".
    with pytest.raises(InvalidStatus) as refusal:
        await open_socket(
            server,
            query=f"token={access}",
            headers={"Host": "evil.example"},
            origin="http://evil.example",
        )
    assert refusal.value.response.status_code == 403
    assert server.is_running()


# --- other people's things ------------------------------------------------------------


async def test_foreign_projects_and_notifications_stay_out_of_reach(
    server: RunningServer, attacks: Attacks
) -> None:
    alice = login(server, "alice")["access"]
    carol = login(server, "carol")["access"]
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as rest:
        # carol may create projects in the demo (bob may not: finding 2).
        created = await rest.post(
            "/api/projects/", json={"title": "carol only"}, headers=bearer(carol)
        )
        assert created.status_code == 201
        carols_project = created.json()["id"]
        carols_rows = (await rest.get("/api/inbox/?limit=200", headers=bearer(carol))).json()
        carols_ids = [row["id"] for row in carols_rows["results"]]
        carols_unread = carols_rows["unread_count"]
    assert carols_ids
    assert carols_unread > 0

    ws = await open_socket(server, headers=bearer(alice))
    await hello(ws)
    for project_id in (carols_project, 999_999, 2**63 - 1):
        ref = f"sub-{project_id}"
        await ws.send(
            json.dumps(
                {"type": "subscribe_presence", "ref": ref, "payload": {"project_id": project_id}}
            )
        )
        answer = await answered(ws, ref)
        assert answer["type"] == "error"
        assert answer["payload"]["code"] == "not_found"
        assert "carol" not in json.dumps(answer["payload"]).lower()
        await attacks.survived(f"presence: project {project_id}")

    for kind in ("mark_read", "mark_unread", "delete"):
        ref = f"{kind}-foreign"
        await ws.send(json.dumps({"type": kind, "ref": ref, "payload": {"ids": carols_ids}}))
        answer = await answered(ws, ref)
        assert answer["type"] == "ack", answer
        assert answer["payload"]["changed"] == []
        assert sorted(answer["payload"]["not_found"]) == sorted(carols_ids)
        await attacks.survived(f"foreign ids: {kind}")
    await ws.close()

    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as rest:
        after = (await rest.get("/api/inbox/?limit=200", headers=bearer(carol))).json()
        for inbox_id in carols_ids:  # and none was deleted or changed over REST either
            one = await rest.get(f"/api/inbox/{inbox_id}/", headers=bearer(alice))
            assert one.status_code == 404
    still_there = {row["id"] for row in after["results"]}
    assert set(carols_ids) <= still_there
    # None of hers was marked read (the bystander notifications went to bob).
    assert after["unread_count"] == carols_unread
