"""The REST client against the real server, and against small real servers for failures.

The product server runs as a subprocess (``demo_server``: alice, bob, carol,
admin; password "demo"). What it cannot do (serve HTML, hang, present an
untrusted certificate, be a refusing proxy) comes from tests/tray_app/net/
scripted_servers.py: real sockets on port 0, no mocks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tray_app
from tests.fixtures.http import CountingTransport
from tests.fixtures.services import RunningServer, ServerFactory, free_port
from tests.fixtures.tls import self_signed
from tests.tray_app.net.scripted_servers import (
    ScriptedRequest,
    ScriptedServer,
    http_response,
)
from tray_app.attention import Attention, dnd_change, quiet_hours_change
from tray_app.net import protocol
from tray_app.net.api import (
    LOGOUT_PATH,
    REFRESH_PATH,
    ApiClient,
    InboxChange,
    Tokens,
    jwt_expiry,
    jwt_lifetime,
    normalise_base_url,
    parse_inbox_change,
    parse_inbox_page,
    parse_token_pair,
    parse_unread_state,
)
from tray_app.net.errors import (
    AccountDisabled,
    InvalidCredentials,
    LoginRequired,
    NetError,
    NotOurServer,
    ProxyFailure,
    RateLimited,
    RequestRejected,
    ServerFailure,
    ServerUnreachable,
    TlsFailure,
    error_from_transport,
)
from tray_app.net.redaction import redact
from tray_app.net.transport import Transport

PASSWORD = "demo"


# --- helpers ---------------------------------------------------------------------------


class TokenLog:
    """Records every on_tokens_changed call."""

    def __init__(self) -> None:
        self.calls: list[Tokens | None] = []

    def __call__(self, tokens: Tokens | None) -> None:
        self.calls.append(tokens)


def assert_safe(error: NetError, secrets: Iterable[str] = ()) -> None:
    """A NetError a UI can show: plain words, no token or password anywhere in it."""
    assert error.user_message.strip()
    assert error.code.strip()
    for text in (str(error), error.user_message):
        assert "eyJ" not in text  # the start of every JWT
        for secret in secrets:
            assert secret not in text


async def publish(server: RunningServer, titles: Iterable[str], username: str = "alice") -> None:
    """Publish notifications to ``username`` as the demo admin, over the real API."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        login = await http.post(
            "/api/auth/token/", json={"username": "admin", "password": PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        for title in titles:
            answer = await http.post(
                "/api/notifications/",
                json={"audience": {"usernames": [username]}, "title": title},
                headers=headers,
            )
            assert answer.status_code == 201, answer.text


async def fresh_tokens(server: RunningServer, username: str = "alice") -> Tokens:
    """A session of ``username`` that no client under test has used yet."""
    async with ApiClient(server.url) as seed:
        return await seed.login(username, PASSWORD)


def tampered(access: str) -> str:
    """``access`` with a forged signature: well-formed, unexpired, refused by the server."""
    header, claims, _signature = access.split(".")
    return f"{header}.{claims}.{'A' * 43}"


# --- the real server: round trips ----------------------------------------------------------


@pytest.mark.asyncio
async def test_login_me_and_every_inbox_action_round_trip(demo_server: RunningServer) -> None:
    log = TokenLog()
    async with ApiClient(demo_server.url + "/", on_tokens_changed=log) as client:
        assert client.base_url == demo_server.url
        tokens = await client.login("alice", PASSWORD)
        assert client.tokens == tokens
        assert log.calls == [tokens]
        assert tokens.access
        assert tokens.refresh
        assert tokens.access_expires_at > 0

        me = await client.me()
        assert me["username"] == "alice"

        unread_before, latest_before = await client.unread_count()
        await publish(demo_server, ["first", "second", "third"])

        page = await client.inbox_page(after_seq=latest_before)
        assert [row.title for row in page.results] == ["first", "second", "third"]
        seqs = [row.seq for row in page.results]
        assert seqs == [latest_before + 1, latest_before + 2, latest_before + 3]
        assert page.latest_seq == latest_before + 3
        assert page.unread_count == unread_before + 3
        assert page.next_after_seq is None  # a short page is the end
        first, second, third = (row.id for row in page.results)

        newest = await client.inbox_page(limit=1)
        assert [row.id for row in newest.results] == [third]
        assert newest.next_before_seq == seqs[2]
        older = await client.inbox_page(before_seq=newest.next_before_seq, limit=1)
        assert [row.id for row in older.results] == [second]

        nobody = 2**40  # nobody's row: reported, not an error
        change = await client.mark_read([first, second, nobody])
        assert change == InboxChange(
            changed=[first, second], not_found=[nobody], unread_count=unread_before + 1
        )
        again = await client.mark_read([first])
        assert again.changed == []
        assert again.unread_count == unread_before + 1

        unread_again = await client.mark_unread([first])
        assert unread_again.changed == [first]
        assert unread_again.unread_count == unread_before + 2

        deleted = await client.delete([second])
        assert deleted.changed == [second]
        assert (await client.delete([second])).changed == []  # deleting twice is fine
        remaining = await client.inbox_page(after_seq=latest_before)
        assert [row.id for row in remaining.results] == [first, third]

        # Up to the first new seq: the newer notification stays unread.
        partial = await client.mark_all_read(up_to_seq=seqs[0])
        assert first in partial.changed
        assert third not in partial.changed
        assert await client.unread_count() == (1, latest_before + 3)

        everything = await client.mark_all_read()
        assert everything.changed == [third]
        assert everything.unread_count == 0
        assert await client.unread_count() == (0, latest_before + 3)

        with pytest.raises(RequestRejected) as rejected:
            await client.mark_read(list(range(1, 1002)))  # the server takes at most 1,000
    assert rejected.value.status == 400
    assert rejected.value.code == "invalid_ids"
    assert "1000" in rejected.value.user_message  # the server's own words
    assert_safe(rejected.value)


# --- the real server: sessions -----------------------------------------------------------


@pytest.mark.asyncio
async def test_wrong_password_is_invalid_credentials(demo_server: RunningServer) -> None:
    log = TokenLog()
    async with ApiClient(demo_server.url, on_tokens_changed=log) as client:
        with pytest.raises(InvalidCredentials) as refused:
            await client.login("alice", "not-the-password")
        with pytest.raises(InvalidCredentials):
            await client.login("nobody-by-this-name", "not-the-password")
    assert refused.value.user_message == "Wrong username or password."
    assert_safe(refused.value, ["not-the-password"])
    assert client.tokens is None
    assert log.calls == []


@pytest.mark.asyncio
async def test_refresh_rotates_the_pair_and_reports_it(demo_server: RunningServer) -> None:
    log = TokenLog()
    async with ApiClient(demo_server.url, on_tokens_changed=log) as client:
        first = await client.login("alice", PASSWORD)
        second = await client.refresh()
        assert second.refresh != first.refresh
        assert second.access != first.access
        assert client.tokens == second
        assert log.calls == [first, second]
        assert (await client.me())["username"] == "alice"
        assert await client.access_token() == second.access  # still fresh: no refresh

    # Rotation: the first refresh token has been used up.
    stale_log = TokenLog()
    async with ApiClient(demo_server.url, on_tokens_changed=stale_log) as stale:
        stale.restore(first.refresh)
        with pytest.raises(LoginRequired) as ended:
            await stale.refresh()
    assert stale.tokens is None
    assert stale_log.calls == [None]
    assert_safe(ended.value, [first.refresh, second.refresh])


@pytest.mark.asyncio
async def test_concurrent_calls_after_a_cold_start_share_one_refresh(
    demo_server: RunningServer,
) -> None:
    seed = await fresh_tokens(demo_server)
    transport = CountingTransport()
    log = TokenLog()
    calls = 20
    async with ApiClient(
        demo_server.url, http_transport=transport, on_tokens_changed=log
    ) as client:
        client.restore(seed.refresh)  # no access token yet: every call needs a refresh
        results = await asyncio.gather(*(client.unread_count() for _ in range(calls)))
    # Had two refreshes run, the second would have presented a rotated-away token
    # and ended the session with LoginRequired instead of these results.
    assert len(results) == calls
    assert len(set(results)) == 1
    assert transport.count(REFRESH_PATH) == 1
    assert len(log.calls) == 1
    assert isinstance(log.calls[0], Tokens)
    assert log.calls[0].refresh != seed.refresh
    async with ApiClient(demo_server.url) as other:
        other.restore(seed.refresh)
        with pytest.raises(LoginRequired):
            await other.refresh()


@pytest.mark.asyncio
async def test_a_refused_access_token_costs_one_refresh_for_all_callers(
    demo_server: RunningServer,
) -> None:
    seed = await fresh_tokens(demo_server)
    assert seed.access is not None
    transport = CountingTransport()
    log = TokenLog()
    calls = 20
    async with ApiClient(
        demo_server.url, http_transport=transport, on_tokens_changed=log
    ) as client:
        # Unexpired by its claims, so the client sends it; the server refuses it (401).
        client.restore(seed.refresh, access_token=tampered(seed.access))
        results = await asyncio.gather(*(client.me() for _ in range(calls)))
        assert client.tokens is not None
        assert client.tokens.access not in (None, seed.access)
    assert {me["username"] for me in results} == {"alice"}
    assert transport.count(REFRESH_PATH) == 1
    assert sum(1 for path, status in transport.statuses if status == 401) == calls
    assert len(log.calls) == 1


@pytest.mark.asyncio
async def test_revoked_or_garbage_refresh_token_requires_login(
    demo_server: RunningServer,
) -> None:
    seed = await fresh_tokens(demo_server)
    assert seed.access is not None
    async with ApiClient(demo_server.url) as owner:
        owner.restore(seed.refresh)
        await owner.logout()  # revokes it on the server
        assert owner.tokens is None

    for refresh, access in [
        (seed.refresh, None),
        ("garbage-not-a-token", None),
        ("garbage-not-a-token", tampered(seed.access)),  # 401, then the refresh fails
    ]:
        log = TokenLog()
        async with ApiClient(demo_server.url, on_tokens_changed=log) as client:
            client.restore(refresh, access_token=access)
            with pytest.raises(LoginRequired) as ended:
                await client.unread_count()
            assert client.tokens is None
            assert log.calls == [None]
            assert_safe(ended.value, [seed.refresh, seed.access, "garbage-not-a-token"])
            with pytest.raises(LoginRequired):  # logged out stays logged out
                await client.me()


@pytest.mark.asyncio
async def test_logout_clears_tokens_even_when_the_server_is_gone(
    demo_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    log = TokenLog()
    async with ApiClient(demo_server.url, on_tokens_changed=log) as client:
        tokens = await client.login("alice", PASSWORD)
        demo_server.kill()
        with caplog.at_level(logging.WARNING, logger="tray_app.net.api"):
            await client.logout()
        assert client.tokens is None
        assert log.calls == [tokens, None]
        assert "could not revoke" in caplog.text
        with pytest.raises(LoginRequired):
            await client.me()


@pytest.mark.asyncio
async def test_a_disabled_account_is_account_disabled(demo_server: RunningServer) -> None:
    log = TokenLog()
    async with ApiClient(demo_server.url, on_tokens_changed=log) as client:
        await client.login("carol", PASSWORD)
        result = demo_server.cli(
            "manage",
            "shell",
            "-c",
            "from backend.users.models import User; "
            "from backend.users.services import user_deactivate; "
            "user_deactivate(user=User.objects.get(username='carol'))",
        )
        assert result.returncode == 0, result.stderr
        with pytest.raises(AccountDisabled) as disabled:
            await client.me()
        assert client.tokens is None
        assert log.calls[-1] is None
    assert_safe(disabled.value)


@pytest.mark.asyncio
async def test_repeated_failed_logins_are_rate_limited(server_factory: ServerFactory) -> None:
    server = server_factory(demo=True, env={"TRAY_LOGIN_RATE": "2/min"})
    async with ApiClient(server.url) as client:
        for _attempt in range(2):
            with pytest.raises(InvalidCredentials):
                await client.login("alice", "wrong")
        with pytest.raises(RateLimited) as limited:
            await client.login("alice", PASSWORD)
    assert limited.value.status == 429
    assert limited.value.retry_after is not None
    assert 0 < limited.value.retry_after <= 60
    assert_safe(limited.value, ["wrong", PASSWORD])


@pytest.mark.asyncio
async def test_nothing_secret_reaches_the_logs(
    demo_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    password = "demo"  # the demo password is short: look for the JSON field instead
    with caplog.at_level(logging.DEBUG):
        async with ApiClient(demo_server.url) as client:
            first = await client.login("alice", password)
            second = await client.refresh()
            await client.inbox_page()
            await client.logout()
    assert "POST /api/auth/token/refresh/ -> 200" in caplog.text  # debug logs were captured
    secrets = [first.refresh, second.refresh, first.access, second.access]
    for record in caplog.records:
        text = record.getMessage()
        assert '"password"' not in text
        for secret in secrets:
            assert secret
            assert secret not in text


# --- failures: network, TLS, proxies, strangers --------------------------------------------


@pytest.mark.asyncio
async def test_nobody_listening_is_server_unreachable_and_keeps_the_tokens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    log = TokenLog()
    async with ApiClient(url, on_tokens_changed=log) as client:
        with pytest.raises(ServerUnreachable) as refused:
            await client.login("alice", PASSWORD)
        assert refused.value.code == "connection_refused"
        client.restore("stored-refresh-token")
        with pytest.raises(ServerUnreachable):
            await client.unread_count()
        assert client.tokens is not None  # a network failure does not log anyone out
        assert client.tokens.refresh == "stored-refresh-token"
        assert log.calls == []
    assert_safe(refused.value, [PASSWORD])

    async with ApiClient("http://tray-server.invalid") as client:
        with pytest.raises(ServerUnreachable) as unknown:
            await client.login("alice", PASSWORD)
    assert unknown.value.code == "server_not_found"
    assert "tray-server.invalid" in unknown.value.user_message


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out() -> None:
    async with ScriptedServer(lambda _request: None) as hanging:
        async with ApiClient(hanging.url, timeout=0.3) as client:
            with pytest.raises(ServerUnreachable) as timed_out:
                await client.login("alice", PASSWORD)
        assert len(hanging.requests) == 1
    assert timed_out.value.code == "server_timeout"
    assert_safe(timed_out.value, [PASSWORD])


def _token_pair_answer(_request: ScriptedRequest) -> bytes:
    body = '{"access": "a.b.c", "refresh": "r.s.t"}'
    return http_response(200, body, content_type="application/json")


@pytest.mark.asyncio
async def test_certificate_checks(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path / "local", dns_names=["localhost"], ips=["127.0.0.1"])
    async with ScriptedServer(_token_pair_answer, certificate.server_context()) as server:
        async with ApiClient(server.url) as client:  # the system's CAs: untrusted
            with pytest.raises(TlsFailure) as untrusted:
                await client.login("alice", PASSWORD)
        assert untrusted.value.code == "tls_untrusted_certificate"
        assert_safe(untrusted.value, [PASSWORD])
        assert server.requests == []  # nothing was sent over the refused connection

        # Trusting the certificate (as a CA bundle) lets the same call through.
        trusted = Transport(ca_bundle=certificate.cert_path)
        async with ApiClient(server.url, transport=trusted) as client:
            tokens = await client.login("alice", PASSWORD)
        assert tokens.refresh == "r.s.t"
        assert len(server.requests) == 1
        assert server.requests[0].headers["user-agent"] == f"tray-notifier/{tray_app.__version__}"

    other = self_signed(tmp_path / "other", dns_names=["tray.example.com"])
    async with (
        ScriptedServer(_token_pair_answer, other.server_context()) as server,
        ApiClient(server.url, transport=Transport(ca_bundle=other.cert_path)) as client,
    ):
        with pytest.raises(TlsFailure) as mismatch:
            await client.login("alice", PASSWORD)
    assert mismatch.value.code == "tls_hostname_mismatch"

    async with (
        ScriptedServer(_token_pair_answer, silent=True) as silent,
        ApiClient(silent.url.replace("http://", "https://"), timeout=0.3) as client,
    ):
        with pytest.raises(ServerUnreachable) as handshake_hangs:
            await client.login("alice", PASSWORD)
    assert handshake_hangs.value.code == "server_timeout"

    async with ScriptedServer(_token_pair_answer) as plain:
        https_url = plain.url.replace("http://", "https://")
        async with ApiClient(https_url) as client:
            with pytest.raises(TlsFailure) as not_tls:
                await client.login("alice", PASSWORD)
    assert not_tls.value.code == "tls_not_supported"
    assert "http://" in not_tls.value.user_message


def _proxy_refusal(_request: ScriptedRequest) -> bytes:
    return http_response(
        407,
        "<h1>Proxy Authentication Required</h1>",
        reason="Proxy Authentication Required",
        headers=[("Proxy-Authenticate", 'Basic realm="corp"')],
    )


@pytest.mark.asyncio
async def test_a_refusing_proxy_is_proxy_failure() -> None:
    async with ScriptedServer(_proxy_refusal) as proxy:
        # https: the client asks the proxy for a tunnel (CONNECT) and is refused.
        async with ApiClient(
            "https://tray.example.com", transport=Transport(proxy=proxy.url)
        ) as client:
            with pytest.raises(ProxyFailure) as tunnel:
                await client.login("alice", PASSWORD)
        # http: the proxy forwards requests itself, and answers this one with 407.
        async with ApiClient(
            "http://tray.example.com", transport=Transport(proxy=proxy.url)
        ) as client:
            with pytest.raises(ProxyFailure) as forward:
                await client.login("alice", PASSWORD)
        assert [request.method for request in proxy.requests] == ["CONNECT", "POST"]
        assert proxy.requests[0].target == "tray.example.com:443"
    for error in (tunnel.value, forward.value):
        assert_safe(error, [PASSWORD])

    nowhere = f"http://127.0.0.1:{free_port()}"
    async with ApiClient("https://tray.example.com", transport=Transport(proxy=nowhere)) as client:
        with pytest.raises(ProxyFailure) as unreachable:
            await client.login("alice", PASSWORD)
    assert unreachable.value.code == "proxy_unreachable"


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        (http_response(200, "<html><body>Welcome to nginx!</body></html>"), NotOurServer, None),
        (http_response(404, "<html>Not Found</html>"), NotOurServer, None),
        (http_response(200, '{"token": "x"}', content_type="application/json"), NotOurServer, None),
        (http_response(200, "{not json", content_type="application/json"), NotOurServer, None),
        (
            http_response(401, '{"detail": "nope"}', content_type="application/json"),
            NotOurServer,
            None,
        ),
        (
            http_response(301, "", headers=[("Location", "https://tray.example.com:8443/api/")]),
            NotOurServer,
            "redirected",
        ),
        (http_response(502, "<html>Bad Gateway</html>"), ServerFailure, None),
        (
            http_response(
                500,
                '{"error": {"code": "server_error", "message": "Oops."}}',
                content_type="application/json",
            ),
            ServerFailure,
            "server_error",
        ),
    ],
    ids=[
        "html-200",
        "html-404",
        "json-wrong-shape",
        "json-malformed",
        "401-foreign-body",
        "redirect",
        "502",
        "500-ours",
    ],
)
@pytest.mark.asyncio
async def test_answers_that_are_not_our_api(
    answer: bytes, expected: type[NetError], code: str | None
) -> None:
    async with (
        ScriptedServer(lambda _request: answer) as stranger,
        ApiClient(stranger.url) as client,
    ):
        with pytest.raises(expected) as raised:
            await client.login("alice", PASSWORD)
    assert type(raised.value) is expected
    if code:
        assert raised.value.code == code
    if code == "redirected":
        assert "https://tray.example.com:8443" in raised.value.user_message
    assert_safe(raised.value, [PASSWORD])


@pytest.mark.asyncio
async def test_authenticated_calls_check_the_answers_shape() -> None:
    def answer(request: ScriptedRequest) -> bytes:
        if request.target == REFRESH_PATH:
            return _token_pair_answer(request)
        return http_response(200, '{"results": "nope"}', content_type="application/json")

    async with ScriptedServer(answer) as stranger:
        async with ApiClient(stranger.url) as client:
            client.restore("r.s.t")
            with pytest.raises(NotOurServer):
                await client.inbox_page()
        assert stranger.requests[-1].headers["authorization"] == "Bearer a.b.c"


@pytest.mark.asyncio
async def test_a_refusal_that_arrives_after_a_refresh_does_not_refresh_again() -> None:
    """Two calls sent with the same refused token: the second refusal comes back
    only after the first call's refresh has stored a new pair, so it must simply
    retry with that pair (a second refresh would waste the rotation)."""
    tokens_stored = asyncio.Event()
    refusals = 0
    refused = http_response(
        401,
        '{"error": {"code": "token_not_valid", "message": "Your session has ended."}}',
        content_type="application/json",
    )
    state = http_response(
        200, '{"unread_count": 3, "latest_seq": 9}', content_type="application/json"
    )

    async def refused_later() -> bytes:
        await tokens_stored.wait()
        return refused

    def answer(request: ScriptedRequest) -> bytes | Awaitable[bytes]:
        nonlocal refusals
        if request.target == REFRESH_PATH:
            return _token_pair_answer(request)
        if request.headers["authorization"] == "Bearer a.b.c":  # the refreshed access token
            return state
        refusals += 1
        return refused if refusals == 1 else refused_later()

    def on_tokens_changed(tokens: Tokens | None) -> None:
        log(tokens)
        tokens_stored.set()

    log = TokenLog()
    stale_access = _jwt('{"exp": 4102444800}')  # unexpired by its claims: it gets sent
    async with ScriptedServer(answer) as server:
        async with ApiClient(server.url, on_tokens_changed=on_tokens_changed) as client:
            client.restore("stored.refresh.token", access_token=stale_access)
            results = await asyncio.gather(client.unread_count(), client.unread_count())
        assert list(results) == [(3, 9), (3, 9)]
        assert [request.target for request in server.requests].count(REFRESH_PATH) == 1
    assert refusals == 2
    assert len(log.calls) == 1


@pytest.mark.asyncio
async def test_access_token_is_refreshed_ahead_of_its_expiry() -> None:
    now = time.time()
    # The server's clock is an hour behind ours: by our clock its tokens expired
    # long ago, yet each is good for its lifetime (exp - iat) from when it came.
    skewed = {"iat": int(now - 3600), "exp": int(now - 3600 + 600)}
    issued: list[str] = []

    def answer(request: ScriptedRequest) -> bytes:
        assert request.target == REFRESH_PATH
        access = _jwt(json.dumps({**skewed, "n": len(issued)}))
        issued.append(access)
        body = json.dumps({"access": access, "refresh": f"refresh-{len(issued)}"})
        return http_response(200, body, content_type="application/json")

    async with ScriptedServer(answer) as server, ApiClient(server.url) as client:
        client.restore("r0", access_token=_jwt(json.dumps({"iat": now - 500, "exp": now + 100})))
        assert await client.access_token() == client.tokens.access  # type: ignore[union-attr]
        assert issued == []  # 100 s left: enough
        await client.access_token(min_validity=200)  # asks for more than is left
        assert len(issued) == 1

        client.restore("r1", access_token=_jwt(json.dumps({"iat": now - 580, "exp": now + 20})))
        assert await client.access_token() == issued[1]  # 20 s left: refreshed first
        assert await client.access_token() == issued[1]  # the skewed token is fresh
        # Asking for more than half a token's life is capped there, not a refresh per call.
        assert await client.access_token(min_validity=3600) == issued[1]
    assert len(issued) == 2


@pytest.mark.asyncio
async def test_logging_out_during_a_refresh_does_not_bring_the_session_back() -> None:
    refresh_arrived = asyncio.Event()
    release_refresh = asyncio.Event()

    async def held_token_pair(request: ScriptedRequest) -> bytes:
        refresh_arrived.set()
        await release_refresh.wait()
        return _token_pair_answer(request)

    def answer(request: ScriptedRequest) -> bytes | Awaitable[bytes]:
        if request.target == REFRESH_PATH:
            return held_token_pair(request)
        return http_response(204, "", content_type="application/json")

    log = TokenLog()
    async with ScriptedServer(answer) as server:
        async with ApiClient(server.url, on_tokens_changed=log) as client:
            client.restore("stored.refresh.token")
            refreshing = asyncio.create_task(client.refresh())
            await asyncio.wait_for(refresh_arrived.wait(), timeout=10)
            await client.logout()
            release_refresh.set()
            with pytest.raises(LoginRequired):
                await refreshing
            assert client.tokens is None
        assert log.calls == [None]
        revoked = [
            json.loads(request.body)["refresh"]
            for request in server.requests
            if request.target == LOGOUT_PATH
        ]
        # The stored token, then the pair the late refresh brought: neither stays alive.
        assert revoked == ["stored.refresh.token", "r.s.t"]


@pytest.mark.asyncio
async def test_bad_arguments_are_refused_before_any_request() -> None:
    async with ScriptedServer(_token_pair_answer) as server:
        async with ApiClient(server.url) as client:
            with pytest.raises(InvalidCredentials) as empty:
                await client.login("alice", "")
            assert empty.value.user_message == "Enter your username and your password."
            assert server.requests == []
            await client.login("alice", PASSWORD)
            with pytest.raises(ValueError, match="ids"):
                await client.mark_read("12")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="every id"):
                await client.delete([1, 0])
            with pytest.raises(ValueError, match="limit"):
                await client.inbox_page(limit=0)
            with pytest.raises(ValueError, match="after_seq"):
                await client.inbox_page(after_seq=-1)
        assert [request.target for request in server.requests] == ["/api/auth/token/"]


