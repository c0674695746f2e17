"""backend/notifications/migrations: run both ways, on SQLite and on PostgreSQL; 0008 on
SQLite, where records are pending.

0005 fills InboxSequence.unread from the rows made before it and drops the partial
``inbox_unread`` index; its reverse brings the index back and drops the column.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from backend.notifications.models import Inbox
from tests.fixtures.services import run_cli, server_env

BEFORE = ("notifications", "0004_inbox_user_unindexed")
AFTER = ("notifications", "0005_inboxsequence_unread")


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


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


def check_0005_both_ways() -> None:
    """Rows of every read state made, 0005 undone and done again: the counts, the index
    and the column each time. On a migrated database with no users yet; run in this
    process on SQLite, and by ``manage shell`` on PostgreSQL."""
    from backend.notifications.selectors import Audience
    from backend.notifications.services import (
        inbox_delete,
        inbox_mark_read,
        notification_create,
    )
    from backend.users.models import User

    alice, bob, carol = (User.objects.create_user(name) for name in ("alice", "bob", "carol"))
    for number in range(5):
        notification_create(audience=Audience(users=(alice.pk, bob.pk)), title=f"n{number}")
    alices = list(Inbox.objects.filter(user=alice).order_by("seq").values_list("id", flat=True))
    inbox_mark_read(user_id=alice.pk, ids=alices[:2])
    inbox_delete(user_id=alice.pk, ids=alices[1:3])  # one read, one unread
    bobs = list(Inbox.objects.filter(user=bob).order_by("seq").values_list("id", flat=True))
    inbox_delete(user_id=bob.pk, ids=bobs[:1])
    expected = {alice.pk: 3, bob.pk: 4, carol.pk: 0}

    migrate(BEFORE)
    assert "unread" not in sequence_columns()
    assert "inbox_unread" in indexes()
    # A row marked unread by code of before the counter, to be counted too.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notifications_inbox SET read_at = NULL WHERE id = %s", [alices[0]])

    migrate(AFTER)
    assert "inbox_unread" not in indexes()
    assert unread_by_user() == unread_rows_by_user() == expected

    # Back again (the index returns, the column goes) and forward once more.
    migrate(BEFORE)
    assert "unread" not in sequence_columns()
    assert "inbox_unread" in indexes()
    migrate(AFTER)
    assert unread_by_user() == expected


@pytest.fixture
def migrations_restored() -> Iterator[None]:
    """Whatever a test does, the test database ends at the latest migrations again."""
    yield
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")[0])


@pytest.mark.django_db(transaction=True)
def test_0005_counts_the_rows_made_before_it_and_reverses(migrations_restored: None) -> None:
    check_0005_both_ways()


@pytest.mark.postgres
def test_0005_counts_the_rows_made_before_it_and_reverses_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    env = server_env(
        data_dir=tmp_path, database_url=postgres_url, extra={"TRAY_LOG_LEVEL": "WARNING"}
    )
    run_cli("manage", "migrate", "--verbosity", "0", env=env, check=True)
    check = run_cli(
        "manage",
        "shell",
        "-c",
        "from django.db import connection; assert connection.vendor == 'postgresql'; "
        "from tests.backend.notifications.test_migrations import check_0005_both_ways; "
        "check_0005_both_ways(); print('checked')",
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().endswith("checked")


@pytest.mark.django_db(transaction=True)
def test_0008_gives_records_of_8_bands_to_any_reader(
    migrations_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record a server with 8 bands left pending holds users of several of today's
    32 bands: after 0008 it is "any user's", and the replay of a user whose band
    changed (9: band 1 of 8, band 9 of 32) finds the row."""
    from backend.notifications import inbox_log, selectors
    from backend.notifications.models import InboxPending, Message
    from backend.users.models import User

    users = {n: User.objects.create_user(f"user{n}", id=n) for n in (1, 9)}
    assert inbox_log.band_of(9) != 9 % 8
    message = Message.objects.create(title="left by 8 bands")
    inbox_log.settle()
    migrate(("notifications", "0007_inbox_pending_band"))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_inboxpending (message_id, first_id, band, rows) "
            "VALUES (%s, 30000, 1, %s)",
            [message.pk, "[[1, 1], [9, 1]]"],
        )
    migrate(("notifications", "0008_inbox_pending_any_band"))
    # As a busy server starting on this database: any band may hold records, and a
    # reader writes only its band's (and any user's).
    monkeypatch.setattr(inbox_log, "_maybe_pending", [True] * inbox_log.BANDS)
    monkeypatch.setattr(inbox_log, "READER_SETTLES_ALL_ROWS", 0)
    assert list(InboxPending.objects.values_list("band", flat=True)) == [inbox_log.ANY_BAND]
    replay = selectors.inbox_replay_after(user_id=users[9].pk, after_seq=0, limit=5)
    assert [(row.seq, (row.payload or {}).get("id")) for row in replay] == [(1, 30001)]
    assert not InboxPending.objects.exists()
