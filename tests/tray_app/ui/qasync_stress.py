"""A tight WebSocket send/receive loop on qasync's loop, run as its own process by
test_qt_runtime.py (an interpreter abort must fail that test, not kill pytest).

Prints ``ok <n>`` after n round trips through a real websockets server on port 0."""

from __future__ import annotations

import asyncio
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtWidgets import QApplication
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def main(rounds: int) -> int:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as client:
            done = 0
            for n in range(rounds):
                await client.send(f"frame {n}")
                assert await client.recv() == f"frame {n}"
                done += 1
    return done


if __name__ == "__main__":
    rounds = int(sys.argv[1])
    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        done = loop.run_until_complete(main(rounds))
    print(f"ok {done}", flush=True)
