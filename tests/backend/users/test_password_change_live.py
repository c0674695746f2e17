"""A password change on a real server: the other sessions' sockets close with 4001 (as on
logout), the changing session's socket stays open; over REST and from the web page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fixtures.services import RunningServer

NEW_PASSWORD = "Live-Change-Pass-31"


def _login(server: RunningServer, password: str = "demo") -> dict[str, str]:
    answer = httpx.post(
        server.url + "/api/auth/token/",
        json={"username": "alice", "password": password},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@contextmanager
def _socket(server: RunningServer, access: str) -> Iterator[ClientConnection]:
    with connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {access}"}, open_timeout=10
    ) as websocket:
        assert json.loads(websocket.recv(timeout=10))["type"] == "hello"
        yield websocket


def _closed_with(websocket: ClientConnection) -> int | None:
    """The close code the server sent, after whatever frames came before it."""
    try:
        while True:
            websocket.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def _still_answers(websocket: ClientConnection) -> bool:
    websocket.send(json.dumps({"type": "ping", "ref": "p1", "payload": {}}))
    while True:
        frame = json.loads(websocket.recv(timeout=10))
        if frame["type"] == "pong":
            return True


def test_a_rest_password_change_closes_the_other_sessions_sockets_4001(
    demo_server: RunningServer,
) -> None:
    mine, other = _login(demo_server), _login(demo_server)
    with (
        _socket(demo_server, mine["access"]) as kept,
        _socket(demo_server, other["access"]) as gone,
    ):
        answer = httpx.post(
            demo_server.url + "/api/auth/password/",
            headers={"Authorization": f"Bearer {mine['access']}"},
            json={"current_password": "demo", "new_password": NEW_PASSWORD},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

        assert _closed_with(gone) == 4001
        assert _still_answers(kept)
    fresh = answer.json()
    me = httpx.get(
        demo_server.url + "/api/me",
        headers={"Authorization": f"Bearer {fresh['access']}"},
        timeout=10,
    )
    assert me.status_code == 200
    assert _login(demo_server, NEW_PASSWORD)["access"]
    old = httpx.post(
        demo_server.url + "/api/auth/token/", json={"username": "alice", "password": "demo"}
    )
    assert old.status_code == 401


def test_the_web_page_closes_the_desktops_socket_4001(demo_server: RunningServer) -> None:
    desktop = _login(demo_server)
    with (
        httpx.Client(base_url=demo_server.url, timeout=10) as browser,
        _socket(demo_server, desktop["access"]) as socket,
    ):
        browser.get("/")
        logged_in = browser.post(
            "/login/",
            data={
                "username": "alice",
                "password": "demo",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert logged_in.status_code == 302, logged_in.text
        page = browser.get("/password/")
        assert page.status_code == 200
        changed = browser.post(
            "/password/",
            data={
                "current_password": "demo",
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert changed.status_code == 302, changed.text
        assert changed.headers["location"] == "/password/?changed=1"

        assert _closed_with(socket) == 4001
        # This browser is still logged in.
        assert browser.get("/projects").status_code == 200
