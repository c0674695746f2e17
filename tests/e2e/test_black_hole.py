"""A black-holed network: the server in its own network namespace, its link cut with no FIN
and no RST while notifications keep being published, then restored.

The server (``tray-notifier-server serve``) runs inside a namespace the test creates, reached
from the root namespace over a veth pair; the real client (``tray-notifier --headless``) runs
in the root namespace. The cut is ``ip link set <ns end> down`` inside the namespace: the
root end loses its carrier but keeps its address and route, so every packet the client sends
is silently dropped by the veth (no RST, no FIN, no ICMP from the server's side), as when a
router on the way dies. During the cut the notifications are written by ``notify`` inside the
namespace (the server picks them up from its database); before and after, by the demo admin
over REST across the veth.

Asserted per outage: the client says it lost the connection within 30 s of the cut (its
heartbeats: ``tray_app/net/live.py``), is connected again within the backoff's bound after
the link comes back (the measured figure is printed), and its store ends with exactly the
server's seqs ``1..latest`` for its user: nothing lost, nothing twice.

Durations: the issue's 30, 120 and 600 s with ``TRAY_TEST_SCALE=1`` (each scaled by it, never
below 30 s so the cut outlasts the heartbeat's 25 s detection time); CI (the variable unset) runs
one 40 s outage. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.crash_harness import (
    CRASH_SERVER_ENV,
    HeadlessClient,
    ServerDatabase,
    read_client_store,
)
from tests.fixtures.services import (
    LISTENING_PREFIX,
    REPO_ROOT,
    OutputPump,
    ServerFactory,
    free_port,
)
from tests.tray_app.conftest import client_env
from tray_app.net.backoff import Backoff
from tray_app.net.live import OPEN_TIMEOUT, PING_INTERVAL, PONG_TIMEOUT

ISSUE_OUTAGES = (30.0, 120.0, 600.0)
CI_OUTAGE = 40.0
# The heartbeat notices a dead link within PING_INTERVAL + PONG_TIMEOUT (25 s); an outage
# must outlast that for "noticed" to be observable at all.
SHORTEST_OUTAGE = 30.0
NOTICE_WITHIN = 30.0  # the issue's figure
# After a long outage the client's next try may be a whole capped backoff away: a client
# cannot see the far end of a black hole come back. Its bound, plus one connect attempt
# that started just before the link came back and times out, plus slack.
RECONNECT_WITHIN = Backoff().cap + OPEN_TIMEOUT + 5.0
USER = "alice"
PUBLISH_PACE = 5.0  # seconds between notifications written during the outage


def outage_seconds() -> list[float]:
    """The outages to run: the issue's three scaled by TRAY_TEST_SCALE, or CI's single one."""
    raw = os.environ.get("TRAY_TEST_SCALE")
    if raw is None:
        return [CI_OUTAGE]
    scale = float(raw)
    return [max(SHORTEST_OUTAGE, seconds * scale) for seconds in ISSUE_OUTAGES]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


_names = itertools.count()


@dataclass(frozen=True)
class Namespace:
    """A network namespace joined to the root namespace by one veth pair."""

    name: str
    outer_link: str  # in the root namespace
    inner_link: str  # in the namespace
    outer_address: str
    inner_address: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def cut(self) -> None:
        """Down the namespace's end: packets vanish, nobody is told."""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.inner_link, "down")

    def restore(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", self.inner_link, "up")


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A fresh namespace and veth pair, deleted at the end even if the test fails."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the black-hole tests need root and iproute2's `ip` (scripts/test)")
    index = next(_names)
    tag = f"{os.getpid() % 100000}x{index}"
    subnet = 100 + (os.getpid() + index) % 150
    space = Namespace(
        name=f"tnbh{tag}",
        outer_link=f"tbo{tag}",
        inner_link=f"tbi{tag}",
        outer_address=f"10.213.{subnet}.1",
        inner_address=f"10.213.{subnet}.2",
    )
    _ip("netns", "add", space.name)
    try:
        _ip("link", "add", space.outer_link, "type", "veth", "peer", "name", space.inner_link)
        _ip("link", "set", space.inner_link, "netns", space.name)
        _ip("addr", "add", f"{space.outer_address}/24", "dev", space.outer_link)
        _ip("link", "set", space.outer_link, "up")
        inside = ("netns", "exec", space.name, "ip")
        _ip(*inside, "addr", "add", f"{space.inner_address}/24", "dev", space.inner_link)
        _ip(*inside, "link", "set", space.inner_link, "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield space
    finally:
        # Deleting the namespace deletes its veth end, and with it the root end.
        subprocess.run(["ip", "netns", "del", space.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", space.outer_link], capture_output=True, timeout=30)


class NamespacedServer:
    """``tray-notifier-server serve --demo`` inside ``namespace``, on its veth address."""

    def __init__(self, factory: ServerFactory, space: Namespace) -> None:
        self.env = factory.env(env=CRASH_SERVER_ENV)
        self.space = space
        self.database = ServerDatabase(sqlite_path=factory.data_dir / "db.sqlite3")
        port = free_port()
        command = [sys.executable, "-m", "backend.cli", "serve", "--demo"]
        command += ["--host", space.inner_address, "--port", str(port)]
        self.process = subprocess.Popen(
            space.command(*command),
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = OutputPump(self.process.stdout)  # type: ignore[arg-type]
        line = self.output.wait_for(lambda text: text.startswith(LISTENING_PREFIX), 60)
        if line is None:
            self.close()
            raise RuntimeError(f"server did not start in the namespace:\n{self.output.text()}")
        self.url = f"http://{space.inner_address}:{port}"

    def notify_inside(self, title: str) -> None:
        """Publish with the CLI inside the namespace (the database, not the link)."""
        command = [sys.executable, "-m", "backend.cli", "notify", "--user", USER, "--title", title]
        done = subprocess.run(
            self.space.command(*command),
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.output.close()


@pytest.fixture
def namespaced_server(
    server_factory: ServerFactory, namespace: Namespace
) -> Iterator[NamespacedServer]:
    server = NamespacedServer(server_factory, namespace)
    try:
        yield server
    finally:
        server.close()


def publish_over_rest(url: str, titles: list[str]) -> None:
    """The demo admin publishes to USER across the veth (the link must be up)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        login = http.post("/api/auth/token/", json={"username": "admin", "password": "demo"})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        for title in titles:
            response = http.post(
                "/api/notifications/",
                json={"audience": {"usernames": [USER]}, "title": title},
                headers=headers,
            )
            assert response.status_code == 201, response.text


def after_line(skip: int, predicate: Callable[[str], bool]) -> Callable[[str], bool]:
    """A predicate for OutputPump.wait_for (which passes each line once, in order) that
    ignores the first ``skip`` lines."""
    seen = [0]

    def check(line: str) -> bool:
        seen[0] += 1
        return seen[0] > skip and predicate(line)

    return check


CONNECTED = "tray-notifier: connected\n"


@pytest.mark.parametrize(
    "outage",
    [
        # Setup, the notice, the reconnect envelope and the final catch-up on top.
        pytest.param(seconds, id=f"{seconds:.0f}s", marks=pytest.mark.timeout(int(seconds) + 240))
        for seconds in outage_seconds()
    ],
)
def test_black_hole_is_noticed_and_survived(
    namespaced_server: NamespacedServer, tmp_path: Path, outage: float
) -> None:
    server = namespaced_server
    client = HeadlessClient(client_env(tmp_path / "client"), server.url, USER)
    try:
        assert client.wait_for_seq(0, timeout=60) is not None, client.err.text()
        publish_over_rest(server.url, [f"before {n}" for n in range(5)])
        before = server.database.latest_seqs()[USER]
        assert client.wait_for_seq(before, timeout=30) is not None, client.err.text()

        lines_before_cut = len(client.err.text().splitlines())
        server.space.cut()
        cut_at = time.monotonic()
        # Keep publishing through the whole outage, inside the namespace.
        stop = threading.Event()
        during: list[str] = []
        failures: list[BaseException] = []

        def publish_during() -> None:
            try:
                for n in itertools.count():
                    title = f"during {n}"
                    server.notify_inside(title)
                    during.append(title)
                    if stop.wait(PUBLISH_PACE):
                        return
            except BaseException as error:  # reported by the test thread
                failures.append(error)

        publisher = threading.Thread(target=publish_during, daemon=True, name="publisher")
        publisher.start()
        noticed_line = client.err.wait_for(
            after_line(lines_before_cut, lambda line: line.startswith("tray-notifier: ")),
            timeout=outage,
        )
        noticed_after = time.monotonic() - cut_at
        assert noticed_line is not None, client.err.text()
        assert noticed_line != CONNECTED, client.err.text()
        assert noticed_after <= NOTICE_WITHIN, (noticed_after, client.err.text())
        # The outage itself is the thing under test: it lasts its full length from the cut.
        stop.wait(max(0.0, cut_at + outage - time.monotonic()))
        lines_before_restore = len(client.err.text().splitlines())
        server.space.restore()
        restored_at = time.monotonic()
        stop.set()
        publisher.join(timeout=90)
        assert not failures, failures
        assert during, "nothing was published during the outage"

        back = client.err.wait_for(
            after_line(lines_before_restore, lambda line: line == CONNECTED),
            timeout=RECONNECT_WITHIN,
        )
        reconnected_after = time.monotonic() - restored_at
        assert back is not None, (RECONNECT_WITHIN, client.err.text())

        publish_over_rest(server.url, [f"after {n}" for n in range(5)])
        latest = server.database.latest_seqs()[USER]
        assert client.wait_for_seq(latest, timeout=60) is not None, client.err.text()
    finally:
        client.terminate()
    store = read_client_store(client.database_path)
    assert store.integrity == "ok"
    assert store.seqs == list(range(1, latest + 1)), store.seqs
    assert store.cursor == latest
    print(
        f"\nblack hole {outage:.0f} s: noticed after {noticed_after:.1f} s "
        f"({noticed_line.strip()!r}), reconnected {reconnected_after:.1f} s after the link "
        f"came back, {len(during)} published during the outage, seqs 1..{latest} stored, "
        f"heartbeat {PING_INTERVAL:.0f}+{PONG_TIMEOUT:.0f} s"
    )
