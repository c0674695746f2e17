"""WAL checkpoints of the embedded SQLite database on a thread of their own.

SQLite checkpoints a WAL database on its own (every 1,000 pages of WAL) inside the
connection whose commit crossed the mark, and that checkpoint copies the pages back
into the database file and fsyncs it. In the server every publish is written by one
thread (backend/notifications/publish_lane.py), so each such checkpoint stalled
that writer and every publish queued behind it (docs/performance.md, issue 14).

While the server serves, ``WalCheckpointer`` does that work instead, on its own
plain ``sqlite3`` connection to the same file, every ``TRAY_SQLITE_CHECKPOINT``
seconds, and the server's own connections move SQLite's automatic checkpoint out
of the way (``PRAGMA wal_autocheckpoint`` from 1,000 pages to
``FALLBACK_AUTOCHECKPOINT_PAGES``, a safety net the WAL does not reach while the
checkpointer keeps up; set by a ``connection_created`` receiver while a
checkpointer runs). sqlite3 releases the GIL during its C calls, so the copy and
the fsync run beside the writer, not in it.

Each round runs a PASSIVE checkpoint, which never waits for and never blocks a
writer. Under a steady stream of writes that is not enough: a passive checkpoint
copies the WAL up to where it was when it began, commits land meanwhile, so the
WAL is never found fully copied when a writer begins, and SQLite only starts the
WAL over from its beginning then. So once the WAL has grown past
``WAL_RESET_BYTES``, the round repeats the passive pass until little is new, then
resets the WAL with a RESTART checkpoint (TRUNCATE when the file has grown to
``TRUNCATE_FACTOR`` times the bound): it takes the write lock (waiting at most
``RESET_BUSY_MS`` for the writer's current transaction, else it tries again
``RETRY_SECONDS`` later), copies the pages written since the last pass, and
makes the next writer start the WAL over. Writers wait for that stretch only (measured in
docs/performance.md). ``stop()`` ends with a TRUNCATE checkpoint.

CLI commands (``notify``, ``manage``) run no checkpointer and keep SQLite's
automatic checkpoint. Nothing here raises into the server: failures are logged
and the next round tries again.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# Past this much WAL a round resets it (starts it over). B3's publish mix at 2,000
# users writes ~400 KB of WAL per publish (a broadcast touches thousands of pages),
# ~60 MB a second at the writer's full speed: SQLite's 1,000-page mark was ~15
# checkpoints a second in the writer. With this bound a reset comes every ~2 s
# under that load (the passes before it take time, so the WAL then holds ~150-230
# MB) and holds the writer ~30-80 ms; a 16 MiB bound reset every round, with waits
# of ~200 ms (bench/wal_checkpoint.py, docs/performance.md). The WAL is read
# through its index, so its size costs readers little; the bound caps its disk.
WAL_RESET_BYTES = 64 * 1024 * 1024
# Passive passes after the first, while each finds commits the one before had not
# copied, to catch the WAL up wholly (then the next writer starts it over itself).
MAX_CATCH_UP_PASSES = 3
# Before a reset, passive passes repeat (at most this many more) until one finds
# less than this much WAL that the one before had not seen.
MAX_EXTRA_PASSES = 4
SMALL_TAIL_BYTES = 1024 * 1024
# A reset truncates the WAL file (instead of starting it over in place) once the
# file is this many times the bound.
TRUNCATE_FACTOR = 4
# The server's own connections keep SQLite's automatic checkpoint as a safety net at
# this many pages of WAL (8x the reset bound: 131,072 pages, 512 MiB of 4 KiB pages):
# a checkpointer that keeps losing the race for the write lock to a writer that
# never pauses, or that died, cannot let the WAL grow without bound. While the
# checkpointer keeps up the WAL never gets there, so the writer never checkpoints.
FALLBACK_AUTOCHECKPOINT_PAGES = 8 * WAL_RESET_BYTES // 4096
# The longest a reset waits, for the write lock (the writer's current transaction)
# and then, holding it, for readers of older snapshots, before giving up until the
# next try (RETRY_SECONDS later). SQLite's busy handler polls (after 1, 3, 8, 18
# ms), so a short wait still catches the pauses between the publish lane's
# transactions; waiting for the lock holds nothing up, and a writer that comes
# while the reset holds it waits for this (readers) plus the reset's own copy
# and fsyncs.
RESET_BUSY_MS = 20
# How soon a reset that found the write lock taken is tried again.
RETRY_SECONDS = 0.05
# At shutdown the server's writers are done: the last checkpoint may wait longer.
FINAL_BUSY_MS = 2000
# A failing checkpoint is logged at most this often (seconds).
_FAILURE_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Checkpoint:
    """What one ``PRAGMA wal_checkpoint(MODE)`` reported.

    Attributes:
        mode: PASSIVE, RESTART or TRUNCATE.
        busy: True when it could not finish (a writer or reader was in the way).
        wal_frames: pages in the WAL when it ran (0 after a TRUNCATE that finished).
        copied: of those, how many are now in the database file.
        seconds: its wall time.
    """

    mode: str
    busy: bool
    wal_frames: int
    copied: int
    seconds: float


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL every ``interval`` seconds on a daemon thread.

    Args:
        path: the database file (its WAL is ``path + "-wal"``).
        interval: seconds between rounds.
        reset_bytes: WAL size past which a round resets the WAL.
        reset_busy_ms: how long a reset waits for the write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float,
        reset_bytes: int = WAL_RESET_BYTES,
        reset_busy_ms: int = RESET_BUSY_MS,
    ) -> None:
        self.path = os.fspath(path)
        self.interval = interval
        self.reset_bytes = reset_bytes
        self.reset_busy_ms = reset_busy_ms
        # Read by tests and the benchmark; written by the thread only.
        self.rounds = 0
        self.resets = 0
        self.failures = 0
        self.longest_reset = 0.0  # seconds: the most a reset held the write lock, about
        self.last: Checkpoint | None = None
        # The latest resets and the passes before them, for a look at how long they take.
        self.recent: collections.deque[Checkpoint] = collections.deque(maxlen=64)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        self._page_size = 4096
        self._last_failure_log = -_FAILURE_LOG_INTERVAL

    @property
    def wal_path(self) -> str:
        return self.path + "-wal"

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the rounds, run a last checkpoint (TRUNCATE) and close the connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the WAL checkpoint thread did not stop within %.0f s", timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def checkpoint_round(self) -> list[Checkpoint]:
        """One round: PASSIVE, then a reset (RESTART, or TRUNCATE for a file grown to
        ``TRUNCATE_FACTOR`` times the bound) if the WAL is past ``reset_bytes``.

        Called by the thread; a test may call it directly on a checkpointer it has
        not started. Raises sqlite3.Error.
        """
        done = [self._checkpoint("PASSIVE", busy_ms=0)]
        # A pass copies what was in the WAL when it began; the few commits that land
        # meanwhile are copied by the next pass in a moment. A WAL found wholly copied
        # is started over by the next writer itself, with no reset and no wait: under
        # B3's load the writer pauses often enough for that to be the rule.
        for _ in range(MAX_CATCH_UP_PASSES):
            last = done[-1]
            if last.busy or last.copied >= last.wal_frames:
                break
            done.append(self._checkpoint("PASSIVE", busy_ms=0))
        live = done[-1].wal_frames * self._page_size
        if live >= self.reset_bytes:
            # A reset copies, holding the write lock, what was committed since the
            # last passive pass: at B3's write rate a pass over tens of MB lets as
            # much again pile up. Passes repeat while they find much that is new, so
            # the reset's own share stays small.
            for _ in range(MAX_EXTRA_PASSES):
                new = done[-1].wal_frames - (done[-2].wal_frames if len(done) > 1 else 0)
                if len(done) > 1 and new * self._page_size < SMALL_TAIL_BYTES:
                    break
                done.append(self._checkpoint("PASSIVE", busy_ms=0))
                if done[-1].wal_frames < done[-2].wal_frames:
                    break  # the writer started the WAL over meanwhile
            live = done[-1].wal_frames * self._page_size
        on_disk = self._wal_file_bytes()
        if live >= self.reset_bytes or on_disk >= TRUNCATE_FACTOR * self.reset_bytes:
            # RESTART leaves the file as large as it is, to be written over: freeing
            # and growing it again on every reset costs the writer; a file grown far
            # past the bound (a burst) is given back to the disk.
            mode = "TRUNCATE" if on_disk >= TRUNCATE_FACTOR * self.reset_bytes else "RESTART"
            reset = self._checkpoint(mode, busy_ms=self.reset_busy_ms)
            done.append(reset)
            if not reset.busy:
                self.resets += 1
                self.longest_reset = max(self.longest_reset, reset.seconds)
        self.rounds += 1
        return done

    def close(self) -> None:
        """Close the connection (the thread does this itself when stopped)."""
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    # --- the thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            wait = self.interval
            while not self._stopping.wait(wait):
                self._guarded(self.checkpoint_round)
                # A reset that found the writer busy is tried again soon, not a whole
                # interval later: each try costs the writer nothing until it succeeds.
                pending = self.last is not None and self.last.mode != "PASSIVE" and self.last.busy
                wait = min(self.interval, RETRY_SECONDS) if pending else self.interval
            self._guarded(self._final)
        finally:
            self.close()

    def _final(self) -> None:
        self._checkpoint("TRUNCATE", busy_ms=FINAL_BUSY_MS)

    def _guarded(self, work: Any) -> None:
        try:
            work()
        except Exception:  # never into the server; the next round tries again
            self.failures += 1
            self.close()  # reopened next round (the file may have been replaced)
            now = time.monotonic()
            if now - self._last_failure_log >= _FAILURE_LOG_INTERVAL:
                self._last_failure_log = now
                logger.exception(
                    "WAL checkpoint of %s failed (%d so far)", self.path, self.failures
                )

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            try:
                # The server's connections put the file in WAL mode; never change it here.
                (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"{self.path} is not in WAL mode ({mode})")
                (self._page_size,) = connection.execute("PRAGMA page_size").fetchone()
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _checkpoint(self, mode: str, *, busy_ms: int) -> Checkpoint:
        connection = self._connect()
        connection.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        started = time.perf_counter()
        busy, frames, copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        result = Checkpoint(
            mode=mode,
            busy=bool(busy),
            wal_frames=max(0, int(frames)),
            copied=max(0, int(copied)),
            seconds=time.perf_counter() - started,
        )
        self.last = result
        self.recent.append(result)
        return result

    def _wal_file_bytes(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0


# --- the server's checkpointer --------------------------------------------------------

_server_checkpointer: WalCheckpointer | None = None


def _autocheckpoint_off(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: while ours runs, SQLite's automatic checkpoint
    only as the safety net (``FALLBACK_AUTOCHECKPOINT_PAGES``)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_AUTOCHECKPOINT_PAGES}")


def database_path(*, interval: float, database: Mapping[str, Any]) -> str | None:
    """The SQLite file whose checkpoints the server runs itself, else None.

    None when ``interval`` (``TRAY_SQLITE_CHECKPOINT``) is 0 (SQLite's automatic
    checkpoint), for any engine but SQLite, and for an in-memory database.
    """
    if interval <= 0 or not str(database.get("ENGINE", "")).endswith("sqlite3"):
        return None
    name = str(database.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    return name


def start_server_checkpointer() -> WalCheckpointer | None:
    """Start this server process's checkpointer, if its settings call for one.

    Call before the server opens the connections it serves with (the lifespan
    startup, backend/config/asgi.py): connections opened from now on in this
    process leave checkpoints to it.
    """
    global _server_checkpointer
    if _server_checkpointer is not None:
        return _server_checkpointer
    from django.conf import settings
    from django.db.backends.signals import connection_created

    interval = float(settings.TRAY["SQLITE_CHECKPOINT"])
    path = database_path(interval=interval, database=settings.DATABASES["default"])
    if path is None:
        return None
    checkpointer = WalCheckpointer(path, interval=interval, reset_bytes=WAL_RESET_BYTES)
    connection_created.connect(_autocheckpoint_off, dispatch_uid=__name__)
    checkpointer.start()
    _server_checkpointer = checkpointer
    return checkpointer


def reopen_server_connection() -> None:
    """Close the server checkpointer's connection; its next round opens a new one.

    SQLite shares one memory map of the ``-shm`` file between every connection of a
    process to the same file, opened read-only when the file could not be written; it
    stays so while any of them is open. After a read-only database file is made
    writable, the server closes its connections (backend/db_faults.py) and this one
    too, so the next ones open the file read-write.
    """
    checkpointer = _server_checkpointer
    if checkpointer is not None:
        checkpointer.close()


def stop_server_checkpointer() -> None:
    """Stop it (a last checkpoint); connections opened afterwards checkpoint themselves."""
    global _server_checkpointer
    checkpointer, _server_checkpointer = _server_checkpointer, None
    if checkpointer is None:
        return
    from django.db.backends.signals import connection_created

    connection_created.disconnect(dispatch_uid=__name__)
    checkpointer.stop()
