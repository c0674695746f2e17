"""The hub's database watch and the local doorbell (embedded default): what another
process does on the same database reaches this process's sockets at once, against the
real server, the real ``notify`` command and ``manage shell`` in other processes.

Most servers here look in the database only every 30 s on their own
(``DOORBELL_ONLY``), far past every wait: what arrives, arrives because the other
process rang the server's doorbell socket.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fixtures.services import REPO_ROOT, RunningServer, ServerFactory

WAIT = 15
# The safety-net poll of these servers: no frame in these tests may wait for it.
DOORBELL_ONLY = {"TRAY_DB_WATCH_INTERVAL": "30"}
# How long a doorbell-delivered frame may take here (a loaded CI machine included);
# the poll would take up to 30 s.
DOORBELL_WAIT = 5
NOTIFY = (sys.executable, "-m", "backend.cli", "notify")
# A command's start (Python and Django) on a loaded machine.
STARTUP_WAIT = 10


def _socket(
    server: RunningServer, username: str, stack: contextlib.ExitStack
) -> tuple[ClientConnection, str]:
    response = httpx.post(
        server.url + "/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    access = response.json()["access"]
    websocket = stack.enter_context(
        connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {access}"},
            open_timeout=10,
        )
    )
    assert '"hello"' in websocket.recv(timeout=WAIT)
    return websocket, access


def _close_code(websocket: ClientConnection) -> int | None:
    """Read until the server closes; the close code."""
    while True:
        try:
            websocket.recv(timeout=DOORBELL_WAIT)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def _notification(websocket: ClientConnection, timeout: float) -> dict[str, Any]:
    """The payload of the next ``notification_created`` frame (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(websocket.recv(timeout=max(0.0, deadline - time.monotonic())))
        if frame["type"] == "notification_created":
            payload: dict[str, Any] = frame["payload"]
            return payload


def _notify(server: RunningServer, title: str, to: str = "alice") -> None:
    result = server.cli("notify", "--user", to, "--title", title)
    assert result.returncode == 0, result.stderr


def _doorbell_sockets(server: RunningServer) -> list[Path]:
    return sorted(
        path for directory in server.data_dir.glob("doorbell-*") for path in directory.iterdir()
    )


def _since_created(payload: dict[str, Any]) -> float:
    """Seconds from the notification's creation (in its transaction) until now."""
    created = datetime.fromisoformat(payload["created_at"].replace("Z", "+00:00"))
    return time.time() - created.timestamp()


def test_the_notify_command_rings_the_server_at_once(server_factory: ServerFactory) -> None:
    server = server_factory(demo=True, env=DOORBELL_ONLY)
    assert len(_doorbell_sockets(server)) == 1
    latencies = []
    with contextlib.ExitStack() as stack:
        alice, _ = _socket(server, "alice", stack)
        for n in range(20):
            # Started, not waited for: the frame is read (and timed) as it arrives, while
            # the command is still exiting.
            notify = subprocess.Popen(
                [*NOTIFY, "--user", "alice", "--title", f"round {n}"],
                cwd=REPO_ROOT,
                env=server.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            with notify:
                # The command's own start (Django, ~1 s here) comes first.
                payload = _notification(alice, STARTUP_WAIT + DOORBELL_WAIT)
                latencies.append(_since_created(payload))
                assert payload["title"] == f"round {n}"
                _, errors = notify.communicate(timeout=WAIT)
                assert notify.returncode == 0, errors
    # With only the poll, half the default interval (0.5 s) would be the median wait.
    assert statistics.median(latencies) < 0.25, latencies


def test_a_second_server_on_the_same_data_directory_is_rung(
    server_factory: ServerFactory,
) -> None:
    first = server_factory(demo=True, env=DOORBELL_ONLY)
    second = server_factory(env=DOORBELL_ONLY)
    assert len(_doorbell_sockets(first)) == 2
    with contextlib.ExitStack() as stack:
        alice, _ = _socket(second, "alice", stack)
        _, admin_access = _socket(first, "admin", stack)
        response = httpx.post(
            first.url + "/api/notifications/",
            json={"audience": {"usernames": ["alice"]}, "title": "from the first"},
            headers={"Authorization": f"Bearer {admin_access}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        assert _notification(alice, DOORBELL_WAIT)["title"] == "from the first"
    # A server that stops (SIGTERM) takes its socket with it.
    assert second.stop() == 0
    assert len(_doorbell_sockets(first)) == 1


def test_a_killed_servers_socket_is_removed_by_the_next_ring(
    server_factory: ServerFactory,
) -> None:
    killed = server_factory(demo=True, env=DOORBELL_ONLY)
    (left_behind,) = _doorbell_sockets(killed)
    killed.kill()
    server = server_factory(env=DOORBELL_ONLY)
    assert left_behind in _doorbell_sockets(server)
    with contextlib.ExitStack() as stack:
        alice, _ = _socket(server, "alice", stack)
        _notify(server, "after a crash")
        assert _notification(alice, DOORBELL_WAIT)["title"] == "after a crash"
    assert left_behind not in _doorbell_sockets(server)
    assert len(_doorbell_sockets(server)) == 1


def test_the_poll_still_finds_what_no_doorbell_announced(demo_server: RunningServer) -> None:
    # Safety net: the server's socket is gone (as if the ringing process died between
    # its commit and its ring), so only the database watch's poll (0.5 s) can see it.
    (socket_file,) = _doorbell_sockets(demo_server)
    socket_file.unlink()
    with contextlib.ExitStack() as stack:
        alice, _ = _socket(demo_server, "alice", stack)
        _notify(demo_server, "unannounced")
        assert _notification(alice, WAIT)["title"] == "unannounced"


def _shell(server: RunningServer, code: str) -> None:
    result = server.cli("manage", "shell", "-c", code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("change", "close_code"),
    [
        ("alice.is_active = False\nalice.save()", 4003),
        ("alice.set_password('another-pass-42')\nalice.save()", 4001),
    ],
    ids=["deactivated", "password_changed"],
)
def test_a_change_made_in_another_process_closes_the_users_sockets(
    server_factory: ServerFactory, change: str, close_code: int
) -> None:
    server = server_factory(demo=True, env=DOORBELL_ONLY)
    stack = contextlib.ExitStack()
    with stack:
        _check(server, stack, change, close_code)


def _check(
    demo_server: RunningServer, stack: contextlib.ExitStack, change: str, close_code: int
) -> None:
    alice, alice_access = _socket(demo_server, "alice", stack)
    bob, _ = _socket(demo_server, "bob", stack)

    find_alice = "from backend.users.models import User\nalice = User.objects.get(username='alice')"
    _shell(demo_server, f"{find_alice}\n{change}")

    assert _close_code(alice) == close_code
    refused = httpx.get(
        demo_server.url + "/api/me", headers={"Authorization": f"Bearer {alice_access}"}
    )
    assert refused.status_code == 401
    bob.send('{"type": "ping", "ref": "alive"}')
    assert '"pong"' in bob.recv(timeout=WAIT)


# --- the watch's look, in this process -------------------------------------------------


@pytest.mark.django_db
def test_a_look_loads_no_message_this_process_already_rang(make_user: Any) -> None:
    """At 170 publishes a second every new message is this server's own: a look reads
    their ids only, never the messages (nor their rows)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from backend.notifications.hub import _watch_new_messages
    from backend.notifications.selectors import Audience
    from backend.notifications.services import notification_create

    alice = make_user("alice")
    first = notification_create(audience=Audience(users=(alice.pk,)), title="one").message
    second = notification_create(audience=Audience(users=(alice.pk,)), title="two").message
    with CaptureQueriesContext(connection) as queries:
        after_id, events = _watch_new_messages(0, [alice.pk], {first.pk, second.pk})
    assert (after_id, events) == (second.pk, [])
    assert len(queries) == 1
    assert "title" not in queries[0]["sql"]


@pytest.mark.django_db
def test_a_look_delivers_what_another_process_wrote(make_user: Any) -> None:
    from backend.notifications.hub import _watch_new_messages
    from backend.notifications.selectors import Audience
    from backend.notifications.services import notification_create

    alice, bob = make_user("alice"), make_user("bob")
    mine = notification_create(audience=Audience(users=(alice.pk,)), title="mine").message
    theirs = notification_create(
        audience=Audience(users=(alice.pk, bob.pk)), title="theirs"
    ).message
    after_id, events = _watch_new_messages(0, [alice.pk], {mine.pk})
    assert after_id == theirs.pk
    assert [(event["message_id"], event["shared"]["title"]) for event in events] == [
        (theirs.pk, "theirs")
    ]
    assert [row[0] for row in events[0]["recipients"]] == [alice.pk]
    # Nobody connected here: nothing to deliver, and the watch still moves on.
    assert _watch_new_messages(0, [], set()) == (theirs.pk, [])


@pytest.mark.django_db
def test_a_notification_counts_as_rung_before_the_loop_dispatches_it(
    make_user: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Under load the event loop dispatches a ring tens of ms after its commit, and
    the watch's look may run on the database thread in between. The ringing thread
    notes it, so that look reads no row of it (it read a broadcast's rows, and
    settled every pending row first: 100-220 ms of the writer, docs/performance.md)."""
    import asyncio

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from backend.notifications import doorbell
    from backend.notifications.hub import Hub, _watch_new_messages
    from backend.notifications.selectors import Audience
    from backend.notifications.services import notification_create

    alice = make_user("alice")
    loop = asyncio.new_event_loop()  # never run: the ring's dispatch waits in it
    try:
        hub = Hub()
        hub.loop = loop
        bell = doorbell.LocalDoorbell(None)
        bell._listener = hub  # what open() sets, without a running loop
        monkeypatch.setattr(doorbell, "_current", bell)
        with django_capture_on_commit_callbacks(execute=True):
            sent = notification_create(audience=Audience(users=(alice.pk,)), title="t").message
        with CaptureQueriesContext(connection) as queries:
            after_id, events = _watch_new_messages(0, [alice.pk], hub._recently_rung)
    finally:
        loop.close()
    assert (after_id, events) == (sent.pk, [])
    assert len(queries) == 1  # its id only
