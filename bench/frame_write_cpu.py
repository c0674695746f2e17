"""CPU of writing one text frame to a WebSocket: through the ASGI layers or directly.

In one process, uvicorn's websockets-sansio protocol serves a real socket on
127.0.0.1 whose client (a subprocess) reads and discards every frame. The event
loop's thread writes batches of a notification frame (~600 bytes) two ways,
alternating: Channels' ``AsyncWebsocketConsumer.send`` -> uvicorn's ``send``, run
by ``eager.step_eagerly`` as ``socket_io.StateSocket`` did before issue 14's direct
write, and ``wire.text_writer``'s function. Both include websockets' framing and
the ``send()`` system call; between batches the transport and the client drain,
so every write finds an empty buffer. Reported: the thread's CPU per frame.

Run: ``python -m bench.frame_write_cpu [--rounds N]`` (not pinned, not in the
suite; on a busy machine take the medians of a few runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.websockets.websockets_sansio_impl import (  # noqa: E402
    WebSocketsSansIOProtocol,
)
from uvicorn.server import ServerState  # noqa: E402

from backend.notifications.eager import step_eagerly  # noqa: E402
from backend.notifications.wire import text_writer  # noqa: E402

BATCH = 200
# docs/protocol.md's example notification_created frame.
FRAME = json.dumps(
    {
        "type": "notification_created",
        "payload": {
            "id": 981,
            "seq": 43,
            "is_read": False,
            "read_at": None,
            "title": "Task moved to Done",
            "message": "bob moved Fix login from In progress to Done in Mobile App",
            "event_type": "task_status_changed",
            "priority": "normal",
            "url": "/projects/1/tasks/7",
            "created_at": "2026-11-22T09:30:00.123456Z",
            "actor": {"id": 4, "username": "bob", "first_name": "Bob", "last_name": "Baker"},
            "project": {"id": 1, "title": "Mobile App"},
            "data": {"task_id": 7, "old_status": "in_progress", "new_status": "done"},
        },
    },
    separators=(",", ":"),
)
CLIENT = """
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=None, compression=None) as websocket:
    while True:
        websocket.recv()
"""


async def measure(rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per frame of each batch, by way of writing."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Any] = loop.create_future()
    finished = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set_result(send)
        await finished.wait()

    config = Config(
        app=app, ws="websockets-sansio", ws_ping_interval=None, lifespan="off", log_level="warning"
    )
    config.load()
    state = ServerState()
    server = await loop.create_server(
        lambda: WebSocketsSansIOProtocol(config, state, {}, _loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, f"ws://127.0.0.1:{port}/"
    )
    try:
        send = await accepted
        protocol = send.__self__
        consumer = AsyncWebsocketConsumer()
        consumer.base_send = send
        write_text = text_writer(send)
        assert write_text is not None

        def via_asgi() -> None:
            for _ in range(BATCH):
                assert step_eagerly(consumer.send(text_data=FRAME)) is None

        def direct() -> None:
            for _ in range(BATCH):
                assert write_text(FRAME)

        ways: list[tuple[str, Callable[[], None]]] = [("asgi", via_asgi), ("direct", direct)]
        results: dict[str, list[float]] = {name: [] for name, _ in ways}
        for round_ in range(rounds):
            for name, write in ways if round_ % 2 else ways[::-1]:
                await protocol.writable.wait()
                for _ in range(1000):  # the transport's buffer empties (at most a second)
                    if not protocol.transport.get_write_buffer_size():
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.005)  # the client empties the kernel's buffers
                started = time.thread_time()
                write()
                results[name].append((time.thread_time() - started) / BATCH * 1e6)
        finished.set()
        return results
    finally:
        client.kill()
        await client.wait()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds))
    print(
        json.dumps(
            {
                name: {
                    "median_us": round(statistics.median(values), 2),
                    "min_us": round(min(values), 2),
                    "batches": len(values),
                }
                for name, values in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
