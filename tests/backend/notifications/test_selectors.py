"""Reads behind the inbox API: audiences, cursors, pages, single rows, state."""

from __future__ import annotations

from typing import Any

import pytest

from backend.errors import InvalidInput, NotFound
from backend.notifications.payloads import inbox_payload
from backend.notifications.selectors import (
    Audience,
    InboxState,
    audience_user_ids,
    inbox_get,
    inbox_list,
    inbox_replay_after,
    inbox_state,
    validate_seq,
)
from backend.notifications.services import inbox_delete, inbox_mark_read, notification_create
from backend.numbers import MAX_INT64
from backend.projects.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_audience_is_a_union_of_active_users(make_user: Any) -> None:
    alice = make_user("alice", role="dev")
    bob = make_user("bob")
    carol = make_user("carol")
    make_user("gone", role="dev", is_active=False)
    project = Project.objects.create(title="Apollo")
    Membership.objects.create(project=project, user=bob)

    audience = Audience(users=(carol.pk,), projects=(project.pk,), roles=("dev",))
    assert audience_user_ids(audience) == sorted([alice.pk, bob.pk, carol.pk])
    assert audience_user_ids(Audience(everyone=True, exclude=(alice.pk,))) == [bob.pk, carol.pk]
    assert audience_user_ids(Audience()) == []
    assert Audience().is_empty()


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), ("17", 17), (" 5 ", 5), (MAX_INT64, MAX_INT64)]
)
def test_validate_seq_accepts(value: Any, expected: int) -> None:
    assert validate_seq(value, name="after_seq") == expected


