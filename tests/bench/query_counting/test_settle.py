"""B5 counts the statements that write pending Inbox rows apart from the clients' own
(bench/query_counting/settle.py): a real settle's are all counted, a publish's and a
reader's none."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.notifications import inbox_log
from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from bench.query_counting.settle import settle_share


def _executed(captured: CaptureQueriesContext) -> list[str]:
    """The statements an execute wrapper sees: Django's log also holds the commits,
    which do not go through a cursor."""
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("COMMIT", "ROLLBACK")]


def _shares(captured: CaptureQueriesContext) -> list[int]:
    shares, previous = [], ""
    for sql in _executed(captured):
        shares.append(settle_share(sql, previous))
        previous = sql
    return shares


@pytest.mark.django_db(transaction=True)
def test_a_settle_is_counted_whole_and_nothing_else_is(make_user: Any) -> None:
    users = [make_user(f"u{index}").pk for index in range(inbox_log.later_from())]
    with CaptureQueriesContext(connection) as publish:
        notification_create(audience=Audience(users=tuple(users)), title="T", rows_later=True)
    with CaptureQueriesContext(connection) as settle:
        written = inbox_log.settle()
    with CaptureQueriesContext(connection) as reader:  # what a reader reads once settled
        assert Inbox.objects.filter(user_id=users[0]).count() == 1

    assert written == len(users)
    assert any(sql.startswith("BEGIN") for sql in _executed(settle))
    assert sum(_shares(settle)) == len(_executed(settle))
    assert sum(_shares(publish)) == 0 < len(_executed(publish))
    assert sum(_shares(reader)) == 0


def test_a_statement_after_another_begin_counts_only_itself() -> None:
    assert settle_share('DELETE FROM "notifications_inboxpending" AS p', "BEGIN") == 1
    assert settle_share("SELECT 1", "BEGIN IMMEDIATE") == 0
