"""A Channels consumer driven by a socket's delivery state (socket_state.py).

The state decides; this class does the I/O it asks for: it writes the queued
frames, runs the catch-up reads and closes. A frame goes out at once when no
earlier one waits: uvicorn's send does not suspend while the transport takes
data, so ``step_eagerly`` finishes it without a task, an event or a queue
hand-off per delivery; under uvicorn's websockets-sansio protocol a text frame
skips the ASGI send's layers altogether (wire.py). Only a send the transport
makes wait gets a task, and frames queue behind it (bounded by the state), so a
slow client delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from backend.notifications import protocol, selectors
from backend.notifications.eager import step_eagerly
from backend.notifications.socket_state import ReadRows, SocketState
from backend.notifications.wire import TextWriter, text_writer

logger = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Made once, not per read (each wrapping inspects the function).
_inbox_replay_after = database_sync_to_async(selectors.inbox_replay_after)
# What an operator reads in the log for the closes the state decides on.
_CLOSE_REASONS = {
    protocol.CLOSE_TRY_AGAIN: " that fell behind",
    protocol.CLOSE_POLICY: " that sent too many frames",
    protocol.CLOSE_SERVER_ERROR: " after a server error",
}


class StateSocket(AsyncWebsocketConsumer):  # type: ignore[misc]
    """A WebSocket consumer whose frames, catch-up and close follow ``self.state``.

    Subclasses call ``start_state()`` first in ``connect`` and ``stop_state()`` in
    ``disconnect``, set ``user_id`` (whose rows a catch-up reads), open the state once
    authenticated, and queue their answers with ``_answer``.
    """

    user_id: int
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

    def start_state(self) -> None:
        tray = settings.TRAY
        self.state = SocketState(
            queue_limit=tray["WS_SEND_QUEUE"],
            replay_batch=tray["REPLAY_BATCH"],
            replay_max=tray["REPLAY_MAX"],
            rate=tray["WS_RATE_PER_SECOND"],
            burst=float(tray["WS_RATE_BURST"]),
            now=time.monotonic(),
        )
        self._out = self.state.pending  # what is queued for this socket (tests read it)
        self._writer: asyncio.Task[None] | None = None  # a send the transport made wait
        self._reader: asyncio.Task[None] | None = None  # a catch-up read
        self._closing = False

    def stop_state(self, code: int) -> None:
        """The socket is gone: stop writing and reading."""
        self._closing = True
        self.state.close(code)
        self._cancel_tasks()

    # -- what the hub calls (hub.py relies on these names) --------------------

    def deliver_notification(self, seq: int, frame: str) -> None:
        state = self.state
        write_text = self._write_text
        if write_text is not None and self._writer is None and state.notification_now(seq):
            # The hot path of a broadcast, one call per socket: no queue, straight out,
            # the new unread count in the same write.
            count = state.count_sent(seq)
            try:
                if write_text(frame, count):
                    return
            except Exception:
                self._gone()
            else:
                state.push_one(frame)  # the transport cannot take it now: the send waits
                if count is not None:
                    state.push_one(protocol.unread_count_frame(count))
            self._pump()
            return
        if state.notification(seq, frame) and self._writer is None and state.ready:
            self._write()  # the hot path: straight to the transport
            if state.close_code is None:
                return
        self._pump()

    def deliver_frames(self, frames: list[str]) -> None:
        self.state.push(frames)
        self._pump()

    def deliver_read_state(
        self, frames: list[str], *, unread_count: int, latest_seq: int | None
    ) -> None:
        self.state.read_state(frames, unread=unread_count, latest_seq=latest_seq)
        self._pump()

    def close_with(self, code: int) -> None:
        """Close now. Pending frames are dropped (the database has them) and a stalled
        send is abandoned, so a stalled client cannot hold the close back."""
        self.state.close(code)
        self._pump()

    def request_catch_up(self) -> None:
        self.state.request_catch_up()
        self._pump()

    # -- I/O for the state ----------------------------------------------------

    def _pump(self) -> None:
        """Do what the state asks: read rows, write frames, or close."""
        state = self.state
        while state.close_code is None:
            if state.catching_up and self._reader is None:
                read = state.next_read()
                if read is not None:
                    self._reader = asyncio.ensure_future(self._read(read))
            if not state.pending or self._writer is not None or not state.ready:
                return
            self._write()
        if not self._closing:
            self._closing = True
            logger.info(
                "closing a socket of user %s%s (%s)",
                self.user_id,
                _CLOSE_REASONS.get(state.close_code, ""),
                state.close_code,
            )
            self._cancel_tasks()
            self._closer = asyncio.ensure_future(self._close_quietly(state.close_code))

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
                    continue
                rest = step_eagerly(self.send(text_data=frame))
            except Exception:
                self._gone()
                return
            if rest is not None:
                self._writer = asyncio.ensure_future(self._write_later(rest))
                return

    async def _write_later(self, rest: Awaitable[None]) -> None:
        try:
            await rest
        except Exception:
            self._gone()
        self._writer = None
        self._pump()

    def _gone(self) -> None:
        logger.info("a socket of user %s went away mid-send", self.user_id)
        self.state.close(protocol.CLOSE_SERVER_ERROR)

    async def _read(self, read: ReadRows) -> None:
        try:
            rows = await _inbox_replay_after(
                user_id=self.user_id, after_seq=read.after_seq, limit=read.limit
            )
        except Exception:
            logger.exception("catch-up failed for user %s", self.user_id)
            self.state.read_failed()
        else:
            self.state.rows_read(read, rows)
        self._reader = None
        self._pump()

    def _cancel_tasks(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=code)

    def _answer(self, frame: str) -> None:
        self.state.push_one(frame)
        self._pump()
