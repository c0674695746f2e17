"""Peer P1: notifications the way the Channels documentation builds them.

An ``AsyncJsonWebsocketConsumer`` that, on connect, joins one group for its
user, one for each of the user's projects, one for the user's role and one for
everyone, and leaves them on disconnect; a publish is one ``group_send`` to
the audience's group, and the consumer's handler relays the event as a JSON
frame. No authentication and no database: the user is named in the query
string, and so are its other groups when the benchmark sets them
(``/ws/?user=u17&groups=project.3,role.r1``: ``user.u17``, each listed group
and ``everyone``); without ``groups`` the projects and role are derived from
the user's name (``groups_of``).
Served by Daphne, on Channels' in-memory layer by default, or on
channels-redis when ``BENCH_P1_REDIS_URL`` is set (peer "P1-redis").

It speaks the benchmark ``Fleet``'s subset of the product's protocol:
``{"type": "hello"}`` once the groups are joined, then
``{"type": "notification_created", "payload": {"title": ..., "message": ...}}``.

HTTP: ``GET /healthz`` and ``GET /publish?title=TEXT[&group=NAME][&body=TEXT]``
(default group ``everyone``; ``body`` becomes the payload's ``message``, empty
by default, so frames can be as large as the product's), which returns once
``group_send`` has.

Run: ``python -m daphne -b 127.0.0.1 -p PORT bench.peers.p1_channels:application``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

import django
from django.conf import settings

if not settings.configured:
    _redis_url = os.environ.get("BENCH_P1_REDIS_URL")
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        CHANNEL_LAYERS={
            "default": (
                {
                    "BACKEND": "channels_redis.core.RedisChannelLayer",
                    # redis-py 8 reads with a 5 s socket timeout by default, the same
                    # as channels-redis's 5 s BZPOPMIN, so idle consumers die with
                    # "Timeout reading" (redis/redis-py#4091); no read timeout, as before.
                    "CONFIG": {"hosts": [{"address": _redis_url, "socket_timeout": None}]},
                }
                if _redis_url
                else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
            )
        },
    )
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

urlpatterns: list[Any] = []
PROJECTS_PER_USER = 2
PROJECT_COUNT = 20


def groups_of(user: str) -> list[str]:
    """The groups a user's socket joins: user, projects, role, everyone."""
    number = int(user.removeprefix("u") or 0)
    projects = [f"project.{(number + k) % PROJECT_COUNT}" for k in range(PROJECTS_PER_USER)]
    return [f"user.{user}", *projects, "role.member", "everyone"]


def groups_from_query(query: dict[str, list[str]]) -> list[str]:
    """The groups named by the socket's query string, or ``groups_of`` its user."""
    user = query.get("user", ["u0"])[0]
    if "groups" not in query:
        return groups_of(user)
    listed = [name for value in query["groups"] for name in value.split(",") if name]
    return list(dict.fromkeys([f"user.{user}", *listed, "everyone"]))


class NotificationConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Join the user's groups, relay every ``notify`` event as a frame."""

    async def connect(self) -> None:
        query = parse_qs(self.scope["query_string"].decode())
        self.joined = groups_from_query(query)
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello"})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def notify(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "notification_created", "payload": event["payload"]})


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/healthz`` and ``/publish``; everything else is 404."""
    status, body = 404, b"not found\n"
    if scope["path"] == "/healthz":
        status, body = 200, b"ok\n"
    elif scope["path"] == "/publish":
        query = parse_qs(scope["query_string"].decode())
        title = query.get("title", [""])[0]
        group = query.get("group", ["everyone"])[0]
        payload = {"title": title, "message": query.get("body", [""])[0]}
        await get_channel_layer().group_send(group, {"type": "notify", "payload": payload})
        status, body = 200, b"sent\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter([path("ws/", NotificationConsumer.as_asgi())]),
    }
)
