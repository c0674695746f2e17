"""The socket session: one authenticated WebSocket, kept alive for as long as the user is logged in.

The session owns the connection's life: it connects with the access token in an
``Authorization`` header (or, when the access token needs renewing, with the refresh
token, which the server rotates and answers with a new pair in ``hello``: a returning
start makes no REST call), asks for a replay after the stored cursor on every
connect (the first after a cold start too; ``?after_seq=`` on the address, so the
replay follows ``hello`` without a round trip), watches the link with heartbeats,
renews the token in band before it expires (the ``refresh`` frame), and reconnects with
:class:`~tray_app.net.backoff.Backoff` when anything goes wrong. It does not
store anything: each frame goes to a :class:`SessionHandler` (the engine), which
owns the store and the cursor.

The connection is an argument (``connect``), so tests run the session against a
real server on port 0 or against a scripted transport.

Given a second connector (``stream_connect``, :func:`tray_app.net.stream.stream_connector`),
the session falls back to the HTTP stream on networks that break WebSockets, as
:class:`~tray_app.net.transport_choice.TransportChoice` decides at every attempt. The
stream takes no client frames, so over it the session sends none: no application pings
(the stream watches its own silence), and what the socket does in band it does by
reopening the stream with the stored cursor (a renewed token, a resume, presence
subscriptions as ``?watch=``) or over REST (``set_status``, through ``post_status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol

import websockets
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidProxy,
    InvalidStatus,
    ProxyError,
)

from tray_app import __version__
from tray_app.net import protocol
from tray_app.net.api import InboxChange, RefreshLease, Tokens
from tray_app.net.backoff import Backoff
from tray_app.net.connection_state import ConnectionState, StateChange
from tray_app.net.errors import (
    AccountDisabled,
    LoginRequired,
    NetError,
    RequestRejected,
    ServerUnreachable,
    TlsFailure,
    error_from_transport,
)
from tray_app.net.transport import Transport
from tray_app.net.transport_choice import (
    Decision,
    Forced,
    Outcome,
    TransportChoice,
    socket_outcome,
)
from tray_app.net.transport_choice import Transport as Via

logger = logging.getLogger(__name__)

# Heartbeats (docs/protocol.md, "Heartbeats and dead links"): protocol pings catch a
# dead TCP path, application pings a server process that is up but not serving. Either
# way a dead link is noticed within PING_INTERVAL + PONG_TIMEOUT (< 30 s).
PING_INTERVAL = 15.0
# How often to try again after an HTTP 403 at the handshake (a refused origin, a proxy's
# policy): only a configuration change fixes it, so well past the backoff's cap.
CONFIGURATION_RETRY_S = 60.0
PONG_TIMEOUT = 10.0
OPEN_TIMEOUT = 10.0
# Renew the access token in band this long before it expires.
RENEW_MARGIN = 30.0
# At most this many frames are handled in one turn of the event loop. websockets' recv()
# returns at once while frames are buffered, so without a deliberate yield a replay of
# thousands of frames would be parsed and stored in a single turn: the UI, sharing the
# loop, would freeze for all of it. The engine stores a replay in batches of 100, so one
# turn holds at most one batch.
FRAMES_PER_TURN = 20
# Error codes that answer the resume asked for at connect (``?after_seq``): without a
# ref, right after hello. The replay is then not coming; the engine decides what next.
RESUME_ERRORS = frozenset({"invalid_cursor", "cursor_ahead"})
# The server's presence is briefly unavailable (its Redis is away: error
# ``presence_unavailable``, docs/protocol.md): presence is asked for again this much later.
PRESENCE_RETRY_S = 5.0


class Connection(Protocol):
    """The part of websockets' ClientConnection the session uses (scripted in tests)."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


Connector = Callable[[str, dict[str, str]], contextlib.AbstractAsyncContextManager[Connection]]


class TokenSource(Protocol):
    """Where the session gets its address and access tokens: the REST client
    (:class:`tray_app.net.api.ApiClient`), which refreshes single-flight."""

    @property
    def ws_url(self) -> str: ...

    async def access_token(self, *, min_validity: float = 30.0) -> str: ...

    async def refresh(self) -> Tokens: ...

    def lease_refresh(self, *, min_validity: float | None = 30.0) -> RefreshLease | None: ...


