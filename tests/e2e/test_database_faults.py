"""Database faults survived, end to end (issue 19): real servers, real databases, real disks.

Scale mode: two server processes on a private PostgreSQL cluster (its own, not the
session's: it is stopped here) and the session's redis-server. A publisher posts with
idempotency keys and retries while the headless client (``tray-notifier --headless``, a
real subprocess) prints every notification. PostgreSQL is restarted (fast shutdown, up
again at once), then stopped for ``OUTAGE`` seconds (30 s, times ``TRAY_TEST_SCALE``,
at least 3 s): while it is away every REST answer is 503 with ``Retry-After`` and the
API's error body (``database_unavailable``), never a 500; ``/readyz`` is 503 with
"database unavailable: ..." and ``/healthz`` stays 200; afterwards the servers serve
again without a restart, and the client has printed every seq exactly once.

The embedded default (SQLite): the data directory on a small tmpfs, filled to the last
byte: publishes answer 507 ``storage_full`` (after the WAL's free pages are used up),
``/readyz`` says the disk is full; space freed, the next publish is stored, and every
publish answered 201 is there. A database file the server's user cannot write (owned by
another user, as after a restore run as root: the server runs as root without
CAP_DAC_OVERRIDE and CAP_FOWNER, so the file's owner and mode decide): 503
``database_read_only`` on publish and on ``/readyz``; ownership given back, the server
writes again without a restart.

These need root (mount, chown, setpriv): the CI runs as root, and a run that is not
fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.postgres import PostgresCluster, postgres_bin_dir, postgres_cluster
from tests.fixtures.services import (
    LISTENING_PREFIX,
    REPO_ROOT,
    OutputPump,
    RunningServer,
    ServerFactory,
)
from tests.tray_app.conftest import Launcher, client_env, launch

__all__ = ["launch"]  # the headless client's fixture, used here

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
# How long PostgreSQL stays stopped (the 30 s at scale 1).
OUTAGE = max(3.0, 30.0 * SCALE)
# Every client start logs in, and the publisher logs in again after refusals.
GENEROUS_LOGINS = {"TRAY_LOGIN_RATE": "10000/min"}
HTTP_TIMEOUT = 10.0


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("database fault tests need root (mount, chown, setpriv); CI runs as root")


# --- a publisher that notes every answer -------------------------------------------------


@dataclass
class Answers:
    """What the servers answered during a run, by status, with the refusals' details."""

    statuses: list[int] = field(default_factory=list)
    refusals: list[tuple[int, str | None, str]] = field(
        default_factory=list
    )  # status, Retry-After, code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses.append(response.status_code)
            if response.status_code >= 500:
                try:
                    code = str(response.json()["error"]["code"])
                except Exception:
                    code = f"not the API's error body: {response.text[:200]!r}"
                self.refusals.append(
                    (response.status_code, response.headers.get("retry-after"), code)
                )


class FaultPublisher:
    """Publishes as the demo admin with an idempotency key per notification, retrying
    (same key) on transport errors and on 503/507 after at most a second (the servers
    ask for more; the test does not wait that long), until a 201 or 200."""

    def __init__(self, url: str, answers: Answers) -> None:
        self.url = url
        self.answers = answers
        self.sent: list[str] = []
        self._token: str | None = None

    def _login(self, client: httpx.Client) -> str | None:
        response = client.post(
            f"{self.url}/api/auth/token/", json={"username": "admin", "password": "demo"}
        )
        self.answers.note(response)
        if response.status_code != 200:
            return None
        token: str = response.json()["access"]
        return token

    def publish(self, title: str, *, within: float = 120) -> None:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + within
        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            while time.monotonic() < deadline:
                try:
                    if self._token is None:
                        self._token = self._login(client)
                        if self._token is None:
                            time.sleep(0.2)
                            continue
                    response = client.post(
                        f"{self.url}/api/notifications/",
                        json={
                            "audience": {"usernames": ["alice"]},
                            "title": title,
                            "idempotency_key": key,
                        },
                        headers={"Authorization": f"Bearer {self._token}"},
                    )
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                self.answers.note(response)
                if response.status_code == 401:
                    self._token = None
                    continue
                if response.status_code in (503, 507):
                    time.sleep(min(1.0, float(response.headers.get("retry-after", "1"))))
                    continue
                assert response.status_code in (200, 201), response.text
                self.sent.append(title)
                return
        raise AssertionError(f"could not publish {title!r} within {within} s")


