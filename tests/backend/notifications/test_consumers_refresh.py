"""The socket on the refresh token: ``Authorization: Refresh <token>`` at the handshake
(a cold start with no REST call first) and the in-band ``refresh`` frame, both rotating
the token by the rules of ``POST /api/auth/token/refresh/``.

Through Channels' communicator: the real ASGI app, the real hub and a real SQLite
database in this process; REST through DRF's test client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.test import Client as DjangoClient
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed

from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.users.models import LoginSession, User
from backend.users.services import TokenPair, session_logout, session_start
from backend.users.tokens import ACCOUNT_DEACTIVATED, SESSION_ENDED
from tests.backend.conftest import WAIT, Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ME = "/api/me"
REFRESH = "/api/auth/token/refresh/"


@database_sync_to_async
def make(username: str, **fields: Any) -> User:
    return User.objects.create_user(username=username, password="pw", **fields)


@database_sync_to_async
def login(user: User) -> TokenPair:
    return session_start(user=user)


@database_sync_to_async
def me(access: str) -> int:
    """The status of ``GET /api/me`` with ``access``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    status: int = client.get(ME).status_code
    return status


@database_sync_to_async
def rest_refresh(refresh: str) -> Any:
    return APIClient().post(REFRESH, {"refresh": refresh}, format="json")


@database_sync_to_async
def session_of(refresh: str) -> LoginSession:
    session_id = RefreshToken(refresh)["sid"]  # type: ignore[arg-type]
    return LoginSession.objects.get(pk=session_id)


