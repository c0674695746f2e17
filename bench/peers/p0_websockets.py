"""Peer P0, the lower bound: a raw ``websockets`` server, nothing else.

It keeps its open connections in a set and sends each notification with
``websockets.broadcast()``: no authentication, no database, no groups. It
speaks just enough of the product's protocol for the benchmark's ``Fleet``:
``{"type": "hello"}`` when a socket is live, then
``{"type": "notification_created", "payload": {"title": ...}}`` per broadcast.

HTTP on the same port (answered in ``process_request``, before any upgrade):
``GET /healthz`` and ``GET /publish?title=TEXT``, which broadcasts to every
open socket and answers with their number, so the load generator publishes
with one HTTP request here as it does against the product.

Run: ``python -m bench.peers.p0_websockets --port PORT``. Like the product it
pings every 10 s with a 10 s timeout and runs uncompressed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

WS_PATH = "/ws/"
HELLO = json.dumps({"type": "hello"})


class Peer:
    """The set of live connections and the HTTP side that drives them."""

    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()

    async def handle(self, websocket: ServerConnection) -> None:
        await websocket.send(HELLO)
        self.connections.add(websocket)
        try:
            # Read (and drop) whatever the client sends, so pings and closes are handled.
            async for _ in websocket:
                pass
        finally:
            self.connections.discard(websocket)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == WS_PATH:
            return None
        if url.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if url.path == "/publish":
            title = parse_qs(url.query).get("title", [""])[0]
            frame = json.dumps({"type": "notification_created", "payload": {"title": title}})
            broadcast(self.connections, frame)
            return connection.respond(HTTPStatus.OK, f"{len(self.connections)}\n")
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")


async def serve_until_signal(port: int) -> None:
    peer = Peer()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(
        peer.handle,
        "127.0.0.1",
        port,
        process_request=peer.process_request,
        compression=None,
        ping_interval=10,
        ping_timeout=10,
        max_size=64 * 1024,
    ):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.p0_websockets")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    import uvloop

    # The product runs on uvloop too (uvicorn loop="auto").
    uvloop.run(serve_until_signal(options.port))


if __name__ == "__main__":
    main()
