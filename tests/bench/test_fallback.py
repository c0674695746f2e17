"""bench/fallback.py's pure parts (B10): the order the transports take turns in, the
frames it times, the stream client's reading of a chunked event stream, and the rows."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.fallback import (
    PROFILES,
    Session,
    StreamClient,
    Tracker,
    cpu_per_delivery_us,
    frame_title,
    idle_cpu_per_1k,
    keepalive_interval,
    memory_per_client,
    profile_for,
    ratios,
    session_order,
    summarize,
)


def test_the_first_transport_alternates_between_rounds() -> None:
    assert session_order(3) == [
        (0, "socket"),
        (0, "stream"),
        (1, "stream"),
        (1, "socket"),
        (2, "socket"),
        (2, "stream"),
    ]


def test_a_smoke_profile_is_tiny() -> None:
    smoke = profile_for("full", smoke=True)
    assert smoke.clients < PROFILES["quick"].clients < PROFILES["full"].clients
    assert smoke.rounds == 1


def notification(title: str, seq: int = 3) -> str:
    payload = {"id": 9, "seq": seq, "title": title}
    return json.dumps({"type": "notification_created", "payload": payload}, separators=(",", ":"))


def test_only_notification_frames_have_a_title() -> None:
    assert frame_title(notification("hi")) == "hi"
    assert frame_title(notification("hi").encode()) == "hi"
    assert frame_title('{"type":"unread_count","payload":{"count":1}}') is None
    assert frame_title(b'{"type":"hello","payload":{"title":"x"}}') is None


def test_the_tracker_counts_one_frame_per_client_and_title() -> None:
    async def scenario() -> tuple[int, int, list[float]]:
        tracker = Tracker()
        tracker.expect(["a", "b"], 2)
        for title, at in (("a", 1.0), ("b", 2.0), ("other", 3.0), ("a", 4.0)):
            tracker.seen(title, at)
        missing = await tracker.wait(0.01)
        tracker.seen("b", 5.0)
        return missing, await tracker.wait(0.01), tracker.times["a"]

    assert asyncio.run(scenario()) == (1, 0, [1.0, 4.0])


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        pass


def chunk(text: str) -> bytes:
    body = text.encode()
    return b"%x\r\n%s\r\n" % (len(body), body)


def test_the_stream_client_reads_a_chunked_event_stream() -> None:
    async def scenario() -> tuple[StreamClient, Tracker, bytes]:
        tracker = Tracker()
        tracker.expect(["one", "two"], 1)
        client = StreamClient(b"GET /api/stream/ HTTP/1.1\r\n\r\n", tracker)
        transport = FakeTransport()
        client.connection_made(transport)  # type: ignore[arg-type]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        client.data_received(head + b"transfer-encoding: chunked\r\n\r\n")
        client.data_received(chunk("retry: 3000\n\n"))
        client.data_received(chunk('data: {"type":"hello","payload":{}}\n\n'))
        # An event split across chunks, a heartbeat, and two events in one chunk.
        first = f"id: 3\ndata: {notification('one')}\n\n"
        client.data_received(chunk(first[:20]))
        client.data_received(chunk(first[20:] + ": ping\n\n"))
        closed = '{"type":"closed","payload":{"code":1012}}'
        client.data_received(chunk(f"data: {notification('two', 4)}\n\ndata: {closed}\n\n"))
        await asyncio.wait_for(client.hello, 1)
        return client, tracker, transport.written

    client, tracker, written = asyncio.run(scenario())
    assert written.startswith(b"GET /api/stream/")
    assert client.heartbeats == client.keepalives() == 1
    assert [len(tracker.times[t]) for t in ("one", "two")] == [1, 1]
    assert client.closed_frame is not None
    assert '"code":1012' in client.closed_frame


def test_a_refused_stream_fails_its_open() -> None:
    async def scenario() -> BaseException | None:
        client = StreamClient(b"", Tracker())
        client.connection_made(FakeTransport())  # type: ignore[arg-type]
        body = b'{"error":{"code":"token_invalid"}}'
        client.data_received(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await asyncio.wait([client.hello], timeout=1)
        return client.hello.exception()

    error = asyncio.run(scenario())
    assert error is not None
    assert "401" in str(error)
    assert "token_invalid" in str(error)


def session(transport: str, **figures: float) -> Session:
    values = {
        "rss_before_kib": 1000,
        "rss_idle_kib": 1000 + 100 * 20,  # 20 KiB per client
        "empty_window": 5.0,
        "cpu_empty_seconds": 0.04,  # 1% of a core, the mean of before and after
        "cpu_empty_after_seconds": 0.06,
        "cpu_idle_seconds": 0.3,  # 3% over 10 s: 2% above empty
        "keepalives_idle": 100,  # one per client over the 10 s window
        "cpu_connect_seconds": 0.1,
        "cpu_empty_burst_seconds": 1.0,
        "cpu_empty_burst_after_seconds": 1.2,
        "cpu_burst_seconds": 1.6,  # 0.5 s over 10 x 100 deliveries
        **figures,
    }
    return Session(
        transport=transport,
        round=0,
        clients=100,
        idle_window=10.0,
        burst=10,
        latencies_ms=[1.0, 2.0, 3.0, 4.0],
        **values,  # type: ignore[arg-type]
    )


def test_per_client_figures() -> None:
    s = session("stream")
    assert memory_per_client(s) == 20
    assert idle_cpu_per_1k(s) == pytest.approx(20.0)  # 2% of a core per 100 clients
    assert cpu_per_delivery_us(s) == pytest.approx(500.0)
    assert keepalive_interval(s) == 10.0
    assert keepalive_interval(session("stream", keepalives_idle=0)) is None


def test_rows_put_the_stream_beside_the_socket() -> None:
    profile = PROFILES["quick"]
    sessions = [session("socket"), session("stream", cpu_connect_seconds=0.2)]
    rows = summarize(sessions, profile, 15.0)
    assert {row["id"] for row in rows} == {"B10"}
    assert len(rows) == 7
    assert all(set(row["peers"]) == {"socket"} and row["met"] for row in rows)
    connect = next(r for r in rows if "per client connect" in r["metric"])
    assert (connect["ours"], connect["peers"]["socket"]) == (2000.0, 1000.0)
    assert [r["stream/socket"] for r in ratios(rows)][-2:] == [2.0, 1.0]
    # Something missing on either transport is no pass, nor is a transport not measured.
    assert not any(
        r["met"] for r in summarize([*sessions[:1], session("stream", missing=1)], profile, 15.0)
    )
    assert not any(r["met"] for r in summarize(sessions[:1], profile, 15.0))
