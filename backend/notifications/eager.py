"""Run a coroutine synchronously until it first has to wait (Python 3.12's eager tasks,
which 3.11 lacks), so that a send the transport takes at once costs no task switch."""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from typing import Any


def step_eagerly(coroutine: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run ``coroutine`` now, up to its first suspension.

    Returns None when it finished (an exception it raised propagates), or an awaitable
    that runs the rest of it (for a task to await). Cancelling that task cancels the
    coroutine where it waits, as awaiting it directly would.
    """
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return None
    return _Rest(coroutine, waiting)


class _Rest:
    """The rest of a coroutine stepped by hand, as an awaitable: each future it waits
    on goes to the task awaiting this, and what the task sends or throws goes back in."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, waiting = self._coroutine, self._waiting
        while True:
            try:
                value = yield waiting
            except BaseException as error:  # a cancellation goes in where it waits
                try:
                    waiting = coroutine.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coroutine.send(value)
                except StopIteration:
                    return
