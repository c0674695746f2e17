"""tray_app/store/inbox.py on real SQLite files: intake, cursor, search, retention, crashes."""

from __future__ import annotations

import contextlib
import os
import random
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.db import open_database, transaction
from tray_app.store.errors import StoreError
from tray_app.store.inbox import Filters, Inbox, fts_match_expression

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
BASE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PRIORITIES = ("low", "normal", "high", "urgent")
WORKER = Path(__file__).with_name("intake_worker.py")


def payload(seq: int, **fields: Any) -> Notification:
    """A notification as the protocol reads docs/protocol.md's notification_created."""
    return parse_notification(raw_payload(seq, **fields))


def raw_payload(seq: int, **fields: Any) -> dict[str, Any]:
    """A notification payload shaped like docs/protocol.md's notification_created."""
    base: dict[str, Any] = {
        "id": 1000 + seq,
        "seq": seq,
        "is_read": False,
        "read_at": None,
        "title": f"title {seq}",
        "message": f"message {seq}",
        "event_type": "task_status_changed",
        "priority": "normal",
        "url": f"/projects/1/tasks/{seq}",
        "created_at": (BASE + timedelta(hours=seq)).isoformat().replace("+00:00", "Z"),
        "actor": {"id": 4, "username": "bob", "first_name": "Bob", "last_name": "Baker"},
        "project": {"id": 1, "title": "Mobile App"},
        "data": {"task_id": seq},
    }
    base.update(fields)
    return base


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    opened = open_database(tmp_path / "inbox.sqlite3")
    yield opened.connection
    opened.connection.close()


@pytest.fixture
def inbox(database: sqlite3.Connection) -> Inbox:
    return Inbox(database)


def seqs(notifications: list[Any]) -> list[int]:
    return [n.seq for n in notifications]


def fts_is_consistent(connection: sqlite3.Connection) -> bool:
    with contextlib.suppress(sqlite3.DatabaseError):
        connection.execute(
            "INSERT INTO notifications_fts (notifications_fts) VALUES ('integrity-check')"
        )
        return True
    return False


# --- intake ------------------------------------------------------------------------------


def test_ingest_stores_every_field(inbox: Inbox) -> None:
    sent = payload(
        7,
        id=981,
        is_read=True,
        title="Task moved to Done",
        message="bob moved <b>“Fix login”</b> to Done",
        priority="urgent",
        created_at="2026-11-22T09:30:00.123456Z",
        data={"task_id": 7, "nested": {"list": [1, "two", None]}},
    )
    result = inbox.ingest([sent])
    stored = inbox.get(981)
    assert stored is not None
    assert result.added == [stored]
    assert stored.id == 981
    assert stored.seq == 7
    assert stored.title == "Task moved to Done"
    assert stored.message == "bob moved <b>“Fix login”</b> to Done"  # plain text, as given
    assert stored.event_type == "task_status_changed"
    assert stored.priority == "urgent"
    assert stored.url == "/projects/1/tasks/7"
    assert stored.created_at == datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.is_read is True
    assert stored.actor == sent.actor
    assert stored.project_id == 1
    assert stored.project_title == "Mobile App"
    assert stored.data == {"task_id": 7, "nested": {"list": [1, "two", None]}}
    assert inbox.get(982) is None


def test_announcements_without_actor_or_project(inbox: Inbox) -> None:
    inbox.ingest([payload(1, actor=None, project=None, data={})])
    stored = inbox.get(1001)
    assert stored is not None
    assert stored.actor is None
    assert stored.project_id is None
    assert stored.project_title is None


def test_duplicates_are_dropped_by_seq(inbox: Inbox) -> None:
    first = inbox.ingest([payload(1), payload(2), payload(3)])
    assert seqs(first.added) == [1, 2, 3]
    assert first.cursor == 3

    again = inbox.ingest([payload(2), payload(3, title="changed"), payload(4), payload(4)])
    assert seqs(again.added) == [4]
    assert again.cursor == 4
    stored_three = inbox.get(1003)
    assert stored_three is not None
    assert stored_three.title == "title 3"  # the first copy stays
    assert inbox.count() == 4


