"""Pieces for the server-crash suites (tests/e2e/test_server_crashes.py): servers and a
redis-server that are SIGKILLed and restarted on the same port, ``tray-notifier --headless``
clients, publishers that retry with one idempotency key, and readers of both databases.

Every part is real: the server's console entry point in a subprocess, the client's console
script in a subprocess with its own SQLite store, redis-server, PostgreSQL and SQLite files.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.fixtures.services import (
    OutputPump,
    RunningServer,
    ServerFactory,
    free_port,
)
from tests.tray_app.conftest import HeadlessProcess
from tray_app.store.db import account_database_path
from tray_app.store.inbox import Inbox

# Every client start logs in with the password, and so does every publisher after a restart;
# the default login rate (20/min) would refuse them.
GENEROUS_LOGINS = {"TRAY_LOGIN_RATE": "100000/min"}
# The servers the crash suites kill: generous logins, and the rows of publishes to three
# or four users written behind their push (backend/notifications/inbox_log.py), those to
# one or two at once, so kills land between a publish and its settle, on both kinds.
CRASH_SERVER_ENV = {**GENEROUS_LOGINS, "TRAY_INBOX_LATER_FROM": "3"}
USERS = ("alice", "bob", "carol", "admin")
KEY_PREFIX = "crash-"
PUBLISH_DEADLINE = 120.0  # seconds one publish may keep retrying through restarts


# --- processes restarted on the same address ------------------------------------------


class FixedPortServer:
    """A ``tray-notifier-server serve`` on one port that can be SIGKILLed and restarted there,
    so clients find it again at the same address after a crash."""

    def __init__(
        self,
        factory: ServerFactory,
        *,
        demo: bool,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.factory = factory
        self.port = free_port()
        self._database_url = database_url
        self._redis_url = redis_url
        self._env = dict(env or {})
        self.current: RunningServer = self._start(demo=demo)
        self.url = self.current.url
        self.restart_seconds: list[float] = []

    def _start(self, *, demo: bool) -> RunningServer:
        return self.factory(
            "--port",
            str(self.port),
            demo=demo,
            database_url=self._database_url,
            redis_url=self._redis_url,
            env=self._env,
        )

    def crash_and_restart(self) -> None:
        """SIGKILL (no cleanup at all), then start again on the same port and data."""
        self.current.kill()
        started = time.monotonic()
        self.current = self._start(demo=False)
        self.restart_seconds.append(time.monotonic() - started)


class RestartableRedis:
    """A private redis-server on a fixed port that can be SIGKILLed and started again there.

    It keeps nothing on disk (``--save '' --appendonly no``), as the channel layer needs
    nothing kept: a restart empties every group and channel.
    """

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs it)")
        self._binary = binary
        self._workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.restarts = 0
        self._process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        import redis

        log = (self._workdir / f"redis-{self.port}-{self.restarts}.log").open("wb")
        process = subprocess.Popen(
            [
                self._binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self._workdir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}")
                try:
                    if client.ping():
                        return process
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("redis-server did not answer PING within 20 s")
                time.sleep(0.05)
        finally:
            client.close()

    def crash_and_restart(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)
        self.restarts += 1
        self._process = self._start()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)


# --- the real client ---------------------------------------------------------------------


class SeqReader(OutputPump):
    """The client's standard output: when each seq's line arrived."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.arrivals: dict[int, float] = {}  # seq -> time.monotonic() when printed
        super().__init__(stream, name="seq-reader")

    def _heard(self, line: str) -> None:
        self.arrivals.setdefault(int(json.loads(line)["seq"]), time.monotonic())

    def arrival(self, seq: int, timeout: float) -> float | None:
        """When the line for ``seq`` arrived (now or later); None on timeout or EOF."""
        if self.wait_lines(lambda _lines: seq in self.arrivals, timeout) is None:
            return None
        return self.arrivals[seq]

    def close(self, timeout: float = 10) -> None:
        super().close(timeout)


class HeadlessClient(HeadlessProcess):
    """``tray-notifier --headless --session-only`` for one user, its output read live.

    Standard output carries one JSON line per notification stored; standard error the
    connection's state words (one line per change).
    """

    out: SeqReader

    def __init__(self, env: Mapping[str, str], server_url: str, username: str) -> None:
        self.username = username
        self.server_url = server_url
        self.data_dir = Path(env["TRAY_NOTIFIER_DATA_DIR"])
        super().__init__(
            env,
            ["--session-only", "--server", server_url, "--username", username],
            out_reader=SeqReader,
            err_reader=OutputPump,
        )

    @property
    def database_path(self) -> Path:
        return account_database_path(self.data_dir, self.server_url, self.username)

    def wait_for_seq(self, seq: int, timeout: float) -> float | None:
        """When the client printed (so stored) the notification with ``seq`` (None on
        timeout); for 0 (nothing to store), when it said it is connected."""
        if seq == 0:
            found = self.err.wait_for(lambda line: line == "tray-notifier: connected\n", timeout)
            return time.monotonic() if found is not None else None
        return self.out.arrival(seq, timeout)

    def times_connected(self) -> int:
        return self.err.text().splitlines().count("tray-notifier: connected")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM as a service manager stops it; the exit code (killed if it hangs)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"{self.username}'s client ignored SIGTERM:\n{self.err.text()}"
            ) from None
        finally:
            self.out.close()
            self.err.close()
        return code


