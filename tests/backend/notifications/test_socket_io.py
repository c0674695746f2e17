"""The socket's I/O layer (backend/notifications/socket_io.py), through the real ASGI app."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from backend.users.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_a_frame_that_needs_no_database_is_answered_while_the_database_is_busy(
    connect: Any,
) -> None:
    """A ping is answered while the database thread is held by something else: the
    socket no longer hops to that thread before each message (Channels' consumer
    closed old connections there first, so every frame, connect and disconnect of
    every socket queued behind the slowest database call)."""
    user = await database_sync_to_async(User.objects.create_user)(username="alice", password="pw")
    client = await connect(user)
    started, release = threading.Event(), threading.Event()

    def hold_the_database_thread() -> None:
        started.set()
        release.wait(timeout=30)

    held = asyncio.ensure_future(sync_to_async(hold_the_database_thread)())
    try:
        assert await asyncio.to_thread(started.wait, 10)
        await client.send("ping", {"n": 1}, ref="p")
        pong = await client.receive(timeout=3)
        assert (pong["type"], pong["ref"], pong["payload"]) == ("pong", "p", {"n": 1})
    finally:
        release.set()
        await held
