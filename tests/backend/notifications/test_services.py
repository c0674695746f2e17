"""notification_create and the inbox services, below the REST layer."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import InvalidInput
from backend.notifications import delivery
from backend.notifications.models import ApiKey, Inbox, InboxSequence, Message
from backend.notifications.publish_input import PublishItem
from backend.notifications.selectors import Audience, audience_user_ids
from backend.notifications.services import (
    BatchOutcome,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    inbox_delete,
    inbox_mark_all_read,
    inbox_mark_read,
    inbox_mark_unread,
    notification_create,
    notification_create_batch,
)
from backend.projects.models import Membership, Project
from backend.text import url_problem

pytestmark = pytest.mark.django_db


def seqs_of(user: Any) -> list[int]:
    return list(Inbox.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))


def ids_of(user: Any) -> list[int]:
    return list(Inbox.objects.filter(user=user).order_by("seq").values_list("id", flat=True))


def to(*users: Any) -> Audience:
    return Audience(users=tuple(user.pk for user in users))


@pytest.fixture
def rung(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The doorbell events, in order (the hub itself is not under test here)."""
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery, "ring", events.append)
    return events


# notification_create


def test_the_stored_message_is_the_row_the_database_holds(make_user: Any) -> None:
    """The message is inserted by a prepared statement, not Model.save(): what the
    service answers, what the database holds and what the ORM reads back agree."""
    alice = make_user("alice")
    admin = make_user("boss")
    result = notification_create(
        audience=to(alice),
        title="Deploy",
        message="Line 1\nLine 2 \u00e9\u2603",
        event_type="deploy",
        priority="high",
        url="https://example.test/d/1",
        actor=admin,
        project_id=None,
        project_title="",
        data={"nested": {"list": [1, 2.5, None, True]}, "text": "\u00fc"},
        idempotency_key="k-1",
        publisher="api_key:9",
    )
    stored = result.message
    again = Message.objects.get(pk=stored.pk)
    for name in ("title", "message", "event_type", "priority", "url", "actor_id", "data"):
        assert getattr(again, name) == getattr(stored, name), name
    assert again.audience == {"users": [alice.pk]}
    assert (again.publisher, again.idempotency_key) == ("api_key:9", "k-1")
    assert again.created_at == stored.created_at
    assert stored.pk > 0
    assert not stored._state.adding
    assert list(stored.deliveries.values_list("user_id", flat=True)) == [alice.pk]
    # The same key from the same publisher is the same notification.
    assert (
        notification_create(
            audience=to(alice), title="Deploy", idempotency_key="k-1", publisher="api_key:9"
        ).message.pk
        == stored.pk
    )


