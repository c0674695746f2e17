"""The server's WebSocket paths, and the answer on every other path.

Channels' ``URLRouter`` raises ``ValueError`` for a handshake on a path it does not
route, which uvicorn logs with a traceback and answers with HTTP 500. A client that
dials a wrong URL (a typo, an old client's path, a scanner) is not a server error:
``KnownPathsOnly`` answers it HTTP 404 with the API's error body, and logs one line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.routing import URLRouter
from django.urls import Resolver404, path

from backend.notifications.consumers import NotificationConsumer

logger = logging.getLogger(__name__)

SOCKET_PATH = "/ws/notifications/"

websocket_urlpatterns = [
    path("ws/notifications/", NotificationConsumer.as_asgi()),
]

Scope = dict[str, Any]

NOT_FOUND_BODY = json.dumps(
    {
        "error": {
            "code": "not_found",
            "message": (
                f"There is no WebSocket at this path; the notification socket is {SOCKET_PATH}."
            ),
        }
    },
    separators=(",", ":"),
).encode()


def routed(router: URLRouter, scope: Scope) -> bool:
    """Whether ``router`` has a route for the scope's path (as ``URLRouter`` matches it:
    under ``root_path``, without the leading slash)."""
    full = scope.get("path") or ""
    root_path = scope.get("root_path", "")
    if root_path and not full.startswith(root_path):
        return False
    remaining = full[len(root_path) :].lstrip("/")
    for route in router.routes:
        try:
            if route.pattern.match(remaining):
                return True
        except Resolver404:
            continue
    return False


class KnownPathsOnly:
    """``router`` for the paths it routes; HTTP 404 for a handshake on any other.

    Where the server does not offer the ASGI ``websocket.http.response`` extension
    (uvicorn does), the handshake is closed before it is accepted, which the server
    answers with 403.
    """

    def __init__(self, router: URLRouter) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if routed(self.router, scope):
            await self.router(scope, receive, send)
            return
        await receive()  # websocket.connect
        logger.info("refused a WebSocket on the unknown path %r (404)", scope.get("path"))
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(NOT_FOUND_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": NOT_FOUND_BODY})
        else:
            await send({"type": "websocket.close"})


websocket_application = KnownPathsOnly(URLRouter(websocket_urlpatterns))