@dataclass(frozen=True)
class ClientStore:
    """What a client's SQLite file holds, read with plain sqlite3 after the client exited."""

    integrity: str
    cursor: int
    seqs: list[int]
    titles: list[str]


def read_client_store(path: Path) -> ClientStore:
    connection = sqlite3.connect(path)
    try:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()
        cursor = Inbox(connection).cursor()
        rows = connection.execute("SELECT seq, title FROM notifications ORDER BY seq").fetchall()
    finally:
        connection.close()
    return ClientStore(
        integrity=str(integrity),
        cursor=cursor,
        seqs=[seq for seq, _ in rows],
        titles=[title for _, title in rows],
    )


# --- the server's database ----------------------------------------------------------------


_POSTGRES_INBOX = "SELECT id, user_id, message_id, seq FROM notifications_inbox"
_SQLITE_INBOX = (
    f"{_POSTGRES_INBOX} UNION ALL "
    "SELECT p.first_id + j.key, j.value ->> 0, p.message_id, j.value ->> 1 "
    "FROM notifications_inboxpending p, json_each(p.rows) j"
)


class ServerDatabase:
    """Reads the server's own tables (SQLite file or PostgreSQL DSN) with plain SQL."""

    def __init__(self, *, sqlite_path: Path | None = None, postgres_dsn: str | None = None):
        if (sqlite_path is None) == (postgres_dsn is None):
            raise ValueError("give exactly one of sqlite_path and postgres_dsn")
        self._sqlite_path = sqlite_path
        self._postgres_dsn = postgres_dsn

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        """``sql``'s rows, where ``inbox`` names the Inbox rows: on SQLite those written
        and those a publish left pending for later (backend/notifications/inbox_log.py),
        which are as durable, and which a killed server had no time to write."""
        if self._sqlite_path is not None:
            sql = f"WITH inbox AS ({_SQLITE_INBOX}) {sql}"
            connection = sqlite3.connect(f"file:{self._sqlite_path}?mode=ro", uri=True)
            try:
                return connection.execute(sql).fetchall()
            finally:
                connection.close()
        import psycopg

        with psycopg.connect(str(self._postgres_dsn)) as postgres:
            return postgres.execute(f"WITH inbox AS ({_POSTGRES_INBOX}) {sql}").fetchall()

    def latest_seqs(self) -> dict[str, int]:
        """Each user's highest Inbox seq."""
        rows = self._rows(
            "SELECT u.username, MAX(i.seq) FROM inbox i "
            "JOIN users_user u ON u.id = i.user_id GROUP BY u.username"
        )
        return dict.fromkeys(USERS, 0) | {str(name): int(seq) for name, seq in rows}

    def seqs_are_gap_free(self) -> dict[str, tuple[int, int, int]]:
        """Per user ``(count, min seq, max seq)`` of their Inbox rows."""
        rows = self._rows(
            "SELECT u.username, COUNT(*), MIN(i.seq), MAX(i.seq) FROM inbox i "
            "JOIN users_user u ON u.id = i.user_id GROUP BY u.username"
        )
        return {str(name): (int(n), int(low), int(high)) for name, n, low, high in rows}

    def messages_by_key(self) -> dict[str, tuple[int, int]]:
        """For each of the test's idempotency keys: ``(Message rows, Inbox rows)``."""
        rows = self._rows(
            "SELECT m.idempotency_key, COUNT(DISTINCT m.id), COUNT(i.id) "
            "FROM notifications_message m "
            "LEFT JOIN inbox i ON i.message_id = m.id "
            f"WHERE m.idempotency_key LIKE '{KEY_PREFIX}%' GROUP BY m.idempotency_key"
        )
        return {str(key): (int(messages), int(inbox)) for key, messages, inbox in rows}


# --- publishing through crashes -----------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    key: str
    audience: tuple[str, ...]


def plan_publications(count: int, rng: random.Random) -> list[Publication]:
    """``count`` notifications with mixed audiences: one user, two, three or all four."""
    plan = []
    for index in range(count):
        size = rng.choice((1, 1, 1, 2, 3, 4))
        plan.append(Publication(f"{KEY_PREFIX}{index:06d}", tuple(sorted(rng.sample(USERS, size)))))
    return plan


