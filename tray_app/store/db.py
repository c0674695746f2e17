"""The local SQLite file: where it lives, how it is opened, its schema and migrations.

One file per account (server + user), see :func:`account_database_path`.
:func:`open_database` returns a connection ready for :class:`~tray_app.store.inbox.Inbox`
and :class:`~tray_app.store.outbox.Outbox`:

- WAL journal with ``synchronous=NORMAL``: a committed transaction survives the process
  being killed (only a power cut may lose the last commits, never corrupt the file).
- Foreign keys on, a busy timeout for a second process reading the same file.
- The connection is in autocommit mode (``isolation_level=None``): Python's sqlite3 never
  opens a transaction behind our back; every write goes through :func:`transaction`.
- A corrupt file (one that is not SQLite at all, or fails ``PRAGMA quick_check``, or makes
  SQLite report corruption while opening) is renamed aside with a timestamped suffix
  (``<name>.corrupt-<UTC time>``), together with its ``-wal`` and ``-shm``, and a fresh
  database is created. The app then fetches the history again from the server; nothing
  crashes. Other failures (permissions, a lock held too long) raise :class:`StoreError`
  and leave the file alone: only damage is moved aside.
- A file written by a newer version of the app (a higher ``PRAGMA user_version`` than this
  code knows) is refused with :class:`StoreError` and left untouched.

Transactions
------------
Every write method of ``Inbox`` and ``Outbox`` runs inside ``with transaction(connection):``.
Outside any transaction that begins and commits its own (``BEGIN IMMEDIATE`` ... ``COMMIT``).
Inside an open one it becomes a ``SAVEPOINT``: its changes are committed, or rolled back,
together with the outer transaction. So a caller groups several writes into one atomic unit
like this::

    with transaction(connection):
        changed = inbox.set_read([981], True)
        ...  # anything else written here commits or rolls back with it

This is how the outbox applies a change locally and enqueues it in one transaction.
Note that Python's ``with connection:`` does not open a transaction in autocommit mode:
use :func:`transaction`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, ParamSpec, TypeVar
from urllib.parse import urlsplit

import msgspec

from tray_app.store.errors import StoreError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5_000
DIRECTORY_MODE: Final = 0o700
FILE_MODE: Final = 0o600

# SQLite's primary result codes for a damaged file; extended codes keep them in the low byte.
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100

Migration = Callable[[sqlite3.Connection], None]


# --- schema ---------------------------------------------------------------------------

# seq is the INTEGER PRIMARY KEY (the rowid): the server's per-user sequence is the natural
# key, de-duplication is a primary-key lookup, and "newest first" is a rowid walk.
# created_us is microseconds since the epoch (UTC), so date ranges compare integers.
_SCHEMA_V1: Final = (
    """
    CREATE TABLE notifications (
        seq INTEGER PRIMARY KEY CHECK (seq >= 1),
        id INTEGER NOT NULL UNIQUE CHECK (id >= 1),
        title TEXT NOT NULL,
        message TEXT NOT NULL,
        event_type TEXT NOT NULL,
        priority TEXT NOT NULL,
        url TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        is_read INTEGER NOT NULL CHECK (is_read IN (0, 1)),
        actor_json TEXT,
        project_id INTEGER,
        project_title TEXT,
        data_json TEXT NOT NULL
    )
    """,
    # Each filter index ends in seq so "filter, newest first, LIMIT n" walks one index.
    "CREATE INDEX notifications_by_read ON notifications (is_read, seq)",
    "CREATE INDEX notifications_by_project ON notifications (project_id, seq)",
    "CREATE INDEX notifications_by_priority ON notifications (priority, seq)",
    "CREATE INDEX notifications_by_created ON notifications (created_us)",
    # External content: the text lives once, in notifications; the triggers keep the index
    # in step inside the same transaction as the row change.
    """
    CREATE VIRTUAL TABLE notifications_fts USING fts5(
        title, message,
        content = 'notifications', content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER notifications_fts_insert AFTER INSERT ON notifications BEGIN
        INSERT INTO notifications_fts (rowid, title, message)
        VALUES (new.seq, new.title, new.message);
    END
    """,
    """
    CREATE TRIGGER notifications_fts_delete AFTER DELETE ON notifications BEGIN
        INSERT INTO notifications_fts (notifications_fts, rowid, title, message)
        VALUES ('delete', old.seq, old.title, old.message);
    END
    """,
    # Only a change of the indexed text touches the index: marking read does not.
    """
    CREATE TRIGGER notifications_fts_update AFTER UPDATE OF seq, title, message
    ON notifications BEGIN
        INSERT INTO notifications_fts (notifications_fts, rowid, title, message)
        VALUES ('delete', old.seq, old.title, old.message);
        INSERT INTO notifications_fts (rowid, title, message)
        VALUES (new.seq, new.title, new.message);
    END
    """,
    """
    CREATE TABLE sync_state (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        cursor INTEGER NOT NULL CHECK (cursor >= 0)
    )
    """,
    "INSERT INTO sync_state (singleton, cursor) VALUES (1, 0)",
    # AUTOINCREMENT: an action id is never reused, so a late "complete(old id)" cannot
    # remove a newer action.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL
            CHECK (kind IN ('mark_read', 'mark_unread', 'mark_all_read', 'delete')),
        ids_json TEXT NOT NULL,
        up_to_seq INTEGER CHECK (up_to_seq IS NULL OR up_to_seq >= 0),
        created_us INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0)
    )
    """,
)


