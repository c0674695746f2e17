"""This server process's Prometheus metrics, and the helpers the hot path calls.

Every metric lives on one ``CollectorRegistry`` of its own (``REGISTRY``), exposed by
``GET /metrics`` (backend/metrics_endpoint.py) in the Prometheus text format. Each
server process counts its own: in scale mode Prometheus scrapes every ``serve``
process on its own port and adds the ``instance`` label itself, so no label here
names a process, and none names a user (low cardinality: transports, outcomes,
frame types, statuses).

Metrics are collected only while ``TRAY_METRICS_TOKEN`` is set (nobody could read
them otherwise); every helper then starts with one flag test and costs nothing else.
The helpers are the only call sites' API: the rest of the backend never imports
prometheus_client.

Two kinds of counting, by what the hot path can afford (docs/deployment.md, "Metrics"):

- Per frame and per connection (the event loop's work, one thread): plain integers,
  turned into counters and gauges when scraped (``_LoopCollector``). A
  prometheus_client counter's ``inc`` takes a lock, ~0.3 us; an integer ~0.06 us,
  and a broadcast to 2,000 sockets counts 2,000 frames or more.
- Per request, per database statement, per doorbell (any thread): prometheus_client's
  thread-safe counters and histograms.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Final, ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

TOKEN_VARIABLE: Final = "TRAY_METRICS_TOKEN"

# What a handshake came to, the only values of tray_handshakes_total's ``outcome``.
ACCEPTED: Final = "accepted"
TOKEN_INVALID: Final = "token_invalid"  # closed with 4001 (HTTP 401 on the stream)
ACCOUNT_DISABLED: Final = "account_disabled"  # 4003 (HTTP 403 on the stream)
ORIGIN_REFUSED: Final = "origin_refused"  # host or origin not allowed (HTTP 403)
OTHER: Final = "other"
OUTCOMES: Final = (ACCEPTED, TOKEN_INVALID, ACCOUNT_DISABLED, ORIGIN_REFUSED, OTHER)

# A connection's kind (``kind`` of backend/notifications/state_io.py) and its transport label.
TRANSPORTS: Final = {"socket": "websocket", "stream": "sse"}

# The closes the server decides on (socket_state.py), by close code.
CLOSE_REASONS: Final = {
    1008: "rate_limited",
    1009: "frame_too_big",
    1011: "server_error",
    1012: "restart",
    1013: "send_queue_full",
    4001: "token_invalid",
    4003: "forbidden",
}

# The database statements timed on the hot path.
STATEMENTS: Final = ("publish_write", "socket_opening", "replay_read")

# Every server frame begins with this, then its type (protocol.encode and the frames
# built without json alike).
_TYPE_AT: Final = len('{"type":"')


def _token_configured() -> bool:
    try:
        from django.conf import settings

        return bool(getattr(settings, TOKEN_VARIABLE, ""))
    except Exception:  # settings not configured (a tool importing the module)
        return bool(os.environ.get(TOKEN_VARIABLE, "").strip())


_on = _token_configured()


def enabled() -> bool:
    """Whether this process counts (``TRAY_METRICS_TOKEN`` is set)."""
    return _on


def set_enabled(on: bool) -> None:
    """Turn counting on or off (tests and benchmarks; the server decides at start)."""
    global _on
    _on = on


REGISTRY = CollectorRegistry(auto_describe=True)
# process_cpu_seconds_total, process_resident_memory_bytes, open fds... (Linux /proc).
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_ROWS_BUCKETS: Final = (0, 1, 5, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

_handshakes = Counter(
    "tray_handshakes",
    "WebSocket and event-stream handshakes, by transport and outcome.",
    ["transport", "outcome"],
    registry=REGISTRY,
)
_publish_requests = Counter(
    "tray_publish_requests",
    "Publish requests answered (POST /api/notifications/ and its batch/), by kind and status.",
    ["kind", "status"],
    registry=REGISTRY,
)
_publish_seconds = Histogram(
    "tray_publish_duration_seconds",
    "Time from a publish request's body to its answer, by kind (single, batch).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
_statement_seconds = Histogram(
    "tray_db_statement_duration_seconds",
    "Database work on the hot path, on the database thread: a batch of publishes "
    "written (publish_write), a socket's opening read (socket_opening), a catch-up "
    "read (replay_read).",
    ["statement"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
_replay_rows = Histogram(
    "tray_replay_notifications",
    "Notifications replayed by one catch-up run of a socket or stream, up to its caught_up.",
    buckets=_ROWS_BUCKETS,
    registry=REGISTRY,
)
_doorbell_lag = Histogram(
    "tray_doorbell_lag_seconds",
    "Time from a doorbell rung in one server process to its being heard in this one "
    "(scale mode, over Redis; wall clocks, so the machines' clocks must agree).",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
_publish_children: dict[tuple[str, int], Counter] = {}
_statement_children = {name: _statement_seconds.labels(statement=name) for name in STATEMENTS}
_publish_seconds_children = {
    kind: _publish_seconds.labels(kind=kind) for kind in ("single", "batch")
}


class _LoopCounts:
    """The event loop's counts: plain integers, read when scraped."""

    __slots__ = ("connections", "deliveries", "frames_received", "frames_sent", "server_closes")

    def __init__(self) -> None:
        self.deliveries = 0
        self.frames_sent: dict[str, int] = {}
        self.frames_received: dict[str, int] = {}
        self.connections: dict[str, int] = dict.fromkeys(TRANSPORTS.values(), 0)
        self.server_closes: dict[str, int] = {}


