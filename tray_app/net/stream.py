"""The HTTP stream (Server-Sent Events): the socket's frames for networks that break WebSockets.

``GET /api/stream/`` sends, one event per frame, what the socket would send
(docs/protocol.md, "HTTP fallback (Server-Sent Events)"). :func:`stream_connector`
opens it with httpx, through the same trust and proxy settings as the REST client
(:class:`~tray_app.net.transport.Transport`), and gives a connection shaped like the
socket's (:class:`tray_app.net.live.Connection`):

- ``recv()`` returns the next frame's JSON text, as the socket's does;
- the server's last event, ``closed``, raises the error its close code means on the
  socket: :class:`~tray_app.net.live.Closed` with ``close_code`` 4001 (refresh the token,
  reconnect), 1011/1012/1013 (reconnect later), or
  :class:`~tray_app.net.errors.AccountDisabled` for 4003;
- a body that ends without ``closed``, or that stays silent (not even a ``: ping``)
  for ``dead_after`` seconds, raises :class:`StreamDead`;
- ``send()`` raises :class:`NotOverHttp`: a stream takes no requests; their REST
  equivalents are in docs/protocol.md, "Client requests over REST".

Refusals before the stream starts map as the socket handshake's: 401 is ``Closed``
with 4001, 403 ``account_disabled`` is ``AccountDisabled``, another 403 is
``handshake_forbidden``, 503 is ``Closed`` with 1012.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from tray_app import __version__
from tray_app.net import protocol
from tray_app.net.errors import (
    AccountDisabled,
    NetError,
    NotOurServer,
    RequestRejected,
    ServerFailure,
    TlsFailure,
    describe_host,
    error_from_transport,
)
from tray_app.net.live import OPEN_TIMEOUT, Closed, Connection, Connector, HandshakeRefused
from tray_app.net.sse import Heartbeat, SseDecoder, SseTooLarge
from tray_app.net.transport import Transport

__all__ = [
    "DEAD_AFTER",
    "STREAM_PATH",
    "NotOverHttp",
    "StreamConnection",
    "StreamDead",
    "closed_error",
    "stream_connector",
    "stream_url",
]

logger = logging.getLogger(__name__)

STREAM_PATH: Final = "/api/stream/"
_SOCKET_PATH: Final = "/ws/notifications/"
# The server sends ": ping" every TRAY_STREAM_HEARTBEAT seconds (15 by default); the
# protocol asks clients to call a link dead after hearing nothing for twice that and
# some (30-35 s). One late heartbeat is no reason to reconnect; two missed ones are.
DEAD_AFTER: Final = 35.0
# The most of a refusal's body read to name its error code (a proxy's error page can
# be long, and a wrong 200 endless).
_REFUSAL_BODY_BYTES: Final = 64 * 1024
_EVENT_STREAM: Final = "text/event-stream"


class StreamDead(Closed):
    """The stream went silent for too long, or its body ended without ``closed``:
    the link is dead; reconnect with backoff and resume."""

    code = "link_dead"

    def __init__(self, message: str) -> None:
        super().__init__(message, None)


class NotOverHttp(NetError):
    """A client frame was sent on the HTTP stream, which carries server frames only.
    Requests go over REST (docs/protocol.md, "Client requests over REST")."""

    code = "not_over_http"
    user_message = "The app tried to send a request over the one-way live connection."


def stream_url(url: str) -> str:
    """The stream's address for a server address or its socket's address. Pure.

    ``ws(s)://host/ws/notifications/?after_seq=5`` becomes
    ``http(s)://host/api/stream/?after_seq=5`` (the query is kept), so the address
    :class:`~tray_app.net.live.LiveSession` builds for the socket serves both; an
    ``http(s)://host[/prefix]`` server address gets the stream's path appended.
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if path.endswith(_SOCKET_PATH):
        path = path.removesuffix(_SOCKET_PATH)
    elif path.endswith(STREAM_PATH):
        path = path.removesuffix(STREAM_PATH)
    path = path.rstrip("/") + STREAM_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def closed_error(payload: Any) -> NetError:
    """The error a ``closed`` event's payload means: what the socket's close with the
    same code means (docs/protocol.md, "Close codes"). Pure."""
    code = payload.get("code") if isinstance(payload, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        return StreamDead("the server ended the stream with a closed event without a code")
    reason = payload.get("reason")
    said = f" ({reason})" if isinstance(reason, str) and reason else ""
    if code == protocol.CLOSE_FORBIDDEN:
        return AccountDisabled(f"the server ended the stream with {code}{said}")
    return Closed(f"the server ended the stream with {code}{said}", code)


def _closed_payload(data: str) -> dict[str, Any] | None:
    """The payload of a ``closed`` frame, or None for any other frame.

    ``closed`` is the stream's own frame; protocol.parse_server_frame does not know it.
    """
    if '"closed"' not in data:
        return None  # every other frame, without decoding it twice
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("type") != "closed":
        return None
    payload = document.get("payload")
    return payload if isinstance(payload, dict) else {}


class StreamConnection:
    """One open stream, read like a socket (:class:`tray_app.net.live.Connection`).

    Args:
        response: the open ``200 text/event-stream`` answer (streamed, unread).
        dead_after: seconds without a byte (heartbeats included) after which the
            link counts as dead.
    """

    def __init__(self, response: httpx.Response, *, dead_after: float = DEAD_AFTER) -> None:
        self._response = response
        self._where = describe_host(str(response.request.url))
        self._dead_after = dead_after
        self._chunks = response.aiter_bytes()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decoder = SseDecoder()
        self._frames: collections.deque[str] = collections.deque()
        self._ended: NetError | None = None
        self._reading: asyncio.Future[bytes] | None = None
        self.heartbeats = 0  # comments heard, for diagnostics and tests
        # Set at each comment heard (clear it to wait for the next): an outside watchdog
        # or a test can follow the link's pulse without polling.
        self.heartbeat_heard = asyncio.Event()

    @property
    def last_event_id(self) -> str:
        """The seq of the last notification the stream sent (its event id), or ""."""
        return self._decoder.last_event_id

    @property
    def retry_ms(self) -> int | None:
        """The reconnect delay the server suggested (``retry:``), if it did."""
        return self._decoder.retry_ms

    async def recv(self) -> str:
        """The next frame's JSON text.

        Raises:
            Closed: the server ended the stream (``closed``, its ``close_code`` as on
                the socket); :class:`StreamDead` when the link died.
            AccountDisabled: the server ended the stream with 4003.
            NetError: the connection failed while reading.
        """
        while not self._frames:
            if self._ended is not None:
                raise self._ended
            await self._read_more()
        return self._frames.popleft()

    async def frames(self) -> AsyncIterator[protocol.ServerFrame]:
        """The parsed frames, until the stream ends (with the error :meth:`recv` raises).

        A malformed or unknown frame is logged and skipped, as the socket session does.
        """
        while True:
            text = await self.recv()
            try:
                yield protocol.parse_server_frame(text)
            except protocol.FrameError as error:
                logger.warning("skipped a server frame: %s", error)

    async def send(self, message: str) -> NoReturn:
        """Refused: the stream carries server frames only.

        Raises:
            NotOverHttp: always. Use the REST equivalent of the request.
        """
        raise NotOverHttp("a client frame cannot be sent over the HTTP stream; use REST")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Stop reading and drop the connection (``code`` and ``reason`` are the
        socket's arguments; an HTTP stream has nothing to send them with)."""
        if self._ended is None:
            self._ended = Closed("the client closed the stream", code)
        if self._reading is not None:
            self._reading.cancel()
        await self._response.aclose()

    async def _read_more(self) -> None:
        # The read runs as a task of its own so that close(), called from another task
        # (LiveSession.stop), can cancel it instead of pulling the response from under it.
        reading = asyncio.ensure_future(anext(self._chunks))
        self._reading = reading
        try:
            done, _ = await asyncio.wait({reading}, timeout=self._dead_after)
        finally:
            self._reading = None
            if not reading.done():
                reading.cancel()  # timed out, or our caller was cancelled
        if not done:
            self._ended = StreamDead(
                f"nothing from {self._where} for {self._dead_after:g} s: the link is dead"
            )
            await asyncio.wait({reading})  # let the cancelled read unwind first
            await self._response.aclose()
            return
        if reading.cancelled():
            self._ended = self._ended or Closed("the client closed the stream", None)
            return
        failure = reading.exception()
        if isinstance(failure, StopAsyncIteration):
            self._ended = StreamDead(f"{self._where} ended the stream without closing it")
            return
        if isinstance(failure, httpx.HTTPError):
            self._ended = error_from_transport(failure, url=str(self._response.request.url))
            return
        if isinstance(failure, httpx.StreamError):
            # The response was closed under the read (close() raced it).
            self._ended = self._ended or StreamDead(f"the stream from {self._where} was closed")
            return
        if failure is not None:
            raise failure
        chunk = reading.result()
        try:
            found = self._decoder.feed(self._utf8.decode(chunk))
        except SseTooLarge as error:
            self._ended = NotOurServer(f"{self._where} sent an oversized event: {error}")
            await self._response.aclose()
            return
        for item in found:
            if isinstance(item, Heartbeat):
                self.heartbeats += 1
                self.heartbeat_heard.set()
                continue
            closed = _closed_payload(item.data)
            if closed is not None:
                # The last event: frames before it are still delivered, then its error.
                self._ended = closed_error(closed)
                break
            self._frames.append(item.data)


def stream_connector(
    transport: Transport | None = None,
    *,
    dead_after: float = DEAD_AFTER,
    open_timeout: float = OPEN_TIMEOUT,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> Connector:
    """The HTTP stream as a :data:`tray_app.net.live.Connector`.

    Args:
        transport: the trust and proxy settings, the REST client's (the system's trust
            store and proxy when None). Read at every connection attempt.
        dead_after: seconds of silence (no byte, heartbeats included) that mean the
            link is dead.
        open_timeout: seconds to connect and get the answer's headers.
        http_transport: an httpx transport to use instead of the network (tests).

    The connector takes the socket's address (``ws(s)://.../ws/notifications/?after_seq=N``,
    see :func:`stream_url`) or the stream's, and the socket's headers
    (``Authorization: Bearer ...``), and yields a :class:`StreamConnection`.

    Raises (on entering):
        Closed: 401 (``close_code`` 4001: refresh, reopen) or 503 (1012: the server is
            restarting).
        AccountDisabled: 403 ``account_disabled``.
        HandshakeRefused: another 403 (``handshake_forbidden``: configuration), or
            404/405 (``stream_unavailable``: a server without the stream).
        RequestRejected: another 4xx, with the server's code (``invalid_cursor``...).
        ServerFailure: another 5xx.
        NotOurServer: a 200 that is no event stream, or a redirect.
        NetError: the connection could not be opened (TLS, proxy, unreachable).
    """
    settings = transport or Transport()

    @contextlib.asynccontextmanager
    async def connect(url: str, headers: dict[str, str]) -> AsyncIterator[Connection]:
        target = stream_url(url)
        proxy = settings.proxy_for(target)
        secure = target.startswith("https:")
        async with httpx.AsyncClient(
            transport=http_transport,
            # As in ApiClient._client: only https needs the trust settings; plain http
            # gets an empty context rather than httpx's certifi default.
            verify=settings.ssl_context() if secure else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
            proxy=proxy,
            trust_env=False,  # the proxy was resolved above
            # Reads are watched by StreamConnection (dead_after), heartbeats included.
            timeout=httpx.Timeout(open_timeout, read=None),
            follow_redirects=False,
            headers={"User-Agent": f"tray-notifier/{__version__}"},
        ) as client:
            request = client.build_request(
                "GET",
                target,
                headers={**headers, "Accept": _EVENT_STREAM, "Cache-Control": "no-cache"},
            )
            try:
                # httpx's read timeout is off (see above), so the wait for the answer's
                # headers is bounded here: a server that accepts and never answers.
                async with asyncio.timeout(open_timeout):
                    response = await client.send(request, stream=True)
            except (httpx.HTTPError, TimeoutError) as exc:
                error = error_from_transport(exc, url=target, proxy=proxy)
                if isinstance(error, TlsFailure):
                    error = await settings.explain(error, target)
                logger.warning("the HTTP stream could not be opened: %s", error)
                raise error from exc
            try:
                await _check_answer(response, within=open_timeout)
                yield StreamConnection(response, dead_after=dead_after)
            finally:
                await response.aclose()

    return connect


async def _check_answer(response: httpx.Response, *, within: float) -> None:
    """Raise the error a refusal means; return for a ``200 text/event-stream``.

    A refusal's body is read for ``within`` seconds at most."""
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    where = describe_host(str(response.request.url))
    if status == 200 and content_type.split(";")[0].strip().lower() == _EVENT_STREAM:
        return
    code, message = await _refusal(response, within=within)
    said = f" ({code})" if code else ""
    if status == 200:
        raise NotOurServer(
            f"{where} answered {STREAM_PATH} with {content_type or 'no content type'}, "
            "not an event stream"
        )
    if status == 401:
        error: NetError = Closed(f"HTTP 401 opening the stream{said}", protocol.CLOSE_TOKEN_INVALID)
    elif status == 403 and code == "account_disabled":
        error = AccountDisabled(message or "HTTP 403 opening the stream (account_disabled)")
    elif status == 403:
        error = HandshakeRefused(
            f"HTTP 403 opening the stream{said}",
            code="handshake_forbidden",
            user_message=(
                "The server refused the live connection (HTTP 403). A proxy or the server's "
                "allowed hosts may block it; ask your IT department."
            ),
        )
    elif status in (404, 405):
        error = HandshakeRefused(
            f"HTTP {status} for {STREAM_PATH}{said}: the server has no HTTP stream",
            code="stream_unavailable",
            user_message=(
                "This server does not offer the live connection over HTTP. Ask its "
                "administrator to update it."
            ),
        )
    elif status == 503 and code == "server_restart":
        error = Closed(f"HTTP 503 opening the stream{said}", protocol.CLOSE_RESTART)
    elif 300 <= status < 400:
        error = NotOurServer(f"{where} redirected {STREAM_PATH} (HTTP {status})")
    elif 400 <= status < 500:
        error = RequestRejected(
            f"HTTP {status} opening the stream{said}",
            status=status,
            code=code or None,
            user_message=message or None,
        )
    elif status >= 500:
        error = ServerFailure(f"HTTP {status} opening the stream{said}", status=status)
    else:
        error = NotOurServer(f"{where} answered {STREAM_PATH} with HTTP {status}")
    raise error


async def _refusal(response: httpx.Response, *, within: float) -> tuple[str, str]:
    """``(code, message)`` of the REST API's error body, or empty strings."""
    body = bytearray()
    # The status alone already says enough: a body that fails or dawdles only loses
    # the server's code and words.
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(within):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _REFUSAL_BODY_BYTES:
                    break
    try:
        document = json.loads(bytes(body[:_REFUSAL_BODY_BYTES]))
    except (ValueError, RecursionError):
        return "", ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else "",
        message if isinstance(message, str) else "",
    )
