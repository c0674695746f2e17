"""Client faults end to end: a frozen client, deliveries dropped on their way, and
connections that outlive the server's time limits.

Every test runs the real server (``server_factory``, a subprocess on port 0) and the real
client as users run it (``tray-notifier --headless`` in a subprocess, its files under the
test's ``tmp_path``, no D-Bus session). Faults are real too: SIGSTOP/SIGCONT of the client
process, a client that stops reading while the server's per-socket send queue overflows,
the server's Redis subscription killed with ``CLIENT KILL``, access tokens that expire
while connected. At the end of each test the client's SQLite store is compared with the
server's inbox: every seq exactly once, nothing missing.

Durations scale with ``TRAY_TEST_SCALE`` (default 1): the frozen-laptop test freezes the
client for ``30 * TRAY_TEST_SCALE`` seconds; the full run (``TRAY_TEST_SCALE=4``) freezes
it for the issue's two minutes. docs/reliability.md records both.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import doorbell_channel
from tests.fixtures.services import RunningServer, ServerFactory
from tests.tray_app.conftest import SCALE, HeadlessClient, client_env
from tests.tray_app.test_headless import database_path, log_in, stored_state

# The server's protocol pings (backend/cli.py: every 10 s, 10 s to answer): a client that
# stays frozen longer than this is certainly dropped by the server.
SERVER_PING_WINDOW = 20.0
FREEZE_SECONDS = 30.0 * SCALE
# After SIGCONT the client must be reconnected and caught up within this bound (the
# issue's "every client caught up within 10 seconds").
RECOVERY_BOUND = 10.0
# Every client start logs in with the password; token refreshes go through the same view.
GENEROUS = {"TRAY_LOGIN_RATE": "100000/min"}
WAIT = 30.0


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def launch() -> Iterator[type[HeadlessClient]]:
    """``launch(env, *args)`` starts a headless client; every one is killed at the end."""
    started: list[HeadlessClient] = []

    class Tracked(HeadlessClient):
        def __init__(self, env: Mapping[str, str], *args: str) -> None:
            super().__init__(env, *args)
            started.append(self)

    yield Tracked
    for client in started:
        client.kill()  # SIGKILL ends a stopped process too


def server_seqs(server_url: str, username: str = "alice") -> list[int]:
    """Every seq of the user's inbox on the server, paged over REST in seq order."""
    access = log_in(server_url, username)["access"]
    seqs: list[int] = []
    after: int | None = 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {access}"}) as client:
        while after is not None:
            response = client.get(
                f"{server_url}/api/inbox/", params={"after_seq": after, "limit": 200}
            )
            response.raise_for_status()
            page = response.json()
            seqs += [row["seq"] for row in page["results"]]
            after = page["next_after_seq"]
    return seqs


class StreamPublisher:
    """Publishes to alice over REST as the demo admin, from a thread, one notification
    every ``interval`` seconds (idempotency keys: a retried request never doubles)."""

    def __init__(self, server_url: str, *, message: str = "", interval: float = 0.0) -> None:
        self.server_url = server_url
        self.message = message
        self.interval = interval
        self.sent: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._token = log_in(server_url, "admin")["access"]
        self._thread: threading.Thread | None = None

    def publish(self, title: str, client: httpx.Client | None = None) -> None:
        own = client is None
        http = client or httpx.Client(timeout=30)
        try:
            key = str(uuid.uuid4())
            for _attempt in range(20):
                response = http.post(
                    f"{self.server_url}/api/notifications/",
                    json={
                        "audience": {"usernames": ["alice"]},
                        "title": title,
                        "message": self.message,
                        "idempotency_key": key,
                    },
                    headers={"Authorization": f"Bearer {self._token}"},
                )
                if response.status_code == 401:  # a short token lifetime in this test
                    self._token = log_in(self.server_url, "admin")["access"]
                    continue
                assert response.status_code in (200, 201), response.text
                with self._lock:
                    self.sent.append(title)
                return
            raise AssertionError(f"could not publish {title!r}")
        finally:
            if own:
                http.close()

    def start(self, prefix: str) -> None:
        def run() -> None:
            n = 0
            try:
                with httpx.Client(timeout=30) as http:
                    while not self._stop.is_set():
                        self.publish(f"{prefix}-{n}", http)
                        n += 1
                        if self.interval:
                            self._stop.wait(self.interval)
            except BaseException as error:  # surfaced by stop()
                self.failures.append(error)

        self._thread = threading.Thread(target=run, name="publisher", daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.sent)

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            assert not self._thread.is_alive(), "the publisher did not stop"
        assert not self.failures, self.failures
        return self.count()


