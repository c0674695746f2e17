"""Background tasks (tray_app/tasks.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tray_app.tasks import BackgroundTasks

pytestmark = pytest.mark.asyncio


async def test_a_task_is_kept_until_it_ends() -> None:
    tasks = BackgroundTasks()
    release = asyncio.Event()
    finished: list[str] = []

    async def work() -> None:
        await release.wait()
        finished.append("done")

    task = tasks.spawn(work())
    assert len(tasks) == 1
    release.set()
    await task
    assert finished == ["done"]
    assert len(tasks) == 0


async def test_cancel_all_ends_every_running_task(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    cancelled: list[int] = []
    waiting = [asyncio.Event() for _ in range(3)]

    async def forever(number: int) -> None:
        waiting[number].set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(number)
            raise

    started = [tasks.spawn(forever(number)) for number in range(3)]
    for event in waiting:
        await event.wait()
    with caplog.at_level(logging.ERROR, logger="tray_app.tasks"):
        await tasks.cancel_all()
    assert sorted(cancelled) == [0, 1, 2]
    assert all(task.cancelled() for task in started)
    assert len(tasks) == 0
    assert not caplog.records  # a cancelled task is not a failure


async def test_a_failing_task_is_logged_as_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()

    async def broken() -> None:
        raise ValueError("a bug")

    with caplog.at_level(logging.ERROR, logger="tray_app.tasks"):
        await asyncio.wait([tasks.spawn(broken())])
    [record] = caplog.records
    assert record.getMessage() == "a background task failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
