"""The multi-process load generator's readers, for B3, B4 and B6 (issue 14).

One load generator process cannot read the frames of thousands of sockets as
fast as P0 sends them: with every socket in one Python event loop, the
generator, not P0, was the floor. So the sockets are spread over K reader
processes (``python -m bench.load_generator``, started by ``ReaderPool``),
client ``i`` in reader ``i % K``, while the coordinating process
(``bench.mixed_traffic``) publishes and does the accounting.

Each reader owns its sockets end to end (connect, ``hello``, read, stop
reading on request, close); frames are taken where websockets parses them
(``CountingConnection``), not through ``recv()``, and reported every
FLUSH_SECONDS as three arrays: the client, the notification number (parsed from the
title ``n<k>`` with a byte search) and ``time.perf_counter()`` when the
frame was read. On Linux ``perf_counter`` is ``CLOCK_MONOTONIC``, one clock
for every process of the machine, so the coordinator subtracts the instant
it started the publish request from the reader's receive time: a latency is
not delayed by the batching, only the accounting is.

Wire format, both directions over the reader's stdin and stdout: a 4-byte
length and a 1-byte kind, then the payload. Kind ``J``: a JSON object
(commands, replies, events); kind ``F``: frames, ``count`` (int32) then
``count`` int32 clients, ``count`` int32 notification numbers and ``count``
float64 receive times, native byte order (the same machine).

Commands (``{"command": ..., "id": N, ...}``, each answered with
``{"reply": N, ...}`` after every frame read before it was reported):

- ``open``: ``url``, ``connectors`` and ``clients``, a list of
  ``[client, token or null, query, slow]``; connects them (a slow client gets
  a 4 KiB receive buffer) and waits for each ``hello``.
  Reply: ``seconds``.
- ``gate``: ``open`` true or false: whether the slow clients read their
  sockets (``transport.pause_reading()``/``resume_reading()``).
- ``ports``: reply ``ports``, the local ports of the open slow sockets.
- ``flush``: reply ``frame_bytes`` (sizes of the first frames counted); like
  every reply, it comes after every frame read so far has been reported.
- ``close``: close every socket; reply ``codes``, client -> close code.

Events: ``{"closed": client, "code": code}`` when a socket closed by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from bench.common import REPO_ROOT, BenchError, cpu_seconds

HEADER = struct.Struct("=IB")
FLUSH_SECONDS = 0.02
# The slow clients' receive buffer: small, so the server's side fills within the window.
SLOW_RCVBUF = 4096
FRAME_SIZE_SAMPLES = 100


def title_index(frame: bytes) -> int | None:
    """The notification number in a ``notification_created`` frame titled ``n<k>``.

    A byte search, not a JSON parse: the load generator reads tens of thousands
    of frames a second, and the product and the peers put the title in the
    payload with and without spaces after the colon.
    """
    if frame.find(b"notification_created", 0, 48) < 0:
        return None
    key = frame.find(b'"title"')
    if key < 0:
        return None
    start = frame.find(b'"', key + 7)
    end = frame.find(b'"', start + 1)
    if start < 0 or end < 0 or frame[start + 1 : start + 2] != b"n":
        return None
    digits = frame[start + 2 : end]
    return int(digits) if digits.isdigit() else None


def encode(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind[0]) + payload


def encode_json(message: dict[str, Any]) -> bytes:
    return encode(b"J", json.dumps(message).encode())


def encode_frames(clients: array[int], indexes: array[int], times: array[float]) -> bytes:
    return encode(
        b"F",
        struct.pack("=i", len(clients)) + clients.tobytes() + indexes.tobytes() + times.tobytes(),
    )


def decode_frames(payload: bytes) -> tuple[array[int], array[int], array[float]]:
    (count,) = struct.unpack_from("=i", payload)
    clients, indexes, times = array("i"), array("i"), array("d")
    offset = 4
    clients.frombytes(payload[offset : offset + 4 * count])
    offset += 4 * count
    indexes.frombytes(payload[offset : offset + 4 * count])
    offset += 4 * count
    times.frombytes(payload[offset : offset + 8 * count])
    return clients, indexes, times


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One message (kind, payload); None at the end of the stream."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    length, kind = HEADER.unpack(head)
    return bytes([kind]), await reader.readexactly(length)


# --- the reader process ----------------------------------------------------------------


FrameSink = Callable[[int, bytes, float], None]


class CountingConnection(ClientConnection):
    """A client connection that hands each data frame to the reader as it is parsed.

    No ``recv()``: websockets' connection parses frames in ``data_received`` and
    would queue each message for a ``recv()`` to pick up, a task wake-up per
    frame; here the frame is timed and counted right where it is parsed, which
    costs the reader a fraction of the CPU. The first data frame is ``hello``
    (kept for ``open_one``); frames that come before the reader has adopted the
    connection wait in ``early``. Control frames (ping, close) go the usual way,
    so pongs and the closing handshake are websockets' own. Stopping a client
    is ``transport.pause_reading()``: nothing more is read from its socket, and
    TCP backs up into the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hello_frame: bytes | None = None
        self.hello_seen = asyncio.Event()
        self.early: list[tuple[bytes, float]] = []
        self.sink: FrameSink | None = None
        self.client = -1

    def process_event(self, event: Event) -> None:
        if not isinstance(event, Frame) or event.opcode not in (Opcode.TEXT, Opcode.BINARY):
            super().process_event(event)
            return
        now = time.perf_counter()
        data = event.data if isinstance(event.data, bytes) else bytes(event.data)
        if self.hello_frame is None:
            self.hello_frame = data
            self.hello_seen.set()
        elif self.sink is None:
            self.early.append((data, now))
        else:
            self.sink(self.client, data, now)

    def adopt(self, client: int, sink: FrameSink) -> None:
        self.client = client
        self.sink = sink
        for data, at in self.early:
            sink(client, data, at)
        self.early.clear()


