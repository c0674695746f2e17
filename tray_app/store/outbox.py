"""Read-state actions taken on this desktop, waiting to reach the server.

Each action is applied to the local inbox and appended here in ONE transaction, so the
badge changes at once and the action survives a crash or a restart while offline. The
network layer sends :meth:`Outbox.pending` oldest first and then calls :meth:`Outbox.complete`
(the server acknowledged), :meth:`Outbox.record_failure` (try again later) or
:meth:`Outbox.drop` (refused for good). Every action is idempotent on the server
(docs/protocol.md), so sending one twice after a crash is harmless.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from tray_app.store.db import transaction, translate_sqlite_errors
from tray_app.store.errors import StoreError
from tray_app.store.inbox import MAX_INTEGER, Inbox, validated_ids

KINDS: Final = ("mark_read", "mark_unread", "mark_all_read", "delete")
# The server's limit per request (docs/protocol.md: mark_read takes at most 1,000 ids).
MAX_IDS_PER_ACTION: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# Interpolated into SQL as a constant; values are always bound (hence noqa: S608).
_COLUMNS: Final = "id, kind, ids_json, up_to_seq, created_us, attempts"


class OutboxAction(msgspec.Struct, frozen=True):
    """One action waiting for the server.

    Attributes:
        id: The outbox row; pass it to complete/record_failure/drop.
        kind: ``mark_read``, ``mark_unread``, ``mark_all_read`` or ``delete`` (the name
            of the protocol request to send).
        ids: The notification ids (empty for ``mark_all_read``).
        up_to_seq: For ``mark_all_read``: the newest seq the user saw (None means all).
        created_at: When the user took the action (UTC).
        attempts: Failed sends so far.
    """

    id: int
    kind: str
    ids: tuple[int, ...]
    up_to_seq: int | None
    created_at: datetime
    attempts: int


def _action(row: tuple[int, str, str, int | None, int, int]) -> OutboxAction:
    action_id, kind, ids_json, up_to_seq, created_us, attempts = row
    return OutboxAction(
        id=action_id,
        kind=kind,
        ids=tuple(int(value) for value in json.loads(ids_json)),
        up_to_seq=up_to_seq,
        created_at=_EPOCH + created_us * _MICROSECOND,
        attempts=attempts,
    )


def _action_ids(ids: Sequence[int]) -> list[int]:
    wanted = validated_ids(ids)
    if not wanted:
        raise StoreError("Choose at least one notification.")
    if len(wanted) > MAX_IDS_PER_ACTION:
        raise StoreError(
            f"At most {MAX_IDS_PER_ACTION:,} notifications can be changed at once "
            f"({len(wanted):,} were chosen)."
        )
    return wanted


def _action_id(action_id: int) -> int:
    if isinstance(action_id, bool) or not isinstance(action_id, int) or action_id < 1:
        raise StoreError("An outbox action id is a whole number from 1.")
    return action_id


class Outbox:
    """The queue of local read-state actions, in the same database as ``inbox``.

    Every public method reports a database failure as :class:`StoreError`.

    Args:
        connection: The connection ``inbox`` uses (from ``open_database``).
        inbox: Where the actions are applied locally.
    """

    def __init__(self, connection: sqlite3.Connection, inbox: Inbox) -> None:
        self._connection = connection
        self._inbox = inbox

    @translate_sqlite_errors
    def mark_read(self, ids: Sequence[int]) -> OutboxAction:
        """Mark these notifications read here and queue the same for the server.

        Raises:
            StoreError: No ids, more than 1,000, or one that is not a positive whole number.
        """
        wanted = _action_ids(ids)
        return self._apply("mark_read", wanted, None, lambda: self._inbox.set_read(wanted, True))

    @translate_sqlite_errors
    def mark_unread(self, ids: Sequence[int]) -> OutboxAction:
        """Mark these notifications unread here and queue the same for the server.

        Raises:
            StoreError: No ids, more than 1,000, or one that is not a positive whole number.
        """
        wanted = _action_ids(ids)
        return self._apply("mark_unread", wanted, None, lambda: self._inbox.set_read(wanted, False))

    @translate_sqlite_errors
    def mark_all_read(self, up_to_seq: int | None) -> OutboxAction:
        """Mark everything up to ``up_to_seq`` read here and queue the same for the server.

        Args:
            up_to_seq: The newest seq the user saw when they clicked, so a replay after
                being offline leaves newer notifications unread. None means all.

        Raises:
            StoreError: ``up_to_seq`` is not None or a whole number from 0.
        """
        if up_to_seq is not None and (
            isinstance(up_to_seq, bool)
            or not isinstance(up_to_seq, int)
            or not 0 <= up_to_seq <= MAX_INTEGER
        ):
            raise StoreError("up_to_seq must be a whole number from 0.")
        return self._apply(
            "mark_all_read", [], up_to_seq, lambda: self._inbox.mark_all_read(up_to_seq)
        )

    @translate_sqlite_errors
    def delete(self, ids: Sequence[int]) -> OutboxAction:
        """Remove these notifications here and queue the deletion for the server.

        Raises:
            StoreError: No ids, more than 1,000, or one that is not a positive whole number.
        """
        wanted = _action_ids(ids)
        return self._apply("delete", wanted, None, lambda: self._inbox.remove(wanted))

    def _apply(
        self,
        kind: str,
        ids: list[int],
        up_to_seq: int | None,
        change_locally: Callable[[], object],
    ) -> OutboxAction:
        created_us = (datetime.now(UTC) - _EPOCH) // _MICROSECOND
        with transaction(self._connection):
            change_locally()
            # No RETURNING: it needs SQLite 3.35, older than some Linux distributions ship.
            inserted = self._connection.execute(
                "INSERT INTO outbox (kind, ids_json, up_to_seq, created_us) VALUES (?, ?, ?, ?)",
                (kind, json.dumps(ids), up_to_seq, created_us),
            )
            row = self._connection.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE id = ?",  # noqa: S608
                (inserted.lastrowid,),
            ).fetchone()
        return _action(row)

    @translate_sqlite_errors
    def pending(self) -> list[OutboxAction]:
        """Every action not yet confirmed, oldest first: send them in this order."""
        rows = self._connection.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY id").fetchall()  # noqa: S608
        return [_action(row) for row in rows]

    @translate_sqlite_errors
    def complete(self, action_id: int) -> None:
        """The server confirmed the action: forget it. An unknown id is no error."""
        number = _action_id(action_id)
        with transaction(self._connection):
            self._connection.execute("DELETE FROM outbox WHERE id = ?", (number,))

    @translate_sqlite_errors
    def record_failure(self, action_id: int) -> int:
        """Sending the action failed (offline, timeout); it stays queued.

        Returns:
            Its failed attempts, this one included.

        Raises:
            StoreError: No such action is pending.
        """
        number = _action_id(action_id)
        with transaction(self._connection):
            self._connection.execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (number,)
            )
            row = self._connection.execute(
                "SELECT attempts FROM outbox WHERE id = ?", (number,)
            ).fetchone()
        if row is None:
            raise StoreError(f"There is no pending outbox action {number}.")
        return int(row[0])

    @translate_sqlite_errors
    def drop(self, action_id: int) -> None:
        """The server refused the action for good (e.g. invalid ids): forget it."""
        self.complete(action_id)

    @translate_sqlite_errors
    def clear(self) -> int:
        """Forget every pending action (after the server's data was reset, with
        :meth:`Inbox.reset`: old ids and seqs mean nothing there any more).

        Returns:
            How many actions were forgotten.
        """
        with transaction(self._connection):
            return self._connection.execute("DELETE FROM outbox").rowcount
