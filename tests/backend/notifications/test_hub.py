"""The hub's database watch (embedded default): what another process does on the same
database reaches this process's sockets, against the real server."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fixtures.services import RunningServer

WAIT = 15


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
            websocket.recv(timeout=WAIT)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


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
    demo_server: RunningServer, change: str, close_code: int
) -> None:
    stack = contextlib.ExitStack()
    with stack:
        _check(demo_server, stack, change, close_code)


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