class Reader:
    """One reader process's sockets and the frames they read since the last report."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.send = send
        self.sockets: dict[int, CountingConnection] = {}
        self.slow: set[int] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.reading = True
        self.codes: dict[int, int | None] = {}
        self.closing = False
        self.frame_bytes: list[int] = []
        self._reset()

    def _reset(self) -> None:
        self.clients: array[int] = array("i")
        self.indexes: array[int] = array("i")
        self.times: array[float] = array("d")

    def flush(self) -> None:
        if self.clients:
            self.send(encode_frames(self.clients, self.indexes, self.times))
            self._reset()

    def on_frame(self, client: int, frame: bytes, now: float) -> None:
        index = title_index(frame)
        if index is None:
            return
        if len(self.frame_bytes) < FRAME_SIZE_SAMPLES:
            self.frame_bytes.append(len(frame))
        self.clients.append(client)
        self.indexes.append(index)
        self.times.append(now)

    async def open_all(self, url: str, clients: list[list[Any]], connectors: int) -> float:
        pending = iter(clients)

        async def connector() -> None:
            for client, token, query, slow in pending:
                await self.open_one(url, int(client), token, str(query), bool(slow))

        started = time.perf_counter()
        await asyncio.gather(*(connector() for _ in range(max(1, connectors))))
        return time.perf_counter() - started

    async def open_one(
        self, url: str, client: int, token: str | None, query: str, slow: bool
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        sock: socket.socket | None = None
        if slow:
            # A small receive window: once this client stops reading, the server's
            # side of the connection fills within seconds, not minutes.
            parts = urlsplit(url)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        ws = await connect(
            url + query,
            additional_headers=headers,
            # Only the server pings: a stopped client must not answer them either.
            ping_interval=None,
            compression=None,
            open_timeout=120,
            close_timeout=5,
            sock=sock,
            create_connection=CountingConnection,
        )
        assert isinstance(ws, CountingConnection)
        try:
            await asyncio.wait_for(ws.hello_seen.wait(), timeout=60)
        except TimeoutError:
            await ws.close()
            raise BenchError(f"no hello within 60 s (closed: {ws.close_code})") from None
        first = json.loads(ws.hello_frame or b"{}")
        if first.get("type") != "hello":
            await ws.close()
            raise BenchError(f"expected hello, got {first!r}")
        self.sockets[client] = ws
        if slow:
            self.slow.add(client)
            if not self.reading:
                ws.transport.pause_reading()
        ws.adopt(client, self.on_frame)
        self.tasks.append(asyncio.ensure_future(self._watch(client, ws)))

    async def _watch(self, client: int, ws: CountingConnection) -> None:
        """Report the socket's close, once it happens, after the frames it read."""
        await ws.wait_closed()
        self.codes[client] = ws.close_code
        if not self.closing:
            self.flush()
            self.send(encode_json({"closed": client, "code": ws.close_code}))

    def set_reading(self, reading: bool) -> None:
        """Stop (False) or restart the slow clients' reading of their sockets."""
        if reading == self.reading:
            return
        self.reading = reading
        for client in self.slow:
            ws = self.sockets[client]
            if client in self.codes or ws.transport.is_closing():
                continue
            if reading:
                ws.transport.resume_reading()
            else:
                ws.transport.pause_reading()

    def slow_ports(self) -> list[int]:
        return [
            int(ws.local_address[1])
            for client, ws in self.sockets.items()
            if client in self.slow and client not in self.codes
        ]

    async def close(self) -> dict[str, int | None]:
        self.closing = True
        self.set_reading(True)
        await asyncio.gather(*(ws.close() for ws in self.sockets.values()), return_exceptions=True)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return {str(client): code for client, code in self.codes.items()}


