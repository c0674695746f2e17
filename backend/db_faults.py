"""A database that cannot answer or cannot write: 503/507 with Retry-After, never a 500.

PostgreSQL restarting or stopped, a network cut to it, SQLite's disk full or its file
read-only: Django raises ``OperationalError`` or ``InterfaceError``. Left alone, those
become a 500 (with a traceback in the log, and Django's HTML page for a browser).
``database_fault`` turns one into a ``BackendError`` whose code says what happened and
whose message says what to do; the REST layer (``backend.api.exception_handler``)
answers it like any other error, with ``Retry-After``, and ``server_error`` (the
project's ``handler500``) does the same for what fails outside DRF (middleware, the web
companion's pages).

Nothing is kept between requests: Django's connection health check (``CONN_HEALTH_CHECKS``
in scale mode, ``close_old_connections`` at every request and around every consumer's
database call) drops a broken connection and the next request opens a new one, so the
server is back by itself as soon as the database is (docs/reliability.md, "Database
faults").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import defaults

from backend import sqlite_checkpoint
from backend.errors import BackendError

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait before it retries.
RETRY_AFTER_SECONDS = 5
# The log says what went wrong at most once per this many seconds per kind, not once
# per request while the database is away.
_LOG_EVERY = 10.0


class DatabaseUnavailable(BackendError):
    """The database does not answer (stopped, restarting, unreachable, locked too long)."""

    code = "database_unavailable"
    status = 503
    retry_after = RETRY_AFTER_SECONDS


class StorageFull(DatabaseUnavailable):
    """SQLite (the embedded default): the disk holding the data directory is full."""

    code = "storage_full"
    status = 507


class DatabaseReadOnly(DatabaseUnavailable):
    """SQLite (the embedded default): the database file or its directory is read-only."""

    code = "database_read_only"
    status = 503


UNAVAILABLE_MESSAGE = (
    "The server cannot reach its database right now. Try again in a few seconds "
    "(a publish retried with the same idempotency_key is stored once)."
)
FULL_MESSAGE = (
    "The server's disk is full, so nothing can be stored. Try again later; "
    "the server's operator must free space on the disk holding its data directory."
)
READ_ONLY_MESSAGE = (
    "The server's database file is read-only, so nothing can be stored. Try again "
    "later; the server's operator must make the database file and its directory "
    "writable by the server's user."
)

_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


def classify(error: BaseException) -> DatabaseUnavailable | None:
    """The ``BackendError`` for a database fault, or None for any other exception."""
    if not isinstance(error, OperationalError | InterfaceError):
        return None
    text = str(error).lower()
    # Full and read-only are SQLite's (the embedded default, its file in the data
    # directory). PostgreSQL's own (a full disk on the database server, a standby's
    # "read-only transaction" during a failover) are the database being unavailable.
    sqlite = connection.vendor == "sqlite"
    fault: DatabaseUnavailable
    if sqlite and ("disk is full" in text or "no space left" in text):
        fault = StorageFull(FULL_MESSAGE)
    elif sqlite and "readonly" in text:
        fault = DatabaseReadOnly(READ_ONLY_MESSAGE)
    else:
        fault = DatabaseUnavailable(UNAVAILABLE_MESSAGE)
    _log(fault.code, error)
    if isinstance(fault, DatabaseReadOnly):
        _reopen_later()
    return fault


def _reopen_later() -> None:
    """SQLite opened a file it could not write read-only, and stays so while any
    connection of this process to that file is open (they share the ``-shm`` map):
    close this thread's connection (outside a transaction) and the WAL checkpointer's,
    so the next ones open the file anew and write once the operator has made it
    writable. Connections of other threads (the login lane's) close on their own
    refused writes."""
    if connection.vendor != "sqlite" or not _writable(Path(connection.settings_dict["NAME"])):
        # Still read-only: reopening now would only open it read-only again (and SQLite
        # keeps the descriptor of each closed connection while others are open).
        return
    if not connection.in_atomic_block:
        with contextlib.suppress(Exception):
            connection.close()
    sqlite_checkpoint.reopen_server_connection()


def _writable(database: Path) -> bool:
    """Whether the server's user may write the database file, its WAL files and directory."""
    files = [database, *(database.with_name(database.name + end) for end in ("-wal", "-shm"))]
    return os.access(database.parent, os.W_OK) and all(
        os.access(path, os.W_OK) for path in files if path.exists()
    )


def _log(code: str, error: BaseException) -> None:
    now = time.monotonic()
    with _log_lock:
        last = _last_logged.get(code)
        if last is not None and now - last < _LOG_EVERY:
            return
        _last_logged[code] = now
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    logger.warning(
        "database fault (%s), answering %s with Retry-After: %s: %s",
        code,
        "507" if code == StorageFull.code else "503",
        type(error).__name__,
        first_line,
    )


def response(fault: DatabaseUnavailable, *, json: bool) -> HttpResponse:
    """The answer for ``fault``: the API's error body, or plain text for a page."""
    answer: HttpResponse
    if json:
        answer = JsonResponse(
            {"error": {"code": fault.code, "message": fault.message}}, status=fault.status
        )
    else:
        answer = HttpResponse(
            fault.message + "\n", status=fault.status, content_type="text/plain; charset=utf-8"
        )
    answer["Retry-After"] = str(fault.retry_after)
    # Said once per _LOG_EVERY by classify(), not as Django's ERROR line (with the
    # traceback) for every request while the database is away.
    answer._has_been_logged = True  # type: ignore[attr-defined]
    return answer


def server_error(request: HttpRequest) -> HttpResponseBase:
    """``handler500``: a database fault anywhere (middleware, a page) answers 503/507;
    everything else gets Django's own 500 page, as before."""
    error = sys.exc_info()[1]
    fault = classify(error) if error is not None else None
    if fault is None:
        return defaults.server_error(request)
    return response(fault, json=request.path.startswith("/api/"))
