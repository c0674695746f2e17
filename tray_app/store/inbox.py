"""The local copy of the user's notifications, and the resume cursor.

Notifications arrive read once by the protocol (``tray_app.net.protocol.Notification``,
from ``notification_created`` frames and the REST inbox alike). Rows and the cursor
change in one transaction, so
after any crash the cursor never claims a row that is not stored (shared/DESIGN.md,
invariant 3).

Every write method runs in :func:`tray_app.store.db.transaction`: on its own it commits its
own transaction; called inside ``with transaction(connection):`` it joins that one.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from tray_app.store.db import transaction, translate_sqlite_errors
from tray_app.store.errors import StoreError

if TYPE_CHECKING:
    from tray_app.net.protocol import Notification

logger = logging.getLogger(__name__)

# SQLite's INTEGER is 64-bit signed; the server's seqs and ids fit (backend MAX_SEQ).
MAX_INTEGER: Final = 2**63 - 1
# Well under SQLite's bound-parameter limit (32766 since 3.32, 999 before).
_CHUNK: Final = 500
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# SQL f-strings in this module interpolate only this constant column list, fixed clause
# fragments and "?" placeholders; every value is bound (hence the noqa: S608 marks).
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_STAGING: Final = "incoming_notifications"
_ROW_PLACEHOLDERS: Final = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
_COLUMNS: Final = (
    "seq, id, title, message, event_type, priority, url, created_us, is_read, "
    "actor_json, project_id, project_title, data_json"
)
# The same columns named through their table, for statements that join the full-text index
# (which has a title and a message of its own).
_NOTIFICATION_COLUMNS: Final = ", ".join(
    f"notifications.{column}" for column in _COLUMNS.split(", ")
)
# A text search starts from the full-text index, newest match first, and looks up each
# match's row by its primary key (the index's rowid is the seq): a "newest 50" page stops
# after 50 matches instead of collecting every match and sorting them. CROSS JOIN keeps
# SQLite from reordering the two tables.
_SEARCHED: Final = (
    "notifications_fts CROSS JOIN notifications ON notifications.seq = notifications_fts.rowid"
)


class StoredNotification(msgspec.Struct, frozen=True, dict=True):
    """One notification as stored. Text fields are plain text: never interpret HTML in them.

    ``actor`` and ``data`` are read from their stored JSON (``actor_json``, ``data_json``)
    when first asked for: the history, the tray menu and toasts never look at them, and
    decoding them for every listed row was a third of what listing rows cost.
    """

    id: int
    seq: int
    title: str
    message: str
    event_type: str
    priority: str
    url: str
    created_at: datetime
    is_read: bool
    actor_json: str | None
    project_id: int | None
    project_title: str | None
    data_json: str

    @functools.cached_property
    def actor(self) -> dict[str, Any] | None:
        """Who caused it (``id``, ``username``, names), or None for system notifications."""
        return _load_object(self.actor_json)

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """The event's extra fields (ids of the task, milestone, ...); empty when none."""
        return _load_object(self.data_json) or {}


class IngestResult(msgspec.Struct, frozen=True):
    """What one :meth:`Inbox.ingest` did.

    Attributes:
        added: The rows that were new, in seq order (show a toast for these).
        cursor: The cursor after the ingest.
        gap: True when rows above ``cursor + 1`` are stored, so something below them is
            missing: resume from ``cursor``.
    """

    added: list[StoredNotification]
    cursor: int
    gap: bool


class Filters(msgspec.Struct, frozen=True):
    """What the history window asks for; every field narrows the result.

    Attributes:
        text: Words typed by the user, searched in title and message. Every word must
            match, each as a prefix (``log`` finds "login"). Any input is safe: FTS syntax
            (quotes, ``AND``, ``*``, ``NEAR(``) is taken as plain words. Blank means no
            text filter; text with no searchable word (only punctuation or emoji) matches
            nothing.
        unread: True for unread only, False for read only, None for both.
        project_id: Only this project's notifications.
        priorities: Only these priorities; empty means all.
        since: Created at or after this moment (timezone-aware).
        until: Created strictly before this moment (timezone-aware).
        after_seq: Only notifications with a higher seq: what was stored after a list
            whose newest row has this seq was read (a list takes in new rows with it).
    """

    text: str = ""
    unread: bool | None = None
    project_id: int | None = None
    priorities: frozenset[str] = msgspec.field(default_factory=frozenset)
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None


