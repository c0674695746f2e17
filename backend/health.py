"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness).

``/healthz`` says the process is alive and its event loop answers: 200
``{"status": "ok"}``, with no database or Redis call, so a database outage never
makes a supervisor restart servers that would only come back to the same outage.
(Until issue 19 it queried the database and pinged Redis; that is ``/readyz`` now.)

``/readyz`` says whether this process can serve requests now: the database answers
``SELECT 1`` on a fresh connection, and on the embedded default (SQLite) its disk has
room and its file can be written; in scale mode (``REDIS_URL``) Redis answers PING.
200 ``ok``, or 503 with one plain-text line per failed check ("database unavailable:
...", "redis unavailable: ...") and ``Retry-After``. Every check has a short timeout
and runs on a small pool of its own, never on the thread that holds the process's
database connection, so a hung database cannot hang the probe nor queue it behind
requests. The server answers it before Django (backend/config/asgi.py), like the HTTP
stream, so a probe costs no middleware; the URL in backend/config/urls.py answers the
same for Django's test client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.sqlite3.creation import DatabaseCreation
from django.db.utils import load_backend
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

READY_PATH = "/readyz"
# Seconds each check may take (connect, query, PING).
CHECK_TIMEOUT = 2.0
# What a 503 of /readyz asks a caller to wait.
RETRY_AFTER_SECONDS = 5
# SQLite: less free space than this on the data directory's disk counts as full. A
# write needs room for its WAL frames; with less, publishes fail with "disk is full".
MIN_FREE_BYTES = 1024 * 1024

# Checks run here: at most this many at once; past that (checks hung on a dead
# database) a probe says so at once instead of starting more threads.
_POOL_SIZE = 4
_pool = concurrent.futures.ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="readyz")
_busy = threading.BoundedSemaphore(_POOL_SIZE)
_redis_client: Any = None
_last_warned: dict[str, float] = {}
_LOG_EVERY = 10.0
_redis_lock = threading.Lock()


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database, no Redis (see ``readyz``)."""
    return JsonResponse({"status": "ok"})


# --- the checks (each returns a reason, or None when all is well) ---------------------


def check_database() -> str | None:
    """Whether the database answers a trivial query (and, for SQLite, can be written)."""
    database = settings.DATABASES[DEFAULT_DB_ALIAS]
    try:
        if database["ENGINE"].endswith("sqlite3"):
            return _check_sqlite(Path(database["NAME"]))
        return _check_server_database(database)
    except Exception as error:
        _warn("database", "readiness: database check failed: %s: %s", type(error).__name__, error)
        return f"database unavailable: {_short(error)}"


def _check_server_database(database: Any) -> str | None:
    """PostgreSQL (scale mode): ``SELECT 1`` on a connection of its own, with short
    timeouts, so the probe sees the database as a new request would."""
    options = dict(database.get("OPTIONS") or {})
    if database["ENGINE"].endswith(("postgresql", "postgis")):
        seconds = max(1, round(CHECK_TIMEOUT))
        options["connect_timeout"] = seconds
        statement = f"-c statement_timeout={seconds * 1000}"
        options["options"] = (
            f"{options['options']} {statement}" if "options" in options else statement
        )
    backend = load_backend(database["ENGINE"])
    wrapper = backend.DatabaseWrapper({**database, "OPTIONS": options}, "readyz")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        wrapper.close()
    return None


def _check_sqlite(path: Path) -> str | None:
    """The embedded default: the disk has room, the file and its directory can be
    written (WAL needs both), and the database answers ``SELECT 1``. The answer names
    no path (it may be public); the log does."""
    if DatabaseCreation.is_in_memory_db(str(path)):
        return None  # nothing on disk to check (tests)
    directory = path.parent
    stat = os.statvfs(directory)
    reason: str | None = None
    if stat.f_flag & os.ST_RDONLY:
        reason = "the file system of the data directory is read-only; remount it read-write"
    elif (free := stat.f_bavail * stat.f_frsize) < MIN_FREE_BYTES:
        reason = (
            f"the disk holding the data directory is full ({free // 1024} KiB free); "
            "free space there"
        )
    else:
        files = [path, *(path.with_name(path.name + end) for end in ("-wal", "-shm"))]
        for target in [*files, directory]:
            if target.exists() and not os.access(target, os.W_OK):
                reason = (
                    f"{'the data directory' if target == directory else target.name} is "
                    "read-only; make it writable by the server's user"
                )
                break
    if reason is not None:
        _warn("database", "readiness: %s (%s)", reason, directory)
        return f"database unavailable: {reason}"
    connection = sqlite3.connect(path, timeout=CHECK_TIMEOUT, check_same_thread=False)
    try:
        connection.execute("SELECT 1").fetchone()
    finally:
        connection.close()
    return None


def check_redis() -> str | None:
    """Scale mode: Redis answers PING. None without ``REDIS_URL`` (nothing to check)."""
    url: str = settings.REDIS_URL
    if not url:
        return None
    try:
        _redis(url).ping()
    except Exception as error:
        _warn("redis", "readiness: redis check failed: %s: %s", type(error).__name__, error)
        return f"redis unavailable: {_short(error)}"
    return None


def _redis(url: str) -> Any:
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            import redis

            _redis_client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CHECK_TIMEOUT,
                socket_timeout=CHECK_TIMEOUT,
                health_check_interval=0,
            )
        return _redis_client


def _warn(kind: str, message: str, *args: object) -> None:
    """A failed check in the log at most once per ``_LOG_EVERY`` seconds per kind: a
    probe every few seconds during an outage is not a line every few seconds."""
    now = time.monotonic()
    with _redis_lock:
        last = _last_warned.get(kind)
        if last is not None and now - last < _LOG_EVERY:
            return
        _last_warned[kind] = now
    logger.warning(message, *args)


def _short(error: BaseException) -> str:
    """The error's kind and first line, without addresses or credentials: the body of
    /readyz may reach the internet through the proxy; the log has the rest."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    lowered = text.lower()
    for known in (
        "connection refused",
        "timeout expired",
        "timed out",
        "the database system is starting up",
        "the database system is shutting down",
        "terminating connection",
        "server closed the connection unexpectedly",
        "database or disk is full",
        "attempt to write a readonly database",
        "unable to open database file",
        "database is locked",
        "no such host",
        "name or service not known",
    ):
        if known in lowered:
            return f"{type(error).__name__} ({known})"
    return type(error).__name__


