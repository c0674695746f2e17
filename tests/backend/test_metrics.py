"""GET /metrics (backend/metrics_endpoint.py) and the counts behind it (backend/metrics.py).

The endpoint's tests run the real server in a subprocess (tests/fixtures/services.py)
and move its numbers with real clients: WebSockets, an event stream, publishes over
HTTP. promtool (Debian's ``prometheus`` package) checks the exposition when it is
installed. The pure parts (the token check, the frame type, the helpers' counts, the
production check) are tested in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from backend import metrics
from backend.config import production
from backend.metrics_endpoint import address_allowed, bearer_matches
from backend.notifications import events, protocol
from backend.notifications.events import UserDisabledEvent
from tests.e2e.conftest import WAIT, Socket, login
from tests.fixtures.services import RunningServer, ServerFactory

TOKEN = "metrics-test-token-0123456789-abcdefghij"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"  Bearer   {TOKEN}  ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
    ],
)
def test_bearer_matches_only_the_exact_token(header: str | None, expected: bool) -> None:
    assert bearer_matches(header, TOKEN) is expected


def test_no_token_matches_nothing() -> None:
    assert not bearer_matches("Bearer ", "")
    assert not bearer_matches("Bearer x", "")


@pytest.mark.parametrize(
    ("address", "allow", "expected"),
    [
        ("10.1.2.3", "", True),  # no list: any address (the token still decides)
        ("unknown", "", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("127.0.0.1", "10.0.0.0/8, 127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("::1", "127.0.0.1,::1", True),
        ("2001:db8::5", "2001:db8::/32", True),
        ("2001:db9::5", "2001:db8::/32", False),
        ("::ffff:10.1.2.3", "10.0.0.0/8", True),  # IPv4 on a dual-stack socket
        ("::ffff:11.1.2.3", "10.0.0.0/8", False),
        ("unknown", "10.0.0.0/8", False),  # a unix socket with no proxy header
        ("", "10.0.0.0/8", False),
    ],
)
def test_address_allowed_matches_ipv4_and_ipv6_networks(
    address: str, allow: str, expected: bool
) -> None:
    networks = production.metrics_allow_networks(allow)
    assert address_allowed(address, networks) is expected


def test_frame_type_reads_every_kind_of_server_frame() -> None:
    assert metrics.frame_type(protocol.encode("hello", {"a": 1})) == "hello"
    assert metrics.frame_type(protocol.unread_count_frame(3)) == "unread_count"
    assert metrics.frame_type(protocol.encode_error("x", "y", ref=1)) == "error"
    prefix = protocol.notification_frame_prefix({"title": "t"})
    frame = protocol.notification_frame(prefix, inbox_id=1, seq=2)
    assert metrics.frame_type(frame) == "notification_created"
    assert metrics.frame_type("not json") == "unknown"
    assert metrics.frame_type('{"type":"') == "unknown"


@pytest.fixture
def counting() -> Iterator[None]:
    was = metrics.enabled()
    metrics.set_enabled(True)
    try:
        yield
    finally:
        metrics.set_enabled(was)


def _local_samples() -> Samples:
    """This process's own ``tray_`` samples (the process collector's CPU and memory
    move by themselves between two reads)."""
    from prometheus_client import generate_latest

    samples = _samples(generate_latest(metrics.REGISTRY).decode())
    return {key: value for key, value in samples.items() if key[0].startswith("tray_")}


def _delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.usefixtures("counting")
def test_helpers_count_what_the_exposition_shows() -> None:
    before = _local_samples()
    metrics.connection_opened("socket")
    metrics.connection_opened("stream")
    metrics.connection_opened("socket")
    metrics.connection_closed("socket")
    metrics.frame_sent(protocol.encode("resync_required", {}))
    metrics.frames_sent([protocol.encode("caught_up", {}), protocol.unread_count_frame(1)])
    metrics.notification_sent(True)
    metrics.frame_received("ping")
    metrics.notifications_delivered(5)
    metrics.server_closed(protocol.CLOSE_TRY_AGAIN)
    metrics.server_closed(protocol.CLOSE_POLICY)
    metrics.handshake("socket", metrics.TOKEN_INVALID)
    metrics.publish_answered("single", 201, 0.002)
    metrics.publish_answered("batch", 200, 0.02)
    metrics.statement_took("socket_opening", 0.001)
    metrics.replay_finished(7)
    metrics.doorbell_heard(0.0)  # long ago: a large lag, counted in +Inf
    after = _local_samples()

    def delta(name: str, **labels: str) -> float:
        return _delta(after, before, name, **labels)

    assert delta("tray_open_connections", transport="websocket") == 1
    assert delta("tray_open_connections", transport="sse") == 1
    assert delta("tray_frames_sent_total", type="resync_required") == 1
    assert delta("tray_frames_sent_total", type="caught_up") == 1
    assert delta("tray_frames_sent_total", type="unread_count") == 2
    assert delta("tray_frames_sent_total", type="notification_created") == 1
    assert delta("tray_resync_required_total") == 1
    assert delta("tray_frames_received_total", type="ping") == 1
    assert delta("tray_deliveries_total") == 5
    assert delta("tray_server_closes_total", reason="send_queue_full") == 1
    assert delta("tray_server_closes_total", reason="rate_limited") == 1
    assert delta("tray_handshakes_total", transport="websocket", outcome="token_invalid") == 1
    assert delta("tray_publish_requests_total", kind="single", status="201") == 1
    assert delta("tray_publish_requests_total", kind="batch", status="200") == 1
    assert delta("tray_publish_duration_seconds_count", kind="single") == 1
    assert delta("tray_db_statement_duration_seconds_count", statement="socket_opening") == 1
    assert delta("tray_replay_notifications_sum") == 7
    assert delta("tray_doorbell_lag_seconds_count") == 1
    metrics.connection_closed("socket")
    metrics.connection_closed("stream")


def test_nothing_is_counted_while_off() -> None:
    was = metrics.enabled()
    metrics.set_enabled(False)
    try:
        before = _local_samples()
        metrics.frame_sent(protocol.encode("hello", {}))
        metrics.notifications_delivered(3)
        metrics.publish_answered("single", 201, 0.001)
        timed = metrics.timed("replay_read", lambda x: x + 1)
        assert timed(1) == 2
        assert _local_samples() == before
    finally:
        metrics.set_enabled(was)


@pytest.mark.usefixtures("counting")
def test_timed_observes_even_when_the_call_fails() -> None:
    def fails() -> None:
        raise ValueError("no")

    before = _local_samples()
    with pytest.raises(ValueError, match="no"):
        metrics.timed("replay_read", fails)()
    after = _local_samples()
    assert _delta(
        after, before, "tray_db_statement_duration_seconds_count", statement="replay_read"
    )
    assert metrics.timed("replay_read", fails).__name__ == "fails"


def test_a_doorbell_carries_when_it_was_rung() -> None:
    event: UserDisabledEvent = {"kind": "user_disabled", "user_id": 7}
    raw = events.encode(event, "ours", rung_at=1234.5)
    assert events.decode_timed(raw, "ours") == (event, 1234.5)
    assert events.decode(raw, "ours") == event
    # An older server's doorbell, or a stamp that is no number: no lag to tell.
    assert events.decode_timed(events.encode(event, "ours"), "ours") == (event, None)
    odd = json.dumps({**event, "deployment": "ours", events.RUNG_AT: True})
    assert events.decode_timed(odd, "ours") == (event, None)


def test_production_wants_a_long_metrics_token_or_none() -> None:
    assert production.metrics_token_problem(None) is None
    assert production.metrics_token_problem("") is None
    assert production.metrics_token_problem(TOKEN) is None
    problem = production.metrics_token_problem("short")
    assert problem is not None
    assert "TRAY_METRICS_TOKEN" in problem
    assert production.metrics_token_problem("a" * 40) is not None  # too plain


# --- the endpoint, on a real server ------------------------------------------------------


def _samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _scrape(server: RunningServer, token: str | None = TOKEN) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=WAIT)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _eventually(server: RunningServer, check: Any) -> Samples:
    """Scrape until ``check(samples)`` holds (the counts of work the server finishes
    after its client saw the answer, such as a close); the last scrape."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        response = await asyncio.to_thread(_scrape, server)
        assert response.status_code == 200, response.text
        samples = _samples(response.text)
        if check(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.05)


