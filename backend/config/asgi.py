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

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402

from backend.login_lane import LoginLane  # noqa: E402
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


class SharedThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler without a new thread per request.

    Django runs each request's synchronous part in a thread of its own
    (``ThreadSensitiveContext``), so every request started a thread, opened a
    database connection, and on SQLite queued on the write lock against the
    other requests' threads. Here every request's synchronous part runs in the
    one thread that Channels' consumers already share, with its persistent
    connection: a publish request cost 9.0 ms of server CPU before and 6.2 ms
    after (bench/publish_throughput.py), and writers never contend inside a
    process. Throughput scales out with processes, not threads.

    The whole middleware chain and the view then run synchronously in that
    thread, entered once per request. Django's async path would hop threads
    for every sync-only middleware (WhiteNoise) and twice for each
    ``MiddlewareMixin`` one (``process_request``/``process_response`` each go
    through ``sync_to_async``): about a dozen hops per API request, all for
    synchronous code.

    The exception: requests that check a password (backend/login_lane.py) run the
    same chain on the login lane's own bounded threads, so hashing never holds
    up the shared one.
    """

    def __init__(self) -> None:
        super().__init__()
        synchronous = BaseHandler()
        synchronous.load_middleware(is_async=False)
        self._get_response = synchronous.get_response
        self._respond = sync_to_async(synchronous.get_response, thread_sensitive=True)
        self._login_lane = LoginLane(
            workers=settings.TRAY["LOGIN_WORKERS"], queue=settings.TRAY["LOGIN_QUEUE"]
        )

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if self._login_lane.takes(request):
            return await self._login_lane.respond(self._get_response, request)
        response: HttpResponseBase = await self._respond(request)
        return response

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        await self.handle(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": SharedThreadASGIHandler(),
        "websocket": URLRouter(websocket_urlpatterns),
        "lifespan": lifespan,
    }
)