def test_a_seq_at_or_below_the_cursor_is_dropped_even_if_not_stored(inbox: Inbox) -> None:
    inbox.ingest([payload(1), payload(2), payload(3)])
    assert inbox.remove([1002]) == [1002]
    replay = inbox.ingest([payload(2)])  # a replay overlapping what was deleted
    assert replay.added == []
    assert inbox.get(1002) is None
    assert replay.cursor == 3


def test_added_rows_come_in_seq_order(inbox: Inbox) -> None:
    result = inbox.ingest([payload(3), payload(1), payload(2)])
    assert seqs(result.added) == [1, 2, 3]


def test_the_cursor_never_passes_a_gap(inbox: Inbox) -> None:
    result = inbox.ingest([payload(1), payload(2), payload(4), payload(5)])
    assert result.cursor == 2
    assert result.gap is True
    assert inbox.cursor() == 2

    result = inbox.ingest([payload(7)])
    assert result.cursor == 2
    assert result.gap is True

    result = inbox.ingest([payload(3)])  # fills 3: the run 3..5 is joined, 6 is missing
    assert result.cursor == 5
    assert result.gap is True

    result = inbox.ingest([payload(6)])
    assert result.cursor == 7
    assert result.gap is False


def test_rows_arriving_backwards_move_the_cursor_once_joined(inbox: Inbox) -> None:
    assert inbox.ingest([payload(3)]).cursor == 0
    assert inbox.ingest([payload(2)]).cursor == 0
    result = inbox.ingest([payload(1)])
    assert result.cursor == 3
    assert result.gap is False


def test_through_seq_fills_seqs_the_server_skipped(inbox: Inbox) -> None:
    inbox.ingest([payload(1), payload(2)])
    # Replay of 3..6 where 3 and 4 were deleted on the server: only 5 arrives.
    result = inbox.ingest([payload(5)], through_seq=6)
    assert result.cursor == 6
    assert result.gap is False
    assert seqs(result.added) == [5]

    # A stored row right above through_seq is joined; one further up stays behind a gap.
    inbox.ingest([payload(8), payload(10)])
    result = inbox.ingest([], through_seq=7)
    assert result.cursor == 8
    assert result.gap is True

    # through_seq below the cursor never moves it back.
    assert inbox.ingest([], through_seq=1).cursor == 8
    assert inbox.cursor() == 8


def test_through_seq_counts_only_once_the_replay_start_is_reached(inbox: Inbox) -> None:
    """docs/protocol.md: a caught_up whose after_seq is above the cursor must not move it."""
    inbox.ingest([payload(seq) for seq in range(1, 11)])
    # The server's own replay of (20, 30] overtakes our resume from 10: 11..20 are still coming.
    early = inbox.ingest([payload(25)], through_seq=30, replay_after_seq=20)
    assert early.cursor == 10
    assert early.gap is True
    # Our resume's rows 11..20 arrive (with 22 of them deleted on the server), then its
    # caught_up (after_seq 10, through_seq 24): 21..24 are filled, 25 joins, 26.. must come.
    inbox.ingest([payload(seq) for seq in range(11, 21)])
    answer = inbox.ingest([payload(21), payload(23)], through_seq=24, replay_after_seq=10)
    assert answer.cursor == 25
    # A caught_up whose start the cursor reaches within the same batch counts.
    joined = inbox.ingest([payload(26)], through_seq=28, replay_after_seq=26)
    assert joined.cursor == 28
    assert joined.gap is False


def test_through_seq_must_be_a_whole_number(inbox: Inbox) -> None:
    for bad in (-1, "5", 2.0, True):
        with pytest.raises(StoreError, match="through_seq"):
            inbox.ingest([payload(1)], through_seq=bad)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="replay_after_seq"):
            inbox.ingest([payload(1)], through_seq=3, replay_after_seq=bad)  # type: ignore[arg-type]
    assert inbox.count() == 0


