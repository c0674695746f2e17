"""The load generator's shared parts (bench/common.py): its keep-alive HTTP client."""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.common import HttpConnection, http_request, rss_kib, rss_parts_kib


def test_a_request_is_one_http_1_1_message_with_its_length() -> None:
    raw = http_request("POST", "/p", "h:1", {"Authorization": "Api-Key k"}, b'{"a":1}')
    assert raw == (
        b"POST /p HTTP/1.1\r\nHost: h:1\r\nAuthorization: Api-Key k\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    assert http_request("GET", "/q", "h", {}) == b"GET /q HTTP/1.1\r\nHost: h\r\n\r\n"


async def _count_connections(close: bool, requests: int) -> tuple[int, list[int]]:
    """``requests`` publishes through one ``HttpConnection`` to a real HTTP server on
    port 0 (asyncio streams) that answers 201, with ``Connection: close`` or without;
    how many TCP connections it accepted, and the statuses read."""
    accepted = 0
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                body = b'{"id":1}'
                extra = b"connection: close\r\n" if close else b""
                writer.write(
                    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                    + extra
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its end
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(serve(reader, writer)))
        await handlers[-1]

    closing: list[asyncio.StreamWriter] = []

    class Tracked(HttpConnection):
        def close(self) -> None:
            if self.writer is not None:
                closing.append(self.writer)
            super().close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = Tracked("127.0.0.1", port)
    request = http_request(
        "POST",
        "/api/notifications/",
        f"127.0.0.1:{port}",
        {"Content-Type": "application/json"},
        b"{}",
    )
    statuses = [(await connection.request(request))[0] for _ in range(requests)]
    connection.close()
    for writer in closing:
        await writer.wait_closed()
    await asyncio.gather(*handlers)
    server.close()
    await server.wait_closed()
    return accepted, statuses


@pytest.mark.parametrize(("close", "connections"), [(False, 1), (True, 5)])
def test_a_publisher_keeps_its_connection_unless_the_server_closes_it(
    close: bool, connections: int
) -> None:
    """The load generator's publishers reuse one keep-alive connection (the server's
    CPU per publish must not include a TCP connection of its own), and open a new one
    only after an answer that closed it."""
    accepted, statuses = asyncio.run(_count_connections(close, 5))
    assert statuses == [201] * 5
    assert accepted == connections


def test_the_resident_set_splits_into_its_parts() -> None:
    """B8's raw results split the RSS as the kernel does; the parts add up to it."""
    pid = os.getpid()
    parts = rss_parts_kib(pid)
    assert set(parts) == {"anon", "file", "shmem"}
    assert parts["anon"] > 0
    assert parts["file"] > 0
    # Read a moment apart: within a MiB of each other.
    assert abs(sum(parts.values()) - rss_kib(pid)) < 1024
