"""Inbox rows written behind the push (backend/notifications/inbox_log.py): the record a
publish leaves, what every reader sees before it is settled, and a killed server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from django.db import connection
from websockets.sync.client import connect

from backend.notifications import inbox_log, selectors, services
from backend.notifications.models import Inbox, InboxPending, Message
from backend.notifications.selectors import Audience
from backend.users.models import User
from backend.users.services import session_start
from backend.users.tokens import read_access_token
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20
LATER_FROM_DEFAULT = 8  # TRAY_INBOX_LATER_FROM's default, which the servers below keep


@pytest.fixture(autouse=True)
def _every_audience_later(settings: Any) -> None:
    """A publish to one or two users is left for later too (the rule on size has its
    own test); the servers below keep the default."""
    settings.TRAY = {**settings.TRAY, "INBOX_LATER_FROM": 1}


def _publish_later(*users: User, title: str = "later") -> services.NotificationResult:
    return services.notification_create(
        audience=Audience(users=tuple(u.pk for u in users)), title=title, rows_later=True
    )


def _rows() -> list[tuple[int, int, int, int]]:
    """Every written Inbox row: (id, user, message, seq)."""
    return list(Inbox.objects.order_by("id").values_list("id", "user_id", "message_id", "seq"))


def test_a_publish_leaves_one_record_and_settling_writes_exactly_the_pushed_rows(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.notifications import delivery

    alice, bob = make_user("alice"), make_user("bob")
    rung: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery, "ring", rung.append)
    result = _publish_later(alice, bob)
    assert result.recipient_count == 2
    assert _rows() == []
    # One record per band of users (alice and bob have neighbouring ids: two bands).
    records = list(InboxPending.objects.order_by("band"))
    assert [r.band for r in records] == sorted({inbox_log.band_of(u.pk) for u in (alice, bob)})
    assert {r.message_id for r in records} == {result.message.pk}
    for record in records:
        assert {inbox_log.band_of(user) for user, _ in json.loads(record.rows)} == {record.band}
    assert sorted(row for r in records for row in json.loads(r.rows)) == [
        [alice.pk, 1],
        [bob.pk, 1],
    ]
    # The doorbell carries each recipient's (user, row id, seq): what the push sends.
    (event,) = rung
    pushed = [tuple(row) for row in event["recipients"]]
    assert [(user, seq) for user, _, seq in pushed] == [(alice.pk, 1), (bob.pk, 1)]
    # A record's rows take the ids from its first_id on.
    reserved = {
        (user, record.first_id + index)
        for record in records
        for index, (user, _) in enumerate(json.loads(record.rows))
    }
    assert reserved == {(user, row_id) for user, row_id, _ in pushed}

    assert inbox_log.settle() == 2
    assert _rows() == sorted((row_id, user, result.message.pk, seq) for user, row_id, seq in pushed)
    assert not InboxPending.objects.exists()
    assert inbox_log.settle() == 0


def _first_ids(message: Message) -> dict[int, int]:
    """Band -> first_id of the message's records."""
    return dict(InboxPending.objects.filter(message=message).values_list("band", "first_id"))


def test_a_bands_rows_take_neighbouring_ids_publish_after_publish(
    make_user: Callable[..., User],
) -> None:
    """Each band's rows come from a block of ids of its own, so a lane step's rows sit
    together in the table instead of between every other band's."""
    alice, bob = make_user("alice"), make_user("bob")
    first = _publish_later(alice, bob, title="one")
    second = _publish_later(alice, bob, title="two")
    third = _publish_later(alice, title="three")
    before, after, last = (
        _first_ids(first.message),
        _first_ids(second.message),
        _first_ids(third.message),
    )
    alices, bobs = inbox_log.band_of(alice.pk), inbox_log.band_of(bob.pk)
    assert after == {alices: before[alices] + 1, bobs: before[bobs] + 1}
    assert last == {alices: before[alices] + 2}
    assert abs(before[alices] - before[bobs]) >= inbox_log.BAND_BLOCK_IDS
    pushed = {(u, i, q) for r in (first, second, third) for u, i, q in _pushed(r.message)}
    assert inbox_log.settle() == 5
    assert {(user, row_id, seq) for row_id, user, _, seq in _rows()} == pushed


