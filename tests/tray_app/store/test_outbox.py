"""tray_app/store/outbox.py on real SQLite files: local change + queued action, one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.db import open_database
from tray_app.store.errors import StoreError
from tray_app.store.inbox import Filters, Inbox
from tray_app.store.outbox import MAX_IDS_PER_ACTION, Outbox, OutboxAction


def payload(seq: int, **fields: Any) -> Notification:
    base: dict[str, Any] = {
        "id": 1000 + seq,
        "seq": seq,
        "is_read": False,
        "title": f"title {seq}",
        "message": "message",
        "priority": "normal",
        "created_at": "2026-11-22T09:30:00Z",
    }
    base.update(fields)
    return parse_notification(base)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def database(path: Path) -> Iterator[sqlite3.Connection]:
    opened = open_database(path)
    yield opened.connection
    opened.connection.close()


@pytest.fixture
def inbox(database: sqlite3.Connection) -> Inbox:
    inbox = Inbox(database)
    inbox.ingest([payload(seq) for seq in range(1, 6)])
    return inbox


@pytest.fixture
def outbox(database: sqlite3.Connection, inbox: Inbox) -> Outbox:
    return Outbox(database, inbox)


def unread_seqs(inbox: Inbox) -> list[int]:
    return [n.seq for n in inbox.search(Filters(unread=True))]


def test_mark_read_applies_locally_and_queues(inbox: Inbox, outbox: Outbox) -> None:
    before = datetime.now(UTC)
    action = outbox.mark_read([1002, 1001, 1002])
    assert action.kind == "mark_read"
    assert action.ids == (1002, 1001)
    assert action.up_to_seq is None
    assert action.attempts == 0
    assert before <= action.created_at <= datetime.now(UTC)
    assert action.created_at.tzinfo is not None
    assert unread_seqs(inbox) == [5, 4, 3]
    assert outbox.pending() == [action]


def test_every_kind_applies_locally_and_is_pending_in_order(inbox: Inbox, outbox: Outbox) -> None:
    read = outbox.mark_read([1001, 1002, 1003])
    unread = outbox.mark_unread([1002])
    deleted = outbox.delete([1003])
    all_read = outbox.mark_all_read(4)
    assert unread_seqs(inbox) == [5]  # 2 read again by mark_all_read, 3 gone, 5 above 4
    assert inbox.get(1003) is None
    assert inbox.cursor() == 5  # a deletion never moves the cursor back
    pending = outbox.pending()
    assert pending == [read, unread, deleted, all_read]
    assert [a.kind for a in pending] == ["mark_read", "mark_unread", "delete", "mark_all_read"]
    assert [a.id for a in pending] == sorted(a.id for a in pending)
    assert all_read.ids == ()
    assert all_read.up_to_seq == 4
    everything = outbox.mark_all_read(None)
    assert everything.up_to_seq is None
    assert unread_seqs(inbox) == []


def test_actions_are_queued_even_when_nothing_changes_here(inbox: Inbox, outbox: Outbox) -> None:
    """The server's state may differ from ours (pruned rows, another desktop): send anyway."""
    outbox.mark_read([1001])
    again = outbox.mark_read([1001, 424242])
    assert again.ids == (1001, 424242)
    assert len(outbox.pending()) == 2


def test_pending_survives_reopening_the_file(path: Path, outbox: Outbox) -> None:
    first = outbox.mark_read([1001])
    second = outbox.delete([1004, 1005])
    third = outbox.mark_all_read(3)
    outbox.record_failure(second.id)

    reopened = open_database(path)
    try:
        inbox = Inbox(reopened.connection)
        survivor = Outbox(reopened.connection, inbox)
        pending = survivor.pending()
        assert [a.id for a in pending] == [first.id, second.id, third.id]
        assert pending[0] == first
        assert pending[1].ids == (1004, 1005)
        assert pending[1].attempts == 1
        assert pending[1].created_at == second.created_at
        assert pending[2] == third
        assert inbox.get(1004) is None  # the local change was committed with the action
        assert unread_seqs(inbox) == []
    finally:
        reopened.connection.close()


