"""WAL checkpoints off the writer (backend/sqlite_checkpoint.py): the checkpointer on a
plain SQLite file, the server's connections leaving checkpoints to it, and the real
server on SQLite with the checkpointer and without (``TRAY_SQLITE_CHECKPOINT=0``).

What reached the database file itself (not only its WAL) is read with
``?immutable=1``, which makes SQLite ignore the WAL: rows visible that way were
checkpointed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connections

from backend import sqlite_checkpoint
from backend.sqlite_checkpoint import FALLBACK_AUTOCHECKPOINT_PAGES, WalCheckpointer
from tests.fixtures.services import RunningServer, ServerFactory

TIMEOUT = 30.0
PAGE = 4096
# SQLite's automatic checkpoint runs once the WAL holds this many pages.
AUTOCHECKPOINT_PAGES = 1000


def _wait_until(condition: Callable[[], bool], *, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _in_file(path: Path, table: str) -> int:
    """Rows of ``table`` in the database file alone, without its WAL."""
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        (count,) = reader.execute(f"SELECT count(*) FROM {table}").fetchone()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return 0  # created in the WAL, not copied yet
        return -1  # caught mid-copy: not there yet
    except sqlite3.DatabaseError:
        return -1
    finally:
        reader.close()
    return int(count)


def _wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


# --- WalCheckpointer on a plain file ------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A WAL database and its writer, whose automatic checkpoint is off, as the server's."""
    path = tmp_path / "db.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA synchronous=NORMAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, body TEXT)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        yield path, writer
    finally:
        writer.close()


def _write(writer: sqlite3.Connection, rows: int, *, size: int = 2000) -> None:
    writer.execute("BEGIN IMMEDIATE")
    writer.executemany("INSERT INTO item (body) VALUES (?)", [("x" * size,)] * rows)
    writer.execute("COMMIT")


def test_a_writer_without_autocheckpoint_grows_its_wal_past_sqlites_mark(
    database: tuple[Path, sqlite3.Connection],
) -> None:
    """The premise: with nobody checkpointing, nothing reaches the file."""
    path, writer = database
    for _ in range(10):
        _write(writer, 500)
    assert _wal_size(path) > AUTOCHECKPOINT_PAGES * PAGE
    assert _in_file(path, "item") == 0


def test_the_checkpointer_copies_and_resets_the_wal_and_stops_cleanly(
    database: tuple[Path, sqlite3.Connection],
) -> None:
    path, writer = database
    checkpointer = WalCheckpointer(path, interval=0.01, reset_bytes=1024 * 1024)
    checkpointer.start()
    try:
        for _ in range(10):
            _write(writer, 500)  # ~10 MB of WAL
        _wait_until(lambda: _in_file(path, "item") == 5000, what="every row in the file")
        _wait_until(lambda: checkpointer.resets >= 1, what="a reset of the WAL")
        _wait_until(lambda: _wal_size(path) < 1024 * 1024, what="the WAL truncated")
        assert checkpointer.failures == 0
    finally:
        checkpointer.stop()
    assert not checkpointer.is_alive()
    # The last checkpoint at stop() emptied the WAL.
    assert _wal_size(path) == 0
    assert checkpointer.last is not None
    assert (checkpointer.last.mode, checkpointer.last.busy) == ("TRUNCATE", False)
    (count,) = writer.execute("SELECT count(*) FROM item").fetchone()
    assert count == 5000


def test_under_a_steady_stream_of_writes_the_wal_stays_bounded(
    database: tuple[Path, sqlite3.Connection],
) -> None:
    """While commits keep landing, SQLite starts the WAL over only when a writer finds
    it wholly copied (the catch-up passes make that the rule when the writer pauses)
    or when a reset past the bound forces it. The writer pauses half a millisecond
    between transactions, as the publish lane does its Python work between them (a
    writer that never lets go of the lock starves both; the server's connections
    keep SQLite's own checkpoint as a safety net for that,
    FALLBACK_AUTOCHECKPOINT_PAGES). Without either the WAL grows by ~20 MB a
    second here."""
    path, writer = database
    bound = 512 * 1024
    checkpointer = WalCheckpointer(path, interval=0.005, reset_bytes=bound)
    largest = 0
    written = 0
    checkpointer.start()
    try:
        deadline = time.monotonic() + 60
        # ~60 bounds' worth of WAL written, over many rounds.
        while written < 20 * 60 * bound // 2000 or checkpointer.rounds < 20:
            assert time.monotonic() < deadline, "the writes took over a minute"
            _write(writer, 20)
            written += 20
            largest = max(largest, _wal_size(path))
            time.sleep(0.0005)  # the lane's work between two transactions, not a wait
    finally:
        checkpointer.stop()
    # A round notices the bound within an interval or two of writes, so the WAL
    # never gets far past it (without the resets it grows by ~20 MB a second here).
    assert largest < 32 * bound
    assert _in_file(path, "item") == written
    assert checkpointer.failures == 0


