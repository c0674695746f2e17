"""The publish lane's hop to the database thread (backend/notifications/publish_lane.py)."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import sync_to_async

from backend.notifications.publish_lane import PublishLane
from backend.notifications.publish_route import Answer, Request

pytestmark = pytest.mark.asyncio


async def test_the_writer_runs_on_the_thread_that_holds_the_database_connection() -> None:
    # The lane skips asgiref's own hop for its executor; should asgiref ever move
    # thread-sensitive work elsewhere, two threads would hold two SQLite connections
    # and queue on the write lock. This pins that they are one thread.
    seen: list[int] = []

    def write(requests: list[Request], *, group_commit: bool) -> list[Answer | None]:
        seen.append(threading.get_ident())
        return [Answer(201, b"{}") for _ in requests]

    lane = PublishLane(queue=4, batch=2, group_commit=False, write=write)
    answer = await lane.submit(Request(b"Api-Key k", b"{}"))
    shared = await sync_to_async(threading.get_ident, thread_sensitive=True)()
    assert answer == Answer(201, b"{}")
    assert seen == [shared]
    assert shared != threading.get_ident()
