"""The account's attention settings on this computer: the last state the server sent,
and a change made here that has not reached it yet.

The server holds the truth (docs/protocol.md, "Attention"); this copy lets the tray show
do-not-disturb and quiet hours before it is connected, and keeps a change made offline
(the tray's "Do not disturb" clicked on a train) until the server can take it. Both are
kept as the wire's JSON objects: a change is a subset of the state's keys, so the state
in force is ``{**known, **pending}``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from tray_app.store.db import transaction, translate_sqlite_errors


class AttentionStore:
    """Read and write the ``attention`` row of an account's database.

    Args:
        connection: A connection from :func:`~tray_app.store.db.open_database`.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @translate_sqlite_errors
    def known(self) -> dict[str, Any] | None:
        """The last state the server sent (with its ``version``), or None: never heard."""
        row = self._connection.execute(
            "SELECT known_json FROM attention WHERE singleton = 1"
        ).fetchone()
        return _object(row[0]) if row else None

    @translate_sqlite_errors
    def remember(self, state: Mapping[str, Any]) -> bool:
        """Keep ``state`` (a server payload with its ``version``) unless an equal or newer
        version is already kept; True when it was kept."""
        version = _version(state)
        with transaction(self._connection) as connection:
            cursor = connection.execute(
                "UPDATE attention SET known_json = ?, version = ?"
                " WHERE singleton = 1 AND (known_json IS NULL OR version < ?)",
                (json.dumps(dict(state)), version, version),
            )
            return cursor.rowcount == 1

    @translate_sqlite_errors
    def replace(self, state: Mapping[str, Any]) -> None:
        """Keep ``state`` whatever version is kept: what the server says as a connection
        opens is its current word, even when its versions start over (a new server)."""
        with transaction(self._connection) as connection:
            connection.execute(
                "UPDATE attention SET known_json = ?, version = ? WHERE singleton = 1",
                (json.dumps(dict(state)), _version(state)),
            )

    @translate_sqlite_errors
    def pending(self) -> dict[str, Any] | None:
        """The change made here that the server has not confirmed, or None."""
        row = self._connection.execute(
            "SELECT pending_json FROM attention WHERE singleton = 1"
        ).fetchone()
        return _object(row[0]) if row else None

    @translate_sqlite_errors
    def add_change(self, change: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``change`` into the pending one (a later value of a key wins); the
        pending change now."""
        with transaction(self._connection) as connection:
            row = connection.execute(
                "SELECT pending_json FROM attention WHERE singleton = 1"
            ).fetchone()
            merged = {**(_object(row[0]) or {}), **change}
            connection.execute(
                "UPDATE attention SET pending_json = ? WHERE singleton = 1",
                (json.dumps(merged),),
            )
            return merged

    @translate_sqlite_errors
    def change_sent(self, sent: Mapping[str, Any]) -> None:
        """The server took ``sent``: drop it from the pending change, keeping any key
        changed again here since (with its newer value)."""
        with transaction(self._connection) as connection:
            row = connection.execute(
                "SELECT pending_json FROM attention WHERE singleton = 1"
            ).fetchone()
            pending = _object(row[0]) or {}
            left = {k: v for k, v in pending.items() if k not in sent or sent[k] != v}
            connection.execute(
                "UPDATE attention SET pending_json = ? WHERE singleton = 1",
                (json.dumps(left) if left else None,),
            )

    @translate_sqlite_errors
    def drop_pending(self) -> None:
        """Forget the pending change (the server refused it for good)."""
        with transaction(self._connection) as connection:
            connection.execute("UPDATE attention SET pending_json = NULL WHERE singleton = 1")


def _version(state: Mapping[str, Any]) -> int:
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError("an attention state needs a whole-number version")
    return version


def _object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # a hand-edited file: as if never heard
    return value if isinstance(value, dict) else None
