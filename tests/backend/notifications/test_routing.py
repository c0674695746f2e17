"""The WebSocket's paths (backend/notifications/routing.py): a handshake anywhere but
/ws/notifications/ is refused with HTTP 404, not a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from backend.notifications.routing import (
    KnownPathsOnly,
    routed,
    websocket_application,
    websocket_urlpatterns,
)
from tests.fixtures.services import RunningServer

UNKNOWN_PATHS = ["/ws/projects/1/tickets/", "/ws/notifications/3", "/", "/api/notifications/"]


def test_a_handshake_on_an_unknown_path_is_a_404_with_one_log_line(
    demo_server: RunningServer,
) -> None:
    base = "ws://" + demo_server.url.split("://", 1)[1]
    for path in UNKNOWN_PATHS:
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path, open_timeout=10)
        response = refused.value.response
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/json"
        error = json.loads(response.body)["error"]
        assert error["code"] == "not_found"
        assert "/ws/notifications/" in error["message"]
        assert demo_server.wait_for_output(
            f"refused a WebSocket on the unknown path {path!r} (404)"
        )
    # The socket's own path still opens, and nothing above was logged as a crash.
    access = demo_server.access_token("alice")
    with connect(f"{demo_server.ws_url}?token={access}", open_timeout=10) as websocket:
        assert json.loads(websocket.recv(timeout=10))["type"]
    output = demo_server.output()
    assert "Traceback" not in output
    assert "No route found" not in output
    assert "500" not in "".join(line for line in output.splitlines() if "rejected" in line)


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/ws/notifications/", "", True),
        ("ws/notifications/", "", True),
        ("/ws/notifications", "", False),
        ("/ws/notifications/3", "", False),
        ("/prefix/ws/notifications/", "/prefix", True),
        ("/ws/notifications/", "/prefix", False),
        ("", "", False),
    ],
)
def test_routed_matches_as_channels_routes(path: str, root_path: str, expected: bool) -> None:
    scope: dict[str, Any] = {"type": "websocket", "path": path, "root_path": root_path}

    assert routed(URLRouter(websocket_urlpatterns), scope) is expected


@pytest.mark.asyncio
async def test_without_the_http_response_extension_the_handshake_is_closed() -> None:
    # Channels' test communicator offers no websocket.http.response extension: the
    # refusal is then a close before accept (servers answer it with 403).
    communicator = WebsocketCommunicator(websocket_application, "/ws/elsewhere/")
    connected, _ = await communicator.connect()

    assert connected is False
    await communicator.wait()


@pytest.mark.asyncio
async def test_with_the_extension_the_answer_is_the_json_404() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws/elsewhere/",
        "extensions": {"websocket.http.response": {}},
    }
    await KnownPathsOnly(URLRouter(websocket_urlpatterns))(scope, receive, send)

    assert [message["type"] for message in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent[0]["status"] == 404
    body = sent[1]["body"]
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()
    assert json.loads(body)["error"]["code"] == "not_found"
