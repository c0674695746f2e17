"""TRAY_WS_COMPRESSION: what a client offering permessage-deflate gets from a real server.

Each server test starts ``tray-notifier-server serve`` as a subprocess with the
setting in its environment and connects with websockets' client, which offers
permessage-deflate as browsers do (``client_max_window_bits`` without a value).
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from backend.ws_compression import (
    COMPRESSION_CHOICES,
    LEGACY,
    SANSIO,
    SHIPPED_COMPRESSION,
    TUNED_EXTENSION,
    uvicorn_ws_options,
)
from tests.fixtures.services import REPO_ROOT, RunningServer, ServerFactory, server_env

# A notification body of a realistic size, repetitive enough that deflate shrinks it.
TITLE = "Release 4.2 is ready for review"
MESSAGE = (
    "bob moved the release candidate to staging and asks every reviewer to check the "
    "login flow and the new settings page before Friday. Reply in the project channel "
    "if anything blocks you."
)


@contextlib.contextmanager
def _open(server: RunningServer) -> Iterator[ClientConnection]:
    """alice's socket, once it got ``hello``."""
    with connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {server.access_token('alice')}"},
        compression="deflate",
        open_timeout=10,
    ) as websocket:
        assert json.loads(websocket.recv(timeout=10))["type"] == "hello"
        yield websocket


