"""The client's frame parser and encoders (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

import pytest

from tray_app.attention import Attention, parse_attention
from tray_app.net import protocol
from tray_app.net.protocol import FrameError, parse_server_frame

NOTIFICATION = {
    "id": 981,
    "seq": 43,
    "is_read": False,
    "read_at": None,
    "title": "Task moved to Done",
    "message": "bob moved “Fix login” to Done",
    "event_type": "task_status_changed",
    "priority": "normal",
    "url": "/projects/1/tasks/7",
    "created_at": "2026-11-22T09:30:00.123456Z",
    "actor": {"id": 4, "username": "bob", "first_name": "Bob", "last_name": "Baker"},
    "project": {"id": 1, "title": "Mobile App"},
    "data": {"task_id": 7},
}


def frame(kind: str, payload: object, **extra: object) -> str:
    return json.dumps({"type": kind, "payload": payload, **extra})


def test_every_documented_server_frame_parses():
    """One example of each frame in docs/protocol.md."""
    hello = parse_server_frame(
        frame(
            "hello",
            {
                "protocol": 1,
                "user": {"id": 3, "username": "alice"},
                "unread_count": 4,
                "latest_seq": 42,
                "token_expires_at": 1795000000,
                "max_frame_bytes": 65536,
            },
        )
    )
    assert hello == protocol.Hello(1, {"id": 3, "username": "alice"}, 4, 42, 1795000000.0, 65536)
    created = parse_server_frame(frame("notification_created", NOTIFICATION))
    assert created == protocol.NotificationCreated(protocol.parse_notification(NOTIFICATION))
    assert isinstance(created, protocol.NotificationCreated)
    assert (created.seq, created.id, created.notification.title) == (43, 981, NOTIFICATION["title"])
    assert parse_server_frame(
        frame("notification_updated", {"id": 981, "updates": {"is_read": True}})
    ) == protocol.NotificationUpdated(981, True)
    assert parse_server_frame(
        frame("notification_deleted", {"id": 981})
    ) == protocol.NotificationDeleted(981)
    assert parse_server_frame(frame("all_read", {"up_to_seq": 43})) == protocol.AllRead(43)
    assert parse_server_frame(frame("all_read", {})) == protocol.AllRead(None)
    assert parse_server_frame(frame("unread_count", {"unread_count": 3})) == protocol.UnreadCount(3)
    assert parse_server_frame(
        frame("caught_up", {"through_seq": 43, "replayed": 12})
    ) == protocol.CaughtUp(43, 12)
    assert parse_server_frame(
        frame(
            "resync_required",
            {"after_seq": 10, "latest_seq": 25000, "page_url": "/api/inbox/"},
            ref="r1",
        )
    ) == protocol.ResyncRequired(10, 25000, ref="r1")
    snapshot = parse_server_frame(
        frame(
            "presence_snapshot",
            {
                "project_id": 1,
                "members": [
                    {
                        "user": {"id": 3, "username": "alice"},
                        "online": True,
                        "status": "away",
                        "last_seen": 1795000000.5,
                    }
                ],
            },
            ref="p",
        )
    )
    assert isinstance(snapshot, protocol.PresenceSnapshot)
    assert snapshot.members[0].status == "away"
    assert snapshot.ref == "p"
    assert parse_server_frame(
        frame(
            "presence_changed",
            {"project_id": 1, "user_id": 4, "online": True, "status": "online", "last_seen": 1.5},
        )
    ) == protocol.PresenceChanged(1, 4, True, "online", 1.5)
    assert parse_server_frame(
        frame("presence_unsubscribed", {"project_id": 1, "reason": "removed"})
    ) == protocol.PresenceUnsubscribed(1, "removed")
    ack = parse_server_frame(frame("ack", {"for": "mark_read", "changed": [981]}, ref="m1"))
    assert isinstance(ack, protocol.Ack)
    assert (ack.request, ack.ref, ack.payload["changed"]) == ("mark_read", "m1", [981])
    assert parse_server_frame(
        frame("error", {"code": "invalid_ids", "message": "every id..."}, ref=7)
    ) == protocol.ServerErrorFrame("invalid_ids", "every id...", ref=7)
    assert parse_server_frame(frame("pong", {}, ref="x")) == protocol.Pong({}, ref="x")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '"hello"',
        "[" * 100_000 + "]" * 100_000,
        frame("notification_created", "not an object"),
        json.dumps({"payload": {}}),
        json.dumps({"type": 5, "payload": {}}),
        frame("notification_created", {**NOTIFICATION, "seq": "43"}),
        frame("notification_created", {**NOTIFICATION, "seq": 0}),
        frame("notification_created", {**NOTIFICATION, "seq": True}),
        frame("notification_created", {k: v for k, v in NOTIFICATION.items() if k != "id"}),
        frame("notification_updated", {"id": 1, "updates": {"is_read": "yes"}}),
        frame("hello", {"protocol": 1}),
        frame("caught_up", {"through_seq": -1, "replayed": 0}),
        frame("presence_snapshot", {"project_id": 1, "members": [{"user": "bob"}]}),
        frame("brand_new_type", {}),
    ],
)
def test_malformed_and_unknown_frames_raise_frame_error(text):
    with pytest.raises(FrameError):
        parse_server_frame(text)


def test_a_binary_frame_is_a_frame_error():
    with pytest.raises(FrameError):
        parse_server_frame(b'{"type": "pong"}')


def test_frame_errors_never_carry_the_content():
    secret = "eyJhbGciOiJIUzI1NiJ9.secret-token-content"
    for text in (
        frame("notification_created", {**NOTIFICATION, "title": secret, "seq": "x"}),
        frame(secret, {}),
        secret,
    ):
        with pytest.raises(FrameError) as caught:
            parse_server_frame(text)
        assert "secret-token-content" not in str(caught.value)
        assert caught.value.user_message


def test_unknown_fields_are_ignored():
    parsed = parse_server_frame(frame("unread_count", {"unread_count": 2, "new_field": [1]}))
    assert parsed == protocol.UnreadCount(2)


def test_encoders_produce_the_documented_frames():
    assert json.loads(protocol.encode_resume(42, ref="r")) == {
        "type": "resume",
        "payload": {"after_seq": 42},
        "ref": "r",
    }
    assert json.loads(protocol.encode_ping("p")) == {"type": "ping", "payload": {}, "ref": "p"}
    assert json.loads(protocol.encode_presence("subscribe_presence", 1))["payload"] == {
        "project_id": 1
    }
    assert json.loads(protocol.encode_set_status("dnd"))["payload"] == {"status": "dnd"}
    assert json.loads(protocol.encode_authenticate("tok"))["payload"] == {"token": "tok"}


@pytest.mark.parametrize(
    "call",
    [
        lambda: protocol.encode_resume(-1),
        lambda: protocol.encode_resume(True),
        lambda: protocol.encode_presence("subscribe_presence", 0),
        lambda: protocol.encode_set_status("busy"),
    ],
)
def test_encoders_refuse_what_the_server_would_refuse(call):
    with pytest.raises(ValueError, match=r"."):
        call()


# --- a notification, read once ---------------------------------------------------------------


@pytest.mark.parametrize(
    "malformed",
    [
        None,
        "a string",
        [1, 2],
        42,
        {"title": "SECRET-TITLE-TEXT"},
        {"seq": 1, "title": "SECRET-TITLE-TEXT"},  # no id
        {"id": 5, "title": "SECRET-TITLE-TEXT"},  # no seq
        {"id": "5", "seq": 1},
        {"id": 5, "seq": "1"},
        {"id": 5, "seq": True},
        {"id": 5, "seq": 1.0},
        {"id": 5, "seq": 0},
        {"id": 5, "seq": -3},
        {"id": 0, "seq": 1},
        {"id": 5, "seq": 2**63},  # beyond SQLite's INTEGER
        {"id": 2**64, "seq": 1},
    ],
)
def test_a_notification_without_a_usable_id_and_seq_is_refused_naming_no_content(
    malformed: object,
) -> None:
    with pytest.raises(FrameError) as refused:
        protocol.parse_notification(malformed)
    assert "SECRET" not in str(refused.value)
    # As a frame, too: nothing of it reaches the store.
    with pytest.raises(FrameError):
        parse_server_frame(frame("notification_created", malformed))


def test_a_notifications_other_fields_are_read_leniently() -> None:
    odd = protocol.parse_notification(
        {
            "id": 1,
            "seq": 1,
            "title": "lone \ud800 surrogate",
            "message": "nul \x00 inside",
            "event_type": 7,
            "priority": "critical",
            "created_at": "yesterday",
            "actor": "bob",
            "project": {"id": "x", "title": "no id"},
            "data": [1, 2],
            "is_read": "yes",
            "url": None,
        }
    )
    assert odd == protocol.Notification(
        id=1, seq=1, title="lone ? surrogate", message="nul \x00 inside", event_type="7"
    )
    bare = protocol.parse_notification({"id": 2, "seq": 3, "priority": ["high"]})
    assert bare == protocol.Notification(id=2, seq=3)


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("2026-11-22T09:30:00.123456Z", datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC)),
        ("2026-11-22T11:30:00+02:00", datetime(2026, 11, 22, 9, 30, tzinfo=UTC)),
        ("2026-11-22T09:30:00", datetime(2026, 11, 22, 9, 30, tzinfo=UTC)),  # no zone: UTC
        ("0001-01-01T00:00:00+01:00", None),  # before the first UTC instant
        ("22 Nov", None),
        (1795000000, None),
    ],
)
def test_a_notifications_time_is_utc_or_none(sent: object, read: datetime | None) -> None:
    notification = protocol.parse_notification({"id": 1, "seq": 1, "created_at": sent})
    assert notification.created_at == read
    if read is not None:
        assert notification.created_at is not None
        assert notification.created_at.tzinfo is UTC


def test_a_notification_keeps_its_project_actor_data_and_read_state() -> None:
    notification = protocol.parse_notification(NOTIFICATION | {"is_read": True})
    assert notification.project_id == NOTIFICATION["project"]["id"]  # type: ignore[index]
    assert notification.project_title == NOTIFICATION["project"]["title"]  # type: ignore[index]
    assert notification.actor == NOTIFICATION["actor"]
    assert notification.data == NOTIFICATION["data"]
    assert notification.is_read is True


# --- attention (docs/protocol.md, "Attention") ------------------------------------------------

ATTENTION = {
    "version": 3,
    "dnd": {"until": "2026-12-07T07:00:00Z"},
    "quiet_hours": {"start": "22:00", "end": "07:00"},
    "time_zone": "Europe/Berlin",
    "muted_projects": [4],
    "muted_event_types": ["task_status_changed"],
    "min_priority": "normal",
    "urgent_breaks_through": True,
}
HELLO = {
    "protocol": 1,
    "user": {"id": 3, "username": "alice"},
    "unread_count": 4,
    "latest_seq": 42,
    "token_expires_at": 1795000000,
    "max_frame_bytes": 65536,
}


def test_hello_carries_the_attention_settings() -> None:
    hello = parse_server_frame(frame("hello", {**HELLO, "attention": ATTENTION}))
    assert isinstance(hello, protocol.Hello)
    assert hello.attention == Attention(
        version=3,
        dnd=True,
        dnd_until=datetime(2026, 12, 7, 7, 0, tzinfo=UTC),
        quiet_hours=(time(22, 0), time(7, 0)),
        time_zone="Europe/Berlin",
        muted_projects=frozenset({4}),
        muted_event_types=frozenset({"task_status_changed"}),
        min_priority="normal",
        urgent_breaks_through=True,
    )
    assert hello.attention.payload() == ATTENTION
    assert (hello.unread_count, hello.latest_seq) == (4, 42)


@pytest.mark.parametrize(
    "attention",
    [
        pytest.param(None, id="null"),
        pytest.param("missing", id="absent"),  # a server older than attention settings
        pytest.param({**ATTENTION, "min_priority": "critical"}, id="bad-priority"),
        pytest.param({**ATTENTION, "dnd": {"until": "SECRET-UNTIL"}}, id="bad-until"),
        pytest.param({**ATTENTION, "version": -1}, id="bad-version"),
        pytest.param("quiet please", id="not-an-object"),
        pytest.param([ATTENTION], id="a-list"),
    ],
)
def test_a_hello_without_readable_attention_still_says_hello(attention: object) -> None:
    """The rest of hello is what the connection needs; the last known settings stay."""
    payload = dict(HELLO) if attention == "missing" else {**HELLO, "attention": attention}
    hello = parse_server_frame(frame("hello", payload))
    assert hello == protocol.Hello(1, {"id": 3, "username": "alice"}, 4, 42, 1795000000.0, 65536)
    assert isinstance(hello, protocol.Hello)
    assert hello.attention is None


def test_attention_changed_parses_to_the_settings() -> None:
    changed = parse_server_frame(frame("attention_changed", ATTENTION))
    assert changed == protocol.AttentionChanged(parse_attention(ATTENTION))
    assert isinstance(changed, protocol.AttentionChanged)
    assert changed.attention.version == 3
    assert changed.attention.muted_projects == frozenset({4})
    # A newer server's extra setting is ignored; the ones this client knows are read.
    newer = parse_server_frame(frame("attention_changed", {**ATTENTION, "focus": {"on": 1}}))
    assert newer == changed
    # The defaults: the state of a user who never changed anything.
    assert parse_server_frame(frame("attention_changed", {})) == protocol.AttentionChanged(
        Attention()
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("SECRET-TEXT", id="a-string"),
        pytest.param([1], id="a-list"),
        pytest.param({**ATTENTION, "dnd": True}, id="dnd-true"),
        pytest.param({**ATTENTION, "dnd": {"until": "SECRET-TEXT"}}, id="until-not-a-time"),
        pytest.param(
            {**ATTENTION, "dnd": {"until": "0001-01-01T00:00:00+05:00"}}, id="until-out-of-range"
        ),
        pytest.param(
            {**ATTENTION, "quiet_hours": {"start": "SECRET-TEXT", "end": "07:00"}}, id="clock"
        ),
        pytest.param({**ATTENTION, "muted_projects": ["SECRET-TEXT"]}, id="project-ids"),
        pytest.param({**ATTENTION, "min_priority": "SECRET-TEXT"}, id="priority"),
        pytest.param({**ATTENTION, "urgent_breaks_through": "SECRET-TEXT"}, id="flag"),
        pytest.param({**ATTENTION, "version": "SECRET-TEXT"}, id="version"),
    ],
)
def test_an_unreadable_attention_changed_is_a_frame_error_naming_no_content(
    payload: object,
) -> None:
    with pytest.raises(FrameError) as refused:
        parse_server_frame(frame("attention_changed", payload))
    assert "attention_changed" in str(refused.value)
    assert "SECRET" not in str(refused.value)
    assert refused.value.user_message


def test_tokens_handed_over_on_the_socket_are_read_and_never_shown() -> None:
    hello: dict[str, Any] = {
        "type": "hello",
        "payload": {
            "protocol": 1,
            "user": {"id": 1},
            "unread_count": 0,
            "latest_seq": 0,
            "tokens": {"access": "a.b.c", "refresh": "r.s.t"},
        },
    }
    frame = protocol.parse_server_frame(json.dumps(hello))
    assert isinstance(frame, protocol.Hello)
    assert frame.tokens == protocol.TokenGrant(access="a.b.c", refresh="r.s.t")
    assert "r.s.t" not in repr(frame)
    assert "a.b.c" not in repr(frame.tokens)
    del hello["payload"]["tokens"]
    plain = protocol.parse_server_frame(json.dumps(hello))
    assert isinstance(plain, protocol.Hello)
    assert plain.tokens is None
    for bad in ({"access": "a.b.c"}, {"access": "", "refresh": "r"}, ["a", "r"], "a.b.c"):
        hello["payload"]["tokens"] = bad
        with pytest.raises(protocol.FrameError, match="tokens") as refused:
            protocol.parse_server_frame(json.dumps(hello))
        assert "a.b.c" not in str(refused.value)
    sent = json.loads(protocol.encode_refresh("r.s.t", ref="refresh-1"))
    assert sent == {"type": "refresh", "payload": {"token": "r.s.t"}, "ref": "refresh-1"}
    assert json.loads(protocol.encode_list_projects("p-1")) == {
        "type": "list_projects",
        "payload": {},
        "ref": "p-1",
    }
