"""The server's data directory holds secrets: only its owner may read it.

The embedded default's SQLite database holds password hashes, session ids and
every notification, and ``secret_key`` signs every token. The directory is
0700 and those files 0600, made so at every start, so an install from before
this rule is fixed too. SQLite creates its ``-wal`` and ``-shm`` files with the
database file's mode, so the database file is created 0600 before SQLite opens it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
DATABASE_NAME = "db.sqlite3"
_PRIVATE_FILES = (DATABASE_NAME, f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm", "secret_key")

logger = logging.getLogger(__name__)


def make_private(path: Path, *, database: bool) -> None:
    """Create ``path`` if needed and make it and its secret files owner-only.

    Args:
        path: the data directory.
        database: whether the embedded SQLite database lives there (create it 0600).

    A directory this process does not own (chosen by an administrator) keeps its
    mode, with a warning.
    """
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _chmod(path, DIRECTORY_MODE)
    if database:
        try:
            os.close(os.open(path / DATABASE_NAME, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        except OSError as error:
            logger.warning("could not create %s: %s", path / DATABASE_NAME, error)
    for name in _PRIVATE_FILES:
        file = path / name
        if file.exists():
            _chmod(file, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError as error:
        logger.warning("could not make %s private (mode %o): %s", path, mode, error)