def test_a_wal_caught_up_wholly_is_started_over_by_the_writer_with_no_reset(
    database: tuple[Path, sqlite3.Connection],
) -> None:
    """The cheap way back to a short WAL: once a round has copied every page, the next
    commit writes at the WAL's beginning again, and no reset (which holds the
    writer) was needed."""
    path, writer = database
    checkpointer = WalCheckpointer(path, interval=3600, reset_bytes=1024 * 1024 * 1024)
    try:
        for _ in range(4):
            _write(writer, 500)  # ~4 MB of WAL
        assert _wal_size(path) > AUTOCHECKPOINT_PAGES * PAGE
        rounds = checkpointer.checkpoint_round()
        assert rounds[-1].copied == rounds[-1].wal_frames > AUTOCHECKPOINT_PAGES
        size = _wal_size(path)
        _write(writer, 1)
        # Started over: the commit went to the WAL's beginning; appended, it would have
        # grown the file.
        assert _wal_size(path) == size
        assert checkpointer.resets == 0
        assert _in_file(path, "item") == 2000  # the last commit is still in the WAL only
    finally:
        checkpointer.close()


def test_stop_runs_a_last_checkpoint(database: tuple[Path, sqlite3.Connection]) -> None:
    path, writer = database
    checkpointer = WalCheckpointer(path, interval=3600)
    checkpointer.start()
    _write(writer, 300)
    assert _in_file(path, "item") == 0
    checkpointer.stop()
    assert not checkpointer.is_alive()
    assert checkpointer.rounds == 0
    assert _in_file(path, "item") == 300
    assert _wal_size(path) == 0
    assert checkpointer.last is not None
    assert (checkpointer.last.mode, checkpointer.last.busy) == ("TRUNCATE", False)


def test_a_reset_gives_up_at_once_when_a_reader_holds_an_old_snapshot(
    database: tuple[Path, sqlite3.Connection],
) -> None:
    """The reset waits at most RESET_BUSY_MS, then the next round tries again."""
    path, writer = database
    _write(writer, 100)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM item").fetchone()  # holds this snapshot
    _write(writer, 100)
    checkpointer = WalCheckpointer(path, interval=3600, reset_bytes=1)
    try:
        *passes, reset = checkpointer.checkpoint_round()
        assert {p.mode for p in passes} == {"PASSIVE"}
        assert (reset.mode, reset.busy) == ("TRUNCATE", True)
        assert reset.seconds < 1.0
        assert checkpointer.resets == 0
        _write(writer, 1)  # the writer is not blocked
        reader.execute("COMMIT")
        *_passes, reset = checkpointer.checkpoint_round()
        assert not reset.busy
        assert checkpointer.resets == 1
        assert _wal_size(path) == 0
    finally:
        reader.close()
        checkpointer.close()


def test_failures_are_logged_and_never_stop_the_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not-wal.sqlite3"
    sqlite3.connect(path).close()  # a database in rollback-journal mode
    checkpointer = WalCheckpointer(path, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="backend.sqlite_checkpoint"):
        checkpointer.start()
        try:
            _wait_until(lambda: checkpointer.failures >= 3, what="three failed rounds")
            assert checkpointer.is_alive()
        finally:
            checkpointer.stop()
    assert not checkpointer.is_alive()
    failures = [r for r in caplog.records if "WAL checkpoint" in r.getMessage()]
    assert len(failures) == 1  # once per minute, not once per round
    assert "not in WAL mode" in caplog.text


# --- the server process's own connections ---------------------------------------------


def _autocheckpoint_of_a_new_connection() -> int:
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            row: Any = cursor.fetchone()
    finally:
        fresh.close()
    return int(row[0])


@pytest.mark.django_db
def test_connections_opened_while_the_checkpointer_runs_leave_checkpoints_to_it(
    settings: Any,
) -> None:
    settings.TRAY = {**settings.TRAY, "SQLITE_CHECKPOINT": 3600.0}
    assert _autocheckpoint_of_a_new_connection() == AUTOCHECKPOINT_PAGES
    checkpointer = sqlite_checkpoint.start_server_checkpointer()
    try:
        assert checkpointer is not None
        assert checkpointer.is_alive()
        assert sqlite_checkpoint.start_server_checkpointer() is checkpointer  # once
        assert _autocheckpoint_of_a_new_connection() == FALLBACK_AUTOCHECKPOINT_PAGES
    finally:
        sqlite_checkpoint.stop_server_checkpointer()
    assert not checkpointer.is_alive()
    assert _autocheckpoint_of_a_new_connection() == AUTOCHECKPOINT_PAGES


