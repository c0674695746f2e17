"""Talking to the server: pure protocol functions, the REST client and the socket session.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""

import sys

# httpx's package imports its command-line client (httpx._main: click, rich, pygments)
# whenever those happen to be installed, ~10 MB of an idle app's memory for a tool it
# never runs (encode/httpx#3547). A None entry makes that import raise ImportError,
# which httpx catches (it then defines a main() that explains the CLI is missing);
# typeshed types sys.modules without the None the import system documents.
# The frozen bundle leaves these packages out for the same reason (build.spec).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# The package's public face: the engine, the account session, headless mode and the
# UI import from here; the modules stay importable on their own (tests, benchmarks).
# After the line above, so that api.py's httpx import already skips its CLI.
from tray_app.net import protocol  # noqa: E402
from tray_app.net.api import ApiClient, InboxChange, Tokens  # noqa: E402
from tray_app.net.backoff import Backoff  # noqa: E402
from tray_app.net.errors import (  # noqa: E402
    InvalidCredentials,
    LoginRequired,
    NetError,
    RequestRejected,
    redact,
)
from tray_app.net.live import (  # noqa: E402
    ConnectionState,
    Connector,
    LiveSession,
    StateChange,
    TokenSource,
    websocket_connector,
)
from tray_app.net.protocol import (  # noqa: E402
    Notification,
    PresenceChanged,
    PresenceMember,
    PresenceSnapshot,
    PresenceUnsubscribed,
)
from tray_app.net.stream import stream_connector  # noqa: E402
from tray_app.net.transport import Transport  # noqa: E402

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
