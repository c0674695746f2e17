"""A publish's Inbox rows written behind its push, many publishes' at once (SQLite).

Why: every recipient's Inbox row goes into an index ordered by user, so a
publish to 400 people changes ~400 scattered pages, and SQLite's commit writes
each whole page to the WAL: ~6.5 ms before the push of a broadcast could start,
where the same publish's seqs and one record of its rows take ~1 ms
(docs/performance.md, "Inbox rows behind the push"). Written later, many
publishes' rows go in together, sorted by user, and each user's page is written
once for all of them.

How:

- ``append_later`` (inside the publish's transaction, once each user has been given
  the next seq) reserves the rows' ids from the inbox table's own AUTOINCREMENT
  counter and stores one ``InboxPending`` record. What
  it returns, (user, row id, seq), is all the push needs; the record is as durable
  as the rows would have been, so "durable first, push second" holds.
- ``settle`` turns every pending record into its Inbox rows (one INSERT ... SELECT
  over ``json_each``, sorted by user and seq) and deletes it, in one transaction.
  The publish lane calls it ``TRAY_INBOX_SETTLE_MS`` after a publish, on the
  database thread between its batches (backend/notifications/publish_lane.py).
- ``read_barrier`` comes first in every reader and writer of Inbox rows (replay,
  the inbox API, read state, delete, the idempotent answer's count): it settles
  whatever may be pending, so nobody ever sees a user's seq 12 without seq 11. In
  the serving process, whose lane writes the records, an in-memory flag says
  whether any may be pending (no statement when none is); any other process
  (``manage``, a test reading the file) looks at the table.

Only on SQLite: PostgreSQL in scale mode has several processes writing at once,
and its commit does not copy whole pages per change.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from backend.notifications.models import Inbox, InboxPending, Message
from backend.sql import table
from backend.users.models import User

# The most rows one settling transaction writes: a backlog is written in steps, so
# the database thread is never held for long.
SETTLE_CHUNK_ROWS = 20_000

_lock = threading.Lock()
# Whether records may be pending (in a process that trusts its own count); the
# generation counts records written, so a settle that ran beside a new record does
# not clear the flag for it.
_maybe_pending = True
_generation = 0
_trusted = False


def enabled() -> bool:
    """Whether a fast publish's rows are written later here (SQLite, setting above 0)."""
    return connection.vendor == "sqlite" and settings.TRAY["INBOX_SETTLE_MS"] > 0


def later_from() -> int:
    """The smallest audience whose rows are left for later (``TRAY_INBOX_LATER_FROM``).

    A few rows cost no more to write at once than a record and its settle (a publish
    to one user: ~0.1-0.2 ms more CPU left for later, docs/performance.md), and they
    share no index page with other publishes' rows to gain from being written together.
    """
    return max(1, int(settings.TRAY["INBOX_LATER_FROM"]))


def settle_delay() -> float | None:
    """Seconds between a publish and the writing of its rows; None: written at once."""
    return settings.TRAY["INBOX_SETTLE_MS"] / 1000 if enabled() else None


def trust_own_records() -> None:
    """This process is the one that writes pending records to its database (the
    server): ``read_barrier`` may then rely on the in-memory flag. Records found at
    start (a crash between a publish and its settle) are settled by the first reader."""
    global _trusted
    _trusted = True


def append_later(message_id: int, seqs: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Reserve the Inbox rows of users given their seqs: (user, row id, seq).

    Inside the publish's transaction, ``seqs`` (user, seq) just given out with the
    users' sequence rows locked (``services._bump_sequences``).
    """
    global _maybe_pending, _generation
    with _lock:
        _maybe_pending = True
        _generation += 1
    if not seqs:
        return []
    with connection.cursor() as cursor:
        first = _reserve_ids(cursor, len(seqs))
        cursor.execute(
            f"INSERT INTO {table(InboxPending)} (message_id, first_id, rows) "  # noqa: S608
            "VALUES (%s, %s, %s)",
            [message_id, first, json.dumps(seqs, separators=(",", ":"))],
        )
    return [(user, first + index, seq) for index, (user, seq) in enumerate(seqs)]


def _reserve_ids(cursor: CursorWrapper, count: int) -> int:
    """The first of ``count`` fresh Inbox ids, taken from the table's AUTOINCREMENT
    counter (``sqlite_sequence``), so rows inserted meanwhile by anyone else get ids
    above them."""
    name = Inbox._meta.db_table
    cursor.execute(
        "UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s RETURNING seq", [count, name]
    )
    row = cursor.fetchone()
    if row is None:  # no row was ever inserted into the table
        cursor.execute(
            "INSERT INTO sqlite_sequence (name, seq) "  # noqa: S608 (our names)
            f"SELECT %s, COALESCE(MAX(id), 0) + %s FROM {table(Inbox)} RETURNING seq",
            [name, count],
        )
        row = cursor.fetchone()
    return int(row[0]) - count + 1


def read_barrier() -> None:
    """Write every pending record's rows before Inbox rows are read or changed."""
    if connection.vendor != "sqlite":
        return
    if _trusted and not _maybe_pending:
        return
    settle()


def settle_if_pending(*, message_id: int) -> None:
    """``settle`` if the message's rows are pending: one indexed look when they are not."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table(InboxPending)} WHERE message_id = %s LIMIT 1",  # noqa: S608
            [message_id],
        )
        pending = cursor.fetchone() is not None
    if pending:
        settle()


def settle() -> int:
    """Write the Inbox rows of every pending record and delete it; how many rows.

    Rows of users deleted since are left out. Safe in any process and at any time:
    each step is one transaction that takes the records it writes.
    """
    global _maybe_pending
    if connection.vendor != "sqlite":
        return 0
    with _lock:
        generation = _generation
    written = 0
    more = True
    while more:
        bound, more = _next_bound()
        if bound is None:
            break
        written += _settle_up_to(bound)
    with _lock:
        if generation == _generation:
            _maybe_pending = False
    return written


def _next_bound() -> tuple[int | None, bool]:
    """The last record id of the next step (at most SETTLE_CHUNK_ROWS rows, at least
    one record; None when nothing is pending), and whether records beyond it wait."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, json_array_length(rows) FROM {table(InboxPending)} "  # noqa: S608
            "ORDER BY id"
        )
        bound: int | None = None
        total = 0
        for record_id, size in cursor.fetchall():
            if bound is not None and total + int(size) > SETTLE_CHUNK_ROWS:
                return bound, True
            bound = int(record_id)
            total += int(size)
    return bound, False


def _settle_up_to(bound: int) -> int:
    pending, inbox = table(InboxPending), table(Inbox)
    with transaction.atomic(), connection.cursor() as cursor:
        # Sorted by user and seq: each user's index page is visited once.
        cursor.execute(
            f"INSERT INTO {inbox} (id, user_id, message_id, seq) "  # noqa: S608
            "SELECT p.first_id + j.key, j.value ->> 0, p.message_id, j.value ->> 1 "
            f"FROM {pending} AS p, json_each(p.rows) AS j "
            f"WHERE p.id <= %s AND EXISTS (SELECT 1 FROM {table(User)} AS u "
            "WHERE u.id = j.value ->> 0) "
            f"AND EXISTS (SELECT 1 FROM {table(Message)} AS m WHERE m.id = p.message_id) "
            "ORDER BY 2, 4",
            [bound],
        )
        written = max(int(cursor.rowcount), 0)
        cursor.execute(f"DELETE FROM {pending} WHERE id <= %s", [bound])  # noqa: S608
    return written
