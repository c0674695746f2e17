"""When to try the server again: exponential backoff with full jitter.

Pure policy, no I/O and no clock of its own: the caller says when a connection
opened and closed, so tests drive it with numbers.

Full jitter (a uniform draw between zero and the exponential bound) spreads a
crowd of clients that lost the same server over the whole window instead of
bunching them at its edge. The bound grows with each failed attempt and only
drops back once a connection has *stayed* up for ``stable_after`` seconds or
has *served* (carried the server's answers beyond its greeting: see
:meth:`Backoff.served`): a server that accepts and then closes at once must not
turn every client into a tight reconnect loop (the trap of websockets' own
``connect`` iterator, which resets after every successful handshake;
shared/DESIGN.md). A server that is crashing and restarting every few seconds
does serve between crashes, so its clients keep coming back within seconds
instead of drifting out to the cap (tests/e2e/test_server_crashes.py).
"""

from __future__ import annotations

import math
import random

import msgspec


class Backoff(msgspec.Struct):
    """Delays between connection attempts.

    Attributes:
        base: the bound of the first retry, in seconds (the first retry comes
            within a second).
        cap: the largest bound, in seconds.
        stable_after: how long a connection must stay open before the next
            failure counts as a first failure again.
        rng: where the jitter comes from (seeded in tests).
    """

    base: float = 0.5
    # 10 s, not the 60 s common elsewhere: a client cannot tell when a black-holed or
    # restarted server is back, so its next try lands anywhere in the window, and users
    # expect "within seconds" (tests/e2e/test_black_hole.py measured 52.9 s with 60).
    # Full jitter still spreads a crowd of clients over the window.
    cap: float = 10.0
    stable_after: float = 30.0
    rng: random.Random = msgspec.field(default_factory=random.Random)
    failures: int = 0
    _opened_at: float | None = None
    _served: bool = False

    def bound(self) -> float:
        """The largest delay the next call to :meth:`next_delay` may return."""
        # Clamp the exponent: a long outage must not overflow the float.
        return min(self.cap, math.ldexp(self.base, min(self.failures, 32)))

    def next_delay(self) -> float:
        """A delay for the next attempt, drawn from ``[0, bound()]``; counts one failure."""
        delay = self.rng.uniform(0, self.bound())
        self.failures += 1
        return delay

    def opened(self, now: float) -> None:
        """A connection opened (handshake done, hello received) at ``now``."""
        self._opened_at = now
        self._served = False

    def served(self) -> None:
        """The open connection carried the server's answers beyond its greeting (a
        notification, the end of a replay, a pong): a working server, not one that
        accepts and closes. Its close then counts as a first failure again."""
        if self._opened_at is not None:
            self._served = True

    def closed(self, now: float) -> None:
        """The open connection closed at ``now``; it resets the backoff if it lasted or served."""
        if self._opened_at is not None and (
            self._served or now - self._opened_at >= self.stable_after
        ):
            self.failures = 0
        self._opened_at = None
        self._served = False

    def reset(self) -> None:
        """Start over: the network came back or the machine woke up."""
        self.failures = 0
        self._opened_at = None
        self._served = False