def _publish_and_receive(server: RunningServer, websocket: ClientConnection) -> dict[str, str]:
    response = httpx.post(
        server.url + "/api/notifications/",
        json={"audience": {"usernames": ["alice"]}, "title": TITLE, "message": MESSAGE},
        headers={"Authorization": f"Bearer {server.access_token('admin')}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    while True:
        frame = json.loads(websocket.recv(timeout=10))
        if frame["type"] == "notification_created":
            return dict(frame["payload"])


def _deflate(websocket: ClientConnection) -> PerMessageDeflate | None:
    """The client side of the negotiated extension, None when none was negotiated."""
    extensions = websocket.protocol.extensions
    assert len(extensions) <= 1
    if not extensions:
        return None
    assert isinstance(extensions[0], PerMessageDeflate)
    return extensions[0]


def test_off_negotiates_nothing_and_still_delivers(server_factory: ServerFactory):
    server = server_factory(demo=True, env={"TRAY_WS_COMPRESSION": "off"})
    with _open(server) as websocket:
        assert websocket.response is not None
        assert "Sec-WebSocket-Extensions" not in websocket.response.headers
        assert _deflate(websocket) is None
        payload = _publish_and_receive(server, websocket)
    assert (payload["title"], payload["message"]) == (TITLE, MESSAGE)


def test_default_negotiates_the_library_defaults(server_factory: ServerFactory):
    server = server_factory(demo=True, env={"TRAY_WS_COMPRESSION": "default"})
    with _open(server) as websocket:
        assert websocket.response is not None
        header = websocket.response.headers["Sec-WebSocket-Extensions"]
        # websockets' defaults as uvicorn enables them: 12-bit windows, context kept.
        assert header == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        deflate = _deflate(websocket)
        assert deflate is not None
        assert (deflate.remote_max_window_bits, deflate.local_max_window_bits) == (12, 12)
        assert not deflate.remote_no_context_takeover
        assert not deflate.local_no_context_takeover
        payload = _publish_and_receive(server, websocket)
    assert (payload["title"], payload["message"]) == (TITLE, MESSAGE)


def test_tuned_negotiates_small_windows_and_no_context_takeover(server_factory: ServerFactory):
    server = server_factory(demo=True, env={"TRAY_WS_COMPRESSION": "Tuned "})
    with _open(server) as websocket:
        assert websocket.response is not None
        header = websocket.response.headers["Sec-WebSocket-Extensions"]
        assert header == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=11; client_max_window_bits=11"
        )
        deflate = _deflate(websocket)
        assert deflate is not None
        # Seen from the client: "remote" is the server.
        assert (deflate.remote_max_window_bits, deflate.local_max_window_bits) == (11, 11)
        assert deflate.remote_no_context_takeover
        assert deflate.local_no_context_takeover
        payload = _publish_and_receive(server, websocket)
        # The client compresses what it sends too; the server must decode it.
        websocket.send(json.dumps({"type": "ping", "ref": "r1", "payload": {"pad": MESSAGE}}))
        while (answer := json.loads(websocket.recv(timeout=10)))["type"] != "pong":
            pass
    assert (payload["title"], payload["message"]) == (TITLE, MESSAGE)
    assert answer["ref"] == "r1"


def test_unset_is_the_shipped_setting(server_factory: ServerFactory):
    server = server_factory(demo=True, env={"TRAY_WS_COMPRESSION": None})
    with _open(server) as websocket:
        negotiated = _deflate(websocket) is not None
    assert negotiated == (SHIPPED_COMPRESSION != "off")


@pytest.mark.parametrize("value", ["gzip", "on", "1"])
def test_a_bad_value_stops_the_server_with_the_allowed_values(tmp_path, value: str):
    env = server_env(data_dir=tmp_path, extra={"TRAY_WS_COMPRESSION": value})
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "listening on" not in done.stdout
    assert f"TRAY_WS_COMPRESSION must be one of off, default, tuned, got {value!r}" in done.stderr
    assert "Traceback" not in done.stderr


# --- uvicorn_ws_options (pure) -----------------------------------------------------------


def test_options_on_a_uvicorn_with_the_sansio_implementation():
    available = {SANSIO: "x", LEGACY: "y"}
    assert uvicorn_ws_options("off", available) == (SANSIO, False)
    assert uvicorn_ws_options("default", available) == (SANSIO, True)
    ws, per_message_deflate = uvicorn_ws_options("tuned", available)
    assert not isinstance(ws, str)
    assert ws.__name__ == "TunedCompressionProtocol"
    # uvicorn's own extension stays off; the protocol class brings the tuned one.
    assert per_message_deflate is False


def test_options_on_an_older_uvicorn_fall_back_to_the_legacy_implementation(
    caplog: pytest.LogCaptureFixture,
):
    available = {LEGACY: "y"}
    assert uvicorn_ws_options("off", available) == (LEGACY, False)
    assert uvicorn_ws_options("default", available) == (LEGACY, True)
    with caplog.at_level(logging.WARNING, logger="backend.ws_compression"):
        assert uvicorn_ws_options("tuned", available) == (LEGACY, True)
    assert "TRAY_WS_COMPRESSION=tuned needs" in caplog.text


def test_options_refuse_an_unknown_value():
    with pytest.raises(ValueError, match="off, default, tuned"):
        uvicorn_ws_options("gzip", {SANSIO: "x"})
    assert COMPRESSION_CHOICES == ("off", "default", "tuned")


def test_a_tuned_socket_holds_no_zlib_state_between_messages():
    """The reason ``tuned`` costs no idle memory, on websockets' real sans-I/O protocols."""
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/ws/"), extensions=[ClientPerMessageDeflateFactory()]
    )
    server = ServerProtocol(extensions=[TUNED_EXTENSION])
    request = client.connect()
    client.send_request(request)
    server.receive_data(b"".join(client.data_to_send()))
    handshake = server.events_received()[0]
    assert isinstance(handshake, Request)
    response = server.accept(handshake)
    server.send_response(response)
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()

    deflate = server.extensions[0]
    assert isinstance(deflate, PerMessageDeflate)
    # No compressor or decompressor before the first message...
    assert not hasattr(deflate, "encoder")
    assert not hasattr(deflate, "decoder")
    server.send_text(MESSAGE.encode())
    client.send_text(MESSAGE.encode())
    server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(server.data_to_send()))
    # ...and none kept after one each way, while both messages arrived intact.
    assert not hasattr(deflate, "encoder")
    assert not hasattr(deflate, "decoder")
    for protocol in (server, client):
        frames = protocol.events_received()
        assert [frame.data for frame in frames if isinstance(frame, Frame)] == [MESSAGE.encode()]