def wait_until(condition: object, *, timeout: float, what: str) -> float:
    """Poll ``condition()`` until true; the seconds it took. AssertionError at the deadline."""
    assert callable(condition)
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def assert_exactly_once(client: HeadlessClient, env: Mapping[str, str], server_url: str) -> None:
    """The client's store and its printed lines hold the server's seqs, each exactly once."""
    expected = server_seqs(server_url)
    assert expected == list(range(1, len(expected) + 1)), "the server's seqs are gap-free"
    integrity, cursor, stored = stored_state(database_path(env, server_url))
    assert integrity == "ok"
    assert cursor == expected[-1]
    assert stored == set(expected)
    printed = [row["seq"] for row in client.notifications()]
    assert sorted(printed) == expected, "a line was printed twice or never"


def caught_up_to(client: HeadlessClient, seq: int) -> bool:
    return any(row["seq"] >= seq for row in client.notifications())


def latest(server_url: str) -> int:
    return server_seqs(server_url)[-1]


def start_client(
    launch: type[HeadlessClient], server: RunningServer, tmp_path: Path, *args: str
) -> tuple[HeadlessClient, dict[str, str]]:
    env = client_env(tmp_path / "app")
    client = launch(env, "--server", server.url, "--username", "alice", *args)
    newest = latest(server.url)
    client.wait_for_notifications(lambda rows: len(rows) >= newest, what="the demo catch-up")
    client.wait_for_state("connected")
    return client, env


def freeze(client: HeadlessClient) -> None:
    os.kill(client.process.pid, signal.SIGSTOP)
    wait_until(lambda: _process_state(client.process.pid) == "T", timeout=5, what="a stop")


def thaw(client: HeadlessClient) -> None:
    os.kill(client.process.pid, signal.SIGCONT)


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


# --- 1. a sleeping laptop: the client frozen with SIGSTOP ------------------------------


@pytest.mark.slow
@pytest.mark.timeout(int(FREEZE_SECONDS) + 180)
def test_a_client_frozen_past_the_servers_ping_window_recovers_on_sigcont(
    server_factory: ServerFactory, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """SIGSTOP for ``FREEZE_SECONDS`` (30 s in CI, 120 s in the full run) while one
    notification a second is published: the server drops the silent socket; on SIGCONT
    the same process (no restart) notices the closed link, reconnects, resumes from its
    cursor and stores every notification exactly once within ``RECOVERY_BOUND``."""
    assert FREEZE_SECONDS > SERVER_PING_WINDOW, "the freeze must outlast the server's pings"
    server = server_factory(demo=True, env=GENEROUS)
    client, env = start_client(launch, server, tmp_path, "--log-level", "INFO")
    pid = client.process.pid
    publisher = StreamPublisher(server.url, interval=1.0)

    freeze(client)
    frozen_at = time.monotonic()
    publisher.start("asleep")
    # The freeze itself is the fault under test (a lid closed for this long), not a wait.
    time.sleep(FREEZE_SECONDS)
    published = publisher.stop()
    newest = latest(server.url)
    assert published >= FREEZE_SECONDS * 0.5
    assert not caught_up_to(client, newest), "a frozen process printed nothing"
    thaw(client)
    thawed_at = time.monotonic()
    recovered = wait_until(
        lambda: caught_up_to(client, newest), timeout=RECOVERY_BOUND * 3, what=f"seq {newest}"
    )
    client.wait_for_state("connected", count=2)

    assert client.process.pid == pid
    assert client.process.poll() is None, "it was not restarted"
    assert recovered < RECOVERY_BOUND, f"caught up {recovered:.1f} s after SIGCONT"
    publisher.publish("awake")  # and it is live again
    client.wait_for_notifications(
        lambda rows: any(row["title"] == "awake" and row["arrival"] == "live" for row in rows),
        what="a live line after the freeze",
    )
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)
    assert "Traceback" not in client.err.text()
    print(
        f"frozen {thawed_at - frozen_at:.1f} s, {published} published meanwhile; "
        f"caught up {recovered:.2f} s after SIGCONT"
    )


