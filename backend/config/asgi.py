"""The ASGI application: HTTP (Django), the WebSocket (Channels), and lifespan.

Lifespan starts this process's hub (doorbell listener, presence heartbeats,
token sweep) before the first connection and says goodbye to presence on
shutdown, so other processes see this one's users leave at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import django
from channels.db import database_sync_to_async
from channels.routing import ProtocolTypeRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402

from backend import health, log_context, metrics, sqlite_checkpoint  # noqa: E402
from backend.login_lane import LoginLane  # noqa: E402
from backend.notifications import inbox_log, publish_route, stream  # noqa: E402
from backend.notifications.hub import Hub  # noqa: E402
from backend.notifications.publish_lane import (  # noqa: E402
    BUSY_BODY,
    RETRY_AFTER_SECONDS,
    PublishLane,
)
from backend.notifications.routing import websocket_application  # noqa: E402
from backend.notifications.stream_protocol import STREAM_PATH  # noqa: E402

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Headers = list[tuple[bytes, bytes]]
# Hosts whose middleware headers are remembered; more distinct Host headers than this
# (a client making them up) go the full way.
_MAX_LEARNED_HOSTS = 64
# The most a fast publish reads into memory when no upload limit is configured.
_DEFAULT_BODY_LIMIT = 2_621_440
# Set by the fast path itself; whatever the middleware says for these is not reused.
_OWN_HEADERS = frozenset({b"content-type", b"content-length"})


def publish_lane_from_settings() -> PublishLane | None:
    """The process's publish lane, or None when TRAY_PUBLISH_FAST_PATH is off."""
    tray = settings.TRAY
    if not tray["PUBLISH_FAST_PATH"]:
        return None
    # auto is on: one commit for many publishes pays on PostgreSQL, whose commit waits
    # for the disk, and on SQLite since a publish of a batch takes no savepoint of its
    # own (docs/performance.md, "Group commit and backpressure").
    return PublishLane(
        queue=tray["PUBLISH_QUEUE"],
        batch=tray["PUBLISH_BATCH"],
        group_commit=tray["PUBLISH_GROUP_COMMIT"] != "off",
        settle_delay=inbox_log.settle_delay(),
        settle_rows=tray["INBOX_SETTLE_ROWS"] or None,
    )


class FastHeaders(NamedTuple):
    """What a fast publish needs from its request's headers."""

    authorization: bytes
    # The headers its answer gets (learned from the full stack); None until learned,
    # when the full stack answers it and its answer's headers are learned.
    headers: Headers | None
    # (scheme, Host): where the headers are learned for.
    key: tuple[str, bytes]


def body_limit() -> int:
    """The most a fast publish reads into memory (a larger body gets the full stack's 413)."""
    limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit or _DEFAULT_BODY_LIMIT


def answer_messages(status: int, body: bytes, headers: Headers) -> tuple[Message, Message]:
    """The ASGI messages of a fast publish's answer (``headers``: the learned ones)."""
    own = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return (
        {"type": "http.response.start", "status": status, "headers": headers + own},
        {"type": "http.response.body", "body": body},
    )