# --- error_from_transport for the socket session's connection errors ----------------------


@pytest.mark.asyncio
async def test_error_from_transport_classifies_raw_socket_errors(tmp_path: Path) -> None:
    secret_url = "wss://127.0.0.1:{port}/ws/notifications/?token=eyJsecret.eyJpart.sig"

    port = free_port()
    with pytest.raises(ConnectionRefusedError) as refused:
        await asyncio.open_connection("127.0.0.1", port)
    error = error_from_transport(refused.value, url=secret_url.format(port=port))
    assert isinstance(error, ServerUnreachable)
    assert error.code == "connection_refused"
    assert_safe(error, ["secret", "token="])

    with pytest.raises(socket.gaierror) as unknown:
        await asyncio.open_connection("tray-server.invalid", 443)
    error = error_from_transport(unknown.value, url="wss://tray-server.invalid/ws/")
    assert isinstance(error, ServerUnreachable)
    assert error.code == "server_not_found"

    certificate = self_signed(tmp_path, ips=["127.0.0.1"])
    async with ScriptedServer(_token_pair_answer, certificate.server_context()) as server:
        with pytest.raises(ssl.SSLError) as untrusted:
            await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=ssl.create_default_context()
            )
    error = error_from_transport(untrusted.value, url=secret_url.format(port=server.port))
    assert isinstance(error, TlsFailure)
    assert error.code == "tls_untrusted_certificate"
    assert_safe(error, ["secret", "token="])

    error = error_from_transport(TimeoutError(), url="wss://tray.example.com/ws/")
    assert isinstance(error, ServerUnreachable)
    assert error.code == "server_timeout"
    assert "tray.example.com" in error.user_message

    already = LoginRequired()
    assert error_from_transport(already, url="https://x") is already


