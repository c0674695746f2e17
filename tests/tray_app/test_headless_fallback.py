"""The headless client on networks that break WebSockets (issue 18).

Real proxies (tests/fixtures/proxies.py) stand between the client and a real demo
server: nginx without the Upgrade headers, nginx answering 403 to upgrades, nginx
cutting upgraded connections after 5 s, and tinyproxy refusing CONNECT. In each the
client must fall back to the HTTP stream by itself, say so, print every notification
exactly once (live, and by catch-up after a restart), and move back to the socket once
the proxy lets WebSockets through. (The crash test on the fallback, the server SIGKILLed
behind nginx without Upgrade, is tests/tray_app/test_headless.py's.)

The client retries the socket every ``RETRY`` seconds here (the
``TRAY_NOTIFIER_WEBSOCKET_RETRY`` setting) instead of the default five minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.fixtures.proxies import CONDITIONS, BrokenProxy
from tests.fixtures.services import ServerFactory
from tests.tray_app.conftest import (
    HeadlessClient,
    Launcher,
    Publisher,
    RestartableServer,
    client_env,
)
from tests.tray_app.test_headless import GENEROUS_LOGINS, latest_seq
from tray_app.managed import MANAGED_FILE_ENV, WEBSOCKET_RETRY_ENVIRONMENT
from tray_app.net.transport_choice import REASON_BLOCKED

RETRY = 4  # seconds before the first retry of the socket, doubling after each failure
ON_FALLBACK = f"tray-notifier: connected ({REASON_BLOCKED})"
ON_SOCKET = "tray-notifier: connected"
# Four cuts of 5 s with the backoff between them, or three refusals, then the stream.
SWITCH_WITHIN = 90.0


def fallback_env(root: Path, proxy: BrokenProxy | None) -> dict[str, str]:
    """A client environment retrying the socket every RETRY s, through ``proxy``'s
    forward proxy if it has one (IT's managed file, as a company would set it)."""
    env = client_env(root)
    env[WEBSOCKET_RETRY_ENVIRONMENT] = str(RETRY)
    if proxy is not None and proxy.proxy is not None:
        managed = root / "managed.json"
        managed.write_text(json.dumps({"proxy": proxy.proxy}), encoding="utf-8")
        env[MANAGED_FILE_ENV] = str(managed)
    return env


def seqs(client: HeadlessClient) -> list[int]:
    return [row["seq"] for row in client.notifications()]


def wait_for_seq(client: HeadlessClient, seq: int, what: str) -> None:
    client.wait_for_notifications(
        lambda rows: any(row["seq"] == seq for row in rows), timeout=60, what=what
    )


@pytest.fixture
def demo(server_factory: ServerFactory) -> RestartableServer:
    return RestartableServer(server_factory, env=GENEROUS_LOGINS)


@pytest.mark.slow
@pytest.mark.timeout(360)
@pytest.mark.parametrize("kind", sorted(CONDITIONS))
def test_through_a_network_that_breaks_websockets_every_notification_arrives_once(
    kind: str, demo: RestartableServer, launch: Launcher, tmp_path: Path
) -> None:
    condition: Callable[[int], AbstractContextManager[BrokenProxy]] = CONDITIONS[kind]
    publisher = Publisher(demo)
    demo_latest = latest_seq(demo.url)
    with condition(demo.port) as proxy:
        env = fallback_env(tmp_path / "app", proxy)
        args = ("--server", proxy.url, "--username", "alice")

        # 1. It falls back by itself, says so, catches up and gets live ones over HTTP.
        client = launch(env, *args)
        client.wait_for_stderr(ON_FALLBACK, timeout=SWITCH_WITHIN)
        switched_s = time.monotonic() - client.started_at
        wait_for_seq(client, demo_latest, "the demo catch-up")
        for number in range(3):
            publisher.publish(f"{kind}: live on the fallback {number}")
        wait_for_seq(client, demo_latest + 3, "live notifications on the fallback")

        # 2. Stopped, then started again: what came meanwhile arrives by catch-up.
        assert client.terminate() == 0
        for number in range(2):
            publisher.publish(f"{kind}: while the client was stopped {number}")
        again = launch(env, *args)
        again.wait_for_stderr(ON_FALLBACK, timeout=SWITCH_WITHIN)
        wait_for_seq(again, demo_latest + 5, "the catch-up after a restart")

        # 3. The proxy lets WebSockets through: the next retry moves the client back.
        fallbacks = again.err.lines.count(ON_FALLBACK)
        # (Behind the cutting proxy, retries said hello before their cut: count on.)
        on_socket = again.err.lines.count(ON_SOCKET)
        proxy.allow_websockets()
        allowed_at = time.monotonic()
        again.err.wait_for_line(
            lambda line: line == ON_SOCKET,
            count=on_socket + 1,
            # The retry waits RETRY s, doubled after each failed one; the client has been
            # on the stream for a few failed retries at most.
            timeout=8 * RETRY + 30,
            what="the move back to the socket",
        )
        moved_back_s = time.monotonic() - allowed_at
        publisher.publish(f"{kind}: live on the socket")
        wait_for_seq(again, demo_latest + 6, "a live notification on the socket")
        # Still on the socket past the cutting proxy's 5 s (a bounded wait for nothing).
        with pytest.raises(AssertionError):
            again.err.wait_for_line(
                lambda line: line == ON_FALLBACK, count=fallbacks + 1, timeout=8, what="-"
            )
        assert again.terminate() == 0

    printed = seqs(client) + seqs(again)
    assert sorted(printed) == list(range(1, demo_latest + 7)), printed  # each exactly once
    print(
        f"{kind}: on the fallback {switched_s:.1f} s after the start,"
        f" back on the socket {moved_back_s:.1f} s after the proxy allowed it"
    )
    for run in (client, again):
        assert "Traceback" not in run.err.text()