def test_metrics_are_off_without_a_token(demo_server: RunningServer) -> None:
    response = _scrape(demo_server)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.fixture
def metrics_server(server_factory: ServerFactory) -> RunningServer:
    return server_factory(demo=True, env={"TRAY_METRICS_TOKEN": TOKEN})


def test_a_scrape_without_the_token_is_refused(metrics_server: RunningServer) -> None:
    for token in (None, "wrong", TOKEN + "x"):
        response = _scrape(metrics_server, token)
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "tray_" not in response.text
    post = httpx.post(
        f"{metrics_server.url}/metrics",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=WAIT,
    )
    assert post.status_code in (403, 405)  # CSRF refuses it before the view's 405
    assert "tray_" not in post.text


def test_the_allow_list_refuses_other_addresses_and_trusts_only_the_proxy(
    server_factory: ServerFactory,
) -> None:
    """TRAY_METRICS_ALLOW on top of the token, with the client address uvicorn resolved:
    ``X-Forwarded-For`` counts from a trusted proxy (127.0.0.1 by default) only."""
    env = {"TRAY_METRICS_TOKEN": TOKEN, "TRAY_METRICS_ALLOW": "10.0.0.0/8, 2001:db8::/32"}
    server = server_factory(env=env)

    def scrape(forwarded: str | None, token: str | None = TOKEN) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        return httpx.get(f"{server.url}/metrics", headers=headers, timeout=WAIT)

    for forwarded in (None, "192.0.2.7"):
        refused = scrape(forwarded)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "address_not_allowed"
        assert "TRAY_METRICS_ALLOW" in error["message"]
        assert (forwarded or "127.0.0.1") in error["message"]
        assert "tray_" not in refused.text
        # Refused for its address whatever it sends: no token is compared.
        assert scrape(forwarded, token=None).status_code == 403
    for forwarded in ("10.9.8.7", "2001:db8::5"):
        allowed = scrape(forwarded)
        assert allowed.status_code == 200, allowed.text
        assert "tray_open_connections" in allowed.text
        assert scrape(forwarded, token="wrong").status_code == 401

    # A proxy that is not trusted cannot vouch for an address.
    untrusted = server_factory(env={**env, "TRAY_FORWARDED_ALLOW_IPS": "192.0.2.1"})
    answer = httpx.get(
        f"{untrusted.url}/metrics",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "10.9.8.7"},
        timeout=WAIT,
    )
    assert answer.status_code == 403, answer.text


