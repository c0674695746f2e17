"""The ASGI application: HTTP (Django), the WebSocket (Channels), and lifespan.

Lifespan starts this process's hub (doorbell listener, presence heartbeats,
token sweep) before the first connection and says goodbye to presence on
shutdown, so other processes see this one's users leave at once.
"""

from __future__ import annotations

import os
from typing import Any

import django
from channels.routing import ProtocolTypeRouter, URLRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from backend.notifications.hub import Hub  # noqa: E402
from backend.notifications.routing import websocket_urlpatterns  # noqa: E402

Scope = dict[str, Any]


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await Hub.current().start()
            except Exception as error:
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await Hub.current().stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter(websocket_urlpatterns),
        "lifespan": lifespan,
    }
)