def refresh_header(raw: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Refresh {raw}".encode())]


@pytest_asyncio.fixture
async def refresh_socket(connect: Callable[..., Any]) -> Callable[..., Any]:
    """``await refresh_socket(raw)`` → a Client of a ``Refresh`` handshake, its hello in
    ``client.hello`` (unless ``expect_hello=False``)."""

    async def open_(
        raw: str,
        *,
        query: str = "",
        scheme: str = "Refresh",
        headers: list[tuple[bytes, bytes]] | None = None,
        expect_hello: bool = True,
    ) -> Client:
        client: Client = await connect(
            token=raw, scheme=scheme, query=query, headers=headers, expect_hello=expect_hello
        )
        assert client.connected  # type: ignore[attr-defined]
        return client

    return open_


# -- the handshake ------------------------------------------------------------


async def test_a_refresh_handshake_says_hello_with_a_new_working_pair(refresh_socket):
    alice = await make("alice", first_name="Alice")
    old = await login(alice)
    client = await refresh_socket(old.refresh)

    assert client.hello["user"]["username"] == "alice"
    tokens = client.hello["tokens"]
    assert set(tokens) == {"access", "refresh"}
    assert old.access != tokens["access"]
    assert old.refresh != tokens["refresh"]
    access = AccessToken(tokens["access"])
    assert client.hello["token_expires_at"] == access["exp"]
    assert (await session_of(old.refresh)).generation == 1
    # The new access token works for REST; the new refresh token rotates once.
    assert await me(tokens["access"]) == 200
    rotated = await rest_refresh(tokens["refresh"])
    assert rotated.status_code == 200, rotated.content
    assert await me(rotated.json()["access"]) == 200
    # The socket is alive, and lives on its session.
    await client.send("ping", ref="alive")
    assert (await client.receive())["type"] == "pong"


async def test_the_refresh_token_a_handshake_rotated_is_spent(refresh_socket):
    """Used again, it is a copied token: the whole session ends, this socket too."""
    alice = await make("alice")
    old = await login(alice)
    client = await refresh_socket(old.refresh)
    fresh = client.hello["tokens"]

    reused = await rest_refresh(old.refresh)

    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"
    assert await client.closed_with() == 4001
    assert (await session_of(old.refresh)).end_reason == LoginSession.END_REFRESH_REUSED
    assert await me(fresh["access"]) == 401
    assert (await rest_refresh(fresh["refresh"])).status_code == 401


async def test_a_hello_without_the_refresh_header_carries_no_tokens(connect):
    alice = await make("alice")
    client = await connect(alice)
    assert "tokens" not in client.hello


async def test_the_scheme_is_case_insensitive(refresh_socket):
    alice = await make("alice")
    client = await refresh_socket((await login(alice)).refresh, scheme="rEfReSh")
    assert client.hello["tokens"]["refresh"]


def _forge(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@database_sync_to_async
def bad_refresh_token(user: User, kind: str) -> str:
    pair = session_start(user=user)
    if kind == "expired":
        token = RefreshToken(pair.refresh)  # type: ignore[arg-type]
        token.set_exp(lifetime=timedelta(seconds=-10))
        return str(token)
    if kind == "wrong_signature":
        head, body, _ = pair.refresh.split(".")
        return f"{head}.{body}.c2lnbmF0dXJlLWZvcmdlZA"
    if kind == "alg_none":
        return _forge(dict(RefreshToken(pair.refresh).payload))  # type: ignore[arg-type]
    if kind == "access":
        return pair.access
    if kind == "garbage":
        return "not-a-jwt"
    return "a" * 100_000


@pytest.mark.parametrize(
    "kind", ["expired", "wrong_signature", "alg_none", "access", "garbage", "huge"]
)
async def test_bad_refresh_tokens_close_with_4001_after_an_error_frame(refresh_socket, kind):
    alice = await make("alice")
    raw = await bad_refresh_token(alice, kind)

    client = await refresh_socket(raw, expect_hello=False)

    error = await client.receive()
    assert error["type"] == "error"
    assert (error["payload"]["code"], error["payload"]["message"]) == (
        "token_invalid",
        SESSION_ENDED,
    )
    assert await client.closed_with() == 4001
    # Nothing was rotated.
    generations = await database_sync_to_async(
        lambda: set(LoginSession.objects.values_list("generation", flat=True))
    )()
    assert generations == {0}


async def test_a_refresh_header_without_a_token_never_falls_back_to_the_cookie(
    refresh_socket, connect
):
    """The web companion's cookie stands for a handshake that brings no credentials; a
    ``Refresh`` header brings some, even empty."""
    await make("alice")

    @database_sync_to_async
    def page_session() -> str:
        browser = DjangoClient()
        assert browser.post("/login/", {"username": "alice", "password": "pw"}).status_code == 302
        return browser.session.session_key or ""

    key = await page_session()
    page = [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    assert (await connect(headers=page)).hello["user"]["username"] == "alice"

    client = await refresh_socket("", headers=page, expect_hello=False)

    error = await client.receive()
    assert error["payload"]["code"] == "token_missing"
    assert await client.closed_with() == 4001


async def test_a_refresh_handshake_of_an_ended_session_closes_4001(refresh_socket):
    alice = await make("alice")
    pair = await login(alice)
    await database_sync_to_async(session_logout)(refresh=pair.refresh)

    client = await refresh_socket(pair.refresh, expect_hello=False)

    error = (await client.receive())["payload"]
    assert (error["code"], error["message"]) == ("token_invalid", SESSION_ENDED)
    assert await client.closed_with() == 4001


async def test_a_spent_refresh_token_at_the_handshake_ends_the_session(refresh_socket):
    alice = await make("alice")
    old = await login(alice)
    rotated = (await rest_refresh(old.refresh)).json()

    client = await refresh_socket(old.refresh, expect_hello=False)

    # The session's end closes the socket (4001); a refusal frame may come first.
    first = await client.ws.receive_output(WAIT)
    if first["type"] == "websocket.send":
        assert json.loads(first["text"])["payload"]["code"] == "token_invalid"
        assert await client.closed_with() == 4001
    else:
        assert first["code"] == 4001
    assert (await session_of(old.refresh)).end_reason == LoginSession.END_REFRESH_REUSED
    assert (await rest_refresh(rotated["refresh"])).status_code == 401


async def test_a_deactivated_user_is_refused_with_4003(refresh_socket):
    alice = await make("alice")
    pair = await login(alice)
    await database_sync_to_async(User.objects.filter(pk=alice.pk).update)(is_active=False)

    client = await refresh_socket(pair.refresh, expect_hello=False)

    error = (await client.receive())["payload"]
    assert (error["code"], error["message"]) == ("account_disabled", ACCOUNT_DEACTIVATED)
    assert await client.closed_with() == 4003


async def test_a_user_deactivated_just_before_the_rotation_is_refused_with_4003(
    refresh_socket, monkeypatch
):
    """The session check passed; the rotation then finds the account inactive."""
    from backend.notifications import consumers
    from backend.users.services import session_refresh

    alice = await make("alice")
    pair = await login(alice)

    @database_sync_to_async
    def deactivated_meanwhile(*, refresh: str) -> TokenPair:
        User.objects.filter(pk=alice.pk).update(is_active=False)
        return session_refresh(refresh=refresh)

    monkeypatch.setattr(consumers, "_session_refresh", deactivated_meanwhile)

    client = await refresh_socket(pair.refresh, expect_hello=False)

    error = (await client.receive())["payload"]
    assert (error["code"], error["message"]) == ("account_disabled", ACCOUNT_DEACTIVATED)
    assert await client.closed_with() == 4003


async def test_after_seq_replays_after_a_refresh_handshake(refresh_socket):
    alice = await make("alice")
    for n in range(5):
        await database_sync_to_async(notification_create)(
            audience=Audience(users=(alice.pk,)), title=f"n{n + 1}"
        )
    pair = await login(alice)

    client = await refresh_socket(pair.refresh, query="after_seq=2")

    assert client.hello["latest_seq"] == 5
    assert client.hello["tokens"]["refresh"]
    frames = [await client.receive() for _ in range(4)]
    assert [f["payload"]["seq"] for f in frames[:3]] == [3, 4, 5]
    assert frames[3] == {
        "type": "caught_up",
        "payload": {"after_seq": 2, "through_seq": 5, "replayed": 3},
    }


async def test_no_token_reaches_the_logs_of_a_refresh_handshake(refresh_socket, caplog):
    alice = await make("alice")
    old = await login(alice)
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="backend"):
        client = await refresh_socket(old.refresh)
        await client.send("refresh", {"token": client.hello["tokens"]["refresh"]}, ref="r")
        ack = await client.receive()
        bad = await refresh_socket("not-a-jwt", expect_hello=False)
        assert await bad.closed_with() == 4001
    assert ack["type"] == "ack"
    secrets = {
        old.refresh,
        *client.hello["tokens"].values(),
        *ack["payload"]["tokens"].values(),
    }
    lines = [caplog.text, *(str(record.__dict__) for record in caplog.records)]
    assert any("socket opened" in record.getMessage() for record in caplog.records)
    for line in lines:
        assert "eyJ" not in line
        for secret in secrets:
            assert secret not in line


# -- in band ------------------------------------------------------------------


async def test_refresh_in_band_acks_a_working_pair_and_moves_the_expiry(connect, settings):
    settings.TRAY = {**settings.TRAY, "TOKEN_SWEEP_INTERVAL": 0.05}
    alice = await make("alice")
    pair = await login(alice)
    short = AccessToken(pair.access)
    short.set_exp(lifetime=timedelta(seconds=1))
    renewed = await connect(token=str(short))
    lapsing = await connect(token=str(short))

    await renewed.send("refresh", {"token": pair.refresh}, ref="r1")

    ack = await renewed.receive()
    assert ack["type"] == "ack"
    assert ack["ref"] == "r1"
    assert ack["payload"]["for"] == "refresh"
    tokens = ack["payload"]["tokens"]
    access = AccessToken(tokens["access"])
    assert ack["payload"]["token_expires_at"] == access["exp"]
    assert ack["payload"]["token_expires_at"] > renewed.hello["token_expires_at"]
    assert await lapsing.closed_with() == 4001
    await renewed.send("ping", ref="alive")
    assert (await renewed.receive())["type"] == "pong"
    assert await me(tokens["access"]) == 200
    assert (await rest_refresh(tokens["refresh"])).status_code == 200


async def test_refresh_in_band_with_another_users_token_is_refused_and_not_spent(connect):
    alice, bob = await make("alice"), await make("bob")
    bobs = await login(bob)
    client = await connect(alice)

    await client.send("refresh", {"token": bobs.refresh}, ref="r")

    error = await client.receive()
    assert (error["type"], error["ref"], error["payload"]["code"]) == ("error", "r", "wrong_user")
    await client.send("ping", ref="alive")
    assert (await client.receive())["type"] == "pong"
    assert (await rest_refresh(bobs.refresh)).status_code == 200


@pytest.mark.parametrize(
    ("payload", "code"),
    [({}, "token_missing"), ({"token": 42}, "token_missing"), ({"token": "x"}, "token_invalid")],
)
async def test_a_bad_token_in_band_is_an_error_and_the_socket_stays(connect, payload, code):
    alice = await make("alice")
    client = await connect(alice)

    await client.send("refresh", payload, ref=7)

    error = await client.receive()
    assert (error["type"], error["ref"], error["payload"]["code"]) == ("error", 7, code)
    await client.send("ping", ref="alive")
    assert (await client.receive())["type"] == "pong"


async def test_a_spent_token_in_band_ends_its_session_and_closes_the_socket(connect):
    alice = await make("alice")
    old = await login(alice)
    client = await connect(token=old.access)
    await client.send("refresh", {"token": old.refresh}, ref="first")
    fresh = (await client.receive())["payload"]["tokens"]

    await client.send("refresh", {"token": old.refresh}, ref="again")

    # The session's end closes the socket (4001); its error frame may come first.
    first = await client.ws.receive_output(WAIT)
    if first["type"] == "websocket.send":
        error = json.loads(first["text"])
        assert (error["ref"], error["payload"]["code"]) == ("again", "token_invalid")
        assert await client.closed_with() == 4001
    else:
        assert first["code"] == 4001
    assert (await session_of(old.refresh)).end_reason == LoginSession.END_REFRESH_REUSED
    assert await me(fresh["access"]) == 401


async def test_a_spent_token_of_another_session_is_an_error_here(connect):
    """The session it ended is another device's: this socket stays, told why."""
    alice = await make("alice")
    other = await login(alice)
    assert (await rest_refresh(other.refresh)).status_code == 200
    client = await connect(alice)

    await client.send("refresh", {"token": other.refresh}, ref="r")

    error = await client.receive()
    assert (error["ref"], error["payload"]["code"], error["payload"]["message"]) == (
        "r",
        "token_invalid",
        SESSION_ENDED,
    )
    await client.send("ping", ref="alive")
    assert (await client.receive())["type"] == "pong"
    assert (await session_of(other.refresh)).end_reason == LoginSession.END_REFRESH_REUSED


async def test_a_deactivated_account_in_band_is_account_disabled(connect, monkeypatch):
    """Deactivation closes the socket with 4003 by itself; a refresh caught in between
    says account_disabled (here the account is switched off without its signal)."""
    alice = await make("alice")
    pair = await login(alice)
    client = await connect(alice)
    await database_sync_to_async(User.objects.filter(pk=alice.pk).update)(is_active=False)

    await client.send("refresh", {"token": pair.refresh}, ref="r")

    error = await client.receive()
    assert (error["ref"], error["payload"]["code"]) == ("r", "account_disabled")


# -- a real server --------------------------------------------------------------


async def close_code(ws: Any) -> int | None:
    """Read until the server closes ``ws``; its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def fragments(token: str, size: int = 10) -> set[str]:
    """Every ``size`` characters of a JWT's claims and signature (its header is public)."""
    secret = token.split(".", 1)[1]
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


async def test_a_real_server_at_debug_never_prints_a_token(server_factory):
    """uvicorn, the deployment's logging (DEBUG) and a spent token whose session end
    closes the socket while its handshake is being refused: the server stays up, says
    nothing about a send after close, and prints no token, not even the ends of one
    that the websockets library's frame log (uvicorn.error, DEBUG) shows."""
    server = server_factory(demo=True, env={"TRAY_LOG_LEVEL": "DEBUG"})
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as rest:
        login_answer = await rest.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        )
        old = login_answer.json()
        seen = {*old.values()}

        async def refresh_handshake(raw: str) -> Any:
            return await websockets_connect(
                server.ws_url, additional_headers={"Authorization": f"Refresh {raw}"}
            )

        async with await refresh_handshake(old["refresh"]) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert hello["type"] == "hello"
            fresh = hello["payload"]["tokens"]
            seen |= {*fresh.values()}
            # The token mid-frame: the frame log shows a frame's two ends (a client's
            # frame is the client's to shape; the server's frames are checked below).
            mid_frame = {"token": fresh["refresh"], "padding": "p" * 24}
            await ws.send(json.dumps({"type": "refresh", "payload": mid_frame}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert ack["payload"]["for"] == "refresh"
            seen |= {*ack["payload"]["tokens"].values()}
            me_answer = await rest.get(
                "/api/me", headers={"Authorization": f"Bearer {ack['payload']['tokens']['access']}"}
            )
            assert me_answer.status_code == 200

            async with await refresh_handshake(old["refresh"]) as spent:
                assert await close_code(spent) == 4001
            # The spent token ended the session: this socket of it closes too.
            assert await close_code(ws) == 4001

    assert server.is_running(), server.output()
    assert server.wait_for_output("used twice: the session is ended")
    output = server.output()
    assert "socket opened" in output  # DEBUG lines were printed
    assert "Traceback" not in output
    assert "Unexpected ASGI message" not in output
    assert '> TEXT \'{"type":"hello"' in output  # the frame log was on
    for secret in seen:
        leaked = [piece for piece in fragments(secret) if piece in output]
        assert not leaked, leaked
