"""tray_app/store/attention.py on real SQLite files: the server's last word, a change made
here that has not reached it, and the schema step that added them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.attention import AttentionStore
from tray_app.store.db import MIGRATIONS, SCHEMA_VERSION, open_database
from tray_app.store.inbox import Inbox


def state(version: int, **settings: Any) -> dict[str, Any]:
    """A server payload (docs/protocol.md, "Attention")."""
    return {
        "version": version,
        "dnd": None,
        "quiet_hours": None,
        "time_zone": None,
        "muted_projects": [],
        "muted_event_types": [],
        "min_priority": "low",
        "urgent_breaks_through": True,
        **settings,
    }


def note(seq: int) -> Notification:
    return parse_notification({"id": 700 + seq, "seq": seq, "title": f"title {seq}"})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "accounts" / "alice.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[AttentionStore]:
    database = open_database(path)
    try:
        yield AttentionStore(database.connection)
    finally:
        database.connection.close()


@contextlib.contextmanager
def opened(path: Path) -> Iterator[AttentionStore]:
    database = open_database(path)
    try:
        yield AttentionStore(database.connection)
    finally:
        database.connection.close()


def test_a_new_file_has_heard_nothing_and_has_nothing_pending(store: AttentionStore) -> None:
    assert store.known() is None
    assert store.pending() is None


def test_remember_keeps_only_newer_versions(store: AttentionStore) -> None:
    assert store.remember(state(0))  # the first word, even the defaults
    assert store.known() == state(0)
    assert not store.remember(state(0, min_priority="high"))  # the same version again
    assert store.known() == state(0)
    assert store.remember(state(3, min_priority="high"))
    assert not store.remember(state(2, min_priority="urgent"))  # late, out of order
    assert not store.remember(state(3, min_priority="urgent"))
    assert store.known() == state(3, min_priority="high")
    assert store.remember(state(4, dnd={"until": None}))
    assert store.known() == state(4, dnd={"until": None})


def test_a_first_state_of_any_version_is_kept(store: AttentionStore) -> None:
    assert store.remember(state(12, muted_projects=[4]))
    assert store.known() == state(12, muted_projects=[4])


@pytest.mark.parametrize("version", [None, -1, True, "3", 1.0])
def test_remember_refuses_a_state_without_a_whole_version(
    store: AttentionStore, version: object
) -> None:
    payload = state(0)
    if version is None:
        del payload["version"]
    else:
        payload["version"] = version
    with pytest.raises(ValueError, match="version"):
        store.remember(payload)
    assert store.known() is None


def test_changes_merge_and_a_later_value_of_a_key_wins(store: AttentionStore) -> None:
    assert store.add_change({"dnd": {"until": None}}) == {"dnd": {"until": None}}
    assert store.add_change({"min_priority": "high"}) == {
        "dnd": {"until": None},
        "min_priority": "high",
    }
    assert store.add_change({"dnd": None}) == {"dnd": None, "min_priority": "high"}
    assert store.pending() == {"dnd": None, "min_priority": "high"}
    store.remember(state(5))
    assert store.pending() == {"dnd": None, "min_priority": "high"}  # not the server's word


def test_change_sent_drops_what_was_sent_and_keeps_what_changed_since(
    store: AttentionStore,
) -> None:
    sent = store.add_change({"dnd": {"until": None}, "min_priority": "high"})
    # While the PATCH is on its way, the user changes do-not-disturb again and mutes.
    store.add_change({"dnd": None, "muted_event_types": ["ci"]})
    store.change_sent(sent)
    assert store.pending() == {"dnd": None, "muted_event_types": ["ci"]}
    # The next send takes the rest.
    store.change_sent({"dnd": None, "muted_event_types": ["ci"]})
    assert store.pending() is None


def test_change_sent_keeps_a_key_set_back_to_an_older_value(store: AttentionStore) -> None:
    store.add_change({"min_priority": "high"})
    store.add_change({"min_priority": "low"})
    store.change_sent({"min_priority": "high"})  # an answer to an older send
    assert store.pending() == {"min_priority": "low"}


def test_change_sent_with_nothing_pending_is_harmless(store: AttentionStore) -> None:
    store.change_sent({"dnd": None})
    assert store.pending() is None


def test_drop_pending_forgets_the_change_and_keeps_the_servers_word(
    store: AttentionStore,
) -> None:
    store.remember(state(2, min_priority="normal"))
    store.add_change({"muted_projects": [999]})
    store.drop_pending()
    assert store.pending() is None
    assert store.known() == state(2, min_priority="normal")
    assert store.add_change({"min_priority": "high"}) == {"min_priority": "high"}


def test_both_survive_closing_and_reopening_the_file(path: Path) -> None:
    with opened(path) as first:
        first.remember(state(7, quiet_hours={"start": "22:00", "end": "07:00"}))
        first.add_change({"dnd": {"until": "2026-12-07T07:00:00Z"}})
    with opened(path) as again:
        assert again.known() == state(7, quiet_hours={"start": "22:00", "end": "07:00"})
        assert again.pending() == {"dnd": {"until": "2026-12-07T07:00:00Z"}}
        assert not again.remember(state(6))  # the kept version still counts
        assert again.remember(state(8))


def test_two_connections_to_one_file_see_each_others_writes(path: Path) -> None:
    with opened(path) as app, opened(path) as other:
        app.add_change({"min_priority": "urgent"})
        assert other.pending() == {"min_priority": "urgent"}
        other.remember(state(1))
        assert app.known() == state(1)


def test_a_hand_edited_row_reads_as_never_heard(path: Path, store: AttentionStore) -> None:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.execute("UPDATE attention SET known_json = 'not json', pending_json = '[1, 2]'")
        raw.commit()
    assert store.known() is None
    assert store.pending() is None
    assert store.add_change({"dnd": None}) == {"dnd": None}  # starts afresh


def test_a_v1_file_is_upgraded_and_keeps_its_notifications(path: Path) -> None:
    v1 = open_database(path, migrations=MIGRATIONS[:1])
    Inbox(v1.connection).ingest([note(1), note(2), note(3)])
    v1.connection.close()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master")}
        assert "attention" not in tables

    upgraded = open_database(path)
    try:
        assert not upgraded.rebuilt
        assert upgraded.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        inbox = Inbox(upgraded.connection)
        assert inbox.cursor() == 3
        assert sorted(row.title for row in inbox.recent(10)) == ["title 1", "title 2", "title 3"]
        store = AttentionStore(upgraded.connection)
        assert store.known() is None
        assert store.pending() is None
        assert store.remember(state(1))
        store.add_change({"dnd": None})
        inbox.ingest([note(4)])
        assert inbox.cursor() == 4
    finally:
        upgraded.connection.close()

    with opened(path) as again:  # no step runs twice
        assert again.known() == state(1)
        assert again.pending() == {"dnd": None}