NO_FILTERS: Final = Filters()


# --- pure helpers -----------------------------------------------------------------------


def _clean_text(value: str) -> str:
    # A JSON "\ud800" escape decodes to a lone surrogate, which SQLite's UTF-8 cannot hold.
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _whole_number(value: object, *, minimum: int) -> int | None:
    """``value`` if it is an int (not a bool) in [minimum, MAX_INTEGER], else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if not minimum <= value <= MAX_INTEGER:
        return None
    return value


def _to_microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _from_microseconds(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _json_object(value: object) -> str | None:
    """``value`` as JSON text when it is a JSON-able dict, else None."""
    if not isinstance(value, dict):
        return None
    try:
        # ensure_ascii (the default) escapes lone surrogates, so the text always stores.
        return json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return None


def _load_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    loaded = json.loads(text)
    return loaded if isinstance(loaded, dict) else None


class _Row(msgspec.Struct, frozen=True):
    seq: int
    id: int
    title: str
    message: str
    event_type: str
    priority: str
    url: str
    created_us: int
    actor_json: str | None
    project_id: int | None
    project_title: str | None
    data_json: str
    is_read: bool
    created_at_readable: bool = True

    def values(self) -> tuple[Any, ...]:
        return (
            self.seq,
            self.id,
            self.title,
            self.message,
            self.event_type,
            self.priority,
            self.url,
            self.created_us,
            int(self.is_read),
            self.actor_json,
            self.project_id,
            self.project_title,
            self.data_json,
        )


def _row_of(notification: Notification, *, arrived_at: datetime) -> _Row:
    """A notification as a row; a missing or unreadable time is ``arrived_at``."""
    created_at = notification.created_at
    return _Row(
        seq=notification.seq,
        id=notification.id,
        title=notification.title,
        message=notification.message,
        event_type=notification.event_type,
        priority=notification.priority,
        url=notification.url,
        created_us=_to_microseconds(created_at if created_at is not None else arrived_at),
        actor_json=_json_object(notification.actor),
        project_id=notification.project_id,
        project_title=notification.project_title,
        data_json=_json_object(notification.data) or "{}",
        is_read=notification.is_read,
        created_at_readable=created_at is not None,
    )


def fts_match_expression(text: str) -> str | None:
    """The FTS5 MATCH expression for words a user typed, or None if it has no word.

    Each whitespace-separated word becomes a quoted string (inner quotes doubled) with a
    prefix star, so no input can be FTS syntax: ``NEAR(`` is the word "near", ``"`` is
    nothing; control characters (NUL included) separate words. Words without a letter or
    digit are dropped, since the tokenizer would reduce them to an empty phrase that
    matches nothing.

    Args:
        text: What the user typed.

    Returns:
        E.g. ``"fix"* "login"*`` for ``fix login``; None when no word is left.
    """
    # FTS5 reads its expression as a C string: a NUL would cut a quoted word short.
    # Control characters separate words for the tokenizer anyway.
    plain = _CONTROL_CHARACTERS.sub(" ", _clean_text(text))
    words = [word for word in plain.split() if any(char.isalnum() for char in word)]
    if not words:
        return None
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise StoreError(f"The {name} time of a search needs a time zone.")
    return moment


class _Selection(msgspec.Struct, frozen=True):
    """The rows ``filters`` selects, as SQL: ``SELECT ... FROM {source} {where}``, newest
    first with ``ORDER BY {newest_first}``."""

    source: str
    columns: str
    where: str
    parameters: list[Any]
    newest_first: str


def _selection(filters: Filters) -> _Selection:
    """How to select what ``filters`` asks for (text searches start from the FTS index)."""
    clauses: list[str] = []
    parameters: list[Any] = []
    source, columns, seq = "notifications", _COLUMNS, "seq"
    if filters.text.strip():
        expression = fts_match_expression(filters.text)
        if expression is None:
            clauses.append("0")
        else:
            source, columns, seq = _SEARCHED, _NOTIFICATION_COLUMNS, "notifications_fts.rowid"
            clauses.append("notifications_fts MATCH ?")
            parameters.append(expression)
    if filters.after_seq is not None:
        # On the index's rowid when searching: FTS5 then starts its walk there.
        clauses.append(f"{seq} > ?")
        parameters.append(_non_negative(filters.after_seq, "after_seq"))
    if filters.unread is not None:
        clauses.append("is_read = ?")
        parameters.append(0 if filters.unread else 1)
    if filters.project_id is not None:
        clauses.append("project_id = ?")
        parameters.append(filters.project_id)
    if filters.priorities:
        chosen = sorted(filters.priorities)
        clauses.append(f"priority IN ({', '.join('?' * len(chosen))})")
        parameters.extend(chosen)
    if filters.since is not None:
        clauses.append("created_us >= ?")
        parameters.append(_to_microseconds(_aware(filters.since, "start")))
    if filters.until is not None:
        clauses.append("created_us < ?")
        parameters.append(_to_microseconds(_aware(filters.until, "end")))
    where = "WHERE " + " AND ".join(clauses) if clauses else ""
    return _Selection(source, columns, where, parameters, f"{seq} DESC")


def validated_ids(ids: Iterable[object]) -> list[int]:
    """The ids, de-duplicated in their order; StoreError if one is not a positive int."""
    if isinstance(ids, str | bytes):
        raise StoreError("Notification ids must be a list of whole numbers.")
    seen: dict[int, None] = {}
    for value in ids:
        number = _whole_number(value, minimum=1)
        if number is None:
            raise StoreError("Every notification id must be a whole number from 1.")
        seen[number] = None
    return list(seen)


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _notification(row: tuple[Any, ...]) -> StoredNotification:
    return StoredNotification(
        seq=row[0],
        id=row[1],
        title=row[2],
        message=row[3],
        event_type=row[4],
        priority=row[5],
        url=row[6],
        created_at=_from_microseconds(row[7]),
        is_read=bool(row[8]),
        actor_json=row[9],
        project_id=row[10],
        project_title=row[11],
        data_json=row[12],
    )


def _non_negative(value: object, name: str) -> int:
    number = _whole_number(value, minimum=0)
    if number is None:
        raise StoreError(f"{name} must be a whole number from 0.")
    return number


# --- the inbox ----------------------------------------------------------------------------


class Inbox:
    """The notifications of one account, in the connection's database.

    Every public method reports a database failure (disk full, lock held too long) as
    :class:`StoreError`, never as ``sqlite3.Error``.

    Args:
        connection: A connection from :func:`tray_app.store.db.open_database`.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @property
    def connection(self) -> sqlite3.Connection:
        """The database connection (other parts of the account's store share it)."""
        return self._connection

    # -- cursor and intake --

    @translate_sqlite_errors
    def cursor(self) -> int:
        """The highest seq with no gap below it: resume after this one.

        Seqs the server said it has nothing for (``through_seq``) count as filled.
        """
        row = self._connection.execute(
            "SELECT cursor FROM sync_state WHERE singleton = 1"
        ).fetchone()
        return int(row[0])

    @translate_sqlite_errors
    def ingest(
        self,
        notifications: Sequence[Notification],
        *,
        through_seq: int | None = None,
        replay_after_seq: int | None = None,
    ) -> IngestResult:
        """Store new notifications and move the cursor, in one transaction.

        A seq at or below the cursor, already stored, or repeated in this batch is a
        duplicate and dropped (the first copy in the batch wins). A notification whose id
        is already stored under another seq is dropped as malformed, with a log line that
        names no content; one without a readable time is stored at its time of arrival.

        Args:
            notifications: As the protocol read them, in any order.
            through_seq: The server has nothing else up to this seq (``caught_up``, or
                the end of a REST page walk): seqs up to it that never arrived were
                deleted on the server and count as filled.
            replay_after_seq: The ``after_seq`` of that ``caught_up``. When given,
                ``through_seq`` counts only if the cursor (after this batch) has reached
                it: a replay the server started on its own may begin above a cursor whose
                rows are still on their way (docs/protocol.md, Resume).

        Returns:
            The rows added, the new cursor, and whether a gap remains above it.

        Raises:
            StoreError: ``through_seq`` or ``replay_after_seq`` is not a whole number
                from 0.
        """
        bound = None if through_seq is None else _non_negative(through_seq, "through_seq")
        start = (
            None
            if replay_after_seq is None
            else _non_negative(replay_after_seq, "replay_after_seq")
        )
        parsed: list[_Row] = []
        # One log line per problem per batch: a broken server must not flood the log.
        problems: Counter[str] = Counter()
        arrived_at = datetime.now(UTC)
        for notification in notifications:
            row = _row_of(notification, arrived_at=arrived_at)
            if not row.created_at_readable:
                problems["created_at unreadable, time of arrival used"] += 1
            parsed.append(row)
        with transaction(self._connection):
            cursor = self.cursor()
            fresh: dict[int, _Row] = {}
            for row in parsed:
                if row.seq > cursor and row.seq not in fresh:
                    fresh[row.seq] = row
            stored_seqs, clashing = self._stored_keys(fresh.values())
            for seq in stored_seqs & fresh.keys():
                del fresh[seq]
            seen_ids: set[int] = set()
            added: list[_Row] = []
            for seq in sorted(fresh):
                row = fresh[seq]
                if row.id in clashing or row.id in seen_ids:
                    problems["skipped: id already stored under another seq"] += 1
                    continue
                seen_ids.add(row.id)
                added.append(row)
            if len(added) == 1:
                # One row (a live notification): one statement is one index segment anyway.
                self._connection.execute(
                    f"INSERT INTO notifications ({_COLUMNS}) VALUES ({_ROW_PLACEHOLDERS})",  # noqa: S608
                    added[0].values(),
                )
            elif added:
                self._insert_staged(added)
            new_cursor = self._advance(cursor)
            if bound is not None and (start is None or start <= new_cursor):
                new_cursor = self._advance(max(new_cursor, bound))
            if new_cursor != cursor:
                self._write_cursor(new_cursor)
            gap = self._has_rows_above(new_cursor)
        for problem, times in sorted(problems.items()):
            logger.warning("notifications (%d of %d): %s", times, len(notifications), problem)
        return IngestResult(
            added=[_notification(row.values()) for row in added], cursor=new_cursor, gap=gap
        )

    def _insert_staged(self, rows: Sequence[_Row]) -> None:
        """Insert many rows in one statement, through a staging table.

        FTS5 flushes its pending index data at every statement, so row-by-row inserts
        through the trigger leave one tiny index segment per row (100,000 rows: ~5 s
        instead of ~0.5 s).
        """
        # TEMP: per connection, never written to the file. Made here, inside the
        # transaction, so a rolled-back caller cannot leave us without it.
        self._connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "  # noqa: S608
            "AS SELECT * FROM main.notifications WHERE 0"
        )
        self._connection.executemany(
            f"INSERT INTO temp.{_STAGING} ({_COLUMNS}) VALUES ({_ROW_PLACEHOLDERS})",  # noqa: S608
            [row.values() for row in rows],
        )
        self._connection.execute(
            f"INSERT INTO notifications ({_COLUMNS}) "  # noqa: S608
            f"SELECT {_COLUMNS} FROM temp.{_STAGING} ORDER BY seq"
        )
        self._connection.execute(f"DELETE FROM temp.{_STAGING}")  # noqa: S608

    def _stored_keys(self, rows: Iterable[_Row]) -> tuple[set[int], set[int]]:
        """The seqs and the ids of stored rows that share a seq or an id with ``rows``.

        One query per chunk for both keys (a live notification is one lookup, not two).
        """
        seqs: set[int] = set()
        ids: set[int] = set()
        listed = list(rows)
        # Two parameters per row: stay within _CHUNK parameters per statement.
        for start in range(0, len(listed), _CHUNK // 2):
            chunk = listed[start : start + _CHUNK // 2]
            marks = _placeholders(len(chunk))
            for seq, notification_id in self._connection.execute(
                f"SELECT seq, id FROM notifications WHERE seq IN ({marks}) OR id IN ({marks})",  # noqa: S608
                [row.seq for row in chunk] + [row.id for row in chunk],
            ):
                seqs.add(seq)
                ids.add(notification_id)
        return seqs, ids

    def _stored(self, keyed: Mapping[int, object], column: str) -> set[int]:
        """Which keys of ``keyed`` are already stored in ``column`` (seq or id)."""
        found: set[int] = set()
        keys = list(keyed)
        for chunk in _chunks(keys):
            found.update(
                value
                for (value,) in self._connection.execute(
                    f"SELECT {column} FROM notifications "  # noqa: S608
                    f"WHERE {column} IN ({_placeholders(len(chunk))})",
                    chunk,
                )
            )
        return found

    def _advance(self, cursor: int) -> int:
        """Move ``cursor`` over the run of stored seqs right above it."""
        if not self._has_row(cursor + 1):
            return cursor
        # cursor + 1 is stored: the run ends at the first stored seq whose successor is not.
        row = self._connection.execute(
            "SELECT n.seq FROM notifications AS n WHERE n.seq > ? AND NOT EXISTS "
            "(SELECT 1 FROM notifications AS m WHERE m.seq = n.seq + 1) "
            "ORDER BY n.seq LIMIT 1",
            (cursor,),
        ).fetchone()
        return int(row[0])

    def _has_row(self, seq: int) -> bool:
        return (
            self._connection.execute("SELECT 1 FROM notifications WHERE seq = ?", (seq,)).fetchone()
            is not None
        )

    def _has_rows_above(self, seq: int) -> bool:
        return (
            self._connection.execute(
                "SELECT 1 FROM notifications WHERE seq > ? LIMIT 1", (seq,)
            ).fetchone()
            is not None
        )

    def _write_cursor(self, cursor: int) -> None:
        self._connection.execute("UPDATE sync_state SET cursor = ? WHERE singleton = 1", (cursor,))

    # -- reading --

    @translate_sqlite_errors
    def get(self, notification_id: int) -> StoredNotification | None:
        """The notification with this inbox id, or None."""
        number = _whole_number(notification_id, minimum=1)
        if number is None:
            return None
        row = self._connection.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE id = ?",  # noqa: S608
            (number,),
        ).fetchone()
        return None if row is None else _notification(row)

    @translate_sqlite_errors
    def recent(self, limit: int = 10, *, unread_only: bool = False) -> list[StoredNotification]:
        """The newest ``limit`` notifications (newest first), for the tray menu."""
        return self.search(Filters(unread=True if unread_only else None), limit=limit)

    @translate_sqlite_errors
    def search(
        self, filters: Filters = NO_FILTERS, *, limit: int = 100, offset: int = 0
    ) -> list[StoredNotification]:
        """One page of the notifications ``filters`` selects, newest (highest seq) first.

        Raises:
            StoreError: ``limit``/``offset`` negative, or a naive ``since``/``until``.
        """
        chosen = _selection(filters)
        parameters = [
            *chosen.parameters,
            _non_negative(limit, "limit"),
            _non_negative(offset, "offset"),
        ]
        rows = self._connection.execute(
            f"SELECT {chosen.columns} FROM {chosen.source} {chosen.where} "  # noqa: S608
            f"ORDER BY {chosen.newest_first} LIMIT ? OFFSET ?",
            parameters,
        ).fetchall()
        return [_notification(row) for row in rows]

    @translate_sqlite_errors
    def count(self, filters: Filters = NO_FILTERS) -> int:
        """How many notifications ``filters`` selects (what :meth:`search` pages through)."""
        chosen = _selection(filters)
        row = self._connection.execute(
            f"SELECT COUNT(*) FROM {chosen.source} {chosen.where}",  # noqa: S608
            chosen.parameters,
        ).fetchone()
        return int(row[0])

    @translate_sqlite_errors
    def unread_count(self) -> int:
        """How many stored notifications are unread (the tray badge)."""
        return self.count(Filters(unread=True))

    @translate_sqlite_errors
    def projects(self) -> list[tuple[int, str]]:
        """``(project_id, title)`` of every project seen, by title; the newest title wins."""
        # A skip scan of the (project_id, seq) index: one seek per project rather than a
        # walk over every row (the history asks after each batch of new rows).
        rows = self._connection.execute(
            "WITH RECURSIVE project (id) AS ("
            " SELECT MIN(project_id) FROM notifications WHERE project_id IS NOT NULL"
            " UNION ALL"
            " SELECT (SELECT MIN(project_id) FROM notifications WHERE project_id > project.id)"
            " FROM project WHERE project.id IS NOT NULL"
            ") "
            "SELECT id, (SELECT project_title FROM notifications WHERE project_id = project.id"
            " ORDER BY seq DESC LIMIT 1) AS title "
            "FROM project WHERE id IS NOT NULL ORDER BY title COLLATE NOCASE, id"
        ).fetchall()
        return [(int(project_id), str(title)) for project_id, title in rows]

    # -- local changes --

    @translate_sqlite_errors
    def set_read(self, ids: Sequence[int], is_read: bool) -> list[int]:
        """Mark these notifications read (or unread). Unknown ids are ignored.

        Returns:
            The ids whose state changed, in the order given.

        Raises:
            StoreError: An id is not a positive whole number.
        """
        wanted = validated_ids(ids)
        flag = int(bool(is_read))
        changed: set[int] = set()
        with transaction(self._connection):
            for chunk in _chunks(wanted):
                marks = _placeholders(len(chunk))
                changed.update(
                    value
                    for (value,) in self._connection.execute(
                        f"SELECT id FROM notifications WHERE id IN ({marks}) AND is_read != ?",  # noqa: S608
                        [*chunk, flag],
                    )
                )
                self._connection.execute(
                    f"UPDATE notifications SET is_read = ? WHERE id IN ({marks}) AND is_read != ?",  # noqa: S608
                    [flag, *chunk, flag],
                )
        return [number for number in wanted if number in changed]

    @translate_sqlite_errors
    def mark_all_read(self, up_to_seq: int | None = None) -> list[int]:
        """Mark every unread notification read (only those with seq <= ``up_to_seq``).

        Returns:
            The ids that changed, in seq order.

        Raises:
            StoreError: ``up_to_seq`` is not a whole number from 0.
        """
        bound = MAX_INTEGER if up_to_seq is None else _non_negative(up_to_seq, "up_to_seq")
        with transaction(self._connection):
            changed = self.unread_ids(bound)
            self._connection.execute(
                "UPDATE notifications SET is_read = 1 WHERE is_read = 0 AND seq <= ?", (bound,)
            )
        return changed

    @translate_sqlite_errors
    def unread_ids(self, up_to_seq: int | None = None) -> list[int]:
        """The unread notifications' ids (only those with seq <= ``up_to_seq``), in seq
        order: what :meth:`mark_all_read` with the same bound would change.

        Raises:
            StoreError: ``up_to_seq`` is not a whole number from 0.
        """
        bound = MAX_INTEGER if up_to_seq is None else _non_negative(up_to_seq, "up_to_seq")
        return [
            int(value)
            for (value,) in self._connection.execute(
                "SELECT id FROM notifications WHERE is_read = 0 AND seq <= ? ORDER BY seq",
                (bound,),
            )
        ]

    @translate_sqlite_errors
    def remove(self, ids: Sequence[int]) -> list[int]:
        """Forget deleted notifications. The cursor stays: they are not fetched again.

        Returns:
            The ids that were stored, in the order given.

        Raises:
            StoreError: An id is not a positive whole number.
        """
        wanted = validated_ids(ids)
        with transaction(self._connection):
            present = self._stored(dict.fromkeys(wanted), "id")
            for chunk in _chunks(wanted):
                self._connection.execute(
                    f"DELETE FROM notifications WHERE id IN ({_placeholders(len(chunk))})",  # noqa: S608
                    chunk,
                )
        return [number for number in wanted if number in present]

    @translate_sqlite_errors
    def prune(self, *, max_age: timedelta | None = None, max_rows: int | None = None) -> int:
        """Retention: drop notifications older than ``max_age`` and beyond the newest ``max_rows``.

        Only rows at or below the cursor are pruned, and the cursor never moves back, so a
        pruned row is never fetched again; rows above a gap wait until the gap is filled.

        Returns:
            How many rows were removed.

        Raises:
            StoreError: A negative ``max_age`` or ``max_rows``.
        """
        if max_age is not None and max_age < timedelta(0):
            raise StoreError("The retention age must not be negative.")
        keep = None if max_rows is None else _non_negative(max_rows, "max_rows")
        removed = 0
        with transaction(self._connection):
            cursor = self.cursor()
            if max_age is not None:
                cutoff = _to_microseconds(datetime.now(UTC) - max_age)
                removed += self._connection.execute(
                    "DELETE FROM notifications WHERE created_us < ? AND seq <= ?", (cutoff, cursor)
                ).rowcount
            if keep is not None:
                row = self._connection.execute(
                    "SELECT seq FROM notifications ORDER BY seq DESC LIMIT 1 OFFSET ?", (keep,)
                ).fetchone()
                if row is not None:
                    removed += self._connection.execute(
                        "DELETE FROM notifications WHERE seq <= ?", (min(int(row[0]), cursor),)
                    ).rowcount
        return removed

    @translate_sqlite_errors
    def reset(self) -> None:
        """Forget every notification and the cursor (the server's data was reset)."""
        with transaction(self._connection):
            self._connection.execute("DELETE FROM notifications")
            self._write_cursor(0)