@dataclass
class PublishLog:
    """What the publishers saw acknowledged (thread-safe)."""

    acked: dict[str, int] = field(default_factory=dict)  # key -> HTTP status (201/200)
    retries: int = 0
    last_ack_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def record(self, key: str, status: int) -> None:
        with self._changed:
            if key in self.acked:
                raise AssertionError(f"{key} acknowledged twice")
            self.acked[key] = status
            self.last_ack_at = time.monotonic()
            self._changed.notify_all()

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for_count(self, count: int, *, stop: threading.Event, timeout: float) -> bool:
        """Wait until ``count`` publishes were acknowledged (False if ``stop`` or timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.acked) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    return False
                self._changed.wait(min(remaining, 0.5))
            return True


class CrashTolerantPublisher:
    """Publishes as the demo admin over REST, one request at a time. A failed request (the
    server died, or answered 5xx while dying) is sent again with the same idempotency key,
    to the next server address in turn, until one answers 200 or 201."""

    def __init__(
        self, urls: Sequence[str], log: PublishLog, name: str, stop: threading.Event
    ) -> None:
        self._stop = stop
        self._urls = list(urls)
        self._log = log
        self._name = name
        self._token: str | None = None

    def _login(self, client: httpx.Client, url: str) -> str:
        response = client.post(
            f"{url}/api/auth/token/", json={"username": "admin", "password": "demo"}
        )
        response.raise_for_status()
        token: str = response.json()["access"]
        return token

    def publish(self, client: httpx.Client, publication: Publication, turn: int) -> None:
        deadline = time.monotonic() + PUBLISH_DEADLINE
        attempt = 0
        while time.monotonic() < deadline and not self._stop.is_set():
            url = self._urls[(turn + attempt) % len(self._urls)]
            attempt += 1
            try:
                if self._token is None:
                    self._token = self._login(client, url)
                response = client.post(
                    f"{url}/api/notifications/",
                    json={
                        "audience": {"usernames": list(publication.audience)},
                        "title": publication.key,
                        "idempotency_key": publication.key,
                    },
                    headers={"Authorization": f"Bearer {self._token}"},
                )
            except (httpx.TransportError, httpx.HTTPStatusError):
                # The server is down or restarting: poll it again (a crash test has no
                # event to wait for but the server answering).
                self._log.retried()
                time.sleep(0.02)
                continue
            if response.status_code == 401:
                self._token = None
                self._log.retried()
                continue
            if response.status_code >= 500:
                self._log.retried()
                time.sleep(0.02)
                continue
            if response.status_code not in (200, 201):
                raise AssertionError(
                    f"{self._name}: {publication.key} refused: {response.status_code} "
                    f"{response.text}"
                )
            if response.json()["recipients"] != len(publication.audience):
                raise AssertionError(f"{publication.key}: wrong recipients {response.text}")
            self._log.record(publication.key, response.status_code)
            return
        if not self._stop.is_set():
            raise AssertionError(f"{self._name}: could not publish {publication.key} in time")

    def publish_all(self, publications: Sequence[Publication], failures: list[str]) -> None:
        """The thread body: publish every one in order; a failure is recorded, not raised."""
        try:
            with httpx.Client(timeout=10) as client:
                for turn, publication in enumerate(publications):
                    if self._stop.is_set():
                        return
                    self.publish(client, publication, turn)
        except BaseException as error:  # reported by the test thread
            failures.append(f"{self._name}: {error!r}")
            self._stop.set()  # the others stop too, and the test stops waiting


def publish_in_threads(
    plan: Sequence[Publication],
    urls: Sequence[str],
    log: PublishLog,
    threads: int,
    stop: threading.Event,
) -> tuple[list[threading.Thread], list[str]]:
    """Start ``threads`` publishers, each with every ``threads``-th publication of ``plan``;
    they give up when ``stop`` is set (the test failed)."""
    failures: list[str] = []
    started = []
    for index in range(threads):
        publisher = CrashTolerantPublisher(urls, log, name=f"publisher-{index}", stop=stop)
        thread = threading.Thread(
            target=publisher.publish_all,
            args=(plan[index::threads], failures),
            name=f"publisher-{index}",
            daemon=True,
        )
        thread.start()
        started.append(thread)
    return started, failures


@dataclass(frozen=True)
class Fault:
    """One crash in the schedule: when (after this many acknowledged publishes) and what."""

    after_acks: int
    target: str
    crash: Callable[[], None]


def kill_schedule(
    targets: Sequence[str],
    publications: int,
    rng: random.Random,
    crashes: Mapping[str, Callable[[], None]],
) -> list[Fault]:
    """One crash per name in ``targets`` (in that order), each at a random point of the
    publishing run (after a random number of acknowledged publishes)."""
    points = sorted(rng.sample(range(1, publications), len(targets)))
    return [Fault(point, name, crashes[name]) for point, name in zip(points, targets, strict=True)]
