"""uvicorn's httptools protocol, answering a fast single publish below ASGI (issue 14).

A single publish over HTTP cost the server ~0.3 ms of CPU on its event loop over
the service's own ~0.9 ms on the database thread. Bare uvicorn, a hello-world ASGI
app, costs ~0.15-0.2 ms a request on this machine; what came on top was the ASGI
layers a fast publish passes on the way to ``SharedThreadASGIHandler._fast_publish``
(a task per request, the proxy-headers middleware, Channels' router, ``receive``)
and a task and two futures per hop to the database thread.

Here, a request that the fast path will take (``POST /api/notifications/``, its
headers accepted by ``SharedThreadASGIHandler.fast_headers``, a body within
uvicorn's read buffer, no ``Expect: 100-continue``, no ``X-Forwarded-*`` header for
the proxy middleware to read) starts no ASGI task: its body is collected by the
protocol, handed to the publish lane with a callback, and the answer is written as
the request's own ``RequestResponseCycle.send`` writes it (status line, default
headers, access log, keep-alive and pipelining as uvicorn's own), in one write,
the learned headers' lines checked and joined once rather than per answer. Every request
the lane does not answer (an error of any kind) is then started as the ASGI task it
would have been, straight into the full stack, with its body still in the cycle:
it is answered exactly as before. Every other request is uvicorn's as before.

Each such publish has a log context of its own, as an ASGI task has
(backend/log_context.py): its request id (the proxy's ``X-Request-ID`` or a new one),
and the publisher's ids once the lane has authenticated it there; its access line,
and the full stack's task when the lane hands it on, run in it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

if TYPE_CHECKING:
    from backend.config.asgi import FastHeaders, Headers, Message
    from backend.notifications.publish_route import Answer

logger = logging.getLogger(__name__)
# Header names whose values change how uvicorn frames an answer: learned headers with
# any of them are sent through RequestResponseCycle.send, which acts on them.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
# id(learned headers) -> (those headers, their lines as uvicorn writes them, or None
# when they must go through RequestResponseCycle.send).
_blocks: dict[int, tuple[Headers, bytes | None]] = {}
_MAX_BLOCKS = 256


def _header_block(headers: Headers) -> bytes | None:
    """The learned headers' lines, checked once as uvicorn checks them per answer."""
    cached = _blocks.get(id(headers))
    if cached is not None and cached[0] is headers:
        return cached[1]
    lines: list[bytes] = []
    block: bytes | None = None
    for name, value in headers:
        name = name.lower()
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value) or name in _FRAMING:
            break
        lines.extend([name, b": ", value, b"\r\n"])
    else:
        block = b"".join(lines)
    if len(_blocks) >= _MAX_BLOCKS:
        _blocks.clear()
    _blocks[id(headers)] = (headers, block)
    return block


class PublishHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the fast single publish served without ASGI."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Imported here: the app (and so Django) is loaded by the time uvicorn makes a
        # protocol, not when the command line imports this module.
        from backend import log_context, metrics
        from backend.config import asgi
        from backend.notifications import publish_route

        self._asgi = asgi
        self._route = publish_route
        self._metrics = metrics
        self._log_context = log_context
        # The request whose body is being read for the lane: (cycle, app, headers).
        self._held: tuple[RequestResponseCycle, Any, FastHeaders] | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fast = self._fast(cycle, app)
        if fast is None:
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:
            self._held = (cycle, app, fast)  # on_message_complete goes on
        else:  # a pipelined request, read whole already
            self._publish(cycle, app, fast)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        held = self._held
        if held is not None and held[0] is self.cycle and len(held[0].body) > HIGH_WATER_LIMIT:
            # A body this large is read by the ASGI app (whose fast path takes it too).
            self._held = None
            super()._start_asgi_task(held[0], held[1])

    def on_message_complete(self) -> None:
        super().on_message_complete()
        held = self._held
        if held is not None and held[0] is self.cycle:
            self._held = None
            self._publish(*held)

    def _fast(self, cycle: RequestResponseCycle, app: Any) -> FastHeaders | None:
        """The request's fast-path headers, or None when it is the ASGI app's."""
        scope: Any = cycle.scope
        if (
            scope["method"] != "POST"
            or app is not self.app  # uvicorn's own 503 (limit_concurrency)
            or cycle.waiting_for_100_continue
            or scope["path"].removeprefix(scope["root_path"]) != self._route.PUBLISH_PATH
        ):
            return None
        handler = self._asgi.http_handler
        if handler.publish_lane is None:
            return None
        fast = handler.fast_headers(scope, forwarded=False)
        if fast is None or fast.headers is None:
            return None  # the ASGI app answers (and learns the headers)
        return fast

    def _publish(self, cycle: RequestResponseCycle, app: Any, fast: FastHeaders) -> None:
        asgi = self._asgi
        handler = asgi.http_handler
        lane = handler.publish_lane
        # _fast said so:
        assert lane is not None
        assert fast.headers is not None
        if cycle.disconnected:
            return
        if len(cycle.body) > asgi.body_limit():
            super()._start_asgi_task(cycle, app)  # the full stack's 413
            return
        # This request's log context (no ASGI task makes one for it).
        context = contextvars.Context()
        scope: Any = cycle.scope
        context.run(self._log_context.start_request, scope)
        if lane.full():
            self._metrics.publish_answered("single", 503, 0.0)
            busy = asgi.busy_headers(fast.headers)
            context.run(self._answer, cycle, 503, asgi.BUSY_BODY, busy)
            return
        headers = fast.headers
        started = time.perf_counter()

        def answered(answer: Answer | None) -> None:
            # The database thread is done with ``context`` by now: the lane calls this
            # on the loop after the request's write returned.
            if answer is None:
                # The full stack answers it, as the ASGI path hands it on; the body
                # is still in the cycle for its receive(). Its task copies ``context``.
                context.run(
                    super(PublishHttpProtocol, self)._start_asgi_task, cycle, handler.handle
                )
                return
            self._metrics.publish_answered("single", answer.status, time.perf_counter() - started)
            context.run(self._answer, cycle, answer.status, answer.body, headers)

        lane.post(self._route.Request(fast.authorization, bytes(cycle.body), context), answered)

    def _answer(
        self, cycle: RequestResponseCycle, status: int, body: bytes, headers: Headers
    ) -> None:
        """Write a fast publish's answer as ``RequestResponseCycle.send`` writes the two
        messages of ``asgi.answer_messages`` (the same bytes, in one write), with the
        learned headers' lines checked once rather than per answer."""
        block = _header_block(headers)
        if block is None or cycle.flow.write_paused or cycle.disconnected:
            self._send(cycle, self._asgi.answer_messages(status, body, headers))
            return
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        scope: Any = cycle.scope
        if cycle.access_log:
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:
            content.extend([name.lower(), b": ", value, b"\r\n"])
        content.append(block)
        content.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def _send(self, cycle: RequestResponseCycle, messages: Sequence[Message]) -> None:
        """``messages`` through the cycle's own ``send``, now: it only waits while the
        transport's writing is paused, and then the rest goes in a task."""
        for index, message in enumerate(messages):
            if cycle.flow.write_paused and not cycle.disconnected:
                task = self.loop.create_task(_send_all(cycle, messages[index:]))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
            try:
                _run_now(cycle.send(message))  # type: ignore[arg-type]
            except Exception:  # as uvicorn's run_asgi does with a failed send
                logger.exception("a publish's answer could not be written")
                self.transport.close()
                return


def _run_now(step: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that does not wait to its end, here."""
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("uvicorn's send waited although writing was not paused")


async def _send_all(cycle: RequestResponseCycle, messages: Sequence[Message]) -> None:
    for message in messages:
        await cycle.send(message)  # type: ignore[arg-type]
