"""A Channels consumer driven by a socket's delivery state (socket_state.py).

The state decides; ``state_io.StateDelivery`` runs the catch-up reads and answers
the hub, whatever the transport; this class writes the queued frames as WebSocket
text frames and closes. A frame goes out at once when no earlier one waits:
uvicorn's send does not suspend while the transport takes data, so
``step_eagerly`` finishes it without a task, an event or a queue hand-off per
delivery; under uvicorn's websockets-sansio protocol a text frame skips the ASGI
send's layers altogether (wire.py). Only a send the transport makes wait gets a
task, and frames queue behind it (bounded by the state), so a slow client delays
only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from backend import metrics
from backend.notifications.eager import step_eagerly
from backend.notifications.state_io import StateDelivery
from backend.notifications.wire import TextWriter, text_writer

logger = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StateSocket(StateDelivery, AsyncWebsocketConsumer):  # type: ignore[misc]
    """A WebSocket consumer whose frames, catch-up and close follow ``self.state``.

    Subclasses call ``start_state()`` first in ``connect`` and ``stop_state()`` in
    ``disconnect``, set ``user_id`` (whose rows a catch-up reads), open the state once
    authenticated, and queue their answers with ``_answer`` (state_io.py).
    """

    user_id: int
    kind = "socket"
    # Set per connection in __call__; None (the class default) sends through self.send.
    _write_text: TextWriter | None = None

    # -- Channels' consumer, less a thread hop per message --------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Channels' ``AsyncConsumer.__call__`` for a socket with no channel layer.

        Channels' own runs ``close_old_connections`` through ``sync_to_async`` before
        every message it dispatches and again after a disconnect: a hop to the
        database thread and back for each of connect, every client frame and the
        disconnect, plus a task per message to wait on its receive. Every database
        call here goes through ``database_sync_to_async``, which closes old connections
        itself before and after, so those hops did nothing (B5: a reconnect storm).
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self._write_text = self._direct_writer(send)
        with contextlib.suppress(StopConsumer):
            while True:
                message = await receive()
                handler = getattr(self, get_handler_name(message), None)
                if handler is None:
                    raise ValueError(f"No handler for message type {message['type']}")
                await handler(message)

    def _direct_writer(self, send: Send) -> TextWriter | None:
        """The writer that puts a text frame on the wire without the ASGI layers
        (wire.py), or None: the frames go through ``self.send``.

        Only when ``send`` is exactly uvicorn's websockets-sansio ``send`` and this
        class's ``send`` is Channels' own (an override would be skipped otherwise);
        ``TRAY_WS_DIRECT_WRITE=0`` turns it off.
        """
        writer = None
        if settings.TRAY["WS_DIRECT_WRITE"] and type(self).send is AsyncWebsocketConsumer.send:
            writer = text_writer(send)
        logger.debug(
            "a socket's frames go %s",
            "through the ASGI send" if writer is None else "straight to the protocol",
        )
        return writer

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.disconnect(message["code"])
        raise StopConsumer

    # -- I/O for the state ----------------------------------------------------

    def _write(self) -> None:
        """Send queued frames while the transport takes them without waiting.

        A frame goes straight to the protocol when the direct writer takes it, else
        through the ASGI send (which waits for a paused transport: the frames behind
        it stay queued, in order, and count toward the queue's limit).
        """
        state = self.state
        pending = state.pending
        write_text = self._write_text
        while True:
            if not pending:
                # Drained: the unread count the notifications sent since moved it to.
                count = state.count_frame()
                if count is None:
                    return
                pending.append(count)
            frame = pending.popleft()
            try:
                if write_text is not None and write_text(frame):
                    metrics.frame_sent(frame)
                    continue
                rest = step_eagerly(self.send(text_data=frame))
            except Exception:
                self._gone()
                return
            metrics.frame_sent(frame)
            if rest is not None:
                self._writer = asyncio.ensure_future(self._write_later(rest))
                return

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=code)