def test_complete_record_failure_and_drop(outbox: Outbox) -> None:
    first = outbox.mark_read([1001])
    second = outbox.mark_unread([1001])
    third = outbox.delete([1002])

    assert outbox.record_failure(second.id) == 1
    assert outbox.record_failure(second.id) == 2
    outbox.complete(first.id)
    outbox.complete(first.id)  # confirming twice is harmless
    assert [(a.id, a.attempts) for a in outbox.pending()] == [(second.id, 2), (third.id, 0)]

    outbox.drop(second.id)
    assert outbox.pending() == [third]
    with pytest.raises(StoreError, match="no pending outbox action"):
        outbox.record_failure(second.id)

    outbox.complete(third.id)
    assert outbox.pending() == []
    # Ids are never reused, so a late confirmation cannot remove a newer action.
    fourth = outbox.mark_read([1003])
    assert fourth.id > third.id


def test_clear_forgets_every_action(outbox: Outbox) -> None:
    outbox.mark_read([1001])
    outbox.mark_all_read(None)
    assert outbox.clear() == 2
    assert outbox.pending() == []


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        ([], "at least one"),
        ([0], "whole number"),
        ([-4], "whole number"),
        (["1001"], "whole number"),
        ([True], "whole number"),
        ([1.0], "whole number"),
        ([None], "whole number"),
        ("1001", "list of whole numbers"),
        (list(range(1, MAX_IDS_PER_ACTION + 2)), "At most 1,000"),
    ],
)
def test_bad_ids_are_refused_and_change_nothing(
    inbox: Inbox, outbox: Outbox, ids: Any, words: str
) -> None:
    for method in (outbox.mark_read, outbox.mark_unread, outbox.delete):
        with pytest.raises(StoreError, match=words):
            method(ids)
    assert outbox.pending() == []
    assert inbox.count() == 5
    assert inbox.unread_count() == 5


def test_a_full_action_of_1000_ids_is_accepted(inbox: Inbox, outbox: Outbox) -> None:
    ids = list(range(1001, 1001 + MAX_IDS_PER_ACTION))
    action = outbox.mark_read([*ids, *ids])  # duplicates do not count twice
    assert len(action.ids) == MAX_IDS_PER_ACTION
    assert inbox.unread_count() == 0


@pytest.mark.parametrize("bound", [-1, "5", 2.5, True])
def test_bad_up_to_seq_is_refused(inbox: Inbox, outbox: Outbox, bound: Any) -> None:
    with pytest.raises(StoreError, match="up_to_seq"):
        outbox.mark_all_read(bound)
    assert outbox.pending() == []
    assert inbox.unread_count() == 5


@pytest.mark.parametrize("action_id", [0, -1, "1", None])
def test_bad_action_ids_are_refused(outbox: Outbox, action_id: Any) -> None:
    with pytest.raises(StoreError, match="action id"):
        outbox.complete(action_id)


def test_the_local_change_rolls_back_when_queueing_fails(
    database: sqlite3.Connection, inbox: Inbox, outbox: Outbox
) -> None:
    """A real SQLite failure while enqueueing: a TEMP trigger refuses outbox rows."""
    database.execute(
        "CREATE TEMP TRIGGER refuse_outbox BEFORE INSERT ON main.outbox "
        "BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"
    )
    attempts: list[Any] = [
        lambda: outbox.mark_read([1001]),
        lambda: outbox.mark_unread([1001]),
        lambda: outbox.delete([1002]),
        lambda: outbox.mark_all_read(None),
    ]
    for attempt in attempts:
        with pytest.raises(StoreError, match="outbox refused"):
            attempt()
    assert not database.in_transaction
    assert inbox.unread_count() == 5
    assert inbox.count() == 5
    database.execute("DROP TRIGGER temp.refuse_outbox")
    assert outbox.pending() == []
    action = outbox.delete([1002])
    assert outbox.pending() == [action]
    assert isinstance(action, OutboxAction)