@pytest.mark.slow
def test_a_short_freeze_inside_the_ping_window_keeps_the_connection(
    server_factory: ServerFactory, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """A freeze shorter than the server's ping timeout: the link is stale, not dead. The
    frames the server sent meanwhile wait in the socket and arrive on SIGCONT over the same
    connection (no reconnect), each exactly once."""
    server = server_factory(demo=True, env=GENEROUS)
    client, env = start_client(launch, server, tmp_path)
    publisher = StreamPublisher(server.url)

    freeze(client)
    for n in range(5):
        publisher.publish(f"dozing-{n}")
    newest = latest(server.url)
    thaw(client)
    client.wait_for_notifications(
        lambda rows: any(row["seq"] == newest for row in rows), what=f"seq {newest}"
    )
    assert client.state_count("connected") == 1, "the stale link was kept, not replaced"
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)


# --- 2. deliveries dropped between the fan-out and the socket ----------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_slow_clients_send_queue_overflows_and_the_gap_is_back_filled(
    server_factory: ServerFactory, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """The client stops reading (SIGSTOP) while large notifications stream in: the kernel
    buffers fill, the server's per-socket queue passes ``TRAY_WS_SEND_QUEUE`` and the server
    drops the backlog and closes with 1013. Back on SIGCONT the client resumes from its
    cursor and the database fills the gap: every seq exactly once."""
    server = server_factory(demo=True, env={**GENEROUS, "TRAY_WS_SEND_QUEUE": "20"})
    client, env = start_client(launch, server, tmp_path, "--log-level", "DEBUG")
    # ~4.7 KiB frames: a few megabytes of kernel buffers fill within seconds.
    publishers = [StreamPublisher(server.url, message="x" * 4500) for _ in range(4)]

    freeze(client)
    for n, publisher in enumerate(publishers):
        publisher.start(f"flood-{n}")
    try:
        overflowed = server.wait_for_output("fell behind", timeout=SERVER_PING_WINDOW - 5)
    finally:
        published = sum(publisher.stop() for publisher in publishers)
    assert overflowed, "the send queue never overflowed:\n" + server.output()[-3000:]
    newest = latest(server.url)
    thaw(client)
    recovered = wait_until(
        lambda: caught_up_to(client, newest), timeout=60, what=f"seq {newest} after the flood"
    )
    client.wait_for_state("connected", count=2)
    closes = [line for line in client.err.lines if "< CLOSE" in line]
    # Once, by the overflow; a resume that overflowed the queue again would repeat it.
    assert len(closes) == 1, closes
    assert "< CLOSE 1013" in closes[0]
    assert recovered < RECOVERY_BOUND, f"back-filled {recovered:.1f} s after SIGCONT"
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)
    print(f"{published} published during the stall; back-filled {recovered:.2f} s after SIGCONT")


@pytest.mark.slow
@pytest.mark.redis
def test_doorbells_missed_while_the_server_is_cut_off_from_redis_are_back_filled(
    server_factory: ServerFactory, redis_url: str, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """Scale mode's doorbell is Redis pub/sub. The server's subscription is killed
    (``CLIENT KILL TYPE pubsub``) and a notification is published while no process is
    subscribed, so its doorbell reaches nobody; meanwhile a stream keeps publishing. The
    server resubscribes and catches every socket up from the database: the client ends
    with every seq exactly once."""
    server = server_factory(demo=True, redis_url=redis_url, env=GENEROUS)
    client, env = start_client(launch, server, tmp_path)
    stream = StreamPublisher(server.url, interval=0.02)
    lone = StreamPublisher(server.url)
    doorbell = doorbell_channel(redis_url)
    blips = max(2, round(5 * SCALE))
    with redis.Redis.from_url(redis_url) as admin:

        def subscribers() -> int:
            return int(dict(admin.pubsub_numsub(doorbell))[doorbell.encode()])

        stream.start("stream")
        try:
            for blip in range(blips):
                wait_until(lambda: subscribers() == 1, timeout=WAIT, what="the resubscription")
                seen = len(client.out.lines)
                client.out.wait_for_count(seen + 1, what=f"a live line before blip {blip}")
                assert admin.client_kill_filter(_type="pubsub") >= 1
                lone.publish(f"unheard-{blip}")
                # Proof that the lone doorbell went to nobody: it was published while the
                # server's subscription was gone (it resubscribes after 1 s).
                assert subscribers() == 0, "the server resubscribed too fast for this test"
        finally:
            published = stream.stop()
    newest = latest(server.url)
    client.wait_for_notifications(
        lambda rows: any(row["seq"] == newest for row in rows), what=f"seq {newest}"
    )
    titles = {row["title"] for row in client.notifications()}
    assert {f"unheard-{blip}" for blip in range(blips)} <= titles
    assert server.output().count("lost the Redis doorbell") >= blips
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)
    print(f"{blips} Redis blips, {published + blips} notifications, all back-filled")


