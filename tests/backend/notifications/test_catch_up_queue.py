"""A catch-up fits the socket's send queue, however small ``TRAY_WS_SEND_QUEUE`` is set.

Found by tests/e2e/test_client_faults.py: with the queue (20) below the replay batch
(200), every resume of a client that had fallen behind was answered by a batch that
filled the queue and a ``caught_up`` that found it full, so the server closed the socket
with 1013 again and again and the client never caught up.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.users.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def alice_with(count: int) -> User:
    user = User.objects.create_user(username="alice", password="pw")
    for n in range(count):
        notification_create(audience=Audience(users=(user.pk,)), title=f"n{n + 1}")
    return user


@pytest.mark.parametrize("queue", [1, 4, 8, 20])
async def test_a_resume_backlog_larger_than_the_send_queue_arrives_whole(
    connect: Any, settings: Any, queue: int
) -> None:
    settings.TRAY = {**settings.TRAY, "WS_SEND_QUEUE": queue, "REPLAY_BATCH": 200}
    alice = await alice_with(50)
    client = await connect(alice)

    await client.send("resume", {"after_seq": 0}, ref="r")
    frames = [await client.receive() for _ in range(51)]

    assert [f["payload"]["seq"] for f in frames[:50]] == list(range(1, 51))
    assert frames[50]["type"] == "caught_up"
    assert frames[50]["payload"] == {"after_seq": 0, "through_seq": 50, "replayed": 50}
    # The socket is still open and serving: a ping is answered.
    await client.send("ping", {}, ref="p")
    assert (await client.receive())["type"] == "pong"
