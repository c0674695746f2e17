"""Statements of the publish path, built without the ORM's compiler and run without
Django's cursor where nothing watches them.

A queryset compiles its SQL anew on every call: ~0.1-0.3 ms of Python for a
``filter(x__in=...).values_list(...)``, which on the publish path (issue 14) was a
third of the write. These build the same statement with the model's own table and
column names and run it on the current connection.

On SQLite, Django's cursor costs ~25 us of Python per statement (its wrappers, the
thread checks, a regular expression over the SQL to turn ``%s`` into ``?``), a tenth
of the publish lane's thread under B3 (docs/performance.md, "the sixth stop").
``fetch_all``, ``fetch_one`` and ``execute`` run a statement written with ``%s``
straight on the sqlite3 connection, with Django's error translation (an
``IntegrityError`` is still ``django.db.IntegrityError``), unless something watches
the statements (an execute wrapper such as the benchmarks' statement counter, or
the query log of ``DEBUG`` and ``CaptureQueriesContext``): then through Django's
cursor, so every count stays exact. Statements given here never hold a literal
``%``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model


def table(model: type[Model]) -> str:
    """The model's table name, quoted for the current database."""
    return str(connection.ops.quote_name(model._meta.db_table))


def marks(values: Sequence[object]) -> str:
    """One placeholder per value: ``%s,%s,%s``."""
    return ",".join(["%s"] * len(values))


def rows_where_in(
    model: type[Model], columns: Sequence[str], column: str, values: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM model's table WHERE column IN values`` (no rows for no values).

    ``columns`` and ``column`` are database column names (``id``, ``role_id``), never
    user input; ``values`` are bound parameters.
    """
    if not values:
        return []
    quote = connection.ops.quote_name
    statement = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {table(model)} "  # noqa: S608
        f"WHERE {quote(column)} IN ({marks(values)})"
    )
    return fetch_all(statement, values)


def _unwatched_sqlite(database: BaseDatabaseWrapper) -> sqlite3.Connection | None:
    """The open sqlite3 connection when nothing watches its statements, else None."""
    if database.vendor != "sqlite" or database.execute_wrappers or database.queries_logged:
        return None
    if database.connection is None:
        database.ensure_connection()
    raw: sqlite3.Connection = database.connection
    return raw


def fetch_all(statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every row of one statement (``%s`` placeholders) on the current connection."""
    database = connections[DEFAULT_DB_ALIAS]
    raw = _unwatched_sqlite(database)
    if raw is None:
        with database.cursor() as cursor:
            cursor.execute(statement, params)
            return [tuple(row) for row in cursor.fetchall()]
    with database.wrap_database_errors:
        rows: list[tuple[Any, ...]] = raw.execute(statement.replace("%s", "?"), params).fetchall()
        return rows


def fetch_one(statement: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of one statement, or None."""
    database = connections[DEFAULT_DB_ALIAS]
    raw = _unwatched_sqlite(database)
    if raw is None:
        with database.cursor() as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
            return None if row is None else tuple(row)
    with database.wrap_database_errors:
        found: tuple[Any, ...] | None = raw.execute(statement.replace("%s", "?"), params).fetchone()
        return found


def execute(statement: str, params: Sequence[Any]) -> int:
    """Run one statement that returns no rows; how many rows it changed."""
    database = connections[DEFAULT_DB_ALIAS]
    raw = _unwatched_sqlite(database)
    if raw is None:
        with database.cursor() as cursor:
            cursor.execute(statement, params)
            return int(cursor.rowcount)
    with database.wrap_database_errors:
        return int(raw.execute(statement.replace("%s", "?"), params).rowcount)