def _migrate_to_v1(connection: sqlite3.Connection) -> None:
    """Create the first schema: notifications with full-text index, cursor, outbox."""
    for statement in _SCHEMA_V1:
        connection.execute(statement)


def _migrate_to_v2(connection: sqlite3.Connection) -> None:
    """Add the attention settings: the last ones heard from the server, and a change made
    here that has not reached it (:class:`~tray_app.store.attention.AttentionStore`)."""
    connection.execute(
        """
        CREATE TABLE attention (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            known_json TEXT,
            version INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
            pending_json TEXT
        )
        """
    )
    connection.execute("INSERT INTO attention (singleton) VALUES (1)")


# MIGRATIONS[n] takes a file from version n to n + 1, inside one transaction that also sets
# PRAGMA user_version. Append new steps; never edit a released one.
MIGRATIONS: Final[tuple[Migration, ...]] = (_migrate_to_v1, _migrate_to_v2)
SCHEMA_VERSION: Final[int] = len(MIGRATIONS)


# --- transactions ---------------------------------------------------------------------

_savepoint_names = itertools.count(1)


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block as one atomic unit; nest freely (see the module docstring).

    Outermost: ``BEGIN IMMEDIATE`` (takes the write lock up front, so two writers wait on
    the busy timeout instead of failing half-way) and ``COMMIT``, or ``ROLLBACK`` when the
    block raises. Nested: a ``SAVEPOINT`` released with the outer transaction, rolled back
    on its own when the block raises.

    Args:
        connection: A connection from :func:`open_database`.

    Yields:
        The same connection.
    """
    if connection.in_transaction:
        name = f"store_savepoint_{next(_savepoint_names)}"
        connection.execute(f"SAVEPOINT {name}")
        try:
            yield connection
        except BaseException:
            connection.execute(f"ROLLBACK TO {name}")
            connection.execute(f"RELEASE {name}")
            raise
        connection.execute(f"RELEASE {name}")
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        # SQLite rolls back by itself after some errors (disk full, I/O): only roll back
        # what is still open.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


# --- errors ---------------------------------------------------------------------------

_P = ParamSpec("_P")
_R = TypeVar("_R")


def translate_sqlite_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a public store method so SQLite's errors reach callers as StoreError.

    Callers handle one exception base; a full disk or a lock held too long is reported
    in words, with SQLite's own message (which never holds bound values).
    """

    @functools.wraps(method)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"The local notification database failed: {exc}.") from exc

    return translated


