"""``GET /api/stream/``: the socket's frames as Server-Sent Events, for networks that pass
HTTPS but break WebSockets.

An ASGI handler, not a Django view: the response stays open and takes the hub's
deliveries as a socket does. It authenticates as the socket does (a Bearer token, or
``?token=``, or the web companion's session cookie), reads the user, the session, the
inbox state and the first replay batch in one statement, and answers a refusal with
the REST API's error body. Then ``EventStream`` is a ``ClientSocket`` to the hub, run
by the socket's delivery state (``state_io.StateDelivery``): the same ``hello``,
replay, ``caught_up`` and live frames, queue limit and catch-up on missed doorbells,
and the same closes (token expiry, logout, deactivation, falling behind, a restart),
each told by a last ``closed`` event before the body ends. It counts as presence like a
socket. Client actions go over REST (docs/protocol.md, "HTTP fallback").

stream_protocol.py holds the pure parts (the event format, the request's cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from backend import db_faults, log_context, metrics
from backend.api import WWW_AUTHENTICATE
from backend.errors import BackendError, Forbidden, NotAuthenticated
from backend.notifications import (
    connections,
    live_presence,
    protocol,
    selectors,
    stream_protocol,
)
from backend.notifications.eager import step_eagerly
from backend.notifications.hub import Hub
from backend.notifications.state_io import StateDelivery
from backend.users.tokens import (
    ACCOUNT_DISABLED,
    SESSION_ENDED,
    SESSION_ENDED_CODE,
    AccessClaims,
    read_access_token_cached,
)
from backend.users.web_sessions import socket_claims

logger = logging.getLogger(__name__)
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Coroutine[Any, Any, None]]
Headers = list[tuple[bytes, bytes]]

_socket_opening = database_sync_to_async(metrics.timed("socket_opening", selectors.socket_opening))
_socket_claims = database_sync_to_async(socket_claims)

# The close code a stream's state is given when its client went away (RFC 6455's
# "going away"; nobody reads it).
_CLIENT_GONE: Final = 1001
# How long the last event may wait for a client that does not read before the
# connection is dropped without it.
_CLOSE_TIMEOUT: Final = 5.0
# Every answer, stream or refusal, is data for a program: never a page, never cached.
_COMMON: Final[Headers] = [
    (b"cache-control", b"no-cache, no-store, no-transform"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"same-origin"),
]
_STREAM: Final[Headers] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # nginx buffers a proxied answer unless told not to (its proxy_buffering); this
    # tells it per answer, so a default nginx configuration passes events at once.
    (b"x-accel-buffering", b"no"),
    *_COMMON,
]


_members_for = database_sync_to_async(live_presence.members_for)


class ServerRestarting(BackendError):
    """The server is stopping: try again (another process, or this one once back)."""

    code = "server_restart"
    status = 503


def refusal_for_close(code: int | None) -> BackendError:
    """How a stream closed while it was being opened is refused, by the close code its
    socket would have got."""
    if code == protocol.CLOSE_TOKEN_INVALID:
        return NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE)
    if code == protocol.CLOSE_FORBIDDEN:
        return Forbidden(ACCOUNT_DISABLED, code="account_disabled")
    return ServerRestarting("The server is restarting; try again in a moment.")


# The streams open in this process (``end_all``: the server is stopping).
def handshake_outcome(error: BackendError) -> str:
    """What a refused stream counts as in tray_handshakes_total (backend/metrics.py)."""
    if isinstance(error, NotAuthenticated):
        return metrics.TOKEN_INVALID
    if isinstance(error, Forbidden):
        return metrics.ACCOUNT_DISABLED
    return metrics.OTHER


_open: set[EventStream] = set()


def end_all(code: int = protocol.CLOSE_RESTART) -> None:
    """End every open stream with ``code`` (1012: the server is stopping). The server
    calls it before it waits for open responses to finish, as uvicorn closes every
    socket with 1012 itself."""
    for stream in list(_open):
        stream.close_with(code)


def answer(
    status: int, code: str, message: str, headers: Headers | None = None
) -> tuple[Message, Message]:
    """The ASGI messages of a refusal in the REST API's error shape."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    own = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [*(headers or []), *_COMMON, *own],
    }
    return start, {"type": "http.response.body", "body": body.encode()}


async def _refuse(send: Send, error: BackendError, headers: Headers) -> None:
    extra = list(headers)
    if error.status == 401:
        extra.append((b"www-authenticate", WWW_AUTHENTICATE.encode()))
    elif isinstance(error, db_faults.DatabaseUnavailable):
        extra.append((b"retry-after", b"%d" % error.retry_after))
    elif error.status == 503:
        extra.append((b"retry-after", b"1"))
    for message in answer(error.status, error.code, error.message, extra):
        await send(message)


def _refusal(error: BackendError | OperationalError | InterfaceError) -> BackendError:
    """What to answer before the stream opens: the error itself, or, for the database
    being away (full, read-only), the REST API's 503/507 with Retry-After."""
    if isinstance(error, BackendError):
        return error
    fault = db_faults.classify(error)
    assert fault is not None  # classify knows both of Django's database errors
    return fault


