"""backend/notifications/migrations: run on the test database, both ways.

0005 fills InboxSequence.unread from the rows made before it and drops the partial
``inbox_unread`` index; its reverse brings the index back and drops the column.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import inbox_delete, inbox_mark_read, notification_create

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("notifications", "0004_inbox_user_unindexed")
AFTER = ("notifications", "0005_inboxsequence_unread")


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.fixture
def migrations_restored() -> Iterator[None]:
    """Whatever a test does, the database ends at the latest migrations again."""
    yield
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes("notifications")[0])


def indexes() -> set[str]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, Inbox._meta.db_table)
    return {name for name, details in found.items() if details["index"]}


def sequence_columns() -> set[str]:
    with connection.cursor() as cursor:
        described = connection.introspection.get_table_description(
            cursor, "notifications_inboxsequence"
        )
    return {column.name for column in described}


def unread_by_user() -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, unread FROM notifications_inboxsequence")
        return {int(user): int(unread) for user, unread in cursor.fetchall()}


def unread_rows_by_user() -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.user_id, COUNT(i.id) FROM notifications_inboxsequence s "
            "LEFT JOIN notifications_inbox i ON i.user_id = s.user_id "
            "AND i.read_at IS NULL AND i.deleted_at IS NULL GROUP BY s.user_id"
        )
        return {int(user): int(count) for user, count in cursor.fetchall()}


def test_0005_counts_the_rows_made_before_it_and_reverses(
    make_user: Any, migrations_restored: None
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    for number in range(5):
        notification_create(audience=Audience(users=(alice.pk, bob.pk)), title=f"n{number}")
    alices = list(Inbox.objects.filter(user=alice).order_by("seq").values_list("id", flat=True))
    inbox_mark_read(user_id=alice.pk, ids=alices[:2])
    inbox_delete(user_id=alice.pk, ids=alices[1:3])  # one read, one unread
    bobs = list(Inbox.objects.filter(user=bob).order_by("seq").values_list("id", flat=True))
    inbox_delete(user_id=bob.pk, ids=bobs[:1])

    migrate(BEFORE)
    assert "unread" not in sequence_columns()
    assert "inbox_unread" in indexes()
    # A row marked unread by code of before the counter, to be counted too.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notifications_inbox SET read_at = NULL WHERE id = %s", [alices[0]])

    migrate(AFTER)
    assert "inbox_unread" not in indexes()
    assert unread_by_user() == unread_rows_by_user() == {alice.pk: 3, bob.pk: 4, carol.pk: 0}

    # Back again (the index returns, the column goes) and forward once more.
    migrate(BEFORE)
    assert "unread" not in sequence_columns()
    assert "inbox_unread" in indexes()
    migrate(AFTER)
    assert unread_by_user() == {alice.pk: 3, bob.pk: 4, carol.pk: 0}