def test_recipients_are_resolved_at_send_time(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    project = Project.objects.create(title="Apollo")
    Membership.objects.create(project=project, user=alice)
    first = notification_create(audience=Audience(projects=(project.pk,)), title="one")
    Membership.objects.create(project=project, user=bob)
    Membership.objects.filter(user=alice).delete()
    second = notification_create(audience=Audience(projects=(project.pk,)), title="two")

    assert list(first.message.deliveries.values_list("user", flat=True)) == [alice.pk]
    assert list(second.message.deliveries.values_list("user", flat=True)) == [bob.pk]


def test_inactive_users_are_excluded(make_user: Any) -> None:
    make_user("alice", role="dev")
    gone = make_user("gone", role="dev", is_active=False)
    for audience in (Audience(everyone=True), Audience(roles=("dev",)), to(gone)):
        result = notification_create(audience=audience, title="hi")
        assert not result.message.deliveries.filter(user=gone).exists()
    assert not Inbox.objects.filter(user=gone).exists()


def test_per_user_seq_is_1_to_n_across_notifications(make_user: Any) -> None:
    alice = make_user("alice", role="dev")
    bob = make_user("bob", role="dev")
    carol = make_user("carol")
    notification_create(audience=to(alice), title="a")
    notification_create(audience=Audience(roles=("dev",)), title="dev")
    notification_create(audience=Audience(everyone=True), title="all")
    notification_create(audience=to(carol, bob), title="cb")
    notification_create(audience=to(alice, alice), title="twice named, once delivered")

    assert seqs_of(alice) == [1, 2, 3, 4]
    assert seqs_of(bob) == [1, 2, 3]
    assert seqs_of(carol) == [1, 2]
    assert InboxSequence.objects.get(user=alice).last_seq == 4


def test_recipient_count_and_audience_are_recorded(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    result = notification_create(audience=to(alice, bob), title="hi", message="body")
    assert result.created
    assert result.recipient_count == 2
    assert result.message.audience == {"users": [alice.pk, bob.pk]}


def test_idempotency_key_returns_the_first_notification(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    first = notification_create(audience=to(alice, bob), title="once", idempotency_key="k")
    again = notification_create(audience=to(alice, bob), title="once", idempotency_key="k")
    assert first.created
    assert not again.created
    assert again.message.pk == first.message.pk
    assert again.recipient_count == 2
    assert Message.objects.count() == 1
    assert seqs_of(alice) == [1]
    assert seqs_of(bob) == [1]


def test_idempotency_keys_of_different_publishers_do_not_collide(make_user: Any) -> None:
    alice = make_user("alice")
    first = notification_create(
        audience=to(alice), title="a", idempotency_key="k", publisher="api_key:1"
    )
    second = notification_create(
        audience=to(alice), title="b", idempotency_key="k", publisher="api_key:2"
    )
    legacy = notification_create(audience=to(alice), title="c", idempotency_key="k")
    again = notification_create(
        audience=to(alice), title="a", idempotency_key="k", publisher="api_key:2"
    )
    assert first.created
    assert second.created
    assert legacy.created
    assert not again.created
    assert again.message.pk == second.message.pk
    assert seqs_of(alice) == [1, 2, 3]


@pytest.mark.parametrize(
    "fields",
    [
        {"title": ""},
        {"title": "x" * 201},
        {"message": "x" * 5001},
        {"priority": "whenever"},
        {"url": "x" * 2001},
        {"url": "javascript:alert(1)"},
        {"url": "//evil.example/phish"},
        {"title": "\u200d"},
        {"title": "Deploy\u2028at 5"},
        {"idempotency_key": ""},
        {"idempotency_key": "k" * 201},
    ],
)
def test_bad_content_raises_and_writes_nothing(make_user: Any, fields: dict[str, Any]) -> None:
    alice = make_user("alice")
    arguments: dict[str, Any] = {"audience": to(alice), "title": "ok", **fields}
    with pytest.raises(InvalidInput):
        notification_create(**arguments)
    assert not Message.objects.exists()
    assert not Inbox.objects.exists()


GOOD_URLS = [
    "",
    "https://status.example.com",
    "http://intranet:8080/deploys?id=42#log",
    "HTTPS://STATUS.EXAMPLE.COM/",
    "https://[::1]:8443/x",
    "https://例え.jp/パス",
    "/projects/1/tasks/2",  # what project_url writes
    "/",
]
BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "ftp://files.example.com/x",
    "mailto:someone@example.com",
    "//evil.example/phish",  # protocol-relative: another host
    "/\\evil.example/phish",  # browsers read /\ as //
    "https:evil.example",
    "https:///no-host",
    "http://:80/",
    "https://example.com:99999/",
    "http://[::1/",
    "projects/1",  # relative to whatever page is open
    "https://example.com/a b",
    " https://example.com",
    "https://example.com/\n",
    "https://example.com/\t",
    "java\tscript:alert(1)",  # browsers drop the tab and run it
    "\x00javascript:alert(1)",
    "https://example.com/\u202e",
    "https://example.com/\u2028",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_url_problem_accepts_web_addresses_and_server_paths(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize("url", BAD_URLS)
def test_url_problem_names_the_problem(url: str) -> None:
    problem = url_problem(url)
    assert problem is not None
    assert problem.startswith("url ")


@pytest.mark.parametrize("url", ["/projects/1/tasks/2", "https://status.example.com"])
def test_links_the_server_writes_are_stored(make_user: Any, url: str) -> None:
    alice = make_user("alice")
    result = notification_create(audience=to(alice), title="ok", url=url)
    assert result.message.url == url


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_links_are_refused_by_the_service(make_user: Any, url: str) -> None:
    # Finding 10: the service is what the CLI, REST, admin and projects all reach.
    alice = make_user("alice")
    with pytest.raises(InvalidInput) as raised:
        notification_create(audience=to(alice), title="ok", url=url)
    assert raised.value.code == "invalid_url"
    assert not Message.objects.exists()


@given(st.text(max_size=6))
def test_url_problem_refuses_exactly_separators_and_other_characters(text: str) -> None:
    url = "https://a.example/" + text
    refused = url_problem(url) == "url must not contain spaces, line breaks or control characters"
    assert refused == any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in url)


@pytest.mark.parametrize(
    "title", ["\u200d", "\u3164", "\u00a0", "\u2800", "a\u2028b", "a\u2029b", "a\u0085b", "a\nb"]
)
def test_invisible_or_multi_line_titles_are_refused(make_user: Any, title: str) -> None:
    alice = make_user("alice")
    with pytest.raises(InvalidInput) as raised:
        notification_create(audience=to(alice), title=title)
    assert raised.value.code == "invalid_title"
    assert raised.value.message.startswith("title ")
    assert not Message.objects.exists()


def test_the_doorbell_rings_only_after_commit(
    make_user: Any, rung: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    with django_capture_on_commit_callbacks() as callbacks:
        result = notification_create(audience=to(alice, bob), title="hi")
        assert rung == []  # durable first, push second
    for callback in callbacks:
        callback()
    assert len(rung) == 1
    event = rung[0]
    assert event["kind"] == "notification"
    assert event["message_id"] == result.message.pk
    assert event["shared"]["title"] == "hi"
    assert sorted(event["recipients"]) == sorted(
        [user_id, inbox_id, seq]
        for user_id, inbox_id, seq in Inbox.objects.values_list("user_id", "id", "seq")
    )


def test_a_failed_write_rings_nothing(
    make_user: Any, rung: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(InvalidInput):
        notification_create(audience=to(alice), title="")
    assert rung == []


# notification_create_batch


def item(audience: Audience, title: str = "hi", **fields: Any) -> PublishItem:
    defaults: dict[str, Any] = {
        "message": "",
        "priority": "normal",
        "url": "",
        "event_type": "announcement",
        "idempotency_key": None,
    }
    return PublishItem(audience=audience, title=title, **{**defaults, **fields})


def test_batch_creates_each_item_and_reports_each_outcome(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    refused = InvalidInput("Unknown users: 9.", code="unknown_audience")
    outcomes = notification_create_batch(
        items=[
            item(to(alice), "one"),
            refused,
            item(to(alice), "\u200d"),  # the service's own check: an invisible title
            item(to(alice, bob), "two", url="javascript:x"),
            item(to(alice, bob), "three", priority="high"),
        ],
        publisher="cli",
    )
    assert [o.status for o in outcomes] == ["created", "error", "error", "error", "created"]
    assert outcomes[1] == BatchOutcome("error", None, 0, refused)
    assert [o.error.code if o.error else None for o in outcomes] == [
        None,
        "unknown_audience",
        "invalid_title",
        "invalid_url",
        None,
    ]
    stored = list(Message.objects.order_by("id"))
    assert [m.title for m in stored] == ["one", "three"]
    assert [(o.message_id, o.recipients) for o in outcomes if o.status == "created"] == [
        (stored[0].pk, 1),
        (stored[1].pk, 2),
    ]
    assert stored[1].priority == "high"
    assert stored[1].publisher == "cli"
    assert seqs_of(alice) == [1, 2]
    assert seqs_of(bob) == [1]


def test_batch_seqs_are_gap_free_and_in_item_order(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    notification_create(audience=to(alice), title="before")
    titles = [f"n{i}" for i in range(30)]
    outcomes = notification_create_batch(
        items=[item(to(alice) if i % 3 else to(alice, bob), t) for i, t in enumerate(titles)]
    )
    assert all(o.status == "created" for o in outcomes)
    assert seqs_of(alice) == list(range(1, 32))
    assert seqs_of(bob) == list(range(1, 11))
    in_seq_order = Inbox.objects.filter(user=alice).order_by("seq")
    assert [row.message.title for row in in_seq_order] == ["before", *titles]
    assert InboxSequence.objects.get(user=alice).last_seq == 31


def test_batch_duplicates_earlier_keys_and_keys_repeated_in_the_batch(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    earlier = notification_create(
        audience=to(alice, bob), title="earlier", idempotency_key="k1", publisher="cli"
    )
    other_publisher = notification_create(
        audience=to(alice), title="theirs", idempotency_key="k2", publisher="user:1"
    )
    outcomes = notification_create_batch(
        items=[
            item(to(alice), "again", idempotency_key="k1"),
            item(to(alice), "mine", idempotency_key="k2"),
            item(to(alice), "mine, twice", idempotency_key="k2"),
            item(to(alice), "no key"),
            item(to(alice), "no key"),
            item(to(alice), "bad, with a key", idempotency_key="k3", url="file:///x"),
            item(to(alice), "k3 after the bad one", idempotency_key="k3"),
        ],
        publisher="cli",
    )
    mine = Message.objects.get(publisher="cli", idempotency_key="k2")
    k3 = Message.objects.get(publisher="cli", idempotency_key="k3")
    assert mine.pk != other_publisher.message.pk
    assert [(o.status, o.message_id, o.recipients) for o in outcomes] == [
        ("duplicate", earlier.message.pk, 2),
        ("created", mine.pk, 1),
        ("duplicate", mine.pk, 1),
        ("created", outcomes[3].message_id, 1),
        ("created", outcomes[4].message_id, 1),
        ("error", None, 0),
        ("created", k3.pk, 1),
    ]
    assert outcomes[3].message_id != outcomes[4].message_id
    assert Message.objects.filter(publisher="cli").count() == 5
    assert seqs_of(alice) == list(range(1, 7))  # earlier, theirs, mine, two keyless, k3


def test_batch_resolves_audiences_as_notification_create_does(make_user: Any) -> None:
    alice = make_user("alice", role="developer")
    bob = make_user("bob", role="designer")
    make_user("gone", role="developer", is_active=False)
    carol = make_user("carol")
    project = Project.objects.create(title="Apollo")
    empty = Project.objects.create(title="Empty")
    Membership.objects.create(project=project, user=bob)
    Membership.objects.create(project=project, user=carol)
    audiences = [
        Audience(everyone=True),
        Audience(everyone=True, exclude=(alice.pk,)),
        Audience(users=(alice.pk, bob.pk)),
        Audience(roles=("developer",)),
        Audience(projects=(project.pk,), exclude=(carol.pk,)),
        Audience(projects=(empty.pk,)),
        Audience(users=(carol.pk,), roles=("designer", "developer"), projects=(project.pk,)),
    ]
    expected = [audience_user_ids(audience) for audience in audiences]
    outcomes = notification_create_batch(items=[item(a) for a in audiences])
    got = [
        sorted(Inbox.objects.filter(message__in=[o.message_id]).values_list("user_id", flat=True))
        for o in outcomes
    ]
    assert got == expected
    assert [o.recipients for o in outcomes] == [len(ids) for ids in expected]


def test_batch_statements_do_not_grow_with_the_items(
    make_user: Any, django_assert_max_num_queries: Any
) -> None:
    users = [make_user(f"u{i}") for i in range(20)]
    items = [item(to(users[i % 20]), f"n{i}", idempotency_key=f"k{i}") for i in range(200)]
    # A few statements for the whole batch, however many items: no statement per item.
    with django_assert_max_num_queries(12):
        outcomes = notification_create_batch(items=items)
    assert {o.status for o in outcomes} == {"created"}


def test_batch_gives_seqs_to_users_without_a_sequence_row(make_user: Any) -> None:
    # bulk_create skips the post_save signal that makes a user's sequence row.
    from backend.users.models import User

    alice = make_user("alice")
    User.objects.bulk_create([User(username="bulk1"), User(username="bulk2")])
    bulk = list(User.objects.filter(username__startswith="bulk"))
    assert not InboxSequence.objects.filter(user__in=bulk).exists()
    outcomes = notification_create_batch(
        items=[item(to(*bulk), "one"), item(to(alice, bulk[0]), "two"), item(to(bulk[1]), "3")]
    )
    assert [o.recipients for o in outcomes] == [2, 2, 1]
    assert seqs_of(bulk[0]) == [1, 2]
    assert seqs_of(bulk[1]) == [1, 2]
    assert seqs_of(alice) == [1]
    assert InboxSequence.objects.get(user=bulk[1]).last_seq == 2


def test_batch_rings_once_per_notification_after_commit(
    make_user: Any, rung: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    with django_capture_on_commit_callbacks() as callbacks:
        outcomes = notification_create_batch(
            items=[item(to(alice), "one"), InvalidInput("no"), item(to(alice, bob), "two")]
        )
        assert rung == []  # durable first, push second
    for callback in callbacks:
        callback()
    assert [event["message_id"] for event in rung] == [
        outcomes[0].message_id,
        outcomes[2].message_id,
    ]
    assert [event["shared"]["title"] for event in rung] == ["one", "two"]
    assert sorted(rung[1]["recipients"]) == sorted(
        [user_id, inbox_id, seq]
        for user_id, inbox_id, seq in Inbox.objects.filter(
            message__in=[outcomes[2].message_id]
        ).values_list("user_id", "id", "seq")
    )


def test_batch_of_nothing_but_errors_writes_nothing(make_user: Any) -> None:
    alice = make_user("alice")
    outcomes = notification_create_batch(items=[InvalidInput("no"), item(to(alice), "")])
    assert [o.status for o in outcomes] == ["error", "error"]
    assert not Message.objects.exists()
    assert notification_create_batch(items=[]) == []


# Inbox services


@pytest.fixture
def rows(make_user: Any) -> dict[str, Any]:
    alice = make_user("alice")
    bob = make_user("bob")
    for number in range(4):
        notification_create(audience=to(alice, bob), title=f"n{number}")
    return {"alice": alice, "bob": bob}


def state_of(user: Any) -> list[tuple[bool, bool]]:
    return [
        (row.read_at is not None, row.deleted_at is not None)
        for row in Inbox.objects.filter(user=user).order_by("seq")
    ]


def test_mark_read_and_unread_are_idempotent(rows: dict[str, Any]) -> None:
    alice = rows["alice"]
    chosen = ids_of(alice)[:2]
    first = inbox_mark_read(user_id=alice.pk, ids=chosen)
    assert (first.changed, first.not_found, first.unread_count) == (chosen, [], 2)
    state = state_of(alice)
    again = inbox_mark_read(user_id=alice.pk, ids=chosen)
    assert (again.changed, again.unread_count) == ([], 2)
    assert state_of(alice) == state

    back = inbox_mark_unread(user_id=alice.pk, ids=chosen)
    assert (back.changed, back.unread_count) == (chosen, 4)
    assert inbox_mark_unread(user_id=alice.pk, ids=chosen).changed == []


def test_actions_never_touch_other_users_rows(rows: dict[str, Any]) -> None:
    alice, bob = rows["alice"], rows["bob"]
    before = state_of(bob)
    theirs = ids_of(bob)
    assert inbox_mark_read(user_id=alice.pk, ids=theirs).not_found == theirs
    assert inbox_delete(user_id=alice.pk, ids=theirs).not_found == theirs
    inbox_mark_all_read(user_id=alice.pk)
    assert state_of(bob) == before


def test_mark_all_read_respects_its_bound(rows: dict[str, Any]) -> None:
    alice = rows["alice"]
    bounded = inbox_mark_all_read(user_id=alice.pk, up_to_seq=2)
    assert bounded.changed == ids_of(alice)[:2]
    assert bounded.unread_count == 2
    assert inbox_mark_all_read(user_id=alice.pk, up_to_seq=2).changed == []
    assert inbox_mark_all_read(user_id=alice.pk).unread_count == 0


def test_delete_is_idempotent_and_hides_rows_from_read_state(rows: dict[str, Any]) -> None:
    alice = rows["alice"]
    chosen = ids_of(alice)[:1]
    assert inbox_delete(user_id=alice.pk, ids=chosen).changed == chosen
    assert inbox_delete(user_id=alice.pk, ids=chosen).changed == []
    # A deleted row cannot be marked any more, but it is still the caller's (not "not found").
    marked = inbox_mark_read(user_id=alice.pk, ids=chosen)
    assert marked.changed == []
    assert marked.unread_count == 3


def test_read_state_changes_ring_with_the_new_count(
    rows: dict[str, Any], rung: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    alice = rows["alice"]
    chosen = ids_of(alice)[:1]
    with django_capture_on_commit_callbacks(execute=True):
        inbox_mark_read(user_id=alice.pk, ids=chosen)
    assert rung[-1]["kind"] == "read_state"
    assert rung[-1]["user_id"] == alice.pk
    assert rung[-1]["updates"] == [[chosen[0], True]]
    assert rung[-1]["unread_count"] == 3


# The unread count kept in the sequence row (InboxSequence.unread)


def unread_rows(user: Any) -> int:
    """The user's unread rows counted from the rows themselves."""
    return Inbox.objects.filter(user=user, read_at__isnull=True, deleted_at__isnull=True).count()


def counter(user: Any) -> int:
    return int(InboxSequence.objects.get(user=user).unread)


def assert_counted(*users: Any) -> None:
    for user in users:
        assert counter(user) == unread_rows(user), user.username


def test_the_counter_follows_single_and_batch_publishes(make_user: Any) -> None:
    from backend.users.models import User

    alice, bob = make_user("alice"), make_user("bob")
    # bulk_create skips the signal: no sequence row until the first notification.
    User.objects.bulk_create([User(username="bulk")])
    bulk = User.objects.get(username="bulk")
    notification_create(audience=to(alice, bob), title="one")
    notification_create(audience=to(alice, bulk), title="two")
    assert (counter(alice), counter(bob), counter(bulk)) == (2, 1, 1)
    # A batch adds each user's rows, however many items name them.
    notification_create_batch(
        items=[item(to(alice, bob), "a"), item(to(alice), "b"), item(to(bulk, bob), "c")]
    )
    assert (counter(alice), counter(bob), counter(bulk)) == (4, 3, 2)
    # A repeated idempotency key adds nothing, alone or in a batch.
    notification_create(audience=to(alice), title="k", idempotency_key="k1")
    notification_create(audience=to(alice), title="k", idempotency_key="k1")
    notification_create_batch(items=[item(to(alice), "k", idempotency_key="k1")] * 2)
    assert counter(alice) == 5
    assert_counted(alice, bob, bulk)


def test_the_counter_follows_every_read_state_change(rows: dict[str, Any]) -> None:
    alice, bob = rows["alice"], rows["bob"]
    mine, theirs = ids_of(alice), ids_of(bob)
    assert counter(alice) == 4

    assert inbox_mark_read(user_id=alice.pk, ids=mine[:2]).unread_count == 2
    assert inbox_mark_read(user_id=alice.pk, ids=mine[:3]).unread_count == 1  # one more
    assert counter(alice) == 1
    assert inbox_mark_unread(user_id=alice.pk, ids=[mine[0]]).unread_count == 2
    assert inbox_mark_unread(user_id=alice.pk, ids=[mine[0], mine[3]]).unread_count == 2
    # Deleting a read row (mine[1]) changes nothing; an unread one (mine[0]) counts.
    assert inbox_delete(user_id=alice.pk, ids=[mine[1]]).unread_count == 2
    assert inbox_delete(user_id=alice.pk, ids=[mine[0]]).unread_count == 1
    assert inbox_delete(user_id=alice.pk, ids=[mine[0], mine[1]]).unread_count == 1
    # A deleted row can be marked neither way.
    assert inbox_mark_unread(user_id=alice.pk, ids=[mine[1]]).unread_count == 1
    assert inbox_mark_read(user_id=alice.pk, ids=[mine[0]]).unread_count == 1
    assert_counted(alice)
    # Ids of another user change neither user's count.
    assert inbox_mark_read(user_id=alice.pk, ids=theirs).unread_count == 1
    assert inbox_delete(user_id=alice.pk, ids=theirs).unread_count == 1
    assert (counter(alice), counter(bob)) == (1, 4)

    notification_create(audience=to(alice), title="later")  # seq 5
    assert inbox_mark_all_read(user_id=alice.pk, up_to_seq=4).unread_count == 1
    assert inbox_mark_all_read(user_id=alice.pk, up_to_seq=4).unread_count == 1
    assert inbox_mark_all_read(user_id=alice.pk).unread_count == 0
    assert inbox_mark_all_read(user_id=alice.pk).unread_count == 0
    assert (counter(alice), counter(bob)) == (0, 4)
    assert_counted(alice, bob)


def test_read_state_of_a_user_without_a_sequence_row_is_zero(make_user: Any) -> None:
    from backend.users.models import User

    User.objects.bulk_create([User(username="bulk")])
    bulk = User.objects.get(username="bulk")
    assert inbox_mark_all_read(user_id=bulk.pk).unread_count == 0
    assert inbox_mark_read(user_id=bulk.pk, ids=[1]).unread_count == 0
    assert not InboxSequence.objects.filter(user=bulk).exists()


# One operation on the inbox: (kind, user index, a list of choices).
_operations = st.tuples(
    st.sampled_from(["publish", "batch", "read", "unread", "delete", "all_read", "all_up_to"]),
    st.integers(0, 2),
    st.lists(st.integers(0, 40), max_size=4),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_operations, min_size=1, max_size=12))
def test_the_counter_equals_the_unread_rows_after_any_sequence_of_changes(
    operations: list[tuple[str, int, list[int]]],
) -> None:
    """Every service that adds rows or changes their read state, in any order, on
    anyone's ids: after each step every user's counter is their unread rows, and
    what the service answers is that counter. (The examples share the database: the
    users and rows of earlier ones stay, which the counters must survive too.)"""
    from backend.users.models import User

    users = [User.objects.get_or_create(username=f"h{index}")[0] for index in range(3)]
    for kind, who, choices in operations:
        user = users[who]
        everyone_ids = list(Inbox.objects.order_by("id").values_list("id", flat=True))
        chosen = [everyone_ids[c % len(everyone_ids)] for c in choices] if everyone_ids else []
        chosen += [c + 10**9 for c in choices[:1]]  # an id nobody has
        named = [users[c % 3] for c in choices] or [user]
        answered: int | None = None
        if kind == "publish":
            notification_create(audience=to(*named), title="h")
        elif kind == "batch":
            notification_create_batch(items=[item(to(u), "h") for u in named] + [item(to(user))])
        elif kind == "read":
            answered = inbox_mark_read(user_id=user.pk, ids=chosen).unread_count
        elif kind == "unread":
            answered = inbox_mark_unread(user_id=user.pk, ids=chosen).unread_count
        elif kind == "delete":
            answered = inbox_delete(user_id=user.pk, ids=chosen).unread_count
        elif kind == "all_read":
            answered = inbox_mark_all_read(user_id=user.pk).unread_count
        else:
            answered = inbox_mark_all_read(user_id=user.pk, up_to_seq=sum(choices)).unread_count
        if answered is not None:
            assert answered == unread_rows(user)
        assert_counted(*users)


@pytest.mark.parametrize("ids", [None, "1", [True], [0], [2**63], ["1"], list(range(1, 1002))])
def test_bad_ids_raise(rows: dict[str, Any], ids: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inbox_mark_read(user_id=rows["alice"].pk, ids=ids)
    assert caught.value.code == "invalid_ids"


# API keys


def test_api_keys_authenticate_until_revoked(make_user: Any) -> None:
    key, raw = api_key_create(name="CI", created_by=make_user("staff", is_staff=True))
    assert raw.startswith(key.prefix)
    assert key.hashed_key != raw
    assert raw not in str(list(ApiKey.objects.values_list("name", "prefix", "hashed_key")))
    assert api_key_authenticate(raw=raw) == key
    assert api_key_authenticate(raw=raw + "x") is None
    api_key_revoke(key=key)
    api_key_revoke(key=key)
    assert api_key_authenticate(raw=raw) is None