def test_a_bad_allow_list_stops_the_server_naming_the_entry(
    server_factory: ServerFactory,
) -> None:
    env = {"TRAY_METRICS_TOKEN": TOKEN, "TRAY_METRICS_ALLOW": "10.0.0.0/8,scraper.internal"}
    with pytest.raises(RuntimeError) as refused:
        server_factory(env=env, timeout=30)
    message = str(refused.value)
    assert "TRAY_METRICS_ALLOW must list the IP addresses or networks" in message
    assert "'scraper.internal'" in message


def test_the_exposition_is_prometheus_text(metrics_server: RunningServer) -> None:
    response = _scrape(metrics_server)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    assert _value(samples, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", frozenset()) in samples
    for name in (
        "tray_open_connections",
        "tray_online_users",
        "tray_deliveries_total",
        "tray_resync_required_total",
        "tray_publish_duration_seconds",
        "tray_db_statement_duration_seconds",
        "tray_doorbell_lag_seconds",
        "tray_replay_notifications",
    ):
        assert f"# TYPE {name} " in response.text, name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.asyncio
async def test_the_numbers_move_with_what_clients_do(metrics_server: RunningServer) -> None:
    server = metrics_server
    alice = await asyncio.to_thread(login, server, "alice")
    admin = await asyncio.to_thread(login, server, "admin")
    before = _samples((await asyncio.to_thread(_scrape, server)).text)
    assert _value(before, "tray_open_connections", transport="websocket") == 0
    assert _value(before, "tray_open_connections", transport="sse") == 0

    sockets = [await Socket.open(server, alice) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for socket in sockets:
            stack.push_async_callback(socket.close)
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=WAIT))
        stream = await stack.enter_async_context(
            client.stream(
                "GET", f"{server.url}/api/stream/", headers={"Authorization": f"Bearer {alice}"}
            )
        )
        assert stream.status_code == 200
        chunks = stream.aiter_bytes()
        seen = b""
        while b'"type":"hello"' not in seen:
            seen += await asyncio.wait_for(anext(chunks), WAIT)

        opened = _samples((await asyncio.to_thread(_scrape, server)).text)
        assert _value(opened, "tray_open_connections", transport="websocket") == 2
        assert _value(opened, "tray_open_connections", transport="sse") == 1
        assert _value(opened, "tray_online_users") == 1
        assert (
            _delta(
                opened, before, "tray_handshakes_total", transport="websocket", outcome="accepted"
            )
            == 2
        )
        assert _delta(opened, before, "tray_handshakes_total", transport="sse", outcome="accepted")
        assert _delta(opened, before, "tray_frames_sent_total", type="hello") == 3

        for n in range(3):
            answer = await client.post(
                f"{server.url}/api/notifications/",
                json={"audience": {"usernames": ["alice"]}, "title": f"metrics {n}"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert answer.status_code == 201, answer.text
        for socket in sockets:
            for n in range(3):
                await socket.receive_until("notification_created", title=f"metrics {n}")
        await sockets[0].send("ping", {"n": 1})
        await sockets[0].receive_until("pong")

        published = await _eventually(
            server, lambda s: _delta(s, before, "tray_deliveries_total") >= 9
        )
        assert _delta(published, before, "tray_deliveries_total") == 9  # 3 x 3 connections
        statuses = {
            dict(labels)["status"]: value - before.get((name, labels), 0.0)
            for (name, labels), value in published.items()
            if name == "tray_publish_requests_total" and dict(labels)["kind"] == "single"
        }
        assert statuses == {"201": 3}
        assert _delta(published, before, "tray_publish_duration_seconds_count", kind="single") == 3
        assert _delta(published, before, "tray_frames_received_total", type="ping") == 1
        assert _delta(published, before, "tray_frames_sent_total", type="pong") == 1
        assert _delta(published, before, "tray_frames_sent_total", type="notification_created") >= 9
        assert (
            _delta(
                published,
                before,
                "tray_db_statement_duration_seconds_count",
                statement="socket_opening",
            )
            == 3
        )

    bad = await websockets.connect(
        server.ws_url, additional_headers={"Authorization": "Bearer not-a-token"}, open_timeout=WAIT
    )
    async with bad:
        refused = json.loads(await asyncio.wait_for(bad.recv(), WAIT))
        assert refused["type"] == "error"
        await asyncio.wait_for(bad.wait_closed(), WAIT)
    assert bad.close_code == protocol.CLOSE_TOKEN_INVALID

    def settled(samples: Samples) -> bool:
        return (
            _value(samples, "tray_open_connections", transport="websocket") == 0
            and _value(samples, "tray_open_connections", transport="sse") == 0
            and _value(samples, "tray_online_users") == 0
        )

    after = await _eventually(server, settled)
    assert settled(after)
    assert (
        _delta(
            after, before, "tray_handshakes_total", transport="websocket", outcome="token_invalid"
        )
        == 1
    )


@pytest.mark.redis
@pytest.mark.asyncio
async def test_each_process_counts_its_own_and_hears_the_doorbell_late_by_little(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    """Scale mode: two processes on one Redis, each scraped on its own port."""
    data = tmp_path / "shared"
    env = {"TRAY_METRICS_TOKEN": TOKEN}
    a = server_factory(demo=True, data_dir=data, redis_url=redis_url, env=env)
    b = server_factory(data_dir=data, redis_url=redis_url, env=env)
    before_a = _samples((await asyncio.to_thread(_scrape, a)).text)
    before_b = _samples((await asyncio.to_thread(_scrape, b)).text)
    on_b = await Socket.open(b, await asyncio.to_thread(login, b, "alice"))
    try:
        admin = await asyncio.to_thread(login, a, "admin")
        async with httpx.AsyncClient(timeout=WAIT) as client:
            answer = await client.post(
                f"{a.url}/api/notifications/",
                json={"audience": {"usernames": ["alice"]}, "title": "across"},
                headers={"Authorization": f"Bearer {admin}"},
            )
        assert answer.status_code == 201, answer.text
        await on_b.receive_until("notification_created", title="across")
        after_a = _samples((await asyncio.to_thread(_scrape, a)).text)
        after_b = await _eventually(b, lambda s: _delta(s, before_b, "tray_deliveries_total") >= 1)
    finally:
        await on_b.close()
    assert _value(after_b, "tray_open_connections", transport="websocket") == 1
    assert _value(after_a, "tray_open_connections", transport="websocket") == 0
    assert _delta(after_b, before_b, "tray_deliveries_total") == 1
    assert _delta(after_a, before_a, "tray_deliveries_total") == 0
    assert (
        _delta(after_a, before_a, "tray_publish_requests_total", kind="single", status="201") == 1
    )
    assert (
        _delta(after_b, before_b, "tray_publish_requests_total", kind="single", status="201") == 0
    )
    heard = _delta(after_b, before_b, "tray_doorbell_lag_seconds_count")
    assert heard >= 1
    lag = _delta(after_b, before_b, "tray_doorbell_lag_seconds_sum") / heard
    assert 0 <= lag < 1.0
