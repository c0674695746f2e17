"""tray_app/store/db.py on real SQLite files: paths, pragmas, migrations, damaged files."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.db import (
    MIGRATIONS,
    SCHEMA_VERSION,
    account_database_path,
    open_database,
    transaction,
)
from tray_app.store.errors import StoreError
from tray_app.store.inbox import Inbox


def note(seq: int, **fields: object) -> Notification:
    return parse_notification(
        {"id": 500 + seq, "seq": seq, "title": f"title {seq}", "message": "m" * 300, **fields}
    )


def user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- account_database_path ------------------------------------------------------------


def test_account_path_is_readable_and_per_account(tmp_path: Path) -> None:
    path = account_database_path(tmp_path, "http://127.0.0.1:8000", "alice")
    assert path.parent == tmp_path / "accounts"
    assert path.name.startswith("alice@127.0.0.1-8000-")
    assert path.suffix == ".sqlite3"
    others = {
        account_database_path(tmp_path, "http://127.0.0.1:8000", "bob"),
        account_database_path(tmp_path, "http://127.0.0.1:8001", "alice"),
        account_database_path(tmp_path, "https://127.0.0.1:8000", "alice"),
        account_database_path(tmp_path, "http://127.0.0.1:8000/tray", "alice"),
        # Usernames are case-sensitive on the server: Alice is someone else.
        account_database_path(tmp_path, "http://127.0.0.1:8000", "Alice"),
    }
    assert path not in others
    assert len(others) == 5
    # Case-insensitive file systems must not merge them either: names differ beyond case.
    assert len({p.name.lower() for p in {path, *others}}) == 6


def test_account_path_ignores_url_spelling(tmp_path: Path) -> None:
    same = {
        account_database_path(tmp_path, url, "alice")
        for url in (
            "https://notify.example.com",
            "https://notify.example.com/",
            "HTTPS://Notify.Example.COM//",
            "  https://notify.example.com:443/  ",
        )
    }
    assert len(same) == 1
    (only,) = same
    assert only.name.startswith("alice@notify.example.com-")


def test_account_path_is_filesystem_safe(tmp_path: Path) -> None:
    path = account_database_path(tmp_path, "http://[::1]:9000", "../we ird:us*er")
    assert path.parent == tmp_path / "accounts"
    assert all(ch.isalnum() or ch in "._-@" for ch in path.name)
    assert "-9000-" in path.name


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000", "ftp://host", "http://", "http://h:99999"])
def test_account_path_refuses_a_bad_server_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreError, match="server address"):
        account_database_path(tmp_path, url, "alice")


def test_account_path_refuses_a_blank_username(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="username"):
        account_database_path(tmp_path, "http://127.0.0.1:8000", "  ")


# --- opening ----------------------------------------------------------------------------


def test_fresh_database_is_configured_and_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "accounts" / "a.sqlite3"
    opened = open_database(path)
    try:
        connection = opened.connection
        assert opened.path == path
        assert not opened.rebuilt
        assert opened.moved_aside_to is None
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.isolation_level is None
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        assert {"notifications", "notifications_fts", "sync_state", "outbox"} <= tables
        Inbox(connection).ingest([note(1)])  # a write makes the -wal and -shm files
        assert mode(tmp_path / "data") == 0o700
        assert mode(tmp_path / "data" / "accounts") == 0o700
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert mode(file) == 0o600, file
    finally:
        opened.connection.close()


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    first = open_database(path)
    Inbox(first.connection).ingest([note(1), note(2)])
    first.connection.close()
    second = open_database(path)
    try:
        assert not second.rebuilt
        assert Inbox(second.connection).cursor() == 2
    finally:
        second.connection.close()


def test_a_directory_in_the_way_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a.sqlite3").mkdir()
    with pytest.raises(StoreError, match="notification database"):
        open_database(tmp_path / "a.sqlite3")


# --- migrations ---------------------------------------------------------------------------


def add_pinned_column(connection: sqlite3.Connection) -> None:
    """A would-be v2 step. ADD COLUMN fails if run twice, so a rerun would show."""
    connection.execute("ALTER TABLE notifications ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")


def test_a_file_is_migrated_to_the_next_version_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    v1 = open_database(path)
    Inbox(v1.connection).ingest([note(1), note(2), note(3)])
    v1.connection.close()
    assert user_version(path) == SCHEMA_VERSION

    v2_steps = (*MIGRATIONS, add_pinned_column)
    v2 = open_database(path, migrations=v2_steps)
    try:
        assert not v2.rebuilt
        assert v2.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        pinned = v2.connection.execute("SELECT seq, pinned FROM notifications ORDER BY seq")
        assert pinned.fetchall() == [(1, 0), (2, 0), (3, 0)]
        inbox = Inbox(v2.connection)
        assert inbox.cursor() == 3
        inbox.ingest([note(4)])  # the code paths still work on the new table
        assert inbox.cursor() == 4
    finally:
        v2.connection.close()

    again = open_database(path, migrations=v2_steps)  # no step runs twice
    again.connection.close()
    assert user_version(path) == SCHEMA_VERSION + 1


def test_a_failed_migration_rolls_back_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    v1 = open_database(path)
    Inbox(v1.connection).ingest([note(1)])
    v1.connection.close()

    def broken_step(connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE half_done (x)")
        connection.execute("ALTER TABLE no_such_table ADD COLUMN y")

    with pytest.raises(StoreError, match=rf"upgrade .* to schema version {SCHEMA_VERSION + 1}"):
        open_database(path, migrations=(*MIGRATIONS, broken_step))
    assert user_version(path) == SCHEMA_VERSION
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []
    with contextlib.closing(sqlite3.connect(path)) as raw:
        names = {name for (name,) in raw.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in names
        assert raw.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 1


def test_a_file_from_a_newer_version_is_refused_and_left_intact(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    opened = open_database(path)
    Inbox(opened.connection).ingest([note(1)])
    opened.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    opened.connection.close()
    before = digest(path)

    with pytest.raises(StoreError, match="newer version of the app") as caught:
        open_database(path)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite3"]


# --- damaged files --------------------------------------------------------------------------


def assert_fresh_and_usable(path: Path, opened_connection: sqlite3.Connection) -> None:
    inbox = Inbox(opened_connection)
    assert inbox.cursor() == 0
    assert inbox.count() == 0
    assert inbox.ingest([note(1)]).cursor == 1
    assert opened_connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert mode(path) == 0o600


def test_a_garbage_file_is_moved_aside_with_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    garbage = b"this is not a database, just some bytes\n" * 200
    path.write_bytes(garbage)
    Path(f"{path}-wal").write_bytes(b"stale wal")
    Path(f"{path}-shm").write_bytes(b"stale shm")

    opened = open_database(path)
    try:
        assert opened.rebuilt
        aside = opened.moved_aside_to
        assert aside is not None
        assert aside.parent == tmp_path
        assert aside.name.startswith("a.sqlite3.corrupt-2")  # a timestamp follows
        assert aside.read_bytes() == garbage
        assert Path(f"{aside}-wal").read_bytes() == b"stale wal"
        assert Path(f"{aside}-shm").read_bytes() == b"stale shm"
        assert_fresh_and_usable(path, opened.connection)
    finally:
        opened.connection.close()


def test_a_database_truncated_mid_page_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    opened = open_database(path)
    Inbox(opened.connection).ingest([note(seq) for seq in range(1, 1001)])
    opened.connection.close()  # checkpoints: everything is in the main file now
    size = path.stat().st_size
    page_size = 4096
    assert size > 20 * page_size
    cut = size // 2 + page_size // 3  # not a multiple of the page size
    with path.open("r+b") as file:
        file.truncate(cut)
    damaged = path.read_bytes()

    reopened = open_database(path)
    try:
        assert reopened.rebuilt
        assert reopened.moved_aside_to is not None
        assert reopened.moved_aside_to.read_bytes() == damaged
        assert_fresh_and_usable(path, reopened.connection)
    finally:
        reopened.connection.close()


def test_two_damaged_files_in_one_moment_get_distinct_names(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    moved: list[Path] = []
    for attempt in range(3):
        path.write_bytes(f"garbage {attempt}".encode() * 100)
        opened = open_database(path)
        opened.connection.close()
        assert opened.moved_aside_to is not None
        moved.append(opened.moved_aside_to)
    assert len(set(moved)) == 3
    assert [p.read_bytes()[:9] for p in moved] == [b"garbage 0", b"garbage 1", b"garbage 2"]


# --- transactions --------------------------------------------------------------------------


def test_transaction_commits_and_rolls_back_as_one(tmp_path: Path) -> None:
    opened = open_database(tmp_path / "a.sqlite3")
    connection = opened.connection
    inbox = Inbox(connection)
    try:

        def write_then_fail() -> None:
            with transaction(connection):
                inbox.ingest([note(1)])
                inbox.ingest([note(2)])
                raise RuntimeError("the caller changed its mind")

        with pytest.raises(RuntimeError):
            write_then_fail()
        assert inbox.count() == 0
        assert inbox.cursor() == 0
        assert not connection.in_transaction

        with transaction(connection):
            inbox.ingest([note(1)])
            assert connection.in_transaction  # the inner write did not commit on its own
        assert inbox.cursor() == 1
    finally:
        connection.close()


def test_a_nested_failure_rolls_back_only_its_own_part(tmp_path: Path) -> None:
    opened = open_database(tmp_path / "a.sqlite3")
    connection = opened.connection
    inbox = Inbox(connection)
    try:

        def nested_write_then_fail() -> None:
            with transaction(connection):
                inbox.ingest([note(2)])
                raise ZeroDivisionError

        with transaction(connection):
            inbox.ingest([note(1)])
            with pytest.raises(StoreError):
                inbox.set_read([1, "two"], True)  # type: ignore[list-item]
            with pytest.raises(ZeroDivisionError):
                nested_write_then_fail()
        assert [n.seq for n in inbox.search()] == [1]
        assert inbox.cursor() == 1
    finally:
        connection.close()