@pytest.mark.django_db
def test_no_checkpointer_when_the_setting_is_zero_or_the_database_is_not_sqlite(
    settings: Any,
) -> None:
    settings.TRAY = {**settings.TRAY, "SQLITE_CHECKPOINT": 0.0}
    assert sqlite_checkpoint.start_server_checkpointer() is None
    assert _autocheckpoint_of_a_new_connection() == AUTOCHECKPOINT_PAGES
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/data/db.sqlite3"}
    assert sqlite_checkpoint.database_path(interval=1.0, database=sqlite) == "/data/db.sqlite3"
    assert sqlite_checkpoint.database_path(interval=0.0, database=sqlite) is None
    for name in (":memory:", "file:memorydb_default?mode=memory&cache=shared", ""):
        memory = {**sqlite, "NAME": name}
        assert sqlite_checkpoint.database_path(interval=1.0, database=memory) is None
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "tray"}
    assert sqlite_checkpoint.database_path(interval=1.0, database=postgres) is None


# --- the real server -----------------------------------------------------------------

BATCHES = 8
BATCH_ITEMS = 400
# ~1.2 MB per batch: eight are ~2,500 pages, past SQLite's automatic checkpoint.
MESSAGE = "m" * 3000


def _key(server: RunningServer) -> str:
    created = server.cli("create-api-key", "test", check=True)
    return created.stdout.strip().split()[-1]


def _publish(server: RunningServer) -> int:
    """Publishes BATCHES x BATCH_ITEMS notifications to alice; returns how many were created."""
    headers = {"Authorization": f"Api-Key {_key(server)}"}
    created = 0
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for batch in range(BATCHES):
            body = {
                "notifications": [
                    {
                        "audience": {"usernames": ["alice"]},
                        "title": f"n{batch}-{index}",
                        "message": MESSAGE,
                    }
                    for index in range(BATCH_ITEMS)
                ]
            }
            response = client.post("/api/notifications/batch/", json=body)
            assert response.status_code in (200, 201, 207), response.text
            created += sum(r["status"] == "created" for r in response.json()["results"])
    assert created == BATCHES * BATCH_ITEMS
    return created


def _rows(path: Path) -> int:
    """Notification rows as any reader sees them (file and WAL)."""
    with sqlite3.connect(path, timeout=TIMEOUT) as db:
        (count,) = db.execute("SELECT count(*) FROM notifications_message").fetchone()
    return int(count)


def test_the_server_checkpoints_on_its_own_thread_and_at_shutdown(
    server_factory: ServerFactory,
) -> None:
    """An interval longer than the test: the server's writer never checkpoints (its
    WAL grows past SQLite's mark with nothing in the file), and the stop's last
    checkpoint puts everything in the file and empties the WAL."""
    server = server_factory(demo=True, env={"TRAY_SQLITE_CHECKPOINT": "3600"})
    path = server.data_dir / "db.sqlite3"
    before, in_file = _rows(path), _in_file(path, "notifications_message")
    created = _publish(server)
    assert _wal_size(path) > AUTOCHECKPOINT_PAGES * PAGE
    assert _in_file(path, "notifications_message") == in_file
    # Open across the stop, so the server's connections closing at exit are not the
    # database's last (the last one would checkpoint and delete the WAL itself).
    watcher = sqlite3.connect(path)
    try:
        watcher.execute("SELECT count(*) FROM notifications_message").fetchone()
        assert server.stop() == 0
        assert os.path.exists(f"{path}-wal")
        assert _wal_size(path) == 0
    finally:
        watcher.close()
    assert _in_file(path, "notifications_message") == before + created
    assert _rows(path) == before + created


def test_the_servers_checkpointer_copies_the_wal_while_it_serves(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(demo=True, env={"TRAY_SQLITE_CHECKPOINT": "0.05"})
    path = server.data_dir / "db.sqlite3"
    before = _rows(path)
    created = _publish(server)
    _wait_until(
        lambda: _in_file(path, "notifications_message") == before + created,
        what="every notification in the database file",
    )
    assert server.is_running()
    assert _rows(path) == before + created
    assert "WAL checkpoint" not in server.output()  # no failure logged
    assert server.stop() == 0


def test_with_the_setting_zero_sqlite_checkpoints_in_the_writer_as_before(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(demo=True, env={"TRAY_SQLITE_CHECKPOINT": "0"})
    path = server.data_dir / "db.sqlite3"
    before = _rows(path)
    created = _publish(server)
    # SQLite's automatic checkpoint ran in the server's writer (nothing else writes):
    # most of what was published is in the file already, and the WAL was started
    # over rather than grown to hold it all.
    assert _in_file(path, "notifications_message") > before
    assert _wal_size(path) < BATCHES * BATCH_ITEMS * len(MESSAGE)
    assert _rows(path) == before + created
    assert server.stop() == 0


def test_checkpointer_thread_is_a_daemon() -> None:
    """It never keeps a process alive that is exiting for another reason."""
    checkpointer = WalCheckpointer("/nonexistent/db.sqlite3", interval=3600)
    checkpointer.start()
    try:
        threads = [t for t in threading.enumerate() if t.name == "wal-checkpoint"]
        assert threads
        assert all(t.daemon for t in threads)
    finally:
        checkpointer.stop()