def _pushed(message: Message) -> list[tuple[int, int, int]]:
    """(user, row id, seq) a message's records stand for."""
    return [
        (user, record.first_id + index, seq)
        for record in InboxPending.objects.filter(message=message)
        for index, (user, seq) in enumerate(json.loads(record.rows))
    ]


def test_a_block_reserved_by_a_rolled_back_publish_is_nobodys(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservation is undone with the publish; ids handed out after it (a block
    reserved again, rows written at once) never meet the rows of a later publish."""
    from django.db import transaction

    monkeypatch.setattr(inbox_log, "_blocks", {})  # no block left by an earlier test
    alice = make_user("alice")

    class Refused(Exception):
        pass

    def publish_and_roll_back() -> None:
        with transaction.atomic():
            _publish_later(alice, title="rolled back")
            raise Refused

    with pytest.raises(Refused):
        publish_and_roll_back()
    assert inbox_log._blocks == {}
    kept = _publish_later(alice, title="kept")
    at_once = services.notification_create(audience=Audience(users=(alice.pk,)), title="now")
    later = _publish_later(alice, title="later again")
    assert inbox_log.settle() == 2
    ids = [row_id for row_id, _, _, _ in _rows()]
    assert len(ids) == len(set(ids)) == 3
    assert sorted(message for _, _, message, _ in _rows()) == sorted(
        r.message.pk for r in (kept, at_once, later)
    )
    # The row written at once took an id above the block the pending rows came from.
    at_once_id = Inbox.objects.get(message=at_once.message).pk
    assert at_once_id > inbox_log._blocks[inbox_log.band_of(alice.pk)][1] - 1


def test_every_reader_sees_pending_rows_without_waiting_for_the_settle(
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    first = _publish_later(alice, title="one")
    second = _publish_later(alice, title="two")
    assert InboxPending.objects.count() == 2

    listed = selectors.inbox_list(user_id=alice.pk)
    assert [(row.seq, row.message.title) for row in listed] == [(2, "two"), (1, "one")]
    assert not InboxPending.objects.exists()  # the reader wrote them first

    third = _publish_later(alice, title="three")
    replay = selectors.inbox_replay_after(user_id=alice.pk, after_seq=1, limit=10)
    assert [row.seq for row in replay] == [2, 3]
    assert selectors.inbox_unread_count(user_id=alice.pk) == 3

    fourth = _publish_later(alice, title="four")
    (row_id,) = [
        i for i, u, m, _ in _settled_rows_of(fourth.message.pk, peek=True) if u == alice.pk
    ]
    change = services.inbox_mark_read(user_id=alice.pk, ids=[row_id])
    assert change.changed == [row_id]
    assert change.not_found == []
    assert change.unread_count == 3
    assert {first.message.pk, second.message.pk, third.message.pk} <= set(
        Inbox.objects.values_list("message_id", flat=True)
    )


def _settled_rows_of(message_id: int, *, peek: bool) -> list[tuple[int, int, int, int]]:
    """The rows a pending record stands for, read from the record itself (``peek``)."""
    assert peek
    record = InboxPending.objects.get(message_id=message_id)
    return [
        (record.first_id + index, user, message_id, seq)
        for index, (user, seq) in enumerate(json.loads(record.rows))
    ]


def test_the_socket_opening_replays_pending_rows(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    session_id = read_access_token(session_start(user=alice).access).session_id
    _publish_later(alice, title="one")
    _publish_later(alice, title="two")
    opening = selectors.socket_opening(
        user_id=alice.pk, session_id=session_id, after_seq=0, limit=10
    )
    assert opening.replay is not None
    assert [row.seq for row in opening.replay] == [1, 2]
    assert opening.state.unread_count == 2


def test_rows_written_at_once_between_pending_ones_leave_no_gap(
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    later = _publish_later(alice, title="later")
    now = services.notification_create(audience=Audience(users=(alice.pk,)), title="now")
    assert list(Inbox.objects.values_list("seq", flat=True)) == [2]  # only the one written
    replay = selectors.inbox_replay_after(user_id=alice.pk, after_seq=0, limit=10)
    assert [row.seq for row in replay] == [1, 2]
    ids = dict(Inbox.objects.values_list("message_id", "id"))
    # The ids reserved for the pending row stay below the one written after it.
    assert ids[later.message.pk] < ids[now.message.pk]


def test_rows_of_a_user_deleted_before_the_settle_are_left_out(
    make_user: Callable[..., User],
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    result = _publish_later(alice, bob)
    bob.delete()
    assert inbox_log.settle() == 1
    assert [(u, m) for _, u, m, _ in _rows()] == [(alice.pk, result.message.pk)]


def test_rows_of_a_user_deleted_are_left_out_by_a_settle_inside_a_transaction(
    make_user: Callable[..., User],
) -> None:
    # Inside a caller's transaction (a read barrier in a service) the commit is the
    # caller's: the rows are looked at before they are written, not refused at commit.
    from django.db import transaction

    alice, bob = make_user("alice"), make_user("bob")
    result = _publish_later(alice, bob)
    bob.delete()
    with transaction.atomic():
        assert inbox_log.settle() == 1
    assert [(u, m) for _, u, m, _ in _rows()] == [(alice.pk, result.message.pk)]
    assert not InboxPending.objects.exists()


def test_pending_rows_counts_what_waits_until_a_settle_takes_it(
    make_user: Callable[..., User],
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    inbox_log.settle()
    assert inbox_log.pending_rows() == 0
    _publish_later(alice, bob)
    _publish_later(alice, bob, carol)
    assert inbox_log.pending_rows() == 5
    assert inbox_log.settle() == 5
    assert inbox_log.pending_rows() == 0


def test_a_message_deleted_before_the_settle_takes_its_record_with_it(
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    result = _publish_later(alice)
    Message.objects.filter(pk=result.message.pk).delete()
    assert not InboxPending.objects.exists()
    assert inbox_log.settle() == 0


def test_a_large_backlog_is_written_in_steps(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [make_user(f"user{i}") for i in range(5)]
    for number in range(6):
        _publish_later(*users, title=f"n{number}")
    monkeypatch.setattr(inbox_log, "SETTLE_CHUNK_ROWS", 12)
    steps: list[int] = []
    original = inbox_log._settle_up_to

    def step(bound: int, bands: Sequence[int]) -> int:
        steps.append(bound)
        return original(bound, bands)

    monkeypatch.setattr(inbox_log, "_settle_up_to", step)
    assert inbox_log.settle() == 30
    assert len(steps) == 3  # 30 rows, at most 12 a step
    for user in users:
        seqs = list(Inbox.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
        assert seqs == [1, 2, 3, 4, 5, 6]


def test_the_lanes_steps_settle_one_band_each_in_turn(make_user: Callable[..., User]) -> None:
    users = [make_user(f"user{i}") for i in range(2 * inbox_log.BANDS)]
    inbox_log.settle()
    _publish_later(*users)
    assert InboxPending.objects.count() == inbox_log.BANDS
    written: list[int] = []
    more = True
    while more:
        left = set(InboxPending.objects.values_list("band", flat=True))
        more = inbox_log.settle_step()
        now = set(InboxPending.objects.values_list("band", flat=True))
        assert len(left - now) <= 1  # one band a step
        written.append(len(_rows()))
    assert written[-1] == len(users)
    assert len(written) <= inbox_log.BANDS
    assert not InboxPending.objects.exists()
    assert inbox_log.settle_step() is False  # nothing pending: the lane stops stepping


def test_a_step_of_a_band_with_nothing_pending_runs_no_statement(
    make_user: Callable[..., User],
) -> None:
    """The lane steps through the bands every TRAY_INBOX_SETTLE_MS / BANDS while
    anything is pending: a band whose flag says none of its records wait costs
    nothing, not an empty transaction."""
    from django.test.utils import CaptureQueriesContext

    alice = make_user("alice")
    inbox_log.settle()
    _publish_later(alice)
    band = inbox_log.band_of(alice.pk)
    for _ in range(inbox_log.BANDS - 1):  # every other band, in the lane's turn
        if inbox_log._next_band == band:
            inbox_log._next_band = (band + 1) % inbox_log.BANDS
        with CaptureQueriesContext(connection) as queries:
            assert inbox_log.settle_step() is True  # alice's band still waits
        assert len(queries) == 0
    assert InboxPending.objects.count() == 1
    inbox_log._next_band = band
    assert inbox_log.settle_step() is False
    assert not InboxPending.objects.exists()


def test_a_readers_barrier_on_a_busy_server_writes_only_its_users_band(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [make_user(f"user{i}") for i in range(inbox_log.BANDS)]
    inbox_log.settle()
    monkeypatch.setattr(inbox_log, "READER_SETTLES_ALL_ROWS", 0)  # "many rows wait"
    result = _publish_later(*users)
    reader = users[3]
    replay = selectors.inbox_replay_after(user_id=reader.pk, after_seq=0, limit=5)
    assert [row.seq for row in replay] == [1]
    assert [(u, m) for _, u, m, _ in _rows()] == [(reader.pk, result.message.pk)]
    left = set(InboxPending.objects.values_list("band", flat=True))
    assert left == {inbox_log.band_of(u.pk) for u in users} - {inbox_log.band_of(reader.pk)}
    # A reader of many users' rows (a message's count) writes every band's.
    assert services._delivery_count(result.message) == len(users)
    assert not InboxPending.objects.exists()


def test_a_reader_with_few_rows_waiting_writes_every_band_in_one_step(
    make_user: Callable[..., User],
) -> None:
    """A reconnect storm's first reader writes what was published while the clients
    were away in one settle (begin, insert, delete, commit: no look for the step's
    end first, and not one settle per band), and the
    readers after it find nothing to write: one statement each (B5)."""
    from django.test.utils import CaptureQueriesContext

    users = [make_user(f"user{i}") for i in range(2 * inbox_log.BANDS)]
    inbox_log.settle()
    for n in range(3):
        _publish_later(*users, title=f"away {n}")
    assert InboxPending.objects.count() == 3 * inbox_log.BANDS
    with CaptureQueriesContext(connection) as first:
        selectors.inbox_replay_after(user_id=users[0].pk, after_seq=0, limit=5)
    assert not InboxPending.objects.exists()
    assert len(_rows()) == 3 * len(users)
    statements = [q["sql"].split()[0].upper() for q in first.captured_queries]
    assert statements == ["BEGIN", "INSERT", "DELETE", "COMMIT", "SELECT"]
    for user in users[1:]:
        with CaptureQueriesContext(connection) as after:
            replay = selectors.inbox_replay_after(user_id=user.pk, after_seq=0, limit=5)
        assert [row.seq for row in replay] == [1, 2, 3]
        assert len(after) == 1


def test_a_record_from_before_the_bands_is_written_by_any_users_barrier(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_user("alice")
    message = Message.objects.create(title="before the bands")
    InboxPending.objects.create(message=message, first_id=20_000, rows=f"[[{alice.pk}, 1]]")
    assert InboxPending.objects.get().band == inbox_log.ANY_BAND
    monkeypatch.setattr(inbox_log, "_trusted", False)
    replay = selectors.inbox_replay_after(user_id=alice.pk, after_seq=0, limit=5)
    assert [row.seq for row in replay] == [1]
    assert not InboxPending.objects.exists()


def test_a_process_that_does_not_trust_its_count_looks_at_the_table(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_user("alice")
    _publish_later(alice)
    inbox_log.settle()
    # Another process (a server) leaves a record; this one's flag knows nothing of it.
    message = Message.objects.create(title="elsewhere")
    InboxPending.objects.create(message=message, first_id=10_000, rows=f"[[{alice.pk}, 2]]")
    assert selectors.inbox_replay_after(user_id=alice.pk, after_seq=1, limit=5) == []
    monkeypatch.setattr(inbox_log, "_trusted", False)
    replay = selectors.inbox_replay_after(user_id=alice.pk, after_seq=1, limit=5)
    assert [row.seq for row in replay] == [2]
    assert Inbox.objects.filter(id=10_000, user=alice, seq=2).exists()


def test_the_database_watch_writes_another_servers_pending_rows_it_needs(
    make_user: Callable[..., User],
) -> None:
    from django.test.utils import CaptureQueriesContext

    alice = make_user("alice")
    written = services.notification_create(audience=Audience(users=(alice.pk,)), title="at once")
    with CaptureQueriesContext(connection) as queries:
        rows = selectors.inbox_rows_for_users(message_id=written.message.pk, user_ids=[alice.pk])
    assert [(u, q) for u, _, q in rows] == [(alice.pk, 1)]
    assert len(queries) == 2  # nothing pending for it: one look, no settle
    # Another server's lane left this one pending; this process's flag knows nothing.
    message = Message.objects.create(title="elsewhere")
    InboxPending.objects.create(message=message, first_id=20_000, rows=f"[[{alice.pk}, 2]]")
    rows = selectors.inbox_rows_for_users(message_id=message.pk, user_ids=[alice.pk])
    assert rows == [(alice.pk, 20_000, 2)]


def test_a_publish_to_a_few_users_is_written_at_once(
    make_user: Callable[..., User], settings: Any
) -> None:
    settings.TRAY = {**settings.TRAY, "INBOX_LATER_FROM": 3}
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    _publish_later(alice, bob)
    assert len(_rows()) == 2
    assert not InboxPending.objects.exists()
    _publish_later(alice, bob, carol)
    assert len(_rows()) == 2
    bands = {inbox_log.band_of(user.pk) for user in (alice, bob, carol)}
    assert InboxPending.objects.count() == len(bands)


def test_it_is_off_at_zero_and_on_postgresql(settings: Any) -> None:
    settings.TRAY = {**settings.TRAY, "INBOX_SETTLE_MS": 0}
    assert inbox_log.settle_delay() is None
    settings.TRAY = {**settings.TRAY, "INBOX_SETTLE_MS": 250}
    # A step every 250 ms / BANDS: each band's rows gather for 250 ms.
    assert inbox_log.settle_delay() == pytest.approx(0.25 / inbox_log.BANDS)
    assert (
        connection.vendor == "sqlite"
    )  # PostgreSQL: tests/backend/notifications/test_seq_postgres.py


# --- the real server ------------------------------------------------------------------------


def _server_db(data_dir: Any) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "db.sqlite3", timeout=TIMEOUT)


def _counts(data_dir: Any) -> tuple[int, int]:
    """(written Inbox rows, pending rows) in the server's file."""
    with _server_db(data_dir) as db:
        (rows,) = db.execute("SELECT count(*) FROM notifications_inbox").fetchone()
        (pending,) = db.execute(
            "SELECT coalesce(sum(json_array_length(rows)), 0) FROM notifications_inboxpending"
        ).fetchone()
    db.close()
    return int(rows), int(pending)


def _team(server: Any) -> list[int]:
    """alice and enough new users for a publish's rows to be left for later."""
    script = (
        "from backend.users.models import User\n"
        f"names = [f'team{{n}}' for n in range({LATER_FROM_DEFAULT})]\n"
        "for name in names: User.objects.create_user(name, password='x')\n"
        "users = User.objects.filter(username__in=['alice', *names]).order_by('username')\n"
        "print(list(users.values_list('id', flat=True)))"
    )
    made = server.cli("manage", "shell", "-c", script, check=True)
    ids = json.loads(made.stdout.strip().splitlines()[-1])
    assert len(ids) == LATER_FROM_DEFAULT + 1
    return [int(i) for i in ids]


def _publish(url: str, token: str, users: list[int], title: str) -> None:
    answer = httpx.post(
        f"{url}/api/notifications/",
        json={"audience": {"users": users}, "title": title},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 201, answer.text


def _replayed(ws_url: str, token: str) -> list[dict[str, Any]]:
    """The notifications a socket that connects with cursor 0 is replayed."""
    replayed: list[dict[str, Any]] = []
    with connect(f"{ws_url}?token={token}&after_seq=0", open_timeout=TIMEOUT) as ws:
        while (frame := json.loads(ws.recv(timeout=TIMEOUT)))["type"] != "caught_up":
            if frame["type"] == "notification_created":
                replayed.append(frame["payload"])
    return replayed


def _never_settling(server_factory: ServerFactory) -> tuple[RunningServer, str, list[int]]:
    """A server that settles an hour after a publish (so rows stay pending), its admin's
    token, and a team to publish to, with its first publish made.

    The first publish to a host goes the full way (its answer's headers are learned
    from it) and is written at once: the next ones take the fast path.
    """
    server = server_factory(demo=True, env={"TRAY_INBOX_SETTLE_MS": "3600000"})
    admin = server.access_token("admin")
    team = _team(server)
    _publish(server.url, admin, team, "first")
    return server, admin, team


def test_a_killed_server_loses_no_pending_row_and_writes_them_at_start(
    server_factory: ServerFactory,
) -> None:
    server, admin, team = _never_settling(server_factory)
    before = _counts(server.data_dir)
    for number in range(3):
        _publish(server.url, admin, team, f"kept {number}")
    assert _counts(server.data_dir) == (before[0], before[1] + 3 * len(team))
    server.kill()

    again = server_factory(demo=True, data_dir=server.data_dir)
    assert _counts(again.data_dir) == (before[0] + 3 * len(team), 0)
    replayed = _replayed(again.ws_url, again.access_token("alice"))
    assert [n["title"] for n in replayed][-4:] == ["first", "kept 0", "kept 1", "kept 2"]
    assert [n["seq"] for n in replayed] == list(range(1, len(replayed) + 1))


def test_a_row_marked_read_the_moment_it_is_pushed_is_written_first(
    server_factory: ServerFactory,
) -> None:
    # No settle for an hour: only the mark_read's own barrier can write the row.
    server, admin, team = _never_settling(server_factory)
    token = server.access_token("alice")
    with _server_db(server.data_dir) as db:
        (alice,) = db.execute("SELECT id FROM users_user WHERE username = 'alice'").fetchone()
    db.close()
    others = [user for user in team if inbox_log.band_of(user) != inbox_log.band_of(alice)]
    assert others  # the team spans more than alice's band
    with connect(f"{server.ws_url}?token={token}", open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "hello"
        _publish(server.url, admin, team, "pushed")
        assert _counts(server.data_dir)[1] == len(team)  # its rows are pending
        while (frame := json.loads(ws.recv(timeout=TIMEOUT)))["type"] != "notification_created":
            pass
        assert frame["payload"]["title"] == "pushed"
        row_id = frame["payload"]["id"]
        # Marked read the moment it arrives: the server writes the pending row first.
        ws.send(json.dumps({"type": "mark_read", "ref": "r1", "payload": {"ids": [row_id]}}))
        while (ack := json.loads(ws.recv(timeout=TIMEOUT)))["type"] != "ack":
            pass
        assert ack["payload"]["changed"] == [row_id], ack
    with _server_db(server.data_dir) as db:
        found = db.execute(
            "SELECT read_at IS NOT NULL FROM notifications_inbox WHERE id = ?", [row_id]
        ).fetchone()
    db.close()
    assert found == (1,)
    # With this few rows waiting, the barrier wrote every band's, not alice's alone
    # (a busy server's reader writes only its band's: the test above).
    assert _counts(server.data_dir)[1] == 0