_loop = _LoopCounts()
# The hub's sockets by user, for the online-users gauge (set by ``hub_started``).
_users_online: Callable[[], int] | None = None


class _LoopCollector(Collector):
    """``_loop``'s integers as counters and gauges, at scrape time."""

    def collect(self) -> Iterator[Metric]:
        counts = _loop
        # Copies: the loop may add a key while a scrape (on another thread) reads.
        connections = GaugeMetricFamily(
            "tray_open_connections",
            "Client connections open on this process, by transport (websocket, sse).",
            labels=["transport"],
        )
        for transport, value in list(counts.connections.items()):
            connections.add_metric([transport], value)
        yield connections
        users = GaugeMetricFamily(
            "tray_online_users",
            "Users with at least one connection open on this process (presence, per process).",
        )
        users.add_metric([], _users_online() if _users_online is not None else 0)
        yield users
        yield CounterMetricFamily(
            "tray_deliveries",
            "Live notifications handed to a connection (one per recipient's connection).",
            value=counts.deliveries,
        )
        sent = dict(counts.frames_sent)
        for name, doc, frames in (
            ("tray_frames_sent", "Frames sent to clients, by type.", sent),
            (
                "tray_frames_received",
                "Frames received from WebSocket clients, by type.",
                dict(counts.frames_received),
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["type"])
            for kind, value in sorted(frames.items()):
                family.add_metric([kind], value)
            yield family
        yield CounterMetricFamily(
            "tray_resync_required",
            "resync_required frames sent: a resume too far behind to replay over the socket.",
            value=sent.get("resync_required", 0),
        )
        closes = CounterMetricFamily(
            "tray_server_closes",
            "Connections the server closed, by reason (send_queue_full is 1013, "
            "rate_limited 1008).",
            labels=["reason"],
        )
        for reason, value in sorted(dict(counts.server_closes).items()):
            closes.add_metric([reason], value)
        yield closes


REGISTRY.register(_LoopCollector())


# --- what the hot path calls --------------------------------------------------------


def hub_started(users_online: Callable[[], int]) -> None:
    """The process's hub: ``users_online`` counts its users with a connection."""
    global _users_online
    _users_online = users_online


def connection_opened(kind: str) -> None:
    """A connection (``kind``: socket, stream) joined the hub."""
    if _on:
        transport = TRANSPORTS.get(kind, kind)
        _loop.connections[transport] = _loop.connections.get(transport, 0) + 1


def connection_closed(kind: str) -> None:
    """A connection that ``connection_opened`` counted left the hub."""
    if _on:
        transport = TRANSPORTS.get(kind, kind)
        _loop.connections[transport] = _loop.connections.get(transport, 0) - 1


def handshake(kind: str, outcome: str) -> None:
    """A handshake of a connection (socket, stream) came to ``outcome`` (OUTCOMES)."""
    if _on:
        _handshakes.labels(transport=TRANSPORTS.get(kind, kind), outcome=outcome).inc()


def frame_type(frame: str) -> str:
    """The type of an encoded server frame (``{"type":"...``), without parsing it."""
    end = frame.find('"', _TYPE_AT)
    return frame[_TYPE_AT:end] if frame.startswith('{"type":"') and end > 0 else "unknown"


def frame_sent(frame: str) -> None:
    """An encoded frame went to a client."""
    if _on:
        kind = frame_type(frame)
        sent = _loop.frames_sent
        sent[kind] = sent.get(kind, 0) + 1


def frames_sent(frames: list[str]) -> None:
    """Encoded frames went to a client (one write of the event stream)."""
    if _on:
        sent = _loop.frames_sent
        for frame in frames:
            kind = frame_type(frame)
            sent[kind] = sent.get(kind, 0) + 1


def notification_sent(with_count: bool) -> None:
    """A live notification frame went out at once, and its unread_count with it if
    ``with_count`` (the broadcast's hot path: no frame to look into)."""
    if _on:
        sent = _loop.frames_sent
        sent["notification_created"] = sent.get("notification_created", 0) + 1
        if with_count:
            sent["unread_count"] = sent.get("unread_count", 0) + 1


def frame_received(kind: str) -> None:
    """A client frame of type ``kind`` (a protocol type, or "invalid")."""
    if _on:
        received = _loop.frames_received
        received[kind] = received.get(kind, 0) + 1


def notifications_delivered(count: int) -> None:
    """One doorbell event's notification was handed to ``count`` connections here."""
    if _on:
        _loop.deliveries += count


def server_closed(code: int) -> None:
    """The server closes a connection with ``code`` (what its delivery state decided)."""
    if _on:
        reason = CLOSE_REASONS.get(code, "other")
        _loop.server_closes[reason] = _loop.server_closes.get(reason, 0) + 1


def replay_finished(replayed: int) -> None:
    """A catch-up run sent its caught_up after ``replayed`` notifications."""
    if _on:
        _replay_rows.observe(replayed)


def publish_answered(kind: str, status: int, seconds: float) -> None:
    """A publish request (``kind``: single, batch) was answered ``status`` after ``seconds``."""
    if not _on:
        return
    child = _publish_children.get((kind, status))
    if child is None:
        child = _publish_children[(kind, status)] = _publish_requests.labels(
            kind=kind, status=str(status)
        )
    child.inc()
    _publish_seconds_children[kind].observe(seconds)


def statement_took(statement: str, seconds: float) -> None:
    """Hot-path database work ``statement`` (STATEMENTS) took ``seconds``."""
    if _on:
        _statement_children[statement].observe(seconds)


P = ParamSpec("P")
R = TypeVar("R")


def timed(statement: str, function: Callable[P, R]) -> Callable[P, R]:
    """``function``, timed as ``statement`` when counting is on (for database work)."""

    @wraps(function)
    def measured(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _on:
            return function(*args, **kwargs)
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _statement_children[statement].observe(time.perf_counter() - started)

    return measured


def doorbell_heard(rung_at: float) -> None:
    """A doorbell rung at ``rung_at`` (time.time() in the ringing process) was heard."""
    if _on:
        _doorbell_lag.observe(max(0.0, time.time() - rung_at))
