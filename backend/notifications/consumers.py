"""The WebSocket at /ws/notifications/: authenticate, route, relay.

Thin by design: decisions live in services, selectors, protocol.py and the
socket's delivery state (socket_state.py: what to send, what to read, when to
close), which socket_io.py runs against the transport and the database. What
is here is the handshake's authentication and the client's requests.

docs/protocol.md is the reference for every frame and close code.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework_simplejwt.exceptions import ExpiredTokenError

from backend import db_faults, log_context, metrics
from backend.errors import BackendError, Forbidden, InvalidInput, NotAuthenticated
from backend.notifications import connections, live_presence, protocol, selectors, services
from backend.notifications.hub import Hub
from backend.notifications.socket_io import StateSocket
from backend.users.selectors import user_projects
from backend.users.services import TokenPair, session_refresh
from backend.users.tokens import (
    ACCOUNT_DEACTIVATED,
    SESSION_ENDED,
    SESSION_ENDED_CODE,
    AccessClaims,
    RefreshClaims,
    authenticate_access_token,
    read_access_token_cached,
    read_refresh_token,
)
from backend.users.web_sessions import socket_claims

logger = logging.getLogger(__name__)

# Made once: wrapping a function per call cost more than a tenth of a connect's
# event-loop time (B5: a reconnect storm).
_socket_opening = database_sync_to_async(metrics.timed("socket_opening", selectors.socket_opening))
_socket_claims = database_sync_to_async(socket_claims)
_session_refresh = database_sync_to_async(session_refresh)
_user_projects = database_sync_to_async(user_projects)

# A handshake refused with a close code, as tray_handshakes_total counts it.
_OUTCOMES = {
    protocol.CLOSE_TOKEN_INVALID: metrics.TOKEN_INVALID,
    protocol.CLOSE_FORBIDDEN: metrics.ACCOUNT_DISABLED,
}

_CHANGES = {
    "mark_read": services.inbox_mark_read,
    "mark_unread": services.inbox_mark_unread,
    "delete": services.inbox_delete,
}


def _refresh_claims(raw: str | None) -> RefreshClaims:
    """Whose refresh token ``raw`` is and of which session, without the database.

    Raises:
        NotAuthenticated: no token (``token_missing``), or a malformed, forged,
            expired or non-refresh one (``token_invalid``, as a bad access token is
            answered on the socket; REST's ``token_not_valid`` is simplejwt's word).
    """
    if not raw:
        raise NotAuthenticated("No refresh token was sent.", code="token_missing")
    try:
        return read_refresh_token(raw)
    except (NotAuthenticated, ExpiredTokenError):
        raise NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE) from None


async def _rotated(raw: str) -> tuple[TokenPair, AccessClaims]:
    """``session_refresh`` of ``raw`` (its rules whole: a spent generation ends the
    session), and the new access token's claims.

    Raises:
        NotAuthenticated: the token was refused (``token_invalid``).
        Forbidden: its user is deactivated (``account_disabled``, as the access
            token's path says it).
    """
    try:
        pair = await _session_refresh(refresh=raw)
    except NotAuthenticated as error:
        if error.code == "user_inactive":
            raise Forbidden(ACCOUNT_DEACTIVATED, code="account_disabled") from None
        raise NotAuthenticated(error.message, code=SESSION_ENDED_CODE) from None
    return pair, read_access_token_cached(pair.access)


class NotificationConsumer(StateSocket):
    """One client socket; the hub calls the methods it inherits from ``StateSocket``."""

    user_id: int
    session_id: str
    socket_id: str
    token_expires_at: float
    watching: set[int]
    # How and when it arrived, once it said hello (staff's "who is connected now").
    arrival: connections.Arrival | None = None

    async def connect(self) -> None:
        self.user_id, self.watching, tray = 0, set(), settings.TRAY
        self.start_state()
        refusal = protocol.handshake_refusal(
            self.scope,
            allowed_hosts=settings.ALLOWED_HOSTS,
            allowed_origins=settings.TRAY_ALLOWED_ORIGINS,
        )
        if refusal is not None:
            logger.info("%s", refusal)
            metrics.handshake(self.kind, metrics.ORIGIN_REFUSED)
            await self.close()  # before accept: HTTP 403
            return
        self.hub = Hub.current()
        await self.hub.start()
        # Before accept: every log line of this socket carries its id, uvicorn's too.
        self.socket_id = self.hub.new_socket_id()
        log_context.bind_socket(self.socket_id)
        await self.accept()
        # A desktop's cold start: its refresh token, rotated below, so that it needs no
        # REST refresh first. Never the cookie's path, even when the token is empty.
        refresh = protocol.refresh_token_from_scope(self.scope)
        token, cookie = None, None
        if refresh is None:
            token = protocol.token_from_scope(self.scope)[0]
            if token is None:
                # The web companion's page: its session cookie, same-origin only.
                cookie = protocol.session_cookie_from_scope(
                    self.scope,
                    name=settings.SESSION_COOKIE_NAME,
                    own_origins=settings.TRAY_PUBLIC_ORIGINS,
                )
        claims: AccessClaims | RefreshClaims
        try:
            if refresh is not None:
                claims = _refresh_claims(refresh)
            elif cookie is not None:
                claims = await _socket_claims(cookie)
            else:
                claims = read_access_token_cached(token)
        except NotAuthenticated as error:
            await self._refuse(protocol.CLOSE_TOKEN_INVALID, error)
            return
        after, bad_cursor = None, None
        if (raw_after := protocol.after_seq_from_scope(self.scope)) is not None:
            try:
                after = selectors.validate_seq(raw_after, name="after_seq")
            except InvalidInput as error:  # answered after hello, as a bad resume frame is
                bad_cursor = protocol.encode_error(error.code, error.message)
        self.user_id, self.session_id = claims.user_id, claims.session_id
        log_context.bind_user(self.user_id)
        # A Refresh handshake's expiry is its new access token's, known once it has
        # rotated below; the hub's token sweep leaves it alone until then.
        self.token_expires_at = (
            claims.expires_at.timestamp() if isinstance(claims, AccessClaims) else math.inf
        )
        # Registered before the state is read: a notification committed in between is
        # either in latest_seq (and the replay) or rings this socket after it. One
        # statement reads the user, the session, the state and the first replay batch
        # (B5: a reconnect storm); a refused socket is unregistered by disconnect().
        self.hub.register(self)
        try:
            opening = await _socket_opening(
                user_id=self.user_id, session_id=self.session_id, after_seq=after,
                limit=self.state.batch,
            )  # fmt: skip
            tokens = None
            if refresh is not None:
                # The last database step: once the token has rotated nothing may fail, or
                # the client would lose the only pair that still works.
                pair, fresh = await _rotated(refresh)
                self.session_id = fresh.session_id
                self.token_expires_at = fresh.expires_at.timestamp()
                tokens = {"access": pair.access, "refresh": pair.refresh}
        except Forbidden as error:
            await self._refuse(protocol.CLOSE_FORBIDDEN, error)
            return
        except NotAuthenticated as error:
            await self._refuse(protocol.CLOSE_TOKEN_INVALID, error)
            return
        hello = protocol.hello_frame(
            user=opening.user,
            unread_count=opening.state.unread_count,
            latest_seq=opening.state.latest_seq,
            token_expires_at=self.token_expires_at,
            max_frame_bytes=tray["WS_MAX_FRAME_BYTES"],
            attention=opening.attention,
            tokens=tokens,  # credentials: see hello_frame on keeping them out of logs
        )
        self.state.open(
            latest_seq=opening.state.latest_seq,
            hello=hello,
            resume_after=after,
            first_rows=opening.replay,
            unread_count=opening.state.unread_count,
        )
        if bad_cursor is not None:
            self.state.push_one(bad_cursor)
        metrics.handshake(self.kind, metrics.ACCEPTED)
        # Stamped before the hello goes out: a client that has read its hello and opens
        # another connection must find this one listed as the earlier.
        self.arrival = connections.arrival(self.scope, web_session=cookie is not None)
        self._pump()
        await self.hub.socket_opened(self, attention=opening.attention)
        logger.debug("socket opened")

    async def _refuse(self, code: int, error: BackendError) -> None:
        metrics.handshake(self.kind, _OUTCOMES.get(code, metrics.OTHER))
        if self.state.closed:
            # The hub closed it meanwhile (its session ended: a spent refresh token that
            # the rotation just caught, a logout); that close already told the client.
            return
        # Closed here, once: a hub event about this socket arriving later sends nothing.
        self.stop_state(code)
        await self.send(text_data=protocol.encode_error(error.code, error.message))
        await self.close(code=code, reason=error.code)

    async def disconnect(self, code: int) -> None:
        logger.debug("socket closed (%s)", code)
        self.stop_state(code)
        if self.user_id:
            await self.hub.socket_closed(self)

    # -- incoming -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.state.ready or self.state.closed:
            return
        if not self.state.client_frame(time.monotonic()):
            self._pump()  # closes with 1008, and logs why
            return
        if text_data is None:
            self._answer(
                protocol.encode_error("binary_not_supported", "Send JSON text frames only.")
            )
            return
        limit = settings.TRAY["WS_MAX_FRAME_BYTES"]
        if len(text_data) > limit or len(text_data.encode()) > limit:
            self.close_with(protocol.CLOSE_TOO_BIG)
            return
        try:
            frame = protocol.parse_client_frame(text_data)
        except protocol.ProtocolError as error:
            metrics.frame_received("invalid")
            self._answer(protocol.encode_error(error.code, error.message, ref=error.ref))
            return
        metrics.frame_received(frame.type)
        handler = self._on_change if frame.type in _CHANGES else getattr(self, f"_on_{frame.type}")
        try:
            await handler(frame)
        except (BackendError, protocol.ProtocolError) as error:
            self._answer(protocol.encode_error(error.code, error.message, ref=frame.ref))
        except Exception as error:
            # Redis away: said once, by the doorbell; the database away: once per 10 s,
            # by db_faults (the socket stays open either way).
            if not self.hub.redis_lost(error) and db_faults.classify(error) is None:
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

    async def _on_refresh(self, frame: protocol.ClientFrame) -> None:
        """``authenticate`` with the refresh token: rotated here, by the rules of
        ``POST /api/auth/token/refresh/``, and the new pair in the ack (never logged).

        A refused token is an error answer only; a spent one has ended its session,
        whose sockets (this one too, when it is the same) the hub closes with 4001.
        """
        raw = frame.payload.get("token")
        token = raw if isinstance(raw, str) else ""
        claims = _refresh_claims(token)
        # Before rotating: another user's token is not spent by a request that fails.
        if claims.user_id != self.user_id:
            raise Forbidden("That token belongs to another user.", code="wrong_user")
        pair, fresh = await _rotated(token)
        # The socket now lives as long as this token's session (another device's, even).
        self.session_id = fresh.session_id
        self.token_expires_at = fresh.expires_at.timestamp()
        tokens = {"access": pair.access, "refresh": pair.refresh}
        # The pair mid-frame, as in hello (protocol.hello_frame says why).
        self._ack(frame, {"tokens": tokens, "token_expires_at": int(self.token_expires_at)})

    async def _on_list_projects(self, frame: protocol.ClientFrame) -> None:
        """The user's projects, as ``GET /api/me`` lists them: a desktop asks once
        connected (its presence panel, its mutes) and needs no REST call for it."""
        projects = await _user_projects(user_id=self.user_id)
        listed = [{"id": p.id, "title": p.title, "role": p.role} for p in projects]
        self._ack(frame, {"projects": listed})

    async def _on_change(self, frame: protocol.ClientFrame) -> None:
        """mark_read, mark_unread, delete."""
        change = await database_sync_to_async(_CHANGES[frame.type])(
            user_id=self.user_id, ids=frame.payload.get("ids")
        )
        result = {"changed": change.changed, "not_found": change.not_found}
        self._ack(frame, {**result, "unread_count": change.unread_count})

    async def _on_mark_all_read(self, frame: protocol.ClientFrame) -> None:
        raw = frame.payload.get("up_to_seq")
        bound = None if raw is None else selectors.validate_seq(raw, name="up_to_seq")
        change = await database_sync_to_async(services.inbox_mark_all_read)(
            user_id=self.user_id, up_to_seq=bound
        )
        self._ack(frame, {"changed": change.changed, "unread_count": change.unread_count})

    async def _on_subscribe_presence(self, frame: protocol.ClientFrame) -> None:
        project_id = selectors.validate_project_id(frame.payload.get("project_id"))
        payload = await live_presence.presence_snapshot(
            hub=self.hub, user_id=self.user_id, project_id=project_id, watcher=self
        )
        self._answer(protocol.encode("presence_snapshot", payload, ref=frame.ref))

    async def _on_unsubscribe_presence(self, frame: protocol.ClientFrame) -> None:
        project_id = selectors.validate_project_id(frame.payload.get("project_id"))
        self.hub.unwatch(self, project_id)
        self._ack(frame, {"project_id": project_id})

    async def _on_set_status(self, frame: protocol.ClientFrame) -> None:
        """What ``live_presence.status_set`` says (``POST /api/presence/status/`` too)."""
        status = await live_presence.status_set(
            hub=self.hub,
            user_id=self.user_id,
            status=frame.payload.get("status"),
            until=frame.payload.get("until"),
        )
        self._ack(frame, {"status": status})