# --- running them -------------------------------------------------------------------------


def _submit(check: Callable[[], str | None], what: str) -> concurrent.futures.Future[str | None]:
    """``check`` on the pool; a done future with a reason when the pool is all taken."""
    if not _busy.acquire(blocking=False):
        done: concurrent.futures.Future[str | None] = concurrent.futures.Future()
        done.set_result(f"{what} unavailable: earlier checks are still waiting for it")
        return done

    def run() -> str | None:
        try:
            return check()
        finally:
            _busy.release()

    return _pool.submit(run)


def _checks() -> list[tuple[str, Callable[[], str | None]]]:
    checks: list[tuple[str, Callable[[], str | None]]] = [("database", check_database)]
    if settings.REDIS_URL:
        checks.append(("redis", check_redis))
    return checks


def _timed_out(what: str) -> str:
    return f"{what} unavailable: no answer within {CHECK_TIMEOUT + 1:g} s"


def readiness() -> list[str]:
    """The reasons this process is not ready (empty: ready). Blocks at most about
    ``CHECK_TIMEOUT`` + 1 s."""
    futures = [(what, _submit(check, what)) for what, check in _checks()]
    reasons: list[str] = []
    for what, future in futures:
        try:
            reason = future.result(timeout=CHECK_TIMEOUT + 1)
        except concurrent.futures.TimeoutError:
            reason = _timed_out(what)
        if reason:
            reasons.append(reason)
    return reasons


async def readiness_async() -> list[str]:
    """``readiness`` without blocking the event loop."""

    async def one(what: str, check: Callable[[], str | None]) -> str | None:
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(_submit(check, what)), CHECK_TIMEOUT + 1
            )
        except TimeoutError:
            return _timed_out(what)

    answers = await asyncio.gather(*(one(what, check) for what, check in _checks()))
    return [reason for reason in answers if reason]


def _answer(reasons: list[str]) -> tuple[int, bytes]:
    if not reasons:
        return 200, b"ok\n"
    return 503, ("\n".join(reasons) + "\n").encode()


def readyz(request: HttpRequest) -> HttpResponse:
    """The Django view of ``/readyz`` (the running server answers before Django)."""
    status, body = _answer(readiness())
    response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    if status != 200:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def serve_ready(
    scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any
) -> None:
    """``/readyz`` as a plain ASGI answer, before Django's middleware (asgi.py)."""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"cache-control", b"no-store"),
    ]
    if scope["method"] not in ("GET", "HEAD"):
        status, body = 405, b"method not allowed: use GET\n"
        headers.append((b"allow", b"GET, HEAD"))
    else:
        status, body = _answer(await readiness_async())
        if status != 200:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
