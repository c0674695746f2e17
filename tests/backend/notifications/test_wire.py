"""Text frames written straight to uvicorn's protocol (backend/notifications/wire.py).

Every test runs the real server as a subprocess, once with the direct write
(``TRAY_WS_DIRECT_WRITE=1``, the default) and once through the ASGI send
(``TRAY_WS_DIRECT_WRITE=0``, the fallback), and talks to it with websockets' client.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect

from backend.notifications import protocol
from backend.notifications.wire import text_frame_header, text_writer
from tests.fixtures.services import RunningServer, ServerFactory

# The consumer's log line (at DEBUG) saying which way a socket's frames go.
WAYS = {"1": "a socket's frames go straight to the protocol", "0": "through the ASGI send"}
# Long and repetitive, so that permessage-deflate has something to do.
MESSAGE = " ".join(
    ["bob moved the release candidate to staging; please check the login flow."] * 20
)


def _publish(server: RunningServer, admin: str, titles: list[str], message: str) -> None:
    response = httpx.post(
        server.url + "/api/notifications/batch/",
        json={
            "notifications": [
                {"audience": {"usernames": ["alice"]}, "title": title, "message": message}
                for title in titles
            ]
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == len(titles)


@contextlib.contextmanager
def _alice(server: RunningServer, **options: Any) -> Iterator[tuple[ClientConnection, int]]:
    """alice's socket (offering permessage-deflate, as browsers do) and her latest seq."""
    with connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {server.access_token('alice')}"},
        compression="deflate",
        open_timeout=10,
        **options,
    ) as websocket:
        hello = json.loads(websocket.recv(timeout=10))
        assert hello["type"] == "hello"
        yield websocket, int(hello["payload"]["latest_seq"])


def _delivered(
    server_factory: ServerFactory, direct: str, compression: str
) -> tuple[list[str], list[str]]:
    """The notification frames alice's socket got for 50 publishes (as received), and
    the extensions the server negotiated."""
    server = server_factory(
        demo=True,
        env={
            "TRAY_WS_DIRECT_WRITE": direct,
            "TRAY_WS_COMPRESSION": compression,
            "TRAY_LOG_LEVEL": "DEBUG",
        },
    )
    titles = [f"Frame {n}" for n in range(50)]
    with _alice(server) as (websocket, latest):
        assert server.wait_for_output(WAYS[direct]), server.output()
        assert websocket.response is not None
        extensions = websocket.response.headers.get_all("Sec-WebSocket-Extensions")
        _publish(server, server.access_token("admin"), titles, MESSAGE)
        frames: list[str] = []
        while len(frames) < len(titles):
            text = websocket.recv(timeout=10)
            assert isinstance(text, str)  # a text frame
            if json.loads(text)["type"] == "notification_created":
                frames.append(text)
    payloads = [json.loads(frame)["payload"] for frame in frames]
    assert [p["title"] for p in payloads] == titles
    assert [p["seq"] for p in payloads] == list(range(latest + 1, latest + 51))
    assert {p["message"] for p in payloads} == {MESSAGE}
    return frames, extensions


def _without_clock(frames: list[str]) -> list[str]:
    """The frames with their row ids, seqs and timestamps blanked: the second server
    runs on the first one's database (later rows), at another time."""
    blanked = []
    for frame in frames:
        frame = re.sub(
            r'^(\{"type":"notification_created","payload":\{"id":)\d+,"seq":\d+,', r"\1,", frame
        )
        blanked.append(re.sub(r'"created_at":"[^"]*"', '"created_at":""', frame))
    return blanked


@pytest.mark.parametrize("compression", ["off", "default", "tuned"])
def test_frames_arrive_identical_and_in_order_written_directly_or_through_asgi(
    server_factory: ServerFactory, compression: str
) -> None:
    direct, direct_extensions = _delivered(server_factory, "1", compression)
    through_asgi, asgi_extensions = _delivered(server_factory, "0", compression)
    assert _without_clock(direct) == _without_clock(through_asgi)
    assert direct_extensions == asgi_extensions
    # Compression still negotiated when on (websockets' client checked every frame's
    # deflate stream while decoding it above).
    assert bool(direct_extensions) == (compression != "off")
    if compression != "off":
        assert direct_extensions[0].startswith("permessage-deflate")