def latest_seq(url: str, token: str | None = None) -> int:
    """alice's newest seq; logs her in unless given her ``token`` (a login writes)."""
    access = token or token_of(url, "alice")
    response = httpx.get(
        f"{url}/api/inbox/unread-count/",
        headers={"Authorization": f"Bearer {access}"},
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    return int(response.json()["latest_seq"])


def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=HTTP_TIMEOUT)


def wait_ready(url: str, *, status: int, timeout: float) -> tuple[httpx.Response, float]:
    """Poll ``/readyz`` until it answers ``status``; the answer and the seconds it took."""
    started = time.monotonic()
    while True:
        answer = ready(url)
        if answer.status_code == status:
            return answer, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"/readyz still {answer.status_code} {answer.text!r} after {timeout} s"
            )
        time.sleep(0.1)


# --- PostgreSQL, stopped and started on the same port ----------------------------------


def stop_postgres(cluster: PostgresCluster) -> None:
    """PostgreSQL's fast shutdown (SIGINT): sessions are ended, the server exits."""
    process = cluster.process
    if process.poll() is None:
        process.send_signal(2)
        process.wait(timeout=60)


def start_postgres(cluster: PostgresCluster) -> None:
    """The same cluster again, on the same port (the servers' DATABASE_URL)."""
    owner = None
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        owner = (entry.pw_uid, entry.pw_gid)
    options = [arg for key, value in cluster.settings.items() for arg in ("-c", f"{key}={value}")]
    with cluster.log_path.open("ab") as log:
        cluster.process = subprocess.Popen(
            [
                str(postgres_bin_dir() / "postgres"),
                *("-D", str(cluster.data_dir), "-p", str(cluster.port)),
                *("-k", str(cluster.socket_dir), *options),
            ],
            cwd=cluster.socket_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            extra_groups=[] if owner else None,
        )
    deadline = time.monotonic() + 60
    while not cluster.answers():
        assert cluster.process.poll() is None, cluster.log_tail()
        assert time.monotonic() < deadline, "PostgreSQL did not come back:\n" + cluster.log_tail()
        time.sleep(0.1)


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster this test may stop (the session's is shared)."""
    _require_root()
    try:
        postgres_bin_dir()
    except Exception as error:
        pytest.fail(f"PostgreSQL is needed (Debian's postgresql package): {error}")
    with postgres_cluster(tmp_path / "pg", settings={"fsync": "off"}, pinned=False) as cluster:
        yield cluster


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(300 + round(OUTAGE * 3))
def test_postgres_restarted_and_stopped_while_publishes_and_a_client_run(
    own_postgres: PostgresCluster,
    redis_url: str,
    server_factory: ServerFactory,
    launch: Launcher,
    tmp_path: Path,
) -> None:
    database_url = own_postgres.create_database("faults")
    first = server_factory(
        demo=True, database_url=database_url, redis_url=redis_url, env=GENEROUS_LOGINS
    )
    second = server_factory(database_url=database_url, redis_url=redis_url, env=GENEROUS_LOGINS)
    assert ready(first.url).text == "ok\n"
    demo_latest = latest_seq(first.url)
    # The client on the second process, the publisher on the first: deliveries cross Redis.
    client = launch(client_env(tmp_path / "app"), "--server", second.url, "--username", "alice")
    client.wait_for_notifications(lambda rows: len(rows) >= demo_latest, what="the demo catch-up")
    client.wait_for_state("connected")

    answers = Answers()
    publisher = FaultPublisher(first.url, answers)
    stop = threading.Event()
    failures: list[BaseException] = []

    def publish_all() -> None:
        try:
            while not stop.is_set():
                publisher.publish(f"db-fault-{len(publisher.sent)}", within=OUTAGE + 120)
        except BaseException as error:  # surfaced by the main thread
            failures.append(error)

    thread = threading.Thread(target=publish_all, name="publisher", daemon=True)
    thread.start()
    try:
        # 1. A restart: PostgreSQL's fast shutdown, up again at once.
        time.sleep(1)
        before = len(publisher.sent)
        stop_postgres(own_postgres)
        restarted_at = time.monotonic()
        start_postgres(own_postgres)
        for server in (first, second):
            wait_ready(server.url, status=200, timeout=30)
        _wait(lambda: len(publisher.sent) > before + 3, 60, "publishes after the restart")
        restart_gap = time.monotonic() - restarted_at
        print(f"\nrestart: PostgreSQL down and up in {restart_gap:.1f} s incl. the next publishes")

        # 2. An outage: stopped for OUTAGE seconds.
        before = len(publisher.sent)
        stop_postgres(own_postgres)
        down_at = time.monotonic()
        for server in (first, second):
            answer, took = wait_ready(server.url, status=503, timeout=10)
            assert answer.text.startswith("database unavailable: "), answer.text
            assert answer.headers["retry-after"] == "5"
            assert httpx.get(f"{server.url}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
            print(f"/readyz 503 {took:.2f} s after the stop: {answer.text.strip()!r}")
        # A REST read while it is away: the API's 503, not a 500.
        refused = httpx.get(
            f"{second.url}/api/inbox/unread-count/",
            headers={"Authorization": "Bearer " + _token_of(publisher)},
            timeout=HTTP_TIMEOUT,
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert refused.headers["retry-after"] == "5"
        # The HTTP fallback's stream too: refused before it opens, with the same body.
        streamed = httpx.get(
            f"{second.url}/api/stream/",
            headers={"Authorization": "Bearer " + _token_of(publisher)},
            timeout=HTTP_TIMEOUT,
        )
        assert streamed.status_code == 503, streamed.text
        assert streamed.json()["error"]["code"] == "database_unavailable"
        assert streamed.headers["retry-after"] == "5"
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        stored_during_outage = len(publisher.sent) - before
        start_postgres(own_postgres)
        up_at = time.monotonic()
        for server in (first, second):
            _, took = wait_ready(server.url, status=200, timeout=30)
            print(f"/readyz 200 {took:.2f} s after PostgreSQL answered again")
        _wait(lambda: len(publisher.sent) > before + 3, 60, "publishes after the outage")
        print(
            f"outage: {OUTAGE:.0f} s; publishes stored meanwhile: {stored_during_outage}; "
            f"first publishes after it within {time.monotonic() - up_at:.1f} s"
        )
    finally:
        stop.set()
        thread.join(timeout=OUTAGE + 150)
    assert not thread.is_alive(), "the publisher did not finish"
    assert not failures, failures
    assert stored_during_outage == 0, "a publish was acknowledged while PostgreSQL was down"

    # Nothing acknowledged lost or repeated, on the server and in the client.
    total = len(publisher.sent)
    latest = latest_seq(first.url)
    assert latest == demo_latest + total, "a publish was lost, or an idempotency key repeated"
    client.wait_for_notifications(
        lambda rows: any(row["seq"] == latest for row in rows), timeout=90, what=f"seq {latest}"
    )
    connects = client.state_count("connected")
    assert client.terminate() == 0
    seqs = [row["seq"] for row in client.notifications()]
    assert sorted(seqs) == list(range(1, latest + 1)), "a gap or a repeat"
    titles = {row["title"] for row in client.notifications()}
    assert set(publisher.sent) <= titles

    # Every refusal was the API's 503 with Retry-After: never a 500.
    statuses = sorted(set(answers.statuses))
    print(
        f"published {total}; answers {statuses}; refusals {len(answers.refusals)} "
        f"({sorted({r[2] for r in answers.refusals})}); client connected {connects}x"
    )
    assert 500 not in answers.statuses
    assert answers.refusals, "the outage refused nothing: did PostgreSQL stop?"
    for status, retry_after, code in answers.refusals:
        assert (status, code) == (503, "database_unavailable"), (status, code)
        assert retry_after is not None
    for server in (first, second):
        output = server.output()
        faults = [line for line in output.splitlines() if "backend.db_faults" in line]
        tracebacks = output.count("Traceback")
        print(f"{server.url}: {len(faults)} fault log lines, {tracebacks} tracebacks")
        assert '" 500' not in output, output[-3000:]
        assert "Internal Server Error" not in output
        assert server.is_running()


def _token_of(publisher: FaultPublisher) -> str:
    token = publisher._token
    assert token is not None
    return token


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- Redis, for /readyz --------------------------------------------------------------------


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server (Debian's redis-server package) is needed"
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "redis-server exited"
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return process
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.05)
    finally:
        client.close()


@pytest.mark.redis
def test_readyz_follows_redis_in_scale_mode(server_factory: ServerFactory, tmp_path: Path) -> None:
    """``/readyz`` 503 "redis unavailable: ..." with Retry-After while redis-server is
    stopped, 200 once it is back on the same port; ``/healthz`` 200 throughout."""
    from tests.fixtures.services import free_port

    port = free_port()
    redis_process = start_redis(port, tmp_path)
    try:
        server = server_factory(demo=True, redis_url=f"redis://127.0.0.1:{port}/0")
        assert ready(server.url).text == "ok\n"
        redis_process.kill()
        redis_process.wait(timeout=10)
        answer, took = wait_ready(server.url, status=503, timeout=10)
        assert answer.text.startswith("redis unavailable: "), answer.text
        assert answer.headers["retry-after"] == "5"
        assert httpx.get(f"{server.url}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
        redis_process = start_redis(port, tmp_path)
        _, back = wait_ready(server.url, status=200, timeout=20)
        print(f"\nredis: /readyz 503 {took:.2f} s after the kill ({answer.text.strip()!r}), ")
        print(f"200 {back:.2f} s after redis-server answered again")
    finally:
        if redis_process.poll() is None:
            redis_process.terminate()
            redis_process.wait(timeout=10)


# --- SQLite: a full disk ------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (a real file system that fills up)."""
    _require_root()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the disk is full; the file's path."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (64 * 1024, 512):  # then the last bytes that still fit
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)
    return filler


def publish_once(url: str, token: str, title: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/api/notifications/",
        json={
            "audience": {"usernames": ["alice", "bob"]},
            "title": title,
            "message": "x" * 2000,
            "idempotency_key": key or str(uuid.uuid4()),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )


def token_of(url: str, username: str = "admin") -> str:
    response = httpx.post(
        f"{url}/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access"])


def assert_fault_answer(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == code
    assert "operator" in error["message"]


@pytest.mark.slow
def test_sqlite_full_disk_answers_507_and_recovers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "16m"):
        server = server_factory(demo=True, data_dir=disk / "data")
        token = token_of(server.url)
        alice = token_of(server.url, "alice")
        latest = latest_seq(server.url)
        assert publish_once(server.url, token, "before").status_code == 201
        filler = fill(disk)
        answer = ready(server.url)
        assert answer.status_code == 503
        assert "is full" in answer.text, answer.text
        assert "free space" in answer.text
        assert answer.headers["retry-after"] == "5"

        # The WAL reuses pages it has already: some publishes still fit; then 507.
        stored = ["before"]
        refused: httpx.Response | None = None
        for number in range(2000):
            response = publish_once(server.url, token, f"full-{number}")
            if response.status_code == 201:
                stored.append(f"full-{number}")
                continue
            refused = response
            break
        assert refused is not None, "2,000 publishes fitted on a full disk"
        assert_fault_answer(refused, 507, "storage_full")
        print(f"\nfull disk: {len(stored) - 1} publishes fitted before the first 507")
        # A read still works; more writes are refused the same way, or fit where a failed
        # one left room in the WAL: never a 500.
        assert latest_seq(server.url, alice) == latest + len(stored)
        for number in range(5):
            response = publish_once(server.url, token, f"still-full-{number}")
            if response.status_code == 201:
                stored.append(f"still-full-{number}")
            else:
                assert_fault_answer(response, 507, "storage_full")

        filler.unlink()
        _, took = wait_ready(server.url, status=200, timeout=10)
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 10
        while (response := publish_once(server.url, token, "after", key)).status_code != 201:
            assert response.status_code in (503, 507), response.text
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        stored.append("after")
        print(f"space freed: /readyz 200 within {took:.2f} s, the next publish stored")
        # Every publish answered 201 is there, once.
        assert latest_seq(server.url) == latest + len(stored)
        output = server.output()
        assert '" 500' not in output
        assert "Internal Server Error" not in output
        server.stop()


# --- SQLite: a database file the server cannot write -------------------------------------

# The server runs as root without the capabilities that let root write or chmod any file:
# the database file's owner and mode decide, as for a server running as its own user.
UNPRIVILEGED = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--")


def start_unprivileged(factory: ServerFactory, data_dir: Path) -> RunningServer:
    env = factory.env(data_dir=data_dir)
    process = subprocess.Popen(
        [
            *UNPRIVILEGED,
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    pump = OutputPump(process.stdout)
    line = pump.wait_for(lambda text: text.startswith(LISTENING_PREFIX), 60)
    if line is None:
        process.kill()
        process.wait(timeout=10)
        pump.close()
        raise AssertionError("the server did not start:\n" + pump.text())
    return RunningServer(
        process=process,
        pump=pump,
        url=line[len(LISTENING_PREFIX) :].strip(),
        env=env,
        data_dir=data_dir,
    )


def database_files(data_dir: Path) -> list[Path]:
    return [p for p in sorted(data_dir.glob("db.sqlite3*")) if p.is_file()]


@pytest.mark.slow
def test_sqlite_read_only_database_file_answers_503_and_recovers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    _require_root()
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed"
    data_dir = tmp_path / "data"
    seeded = server_factory(demo=True, data_dir=data_dir)
    # Signed with the data directory's key: valid after the restart (a login writes).
    token = token_of(seeded.url)
    alice = token_of(seeded.url, "alice")
    latest = latest_seq(seeded.url)
    assert seeded.stop() == 0
    # As after a restore run as root for a server that runs as its own user: the file
    # belongs to someone else and only they may write it.
    for path in database_files(data_dir):
        os.chown(path, 65534, 65534)
        path.chmod(0o644)

    server = start_unprivileged(server_factory, data_dir)
    try:
        answer = ready(server.url)
        assert answer.status_code == 503
        assert "read-only" in answer.text, answer.text
        assert "writable" in answer.text
        response = publish_once(server.url, token, "read-only")
        assert_fault_answer(response, 503, "database_read_only")
        print(f"\nread-only: /readyz {answer.text.strip()!r}; publish {response.json()}")
        assert latest_seq(server.url, alice) == latest  # reads still work

        for path in database_files(data_dir):
            os.chown(path, 0, 0)
            path.chmod(0o600)
        _, took = wait_ready(server.url, status=200, timeout=10)
        # Connections SQLite opened read-only stay so: each refused write closes the
        # request's (db_faults), the WAL checkpointer's closes at its next round, and once
        # none is left the next one opens the file read-write.
        key = str(uuid.uuid4())
        attempts = 1
        fixed_at = time.monotonic()
        while (response := publish_once(server.url, token, "writable", key)).status_code != 201:
            assert_fault_answer(response, 503, "database_read_only")
            assert time.monotonic() - fixed_at < 15, server.output()[-6000:]
            attempts += 1
            time.sleep(0.5)
        print(
            f"writable again: /readyz 200 within {took:.2f} s; stored on attempt {attempts}, "
            f"{time.monotonic() - fixed_at:.1f} s after the fix"
        )
        assert latest_seq(server.url) == latest + 1
        output = server.output()
        assert '" 500' not in output
        assert "Internal Server Error" not in output
    finally:
        server.stop()
