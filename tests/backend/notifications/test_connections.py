"""Who is connected now (backend/notifications/connections.py): the User-Agent's parsing
against hostile input, both stores (the Redis one against the session's real
redis-server, next to the real RedisPresence), real sockets through the ASGI app, the
staff-only ``GET /api/connections/`` and the admin's "Connected now" page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.test import Client as DjangoClient
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from backend.notifications import connections
from backend.notifications.connections import (
    USER_AGENT_MAX,
    Arrival,
    ConnectionsUnavailable,
    MemoryConnections,
    RedisConnections,
    browser_version,
    classify,
    decode_info,
    sanitize_user_agent,
)
from backend.notifications.doorbell import redis_fault
from backend.notifications.hub import Hub
from backend.notifications.presence import RedisPresence
from backend.users.models import User
from backend.users.services import session_start

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
EDGE = f"{CHROME} Edg/131.0.2903.70"


# -- the pure parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "web", "kind", "version"),
    [
        ("tray-notifier/9.9.9", False, "desktop", "9.9.9"),
        ("tray-notifier/0.4.0rc1+local", False, "desktop", "0.4.0rc1+local"),
        ("tray-notifier/1.2 (headless)", False, "desktop", "1.2"),
        # The app's UA wins over a cookie (it never sends one, but should it).
        ("tray-notifier/1.2", True, "desktop", "1.2"),
        (CHROME, True, "web", "Chrome 131"),
        (FIREFOX, True, "web", "Firefox 128"),
        (SAFARI, True, "web", "Safari 17"),
        (EDGE, True, "web", "Edge 131"),
        (CHROME.replace("Chrome/", "HeadlessChrome/"), True, "web", "Chrome 131"),
        ("curl/8.5.0", True, "web", None),
        ("", True, "web", None),
        (CHROME, False, "other", None),  # a browser on ?token=: not the web companion
        ("python-httpx/0.28.1", False, "other", None),
        ("", False, "other", None),
        ("tray-notifier/", False, "other", None),
        ("tray-notifier/../../etc", False, "other", None),
        ("xtray-notifier/1.0", False, "other", None),
        ("tray-notifier/" + "1" * 41, False, "other", None),
        ("tray-notifier/1.0<script>", False, "other", None),
    ],
)
def test_the_client_is_told_by_its_user_agent_and_cookie(
    user_agent: str, web: bool, kind: str, version: str | None
) -> None:
    client = classify(user_agent, web_session=web)
    assert (client.kind, client.version, client.user_agent) == (kind, version, user_agent)


def test_a_user_agent_is_kept_printable_and_short() -> None:
    assert sanitize_user_agent(None) == ""
    assert sanitize_user_agent(b"") == ""
    assert sanitize_user_agent(b"  tray-notifier/1.0  ") == "tray-notifier/1.0"
    assert sanitize_user_agent(b"a\tb\r\n\x00c\x1b[31m\x7f") == "a b c[31m"
    assert sanitize_user_agent("zero\u200bwidth\u2028line\ud800") == "zerowidth line"
    assert sanitize_user_agent(b"\xff\xfe bad utf-8") == "\ufffd\ufffd bad utf-8"
    huge = sanitize_user_agent(b"A" * 1_000_000)
    assert huge == "A" * USER_AGENT_MAX
    assert len(sanitize_user_agent(b"\x00" * 1_000_000 + b"late")) == 0  # never read


@given(st.binary(max_size=3000))
def test_any_bytes_give_printable_text_and_a_client(raw: bytes) -> None:
    text = sanitize_user_agent(raw)
    assert len(text) <= USER_AGENT_MAX
    assert text.isprintable()
    assert text == text.strip()
    for web in (False, True):
        assert classify(text, web_session=web).kind in ("desktop", "web", "other")


@given(st.text(max_size=3000))
def test_any_text_gives_printable_text_and_a_browser_or_none(raw: str) -> None:
    text = sanitize_user_agent(raw)
    assert len(text) <= USER_AGENT_MAX
    assert text.isprintable()
    version = browser_version(text)
    assert version is None or len(version) < 20


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[1, 2]", b"\xff\xfe", b'"text"', b"null", b"{}"],
)
def test_missing_or_unreadable_info_is_an_unknown_client(raw: bytes | None) -> None:
    connection = decode_info(7, "proc1:3", raw)
    assert connection.user_id == 7
    assert connection.socket_id == "proc1:3"
    assert connection.process == "proc1"
    if raw == b"{}":
        assert connection.client.kind == "other"
    else:
        assert connection.client == connections.UNKNOWN_CLIENT
    assert (connection.transport, connection.connected_at) == (None, None)


@pytest.mark.parametrize("at", ["NaN", "Infinity", "-1", "1e300", "true", '"soon"'])
def test_hostile_stored_info_is_read_safely(at: str) -> None:
    raw = '{"ua":"tray-notifier/1.0\\u0000<b>","web":"yes","t":"carrier pigeon","at":%s,"p":%s}'
    connection = decode_info(7, "p:1", raw % (at, '"' + "x" * 500 + '"'))
    assert connection.connected_at is None
    assert connection.transport is None
    assert connection.client.kind == "other"  # "<b>" is not part of a version
    assert connection.client.user_agent == "tray-notifier/1.0<b>"
    assert connection.process == "x" * 64
    assert connections.iso_utc(connection.connected_at) is None


def test_times_are_iso_8601_in_utc() -> None:
    assert connections.iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert connections.iso_utc(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


# -- the stores --------------------------------------------------------------------


class Socket:
    """A hub socket as far as the stores read one (``events.ClientSocket``'s ids, the
    connection's ``kind`` and ``arrival``)."""

    def __init__(
        self, user_id: int, socket_id: str, *, kind: str = "socket", arrival: Arrival | None
    ) -> None:
        self.user_id, self.socket_id, self.kind, self.arrival = user_id, socket_id, kind, arrival


def arrived(user_agent: str = "tray-notifier/9.9.9", *, web: bool = False) -> Arrival:
    return Arrival(user_agent=user_agent, web_session=web, at=time.time())


class RedisHub:
    """What listing needs of a hub in scale mode: its store, and Redis faults known."""

    def __init__(self, store: connections.ConnectionStore) -> None:
        self.connections = store

    def redis_lost(self, error: Exception) -> bool:
        return redis_fault(error)


@pytest_asyncio.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[tuple[RedisPresence, RedisConnections]]:
    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        yield (
            RedisPresence(client, ttl=30, prefix="test:"),
            RedisConnections(client, prefix="test:", process="procA"),
        )
    finally:
        await client.aclose()


async def opened(presence: RedisPresence, store: RedisConnections, socket: Any) -> None:
    """What the hub does when a socket says hello: presence first, then its info."""
    await presence.socket_opened((socket.user_id, socket.socket_id))
    await store.opened(socket)


@pytest.mark.redis
@pytest.mark.asyncio
async def test_the_redis_store_lists_live_sockets_with_their_info(
    redis_pair: tuple[RedisPresence, RedisConnections],
) -> None:
    presence, store = redis_pair
    desktop: Any = Socket(1, "procA:1", arrival=arrived())
    stream = Socket(2, "procA:2", kind="stream", arrival=arrived(CHROME, web=True))
    for socket in (desktop, stream):
        await opened(presence, store, socket)
    await presence.socket_opened((3, "older:1"))  # a process without this module
    listed = {c.socket_id: c for c in await connections.live_connections(RedisHub(store))}
    assert set(listed) == {"procA:1", "procA:2", "older:1"}
    assert listed["procA:1"].client.kind == "desktop"
    assert listed["procA:1"].client.version == "9.9.9"
    assert listed["procA:1"].transport == "websocket"
    assert listed["procA:1"].process == "procA"
    assert listed["procA:1"].connected_at == desktop.arrival.at
    assert (listed["procA:2"].client.kind, listed["procA:2"].client.version) == (
        "web",
        "Chrome 131",
    )
    assert listed["procA:2"].transport == "http-stream"
    unknown = listed["older:1"]
    assert (unknown.client.kind, unknown.transport, unknown.connected_at) == (
        "unknown",
        None,
        None,
    )
    assert unknown.process == "older"
    only = await connections.live_connections(RedisHub(store), user_id=2)
    assert [c.socket_id for c in only] == ["procA:2"]

    await presence.socket_closed((1, "procA:1"))
    await store.closed(desktop)
    listed = {c.socket_id: c for c in await connections.live_connections(RedisHub(store))}
    assert set(listed) == {"procA:2", "older:1"}


@pytest.mark.redis
@pytest.mark.asyncio
async def test_info_of_sockets_presence_dropped_is_pruned_but_not_of_expired_ones(
    redis_pair: tuple[RedisPresence, RedisConnections],
) -> None:
    presence, store = redis_pair
    redis = presence._redis
    crashed = Socket(5, "dead:1", arrival=arrived())
    stalled = Socket(6, "slow:1", arrival=arrived())
    for socket in (crashed, stalled):
        await opened(presence, store, socket)
    # The crashed process's socket was reaped; the stalled one's only expired.
    await redis.zrem("test:conns", "5|dead:1")
    await redis.zadd("test:conns", {"6|slow:1": time.time() - 1})
    assert await connections.live_connections(RedisHub(store)) == []
    assert await redis.hkeys("test:conninfo") == [b"6|slow:1"]
    # Its process refreshes it (the ZADD XX of presence.refresh): listed, info and all.
    assert await presence.refresh([(6, "slow:1")]) == []
    [back] = await connections.live_connections(RedisHub(store))
    assert (back.socket_id, back.client.version) == ("slow:1", "9.9.9")


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_restarted_empty_gets_the_info_back_with_presence(
    redis_pair: tuple[RedisPresence, RedisConnections],
) -> None:
    presence, store = redis_pair
    sockets: list[Any] = [
        Socket(8, f"procA:{n}", arrival=arrived(f"tray-notifier/1.{n}")) for n in (1, 2)
    ]
    for socket in sockets:
        await opened(presence, store, socket)
    await presence._redis.flushall()
    assert await connections.live_connections(RedisHub(store)) == []
    missing = await presence.refresh([(8, "procA:1"), (8, "procA:2")])
    for user_id, socket_id in missing:  # what hub._reassert_presence does
        await presence.socket_opened((user_id, socket_id))
    handshaking: Any = Socket(9, "procA:3", arrival=None)
    await store.reasserted([*sockets, handshaking])
    listed = await connections.live_connections(RedisHub(store))
    assert sorted(c.client.version or "" for c in listed) == ["1.1", "1.2"]
    assert await presence._redis.hlen("test:conninfo") == 2


@pytest.mark.asyncio
async def test_listing_while_redis_is_unreachable_is_a_clear_error() -> None:
    from tests.fixtures.services import free_port

    client: Any = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1
    )
    try:
        store = RedisConnections(client, prefix="test:", process="p")
        with pytest.raises(ConnectionsUnavailable) as raised:
            await connections.live_connections(RedisHub(store))
        assert (raised.value.status, raised.value.code) == (503, "connections_unavailable")
        assert raised.value.retry_after == 5
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_memory_store_reads_the_sockets_that_said_hello() -> None:
    hello = Socket(1, "p:1", arrival=arrived())
    handshaking = Socket(2, "p:2", arrival=None)
    store = MemoryConnections({1: {hello}, 2: {handshaking}}, "p")  # type: ignore[arg-type]
    [only] = await store.live()
    assert (only.socket_id, only.client.kind, only.process) == ("p:1", "desktop", "p")


