"""Small real servers for the failure cases the real product server cannot produce.

Each is an asyncio TCP server on 127.0.0.1, port 0, answering every request
with a scripted raw HTTP response: an HTML page, a proxy's 407, a 500, nothing
at all, optionally over TLS with a certificate made for the test. They speak
just enough HTTP/1.1 for a client to send a whole request (request line,
headers, a Content-Length body) and record what arrived, so a test can check
what the client sent (method, target, headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

_MAX_HEAD = 64 * 1024


@dataclass
class ScriptedRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def http_response(
    status: int,
    body: bytes | str = b"",
    *,
    reason: str = "",
    content_type: str = "text/html; charset=utf-8",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    payload = body.encode() if isinstance(body, str) else body
    lines = [
        f"HTTP/1.1 {status} {reason or 'Scripted'}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# bytes: answer now; an awaitable: answer when it is done; None: never answer.
Responder = Callable[[ScriptedRequest], bytes | Awaitable[bytes] | None]


@dataclass
class ScriptedServer:
    """Answers each request with ``respond(request)``: bytes at once, an awaitable's
    bytes when it is done (a slow answer), or None to keep the connection open
    without answering (a server that hangs) until the server closes. ``silent``
    hangs before even reading (a TLS handshake to it never ends)."""

    respond: Responder
    ssl_context: ssl.SSLContext | None = None
    silent: bool = False  # accept connections, then neither read nor write
    requests: list[ScriptedRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        assert self._server is not None
        self._server.close()
        # Handlers still reading from a client that went silent would outlive the test.
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.silent:
                await self._closing.wait()
                return
            request = await _read_request(reader)
            if request is None:
                # Like nginx: whatever is not HTTP (a TLS ClientHello) gets a plain 400.
                writer.write(http_response(400, "not an HTTP request", reason="Bad Request"))
                await writer.drain()
                return
            self.requests.append(request)
            answer = self.respond(request)
            if answer is None:
                await self._closing.wait()
                return
            if not isinstance(answer, bytes):
                answer = await answer
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return  # the client gave up (timeouts, TLS refusals): that is the test's point
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> ScriptedRequest | None:
    """The request, or None when the bytes are not HTTP."""
    try:
        first = await reader.readexactly(1)
        if not first.isalpha():  # every HTTP method starts with a letter
            return None
        head = first + await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head[:_MAX_HEAD].decode("latin-1").split("\r\n")
    method, target, _version = [*lines[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return ScriptedRequest(method=method, target=target, headers=headers, body=body)