@pytest.mark.parametrize("value", [-1, MAX_INT64 + 1, "abc", "-1", "1.5", 1.0, True, None, [1]])
def test_validate_seq_refuses(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_seq(value, name="after_seq")
    assert caught.value.code == "invalid_cursor"


def test_inbox_list_pages_both_ways_and_skips_deleted(make_user: Any) -> None:
    alice = make_user("alice")
    for number in range(5):
        notification_create(audience=Audience(users=(alice.pk,)), title=f"n{number}")
    third = inbox_list(user_id=alice.pk, after_seq=2, limit=1)[0]
    inbox_delete(user_id=alice.pk, ids=[third.pk])

    assert [row.seq for row in inbox_list(user_id=alice.pk)] == [5, 4, 2, 1]
    assert [row.seq for row in inbox_list(user_id=alice.pk, after_seq=1, limit=2)] == [2, 4]
    assert [row.seq for row in inbox_list(user_id=alice.pk, before_seq=4)] == [2, 1]
    deleted_too = inbox_list(user_id=alice.pk, include_deleted=True)
    assert [row.seq for row in deleted_too] == [5, 4, 3, 2, 1]


def test_a_replay_reads_the_same_payloads_as_the_inbox_and_skips_deleted_rows(
    make_user: Any,
) -> None:
    """The replay builds payloads from plain values; they must be exactly what REST's
    inbox_payload builds from model instances, for every field and its absence."""
    alice = make_user("alice", first_name="Alice", last_name="Liddell")
    bob = make_user("bob")
    notification_create(audience=Audience(users=(bob.pk,)), title="plain")
    notification_create(
        audience=Audience(users=(bob.pk,)),
        title="full",
        message="body",
        event_type="task_assigned",
        priority="urgent",
        url="https://example.com/t/1",
        actor=alice,
        project_id=7,
        project_title="Apollo",
        data={"task": {"id": 3, "tags": ["a", "ü"]}},
    )
    notification_create(audience=Audience(users=(bob.pk,)), title="gone")
    rows = inbox_list(user_id=bob.pk, include_deleted=True)
    inbox_mark_read(user_id=bob.pk, ids=[rows[1].pk])
    inbox_delete(user_id=bob.pk, ids=[rows[0].pk])

    replay = inbox_replay_after(user_id=bob.pk, after_seq=0, limit=10)
    assert [row.seq for row in replay] == [1, 2, 3]
    assert replay[2].payload is None  # deleted: skipped, but the replay moves past its seq
    expected = {row.seq: inbox_payload(row) for row in inbox_list(user_id=bob.pk)}
    assert [row.payload for row in replay[:2]] == [expected[1], expected[2]]
    assert replay[1].payload is not None
    assert replay[1].payload["is_read"] is True
    assert replay[1].payload["actor"]["username"] == "alice"
    assert inbox_replay_after(user_id=bob.pk, after_seq=1, limit=1)[0].seq == 2
    assert inbox_replay_after(user_id=alice.pk, after_seq=0, limit=10) == []


def test_inbox_get_is_own_rows_only(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    notification_create(audience=Audience(users=(alice.pk, bob.pk)), title="hi")
    bobs = inbox_list(user_id=bob.pk)[0]
    assert inbox_get(user_id=bob.pk, inbox_id=bobs.pk) == bobs
    with pytest.raises(NotFound):
        inbox_get(user_id=alice.pk, inbox_id=bobs.pk)


def test_inbox_state(make_user: Any) -> None:
    alice = make_user("alice")
    assert inbox_state(user_id=alice.pk).latest_seq == 0
    for _ in range(3):
        notification_create(audience=Audience(users=(alice.pk,)), title="hi")
    state = inbox_state(user_id=alice.pk)
    assert (state.unread_count, state.latest_seq) == (3, 3)


def test_every_reader_of_the_unread_count_reads_the_sequence_row(make_user: Any) -> None:
    """The count is InboxSequence.unread (the services keep it exact, test_services.py),
    not a count of the rows: a value put there is what each reader answers, and a user
    without a sequence row has 0."""
    from backend.notifications.models import InboxSequence
    from backend.notifications.selectors import (
        annotated_inbox_state,
        inbox_unread_count,
        socket_opening,
        users_with_inbox_state,
    )
    from backend.users.models import User
    from backend.users.services import session_start
    from backend.users.tokens import read_access_token

    alice = make_user("alice")
    for _ in range(2):
        notification_create(audience=Audience(users=(alice.pk,)), title="hi")
    InboxSequence.objects.filter(user=alice).update(unread=7)
    User.objects.bulk_create([User(username="bulk")])  # no signal: no sequence row
    bulk = User.objects.get(username="bulk")
    assert not InboxSequence.objects.filter(user=bulk).exists()

    for user, unread, latest in ((alice, 7, 2), (bulk, 0, 0)):
        assert inbox_unread_count(user_id=user.pk) == unread
        assert inbox_state(user_id=user.pk) == InboxState(unread, latest)
        annotated = users_with_inbox_state().get(pk=user.pk)
        assert annotated_inbox_state(annotated) == InboxState(unread, latest)
        session = read_access_token(session_start(user=user).access).session_id
        for after in (None, 0):
            opening = socket_opening(user_id=user.pk, session_id=session, after_seq=after, limit=5)
            assert opening.state == InboxState(unread, latest)


def _opening_case(make_user: Any) -> tuple[Any, str]:
    from backend.users.services import session_start
    from backend.users.tokens import read_access_token

    alice = make_user("alice", first_name="Alice")
    for n in range(5):
        notification_create(audience=Audience(users=(alice.pk,)), title=f"n{n + 1}")
    inbox_delete(user_id=alice.pk, ids=[inbox_list(user_id=alice.pk, after_seq=2, limit=1)[0].pk])
    inbox_mark_read(
        user_id=alice.pk, ids=[inbox_list(user_id=alice.pk, after_seq=0, limit=1)[0].pk]
    )
    return alice, read_access_token(session_start(user=alice).access).session_id


def test_socket_opening_reads_user_state_and_replay_in_one_statement(make_user: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from backend.notifications.selectors import socket_opening

    alice, session_id = _opening_case(make_user)
    with CaptureQueriesContext(connection) as queries:
        opening = socket_opening(user_id=alice.pk, session_id=session_id, after_seq=1, limit=3)
    assert len(queries) == 1
    assert opening.user == {
        "id": alice.pk,
        "username": "alice",
        "first_name": "Alice",
        "last_name": "",
    }
    assert (opening.state.unread_count, opening.state.latest_seq) == (3, 5)
    # The same rows, payloads and deleted markers as the replay selector reads.
    assert opening.replay == inbox_replay_after(user_id=alice.pk, after_seq=1, limit=3)
    assert [row.seq for row in opening.replay or []] == [2, 3, 4]
    assert opening.replay is not None
    assert opening.replay[1].payload is None

    nothing = socket_opening(user_id=alice.pk, session_id=session_id, after_seq=5, limit=3)
    assert nothing.replay == []
    assert nothing.state.latest_seq == 5
    plain = socket_opening(user_id=alice.pk, session_id=session_id)
    assert plain.replay is None
    assert plain.state == opening.state


def test_socket_opening_refuses_like_the_token_check(make_user: Any) -> None:
    from backend.errors import Forbidden, NotAuthenticated
    from backend.notifications.selectors import socket_opening
    from backend.users.tokens import SESSION_ENDED

    alice, session_id = _opening_case(make_user)
    for after in (None, 0):
        with pytest.raises(NotAuthenticated) as ended:
            socket_opening(user_id=alice.pk, session_id="not-a-session", after_seq=after, limit=5)
        assert ended.value.message == SESSION_ENDED
        with pytest.raises(NotAuthenticated) as nobody:
            socket_opening(user_id=alice.pk + 100, session_id=session_id, after_seq=after, limit=5)
        assert nobody.value.code == "token_invalid"
    alice.is_active = False
    alice.save()
    with pytest.raises(Forbidden) as disabled:
        socket_opening(user_id=alice.pk, session_id=session_id, after_seq=0, limit=5)
    assert disabled.value.code == "account_disabled"


def test_socket_opening_compiles_once_and_reads_as_the_orm_does(make_user: Any) -> None:
    """The opening statement is compiled once per shape and run with each socket's
    values: the same rows and converted values as the queryset it was compiled from."""
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from backend.errors import NotAuthenticated
    from backend.notifications import selectors
    from backend.users.models import LoginSession
    from backend.users.services import session_start
    from backend.users.tokens import read_access_token

    alice, session_id = _opening_case(make_user)
    bob = make_user("bob", first_name="Bob")
    bob_session = read_access_token(session_start(user=bob).access).session_id
    connection = connections["default"]
    selectors._prepared.clear()
    cases = [(alice.pk, session_id, after) for after in (None, 0, 1, 3, 5)]
    cases += [(bob.pk, bob_session, None), (bob.pk, bob_session, 0)]
    for user_id, session, after in cases:
        opening = selectors.socket_opening(
            user_id=user_id, session_id=session, after_seq=after, limit=3
        )
        orm = list(
            selectors._opening_rows(
                user_id=user_id, session_id=session, after_seq=after, limit=3, now=timezone.now()
            )
        )
        compiled = selectors._prepared_opening(connection, replay=after is not None, limit=3)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        slots = {
            selectors._Slot.USER: user_id,
            selectors._Slot.SESSION: session,
            selectors._Slot.NOW: now,
            selectors._Slot.AFTER: after,
        }
        assert compiled.rows(connection, slots) == orm
        assert (opening.state.unread_count, opening.state.latest_seq) == orm[0][6:8]
        if after is not None:
            assert opening.replay == inbox_replay_after(user_id=user_id, after_seq=after, limit=3)
    # One statement per shape (with a cursor or without), whoever and wherever from.
    assert len(selectors._prepared) == 2

    # The session's expiry is checked against the time of each call, not of compiling.
    LoginSession.objects.filter(pk=session_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for after in (None, 0):
        with pytest.raises(NotAuthenticated):
            selectors.socket_opening(user_id=alice.pk, session_id=session_id, after_seq=after)


def test_socket_opening_builds_a_message_once_and_never_serves_it_stale(make_user: Any) -> None:
    """Recipients of the same message share its built payload (a storm replays the same
    messages to everyone), each with their own id, seq and read state; a message or
    actor that changed is built again, not served from memory."""
    from backend.notifications import selectors
    from backend.notifications.models import Message
    from backend.users.models import User
    from backend.users.services import session_start
    from backend.users.tokens import read_access_token

    admin = make_user("admin", first_name="Ada")
    users = [make_user(f"user{n}") for n in range(3)]
    sessions = [read_access_token(session_start(user=u).access).session_id for u in users]
    for n in range(4):
        notification_create(
            audience=Audience(users=tuple(u.pk for u in users)),
            title=f"m{n}",
            actor=admin,
            data={"n": n},
        )
    inbox_mark_read(user_id=users[1].pk, ids=[inbox_list(user_id=users[1].pk, limit=1)[0].pk])
    selectors._shared_payloads.clear()

    def replays() -> list[Any]:
        openings = [
            selectors.socket_opening(user_id=u.pk, session_id=s, after_seq=0, limit=10)
            for u, s in zip(users, sessions, strict=True)
        ]
        for user, opening in zip(users, openings, strict=True):
            assert opening.replay == inbox_replay_after(user_id=user.pk, after_seq=0, limit=10)
        return [opening.replay for opening in openings]

    replays()
    assert len(selectors._shared_payloads) == 4  # one per message, not per recipient
    Message.objects.filter(title="m2").update(title="m2, edited")
    User.objects.filter(pk=admin.pk).update(first_name="Adele")
    again = replays()
    payloads = [row.payload for row in again[0] if row.payload is not None]
    assert payloads[2]["title"] == "m2, edited"
    assert {p["actor"]["first_name"] for p in payloads} == {"Adele"}
