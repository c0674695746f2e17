"""Which counted statements wrote Inbox rows that publishes left pending."""

from __future__ import annotations

import functools


@functools.cache
def _prefixes() -> tuple[str, tuple[str, str]]:
    from backend.notifications.models import Inbox, InboxPending

    pending = InboxPending._meta.db_table
    return (
        f'INSERT INTO "{Inbox._meta.db_table}" (id, user_id, message_id, seq) SELECT',
        (f'DELETE FROM "{pending}"', f'SELECT id, json_array_length(rows) FROM "{pending}"'),
    )


def settle_share(sql: str, previous: str) -> int:
    """How many statements ``sql`` adds to the settle's count, ``previous`` being the
    statement its thread ran before it.

    The settle (backend/notifications/inbox_log.py) may look for where its step ends
    (a backlog), then writes the pending records' rows with one INSERT ... SELECT and
    deletes the records, in a transaction of its own: its INSERT counts for itself and
    for the BEGIN right before it.
    """
    insert, others = _prefixes()
    if sql.startswith(insert):
        return 2 if previous.startswith("BEGIN") else 1
    return 1 if sql.startswith(others) else 0
