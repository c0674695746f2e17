"""Talking to the server: pure protocol functions, the REST client and the socket session.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any, Final

# httpx's package imports its command-line client (httpx._main: click, rich, pygments)
# whenever those happen to be installed, ~10 MB of an idle app's memory for a tool it
# never runs (encode/httpx#3547). A None entry makes that import raise ImportError,
# which httpx catches (it then defines a main() that explains the CLI is missing);
# typeshed types sys.modules without the None the import system documents.
# The frozen bundle leaves these packages out for the same reason (build.spec).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# The package's public face: the engine, the account session, headless mode and the
# UI import from here; the modules stay importable on their own (tests, benchmarks).
# Each name is imported when first asked for (PEP 562), not with the package: the tray
# icon needs ConnectionState before anything may load httpx, websockets or TLS (issue
# 20: the icon first), and a name from here costs only its own module.
_HOMES: Final = {
    "ApiClient": "tray_app.net.api",
    "InboxChange": "tray_app.net.api",
    "Tokens": "tray_app.net.api",
    "Backoff": "tray_app.net.backoff",
    "ConnectionState": "tray_app.net.connection_state",
    "StateChange": "tray_app.net.connection_state",
    "InvalidCredentials": "tray_app.net.errors",
    "LoginRequired": "tray_app.net.errors",
    "NetError": "tray_app.net.errors",
    "RequestRejected": "tray_app.net.errors",
    "redact": "tray_app.net.redaction",
    "Connector": "tray_app.net.live",
    "LiveSession": "tray_app.net.live",
    "TokenSource": "tray_app.net.live",
    "websocket_connector": "tray_app.net.live",
    "Notification": "tray_app.net.protocol",
    "PresenceChanged": "tray_app.net.protocol",
    "PresenceMember": "tray_app.net.protocol",
    "PresenceSnapshot": "tray_app.net.protocol",
    "PresenceUnsubscribed": "tray_app.net.protocol",
    "stream_connector": "tray_app.net.stream",
    "Transport": "tray_app.net.transport",
}

if TYPE_CHECKING:
    from tray_app.net import protocol
    from tray_app.net.api import ApiClient, InboxChange, Tokens
    from tray_app.net.backoff import Backoff
    from tray_app.net.connection_state import ConnectionState, StateChange
    from tray_app.net.errors import (
        InvalidCredentials,
        LoginRequired,
        NetError,
        RequestRejected,
    )
    from tray_app.net.live import Connector, LiveSession, TokenSource, websocket_connector
    from tray_app.net.protocol import (
        Notification,
        PresenceChanged,
        PresenceMember,
        PresenceSnapshot,
        PresenceUnsubscribed,
    )
    from tray_app.net.redaction import redact
    from tray_app.net.stream import stream_connector
    from tray_app.net.transport import Transport


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        if name == "protocol":
            return importlib.import_module("tray_app.net.protocol")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # asked once: later lookups do not come here
    return value


__all__ = [
    "ApiClient",
    "Backoff",
    "ConnectionState",
    "Connector",
    "InboxChange",
    "InvalidCredentials",
    "LiveSession",
    "LoginRequired",
    "NetError",
    "Notification",
    "PresenceChanged",
    "PresenceMember",
    "PresenceSnapshot",
    "PresenceUnsubscribed",
    "RequestRejected",
    "StateChange",
    "TokenSource",
    "Tokens",
    "Transport",
    "protocol",
    "redact",
    "stream_connector",
    "websocket_connector",
]