# --- pure functions ------------------------------------------------------------------------


def test_redact_hides_tokens_and_passwords() -> None:
    text = redact(
        "Bearer abc.def token=eyJhbGciOi.eyJzdWIi.c2ln refresh=xyz password=hunter2 plain words"
    )
    for secret in ("abc.def", "eyJ", "xyz", "hunter2"):
        assert secret not in text
    assert text.endswith("plain words")
    assert str(NetError("got eyJhbGciOi.eyJzdWIi.c2ln back")) == "got *** back"
    # The socket's handshake with the refresh token, as websockets logs a header.
    assert redact("> Authorization: Refresh opaque-token") == "> Authorization: Refresh ***"
    assert redact("refresh refused (HTTP 401)") == "refresh refused (HTTP 401)"


def test_base_url_is_checked_and_gives_the_websocket_address() -> None:
    assert normalise_base_url(" https://tray.example.com/ ") == "https://tray.example.com"
    client = ApiClient("https://tray.example.com/prefix/")
    assert client.base_url == "https://tray.example.com/prefix"
    assert client.ws_url == "wss://tray.example.com/prefix/ws/notifications/"
    assert ApiClient("http://127.0.0.1:8000").ws_url == "ws://127.0.0.1:8000/ws/notifications/"
    for bad in [
        "tray.example.com",
        "ftp://tray.example.com",
        "https://",
        "https://user:pw@tray.example.com",
        "https://tray.example.com/?x=1",
        "https://xn--a.example",  # a malformed IDNA label: idna's own error, not a crash
    ]:
        with pytest.raises(ValueError, match="server address") as refused:
            normalise_base_url(bad)
        assert "pw" not in str(refused.value)
    with pytest.raises(ValueError, match="timeout"):
        ApiClient("https://tray.example.com", timeout=0)


