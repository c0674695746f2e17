"""Single publishes of one server process, written in batches, a bounded number at once.

Every request's publish (``publish_route.Request``) waits in one queue; one batch at
a time, up to ``PUBLISH_BATCH`` of them, goes to the thread that holds the
process's database connection (backend/config/asgi.py) in one hop, and with group
commit in one transaction (``publish_route.publish_batch``). While a batch is being
written the next one gathers, so under load the cost of the hop, and with group
commit the cost of the commit, is shared. At most ``PUBLISH_QUEUE`` publishes are
queued or being written; past that a publish is answered 503 with Retry-After at
once (``busy_answer``) instead of waiting without bound. Nothing answered 503 was
written, so a retry with the same idempotency key creates exactly one notification.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence

from asgiref.sync import SyncToAsync

from backend.notifications.publish_route import Answer, Request, publish_batch

RETRY_AFTER_SECONDS = 1
BUSY_CODE = "publish_busy"
BUSY_MESSAGE = "The server is writing many notifications right now. Try again in a second."
BUSY_BODY = json.dumps(
    {"error": {"code": BUSY_CODE, "message": BUSY_MESSAGE}}, separators=(",", ":")
).encode()


class PublishLane:
    """The bounded queue of one process's fast publishes, and its one writer."""

    def __init__(
        self,
        *,
        queue: int,
        batch: int,
        group_commit: bool,
        write: Callable[..., list[Answer | None]] = publish_batch,
    ) -> None:
        self.limit = max(1, queue)
        self.batch = max(1, batch)
        self.group_commit = group_commit
        self._write = write
        self._waiting: list[tuple[Request, asyncio.Future[Answer | None]]] = []
        self._admitted = 0
        self._writer: asyncio.Task[None] | None = None

    def full(self) -> bool:
        return self._admitted >= self.limit

    async def submit(self, request: Request) -> Answer | None:
        """The answer to ``request``, or None where the full stack must answer it.

        Call on the event loop only (the counts need no lock), after ``full()`` said no.
        """
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._admitted += 1
        self._waiting.append((request, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        try:
            return await future
        finally:
            self._admitted -= 1

    async def _drain(self) -> None:
        taken: list[tuple[Request, asyncio.Future[Answer | None]]] = []
        try:
            while self._waiting:
                taken, self._waiting = self._waiting[: self.batch], self._waiting[self.batch :]
                try:
                    answers: Sequence[Answer | None] = await _on_database_thread(
                        functools.partial(
                            self._write,
                            [request for request, _ in taken],
                            group_commit=self.group_commit,
                        )
                    )
                except Exception:  # the full stack answers, and reports it
                    answers = [None] * len(taken)
                for (_, future), answered in zip(taken, answers, strict=True):
                    if not future.done():
                        future.set_result(answered)
        finally:
            # Only when cancelled (the loop is closing): a batch may be half written,
            # so its requests are not handed on (that could publish twice); they fail.
            for _, future in [*taken, *self._waiting]:
                future.cancel()
            self._waiting = []
            self._writer = None


def _on_database_thread(
    work: Callable[[], list[Answer | None]],
) -> asyncio.Future[list[Answer | None]]:
    """Run ``work`` on the thread that holds this process's database connection.

    That is the thread ``sync_to_async(thread_sensitive=True)`` uses outside a
    ``ThreadSensitiveContext`` (the server's requests and consumers run there:
    backend/config/asgi.py), reached here straight through its executor: asgiref's
    own hop (context copies, thread-local bookkeeping) cost about as much CPU as the
    rest of a fast publish's event-loop side. tests/backend/notifications/
    test_publish_lane.py pins that both land on the same thread.
    """
    return asyncio.get_running_loop().run_in_executor(SyncToAsync.single_thread_executor, work)
