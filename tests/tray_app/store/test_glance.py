"""``last_unread_count``: the tray's first count, read without opening the account."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.tray_app.store.test_inbox import payload
from tray_app.store.db import account_database_path, open_database
from tray_app.store.glance import last_unread_count
from tray_app.store.inbox import Inbox

SERVER = "http://127.0.0.1:8000"


def test_the_store_s_unread_count(tmp_path: Path) -> None:
    path = account_database_path(tmp_path, SERVER, "alice")
    opened = open_database(path)
    inbox = Inbox(opened.connection)
    inbox.ingest([payload(seq, is_read=seq == 1) for seq in (1, 2, 3)])
    assert last_unread_count(tmp_path, SERVER, "alice") == inbox.unread_count() == 2
    opened.connection.close()
    assert last_unread_count(tmp_path, SERVER + "/", "alice") == 2  # the same account


def test_nothing_known_is_none_and_nothing_is_created(tmp_path: Path) -> None:
    assert last_unread_count(tmp_path, SERVER, "alice") is None
    assert last_unread_count(tmp_path, SERVER, "") is None
    assert last_unread_count(tmp_path, "not a url", "alice") is None
    assert not any(tmp_path.iterdir())


def test_a_file_that_is_not_the_store_is_none(tmp_path: Path) -> None:
    path = account_database_path(tmp_path, SERVER, "alice")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all" * 100)
    assert last_unread_count(tmp_path, SERVER, "alice") is None
    other = sqlite3.connect(path.with_name("other.sqlite3"))
    other.execute("CREATE TABLE unrelated (x)")
    other.close()
    path.unlink()
    path.with_name("other.sqlite3").rename(path)
    assert last_unread_count(tmp_path, SERVER, "alice") is None