def _jwt(claims: str) -> str:
    """An unsigned-looking JWT carrying ``claims`` (the client never checks signatures)."""
    segment = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{segment}.c2ln"


def test_jwt_claims_are_read_without_trusting_them() -> None:
    assert jwt_expiry(_jwt('{"exp": 1900000000, "iat": 1899999400}')) == 1900000000.0
    assert jwt_lifetime(_jwt('{"exp": 1900000000, "iat": 1899999400}')) == 600.0
    for garbage in [
        "",
        "a.b",
        "a.!!!.c",
        _jwt("[1]"),
        _jwt('{"exp": "soon"}'),
        _jwt('{"exp": true}'),
    ]:
        assert jwt_expiry(garbage) == 0.0
        assert jwt_lifetime(garbage) is None
    tokens = parse_token_pair({"access": "a", "refresh": "r"})
    assert "a" not in repr(tokens).replace("access_expires_at", "")  # repr hides the tokens


def _page(**changes: Any) -> dict[str, Any]:
    page: dict[str, Any] = {
        "results": [{"id": 1, "seq": 1, "title": "x"}],
        "next_after_seq": None,
        "next_before_seq": None,
        "latest_seq": 1,
        "unread_count": 1,
    }
    page.update(changes)
    return page


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        _page(results=None),
        _page(results=[{"id": 1}]),
        _page(results=[{"id": "1", "seq": 1}]),
        _page(results=[7]),
        _page(latest_seq=True),
        _page(unread_count=-1),
        _page(next_after_seq="5"),
        {key: value for key, value in _page().items() if key != "next_before_seq"},
    ],
)
def test_a_wrong_inbox_page_is_not_our_server(body: Any) -> None:
    with pytest.raises(NotOurServer):
        parse_inbox_page(body)