async def reader_main() -> None:
    """Serve the coordinator's commands on stdin, report on stdout."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    stdout = asyncio.StreamWriter(transport, protocol, None, loop)
    reader = Reader(stdout.write)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            reader.flush()
            await stdout.drain()

    flushing = asyncio.ensure_future(flusher())
    try:
        while (message := await read_message(stdin)) is not None:
            command = json.loads(message[1])
            name, ident = command["command"], command["id"]
            reply: dict[str, Any] = {"reply": ident}
            try:
                if name == "open":
                    reply["seconds"] = await reader.open_all(
                        command["url"], command["clients"], int(command["connectors"])
                    )
                elif name == "gate":
                    reader.set_reading(bool(command["open"]))
                elif name == "ports":
                    reply["ports"] = reader.slow_ports()
                elif name == "close":
                    reply["codes"] = await reader.close()
                elif name == "flush":
                    reply["frame_bytes"] = reader.frame_bytes
                else:
                    raise BenchError(f"unknown command {name!r}")
            except Exception as error:
                reply["error"] = f"{type(error).__name__}: {error}"
            reader.flush()
            stdout.write(encode_json(reply))
            await stdout.drain()
            if name == "close":
                break
    finally:
        flushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
        with contextlib.suppress(Exception):
            await stdout.drain()


# --- the coordinator's side ------------------------------------------------------------

FramesHandler = Callable[["array[int]", "array[int]", "array[float]"], None]
ClosedHandler = Callable[[int, "int | None"], None]


class ReaderPool:
    """K reader processes and the coordinator's end of their pipes.

    Args:
        processes: K, how many reader processes.
        cpus: The CPUs they may run on (their affinity).
        on_frames: Called with each batch of (clients, notification numbers,
            receive times) as it arrives.
        on_closed: Called when a socket closed by itself (client, close code).
        log_dir: Where each reader's stderr goes.
    """

    def __init__(
        self,
        processes: int,
        cpus: set[int],
        on_frames: FramesHandler,
        on_closed: ClosedHandler,
        log_dir: Path,
    ) -> None:
        self.count = max(1, processes)
        self.cpus = cpus
        self.on_frames = on_frames
        self.on_closed = on_closed
        self.log_dir = log_dir
        self.processes: list[asyncio.subprocess.Process] = []
        self.pumps: list[asyncio.Task[None]] = []
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0

    def worker_of(self, client: int) -> int:
        return client % self.count

    async def start(self) -> None:
        cpus = self.cpus
        for number in range(self.count):
            with (self.log_dir / f"reader-{number}-{os.getpid()}.log").open("ab") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.load_generator",
                    cwd=REPO_ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    limit=2**26,
                    preexec_fn=lambda: os.sched_setaffinity(0, cpus),
                )
            self.processes.append(process)
            self.pumps.append(asyncio.ensure_future(self._pump(number, process)))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def cpu_seconds(self) -> list[float]:
        """Each reader's CPU time so far (0 for one that exited)."""
        seconds: list[float] = []
        for pid in self.pids:
            try:
                seconds.append(cpu_seconds(pid))
            except FileNotFoundError:
                seconds.append(0.0)
        return seconds

    async def _pump(self, number: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while (message := await read_message(process.stdout)) is not None:
            kind, payload = message
            if kind == b"F":
                self.on_frames(*decode_frames(payload))
                continue
            event = json.loads(payload)
            if "reply" in event:
                future = self.pending.pop(int(event["reply"]), None)
                if future is not None and not future.done():
                    future.set_result(event)
            elif "closed" in event:
                self.on_closed(int(event["closed"]), event["code"])
        error = BenchError(f"load generator reader {number} exited ({process.returncode})")
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(error)

    async def _ask(self, number: int, command: dict[str, Any]) -> dict[str, Any]:
        process = self.processes[number]
        assert process.stdin is not None
        self.next_id += 1
        ident = self.next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        process.stdin.write(encode_json({**command, "id": ident}))
        await process.stdin.drain()
        reply = await future
        if "error" in reply:
            raise BenchError(f"load generator reader {number}: {reply['error']}")
        return reply

    async def ask_all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(self._ask(number, command) for number in range(self.count)))
        )

    async def open(
        self, url: str, clients: Sequence[tuple[int, str | None, str, bool]], connectors: int
    ) -> float:
        """Connect ``clients`` (client, token, query, slow), each in its reader."""
        shares: list[list[list[Any]]] = [[] for _ in range(self.count)]
        for client, token, query, slow in clients:
            shares[self.worker_of(client)].append([client, token, query, slow])
        per_reader = max(1, connectors // self.count)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                self._ask(
                    number,
                    {"command": "open", "url": url, "clients": share, "connectors": per_reader},
                )
                for number, share in enumerate(shares)
            )
        )
        return time.perf_counter() - started

    async def flush(self) -> list[int]:
        """Have every reader report what it read so far; the frame sizes they sampled."""
        return [
            int(size)
            for reply in await self.ask_all({"command": "flush"})
            for size in reply["frame_bytes"]
        ]

    async def set_gate(self, open_: bool) -> None:
        await self.ask_all({"command": "gate", "open": open_})

    async def slow_ports(self) -> set[int]:
        return {
            int(port)
            for reply in await self.ask_all({"command": "ports"})
            for port in reply["ports"]
        }

    async def close(self) -> dict[int, int | None]:
        """Close every socket and stop the readers; the close code of every client."""
        codes: dict[int, int | None] = {}
        try:
            for reply in await self.ask_all({"command": "close"}):
                codes.update({int(client): code for client, code in reply["codes"].items()})
        finally:
            await self.stop()
        return codes

    async def stop(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await asyncio.gather(*self.pumps, return_exceptions=True)


def main() -> int:
    import uvloop

    uvloop.run(reader_main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
