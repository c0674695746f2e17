"""B9's baselines: bare ``sqlite3`` doing the store's work with nothing of the product around it.

The lower bounds the desktop client's local store (``tray_app/store``) is measured against,
in the same invocation, on files in the same scratch directory:

- the same PRAGMAs as ``tray_app.store.db`` sets (WAL journal, ``synchronous=NORMAL``,
  in-memory temp store, the same busy timeout), so a commit costs the same here and there;
- a plain ``rows`` table with the product's columns (``seq`` the INTEGER PRIMARY KEY) and
  no other index, trigger or constraint;
- optionally a standalone FTS5 table over the same title and message, with the product's
  tokenizer, so searches return the same rows.

Rows are tuples in the order of :data:`COLUMNS`, already converted (JSON text, microseconds),
so none of the product's payload parsing is counted here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

# The same settings as tray_app.store.db (BUSY_TIMEOUT_MS, _connect).
BUSY_TIMEOUT_MS: Final = 5_000
TOKENIZER: Final = "unicode61 remove_diacritics 2"
COLUMNS: Final = (
    "seq, id, title, message, event_type, priority, url, created_us, is_read, "
    "actor_json, project_id, project_title, data_json"
)
_PLACEHOLDERS: Final = ", ".join("?" * len(COLUMNS.split(", ")))

Row = tuple[Any, ...]


def open_bare(path: Path, *, fts: bool) -> sqlite3.Connection:
    """A new file with the product's PRAGMAs, a plain ``rows`` table and (``fts``) an FTS5
    table; autocommit mode, so every transaction below is explicit.

    Args:
        path: The database file to create.
        fts: Whether to add the full-text table the inserts also fill.
    """
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA temp_store = MEMORY")
    connection.execute(
        "CREATE TABLE rows (seq INTEGER PRIMARY KEY, id INTEGER, title TEXT, message TEXT, "
        "event_type TEXT, priority TEXT, url TEXT, created_us INTEGER, is_read INTEGER, "
        "actor_json TEXT, project_id INTEGER, project_title TEXT, data_json TEXT)"
    )
    if fts:
        connection.execute(
            f"CREATE VIRTUAL TABLE rows_fts USING fts5(title, message, tokenize = '{TOKENIZER}')"
        )
    return connection


def insert_one(connection: sqlite3.Connection, row: Row, *, fts: bool) -> None:
    """``BEGIN IMMEDIATE``, INSERT the row (and its text into FTS5), ``COMMIT``."""
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(f"INSERT INTO rows ({COLUMNS}) VALUES ({_PLACEHOLDERS})", row)
    if fts:
        connection.execute(
            "INSERT INTO rows_fts (rowid, title, message) VALUES (?, ?, ?)",
            (row[0], row[2], row[3]),
        )
    connection.execute("COMMIT")


def insert_many(connection: sqlite3.Connection, rows: Sequence[Row], *, fts: bool) -> None:
    """One transaction: ``executemany`` of the rows, then (``fts``) the FTS5 index of their
    text in one statement (one index segment, the cheapest way FTS5 takes a batch)."""
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        f"INSERT INTO rows ({COLUMNS}) VALUES ({_PLACEHOLDERS})",
        rows,
    )
    if fts:
        connection.executemany(
            "INSERT INTO rows_fts (rowid, title, message) VALUES (?, ?, ?)",
            [(row[0], row[2], row[3]) for row in rows],
        )
    connection.execute("COMMIT")


def search_rowids(connection: sqlite3.Connection, expression: str, limit: int) -> list[int]:
    """The newest ``limit`` matches' rowids: FTS5 alone, walking its index backwards."""
    return [
        rowid
        for (rowid,) in connection.execute(
            "SELECT rowid FROM rows_fts WHERE rows_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (expression, limit),
        )
    ]


def search_rows(connection: sqlite3.Connection, expression: str, limit: int) -> list[Row]:
    """The newest ``limit`` matches with every column: the FTS5 walk, then a primary-key
    lookup per match (what a history page needs)."""
    return connection.execute(
        f"SELECT {COLUMNS} FROM rows WHERE seq IN ("
        "SELECT rowid FROM rows_fts WHERE rows_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
        ") ORDER BY seq DESC",
        (expression, limit),
    ).fetchall()


__all__ = [
    "BUSY_TIMEOUT_MS",
    "COLUMNS",
    "TOKENIZER",
    "Row",
    "insert_many",
    "insert_one",
    "open_bare",
    "search_rowids",
    "search_rows",
]
