"""The HTTP stream's pure parts (backend/notifications/stream_protocol.py): the event
format, the cursor and watch list of a request, the cookie and CORS rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.errors import InvalidInput
from backend.notifications import protocol, stream_protocol
from backend.notifications.payloads import recipient_payload

SHARED = {"title": "Build 42", "message": "", "priority": "normal", "data": {"k": [1, 2]}}


def _scope(query: str = "", *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"query_string": query.encode(), "headers": list(headers)}


def test_a_notification_event_carries_its_seq_as_its_id_whichever_way_it_was_made() -> None:
    prefix = protocol.notification_frame_prefix(SHARED)
    live = protocol.notification_frame(prefix, inbox_id=981, seq=43)
    replayed = protocol.encode(
        "notification_created", recipient_payload(SHARED, inbox_id=981, seq=43)
    )
    reordered = json.dumps({"type": "notification_created", "payload": {"seq": 43, "id": 9}})
    for frame in (live, replayed):
        assert stream_protocol.frame_seq(frame) == 43
        assert stream_protocol.event(frame) == f"id: 43\ndata: {frame}\n\n"
    assert stream_protocol.frame_seq(reordered.replace(" ", "")) == 43
    for other in (
        protocol.unread_count_frame(3),
        protocol.encode("caught_up", {"after_seq": 1, "through_seq": 43, "replayed": 2}),
        protocol.encode("error", {"code": "x", "message": '"seq":5'}),
    ):
        assert stream_protocol.frame_seq(other) is None
        assert stream_protocol.event(other) == f"data: {other}\n\n"


def test_an_event_is_one_line_for_any_reader_of_lines() -> None:
    """JSON escapes CR and LF; what str.splitlines (httpx's iter_lines) also splits on
    is escaped here, and the JSON means the same."""
    payload = {"title": "a\u2028b\u2029c\x85d\ne\rf"}
    frame = protocol.encode("notification_updated", payload)
    event = stream_protocol.event(frame)
    assert event.endswith("\n\n")
    line = event.removesuffix("\n\n")
    assert line.splitlines() == [line]
    assert json.loads(line.removeprefix("data: ")) == json.loads(frame)


def test_events_of_one_write_and_the_prelude_and_heartbeat() -> None:
    frames = [protocol.unread_count_frame(1), protocol.unread_count_frame(2)]
    assert stream_protocol.events(frames) == b"".join(
        stream_protocol.event(f).encode() for f in frames
    )
    assert stream_protocol.PRELUDE == b"retry: 3000\n\n"
    assert stream_protocol.HEARTBEAT == b": ping\n\n"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (4001, "token_invalid"),
        (4003, "account_disabled"),
        (1011, "server_error"),
        (1012, "server_restart"),
        (1013, "too_far_behind"),
        (1000, "closed"),
    ],
)
def test_the_closed_frame_names_the_sockets_close_code(code: int, reason: str) -> None:
    frame = json.loads(stream_protocol.closed_frame(code))
    assert frame["type"] == "closed"
    assert (frame["payload"]["code"], frame["payload"]["reason"]) == (code, reason)
    assert frame["payload"]["message"]


@pytest.mark.parametrize(
    ("query", "headers", "after"),
    [
        ("", [], None),
        ("after_seq=7", [], 7),
        ("after_seq=0", [], 0),
        ("", [(b"last-event-id", b"12")], 12),
        ("after_seq=0", [(b"Last-Event-ID", b"12")], 12),  # the reconnect's header wins
        ("after_seq=3", [(b"last-event-id", b"")], 3),  # empty: not sent, per the spec
        ("tok%65n=x&after_seq=4&watch=1", [], 4),
    ],
)
def test_the_cursor_comes_from_last_event_id_else_after_seq(
    query: str, headers: list[tuple[bytes, bytes]], after: int | None
) -> None:
    assert stream_protocol.stream_request(_scope(query, *headers)).after_seq == after


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("after_seq=x", []),
        ("after_seq=", []),
        ("after_seq=1&after_seq=2", []),
        ("after_seq=-1", []),
        (f"after_seq={2**63}", []),
        ("", [(b"last-event-id", b"abc")]),
        ("after_seq=1", [(b"last-event-id", b"1.5")]),
    ],
)
def test_a_bad_cursor_is_invalid_cursor(query: str, headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(InvalidInput) as refused:
        stream_protocol.stream_request(_scope(query, *headers))
    assert refused.value.code == "invalid_cursor"


def test_watch_lists_project_ids_once_each_up_to_a_limit() -> None:
    request = stream_protocol.stream_request(_scope("watch=3&watch=1&watch=3&watch=%32"))
    assert request.watch == (3, 1, 2)
    for bad in ("watch=0", "watch=x", "watch=", f"watch={2**63}", "watch=-1"):
        with pytest.raises(InvalidInput) as refused:
            stream_protocol.stream_request(_scope(bad))
        assert refused.value.code == "invalid_project", bad
    many = "&".join(f"watch={n}" for n in range(1, stream_protocol.MAX_WATCH + 2))
    with pytest.raises(InvalidInput):
        stream_protocol.stream_request(_scope(many))


HOST = (b"host", b"notify.example.com")
COOKIE = (b"cookie", b"other=1; sessionid=abc")


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        # A same-origin GET from a page: no Origin, the browser's Sec-Fetch-Site.
        ([HOST, COOKIE, (b"sec-fetch-site", b"same-origin")], "abc"),
        ([HOST, COOKIE, (b"sec-fetch-site", b"same-site")], None),
        ([HOST, COOKIE, (b"sec-fetch-site", b"cross-site")], None),
        ([HOST, COOKIE], None),  # neither: not known to come from the server's page
        # With an Origin, the socket's rule.
        ([HOST, COOKIE, (b"origin", b"https://notify.example.com")], "abc"),
        ([HOST, COOKIE, (b"origin", b"https://evil.example")], None),
        (
            [
                HOST,
                COOKIE,
                (b"origin", b"https://evil.example"),
                (b"sec-fetch-site", b"same-origin"),
            ],
            None,
        ),
        ([HOST, (b"cookie", b"sessionid="), (b"sec-fetch-site", b"same-origin")], None),
    ],
)
def test_the_session_cookie_counts_only_from_the_servers_own_page(
    headers: list[tuple[bytes, bytes]], found: str | None
) -> None:
    scope = _scope("", *headers)
    assert stream_protocol.session_cookie(scope, name="sessionid") == found


def test_cors_headers_only_for_an_allowed_origin() -> None:
    page = (b"origin", b"https://app.example.com")
    allowed = ["https://app.example.com"]
    assert stream_protocol.cors_headers(_scope("", HOST, page), allowed_origins=allowed) == [
        (b"access-control-allow-origin", b"https://app.example.com"),
        (b"vary", b"origin"),
    ]
    assert stream_protocol.cors_headers(_scope("", HOST, page), allowed_origins=[]) == []
    assert stream_protocol.cors_headers(_scope("", HOST), allowed_origins=["*"]) == []
