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
  the next seq) takes the rows' ids from its band's block of ids, reserved from the
  inbox table's own AUTOINCREMENT counter, and stores one ``InboxPending`` record per
  band of users (user id modulo ``BANDS``). What it returns, (user, row id, seq),
  is all the push needs; the records are as durable as the rows would have been, so
  "durable first, push second" holds.
- ``settle_step`` turns one band's pending records into their Inbox rows (one
  INSERT ... SELECT over ``json_each``, sorted by user and seq) and deletes them, in
  one transaction. The publish lane runs a step every ``TRAY_INBOX_SETTLE_MS`` /
  ``BANDS``, each on the next band, on the database thread between its batches
  (backend/notifications/publish_lane.py): a band's rows gather for
  ``TRAY_INBOX_SETTLE_MS``, so a user's index page is written once for several of
  their rows (the cost per row falls by a third to a half from one row per page,
  docs/performance.md), while one step holds the writer for a 32nd of them only.
  ``settle`` writes every band's.
- ``read_barrier`` comes first in every reader and writer of Inbox rows (replay,
  the inbox API, read state, delete, the idempotent answer's count): it settles the
  band of the user whose rows are read (every band for a message's recipients), so
  nobody ever sees a user's seq 12 without seq 11. In the serving process, whose
  lane writes the records, an in-memory flag per band says whether any may be
  pending (no statement when none is); any other process (``manage``, a test
  reading the file) looks at the table.

Only on SQLite: PostgreSQL in scale mode has several processes writing at once,
and its commit does not copy whole pages per change.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from backend.notifications.models import Inbox, InboxPending, Message
from backend.sql import execute, fetch_one, marks, table
from backend.users.models import User

# The most rows one settling transaction writes: a backlog is written in steps, so
# the database thread is never held for long.
SETTLE_CHUNK_ROWS = 20_000

# A reader whose band may be pending writes every band's rows instead when this
# process has at most this many waiting (~0.1 s of the writer): a reconnect storm's
# first reader then writes the rows of everything published while the clients were
# away in one settle, not one per band (B5: statements per reconnecting client).
# Above it (a busy server), a reader writes only its band's, as the lane does.
READER_SETTLES_ALL_ROWS = 2 * SETTLE_CHUNK_ROWS

# A record holds the rows of one band of users (user id modulo BANDS), and the lane
# settles one band at a time: each band's rows gather for TRAY_INBOX_SETTLE_MS, so a
# user's index page is written once for many of their rows, while one step holds the
# writer for only a band's share of them. A reader settles only its user's band.
# 32: a publish waits behind a step of ~1,000 rows at B3's rate (~10 ms) where with 8
# it waited behind ~3,750 (24-102 ms); 64 cost more in records per broadcast than it
# saved (docs/performance.md, "the fifth stop"). Records written with another number
# of bands are made ANY_BAND's by a migration (0008).
BANDS = 32
# The band of records written before there were bands: rows of any user.
ANY_BAND = -1
# Inbox ids a band reserves at a time (``_band_ids``): ~4 s of a band's rows at B3's
# rate, one statement per block.
BAND_BLOCK_IDS = 4096

_lock = threading.Lock()
# Per band, the ids [next, end) of its block (``_band_ids``); only the thread that
# publishes (the lane's) touches it.
_blocks: dict[int, list[int]] = {}
# Per band, whether records may be pending (in a process that trusts its own count);
# the generation counts records written, so a settle that ran beside a new record
# does not clear the flag for it.
_maybe_pending = [True] * BANDS
_generation = [0] * BANDS
_trusted = False
# Rows this process has left pending (an estimate the publish lane hurries its steps
# on: ``pending_rows``), and the band the lane's next step settles.
_pending_rows = 0
_next_band = 0
# Whether ``_pending_rows`` counts every record there is: not before this process
# has settled every band once (records of an earlier run are in no count).
_counted = False


def band_of(user_id: int) -> int:
    """The band whose records hold the user's rows."""
    return user_id % BANDS


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
    """Seconds between the publish lane's settle steps (each band's rows then gather
    for ``TRAY_INBOX_SETTLE_MS``); None: rows are written at once."""
    return settings.TRAY["INBOX_SETTLE_MS"] / 1000 / BANDS if enabled() else None


def trust_own_records() -> None:
    """This process is the one that writes pending records to its database (the
    server): ``read_barrier`` may then rely on the in-memory flag. Records found at
    start (a crash between a publish and its settle) are settled by the first reader."""
    global _trusted
    _trusted = True


def append_later(message_id: int, seqs: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Reserve the Inbox rows of users given their seqs: (user, row id, seq), by user.

    Inside the publish's transaction, ``seqs`` (user, seq) just given out with the
    users' sequence rows locked (``services._bump_sequences``). One record per band
    of users, whose rows' ids follow on from its ``first_id``.
    """
    global _pending_rows
    if not seqs:
        return []
    bands: dict[int, list[tuple[int, int]]] = {}
    for user, seq in seqs:
        bands.setdefault(band_of(user), []).append((user, seq))
    with _lock:
        for band in bands:
            _maybe_pending[band] = True
            _generation[band] += 1
        _pending_rows += len(seqs)
    reserved: list[tuple[int, int, int]] = []
    values: list[int | str] = []
    for band, rows in sorted(bands.items()):
        first_id = _band_ids(band, len(rows))
        values += [message_id, first_id, band, json.dumps(rows, separators=(",", ":"))]
        reserved += [(user, first_id + index, seq) for index, (user, seq) in enumerate(rows)]
    execute(
        f"INSERT INTO {table(InboxPending)} (message_id, first_id, band, rows) "  # noqa: S608
        "VALUES " + ",".join(["(%s, %s, %s, %s)"] * len(bands)),
        values,
    )
    reserved.sort()
    return reserved


@receiver(connection_created)
def _forget_blocks(**_: object) -> None:
    """A new connection may be to another database (tests): blocks were reserved in
    the one before."""
    _blocks.clear()


def _band_ids(band: int, count: int) -> int:
    """The first of ``count`` fresh Inbox ids for rows of ``band``, from the band's
    block (``BAND_BLOCK_IDS`` ids reserved at a time).

    Why blocks: a band's rows are written a step at a time, every
    ``TRAY_INBOX_SETTLE_MS``. With ids taken in publish order, each step's rows fell
    between the other bands' rows of the same two seconds, and every step rewrote
    every table page of those two seconds (~120 pages for ~1,000 rows). From its own
    block, a step's rows are a few neighbouring pages.

    A block is this process's once the transaction that reserved it commits; until
    then (and for good if it rolls back, when the reservation is undone too) the band
    has none, and the next publish reserves another. Ids of a block left unused (a
    restart) are a gap, as AUTOINCREMENT allows.
    """
    block = _blocks.get(band)
    if block is not None and block[1] - block[0] >= count:
        first = block[0]
        block[0] += count
        return first
    _blocks.pop(band, None)
    size = max(BAND_BLOCK_IDS, count)
    first = _reserve_ids(size)

    def keep() -> None:
        _blocks[band] = [first + count, first + size]

    transaction.on_commit(keep)
    return first


def _reserve_ids(count: int) -> int:
    """The first of ``count`` fresh Inbox ids, taken from the table's AUTOINCREMENT
    counter (``sqlite_sequence``), so rows inserted meanwhile by anyone else get ids
    above them."""
    name = Inbox._meta.db_table
    row = fetch_one(
        "UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s RETURNING seq", [count, name]
    )
    if row is None:  # no row was ever inserted into the table
        row = fetch_one(
            "INSERT INTO sqlite_sequence (name, seq) "  # noqa: S608 (our names)
            f"SELECT %s, COALESCE(MAX(id), 0) + %s FROM {table(Inbox)} RETURNING seq",
            [name, count],
        )
        assert row is not None  # INSERT ... RETURNING answers its row
    return int(row[0]) - count + 1


def pending_rows() -> int:
    """About how many rows this process has left pending (rows of users deleted since
    may be counted until a settle of every band)."""
    return _pending_rows


def read_barrier(*, user_id: int | None = None) -> None:
    """Write pending rows before Inbox rows are read or changed: the user's, or, for
    a reader of many users' rows (a message's recipients), everyone's."""
    if connection.vendor != "sqlite":
        return
    if user_id is None:
        if _may_be_pending():
            settle()
        return
    band = band_of(user_id)
    if _may_be_pending(band):
        if _trusted and _pending_rows <= READER_SETTLES_ALL_ROWS:
            settle()
        else:
            _settle_bands([band])


def _may_be_pending(band: int | None = None) -> bool:
    """Whether rows of ``band`` (None: of any band) may be pending; always, in a
    process that does not trust its own flags."""
    if not _trusted:
        return True
    return any(_maybe_pending) if band is None else _maybe_pending[band]


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
    global _counted
    written = _settle_bands(range(BANDS))
    _counted = _trusted
    return written


def settle_step() -> bool:
    """Settle the next band in turn (the publish lane's step); whether any band may
    still have rows pending."""
    global _next_band
    if connection.vendor != "sqlite":
        return False
    band = _next_band
    _next_band = (band + 1) % BANDS
    if _may_be_pending(band):  # a band with nothing pending costs no statement
        _settle_bands([band])
    return _may_be_pending()


def _settle_bands(bands: Sequence[int]) -> int:
    """Write the rows of every record of ``bands`` (and of ``ANY_BAND``) and delete them."""
    global _pending_rows
    if connection.vendor != "sqlite":
        return 0
    with _lock:
        generations = {band: _generation[band] for band in bands}
    chosen = [*bands, ANY_BAND]
    if _counted and _pending_rows <= SETTLE_CHUNK_ROWS:
        # Few enough to write in one step: no look for where the step ends first.
        written = _settle_up_to(_ALL_RECORDS, chosen)
    else:
        written = _settle_in_steps(chosen)
    with _lock:
        for band, generation in generations.items():
            if generation == _generation[band]:
                _maybe_pending[band] = False
        _pending_rows = max(0, _pending_rows - written) if any(_maybe_pending) else 0
    return written


# A bound above every record id.
_ALL_RECORDS = 2**63 - 1


def _settle_in_steps(bands: Sequence[int]) -> int:
    """Write the bands' records a step of at most SETTLE_CHUNK_ROWS rows at a time."""
    written = 0
    more = True
    while more:
        bound, more = _next_bound(bands)
        if bound is None:
            break
        written += _settle_up_to(bound, bands)
    return written


def _next_bound(bands: Sequence[int]) -> tuple[int | None, bool]:
    """The last record id of the bands' next step (at most SETTLE_CHUNK_ROWS rows, at
    least one record; None when nothing is pending), and whether records beyond it wait."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, json_array_length(rows) FROM {table(InboxPending)} "  # noqa: S608
            f"WHERE band IN ({marks(bands)}) ORDER BY id",
            list(bands),
        )
        bound: int | None = None
        total = 0
        for record_id, size in cursor.fetchall():
            if bound is not None and total + int(size) > SETTLE_CHUNK_ROWS:
                return bound, True
            bound = int(record_id)
            total += int(size)
    return bound, False


def _settle_up_to(bound: int, bands: Sequence[int]) -> int:
    """Write the rows of the bands' records up to ``bound`` and delete them, in one
    transaction.

    Nearly always every record's user and message still exist, and the statement
    skips the look at them for every row (a sixth of the settle's CPU): SQLite's
    foreign keys, deferred to the commit, refuse the transaction if one does not, and
    then it is written again without them. Inside a caller's transaction the commit
    is the caller's, so there the rows are looked at first.
    """
    if not connection.in_atomic_block:
        try:
            return _insert_rows(bound, bands, checked=False)
        except IntegrityError:  # a user or a message deleted since its publish
            pass
    return _insert_rows(bound, bands, checked=True)


def _insert_rows(bound: int, bands: Sequence[int], *, checked: bool) -> int:
    pending, inbox = table(InboxPending), table(Inbox)
    exists = (
        f"AND EXISTS (SELECT 1 FROM {table(User)} AS u WHERE u.id = j.value ->> 0) "  # noqa: S608
        f"AND EXISTS (SELECT 1 FROM {table(Message)} AS m WHERE m.id = p.message_id) "
        if checked
        else ""
    )
    chosen = f"p.id <= %s AND p.band IN ({marks(bands)})"
    with transaction.atomic(), connection.cursor() as cursor:
        # Sorted by user and seq: each user's index page is visited once.
        cursor.execute(
            f"INSERT INTO {inbox} (id, user_id, message_id, seq) "  # noqa: S608
            "SELECT p.first_id + j.key, j.value ->> 0, p.message_id, j.value ->> 1 "
            f"FROM {pending} AS p, json_each(p.rows) AS j WHERE {chosen} {exists}"
            "ORDER BY 2, 4",
            [bound, *bands],
        )
        written = max(int(cursor.rowcount), 0)
        cursor.execute(
            f"DELETE FROM {pending} AS p WHERE {chosen}",  # noqa: S608
            [bound, *bands],
        )
    return written