class SessionHandler(Protocol):
    """What the session needs from its owner (the engine)."""

    def cursor(self) -> int:
        """The highest seq stored with no gap below it."""
        ...

    async def handle_frame(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
        """One server frame, in arrival order. ``replaying`` is true between a resume and
        its ``caught_up`` (catch-up rather than live traffic)."""
        ...

    def handle_state(self, change: StateChange) -> None:
        """The connection state changed."""
        ...


class Closed(NetError):
    """The server closed the socket (``close_code``) or the link died (``None``)."""

    code = "closed"
    user_message = "The connection to the server was interrupted. Reconnecting…"

    def __init__(self, message: str, close_code: int | None) -> None:
        super().__init__(message)
        self.close_code = close_code


def websocket_connector(transport: Transport | None = None) -> Connector:
    """The real transport: websockets' client with the product's settings.

    Args:
        transport: the trust and proxy settings, the same the REST client uses (the
            system's trust store and proxy when None). Read at every connection attempt.

    A connection that cannot be opened raises its :class:`NetError` (a refused
    certificate described, a proxy named); an HTTP refusal of the handshake stays
    websockets' ``InvalidStatus`` for the session to judge.
    """
    settings = transport or Transport()

    @contextlib.asynccontextmanager
    async def connect(url: str, headers: dict[str, str]) -> AsyncIterator[Connection]:
        proxy = settings.proxy_for(url)
        try:
            connection = await websockets.connect(
                url,
                additional_headers=headers,
                user_agent_header=f"tray-notifier/{__version__}",
                open_timeout=OPEN_TIMEOUT,
                ping_interval=PING_INTERVAL,
                ping_timeout=PONG_TIMEOUT,
                close_timeout=5,
                # Notifications are small; deflate costs the server ~40 KiB per socket.
                compression=None,
                max_size=2**20,
                ssl=settings.ssl_context() if url.startswith("wss:") else None,
                # Resolved by the transport (configuration > environment > system);
                # None means direct, never websockets' own reading of the environment.
                proxy=proxy,
            )
        except (OSError, TimeoutError, ProxyError, InvalidProxy) as exc:
            error = error_from_transport(exc, url=url, proxy=proxy)
            if isinstance(error, TlsFailure):
                error = await settings.explain(error, url)
                logger.warning("WebSocket connection failed: %s", error)
            raise error from exc
        async with connection:
            yield connection

    return connect


class LiveSession:
    """Keeps one authenticated socket to the server while the user is logged in.

    Args:
        api: the token source, normally the REST client (it refreshes single-flight).
        handler: receives every frame and state change.
        connect: the transport; :func:`websocket_connector` unless a test scripts one.
        backoff: the retry policy.
        clock: epoch seconds (token expiry and ``next_attempt_at`` are epoch times).
        ping_interval, pong_timeout: application heartbeats; a dead link is noticed
            within their sum.
        stream_connect: the HTTP stream's connector; without it the session only uses
            ``connect`` (the socket).
        choice: the transport policy (automatic, default timings, when None).
        post_status: sends ``set_status`` over REST (``POST /api/presence/status/``),
            for when the session is on the stream.
    """

    def __init__(
        self,
        api: TokenSource,
        handler: SessionHandler,
        *,
        connect: Connector | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        ping_interval: float = PING_INTERVAL,
        pong_timeout: float = PONG_TIMEOUT,
        stream_connect: Connector | None = None,
        choice: TransportChoice | None = None,
        post_status: Callable[[str], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._api = api
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._handler = handler
        self._connect = connect or websocket_connector()
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._state = StateChange(ConnectionState.STOPPED)
        self._connection: Connection | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._network_available = True
        self._replaying = False
        self._resume_after: int | None = None  # the after_seq of the resume in flight
        self._resume_pending = False
        self._pong_waiters: dict[str, asyncio.Future[None]] = {}
        # The answer (ack or error) to each request in flight that waits for one, by ref.
        self._answers: dict[str, asyncio.Future[_Reply]] = {}
        # Whether the server takes the refresh token on the socket; off once one says it
        # does not (an older server), for this session's life.
        self._socket_refresh = True
        self._lease: RefreshLease | None = None  # the refresh token lent to this handshake
        self._ref_counter = 0
        self._token_expires_at: float | None = None
        self._presence: set[int] = set()
        self._status: str | None = None
        self._presence_retry: asyncio.Task[None] | None = None
        self.attempts = 0  # connection attempts started, for tests and diagnostics
        self._stream_connect = stream_connect
        self._choice = choice or TransportChoice.create()
        self._post_status = post_status
        self._decision = Decision(Via.WEBSOCKET, "WebSocket")
        # Set to end the current stream and open it again at once (the stream's way of
        # doing what the socket does in band); _reopening marks such an attempt.
        self._reopen = asyncio.Event()
        self._reopening = False
        self._switching = False  # the last attempt moved the policy to the stream
        self._seamless = False
        self._hello = False
        self._hello_at = 0.0  # when this connection's hello came (self._clock())
        self._connection_opened = False
        self._watching: frozenset[int] = frozenset()  # the current stream's ?watch= ids

    # --- what the host calls -----------------------------------------------------------

    @property
    def state(self) -> StateChange:
        return self._state

    @property
    def transport(self) -> Via:
        """The transport of the current (or next) connection."""
        return self._decision.transport

    @property
    def transport_choice(self) -> TransportChoice:
        """The policy's state (what it has seen), for diagnostics."""
        return self._choice

    def set_forced_transport(self, forced: Forced) -> None:
        """IT's setting (``"websocket"``, ``"http"`` or None): applies from the next attempt."""
        self._choice = self._choice.with_forced(forced)

    @property
    def replaying(self) -> bool:
        """A resume is in flight: notification frames now are catch-up, not live."""
        return self._replaying

    @property
    def seamless(self) -> bool:
        """This connection took over from a working one without the user seeing a break
        (the stream reopened on purpose, a retry of the socket from the stream): what its
        replay brings arrived during the switch, live as far as the user knows."""
        return self._seamless

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._state.state is ConnectionState.CONNECTED

    async def run(self) -> None:
        """Connect and stay connected until :meth:`stop` or until login is required.

        A :meth:`stop` that comes before this starts ends it at once; the session can
        run again after it has ended."""
        try:
            await self._run()
        finally:
            self._stopping = False

    async def _run(self) -> None:
        self._state = StateChange(ConnectionState.STOPPED)
        first = True
        while not self._stopping:
            self._wake.clear()
            self.attempts += 1
            error = await self._connect_once(first=first)
            first = False
            if self._stopping:
                break
            if isinstance(error, LoginRequired | AccountDisabled):
                self._set_state(ConnectionState.LOGIN_REQUIRED, error=error)
                return
            if self._reopening:
                continue  # the stream closed on purpose: open it again now
            if self._switching:
                # The socket failed for the last time the policy allows: the stream at
                # once, as there is no reason to think it fails too.
                self._switching = False
                continue
            await self._wait_before_retry(error)
            if self._state.state is ConnectionState.LOGIN_REQUIRED:
                return  # the refresh after a 4001 was refused: not "stopped", "log in"
        self._set_state(ConnectionState.STOPPED)

    async def stop(self) -> None:
        """Close the socket and end :meth:`run` (logout, quit)."""
        self._stopping = True
        self._wake.set()
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(1000, "bye")

    def wake(self) -> None:
        """The network just came back or the machine woke up: try again now, backoff reset."""
        self._network_available = True
        self._backoff.reset()
        self._wake.set()

    def set_network_available(self, available: bool) -> None:
        """The host's view of the network. While it says "down" the state is OFFLINE and
        attempts continue only at the slowest pace, in case the host is wrong."""
        if available:
            self.wake()
        else:
            self._network_available = False

    def request_resume(self) -> None:
        """Ask for a replay after the handler's cursor (it saw a gap, or reset its store)."""
        if self._connection is None or self._replaying:
            # A replay in flight covers it; a new connection resumes anyway.
            self._resume_pending = self._connection is not None
            return
        self._send_resume()

    async def subscribe_presence(self, project_id: int) -> None:
        """Watch a project's presence, now and after every reconnect."""
        self._presence.add(project_id)
        if self._over_http():
            if project_id not in self._watching and self._connection is not None:
                self._reopen.set()  # reopened with the project in ?watch=
            # Not connected yet: _serve compares what the address watched after hello.
            return
        await self._send_if_connected(protocol.encode_presence("subscribe_presence", project_id))

    async def list_projects(self) -> list[Any]:
        """The user's projects as the server lists them on the socket (``list_projects``),
        entries unchecked: ``{"id", "title"}`` each.

        Raises:
            NetError: not connected over the socket (the stream takes no requests), no
                answer in time, or an error answer (an older server does not know the
                frame): the caller asks REST (``GET /api/me``) instead.
        """
        connection = self._connection
        if connection is None or self._over_http():
            raise Closed("not connected over the socket", None)
        try:
            reply = await self._ask(connection, "projects", protocol.encode_list_projects)
        except (TimeoutError, ConnectionClosed):
            raise Closed("no answer to list_projects", None) from None
        if isinstance(reply, protocol.ServerErrorFrame):
            raise NetError(f"the server answered list_projects with {reply.code}")
        projects = reply.payload.get("projects")
        if not isinstance(projects, list):
            raise protocol.FrameError("ack: projects must be a list")
        return projects

    async def send_change(self, kind: ChangeKind, payload: Mapping[str, Any]) -> InboxChange:
        """An inbox change (``mark_read``, ``mark_unread``, ``delete``, ``mark_all_read``)
        on the open socket, and what its ``ack`` says it did.

        Raises:
            RequestRejected: the server refused it (its ``error`` code): sent again, it
                would be refused again.
            NetError: not connected over the socket, no answer in time, or the server
                could not do it now (``server_error``): send it again later, here or over
                REST (every change is idempotent).
        """
        connection = self._connection
        if connection is None or self._over_http():
            raise Closed("not connected over the socket", None)
        try:
            reply = await self._ask(
                connection, kind, lambda ref: protocol.encode(kind, payload, ref=ref)
            )
        except (TimeoutError, ConnectionClosed):
            raise Closed(f"no answer to {kind}", None) from None
        if isinstance(reply, protocol.ServerErrorFrame):
            if reply.code == "server_error":
                raise NetError(f"the server could not do {kind} now", code=reply.code)
            raise RequestRejected(
                f"the server refused {kind} ({reply.code})", status=400, code=reply.code
            )
        fields, what = protocol.FRAME_FIELDS, f"{kind} ack"
        return InboxChange(
            changed=fields.whole_list(reply.payload, "changed", what),
            # mark_all_read's ack has no not_found: it names no ids.
            not_found=fields.whole_list(reply.payload, "not_found", what)
            if "not_found" in reply.payload
            else [],
            unread_count=fields.whole(reply.payload, "unread_count", what),
        )

    async def set_status(self, status: str) -> None:
        """The user's chosen presence status, kept across reconnects."""
        frame = protocol.encode_set_status(status)
        self._status = status
        if self._over_http():
            if self._connection is not None:
                await self._post_status_quietly(status)
            return
        await self._send_if_connected(frame)

    # --- one connection ----------------------------------------------------------------

    async def _connect_once(self, *, first: bool) -> NetError | None:
        """Open, serve and close one connection; the error that ended it, if any."""
        reopening, self._reopening = self._reopening, False
        self._reopen.clear()
        if self._stream_connect is not None:
            self._decision = self._choice.decide(self._clock())
        self._hello = False
        error = await self._attempt(first=first, quiet=reopening)
        if self._stream_connect is not None and not self._reopening:
            probe = self._decision.fallback and self._decision.transport is Via.WEBSOCKET
            self._record_outcome(error, upgraded=self._connection_opened)
            if probe and reopening and self._choice.decide(self._clock()).transport is Via.HTTP:
                # A failed probe from a working stream: back to the stream at once and
                # quietly; the UI never saw the stream go, so it need not see "reconnecting".
                self._reopening = True
        return error

    def _record_outcome(self, error: NetError | None, *, upgraded: bool) -> None:
        if self._decision.transport is Via.HTTP:
            outcome = Outcome.STREAM_WORKS if self._hello else Outcome.STREAM_FAILED
        else:
            outcome = socket_outcome(
                error.code if error is not None else None,
                close_code=getattr(error, "close_code", None),
                upgraded=upgraded,
                hello=self._hello,
                message=str(error) if error is not None else "",
                lived=self._clock() - self._hello_at if self._hello else None,
            )
        before = self._decision.transport
        switched = not self._choice.on_stream
        self._choice = self._choice.record(outcome, self._clock())
        switched = switched and self._choice.on_stream
        after = self._choice.decide(self._clock()).transport
        if after is not before:
            logger.info("next attempt over %s (%s)", after.value, outcome.value)
        self._switching = switched and after is Via.HTTP

    async def _attempt(self, *, first: bool, quiet: bool) -> NetError | None:
        self._connection_opened = False
        self._seamless = quiet
        if quiet:
            pass  # a deliberate reopen of the stream: still connected as far as the UI goes
        elif first:
            self._set_state(ConnectionState.CONNECTING)
        else:
            waiting = (
                ConnectionState.RECONNECTING if self._network_available else ConnectionState.OFFLINE
            )
            self._set_state(waiting, error=self._state.error)
        lease = None
        if self._socket_refresh and not self._over_http():
            lease = self._api.lease_refresh(min_validity=RENEW_MARGIN)
        if lease is not None:
            headers = {"Authorization": f"Refresh {lease.token}"}
        else:
            try:
                token = await self._api.access_token(min_validity=RENEW_MARGIN)
            except NetError as error:
                return error
            headers = {"Authorization": f"Bearer {token}"}
        self._lease = lease
        cursor = self._handler.cursor()
        url = f"{self._api.ws_url}?after_seq={cursor}"
        connect = self._connect
        if self._over_http():
            assert self._stream_connect is not None
            connect = self._stream_connect
            # The stream's presence subscriptions are part of its address.
            self._watching = frozenset(self._presence)
            url += "".join(f"&watch={project_id}" for project_id in sorted(self._watching))
        try:
            async with connect(url, headers) as connection:
                self._connection_opened = True
                return await self._serve(connection, resumed_from=cursor)
        except InvalidStatus as refused:
            status = refused.response.status_code
            logger.warning("the server refused the WebSocket handshake with HTTP %s", status)
            return _handshake_error(status)
        except InvalidHandshake as error:
            logger.warning("WebSocket handshake failed: %s", type(error).__name__)
            return ServerUnreachable(f"handshake failed: {type(error).__name__}")
        except ConnectionClosed as closed:
            return _closed_error(closed)
        except NetError as error:
            return error
        except (OSError, TimeoutError, ssl.SSLError) as error:
            return error_from_transport(error, url=self._api.ws_url)
        finally:
            if lease is not None and not lease.settled:
                # Ended before hello: whether the server rotated the token is unknown.
                lease.failed(Closed("the connection ended before hello", None))
            self._lease = None
            self._connection = None
            if self._presence_retry is not None:
                self._presence_retry.cancel()  # the next connection subscribes by itself
            self._replaying = False
            self._resume_after = None
            self._resume_pending = False
            self._fail_pong_waiters()

    async def _serve(self, connection: Connection, *, resumed_from: int) -> NetError | None:
        first = await self._receive(connection, within=OPEN_TIMEOUT)
        if not isinstance(first, protocol.Hello):
            if isinstance(first, protocol.ServerErrorFrame):
                # token_missing / token_invalid / account_disabled come before the close.
                return await self._closing_error(connection, first)
            return Closed("the server did not start with hello", None)
        if self._lease is not None:
            if first.tokens is None:
                return self._refresh_not_understood("hello brought no tokens")
            self._lease.granted(first.tokens)
        self._connection = connection
        self._hello = True
        self._hello_at = self._clock()
        self._token_expires_at = first.token_expires_at
        self._backoff.opened(self._clock())
        try:
            self._set_state(ConnectionState.CONNECTED)
            await self._deliver(first, replaying=False)
            # The server replays above the cursor sent at connect, then says caught_up:
            # that is this connection's resume, in flight from here.
            self._replaying = True
            self._resume_after = resumed_from
            if self._over_http():
                # Presence came with the address (?watch=); the status goes over REST.
                if self._presence - self._watching:
                    self._reopen.set()  # subscribed while the stream was opening
                if self._status is not None:
                    await self._post_status_quietly(self._status)
                await _first_failure(
                    self._receive_loop(connection),
                    self._renew_token(connection),
                    self._until_reopen(),
                    self._until_probe(),
                )
                return None
            for project_id in sorted(self._presence):
                await connection.send(protocol.encode_presence("subscribe_presence", project_id))
            if self._status is not None:
                await connection.send(protocol.encode_set_status(self._status))
            await _first_failure(
                self._receive_loop(connection),
                self._heartbeat(connection),
                self._renew_token(connection),
            )
        except _Reopen:
            self._reopening = True
            return None
        finally:
            self._backoff.closed(self._clock())
        return None

    async def _receive_loop(self, connection: Connection) -> None:
        handled = 0
        while True:
            if handled >= FRAMES_PER_TURN:
                # A deliberate yield (see FRAMES_PER_TURN): let the UI and timers run.
                await asyncio.sleep(0)
                handled = 0
            frame = await self._receive(connection, within=None)
            handled += 1
            if frame is None:
                continue
            replaying = self._replaying
            if isinstance(frame, protocol.NotificationCreated | protocol.CaughtUp | protocol.Pong):
                self._backoff.served()  # the server works: its next close is a first failure
            self._observe(frame)
            await self._deliver(frame, replaying=replaying)

    async def _deliver(self, frame: protocol.ServerFrame, *, replaying: bool) -> None:
        try:
            await self._handler.handle_frame(frame, replaying=replaying)
        except Exception as error:
            # The frame may not be stored (a full disk, a bug). Reconnecting resumes from
            # the stored cursor, so nothing is skipped; going on here could skip it.
            logger.exception("handling a %s frame failed; reconnecting", type(frame).__name__)
            raise Closed("the client could not handle a frame", None) from error

    async def _receive(
        self, connection: Connection, *, within: float | None
    ) -> protocol.ServerFrame | None:
        """The next usable frame; a malformed or unknown one is logged and skipped (None)."""
        async with asyncio.timeout(within):
            raw = await connection.recv()
        try:
            return protocol.parse_server_frame(raw)
        except protocol.FrameError as error:
            # The message names the frame type and field, never the content.
            logger.warning("skipped a server frame: %s", error)
            return None

    def _observe(self, frame: protocol.ServerFrame) -> None:
        """The session's own bookkeeping on a frame, before the handler sees it."""
        match frame:
            case protocol.CaughtUp(after_seq=after) if after is not None and (
                self._resume_after is None or after > self._resume_after
            ):
                # A run the server started on its own (a missed doorbell), above the point
                # we asked to resume from: our replay is still to come.
                pass
            case protocol.CaughtUp() | protocol.ResyncRequired():
                self._replaying = False
                self._resume_after = None
                if self._resume_pending:
                    self._resume_pending = False
                    self._send_resume()
            case protocol.ServerErrorFrame(ref=ref, code=code) if (
                isinstance(ref, str) and ref.startswith("resume-")
            ) or (ref is None and code in RESUME_ERRORS and self._resume_after is not None):
                # A refused resume: a frame's (by its ref), or the connect's (no ref).
                self._replaying = False
                self._resume_after = None
                self._resume_pending = False
            case protocol.ServerErrorFrame(code="presence_unavailable"):
                self._retry_presence_later()
            case protocol.Ack(ref=ref) | protocol.ServerErrorFrame(ref=ref) if (
                isinstance(ref, str) and ref in self._answers
            ):
                answer = self._answers[ref]
                if not answer.done():
                    answer.set_result(frame)
            case protocol.Pong(ref=ref) if isinstance(ref, str):
                waiter = self._pong_waiters.pop(ref, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            case protocol.Ack(request="authenticate", payload=payload):
                expires = payload.get("token_expires_at")
                if isinstance(expires, int | float) and not isinstance(expires, bool):
                    self._token_expires_at = float(expires)
            case _:
                pass

    def _retry_presence_later(self) -> None:
        """Ask for presence again (the watched projects' snapshots, the chosen status) in
        ``PRESENCE_RETRY_S``, once however many requests were refused, on the same
        connection; the stream, which takes no requests, reopens (its ``?watch=``)."""
        connection = self._connection
        if connection is None or (
            self._presence_retry is not None and not self._presence_retry.done()
        ):
            return

        async def later() -> None:
            await asyncio.sleep(PRESENCE_RETRY_S)
            if self._connection is not connection:
                return  # a new connection subscribes by itself
            if self._over_http():
                self._reopen.set()
                return
            for project_id in sorted(self._presence):
                await _send_quietly(
                    connection, protocol.encode_presence("subscribe_presence", project_id)
                )
            if self._status is not None:
                await _send_quietly(connection, protocol.encode_set_status(self._status))

        self._presence_retry = asyncio.get_running_loop().create_task(later())

    def _send_resume(self) -> None:
        connection = self._connection
        if connection is None:
            return
        if self._over_http():
            # The stream resumes by reopening after the cursor (the replay follows hello).
            self._reopen.set()
            return
        self._replaying = True
        self._resume_after = self._handler.cursor()
        frame = protocol.encode_resume(self._resume_after, ref=self._next_ref("resume"))
        # Sent from a task so that a caller inside handle_frame need not await the socket.
        asyncio.get_running_loop().create_task(_send_quietly(connection, frame))

    async def _heartbeat(self, connection: Connection) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            ref = self._next_ref("ping")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pong_waiters[ref] = waiter
            await connection.send(protocol.encode_ping(ref))
            try:
                await asyncio.wait_for(waiter, self._pong_timeout)
            except TimeoutError:
                self._pong_waiters.pop(ref, None)
                logger.info("no pong within %.0f s: the link is dead", self._pong_timeout)
                # A closing handshake would wait for a peer that is not answering.
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                raise Closed("no pong from the server", None) from None

    async def _renew_token(self, connection: Connection) -> None:
        """Renew the access token before it expires: in band with the refresh token (the
        ``refresh`` frame), or over REST and then ``authenticate``; the stream reopens."""
        while True:
            expires = self._token_expires_at
            if expires is None:
                return
            await asyncio.sleep(max(1.0, expires - RENEW_MARGIN - self._clock()))
            if self._token_expires_at != expires:
                continue  # renewed meanwhile
            lease = None
            if self._socket_refresh and not self._over_http():
                lease = self._api.lease_refresh(min_validity=None)
            try:
                if lease is not None:
                    await self._refresh_in_band(connection, lease)
                    continue
                # Over REST (or joining the refresh in flight), then authenticate.
                tokens = await self._api.refresh()
            except (LoginRequired, AccountDisabled):
                raise
            except NetError as error:
                if lease is not None and not self._socket_refresh:
                    continue  # the server does not take the frame: over REST at once
                # The server will close with 4001 at expiry; the reconnect refreshes again.
                logger.info("could not renew the access token yet: %s", error.code)
                self._token_expires_at = expires + RENEW_MARGIN / 2
                continue
            if tokens.access is None:
                continue
            if self._over_http():
                # No in-band authenticate on the stream: reopen it with the new token.
                raise _Reopen
            await connection.send(protocol.encode_authenticate(tokens.access))
            self._token_expires_at = tokens.access_expires_at or None

    async def _refresh_in_band(self, connection: Connection, lease: RefreshLease) -> None:
        """Trade the lent refresh token on the open socket; the ack brings the new pair.

        Raises:
            LoginRequired, AccountDisabled: the server refused the token.
            NetError: no usable answer (the lease failed; the tokens are kept).
        """
        try:
            reply = await self._ask(
                connection, "refresh", lambda ref: protocol.encode_refresh(lease.token, ref=ref)
            )
        except asyncio.CancelledError:
            lease.failed(Closed("the connection ended before the refresh was answered", None))
            raise
        except (TimeoutError, ConnectionClosed):
            # Whether the server rotated the token is unknown, as with a lost REST answer.
            unanswered = Closed("no answer to the refresh frame", None)
            lease.failed(unanswered)
            raise unanswered from None
        if isinstance(reply, protocol.Ack):
            try:
                grant = protocol.parse_token_grant(reply.payload, "ack")
            except protocol.FrameError as error:
                lease.failed(error)
                raise
            if grant is None:
                raise self._refresh_not_understood_in_band(lease, "the ack brought no tokens")
            tokens = lease.granted(grant)
            if tokens is None:
                raise LoginRequired("the session was replaced while refreshing")
            self._token_expires_at = tokens.access_expires_at or None
            return
        if reply.code == "account_disabled":
            disabled = AccountDisabled(reply.message)
            lease.refused(disabled)
            raise disabled
        if reply.code in ("token_invalid", "token_missing"):
            refused = LoginRequired(
                f"the server refused the refresh token ({reply.code})", user_message=reply.message
            )
            lease.refused(refused)
            raise refused
        # Anything else (an older server's unknown_type, a busy server's error): the
        # token was not spent.
        raise self._refresh_not_understood_in_band(lease, reply.code)

    async def _ask(
        self, connection: Connection, prefix: str, encode: Callable[[str], str]
    ) -> _Reply:
        """Send the frame ``encode(ref)`` and wait for its answer (an ack or an error).

        Raises:
            TimeoutError: no answer within the pong timeout.
            ConnectionClosed: the socket closed first.
        """
        ref = self._next_ref(prefix)
        answer: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._answers[ref] = answer
        try:
            await connection.send(encode(ref))
            async with asyncio.timeout(self._pong_timeout):
                return await answer
        finally:
            self._answers.pop(ref, None)

    def _refresh_not_understood_in_band(self, lease: RefreshLease, why: str) -> NetError:
        logger.info("the server did not renew the token on the socket (%s): using REST", why)
        self._socket_refresh = False
        error = Closed(f"refresh frame not taken ({why})", None)
        lease.failed(error)
        return error

    async def _closing_error(
        self, connection: Connection, frame: protocol.ServerErrorFrame
    ) -> NetError:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(5):
                while True:
                    await connection.recv()
        lease = self._lease
        if lease is not None and frame.code == "token_missing":
            # A server that does not take the refresh token looked for an access token.
            return self._refresh_not_understood(frame.code)
        if frame.code == "account_disabled":
            if lease is not None:
                lease.refused(AccountDisabled(frame.message))
            return AccountDisabled(frame.message)
        if lease is not None and frame.code == "token_invalid":
            # The refresh token itself was refused: the session is over (as a REST refresh
            # refused with 401).
            refused = LoginRequired(
                f"the server refused the refresh token ({frame.code})", user_message=frame.message
            )
            lease.refused(refused)
            return refused
        if frame.code in ("token_missing", "token_invalid"):
            return Closed(
                f"the server refused the token ({frame.code})", protocol.CLOSE_TOKEN_INVALID
            )
        return Closed(f"the server sent {frame.code} instead of hello", None)

    def _refresh_not_understood(self, why: str) -> NetError:
        """The server does not take the refresh token on the socket (an older one): the
        token is not spent, so it is refreshed over REST from now on."""
        logger.info("the server does not renew tokens on the socket (%s): using REST", why)
        self._socket_refresh = False
        error = Closed(f"refresh token not taken ({why})", protocol.CLOSE_TOKEN_INVALID)
        if self._lease is not None:
            self._lease.failed(error)
        return error

    def _over_http(self) -> bool:
        return self._stream_connect is not None and self._decision.transport is Via.HTTP

    async def _until_reopen(self) -> None:
        await self._reopen.wait()
        raise _Reopen

    async def _until_probe(self) -> None:
        """While on the fallback, end the stream when the socket is due another try."""
        revisit_at = self._decision.revisit_at
        if revisit_at is None:
            return
        await asyncio.sleep(max(0.0, revisit_at - self._clock()))
        raise _Reopen

    async def _post_status_quietly(self, status: str) -> None:
        if self._post_status is None:
            logger.info("presence status not sent: no REST route given for the stream")
            return
        try:
            await self._post_status(status)
        except NetError as error:
            # Kept in self._status: sent again at the next (re)open.
            logger.info("could not set the presence status over REST: %s", error.code)

    async def _send_if_connected(self, frame: str) -> None:
        connection = self._connection
        if connection is not None:
            await _send_quietly(connection, frame)

    # --- between connections ---------------------------------------------------------

    async def _wait_before_retry(self, error: NetError | None) -> None:
        if isinstance(error, Closed) and error.close_code == protocol.CLOSE_TOKEN_INVALID:
            try:
                await self._api.refresh()
            except LoginRequired as rejected:
                self._stopping = True
                self._set_state(ConnectionState.LOGIN_REQUIRED, error=rejected)
                return
            except NetError as failure:
                error = failure
        if self._network_available:
            delay = self._backoff.next_delay()
            state = ConnectionState.RECONNECTING
        else:
            delay = self._backoff.cap
            state = ConnectionState.OFFLINE
        if isinstance(error, NetError) and error.code == "handshake_forbidden":
            # A refused origin or a proxy's 403: a configuration problem, so no hurry;
            # unless the socket was refused and the stream may be next (a proxy's 403 to
            # upgrades counts towards the fallback: reach it at the backoff's pace).
            fallback_ahead = (
                self._stream_connect is not None
                and self._decision.transport is Via.WEBSOCKET
                and self._choice.forced is None
            )
            if not fallback_ahead:
                delay = max(delay, CONFIGURATION_RETRY_S)
        self._set_state(state, next_attempt_at=self._clock() + delay, error=error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    # --- helpers -----------------------------------------------------------------------

    def _set_state(
        self,
        state: ConnectionState,
        *,
        next_attempt_at: float | None = None,
        error: NetError | None = None,
    ) -> None:
        reason = self._decision.reason if self._over_http() else None
        change = StateChange(state, next_attempt_at, error, reason)
        if change == self._state:
            return
        self._state = change
        try:
            self._handler.handle_state(change)
        except Exception:
            logger.exception("a connection state listener failed")

    def _next_ref(self, prefix: str) -> str:
        self._ref_counter += 1
        return f"{prefix}-{self._ref_counter}"

    def _fail_pong_waiters(self) -> None:
        for waiter in self._pong_waiters.values():
            waiter.cancel()
        self._pong_waiters.clear()


_Reply = protocol.Ack | protocol.ServerErrorFrame
ChangeKind = Literal["mark_read", "mark_unread", "delete", "mark_all_read"]


class _Reopen(Exception):
    """Ends a stream on purpose, to open it again at once (see ``_reopen``)."""


class HandshakeRefused(NetError):
    """The server (or a proxy) answered the WebSocket handshake with an HTTP error."""

    code = "handshake_refused"


def _handshake_error(status: int) -> NetError:
    if status == 401:
        return Closed("HTTP 401 at the handshake", protocol.CLOSE_TOKEN_INVALID)
    if status == 403:
        return HandshakeRefused(
            "HTTP 403 at the handshake",
            code="handshake_forbidden",
            user_message=(
                "The server refused the live connection (HTTP 403). A proxy or the server's "
                "allowed origins may block it; ask your IT department."
            ),
        )
    return HandshakeRefused(
        f"HTTP {status} at the handshake",
        code="handshake_refused",
        user_message=f"The server refused the live connection (HTTP {status}). Retrying…",
    )


def _closed_error(closed: ConnectionClosed) -> NetError:
    code = closed.rcvd.code if closed.rcvd is not None else None
    if code == protocol.CLOSE_FORBIDDEN:
        return AccountDisabled("the server closed the socket with 4003")
    return Closed(f"the server closed the socket with {code}", code)


async def _first_failure(
    main: Coroutine[Any, Any, None], *helpers: Coroutine[Any, Any, None]
) -> None:
    """Run ``main`` with ``helpers`` beside it until ``main`` ends or any of them raises;
    then cancel the rest and re-raise that error. A helper that returns is simply done."""
    main_task = asyncio.create_task(main)
    pending: set[asyncio.Task[None]] = {main_task, *(asyncio.create_task(h) for h in helpers)}
    try:
        while main_task in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _send_quietly(connection: Connection, frame: str) -> None:
    # A send on a closing socket fails; the receive loop notices the close and reconnects.
    try:
        await connection.send(frame)
    except (ConnectionClosed, OSError):
        pass
    except NetError as error:
        # The stream's NotOverHttp: the session sends nothing over it, but a frame
        # queued just before a switch must not escape either.
        if error.code != "not_over_http":
            raise