def busy_headers(headers: Headers) -> Headers:
    """A 503 answer's headers: the learned ones and Retry-After."""
    return [*headers, (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]


def _replay(chunks: list[bytes], receive: Receive, *, more: bool) -> Receive:
    """``receive`` with the body already read from it handed out again first."""
    pending = [b"".join(chunks)]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": more}
        return await receive()

    return replayed


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                # Before the hub opens the first connection this process serves with.
                sqlite_checkpoint.start_server_checkpointer()
                # This process's lane is what leaves Inbox rows pending; rows a crash
                # left pending are written before the first socket is served.
                inbox_log.trust_own_records()
                await database_sync_to_async(inbox_log.settle)()
                await Hub.current().start()
            except Exception as error:
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await Hub.current().stop()
            await database_sync_to_async(inbox_log.settle)()
            # Its last checkpoint waits for the disk: not on the event loop.
            await asyncio.to_thread(sqlite_checkpoint.stop_server_checkpointer)
            await send({"type": "lifespan.shutdown.complete"})
            return


class SharedThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler without a new thread per request.

    Django runs each request's synchronous part in a thread of its own
    (``ThreadSensitiveContext``), so every request started a thread, opened a
    database connection, and on SQLite queued on the write lock against the
    other requests' threads. Here every request's synchronous part runs in the
    one thread that Channels' consumers already share, with its persistent
    connection: a publish request cost 9.0 ms of server CPU before and 6.2 ms
    after (bench/publish_throughput.py), and writers never contend inside a
    process. Throughput scales out with processes, not threads.

    The whole middleware chain and the view then run synchronously in that
    thread, entered once per request. Django's async path would hop threads
    for every sync-only middleware (WhiteNoise) and twice for each
    ``MiddlewareMixin`` one (``process_request``/``process_response`` each go
    through ``sync_to_async``): about a dozen hops per API request, all for
    synchronous code.

    The exceptions: requests that check a password (backend/login_lane.py) run the
    same chain on the login lane's own bounded threads, so hashing never holds
    up the shared one; a single publish (``POST /api/notifications/``) that is
    well-formed and allowed skips the chain altogether (``_fast_publish``); and the
    HTTP stream (``/api/stream/``) is not Django's at all (backend/notifications/stream.py).
    """

    def __init__(self) -> None:
        super().__init__()
        synchronous = BaseHandler()
        synchronous.load_middleware(is_async=False)
        self._get_response = synchronous.get_response
        self._respond = sync_to_async(synchronous.get_response, thread_sensitive=True)
        self._login_lane = LoginLane(
            workers=settings.TRAY["LOGIN_WORKERS"],
            queue=settings.TRAY["LOGIN_QUEUE"],
            niceness=settings.TRAY["LOGIN_NICENESS"],
        )
        self._publish_lane = publish_lane_from_settings()
        # (scheme, Host) -> the headers the full stack puts on a publish's answer there.
        self._learned: dict[tuple[str, bytes], Headers] = {}

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if self._login_lane.takes(request):
            return await self._login_lane.respond(self._get_response, request)
        response: HttpResponseBase = await self._respond(request)
        return response

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        # Every log line of this request (its own task) carries its id.
        log_context.start_request(scope)
        if (
            self._publish_lane is not None
            and scope["method"] == "POST"
            and scope["path"].removeprefix(scope.get("root_path", "")) == publish_route.PUBLISH_PATH
        ):
            await self._fast_publish(self._publish_lane, scope, receive, send)
            return
        if scope["path"].removeprefix(scope.get("root_path", "")) == health.READY_PATH:
            # Readiness (database, Redis) on a pool of its own, never queued behind the
            # database thread (backend/health.py).
            await health.serve_ready(scope, receive, send)
            return
        if scope["path"].removeprefix(scope.get("root_path", "")) == STREAM_PATH:
            # The HTTP stream holds its answer open and takes the hub's deliveries.
            await stream.serve(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def _fast_publish(
        self, lane: PublishLane, scope: Scope, receive: Receive, send: Any
    ) -> None:
        """A single publish without the middleware chain, DRF or a thread of its own.

        Its authentication and body are checked by backend/notifications/publish_route.py
        and it is written by the publish lane. Any request the fast path does not
        answer itself (an error of any kind) goes through the full stack, which
        answers it exactly as before; the headers the middleware adds (security
        headers, the CSP) are learned from the full stack's first successful publish
        per host (a Host the full stack refuses never gets that far).
        """
        fast = self.fast_headers(scope)
        if fast is None:
            await self.handle(scope, receive, send)
            return
        if fast.headers is None:
            await self.handle(scope, receive, self._learning(fast.key, send))
            return
        authorization, headers = fast.authorization, fast.headers
        limit = body_limit()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                # The full stack answers a body over the limit (413), reading the rest.
                await self.handle(scope, _replay(chunks, receive, more=True), send)
                return
            if not message.get("more_body", False):
                break
        if lane.full():
            metrics.publish_answered("single", 503, 0.0)
            await self._send(send, 503, BUSY_BODY, busy_headers(headers))
            return
        started = time.perf_counter()
        # Written in a copy of this task's context (its request id); the publisher's ids
        # bound there while it was authenticated are this task's too from now on.
        request = publish_route.Request(authorization, b"".join(chunks), contextvars.copy_context())
        answer = await lane.submit(request)
        log_context.adopt(request.context)
        if answer is None:
            await self.handle(scope, _replay(chunks, receive, more=False), send)
            return
        metrics.publish_answered("single", answer.status, time.perf_counter() - started)
        await self._send(send, answer.status, answer.body, headers)

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, headers: Headers) -> None:
        start, answer = answer_messages(status, body, headers)
        await send(start)
        await send(answer)

    @property
    def publish_lane(self) -> PublishLane | None:
        return self._publish_lane

    def fast_headers(self, scope: Scope, *, forwarded: bool = True) -> FastHeaders | None:
        """Whether a publish request may go the fast way, decided from its headers
        (one header scan); None when the full stack must answer it (also for a
        browser page's request, with an ``Origin``), or when ``forwarded`` is false
        and it has an ``X-Forwarded-*`` header."""
        authorization: bytes | None = None
        authorizations = 0
        content_type: bytes | None = None
        host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                authorizations += 1
            elif name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"host" and host is None:
                host = value
            elif name == b"origin":
                # A page's request: its answer's CORS headers depend on the Origin, so the
                # full stack answers it, and nothing of its answer is learned.
                return None
            elif not forwarded and name.startswith(b"x-forwarded-"):
                return None
        if (
            authorization is None
            or authorizations != 1
            or not publish_route.takes(content_type, authorization)
        ):
            return None
        key = (str(scope.get("scheme", "http")), host or b"")
        return FastHeaders(authorization, self._learned.get(key), key)

    def _learning(self, key: tuple[str, bytes], send: Any) -> Any:
        """``send``, keeping the headers of a successful answer of the full stack for
        ``key`` (scheme, Host): the ones the middleware chain and DRF add, less those
        that belong to that one answer. Learned once per host, not built per response
        (django-csp alone rebuilt its policy for every response)."""

        async def learning_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 201):
                headers = [(name.lower(), value) for name, value in message["headers"]]
                if not any(name == b"set-cookie" for name, _ in headers) and (
                    len(self._learned) < _MAX_LEARNED_HOSTS
                ):
                    self._learned[key] = [h for h in headers if h[0] not in _OWN_HEADERS]
            await send(message)

        return learning_send


# The HTTP protocol (backend/config/publish_protocol.py) reaches the handler here.
http_handler = SharedThreadASGIHandler()

application = ProtocolTypeRouter(
    {
        "http": http_handler,
        "websocket": websocket_application,
        "lifespan": lifespan,
    }
)