# --- where the file lives ---------------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_UNSAFE_NAME_CHARACTERS: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _normalized_server_url(server_url: str) -> tuple[str, str, int | None]:
    """The URL in one canonical spelling, with its host and (non-default) port."""
    text = server_url.strip().lower()
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"The server address has an invalid port: {server_url!r}") from exc
    host = parts.hostname
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise StoreError(
            f"The server address must look like https://host[:port], not {server_url!r}"
        )
    if port == _DEFAULT_PORTS[parts.scheme]:
        port = None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}", host, port


def _readable(text: str) -> str:
    """A short, filesystem-safe spelling of ``text`` (the hash keeps file names distinct)."""
    return _UNSAFE_NAME_CHARACTERS.sub("_", text)[:40].strip("._") or "_"


def account_database_path(data_dir: Path, server_url: str, username: str) -> Path:
    """The SQLite file of one account (server + user).

    The name is readable (``alice@127.0.0.1-8000-3f2a9c1b.sqlite3``) and ends in a hash of
    the canonical server URL and the exact username, so two accounts never share a file,
    while ``HTTP://Host:80/`` and ``http://host`` (case, default port, trailing slash) do.

    Args:
        data_dir: The app's data directory.
        server_url: The server's base URL (``http`` or ``https``).
        username: The account's username, exactly as the server spells it.

    Returns:
        ``data_dir / "accounts" / "<user>@<host>[-<port>]-<hash>.sqlite3"``. Nothing is
        created on disk.

    Raises:
        StoreError: The URL is not an http(s) URL with a host, or the username is blank.
    """
    canonical, host, port = _normalized_server_url(server_url)
    if not username.strip():
        raise StoreError("The username must not be blank.")
    digest = hashlib.sha256(
        f"{canonical}\n{username}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:8]
    readable = f"{_readable(username)}@{_readable(host)}"
    if port is not None:
        readable = f"{readable}-{port}"
    return data_dir / "accounts" / f"{readable}-{digest}.sqlite3"


# --- opening --------------------------------------------------------------------------


class OpenedDatabase(msgspec.Struct, frozen=True):
    """An open, migrated database.

    Attributes:
        connection: Autocommit connection; write through :func:`transaction`.
        path: The database file.
        rebuilt: True when the file was corrupt and a fresh one was created in its place.
        moved_aside_to: Where the corrupt file went (its ``-wal``/``-shm`` beside it).
    """

    connection: sqlite3.Connection
    path: Path
    rebuilt: bool
    moved_aside_to: Path | None


class _CorruptDatabase(Exception):
    """The file is damaged or not SQLite: move it aside and start again."""


def _is_corruption(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _make_private_directories(directory: Path) -> None:
    """Create ``directory`` and any missing parents with mode 0700 (existing ones untouched)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue
        # mkdir's mode passes through the umask; chmod does not.
        os.chmod(folder, DIRECTORY_MODE)


def _create_private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 before SQLite opens it.

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the main file, so they are
    private too.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(descriptor)
    try:
        os.chmod(path, FILE_MODE)
    except OSError:
        logger.warning("could not make the database file private (chmod 600 failed)")


def _companions(path: Path) -> tuple[Path, Path]:
    return Path(f"{path}-wal"), Path(f"{path}-shm")


def _move_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to ``<name>.corrupt-<UTC time>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for number in itertools.count(2):
        if not any(p.exists() for p in (target, *_companions(target))):
            break
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    # The WAL goes first: a stale WAL left beside a fresh database would be replayed into it.
    for source, destination in zip(_companions(path), _companions(target), strict=True):
        if source.exists():
            os.replace(source, destination)
    os.replace(path, target)
    return target


def _user_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _refuse_newer(path: Path, version: int, known: int) -> StoreError:
    return StoreError(
        f"The notification database {path} was written by a newer version of the app "
        f"(schema version {version}; this version understands up to {known}). "
        "Install the newer version again, or move that file away to start with an empty "
        "history. The file was left as it is."
    )


def _migrate(connection: sqlite3.Connection, path: Path, migrations: Sequence[Migration]) -> None:
    """Run the missing migration steps, each in its own transaction with its version bump."""
    known = len(migrations)
    if _user_version(connection) == known:
        return
    while True:
        # The version is read again under the write lock: another process opening the same
        # file at the same moment may have migrated it already.
        with transaction(connection):
            version = _user_version(connection)
            if version > known:
                raise _refuse_newer(path, version, known)
            if version == known:
                return
            try:
                migrations[version](connection)
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc):
                    raise
                raise StoreError(
                    f"Could not upgrade the notification database {path} to schema version "
                    f"{version + 1}: {exc}. The file was left at version {version}."
                ) from exc
            # PRAGMA takes no parameters; target is an int we computed.
            connection.execute(f"PRAGMA user_version = {version + 1:d}")


def _header_problem(path: Path) -> str | None:
    """Why the file cannot be SQLite, judged from its first bytes, or None.

    Checked before SQLite opens the file: on a file that is not a database SQLite still
    opens the ``-wal``/``-shm`` beside it and deletes them on close, destroying what the
    user might want to recover.
    """
    with path.open("rb") as file:
        header = file.read(_HEADER_SIZE)
    if not header:
        return None  # a new, empty file
    if len(header) < _HEADER_SIZE:
        return "file is shorter than an SQLite header"
    if not header.startswith(_SQLITE_MAGIC):
        return "file is not a database"
    return None


def _connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """Open, configure, check and migrate; raises _CorruptDatabase for a damaged file."""
    try:
        problem = _header_problem(path)
    except OSError as exc:
        raise StoreError(f"Could not read the notification database {path}: {exc}") from exc
    if problem is not None:
        raise _CorruptDatabase(problem)
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"Could not open the notification database {path}: {exc}") from exc
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        journal_mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(journal_mode).lower() != "wal":
            # Some network file systems cannot do WAL; the rollback journal is still safe
            # against a killed process, only slower.
            logger.warning("SQLite refused WAL mode; using journal_mode=%s", journal_mode)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        # Scratch tables (the inbox's ingest staging) stay in memory, not in a temp file.
        connection.execute("PRAGMA temp_store = MEMORY")
        problems = connection.execute("PRAGMA quick_check").fetchall()
        if problems != [("ok",)]:
            raise _CorruptDatabase(f"quick_check found {len(problems)} problem(s)")
        version = _user_version(connection)
        if version > len(migrations):
            raise _refuse_newer(path, version, len(migrations))
        _migrate(connection, path, migrations)
    except sqlite3.DatabaseError as exc:
        connection.close()
        if _is_corruption(exc):
            raise _CorruptDatabase(str(exc)) from exc
        raise StoreError(f"Could not open the notification database {path}: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def open_database(path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> OpenedDatabase:
    """Open (creating or upgrading as needed) the database at ``path``.

    Args:
        path: The database file, e.g. from :func:`account_database_path`. Missing
            directories are created with mode 0700, the file with mode 0600.
        migrations: The schema steps; the default is the app's. A parameter so a test can
            add a step and watch an older file being upgraded.

    Returns:
        The open database. ``rebuilt`` tells whether a damaged file was moved aside.

    Raises:
        StoreError: The file belongs to a newer version of the app (left untouched), a
            migration failed (rolled back), or the file cannot be opened at all
            (permissions, a directory in the way, a lock held too long).
    """
    path = Path(path)
    try:
        _make_private_directories(path.parent)
        _create_private_file(path)
    except OSError as exc:
        raise StoreError(f"Could not create the notification database {path}: {exc}") from exc
    try:
        return OpenedDatabase(_connect(path, migrations), path, False, None)
    except _CorruptDatabase as damage:
        reason = str(damage)
    try:
        moved_to = _move_aside(path)
        _create_private_file(path)
    except OSError as exc:
        raise StoreError(
            f"The notification database {path} is damaged and could not be moved aside: {exc}"
        ) from exc
    # Logged as a warning without any content: the reason is SQLite's own wording.
    logger.warning("database was damaged (%s); moved aside to %s", reason, moved_to.name)
    try:
        connection = _connect(path, migrations)
    except _CorruptDatabase as exc:
        raise StoreError(f"Could not create a fresh notification database at {path}.") from exc
    return OpenedDatabase(connection, path, True, moved_to)