def test_what_the_protocol_read_leniently_is_stored_as_read(inbox: Inbox) -> None:
    # The protocol reads odd fields leniently (tests/tray_app/net/test_protocol.py); the
    # store keeps what it read, and a time it could not read is the time of arrival.
    before = datetime.now(UTC)
    odd = parse_notification(
        {"id": 1, "seq": 1, "title": "lone \ud800 surrogate", "created_at": "yesterday"}
    )
    bare = parse_notification({"id": 2, "seq": 2, "priority": ["high"], "data": {"x": {1, 2}}})
    result = inbox.ingest([odd, bare])
    assert result.cursor == 2
    stored = inbox.get(1)
    assert stored is not None
    assert stored.title == "lone ? surrogate"
    assert before <= stored.created_at <= datetime.now(UTC)
    assert (stored.actor, stored.project_id, stored.data, stored.is_read) == (None, None, {}, False)
    kept = inbox.get(2)
    assert kept is not None
    assert (kept.title, kept.priority, kept.data) == ("", "normal", {})


def test_a_known_id_under_another_seq_is_skipped(inbox: Inbox) -> None:
    inbox.ingest([payload(1, id=10)])
    result = inbox.ingest([payload(2, id=10), payload(3, id=11), payload(4, id=11)])
    assert seqs(result.added) == [3]
    assert result.cursor == 1
    assert result.gap is True


# --- search and filters --------------------------------------------------------------------

TOPICS = ("deploy", "review", "meeting", "invoice", "release")
SPECIAL = {
    61: "rock AND roll",
    62: "meet me NEAR the gate",
    63: "Café déjà vu",
    64: "日本語のテキスト",
    65: 'she said "hello" twice',
    66: "it's done OR not",
}


def topic_rows() -> list[dict[str, Any]]:
    rows = []
    for seq in range(1, 67):
        project_id = seq % 3 + 1
        rows.append(
            raw_payload(
                seq,
                title=SPECIAL.get(seq, f"{TOPICS[seq % 5]} number {seq}"),
                message=f"{TOPICS[(seq // 5) % 5]} scheduled",
                priority=PRIORITIES[seq % 4],
                project=None
                if seq % 7 == 0
                else {"id": project_id, "title": f"Project {project_id}"},
                is_read=seq % 3 == 0,
            )
        )
    return rows


def words_of(text: str) -> list[str]:
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(ch)
    )
    return re.findall(r"\w+", folded)


def expected(rows: list[dict[str, Any]], filters: Filters) -> list[int]:
    """What the filters mean, in plain Python: the oracle search and count must agree with."""
    chosen = []
    for row in rows:
        if filters.text.strip():
            tokens = words_of(f"{row['title']} {row['message']}")
            query = words_of(filters.text)
            if not query or not all(any(t.startswith(q) for t in tokens) for q in query):
                continue
        if filters.unread is not None and row["is_read"] == filters.unread:
            continue
        project = row["project"]
        if filters.project_id is not None and (
            project is None or project["id"] != filters.project_id
        ):
            continue
        if filters.priorities and row["priority"] not in filters.priorities:
            continue
        created = datetime.fromisoformat(row["created_at"])
        if filters.since is not None and created < filters.since:
            continue
        if filters.until is not None and created >= filters.until:
            continue
        if filters.after_seq is not None and row["seq"] <= filters.after_seq:
            continue
        chosen.append(row["seq"])
    return sorted(chosen, reverse=True)


@pytest.fixture
def topics(inbox: Inbox) -> list[dict[str, Any]]:
    rows = topic_rows()
    inbox.ingest([parse_notification(row) for row in rows])
    return rows


FILTER_CASES = [
    Filters(),
    Filters(text="deploy"),
    Filters(text="DEP"),
    Filters(text="  review   scheduled "),
    Filters(text="deploy release"),
    Filters(text="number 1"),
    Filters(text="nothing-like-this"),
    Filters(unread=True),
    Filters(unread=False),
    Filters(project_id=2),
    Filters(project_id=99),
    Filters(priorities=frozenset({"high", "urgent"})),
    Filters(priorities=frozenset({"low"})),
    Filters(since=BASE + timedelta(hours=10), until=BASE + timedelta(hours=20)),
    Filters(since=BASE + timedelta(hours=60)),
    Filters(until=BASE + timedelta(hours=3)),
    Filters(
        text="meeting",
        unread=True,
        project_id=1,
        priorities=frozenset({"low", "normal", "urgent"}),
        since=BASE,
        until=BASE + timedelta(hours=40),
    ),
    Filters(after_seq=40),
    Filters(after_seq=66),
    Filters(text="scheduled", after_seq=30),
    Filters(text="review", unread=True, after_seq=20),
    Filters(text="deploy", project_id=3, priorities=frozenset({"high", "low"})),
]