# --- 3. connections past the server's time limits --------------------------------------

SHORT_TOKEN = {
    **GENEROUS,
    "TRAY_ACCESS_TOKEN_MINUTES": "0.1",  # 6 s
    "TRAY_TOKEN_SWEEP_INTERVAL": "0.5",
}
TOKEN_SECONDS = 6.0


def swept(server: RunningServer) -> bool:
    """The server has closed a socket with 4001 (its line, backend/notifications/state_io.py):
    only alice's client holds one in these tests."""
    return any(
        ": closing a socket of user " in line and line.endswith("(4001)")
        for line in server.output().splitlines()
    )


@pytest.mark.slow
def test_one_connection_outlives_many_access_tokens_by_renewing_in_band(
    server_factory: ServerFactory, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """Access tokens of 6 s and a token sweep every 0.5 s: the client renews in band, so
    one connection stays up across several token lifetimes (no 4001, no reconnect) and
    every notification published meanwhile arrives live, exactly once. uvicorn puts no
    lifetime limit on a socket (Daphne's websocket_timeout does not apply)."""
    server = server_factory(demo=True, env=SHORT_TOKEN)
    client, env = start_client(launch, server, tmp_path, "--log-level", "DEBUG")
    publisher = StreamPublisher(server.url, interval=0.5)
    lifetimes = max(3, round(4 * SCALE))
    began = time.monotonic()
    publisher.start("long-lived")
    # The connection's age is what is under test: it must span this many token lifetimes.
    time.sleep(lifetimes * TOKEN_SECONDS)
    published = publisher.stop()
    newest = latest(server.url)
    client.wait_for_notifications(
        lambda rows: any(row["seq"] == newest for row in rows), what=f"seq {newest}"
    )
    lasted = time.monotonic() - began

    assert client.state_count("connected") == 1, client.err.text()[-3000:]
    assert not any("< CLOSE" in line for line in client.err.lines)
    # In band with the refresh token (the server rotates it and acks the new pair).
    renewals = sum(1 for line in client.err.lines if '> TEXT \'{"type":"refresh"' in line)
    assert renewals >= lifetimes, f"{renewals} in-band renewals"
    live = [row for row in client.notifications() if row["title"].startswith("long-lived")]
    assert len(live) == published
    assert {row["arrival"] for row in live} == {"live"}
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)
    print(f"one connection for {lasted:.0f} s, {renewals} renewals, {published} live lines")


@pytest.mark.slow
def test_a_token_that_expires_while_frozen_is_swept_with_4001_then_refreshed(
    server_factory: ServerFactory, launch: type[HeadlessClient], tmp_path: Path
) -> None:
    """The client is frozen past its access token's expiry (but inside the server's ping
    window): the server's token sweep closes the socket with 4001. On SIGCONT the client
    refreshes its token, reconnects and resumes: every seq exactly once."""
    server = server_factory(demo=True, env=SHORT_TOKEN)
    client, env = start_client(launch, server, tmp_path, "--log-level", "DEBUG")
    publisher = StreamPublisher(server.url)

    freeze(client)
    for n in range(3):
        publisher.publish(f"expired-{n}")
    # Frozen until the token has expired and the sweep has closed the socket, and no
    # longer: the server's close handshake gives the peer 10 s (uvicorn's close timeout)
    # to answer before it drops the connection, and a client thawed after that reads no
    # 4001. A fixed sleep overran that window whenever a loaded machine slowed the
    # publishes around it.
    wait_until(lambda: swept(server), timeout=TOKEN_SECONDS * 3, what="the sweep's 4001")
    for n in range(3, 6):
        publisher.publish(f"expired-{n}")
    thaw(client)
    newest = latest(server.url)  # nothing is published after the thaw
    recovered = wait_until(
        lambda: caught_up_to(client, newest), timeout=RECOVERY_BOUND * 3, what=f"seq {newest}"
    )
    client.wait_for_state("connected", count=2)
    assert any("< CLOSE 4001" in line for line in client.err.lines), "the sweep's 4001"
    assert recovered < RECOVERY_BOUND
    assert client.terminate() == 0
    assert_exactly_once(client, env, server.url)
