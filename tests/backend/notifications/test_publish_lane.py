"""The publish lane's hop to the database thread (backend/notifications/publish_lane.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import SyncToAsync, sync_to_async

from backend.notifications.publish_lane import PublishLane
from backend.notifications.publish_route import Answer, Request

pytestmark = pytest.mark.asyncio


async def test_the_writer_runs_on_the_thread_that_holds_the_database_connection() -> None:
    # The lane skips asgiref's own hop for its executor; should asgiref ever move
    # thread-sensitive work elsewhere, two threads would hold two SQLite connections
    # and queue on the write lock. This pins that they are one thread.
    seen: list[int] = []

    def write(
        requests: list[Request], *, group_commit: bool, rows_later: bool
    ) -> list[Answer | None]:
        seen.append(threading.get_ident())
        return [Answer(201, b"{}") for _ in requests]

    lane = PublishLane(queue=4, batch=2, group_commit=False, write=write)
    answer = await lane.submit(Request(b"Api-Key k", b"{}"))
    shared = await sync_to_async(threading.get_ident, thread_sensitive=True)()
    assert answer == Answer(201, b"{}")
    assert seen == [shared]
    assert shared != threading.get_ident()


class _Writer:
    """A writer and a settle that record, in order, what the database thread did."""

    def __init__(self, *, settle_fails: int = 0) -> None:
        self.log: list[str] = []
        self.later: list[bool] = []
        self.settle_fails = settle_fails
        self.pending = 0  # rows left for later: one per write
        self.settled = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def write(
        self, requests: list[Request], *, group_commit: bool, rows_later: bool
    ) -> list[Answer | None]:
        self.log.extend(f"write {request.body.decode()}" for request in requests)
        self.pending += len(requests)
        self.later.append(rows_later)
        return [Answer(201, b"{}") for _ in requests]

    def lane(
        self, *, batch: int, settle_delay: float | None, settle_rows: int | None = None
    ) -> PublishLane:
        """A lane of 8 that writes and settles here; each write leaves one row pending."""
        return PublishLane(
            queue=8,
            batch=batch,
            group_commit=False,
            write=self.write,
            settle_delay=settle_delay,
            settle=self.settle,
            settle_rows=settle_rows,
            pending_rows=lambda: self.pending,
        )

    def settle(self) -> bool:
        self.log.append("settle")
        if self.settle_fails:
            self.settle_fails -= 1
            raise RuntimeError("database is locked")
        self.pending = 0
        self.loop.call_soon_threadsafe(self.settled.set)
        return False  # nothing more pending


async def test_rows_are_settled_once_after_the_publishes_of_a_moment() -> None:
    writer = _Writer()
    lane = writer.lane(batch=1, settle_delay=0.05)
    answers = await asyncio.gather(*(lane.submit(Request(b"k", b"%d" % n)) for n in range(3)))
    assert answers == [Answer(201, b"{}")] * 3
    assert "settle" not in writer.log  # not before its delay
    await asyncio.wait_for(writer.settled.wait(), 5)
    assert writer.log == ["write 0", "write 1", "write 2", "settle"]
    assert writer.later == [True, True, True]

    writer.settled.clear()
    await lane.submit(Request(b"k", b"3"))
    await asyncio.wait_for(writer.settled.wait(), 5)
    assert writer.log[-2:] == ["write 3", "settle"]


async def test_a_failed_settle_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    writer = _Writer(settle_fails=1)
    lane = writer.lane(batch=4, settle_delay=0.01)
    await lane.submit(Request(b"k", b"0"))
    await asyncio.wait_for(writer.settled.wait(), 5)
    assert writer.log == ["write 0", "settle", "settle"]
    assert "could not write the pending inbox rows" in caplog.text


async def test_without_a_delay_rows_are_written_with_their_publish() -> None:
    writer = _Writer()
    lane = writer.lane(batch=4, settle_delay=None)
    await lane.submit(Request(b"k", b"0"))
    assert writer.later == [False]


async def test_publishes_waiting_behind_a_settle_are_answered_when_the_thread_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The database thread's executor refuses work only while the process exits, which a
    # test cannot do to the shared executor: its submit is made to refuse, as it then
    # does. The settle is made due as its timer would make it.
    writer = _Writer()
    lane = writer.lane(batch=4, settle_delay=60)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(SyncToAsync.single_thread_executor, "submit", refuse)
    lane._settle_due = True
    answer = await asyncio.wait_for(lane.submit(Request(b"k", b"0")), 5)
    assert answer is None  # the full stack's to answer, not left waiting
    assert writer.log == []


async def test_enough_waiting_rows_settle_before_the_delay() -> None:
    writer = _Writer()
    lane = writer.lane(batch=1, settle_delay=3600, settle_rows=2)
    await lane.submit(Request(b"k", b"0"))
    assert "settle" not in writer.log  # one row waits: the delay (an hour) decides
    await lane.submit(Request(b"k", b"1"))
    await asyncio.wait_for(writer.settled.wait(), 5)
    assert writer.log == ["write 0", "write 1", "settle"]
    await lane.submit(Request(b"k", b"2"))
    assert writer.log == ["write 0", "write 1", "settle", "write 2"]  # the count restarted