# -- real sockets, REST and the admin page ----------------------------------------


def token_of(user: User) -> str:
    return session_start(user=user).access


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_real_sockets_are_listed_over_rest_for_staff_only(
    connect: Callable[..., Any],
) -> None:
    make = sync_to_async(User.objects.create_user)
    alice = await make(username="alice", password="pw", first_name="<b>Alice</b>")
    staff = await make(username="root", password="pw", is_staff=True)
    before = time.time()
    desktop = await connect(alice, headers=[(b"user-agent", b"tray-notifier/9.9.9")])
    await connect(staff, headers=[(b"user-agent", b"curl/8\x00\x1b")])

    def get(user: User | None, query: str = "") -> Any:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")
        return client.get("/api/connections/" + query)

    # In a thread, as the server runs a view: the hub's part runs on this loop.
    answer = await sync_to_async(get)(staff)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["count"], body["users"]) == (2, 2)
    first, second = body["connections"]
    assert first["user"] == {
        "id": alice.pk,
        "username": "alice",
        "first_name": "<b>Alice</b>",
        "last_name": "",
    }
    assert first["client"] == {
        "kind": "desktop",
        "version": "9.9.9",
        "user_agent": "tray-notifier/9.9.9",
    }
    assert first["transport"] == "websocket"
    assert first["process"] == Hub.current().process_id
    since = first["connected_at"]
    assert since.endswith("Z")
    from datetime import datetime

    at = datetime.fromisoformat(since).timestamp()
    assert before - 0.01 <= at <= time.time()
    assert second["client"] == {"kind": "other", "version": None, "user_agent": "curl/8"}
    assert second["connected_at"] >= since

    mine = (await sync_to_async(get)(staff, f"?user={alice.pk}")).json()
    assert [row["user"]["id"] for row in mine["connections"]] == [alice.pk]
    assert (await sync_to_async(get)(staff, "?user=999999")).json()["count"] == 0
    for bad in ("abc", "0", "-1", "1.5", "", "9" * 40):
        refused = await sync_to_async(get)(staff, f"?user={bad}")
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["code"] == "invalid_user"
    forbidden = await sync_to_async(get)(alice)
    assert forbidden.status_code == 403
    assert "staff" in forbidden.json()["error"]["message"]
    assert (await sync_to_async(get)(None)).status_code == 401

    # The admin's page: the same rows, escaped; its index links to it.
    def page(user: User, path: str = "/admin/connected/") -> Any:
        browser = DjangoClient()
        browser.force_login(user)
        return browser.get(path)

    assert (await sync_to_async(page)(alice)).status_code == 302  # to the admin's login
    shown = await sync_to_async(page)(staff)
    assert shown.status_code == 200
    html = shown.content.decode()
    assert "2 connections of 2 users." in html
    assert "desktop 9.9.9" in html
    assert "&lt;b&gt;Alice&lt;/b&gt;" in html
    assert "<b>Alice" not in html
    assert html.count('<tr class="connection">') == 2
    index = (await sync_to_async(page)(staff, "/admin/")).content.decode()
    assert 'href="/admin/connected/"' in index

    await desktop.ws.disconnect()
    after = (await sync_to_async(get)(staff)).json()
    assert after["count"] == 1
    assert after["connections"][0]["user"]["username"] == "root"


@pytest.mark.django_db
def test_the_admin_page_says_so_while_redis_is_away(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = make_user("root", is_staff=True)
    hub = Hub.current()
    unreachable: Any = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    monkeypatch.setattr(hub, "connections", RedisConnections(unreachable, prefix="t:", process="p"))
    monkeypatch.setattr(hub, "redis_lost", redis_fault)
    browser = DjangoClient()
    browser.force_login(staff)
    shown = browser.get("/admin/connected/")
    assert shown.status_code == 503
    assert shown["Retry-After"] == "5"
    assert "cannot reach Redis" in shown.content.decode()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of(staff)}")
    answer = client.get("/api/connections/")
    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert answer.json()["error"]["code"] == "connections_unavailable"
