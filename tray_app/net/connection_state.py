"""Where a live session stands: the state the tray, the settings and headless mode show.

Its own module, importing nothing of the network stack, so that the tray icon can be
drawn from it before httpx, websockets and TLS are loaded (issue 20: the icon first).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from tray_app.net.errors import NetError


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    LOGIN_REQUIRED = "login_required"
    STOPPED = "stopped"


class StateChange(msgspec.Struct, frozen=True):
    """Where the session stands.

    Attributes:
        state: the new state.
        next_attempt_at: for RECONNECTING and OFFLINE, when the next attempt starts
            (epoch seconds, for a UI to show "retrying in 12 s").
        error: why the last connection ended or failed, if it did.
        fallback_reason: while the session uses the HTTP stream, why (for the UI:
            "Connected (HTTP fallback: WebSockets are blocked on this network)"); None
            on the socket.
    """

    state: ConnectionState
    next_attempt_at: float | None = None
    error: NetError | None = None
    fallback_reason: str | None = None