@pytest.mark.parametrize("direct", ["1", "0"])
def test_a_reader_that_stops_is_closed_with_1013_written_directly_or_not(
    server_factory: ServerFactory, direct: str
) -> None:
    """A client that stops reading fills the kernel's buffers and the transport's, the
    frames behind them queue up to TRAY_WS_SEND_QUEUE, and then the socket is closed
    with 1013; what it got before the close is in order with nothing missing."""
    server = server_factory(
        demo=True, env={"TRAY_WS_DIRECT_WRITE": direct, "TRAY_WS_SEND_QUEUE": "20"}
    )
    admin = server.access_token("admin")
    # A small receive buffer, and the client stops reading from the socket once it
    # holds a few messages nobody took (max_queue).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    with _alice(server, sock=sock, max_queue=2) as (websocket, latest):
        for batch in range(100):
            _publish(server, admin, [f"Batch {batch} item {n}" for n in range(100)], MESSAGE)
            if "that fell behind" in server.output():
                break
        assert server.wait_for_output(f"that fell behind ({protocol.CLOSE_TRY_AGAIN})")
        seqs: list[int] = []
        closed: ConnectionClosed | None = None
        while closed is None:
            try:
                frame = json.loads(websocket.recv(timeout=30))
            except ConnectionClosed as error:
                closed = error
            else:
                if frame["type"] == "notification_created":
                    seqs.append(frame["payload"]["seq"])
    assert closed.rcvd is not None
    assert closed.rcvd.code == protocol.CLOSE_TRY_AGAIN
    assert seqs == list(range(latest + 1, latest + 1 + len(seqs)))
    assert len(seqs) < (batch + 1) * 100  # it did fall behind


async def _asgi_send(message: dict[str, Any]) -> None:
    """An ASGI send that is not uvicorn's."""


def test_no_direct_writer_for_a_send_that_is_not_uvicorns_own() -> None:
    assert text_writer(_asgi_send) is None
    assert text_writer(object()) is None


def test_no_direct_writer_on_a_uvicorn_release_it_was_not_tested_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    # Only the attributes text_writer looks at: no server is needed to pick a writer.
    protocol = types.SimpleNamespace(conn=object(), writable=object(), transport=object())
    send = types.MethodType(WebSocketsSansIOProtocol.send, protocol)
    assert text_writer(send) is not None
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    assert text_writer(send) is None


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_frame_written_without_websockets_is_the_frame_websockets_writes(length: int) -> None:
    # Each length field's bounds (7 bits, 16, 64): the direct write's bytes on the wire.
    data = b"x" * length
    assert text_frame_header(length) + data == Frame(Opcode.TEXT, data).serialize(mask=False)


class _RecordingTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_the_direct_writer_puts_the_frame_websockets_writes_on_the_transport(
    length: int,
) -> None:
    # The writer builds the header inline (a call less per delivery): every length
    # field's bounds, through the function the consumer calls, on a protocol that is
    # open, handshaken and writable (only the attributes the writer reads).
    import asyncio
    import types

    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State

    writable = asyncio.Event()
    writable.set()
    conn = types.SimpleNamespace(
        state=State.OPEN, extensions=[], writes=[], expect_continuation_frame=False, debug=False
    )
    transport = _RecordingTransport()
    protocol = types.SimpleNamespace(
        conn=conn,
        writable=writable,
        transport=transport,
        disconnected=False,
        handshake_complete=True,
        initial_response=None,
        close_sent=False,
    )
    write = text_writer(types.MethodType(WebSocketsSansIOProtocol.send, protocol))
    assert write is not None
    text = "é" * (length // 2) + "x" * (length % 2)  # multi-byte: the length is in bytes
    assert write(text)
    data = text.encode()
    assert transport.written == [Frame(Opcode.TEXT, data).serialize(mask=False)]
    # With a second frame (the new unread count): both, in one write.
    count = '{"type":"unread_count","payload":{"unread_count":7}}'
    for _ in range(2):  # built, then from the cache
        assert write(text, 7)
        assert transport.written[1:] == [
            Frame(Opcode.TEXT, data).serialize(mask=False)
            + Frame(Opcode.TEXT, count.encode()).serialize(mask=False)
        ]
        del transport.written[1:]
    writable.clear()  # a paused transport: the ASGI send must wait for it instead
    assert not write(text)
    assert len(transport.written) == 1
