"""The WebSocket at /ws/notifications/: authenticate, route, relay.

Thin by design: decisions live in services, selectors and protocol.py. What
is here is the per-socket delivery state that makes a socket gap-free:
``sent_seq`` is the highest seq this socket has been sent with nothing
missing below it, so a doorbell for ``sent_seq + 1`` goes straight out, an
older one is a duplicate, and a newer one means a doorbell was missed and the
socket catches up from the database. Every outgoing frame goes through one
bounded queue and one writer task, so a slow client delays only itself.

docs/protocol.md is the reference for every frame and close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from backend.errors import BackendError, Forbidden, InvalidInput, NotAuthenticated, NotFound
from backend.notifications import protocol, selectors, services
from backend.notifications.hub import Hub
from backend.users.tokens import authenticate_access_token, read_access_token, token_user

logger = logging.getLogger(__name__)


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
        self.sent_seq = 0
        self.hello_latest_seq = 0
        self._ready = False
        self._closed = False
        self._dirty = False
        self._resume_to: int | None = None
        self._catch_up_task: asyncio.Task[None] | None = None
        self._out: deque[str] = deque()
        self._out_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        tray = settings.TRAY
        self._queue_limit: int = tray["WS_SEND_QUEUE"]
        self._max_frame: int = tray["WS_MAX_FRAME_BYTES"]
        self._rate: float = tray["WS_RATE_PER_SECOND"]
        self._burst: float = float(tray["WS_RATE_BURST"])
        self._tokens = self._burst
        self._tokens_at = time.monotonic()

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
        self.user_id = claims.user_id
        self.session_id = claims.session_id
        self.socket_id = self.hub.new_socket_id()
        self.token_expires_at = claims.expires_at.timestamp()
        self._writer = asyncio.ensure_future(self._write_frames())
        # Registered before the state is read: a notification committed in between is
        # either counted in latest_seq or arrives as a doorbell after it. The user and
        # the state come in one query (B5: a reconnect storm costs one query per socket
        # here and one for its resume); a refused socket is unregistered by disconnect().
        self.hub.register(self)
        try:
            user = await database_sync_to_async(token_user)(
                self.user_id, session_id=self.session_id, users=selectors.users_with_inbox_state()
            )
        except Forbidden as error:
            await self._refuse(protocol.CLOSE_FORBIDDEN, error)
            return
        except NotAuthenticated as error:
            await self._refuse(protocol.CLOSE_TOKEN_INVALID, error)
            return
        state = selectors.annotated_inbox_state(user)
        self.hello_latest_seq = state.latest_seq
        self.sent_seq = state.latest_seq
        self._ready = True
        self._enqueue(
            [
                protocol.encode(
                    "hello",
                    {
                        "protocol": protocol.PROTOCOL_VERSION,
                        "user": {
                            "id": user.pk,
                            "username": user.username,
                            "first_name": user.first_name,
                            "last_name": user.last_name,
                        },
                        "unread_count": state.unread_count,
                        "latest_seq": state.latest_seq,
                        "token_expires_at": int(self.token_expires_at),
                        "max_frame_bytes": self._max_frame,
                    },
                )
            ]
        )
        if self._dirty:
            self.request_catch_up()
        await self.hub.socket_opened(self)

    async def _refuse(self, code: int, error: BackendError) -> None:
        await self.send(text_data=protocol.encode_error(error.code, error.message))
        await self.close(code=code, reason=error.code)

    async def disconnect(self, code: int) -> None:
        self._closed = True
        for task in (self._catch_up_task, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.user_id:
            await self.hub.socket_closed(self)

    # -- outgoing -----------------------------------------------------------

    def _enqueue(self, frames: list[str]) -> None:
        if self._closed:
            return
        # The bound is on the backlog, not the batch: one batch is itself bounded (a
        # bulk action answers at most MAX_IDS_PER_REQUEST frames) and must go whole.
        if len(self._out) >= self._queue_limit:
            logger.info("closing a socket of user %s that fell behind", self.user_id)
            self.close_with(protocol.CLOSE_TRY_AGAIN)
            return
        self._out.extend(frames)
        self._drained.clear()
        self._out_ready.set()

    async def _write_frames(self) -> None:
        while True:
            await self._out_ready.wait()
            while self._out:
                await self.send(text_data=self._out.popleft())
            self._out_ready.clear()
            self._drained.set()

    def close_with(self, code: int) -> None:
        """Close now. Pending frames are dropped (the database has them) and the writer
        is stopped even mid-send, so a stalled client cannot hold the close back."""
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.ensure_future(self._close_quietly(code))

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.close(code=code)

    def deliver_frames(self, frames: list[str]) -> None:
        self._enqueue(frames)

    def deliver_notification(self, seq: int, frame: str) -> None:
        if not self._ready or self._catch_up_task is not None:
            self._dirty = True
            return
        if seq <= self.sent_seq:
            return  # a duplicate doorbell
        if seq == self.sent_seq + 1:
            self.sent_seq = seq
            self._enqueue([frame])
        else:
            self.request_catch_up()  # a doorbell went missing: the database has it

    def request_catch_up(self) -> None:
        self._dirty = True
        if self._catch_up_task is None and self._ready and not self._closed:
            self._catch_up_task = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        """Send every row above ``sent_seq`` from the database, in seq order, in batches."""
        # A batch goes into the queue whole once it is at most half full, so it must fit
        # in a quarter of it: a bigger one (TRAY_WS_SEND_QUEUE set below TRAY_REPLAY_BATCH)
        # would close every resuming socket with 1013 and the client could never catch up.
        batch: int = min(settings.TRAY["REPLAY_BATCH"], max(1, self._queue_limit // 4))
        read_rows = database_sync_to_async(selectors.inbox_replay_after)
        replayed = 0
        # The replay covers (covered_from, sent_seq]: every row in that range goes out in this
        # run. caught_up says so, so that a client only lets through_seq move its cursor when
        # the range starts at or below it (a run started by a missed doorbell begins above a
        # client that is still resuming from further back).
        covered_from = self.sent_seq
        try:
            while not self._closed:
                if self._resume_to is not None:
                    self.sent_seq, self._resume_to = self._resume_to, None
                    covered_from = self.sent_seq
                self._dirty = False
                rows = await read_rows(user_id=self.user_id, after_seq=self.sent_seq, limit=batch)
                if self._resume_to is not None:
                    continue
                frames = [
                    protocol.encode("notification_created", row.payload)
                    for row in rows
                    if row.payload is not None
                ]
                if rows:
                    self.sent_seq = rows[-1].seq
                while len(self._out) > self._queue_limit // 2 and not self._closed:
                    await self._drained.wait()
                self._enqueue(frames)
                replayed += len(frames)
                if len(rows) < batch and not self._dirty:
                    break
            while len(self._out) > self._queue_limit // 2 and not self._closed:
                await self._drained.wait()
            self._enqueue(
                [
                    protocol.encode(
                        "caught_up",
                        {
                            "after_seq": covered_from,
                            "through_seq": self.sent_seq,
                            "replayed": replayed,
                        },
                    )
                ]
            )
        except Exception:
            logger.exception("catch-up failed for user %s", self.user_id)
            self.close_with(protocol.CLOSE_SERVER_ERROR)
        finally:
            self._catch_up_task = None

    # -- incoming -----------------------------------------------------------

    def _take_rate_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self._ready or self._closed:
            return
        if not self._take_rate_token():
            logger.info("closing a socket of user %s that sent too many frames", self.user_id)
            self.close_with(protocol.CLOSE_POLICY)
            return
        if text_data is None:
            self._enqueue(
                [protocol.encode_error("binary_not_supported", "Send JSON text frames only.")]
            )
            return
        if len(text_data) > self._max_frame or len(text_data.encode()) > self._max_frame:
            self.close_with(protocol.CLOSE_TOO_BIG)
            return
        try:
            frame = protocol.parse_client_frame(text_data)
        except protocol.ProtocolError as error:
            self._enqueue([protocol.encode_error(error.code, error.message, ref=error.ref)])
            return
        handler = getattr(self, f"_on_{frame.type}")
        try:
            await handler(frame)
        except (BackendError, protocol.ProtocolError) as error:
            self._enqueue([protocol.encode_error(error.code, error.message, ref=frame.ref)])
        except Exception:
            logger.exception("a %s request failed", frame.type)
            self._enqueue(
                [
                    protocol.encode_error(
                        "server_error", "The server could not do that; try again.", ref=frame.ref
                    )
                ]
            )

    def _ack(self, frame: protocol.ClientFrame, payload: dict[str, Any] | None = None) -> None:
        self._enqueue(
            [protocol.encode("ack", {"for": frame.type, **(payload or {})}, ref=frame.ref)]
        )

    async def _on_ping(self, frame: protocol.ClientFrame) -> None:
        self._enqueue(
            [
                protocol.encode(
                    "pong", frame.payload if len(str(frame.payload)) < 200 else {}, ref=frame.ref
                )
            ]
        )

    async def _on_resume(self, frame: protocol.ClientFrame) -> None:
        after = selectors.validate_seq(frame.payload.get("after_seq"), name="after_seq")
        # Every seq up to hello's latest_seq or the last one sent here exists, so a cursor
        # at or below that needs no query to be checked (B5: one query per resume).
        latest = max(self.hello_latest_seq, self.sent_seq)
        if after > latest:
            latest = await database_sync_to_async(selectors.inbox_latest_seq)(user_id=self.user_id)
        if after > latest:
            raise protocol.ProtocolError(
                "cursor_ahead",
                f"after_seq {after} is beyond the latest seq {latest}: the server's data was "
                "reset; drop the local cache and resume from 0.",
            )
        if latest - after > settings.TRAY["REPLAY_MAX"]:
            self.sent_seq = max(self.sent_seq, latest)
            self._enqueue(
                [
                    protocol.encode(
                        "resync_required",
                        {
                            "after_seq": after,
                            "latest_seq": latest,
                            "page_url": f"/api/inbox/?after_seq={after}&limit=200",
                        },
                        ref=frame.ref,
                    )
                ]
            )
            return
        if self._catch_up_task is not None:
            self._resume_to = after
            self._dirty = True
            return
        self.sent_seq = after
        self.request_catch_up()

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

    async def _on_mark_read(self, frame: protocol.ClientFrame) -> None:
        change = await database_sync_to_async(services.inbox_mark_read)(
            user_id=self.user_id, ids=frame.payload.get("ids")
        )
        self._ack(
            frame,
            {
                "changed": change.changed,
                "not_found": change.not_found,
                "unread_count": change.unread_count,
            },
        )

    async def _on_mark_unread(self, frame: protocol.ClientFrame) -> None:
        change = await database_sync_to_async(services.inbox_mark_unread)(
            user_id=self.user_id, ids=frame.payload.get("ids")
        )
        self._ack(
            frame,
            {
                "changed": change.changed,
                "not_found": change.not_found,
                "unread_count": change.unread_count,
            },
        )

    async def _on_delete(self, frame: protocol.ClientFrame) -> None:
        change = await database_sync_to_async(services.inbox_delete)(
            user_id=self.user_id, ids=frame.payload.get("ids")
        )
        self._ack(
            frame,
            {
                "changed": change.changed,
                "not_found": change.not_found,
                "unread_count": change.unread_count,
            },
        )

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
        self._enqueue(
            [
                protocol.encode(
                    "presence_snapshot",
                    {
                        "project_id": project_id,
                        "members": [{"user": m, **states[m["id"]].as_payload()} for m in members],
                    },
                    ref=frame.ref,
                )
            ]
        )

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
