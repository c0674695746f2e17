"""Peer P0, the lower bound: a raw ``websockets`` server, nothing else.

It keeps its open connections in memory, in one set per group, and sends each
notification with ``websockets.broadcast()`` to one group's set: no
authentication, no database. It speaks just enough of the product's protocol
for the benchmark's clients: ``{"type": "hello"}`` when a socket is live, then
``{"type": "notification_created", "payload": {"title": ..., "message": ...}}``
per publish.

WebSocket: ``/ws/?user=uN&groups=project.3,role.r1``. The socket joins
``user.uN`` (when ``user`` is given), each listed group and ``everyone``.

HTTP on the same port (answered in ``process_request``, before any upgrade):
``GET /healthz`` and ``GET /publish?title=TEXT[&group=NAME][&body=TEXT]``,
which broadcasts to the group (default ``everyone``) and answers with the
number of its sockets, so the load generator publishes with one HTTP request
here as it does against the product. ``body`` becomes the payload's
``message`` (default empty), so frames can be as large as the product's.

Run: ``python -m bench.peers.p0_websockets --port PORT [--ping-interval S]``.
Like the product it pings every 10 s (``--ping-interval``, the benchmarks pass
``bench.common.PING_INTERVAL_SECONDS``) with a timeout of the same length and
runs uncompressed.
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
EVERYONE = "everyone"
HELLO = json.dumps({"type": "hello"})


def groups_from_query(query: str) -> list[str]:
    """The groups a socket joins: ``user.<user>``, the listed ``groups``, ``everyone``."""
    values = parse_qs(query)
    joined: list[str] = []
    user = values.get("user", [""])[0]
    if user:
        joined.append(f"user.{user}")
    for listed in values.get("groups", []):
        joined.extend(name for name in listed.split(",") if name)
    joined.append(EVERYONE)
    return list(dict.fromkeys(joined))


class Peer:
    """The live connections by group, and the HTTP side that drives them."""

    def __init__(self) -> None:
        self.groups: dict[str, set[ServerConnection]] = {EVERYONE: set()}

    async def handle(self, websocket: ServerConnection) -> None:
        path = websocket.request.path if websocket.request is not None else ""
        joined = groups_from_query(urlsplit(path).query)
        await websocket.send(HELLO)
        for name in joined:
            self.groups.setdefault(name, set()).add(websocket)
        try:
            # Read (and drop) whatever the client sends, so pings and closes are handled.
            async for _ in websocket:
                pass
        finally:
            for name in joined:
                members = self.groups.get(name)
                if members is not None:
                    members.discard(websocket)
                    if not members and name != EVERYONE:
                        del self.groups[name]

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == WS_PATH:
            return None
        if url.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if url.path == "/publish":
            query = parse_qs(url.query)
            title = query.get("title", [""])[0]
            body = query.get("body", [""])[0]
            members = self.groups.get(query.get("group", [EVERYONE])[0], set())
            frame = json.dumps(
                {"type": "notification_created", "payload": {"title": title, "message": body}}
            )
            broadcast(members, frame)
            return connection.respond(HTTPStatus.OK, f"{len(members)}\n")
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")


async def serve_until_signal(port: int, ping_interval: float = 10) -> None:
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
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
        max_size=64 * 1024,
        # uvicorn's (and so the product's) listen backlog; asyncio's default of 100
        # drops SYNs in a reconnect storm (B5) and adds seconds of retransmits.
        backlog=2048,
    ):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.p0_websockets")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=10.0)
    options = parser.parse_args()
    import uvloop

    # The product runs on uvloop too (uvicorn loop="auto").
    uvloop.run(serve_until_signal(options.port, options.ping_interval))


if __name__ == "__main__":
    main()