@pytest.mark.parametrize("filters", FILTER_CASES)
def test_search_and_count_agree_with_the_filters(
    inbox: Inbox, topics: list[dict[str, Any]], filters: Filters
) -> None:
    want = expected(topics, filters)
    assert seqs(inbox.search(filters, limit=1000)) == want
    assert inbox.count(filters) == len(want)


def test_the_filter_cases_are_not_trivial(topics: list[dict[str, Any]]) -> None:
    sizes = [len(expected(topics, filters)) for filters in FILTER_CASES]
    assert 0 in sizes
    assert len(set(sizes)) > 8  # the cases select different amounts, so they test something


@pytest.mark.parametrize(
    "filters",
    [Filters(unread=True), Filters(text="scheduled"), Filters(text="scheduled", project_id=2)],
)
def test_pages_cover_the_result_exactly_once(
    inbox: Inbox, topics: list[dict[str, Any]], filters: Filters
) -> None:
    pages = [inbox.search(filters, limit=7, offset=offset) for offset in range(0, 70, 7)]
    flat = [seq for page in pages for seq in seqs(page)]
    want = expected(topics, filters)
    assert len(want) > 14  # several pages
    assert flat == want
    assert inbox.search(filters, limit=7, offset=1000) == []


def test_paging_arguments_must_be_whole_numbers_from_0(inbox: Inbox) -> None:
    with pytest.raises(StoreError, match="limit"):
        inbox.search(limit=-1)
    with pytest.raises(StoreError, match="offset"):
        inbox.search(offset=-5)
    with pytest.raises(StoreError, match="after_seq"):
        inbox.search(Filters(text="x", after_seq=-1))


