"""A glance at an account's local store before the app has opened it: the unread count
the tray icon shows while the rest of the app loads (issue 20: the icon first).

Read-only and forgiving: the file is opened with ``mode=ro`` (never created, never
migrated, never locked against the writer for long) and any problem (no file yet, an
older or damaged schema, a writer holding a lock) is "not known", not an error. The
real count replaces it as soon as the account opens.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from tray_app.store.db import account_database_path
from tray_app.store.errors import StoreError

logger = logging.getLogger(__name__)

# How long the glance waits for a writer's lock: the icon is not held up for the count.
BUSY_TIMEOUT_S = 0.05


def last_unread_count(data_dir: Path, server_url: str, username: str) -> int | None:
    """The unread count in the account's local store, or None when it is not known.

    Args:
        data_dir: The app's data directory.
        server_url: The account's server.
        username: The account's username; blank means nobody has logged in yet.
    """
    if not username.strip():
        return None
    try:
        path = account_database_path(data_dir, server_url, username)
    except StoreError:
        return None
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error:
        return None
    try:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM notifications WHERE is_read = 0"
        ).fetchone()
    except sqlite3.Error as error:
        logger.info("no unread count from %s yet: %s", path.name, error)
        return None
    finally:
        connection.close()
    return int(count)
