"""Which transport the next connection attempt uses: the WebSocket or the HTTP stream.

Some networks break WebSockets (a proxy that strips ``Upgrade``, a firewall that
resets upgraded connections, a middlebox that buffers the upgraded stream so
``hello`` never arrives). The server also offers the same frames as Server-Sent
Events (``GET /api/stream/``, docs/protocol.md "HTTP fallback"), which plain HTTP
proxies carry. This module is the policy that picks between them. It is pure: no
I/O and no clock of its own; the caller reports each attempt's outcome with the
time, and asks what to use next. Tests drive it with numbers.

Rules:

1. **Forced choice wins.** IT's setting ``"websocket"`` or ``"http"`` is obeyed on
   every attempt, whatever happened before; ``None`` (automatic) applies the rules
   below. The outcomes are still recorded, so switching back to automatic starts
   from what has been seen.
2. **The socket by default.** It is cheaper for the server and carries the
   client's frames in band.
3. **Only failures that point at the network in between count.** A refused or
   failed upgrade (an HTTP status instead of 101, a malformed handshake, a proxy
   answering the tunnel request with an error status), a reset right after the
   upgrade, no ``hello`` within the timeout, and a socket cut without a close frame
   within ``CUT_WINDOW`` of its ``hello`` (a proxy that cuts upgraded connections
   after a few seconds lets ``hello`` through first; see rule 3a). Failures that mean
   the server itself is away (connection refused, name not found, TLS, a
   timeout before any answer) or that are about the account (401, 4001, a
   disabled account) neither count nor clear the count: the stream would fail
   the same way, so switching would only hide the real problem.

   3a. **A cut counts once the next attempt shows the server was there.** A server
   that crashes right after ``hello`` looks exactly like a proxy's cut from here.
   The difference shows next: the crashed server refuses the next connection
   (rule 3's "away": the cut is forgiven), the proxy's server answers it. So a cut
   is held pending and counted when the next attempt reaches the server (its
   ``hello``, or a refused upgrade); a socket cut ``threshold`` times in a row thus
   switches at the fourth cut.
4. **After** ``threshold`` (3) **consecutive network failures, use the stream.**
   A socket that says ``hello`` and then lives past ``CUT_WINDOW`` (or is closed
   by the server with a code) clears the count.
5. **While on the stream, probe the socket** ``probe_interval`` (5 min) after
   switching, and again after each failed probe with the interval doubled up to
   ``probe_cap`` (1 h): a network that blocks WebSockets today usually does
   tomorrow, so the probes thin out instead of costing a failed handshake every
   five minutes forever. A probe that ends with a server-side failure (rule 3)
   says nothing about the network: the next probe comes after the same interval.
6. **A probe that gets** ``hello`` **moves back to the socket** and resets the
   interval. The caller decides when to close a working stream for a probe: at
   :attr:`Decision.revisit_at`.
7. **A failing stream does not send the session back to the socket early.** The
   socket failed ``threshold`` times; a stream failure is most likely the server
   (or the whole network) being away, which the session's own backoff handles.

:attr:`Decision.reason` is the sentence a UI shows ("HTTP fallback: WebSockets are
blocked on this network").
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec
from msgspec.structs import replace

THRESHOLD = 3
# A socket cut without a close frame sooner than this after its hello counts as the
# network cutting upgraded connections. The client pings every 15 s, so a proxy with an
# idle timeout under that cuts every socket well within it; a longer-lived socket that
# dies is an ordinary dropped link.
CUT_WINDOW = 60.0
PROBE_INTERVAL = 5 * 60.0
PROBE_CAP = 60 * 60.0

Forced = Literal["websocket", "http"] | None


class Transport(enum.Enum):
    WEBSOCKET = "websocket"
    HTTP = "http"


class Outcome(enum.Enum):
    """How one connection attempt ended, as far as the choice is concerned."""

    SOCKET_REFUSED = "socket_refused"
    """The upgrade was refused or failed: an HTTP status instead of 101, a bad handshake."""
    SOCKET_RESET = "socket_reset"
    """The connection was reset (or closed without a code) right after the upgrade."""
    SOCKET_NO_HELLO = "socket_no_hello"
    """The upgrade succeeded but no ``hello`` came within the timeout."""
    SOCKET_CUT = "socket_cut"
    """``hello`` arrived, then the connection was cut without a close frame within
    :data:`CUT_WINDOW`: something in between cuts upgraded connections."""
    SOCKET_WORKS = "socket_works"
    """``hello`` arrived and the socket lived: WebSockets work on this network."""
    SOCKET_SERVER_SIDE = "socket_server_side"
    """A failure that says nothing about the network in between (rule 3)."""
    STREAM_WORKS = "stream_works"
    STREAM_FAILED = "stream_failed"


NETWORK_FAILURES: frozenset[Outcome] = frozenset(
    {Outcome.SOCKET_REFUSED, Outcome.SOCKET_RESET, Outcome.SOCKET_NO_HELLO, Outcome.SOCKET_CUT}
)
SOCKET_OUTCOMES: frozenset[Outcome] = NETWORK_FAILURES | {
    Outcome.SOCKET_WORKS,
    Outcome.SOCKET_SERVER_SIDE,
}

REASON_BLOCKED = "HTTP fallback: WebSockets are blocked on this network"
REASON_FORCED_HTTP = "HTTP streaming, set by your administrator"
REASON_FORCED_SOCKET = "WebSocket, set by your administrator"
REASON_SOCKET = "WebSocket"
REASON_PROBE = "Trying WebSockets again"


class Decision(msgspec.Struct, frozen=True):
    """What to use for the next attempt.

    Attributes:
        transport: the transport.
        reason: plain words for a tooltip.
        fallback: the stream is used because WebSockets failed (not because IT forced it).
        revisit_at: while on the fallback, when to leave a working stream to probe the
            socket (epoch seconds); None when nothing is scheduled.
    """

    transport: Transport
    reason: str
    fallback: bool = False
    revisit_at: float | None = None


class TransportChoice(msgspec.Struct, frozen=True):
    """The policy's state; every method returns a new one (frozen, so it is easy to test).

    Attributes:
        forced: IT's choice, or None for automatic.
        threshold: consecutive network failures of the socket before the stream is used.
        probe_interval: the first wait, on the stream, before probing the socket again.
        probe_cap: the longest wait between probes.
        failures: consecutive network failures of the socket so far.
        on_stream: the automatic choice is currently the stream.
        next_probe_at: when the next probe is due (only while ``on_stream``).
        wait: the wait before the probe now scheduled (grows after each failed probe).
        cut_pending: the last socket was cut soon after ``hello``, not yet counted
            (rule 3a).
    """

    forced: Forced = None
    threshold: int = THRESHOLD
    probe_interval: float = PROBE_INTERVAL
    probe_cap: float = PROBE_CAP
    failures: int = 0
    on_stream: bool = False
    next_probe_at: float | None = None
    wait: float = PROBE_INTERVAL
    cut_pending: bool = False

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if not 0 < self.probe_interval <= self.probe_cap:
            raise ValueError("need 0 < probe_interval <= probe_cap")

    @classmethod
    def create(
        cls,
        forced: Forced = None,
        *,
        threshold: int = THRESHOLD,
        probe_interval: float = PROBE_INTERVAL,
        probe_cap: float = PROBE_CAP,
    ) -> TransportChoice:
        """A fresh policy (nothing seen yet)."""
        return cls(
            forced=forced,
            threshold=threshold,
            probe_interval=probe_interval,
            probe_cap=max(probe_cap, probe_interval),
            wait=probe_interval,
        )

    def with_forced(self, forced: Forced) -> TransportChoice:
        """IT's setting changed (rule 1); what has been seen is kept."""
        return replace(self, forced=forced)

    def decide(self, now: float) -> Decision:
        """The transport for an attempt starting at ``now``."""
        if self.forced == "http":
            return Decision(Transport.HTTP, REASON_FORCED_HTTP)
        if self.forced == "websocket":
            return Decision(Transport.WEBSOCKET, REASON_FORCED_SOCKET)
        if not self.on_stream:
            return Decision(Transport.WEBSOCKET, REASON_SOCKET)
        if self.next_probe_at is not None and now >= self.next_probe_at:
            return Decision(Transport.WEBSOCKET, REASON_PROBE, fallback=True)
        return Decision(
            Transport.HTTP, REASON_BLOCKED, fallback=True, revisit_at=self.next_probe_at
        )

    def record(self, outcome: Outcome, now: float) -> TransportChoice:
        """One attempt ended with ``outcome`` at ``now``."""
        if outcome is Outcome.SOCKET_WORKS:
            # Rule 6: WebSockets work here (again).
            return replace(
                self,
                failures=0,
                on_stream=False,
                next_probe_at=None,
                wait=self.probe_interval,
                cut_pending=False,
            )
        if outcome is Outcome.SOCKET_CUT and not self.on_stream and not self.cut_pending:
            return replace(self, cut_pending=True)  # rule 3a: judged by the next attempt
        if outcome in NETWORK_FAILURES:
            # Rule 3a: this attempt reached the server, so a pending cut was the network's.
            confirmed = 1 if self.cut_pending and outcome is not Outcome.SOCKET_CUT else 0
            failures = self.failures + 1 + confirmed
            if self.on_stream:
                # A failed probe (rule 5): wait longer before the next one.
                wait = min(self.wait * 2, self.probe_cap)
                return replace(self, failures=failures, next_probe_at=now + wait, wait=wait)
            if failures >= self.threshold:
                # Rule 4: switch; the first probe after probe_interval.
                return replace(
                    self,
                    failures=failures,
                    on_stream=True,
                    next_probe_at=now + self.probe_interval,
                    wait=self.probe_interval,
                    cut_pending=False,
                )
            return replace(self, failures=failures, cut_pending=outcome is Outcome.SOCKET_CUT)
        if outcome is Outcome.SOCKET_SERVER_SIDE and self.cut_pending:
            return replace(self, cut_pending=False)  # rule 3a: the server had gone
        if outcome is Outcome.SOCKET_SERVER_SIDE and self.on_stream:
            due = self.next_probe_at
            if due is not None and now >= due:
                # A probe that learned nothing (rule 5): same interval again, no growth.
                return replace(self, next_probe_at=now + self.wait)
        # Rules 3 and 7: nothing learnt about the network in between.
        return self


