"""Statements of the publish path (backend/sql.py): the same rows and errors whether
they run straight on the sqlite3 connection or through Django's cursor, and every
statement seen by whatever watches them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from backend.sql import _unwatched_sqlite, execute, fetch_all, fetch_one, rows_where_in
from backend.users.models import User

pytestmark = pytest.mark.django_db


def _both_ways(call: Callable[[], Any]) -> tuple[Any, Any]:
    """``call`` unwatched (raw sqlite3), then under a query log (Django's cursor)."""
    assert _unwatched_sqlite(connection) is not None
    raw = call()
    with CaptureQueriesContext(connection) as queries:
        assert _unwatched_sqlite(connection) is None
        logged = call()
    assert len(queries) == 1
    return raw, logged


def test_rows_are_the_same_either_way(make_user: Callable[..., User]) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    statement = "SELECT id, username FROM users_user WHERE id IN (%s, %s) ORDER BY id"
    raw, logged = _both_ways(lambda: fetch_all(statement, [alice.pk, bob.pk]))
    assert raw == logged == [(alice.pk, "alice"), (bob.pk, "bob")]
    raw, logged = _both_ways(lambda: fetch_one(statement, [alice.pk, bob.pk]))
    assert raw == logged == (alice.pk, "alice")
    raw, logged = _both_ways(lambda: fetch_one(statement, [0, -1]))
    assert raw is logged is None
    assert rows_where_in(User, ("username",), "id", [bob.pk]) == [("bob",)]


def test_changes_count_the_same_either_way(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    statement = "UPDATE users_user SET first_name = %s WHERE id = %s"
    raw, logged = _both_ways(lambda: execute(statement, ["Alice", alice.pk]))
    assert raw == logged == 1
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


def test_a_broken_constraint_is_djangos_integrity_error(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    statement = "UPDATE users_user SET username = %s WHERE id = %s"
    bob = make_user("bob")
    with pytest.raises(IntegrityError):
        execute(statement, ["alice", bob.pk])
    with pytest.raises(IntegrityError), CaptureQueriesContext(connection):
        execute(statement, ["alice", bob.pk])
    assert User.objects.get(pk=alice.pk).username == "alice"


def test_an_execute_wrapper_sees_every_statement(make_user: Callable[..., User]) -> None:
    """The benchmarks count statements with an execute wrapper: none may slip past it."""
    alice = make_user("alice")
    seen: list[str] = []

    def count(execute_: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute_(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert fetch_all("SELECT id FROM users_user WHERE id = %s", [alice.pk]) == [(alice.pk,)]
        assert fetch_one("SELECT id FROM users_user WHERE id = %s", [alice.pk]) == (alice.pk,)
        assert execute("UPDATE users_user SET last_name = %s WHERE id = %s", ["A", alice.pk]) == 1
    assert len(seen) == 3
