"""A client connection driven by its delivery state (socket_state.py), whatever carries it.

The state decides; ``StateDelivery`` does the I/O it asks for that does not depend on
the transport: it answers the hub (``events.ClientSocket``'s delivery methods), runs
the catch-up reads and starts the close. Writing the queued frames (``_write``) and
closing (``_close_quietly``) are the transport's: the WebSocket (socket_io.py) writes
text frames, the HTTP stream (stream.py) Server-Sent Events.

A frame goes out at once when no earlier one waits; only a send the transport makes
wait gets a task (``_write_later``), and frames queue behind it (bounded by the
state), so a slow client delays only itself.

The hub calls in from its own context (a delivery, another user's request), so what
is logged here about this connection carries its ids explicitly
(``log_context.about_socket``), and the tasks it starts run in a context of its own
(``log_context.socket_context``); none of it costs anything per delivered frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from backend import log_context, metrics
from backend.notifications import protocol, selectors
from backend.notifications.socket_state import ReadRows, SocketState
from backend.notifications.wire import TextWriter

logger = logging.getLogger(__name__)
# Made once, not per read (each wrapping inspects the function).
_inbox_replay_after = database_sync_to_async(
    metrics.timed("replay_read", selectors.inbox_replay_after)
)
# What an operator reads in the log for the closes the state decides on.
_CLOSE_REASONS = {
    protocol.CLOSE_TRY_AGAIN: " that fell behind",
    protocol.CLOSE_POLICY: " that sent too many frames",
    protocol.CLOSE_SERVER_ERROR: " after a server error",
}


class StateDelivery:
    """A client connection whose frames, catch-up and close follow ``self.state``.

    Subclasses call ``start_state()`` before anything reaches them and
    ``stop_state()`` once the client is gone, set ``user_id`` (whose rows a catch-up
    reads), open the state once authenticated, queue their answers with ``_answer``,
    and implement ``_write`` (send what ``state.pending`` holds, then the unread count
    ``state.count_frame()`` gives, without waiting: a send that must wait becomes
    ``self._writer``) and ``_close_quietly`` (the close itself).
    """

    user_id: int
    # The hub's id of this connection; set before the hub can call in.
    socket_id: str
    # What the log calls one of these ("socket", "stream").
    kind = "socket"
    # A writer that puts a text frame on the wire at once (wire.py); None: ``_write``.
    _write_text: TextWriter | None = None

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
        self._out = self.state.pending  # what is queued for this client (tests read it)
        self._writer: asyncio.Task[None] | None = None  # a send the transport made wait
        self._reader: asyncio.Task[None] | None = None  # a catch-up read
        self._closing = False

    def stop_state(self, code: int) -> None:
        """The client is gone: stop writing and reading."""
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
                    metrics.notification_sent(count is not None)
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
                    self._reader = self._start(self._read(read))
                elif not state.catching_up and state.close_code is None:
                    metrics.replay_finished(state.replayed)  # its caught_up is queued
            if not state.pending or self._writer is not None or not state.ready:
                return
            self._write()
        if not self._closing:
            self._closing = True
            metrics.server_closed(state.close_code)
            logger.info(
                "closing a %s of user %s%s (%s)",
                self.kind,
                self.user_id,
                _CLOSE_REASONS.get(state.close_code, ""),
                state.close_code,
                extra=self._about(),
            )
            self._cancel_tasks()
            self._closer = self._start(self._close_quietly(state.close_code))

    def _write(self) -> None:
        """Send the queued frames (and then the unread count) while the transport takes
        them without waiting; a send that must wait goes on in ``self._writer``."""
        raise NotImplementedError

    async def _close_quietly(self, code: int) -> None:
        """Close the transport with ``code``; never raises."""
        raise NotImplementedError

    async def _write_later(self, rest: Awaitable[None]) -> None:
        try:
            await rest
        except Exception:
            self._gone()
        self._writer = None
        self._pump()

    def _gone(self) -> None:
        logger.info(
            "a %s of user %s went away mid-send", self.kind, self.user_id, extra=self._about()
        )
        self.state.close(protocol.CLOSE_SERVER_ERROR)

    def _about(self) -> dict[str, object]:
        """``extra=`` for a line about this connection, whoever's code is running."""
        return log_context.about_socket(getattr(self, "socket_id", None), self.user_id)

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """``work`` as a task of this connection: its lines, and those of whatever it
        calls (the database thread, the transport), carry this connection's ids."""
        context = log_context.socket_context(getattr(self, "socket_id", None), self.user_id)
        return asyncio.get_running_loop().create_task(work, context=context)

    async def _read(self, read: ReadRows) -> None:
        try:
            rows = await _inbox_replay_after(
                user_id=self.user_id, after_seq=read.after_seq, limit=read.limit
            )
        except Exception:
            logger.exception("catch-up failed for user %s", self.user_id)  # in _start's context
            self.state.read_failed()
        else:
            self.state.rows_read(read, rows)
        self._reader = None
        self._pump()

    def _cancel_tasks(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def _answer(self, frame: str) -> None:
        self.state.push_one(frame)
        self._pump()