# Error codes of tray_app.net.errors (and live.py's HandshakeRefused) that point at the
# network in between rather than at the server or the account.
_REFUSED_CODES = frozenset({"handshake_refused", "handshake_forbidden", "proxy_refused"})
_ACCOUNT_CODES = frozenset({"account_disabled", "login_required"})


def socket_outcome(
    error_code: str | None,
    *,
    close_code: int | None = None,
    upgraded: bool,
    hello: bool,
    message: str = "",
    lived: float | None = None,
) -> Outcome:
    """Classify how a socket attempt ended (rule 3).

    Args:
        error_code: the ``code`` of the :class:`~tray_app.net.errors.NetError` that
            ended the attempt, None if it ended cleanly.
        close_code: the WebSocket close code, if the server sent one.
        upgraded: the handshake completed (101 received).
        hello: ``hello`` was received on this connection.
        message: the error's technical description (``str(error)``), which tells a
            failed handshake apart from other unreachable servers.
        lived: seconds from ``hello`` to the end of the connection (with ``hello``).

    Returns:
        The outcome to :meth:`TransportChoice.record`.
    """
    if hello:
        cut = error_code == "closed" and close_code is None
        if cut and lived is not None and lived < CUT_WINDOW:
            return Outcome.SOCKET_CUT
        return Outcome.SOCKET_WORKS
    if not upgraded:
        if error_code in _REFUSED_CODES:
            return Outcome.SOCKET_REFUSED
        if error_code == "server_unreachable" and message.startswith("handshake failed"):
            # The answer was HTTP but not a WebSocket upgrade (headers stripped).
            return Outcome.SOCKET_REFUSED
        return Outcome.SOCKET_SERVER_SIDE
    if close_code is not None or error_code in _ACCOUNT_CODES:
        # The server closed with a code (4001, 4003, going away) or refused the account:
        # it is there and talking, so the network in between carries the socket.
        return Outcome.SOCKET_SERVER_SIDE
    if error_code == "server_timeout" or "hello" in message:
        # Upgraded, then silence (or something else than hello) within the timeout: a
        # middlebox that buffers the upgraded stream.
        return Outcome.SOCKET_NO_HELLO
    # Upgraded, then cut without a close frame before hello.
    return Outcome.SOCKET_RESET
