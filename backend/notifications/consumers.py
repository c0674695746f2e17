"""The WebSocket at /ws/notifications/: authenticate, route, relay.

Thin by design: decisions live in services, selectors, protocol.py and the
socket's delivery state (socket_state.py: what to send, what to read, when to
close). What is here is the I/O: the handshake, database reads, and writing
the state's queued frames to the transport. A frame is written at once when
no earlier one is waiting (uvicorn's send does not block while the transport
takes data, so that costs no task switch); only a stalled transport gets a
task, so a slow client delays only itself.

docs/protocol.md is the reference for every frame and close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
from collections.abc import Coroutine, Generator
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from backend.errors import BackendError, Forbidden, InvalidInput, NotAuthenticated, NotFound
from backend.notifications import protocol, selectors, services
from backend.notifications.hub import Hub
from backend.notifications.socket_state import ReadRows, SocketState
from backend.users.tokens import authenticate_access_token, read_access_token

logger = logging.getLogger(__name__)

_CHANGES = {
    "mark_read": services.inbox_mark_read,
    "mark_unread": services.inbox_mark_unread,
    "delete": services.inbox_delete,
}


@types.coroutine
def _finish(step: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Await the rest of a coroutine that was stepped by hand and suspended on ``waiting``
    (Python 3.12's eager tasks do this; 3.11 has none)."""
    while True:
        try:
            value = yield waiting
        except BaseException as error:  # a cancellation goes into the send, as with await
            try:
                waiting = step.throw(error)
            except StopIteration:
                return
        else:
            try:
                waiting = step.send(value)
            except StopIteration:
                return


class NotificationConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """One client socket."""

    user_id: int
    session_id: str
    socket_id: str
    token_expires_at: float
    watching: set[int]

    async def connect(self) -> None:
        self.user_id = 0
        self.watching = set()
        tray = settings.TRAY
        self.state = SocketState(
            queue_limit=tray["WS_SEND_QUEUE"],
            replay_batch=tray["REPLAY_BATCH"],
            replay_max=tray["REPLAY_MAX"],
            rate=tray["WS_RATE_PER_SECOND"],
            burst=float(tray["WS_RATE_BURST"]),
            now=time.monotonic(),
        )
        self._out = self.state.pending
        self._max_frame: int = tray["WS_MAX_FRAME_BYTES"]
        self._writer: asyncio.Task[None] | None = None  # a send the transport made wait
        self._reader: asyncio.Task[None] | None = None  # a catch-up read
        self._closing = False

        host = protocol.host_from_scope(self.scope)
        if not protocol.host_allowed(host, allowed=settings.ALLOWED_HOSTS):
            # As Django refuses such an HTTP request: a page whose name was rebound to this
            # server (DNS rebinding) sends a matching Origin, so the origin check cannot.
            logger.info("refused a WebSocket for host %s", host[:100] if host else None)
            await self.close()  # before accept: HTTP 403
            return
        origin = protocol.origin_from_scope(self.scope)
        if not protocol.origin_allowed(origin, host=host, allowed=settings.TRAY_ALLOWED_ORIGINS):
            logger.info("refused a WebSocket from origin %s", origin[:100] if origin else None)
            await self.close()  # before accept: the browser sees HTTP 403
            return

        self.hub = Hub.current()
        await self.hub.start()
        await self.accept()
        raw_token, _ = protocol.token_from_scope(self.scope)
        try:
            claims = read_access_token(raw_token)
        except NotAuthenticated as error:
            await self._refuse(protocol.CLOSE_TOKEN_INVALID, error)
            return
        after, bad_cursor = None, None
        raw_after = protocol.after_seq_from_scope(self.scope)
        if raw_after is not None:
            try:
                after = selectors.validate_seq(raw_after, name="after_seq")
            except InvalidInput as error:  # answered after hello, as a bad resume frame
                bad_cursor = error
        self.user_id = claims.user_id
        self.session_id = claims.session_id
        self.socket_id = self.hub.new_socket_id()
        self.token_expires_at = claims.expires_at.timestamp()
        # Registered before the state is read: a notification committed in between is
        # either counted in latest_seq (and in the replay) or arrives as a doorbell after
        # it. One statement reads the user, the session, the state and the first replay
        # batch (B5: a reconnect storm); a refused socket is unregistered by disconnect().
        self.hub.register(self)
        try:
            opening = await database_sync_to_async(selectors.socket_opening)(
                user_id=self.user_id,
                session_id=self.session_id,
                after_seq=after,
                limit=self.state.batch,
            )
        except Forbidden as error:
            await self._refuse(protocol.CLOSE_FORBIDDEN, error)
            return
        except NotAuthenticated as error:
            await self._refuse(protocol.CLOSE_TOKEN_INVALID, error)
            return
        hello = {
            "protocol": protocol.PROTOCOL_VERSION,
            "user": opening.user,
            "unread_count": opening.state.unread_count,
            "latest_seq": opening.state.latest_seq,
            "token_expires_at": int(self.token_expires_at),
            "max_frame_bytes": self._max_frame,
        }
        self.state.open(
            latest_seq=opening.state.latest_seq,
            hello=protocol.encode("hello", hello),
            resume_after=after,
            first_rows=opening.replay,
        )
        if bad_cursor is not None:
            self.state.push_one(protocol.encode_error(bad_cursor.code, bad_cursor.message))
        self._pump()
        await self.hub.socket_opened(self)

    async def _refuse(self, code: int, error: BackendError) -> None:
        await self.send(text_data=protocol.encode_error(error.code, error.message))
        await self.close(code=code, reason=error.code)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        self.state.close(code)
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.user_id:
            await self.hub.socket_closed(self)

    # -- the interface the hub calls ------------------------------------------

    def deliver_notification(self, seq: int, frame: str) -> None:
        self.state.notification(seq, frame)
        self._pump()

    def deliver_frames(self, frames: list[str]) -> None:
        self.state.push(frames)
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
            logger.info("closing a socket of user %s with %s", self.user_id, state.close_code)
            for task in (self._reader, self._writer):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            self._closer = asyncio.ensure_future(self._close_quietly(state.close_code))

    def _write(self) -> None:
        """Send queued frames while the transport takes them without waiting."""
        pending = self.state.pending
        while pending:
            step = self.send(text_data=pending.popleft())
            try:
                waiting = step.send(None)
            except StopIteration:
                continue
            except Exception:
                logger.info("a socket of user %s went away mid-send", self.user_id)
                self.state.close(protocol.CLOSE_SERVER_ERROR)
                return
            self._writer = asyncio.ensure_future(self._write_later(step, waiting))
            return

    async def _write_later(self, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _finish(step, waiting)
        except Exception:
            logger.info("a socket of user %s went away mid-send", self.user_id)
            self.state.close(protocol.CLOSE_SERVER_ERROR)
        self._writer = None
        self._pump()

    async def _read(self, read: ReadRows) -> None:
        try:
            rows = await database_sync_to_async(selectors.inbox_replay_after)(
                user_id=self.user_id, after_seq=read.after_seq, limit=read.limit
            )
        except Exception:
            logger.exception("catch-up failed for user %s", self.user_id)
            self.state.read_failed()
        else:
            self.state.rows_read(read, rows)
        self._reader = None
        self._pump()

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=code)

    def _answer(self, frame: str) -> None:
        self.state.push_one(frame)
        self._pump()

    # -- incoming -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.state.ready or self.state.closed:
            return
        if not self.state.client_frame(time.monotonic()):
            logger.info("closing a socket of user %s that sent too many frames", self.user_id)
            self._pump()
            return
        if text_data is None:
            error = protocol.encode_error("binary_not_supported", "Send JSON text frames only.")
            self._answer(error)
            return
        if len(text_data) > self._max_frame or len(text_data.encode()) > self._max_frame:
            self.close_with(protocol.CLOSE_TOO_BIG)
            return
        try:
            frame = protocol.parse_client_frame(text_data)
        except protocol.ProtocolError as error:
            self._answer(protocol.encode_error(error.code, error.message, ref=error.ref))
            return
        handler = self._on_change if frame.type in _CHANGES else getattr(self, f"_on_{frame.type}")
        try:
            await handler(frame)
        except (BackendError, protocol.ProtocolError) as error:
            self._answer(protocol.encode_error(error.code, error.message, ref=frame.ref))
        except Exception:
            logger.exception("a %s request failed", frame.type)
            message = "The server could not do that; try again."
            self._answer(protocol.encode_error("server_error", message, ref=frame.ref))

    def _ack(self, frame: protocol.ClientFrame, payload: dict[str, Any] | None = None) -> None:
        self._answer(protocol.encode("ack", {"for": frame.type, **(payload or {})}, ref=frame.ref))

    async def _on_ping(self, frame: protocol.ClientFrame) -> None:
        echo = frame.payload if len(str(frame.payload)) < 200 else {}
        self._answer(protocol.encode("pong", echo, ref=frame.ref))

    async def _on_resume(self, frame: protocol.ClientFrame) -> None:
        after = selectors.validate_seq(frame.payload.get("after_seq"), name="after_seq")
        # Every seq up to hello's latest_seq or the last one sent here exists, so a cursor
        # at or below that needs no query to be checked (B5: one query per resume).
        latest = self.state.known_latest
        if after > latest:
            latest = await database_sync_to_async(selectors.inbox_latest_seq)(user_id=self.user_id)
        self.state.resume(after, latest=latest, ref=frame.ref)
        self._pump()

    async def _on_authenticate(self, frame: protocol.ClientFrame) -> None:
        raw = frame.payload.get("token")
        user, claims = await database_sync_to_async(authenticate_access_token)(
            raw if isinstance(raw, str) else None
        )
        if user.pk != self.user_id:
            raise Forbidden("That token belongs to another user.", code="wrong_user")
        # The socket now lives as long as this token's session (another device's, even).
        self.session_id = claims.session_id
        self.token_expires_at = claims.expires_at.timestamp()
        self._ack(frame, {"token_expires_at": int(self.token_expires_at)})

    async def _on_change(self, frame: protocol.ClientFrame) -> None:
        """mark_read, mark_unread, delete."""
        change = await database_sync_to_async(_CHANGES[frame.type])(
            user_id=self.user_id, ids=frame.payload.get("ids")
        )
        state = {"changed": change.changed, "not_found": change.not_found}
        self._ack(frame, {**state, "unread_count": change.unread_count})

    async def _on_mark_all_read(self, frame: protocol.ClientFrame) -> None:
        raw = frame.payload.get("up_to_seq")
        bound = None if raw is None else selectors.validate_seq(raw, name="up_to_seq")
        change = await database_sync_to_async(services.inbox_mark_all_read)(
            user_id=self.user_id, up_to_seq=bound
        )
        self._ack(frame, {"changed": change.changed, "unread_count": change.unread_count})

    def _project_id(self, frame: protocol.ClientFrame) -> int:
        value = frame.payload.get("project_id")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise InvalidInput("project_id must be a positive whole number", code="invalid_project")
        return value

    async def _on_subscribe_presence(self, frame: protocol.ClientFrame) -> None:
        project_id = self._project_id(frame)
        is_member = await database_sync_to_async(selectors.is_project_member)(
            user_id=self.user_id, project_id=project_id
        )
        if not is_member:
            raise NotFound(f"You are not a member of a project {project_id}.")
        members = await database_sync_to_async(selectors.project_members)(project_id=project_id)
        self.hub.watch(self, project_id)
        states = await self.hub.presence.states([m["id"] for m in members])
        snapshot = [{"user": m, **states[m["id"]].as_payload()} for m in members]
        payload = {"project_id": project_id, "members": snapshot}
        self._answer(protocol.encode("presence_snapshot", payload, ref=frame.ref))

    async def _on_unsubscribe_presence(self, frame: protocol.ClientFrame) -> None:
        project_id = self._project_id(frame)
        self.hub.unwatch(self, project_id)
        self._ack(frame, {"project_id": project_id})

    async def _on_set_status(self, frame: protocol.ClientFrame) -> None:
        status = frame.payload.get("status")
        if status not in protocol.STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(protocol.STATUSES)}", code="invalid_status"
            )
        await self.hub.presence.set_status(self.user_id, status)
        await self.hub.publish_presence(self.user_id)
        self._ack(frame, {"status": status})