def test_the_other_parsers_refuse_wrong_shapes() -> None:
    assert parse_inbox_page(_page()).results[0].title == "x"
    assert parse_inbox_change({"changed": [1], "not_found": [], "unread_count": 0}).changed == [1]
    assert parse_unread_state({"unread_count": 2, "latest_seq": 9}) == (2, 9)
    for bad_change in [
        {"changed": [1], "not_found": [], "unread_count": None},
        {"changed": [True]},
    ]:
        with pytest.raises(NotOurServer):
            parse_inbox_change(bad_change)
    for bad_pair in [{}, {"access": "", "refresh": "r"}, {"access": 1, "refresh": "r"}]:
        with pytest.raises(NotOurServer):
            parse_token_pair(bad_pair)
    with pytest.raises(NotOurServer):
        parse_unread_state({"unread_count": 1})


# --- attention settings (docs/protocol.md, "Attention") ------------------------------------


async def _project_ids(server: RunningServer) -> dict[str, int]:
    """alice's projects by title (she is in both of the demo's)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        credentials = {"username": "alice", "password": PASSWORD}
        login = await http.post("/api/auth/token/", json=credentials)
        login.raise_for_status()
        access = login.json()["access"]
        answer = await http.get("/api/projects/", headers={"Authorization": f"Bearer {access}"})
        answer.raise_for_status()
        body = answer.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row["title"]: row["id"] for row in rows}


@pytest.mark.asyncio
async def test_attention_is_read_and_changed_on_the_real_server(demo_server: RunningServer) -> None:
    async with ApiClient(demo_server.url) as alice, ApiClient(demo_server.url) as bob:
        await alice.login("alice", PASSWORD)
        await bob.login("bob", PASSWORD)
        assert await alice.attention() == Attention()  # never changed: the defaults

        changed = await alice.change_attention(
            {"min_priority": "high", "muted_event_types": ["ci", "task_created"]}
        )
        assert changed == Attention(
            version=1, min_priority="high", muted_event_types=frozenset({"ci", "task_created"})
        )
        assert await alice.attention() == changed
        # A change that changes nothing keeps the version.
        assert await alice.change_attention({"min_priority": "high"}) == changed

        until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        dnd = await alice.change_attention(dnd_change(until))
        assert (dnd.version, dnd.dnd, dnd.dnd_until) == (2, True, until)
        assert dnd.min_priority == "high"  # keys left out stay
        night = await alice.change_attention(
            {**dnd_change(None, on=False), **quiet_hours_change(
                (dt_time(22, 0), dt_time(7, 0)), time_zone="Pacific/Auckland"
            )}
        )  # fmt: skip
        assert (night.version, night.dnd, night.dnd_until) == (3, False, None)
        assert night.quiet_hours == (dt_time(22, 0), dt_time(7, 0))
        assert night.time_zone == "Pacific/Auckland"

        website = (await _project_ids(demo_server))["Website Redesign"]
        muted = await alice.change_attention({"muted_projects": [website]})
        assert muted.muted_projects == frozenset({website})
        assert muted.version == 4
        assert await alice.attention() == muted

        # One state per user: bob's are his own.
        assert await bob.attention() == Attention()


@pytest.mark.asyncio
async def test_a_bad_attention_change_is_refused_in_the_servers_words(
    demo_server: RunningServer,
) -> None:
    website = (await _project_ids(demo_server))["Website Redesign"]
    async with ApiClient(demo_server.url) as bob:
        await bob.login("bob", PASSWORD)
        before = await bob.change_attention({"min_priority": "normal"})

        # bob is not in alice's and carol's Website Redesign.
        with pytest.raises(RequestRejected) as stranger:
            await bob.change_attention({"muted_projects": [website]})
        assert stranger.value.status == 400
        assert stranger.value.code == "invalid_attention"
        assert "not among your projects" in stranger.value.user_message
        assert "muted_projects" in stranger.value.detail["fields"]
        assert_safe(stranger.value, [PASSWORD])

        with pytest.raises(RequestRejected) as unknown:
            await bob.change_attention({"min_priority": "critical", "volume": 11})
        assert unknown.value.code == "invalid_attention"
        assert set(unknown.value.detail["fields"]) == {"min_priority", "volume"}

        past = datetime.now(UTC) - timedelta(minutes=5)
        with pytest.raises(RequestRejected) as passed:
            await bob.change_attention(dnd_change(past))
        assert "dnd" in passed.value.detail["fields"]

        assert await bob.attention() == before  # nothing of the refused changes was kept


@pytest.mark.asyncio
async def test_attention_calls_send_the_documented_requests_and_check_the_answer() -> None:
    good = json.dumps({"version": 9, "dnd": {"until": None}, "min_priority": "urgent"})
    bad = json.dumps({"version": 9, "min_priority": "SECRET-PRIORITY"})

    def answer(request: ScriptedRequest) -> bytes:
        if request.target == REFRESH_PATH:
            return _token_pair_answer(request)
        body = good if request.method == "PATCH" else bad
        return http_response(200, body, content_type="application/json")

    async with ScriptedServer(answer) as server:
        async with ApiClient(server.url) as client:
            client.restore("r.s.t")
            changed = await client.change_attention({"dnd": {"until": None}})
            assert changed == Attention(version=9, dnd=True, min_priority="urgent")
            with pytest.raises(NotOurServer) as unreadable:
                await client.attention()
        patch, get = (r for r in server.requests if r.target != REFRESH_PATH)
    assert (patch.method, patch.target) == ("PATCH", "/api/attention/")
    assert json.loads(patch.body) == {"dnd": {"until": None}}
    assert patch.headers["authorization"] == "Bearer a.b.c"
    assert (get.method, get.target) == ("GET", "/api/attention/")
    assert "SECRET" not in str(unreadable.value)
    assert_safe(unreadable.value)


# --- the refresh token lent to the socket (lease_refresh) ------------------------------


def _never_called(request: ScriptedRequest) -> bytes:
    raise AssertionError(f"no REST request was expected, got {request.method} {request.target}")


@pytest.mark.asyncio
async def test_a_lent_refresh_token_is_the_one_refresh_in_flight() -> None:
    """While the socket holds the refresh token, a call that needs a fresh token waits
    for the socket's outcome and makes no REST refresh of its own (a second spend of
    the same token would end the session)."""
    log = TokenLog()
    fresh = _jwt(json.dumps({"iat": int(time.time()), "exp": int(time.time()) + 600}))
    async with ScriptedServer(_never_called) as server:
        async with ApiClient(server.url, on_tokens_changed=log) as client:
            client.restore("stored.refresh.token")
            lease = client.lease_refresh()
            assert lease is not None
            assert lease.token == "stored.refresh.token"
            assert "stored" not in repr(lease)
            assert client.lease_refresh() is None  # one lease at a time
            waiting = asyncio.create_task(client.access_token())
            await asyncio.sleep(0)
            assert not waiting.done()
            tokens = lease.granted(protocol.TokenGrant(access=fresh, refresh="next.refresh"))
            assert tokens is not None
            assert tokens.refresh == "next.refresh"
            assert await waiting == fresh
            assert client.tokens == tokens
            assert client.lease_refresh() is None  # the new access token is good for 600 s
            # Asking for more than half its life is capped there: no lease per call.
            assert client.lease_refresh(min_validity=3600) is None
        assert server.requests == []
    assert log.calls == [tokens]


@pytest.mark.asyncio
async def test_a_refused_lease_ends_the_session_and_a_failed_one_keeps_the_tokens() -> None:
    log = TokenLog()
    async with ScriptedServer(_never_called) as server:
        async with ApiClient(server.url, on_tokens_changed=log) as client:
            client.restore("stored.refresh.token")
            lease = client.lease_refresh()
            assert lease is not None
            waiting = asyncio.create_task(client.refresh())
            await asyncio.sleep(0)
            lease.failed(ServerUnreachable("the socket closed before hello"))
            with pytest.raises(ServerUnreachable):
                await waiting
            assert client.tokens is not None
            assert client.tokens.refresh == "stored.refresh.token"
            assert log.calls == []

            again = client.lease_refresh()
            assert again is not None
            assert again.token == "stored.refresh.token"
            asking = asyncio.create_task(client.access_token())
            await asyncio.sleep(0)
            again.refused(LoginRequired("the server refused the refresh token"))
            again.granted(protocol.TokenGrant(access="a.b.c", refresh="late"))  # settled: no-op
            with pytest.raises(LoginRequired):
                await asking
            assert client.tokens is None
            assert client.lease_refresh() is None
        assert server.requests == []
    assert log.calls == [None]


@pytest.mark.asyncio
async def test_a_pair_granted_after_a_logout_does_not_bring_the_session_back() -> None:
    answer = http_response(204, "", content_type="application/json")
    async with ScriptedServer(lambda _request: answer) as server, ApiClient(server.url) as client:
        client.restore("stored.refresh.token")
        lease = client.lease_refresh()
        assert lease is not None
        await client.logout()
        assert lease.granted(protocol.TokenGrant(access="a.b.c", refresh="r.s.t")) is None
        assert client.tokens is None


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"(xn--)?[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
    port=st.none() | st.integers(min_value=0, max_value=70000),
    path=st.lists(st.from_regex(r"[A-Za-z0-9._~%-]{0,8}", fullmatch=True), max_size=4),
    slash=st.booleans(),
    upper=st.booleans(),
)
def test_an_address_in_normal_form_is_answered_as_httpx_would(
    scheme: str, host: str, port: int | None, path: list[str], slash: bool, upper: bool
) -> None:
    """The settings' address is checked without httpx when it is already in the form
    httpx writes it; every address gives what httpx's own reading gives."""
    text = f"{scheme.upper() if upper else scheme}://{host}"
    text += f":{port}" if port is not None else ""
    text += "".join(f"/{segment}" for segment in path) + ("/" if slash else "")
    try:
        url = httpx.URL(text)
        expected = str(url.copy_with(query=None, fragment=None)).rstrip("/") if url.host else None
    except (httpx.InvalidURL, ValueError, IndexError):  # idna's own errors pass through
        expected = None
    try:
        got: str | None = normalise_base_url(text)
    except ValueError:
        got = None
    assert got == expected