def vm_steps(connection: sqlite3.Connection, work: Callable[[], object]) -> int:
    """How many SQLite virtual-machine steps ``work`` took (the progress handler counts)."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0  # carry on

    connection.set_progress_handler(tick, 1)
    try:
        work()
    finally:
        connection.set_progress_handler(None, 1)
    return steps[0]


@pytest.mark.parametrize(
    "filters", [Filters(text="deploy"), Filters(text="deploy", unread=True, project_id=1)]
)
def test_a_text_search_stops_at_its_page_instead_of_visiting_every_match(
    inbox: Inbox, database: sqlite3.Connection, filters: Filters
) -> None:
    """The newest page of a common word reads about a page of matches, not all of them.

    Collecting every match before sorting took 24-35 ms for a word in 20,000 rows of
    100,000; counting (which must visit every match) is the yardstick.
    """
    inbox.ingest(
        [
            payload(
                seq, title=f"deploy {seq}", is_read=seq % 2 == 0, project={"id": 1, "title": "A"}
            )
            for seq in range(1, 4001)
        ]
    )
    page: list[Any] = []
    searching = vm_steps(database, lambda: page.extend(inbox.search(filters, limit=10)))
    counting = vm_steps(database, lambda: inbox.count(filters))
    step = 2 if filters.unread else 1
    assert seqs(page) == list(range(4000 - step + 1, 4000 - 10 * step, -step))[:10]
    assert searching * 20 < counting, (searching, counting)


def test_recent_is_newest_first(inbox: Inbox, topics: list[dict[str, Any]]) -> None:
    assert seqs(inbox.recent()) == list(range(66, 56, -1))
    assert seqs(inbox.recent(3, unread_only=True)) == [65, 64, 62]


HOSTILE = [
    '"',
    '""',
    "'",
    "AND",
    "OR",
    "NOT",
    "deploy AND",
    "AND deploy",
    "OR OR OR",
    "*",
    "dep*",
    "NEAR(",
    "NEAR(deploy review, 2)",
    "title:deploy",
    "{title message}: deploy",
    "^deploy",
    "(",
    ")",
    "-deploy",
    "+",
    "deploy\x00",
    "\x00",
    "\ud800",
    "😀",
    "ünïcödé",
    "Ελληνικά",
    '"hello',
    'hello"',
    "a" * 10_000,
    "\\",
    "%_",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_any_typed_text_is_safe_and_counts_agree(
    inbox: Inbox, topics: list[dict[str, Any]], text: str
) -> None:
    filters = Filters(text=text)
    found = inbox.search(filters, limit=1000)
    assert inbox.count(filters) == len(found)
    assert seqs(found) == expected(topics, filters)


def test_fts_words_are_searched_literally(inbox: Inbox, topics: list[dict[str, Any]]) -> None:
    def hits(text: str) -> list[int]:
        return seqs(inbox.search(Filters(text=text)))

    assert hits("AND") == [61]
    assert hits("and roll") == [61]
    assert hits("NEAR(") == [62]
    assert hits("OR") == [66]
    assert hits("NOT") == [66]
    assert hits('"hello"') == [65]
    assert hits("it's") == [66]
    assert hits("cafe") == [63]  # diacritics are folded both ways
    assert hits("DÉJÀ") == [63]
    assert hits("日本語") == [64]  # a prefix of the run of letters
    assert hits("*") == []
    assert hits("😀") == []
    assert hits("   ") == seqs(inbox.search())


def test_fts_match_expression_quotes_every_word() -> None:
    assert fts_match_expression("fix login") == '"fix"* "login"*'
    assert fts_match_expression('say "hi"') == '"say"* """hi"""*'
    assert fts_match_expression("NEAR( a") == '"NEAR("* "a"*'
    assert fts_match_expression("* - ( )") is None
    assert fts_match_expression("") is None


def test_date_filters_need_a_time_zone(inbox: Inbox) -> None:
    naive = datetime(2026, 11, 1, 8, 0)  # no tzinfo: the point of the test
    with pytest.raises(StoreError, match="time zone"):
        inbox.search(Filters(since=naive))
    with pytest.raises(StoreError, match="time zone"):
        inbox.count(Filters(until=naive))


def test_date_filters_compare_moments_across_time_zones(inbox: Inbox) -> None:
    inbox.ingest([payload(1, created_at="2026-11-01T12:00:00+02:00")])  # 10:00 UTC
    plus_two = datetime(2026, 11, 1, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    stored = inbox.get(1001)
    assert stored is not None
    assert stored.created_at == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert inbox.count(Filters(since=stored.created_at)) == 1
    assert inbox.count(Filters(until=stored.created_at)) == 0
    assert inbox.count(Filters(since=plus_two)) == 0  # 12:00 UTC is after 10:00 UTC


def test_filters_use_an_index(
    inbox: Inbox, database: sqlite3.Connection, topics: list[dict[str, Any]]
) -> None:
    """The history window pages through 100,000 rows: every filter must use an index.

    The trace callback captures the SQL that search and count really ran (with values).
    """
    statements: list[str] = []
    connection = database
    for filters in (
        Filters(text="deploy"),
        Filters(unread=True),
        Filters(project_id=2),
        Filters(priorities=frozenset({"high"})),
        Filters(since=BASE + timedelta(hours=5), until=BASE + timedelta(hours=9)),
    ):
        statements.clear()
        connection.set_trace_callback(statements.append)
        try:
            inbox.search(filters, limit=10)
            inbox.count(filters)
        finally:
            connection.set_trace_callback(None)
        # FTS5 runs statements of its own on its shadow tables; keep ours.
        ours = [
            sql
            for sql in statements
            if re.match(r"SELECT .* FROM notifications(_fts CROSS JOIN notifications)?\b", sql)
        ]
        assert len(ours) == 2, statements
        for statement in ours:
            explained = connection.execute(f"EXPLAIN QUERY PLAN {statement}")
            plan = " | ".join(row[3] for row in explained)
            assert re.search(r"USING (COVERING )?INDEX|PRIMARY KEY", plan), (filters, plan)


def test_unread_count_and_projects(inbox: Inbox, topics: list[dict[str, Any]]) -> None:
    unread = sum(1 for row in topics if not row["is_read"])
    assert inbox.unread_count() == unread
    assert inbox.projects() == [(1, "Project 1"), (2, "Project 2"), (3, "Project 3")]
    inbox.ingest([payload(67, project={"id": 2, "title": "Renamed"})])
    assert inbox.projects() == [(1, "Project 1"), (3, "Project 3"), (2, "Renamed")]
    assert inbox.unread_count() == unread + 1


def test_projects_seek_each_project_instead_of_walking_every_row(
    inbox: Inbox, database: sqlite3.Connection
) -> None:
    """The history reads the project list after every batch of new rows."""
    assert inbox.projects() == []
    rows = 3000
    inbox.ingest(
        [
            payload(seq, project=None if seq % 4 == 0 else {"id": seq % 3 + 7, "title": f"P{seq}"})
            for seq in range(1, rows + 1)
        ]
    )
    listed: list[tuple[int, str]] = []
    steps = vm_steps(database, lambda: listed.extend(inbox.projects()))
    # The newest title of each project (seqs divisible by 4 carry none), by title.
    assert listed == [(7, "P2997"), (8, "P2998"), (9, "P2999")]
    assert steps * 10 < rows, steps  # a walk over every row would take several per row


# --- local changes ---------------------------------------------------------------------------


def test_set_read_reports_only_what_changed(inbox: Inbox) -> None:
    inbox.ingest([payload(1), payload(2, is_read=True), payload(3)])
    assert inbox.unread_count() == 2
    assert inbox.set_read([1003, 1002, 1001, 1003, 4242], True) == [1003, 1001]
    assert inbox.unread_count() == 0
    assert inbox.set_read([1001], True) == []
    assert inbox.set_read([1002], False) == [1002]
    assert inbox.unread_count() == 1
    assert inbox.set_read([], True) == []
    for bad in ([0], [-1], ["1001"], [True], [1.5]):
        with pytest.raises(StoreError, match="whole number"):
            inbox.set_read(bad, True)  # type: ignore[arg-type]
    assert inbox.unread_count() == 1


def test_set_read_handles_more_ids_than_sqlite_parameters(inbox: Inbox) -> None:
    inbox.ingest([payload(seq) for seq in range(1, 1201)])
    changed = inbox.set_read(list(range(1001, 2201)), True)
    assert len(changed) == 1200
    assert inbox.unread_count() == 0


def test_mark_all_read_up_to_a_seq(inbox: Inbox) -> None:
    inbox.ingest([payload(seq, is_read=seq == 2) for seq in range(1, 6)])
    assert inbox.mark_all_read(up_to_seq=3) == [1001, 1003]
    assert seqs(inbox.search(Filters(unread=True))) == [5, 4]
    assert inbox.mark_all_read() == [1004, 1005]
    assert inbox.unread_count() == 0
    assert inbox.mark_all_read() == []
    with pytest.raises(StoreError, match="up_to_seq"):
        inbox.mark_all_read(-1)


def test_remove_forgets_rows_and_their_search_entries(
    inbox: Inbox, database: sqlite3.Connection
) -> None:
    inbox.ingest([payload(1, title="alpha"), payload(2, title="alpha"), payload(3)])
    assert inbox.remove([1002, 9999, 1002]) == [1002]
    assert seqs(inbox.search(Filters(text="alpha"))) == [1]
    assert inbox.count() == 2
    assert inbox.cursor() == 3
    assert inbox.remove([1002]) == []
    assert fts_is_consistent(database)


def test_prune_by_age_keeps_the_cursor(inbox: Inbox, database: sqlite3.Connection) -> None:
    now = datetime.now(UTC)
    old = (now - timedelta(days=400)).isoformat()
    recent = (now - timedelta(days=1)).isoformat()
    inbox.ingest([payload(seq, created_at=old if seq <= 6 else recent) for seq in range(1, 11)])
    assert inbox.prune(max_age=timedelta(days=90)) == 6
    assert seqs(inbox.search()) == [10, 9, 8, 7]
    assert inbox.cursor() == 10
    assert inbox.ingest([payload(3, created_at=old)]).added == []  # not fetched again
    assert fts_is_consistent(database)


def test_prune_by_count_keeps_the_newest(inbox: Inbox) -> None:
    inbox.ingest([payload(seq) for seq in range(1, 11)])
    assert inbox.prune(max_rows=3) == 7
    assert seqs(inbox.search()) == [10, 9, 8]
    assert inbox.cursor() == 10
    assert inbox.prune(max_rows=3) == 0
    assert inbox.prune(max_rows=0) == 3
    assert inbox.count() == 0
    assert inbox.cursor() == 10
    assert inbox.prune() == 0
    with pytest.raises(StoreError):
        inbox.prune(max_rows=-1)
    with pytest.raises(StoreError):
        inbox.prune(max_age=timedelta(days=-1))


def test_prune_leaves_rows_above_a_gap(inbox: Inbox) -> None:
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    inbox.ingest([payload(seq, created_at=old) for seq in (1, 2, 3, 5, 6)])
    assert inbox.cursor() == 3
    assert inbox.prune(max_age=timedelta(days=1)) == 3
    assert seqs(inbox.search()) == [6, 5]  # kept, or 5..6 would be fetched again
    assert inbox.ingest([payload(4)]).cursor == 6


def test_reset_forgets_rows_and_cursor(inbox: Inbox, database: sqlite3.Connection) -> None:
    inbox.ingest([payload(seq) for seq in range(1, 6)])
    inbox.reset()
    assert inbox.cursor() == 0
    assert inbox.count() == 0
    assert inbox.search(Filters(text="title")) == []
    result = inbox.ingest([payload(1, id=77)])
    assert result.cursor == 1
    assert fts_is_consistent(database)


def test_writes_join_an_outer_transaction(inbox: Inbox, database: sqlite3.Connection) -> None:
    inbox.ingest([payload(1), payload(2)])

    def change_then_fail() -> None:
        with transaction(database):
            inbox.set_read([1001], True)
            inbox.remove([1002])
            inbox.ingest([payload(3)])
            raise KeyError("abort")

    with pytest.raises(KeyError):
        change_then_fail()
    assert inbox.unread_count() == 2
    assert inbox.count() == 2
    assert inbox.cursor() == 2


# --- scale ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_stays_correct_and_fast_with_100000_rows(inbox: Inbox) -> None:
    total = 100_000
    projects = [{"id": n + 1, "title": f"P{n}"} for n in range(10)]
    minute = timedelta(minutes=1)
    rows = [
        {
            "id": seq,
            "seq": seq,
            "is_read": seq % 2 == 0,
            "title": f"{TOPICS[seq % 5]} {seq}",
            "message": f"{TOPICS[(seq // 5) % 5]} for project {seq % 10}",
            "event_type": "task_status_changed",
            "priority": PRIORITIES[seq % 4],
            "url": "/projects",
            "created_at": (BASE + seq * minute).isoformat(),
            "actor": None,
            "project": projects[seq % 10],
            "data": {},
        }
        for seq in range(1, total + 1)
    ]
    started = time.monotonic()
    result = inbox.ingest([parse_notification(row) for row in rows])
    ingest_seconds = time.monotonic() - started
    assert result.cursor == total
    assert len(result.added) == total
    assert ingest_seconds < 30

    cases: list[tuple[Filters, Callable[[int], bool]]] = [
        (Filters(), lambda s: True),
        (Filters(text="invoice"), lambda s: s % 5 == 3 or (s // 5) % 5 == 3),
        (
            Filters(text="review", unread=True, project_id=4),
            lambda s: (s % 5 == 1 or (s // 5) % 5 == 1) and s % 2 == 1 and s % 10 == 3,
        ),
        (
            Filters(
                priorities=frozenset({"urgent"}),
                since=BASE + timedelta(minutes=50_000),
                until=BASE + timedelta(minutes=60_000),
            ),
            lambda s: s % 4 == 3 and 50_000 <= s < 60_000,
        ),
    ]
    for filters, wanted in cases:
        want = [seq for seq in range(total, 0, -1) if wanted(seq)]
        started = time.monotonic()
        first_page = inbox.search(filters, limit=50)
        deep_page = inbox.search(filters, limit=50, offset=len(want) // 2)
        count = inbox.count(filters)
        seconds = time.monotonic() - started
        assert count == len(want), filters
        assert seqs(first_page) == want[:50], filters
        assert seqs(deep_page) == want[len(want) // 2 : len(want) // 2 + 50], filters
        # Indexed, these take milliseconds; a full scan with Python-side filtering would not.
        assert seconds < 2, (filters, seconds)
    assert inbox.unread_count() == total // 2


# --- crash safety ------------------------------------------------------------------------------


class LineReader:
    """Reads a child's stdout line by line with a deadline (no sleeps)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._buffer = b""

    def next_line(self, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise TimeoutError("the worker printed nothing in time")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError("the worker exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def rest(self) -> list[bytes]:
        """Every complete line left, once the child is dead (reads to EOF)."""
        while chunk := os.read(self._fd, 65536):
            self._buffer += chunk
        self._selector.close()
        *lines, _partial = self._buffer.split(b"\n")
        return lines


@pytest.mark.slow
def test_a_killed_writer_never_loses_a_committed_row(tmp_path: Path) -> None:
    """SIGKILL the intake worker at random moments; every printed cursor must survive."""
    path = tmp_path / "crash.sqlite3"
    rounds = max(5, round(50 * SCALE))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    last_cursor = 0
    for round_number in range(rounds):
        errors = tmp_path / f"worker-{round_number}.err"
        with errors.open("wb") as error_file:
            child = subprocess.Popen(
                [sys.executable, str(WORKER), str(path), str(seed + round_number)],
                stdout=subprocess.PIPE,
                stderr=error_file,
            )
        reader = LineReader(child)
        printed: list[int] = []
        trouble: Exception | None = None
        try:
            deadline = time.monotonic() + 30
            for _ in range(rng.randint(1, 15)):
                printed.append(int(reader.next_line(deadline)))
        except (EOFError, TimeoutError) as exc:
            trouble = exc
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            assert child.stdout is not None
            printed += [int(line) for line in reader.rest()]
            child.stdout.close()
        context = f"seed {seed}, round {round_number}: {errors.read_text()[-2000:]}"
        if trouble is not None:
            pytest.fail(f"the worker stopped on its own ({trouble}); {context}")
        assert child.returncode == -signal.SIGKILL, context
        assert printed == sorted(printed), context
        assert printed[0] >= last_cursor, context

        with contextlib.closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)], context
        opened = open_database(path)
        try:
            assert not opened.rebuilt, context
            inbox = Inbox(opened.connection)
            cursor = inbox.cursor()
            assert cursor >= printed[-1], context
            stored = opened.connection.execute(
                "SELECT COUNT(*), MIN(seq), MAX(seq) FROM notifications"
            ).fetchone()
            assert stored == (cursor, 1, cursor), context  # 1..cursor, nothing more
            assert inbox.count(Filters(text="crash")) == cursor, context
            assert fts_is_consistent(opened.connection), context
        finally:
            opened.connection.close()
        last_cursor = cursor
    assert last_cursor > 0


def test_unread_ids_are_what_mark_all_read_changes(tmp_path):
    inbox = Inbox(open_database(tmp_path / "a.sqlite3").connection)
    inbox.ingest([payload(seq) for seq in range(1, 6)])
    inbox.set_read([payload(2).id], True)
    assert inbox.unread_ids() == [payload(seq).id for seq in (1, 3, 4, 5)]
    expected = inbox.unread_ids(4)
    assert expected == [payload(seq).id for seq in (1, 3, 4)]
    assert inbox.mark_all_read(4) == expected
    assert inbox.unread_ids() == [payload(5).id]