async def _claims(scope: Scope) -> AccessClaims:
    """Who the request is, as the socket's handshake decides it.

    Raises:
        NotAuthenticated: no token, a bad or expired one, or a session cookie that
            stands for nobody.
    """
    token = protocol.token_from_scope(scope)[0]
    if token is None:
        cookie = stream_protocol.session_cookie(
            scope, name=settings.SESSION_COOKIE_NAME, own_origins=settings.TRAY_PUBLIC_ORIGINS
        )
        if cookie is not None:
            claims: AccessClaims = await _socket_claims(cookie)
            return claims
    return read_access_token_cached(token)


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application of ``GET /api/stream/`` (backend/config/asgi.py routes it)."""
    method = scope["method"]
    cors = stream_protocol.cors_headers(scope, allowed_origins=settings.TRAY_ALLOWED_ORIGINS)
    if method == "OPTIONS":  # a browser's preflight, or a client asking what is allowed
        headers = [(b"allow", b"GET, OPTIONS"), *cors]
        if cors:
            headers += [
                (b"access-control-allow-methods", b"GET"),
                (b"access-control-allow-headers", b"authorization, last-event-id"),
                (b"access-control-max-age", b"600"),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers + _COMMON})
        await send({"type": "http.response.body", "body": b""})
        return
    if method != "GET":
        start, body = answer(
            405,
            "method_not_allowed",
            f"{method[:20]} is not allowed on {stream_protocol.STREAM_PATH}: it takes GET.",
            [(b"allow", b"GET, OPTIONS"), *cors],
        )
        await send(start)
        await send(body)
        return
    refusal = protocol.handshake_refusal(
        scope, allowed_hosts=settings.ALLOWED_HOSTS, allowed_origins=settings.TRAY_ALLOWED_ORIGINS
    )
    if refusal is not None:
        logger.info("%s", refusal.replace("a WebSocket", "an event stream"))
        metrics.handshake("stream", metrics.ORIGIN_REFUSED)
        message = "This server does not take streams for that host or from that origin."
        await _refuse(send, Forbidden(message, code="origin_refused"), [])
        return
    try:
        claims = await _claims(scope)
        request = stream_protocol.stream_request(scope)
    except (BackendError, OperationalError, InterfaceError) as error:
        answered = _refusal(error)
        metrics.handshake("stream", handshake_outcome(answered))
        await _refuse(send, answered, cors)
        return
    hub = Hub.current()
    await hub.start()
    stream = EventStream(
        send,
        hub=hub,
        user_id=claims.user_id,
        session_id=claims.session_id,
        token_expires_at=claims.expires_at.timestamp(),
    )
    log_context.bind_socket(stream.socket_id, claims.user_id)
    # No token let it in: the web companion's session cookie did.
    web_session = protocol.token_from_scope(scope)[0] is None
    stream.arrival = connections.arrival(scope, web_session=web_session)
    await stream.run(receive, request, headers=cors)


class EventStream(StateDelivery):
    """One open ``text/event-stream`` answer: a ``ClientSocket`` to the hub."""

    kind = "stream"
    # How and when it arrived (staff's "who is connected now").
    arrival: connections.Arrival | None = None

    def __init__(
        self,
        send: Send,
        *,
        hub: Hub,
        user_id: int,
        session_id: str,
        token_expires_at: float,
    ) -> None:
        self._send = send
        self.hub = hub
        self.user_id = user_id
        self.session_id = session_id
        self.socket_id = hub.new_socket_id()
        self.token_expires_at = token_expires_at
        self.watching: set[int] = set()
        self._started = False  # the answer's head is sent: refusals are too late
        self._ended = False  # the last event (and the body's end) is sent, or abandoned
        self._attention: dict[str, Any] = {}
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.start_state()

    # -- the answer's life --------------------------------------------------

    async def run(
        self, receive: Receive, request: stream_protocol.StreamRequest, *, headers: Headers
    ) -> None:
        """Open (or refuse), stream until the server ends it or the client leaves, and
        leave the hub and presence either way."""
        hub = self.hub
        # Registered before the state is read: a notification committed in between is
        # either in latest_seq (and the replay) or rings this stream after it.
        hub.register(self)
        _open.add(self)
        try:
            if await self._open(request, headers):
                await hub.socket_opened(self, attention=self._attention)
                await self._live(receive)
        finally:
            _open.discard(self)
            self.stop_state(_CLIENT_GONE)
            await hub.socket_closed(self)

    async def _open(self, request: stream_protocol.StreamRequest, headers: Headers) -> bool:
        """Read the opening, answer 200 and queue hello (and the replay): True; or
        answer the refusal: False."""
        try:
            opening = await _socket_opening(
                user_id=self.user_id, session_id=self.session_id, after_seq=request.after_seq,
                limit=self.state.batch,
            )  # fmt: skip
            snapshots: list[str] = []
            unavailable: live_presence.PresenceUnavailable | None = None
            for project_id in request.watch:
                if unavailable is not None:
                    # Checked and watched like the others, without asking Redis again.
                    await _members_for(user_id=self.user_id, project_id=project_id)
                    self.hub.watch(self, project_id)
                    continue
                try:
                    snapshot = await live_presence.presence_snapshot(
                        hub=self.hub, user_id=self.user_id, project_id=project_id, watcher=self
                    )
                except live_presence.PresenceUnavailable as error:
                    # Redis away: the stream opens anyway (notifications need no Redis),
                    # still watching; one error event says so, and once Redis is back
                    # the hub resends every member's state as presence_changed.
                    unavailable = error
                    continue
                snapshots.append(protocol.encode("presence_snapshot", snapshot))
            if unavailable is not None:
                snapshots = [protocol.encode_error(unavailable.code, unavailable.message)]
        except (BackendError, OperationalError, InterfaceError) as error:
            refusal = _refusal(error)
            metrics.handshake(self.kind, handshake_outcome(refusal))
            await _refuse(self._send, refusal, headers)
            return False
        if self.state.closed:  # ended while it opened (a logout, the server stopping)
            refusal = refusal_for_close(self.state.close_code)
            metrics.handshake(self.kind, handshake_outcome(refusal))
            await _refuse(self._send, refusal, headers)
            return False
        self._attention = opening.attention
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": [*headers, *_STREAM]}
        )
        await self._send(
            {"type": "http.response.body", "body": stream_protocol.PRELUDE, "more_body": True}
        )
        self._started = True
        metrics.handshake(self.kind, metrics.ACCEPTED)
        if self.state.closed:  # ended while the head went out
            await self._close_quietly(self.state.close_code or protocol.CLOSE_RESTART)
            return False
        hello = protocol.hello_frame(
            user=opening.user,
            unread_count=opening.state.unread_count,
            latest_seq=opening.state.latest_seq,
            token_expires_at=self.token_expires_at,
            max_frame_bytes=settings.TRAY["WS_MAX_FRAME_BYTES"],
            attention=opening.attention,
        )
        # Queued before hello is: open() puts hello first, and the replay after them.
        self.state.push(snapshots)
        self.state.open(
            latest_seq=opening.state.latest_seq,
            hello=hello,
            resume_after=request.after_seq,
            first_rows=opening.replay,
            unread_count=opening.state.unread_count,
        )
        self._pump()
        return True

    async def _live(self, receive: Receive) -> None:
        """Until the server ends the stream or the client leaves: a heartbeat comment
        every ``TRAY_STREAM_HEARTBEAT`` seconds (0 or less: none)."""
        heartbeat: float = settings.TRAY["STREAM_HEARTBEAT"]
        interval = heartbeat if heartbeat > 0 else None
        left = asyncio.ensure_future(_until_disconnect(receive))
        try:
            while not self._finished.done():
                await asyncio.wait(
                    (left, self._finished), timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                if left.done():
                    return
                if not self._finished.done():
                    self._heartbeat()
        finally:
            left.cancel()

    def _heartbeat(self) -> None:
        state = self.state
        if self._writer is None and state.ready and not state.closed:
            self._send_body(stream_protocol.HEARTBEAT)
            if state.closed:
                self._pump()

    # -- I/O for the state ----------------------------------------------------

    def _write(self) -> None:
        """Everything queued (and then the unread count) in one write of events."""
        state = self.state
        pending = state.pending
        frames = list(pending)
        pending.clear()
        count = state.count_frame()
        if count is not None:
            frames.append(count)
        if frames:
            self._send_body(stream_protocol.events(frames))
            metrics.frames_sent(frames)

    def _send_body(self, body: bytes) -> None:
        """Write ``body`` now, or in ``self._writer`` when the transport makes it wait."""
        message = {"type": "http.response.body", "body": body, "more_body": True}
        try:
            rest = step_eagerly(self._send(message))
        except Exception:
            self._gone()
            return
        if rest is not None:
            self._writer = asyncio.ensure_future(self._write_later(rest))

    async def _close_quietly(self, code: int) -> None:
        """The ``closed`` event, and the end of the body (once the head is out: before
        it, ``_open`` answers a refusal instead)."""
        if not self._started or self._ended:
            return
        self._ended = True
        last = stream_protocol.events([stream_protocol.closed_frame(code)])
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._send({"type": "http.response.body", "body": last, "more_body": False})
        except Exception:
            logger.info("a stream of user %s could not be told it ended", self.user_id)
            _drop_connection(self._send)
        finally:
            if not self._finished.done():
                self._finished.set_result(None)


async def _until_disconnect(receive: Receive) -> None:
    """Read the (empty) request body, then wait for the client to leave."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _drop_connection(send: Send) -> None:
    """Close the connection under a stalled answer (uvicorn's: its ``send`` is a
    method of the request's cycle, which has the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()
