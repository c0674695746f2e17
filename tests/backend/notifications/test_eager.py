"""step_eagerly: a coroutine that need not wait finishes at once; one that waits is
finished (or cancelled) by a task, with its result, exception and cancellation intact."""

from __future__ import annotations

import asyncio

import pytest

from backend.notifications.eager import step_eagerly

pytestmark = pytest.mark.asyncio


async def test_a_coroutine_that_need_not_wait_runs_now() -> None:
    done: list[str] = []
    ready = asyncio.Event()
    ready.set()

    async def send() -> None:
        await ready.wait()  # already set: no suspension
        done.append("sent")

    assert step_eagerly(send()) is None
    assert done == ["sent"]


async def test_its_exception_is_raised_at_once() -> None:
    async def send() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        step_eagerly(send())


async def test_one_that_waits_is_finished_by_a_task() -> None:
    done: list[str] = []
    writable = asyncio.Event()

    async def send() -> None:
        done.append("started")
        await writable.wait()
        await asyncio.sleep(0)
        done.append("sent")

    rest = step_eagerly(send())
    assert rest is not None
    assert done == ["started"]

    async def finish() -> None:
        await rest

    task = asyncio.ensure_future(finish())
    await asyncio.sleep(0)
    assert done == ["started"]
    writable.set()
    await asyncio.wait_for(task, 5)
    assert done == ["started", "sent"]


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    cleaned: list[str] = []

    async def send() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("cancelled inside")

    rest = step_eagerly(send())
    assert rest is not None

    async def finish() -> None:
        await rest

    task = asyncio.ensure_future(finish())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled inside"]
