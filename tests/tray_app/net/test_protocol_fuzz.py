"""Fuzzing the client's frame parser (tray_app/net/protocol.py) with hypothesis.

Whatever a server (or anything in the middle) sends, ``parse_server_frame`` either returns
one of the module's frame types or raises its documented ``FrameError``, whose message
names a frame type and field but never echoes the frame's content (a token or notification
text must not reach a log through it). ``TRAY_TEST_SCALE`` scales the examples.
"""

from __future__ import annotations

import json
import os
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tray_app.net import protocol
from tray_app.net.protocol import FrameError, ServerFrame, parse_server_frame

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
FUZZ = settings(
    max_examples=max(50, round(400 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FRAME_TYPES = tuple(get_args(ServerFrame))
SERVER_TYPES = [
    "hello", "notification_created", "notification_updated", "notification_deleted",
    "all_read", "unread_count", "caught_up", "resync_required", "presence_snapshot",
    "presence_changed", "presence_unsubscribed", "attention_changed", "ack", "error", "pong",
]  # fmt: skip
SECRET = "SECRET-TOKEN-VALUE"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.just(SECRET),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "protocol", "user", "unread_count", "latest_seq", "token_expires_at", "max_frame_bytes",
        "seq", "id", "updates", "is_read", "up_to_seq", "through_seq", "replayed", "after_seq",
        "members", "project_id", "user_id", "online", "status", "last_seen", "reason", "for",
        "code", "message", "token", "attention", "version", "dnd", "quiet_hours", "time_zone",
        "muted_projects", "muted_event_types", "min_priority", "urgent_breaks_through",
    ]
) | st.text(max_size=10)  # fmt: skip
payloads = st.dictionaries(field_names, json_values, max_size=10)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(SERVER_TYPES) | st.text(max_size=20)},
    optional={"payload": payloads | json_values, "ref": json_values},
)


def parsed_or_frame_error(text: str | bytes) -> ServerFrame | None:
    try:
        frame = parse_server_frame(text)
    except FrameError as error:
        message = str(error)
    else:
        assert type(frame) in FRAME_TYPES
        return frame
    assert SECRET not in message
    assert len(message) < 200
    return None


@FUZZ
@given(st.text())
def test_any_text_parses_or_raises_frame_error(text: str) -> None:
    parsed_or_frame_error(text)


@FUZZ
@given(st.binary())
def test_any_bytes_raise_frame_error(data: bytes) -> None:
    assert parsed_or_frame_error(data) is None


@FUZZ
@given(json_values)
def test_any_json_document_parses_or_raises_frame_error(document: Any) -> None:
    parsed_or_frame_error(json.dumps(document))


@FUZZ
@given(envelopes)
def test_envelopes_of_every_type_with_hostile_payloads(document: dict[str, Any]) -> None:
    frame = parsed_or_frame_error(json.dumps(document))
    if isinstance(frame, protocol.NotificationCreated):
        # What the client goes on to store and show has the fields it relies on.
        assert frame.seq >= 1
        assert frame.id >= 1


@settings(max_examples=max(10, round(30 * SCALE)), deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_frame_error_not_a_crash(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = '{"type":"pong","payload":{"x":' + opener * depth + "1" + closer * depth + "}}"
    parsed_or_frame_error(text)


def test_handcrafted_hostile_frames() -> None:
    hostile = [
        '{"type":"hello","payload":{"protocol":true,"user":{},"unread_count":0,"latest_seq":0}}',
        '{"type":"notification_created","payload":{"seq":1e400,"id":1}}',
        '{"type":"notification_created","payload":{"seq":-1,"id":1}}',
        '{"type":"notification_created","payload":{"seq":"1","id":1}}',
        '{"type":"presence_snapshot","payload":{"project_id":1,"members":[1,null,[]]}}',
        '{"type":"caught_up","payload":{"through_seq":NaN,"replayed":0}}',
        '{"type":"\\ud800","payload":{}}',
        '{"type":"error","payload":{"code":"' + SECRET + '","message":5}}',
        "\ufeff{}",
        '{"type":"pong","payload":' + "[" * 5000 + "]" * 5000 + "}",
    ]
    for text in hostile:
        parsed_or_frame_error(text)
    parsed_or_frame_error(b"\xff\xfe")
    parsed_or_frame_error(("x" * 1_000_000).encode())


notification_fields = st.sampled_from(
    [
        "id", "seq", "title", "message", "event_type", "priority", "url", "created_at",
        "actor", "project", "data", "is_read",
    ]
) | st.text(max_size=10)  # fmt: skip
notification_values = (
    json_values
    | st.sampled_from(["low", "normal", "high", "urgent", "\ud800", "2026-11-22T09:30:00Z"])
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat())
    | st.fixed_dictionaries({"id": json_values, "title": json_values})
)


@FUZZ
@given(st.dictionaries(notification_fields, notification_values, max_size=12) | json_values)
def test_a_notification_is_read_once_into_storable_values_or_refused(payload: Any) -> None:
    # What the store and the toasts rely on, whatever the server sent: text that UTF-8
    # (and so SQLite) can hold, a known priority, an aware UTC time or none, objects
    # where objects are expected, ids in SQLite's range; or FrameError naming no content.
    try:
        notification = protocol.parse_notification(payload)
    except FrameError as error:
        refusal = str(error)
    else:
        refusal = ""
    if refusal:
        assert SECRET not in refusal
        return
    assert 1 <= notification.id <= protocol.MAX_ID
    assert 1 <= notification.seq <= protocol.MAX_ID
    for text in (
        notification.title,
        notification.message,
        notification.event_type,
        notification.url,
    ):
        text.encode("utf-8")
    assert notification.priority in protocol.PRIORITIES
    created = notification.created_at
    assert created is None or created.utcoffset() is not None
    assert notification.actor is None or isinstance(notification.actor, dict)
    assert isinstance(notification.data, dict)
    assert isinstance(notification.is_read, bool)
    if notification.project_id is None:
        assert notification.project_title is None
    else:
        assert isinstance(notification.project_title, str)
