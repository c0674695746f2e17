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

With ``settle_delay`` the writer leaves the publishes' Inbox rows for later
(backend/notifications/inbox_log.py), and the lane runs a ``settle`` step (one band of
users' rows, ``inbox_log.settle_step``) that long after a publish and again after each
step while rows may be pending, in the writer's turn, and back to back once
``settle_rows`` rows wait: the push waits only for the publish's own short
transaction, and the rows of everything published meanwhile are written together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from asgiref.sync import SyncToAsync

from backend import metrics
from backend.notifications import inbox_log
from backend.notifications.publish_route import Answer, Request, publish_batch

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
BUSY_CODE = "publish_busy"
BUSY_MESSAGE = "The server is writing many notifications right now. Try again in a second."
BUSY_BODY = json.dumps(
    {"error": {"code": BUSY_CODE, "message": BUSY_MESSAGE}}, separators=(",", ":")
).encode()


_T = TypeVar("_T")

# Called on the event loop with a publish's answer (None: the full stack answers it).
Done = Callable[[Answer | None], None]


class PublishLane:
    """The bounded queue of one process's fast publishes, and its one writer."""

    def __init__(
        self,
        *,
        queue: int,
        batch: int,
        group_commit: bool,
        write: Callable[..., list[Answer | None]] = publish_batch,
        settle_delay: float | None = None,
        settle: Callable[[], bool] = inbox_log.settle_step,
        settle_rows: int | None = None,
        pending_rows: Callable[[], int] = inbox_log.pending_rows,
    ) -> None:
        self.limit = max(1, queue)
        self.batch = max(1, batch)
        self.group_commit = group_commit
        self.settle_delay = settle_delay
        self.settle_rows = settle_rows
        self._write = metrics.timed("publish_write", write)  # on the database thread
        self._settle = settle
        self._pending_rows = pending_rows
        self._waiting: list[tuple[Request, Done]] = []
        self._admitted = 0
        self._writing = False
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settle_due = False

    def full(self) -> bool:
        return self._admitted >= self.limit

    async def submit(self, request: Request) -> Answer | None:
        """The answer to ``request``, or None where the full stack must answer it.

        Call on the event loop only (the counts need no lock), after ``full()`` said no.
        """
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()

        def done(answer: Answer | None) -> None:
            if not future.done():
                future.set_result(answer)

        self.post(request, done)
        return await future

    def post(self, request: Request, done: Done) -> None:
        """Queue ``request``; ``done`` gets its answer (None: the full stack's to answer)
        on this event loop once it is written.

        Call on the event loop only, after ``full()`` said no. The callback form spares
        the HTTP protocol (backend/config/publish_protocol.py) a task and a future per
        publish.
        """
        self._admitted += 1
        self._waiting.append((request, done))
        if not self._writing:
            self._next(asyncio.get_running_loop())

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the next batch (or the due settle) to the database thread."""
        if self._settle_due:
            self._settle_due = False
            self._hop(loop, self._settle_once, self._settled, refused=False)
            return
        taken, self._waiting = self._waiting[: self.batch], self._waiting[self.batch :]
        requests = [request for request, _ in taken]
        later = self.settle_delay is not None

        def write() -> Sequence[Answer | None]:  # on the database thread
            try:
                return self._write(requests, group_commit=self.group_commit, rows_later=later)
            except Exception:  # the full stack answers, and reports it
                return [None] * len(taken)

        refused: Sequence[Answer | None] = [None] * len(taken)
        self._hop(
            loop,
            write,
            lambda answers: self._written(loop, taken, answers),
            refused=refused,
        )

    def _hop(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[], _T],
        back: Callable[[_T], None],
        *,
        refused: _T,
    ) -> None:
        """Run ``work`` on the database thread, then ``back`` with its result on the
        loop: one hop there and one back. ``back(refused)`` at once when the thread is
        gone (the process is exiting)."""
        self._writing = True

        def run() -> None:  # on the database thread
            result = work()
            # RuntimeError: the loop closed meanwhile, and nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(back, result)

        # The thread sync_to_async(thread_sensitive=True) uses outside a
        # ThreadSensitiveContext (the server's requests and consumers run there:
        # backend/config/asgi.py), reached straight through its executor: asgiref's own
        # hop (context copies, thread-local bookkeeping), and asyncio's wrapped future,
        # cost about as much CPU as the rest of a publish's event-loop side.
        # tests/backend/notifications/test_publish_lane.py pins that it is one thread.
        try:
            SyncToAsync.single_thread_executor.submit(run)
        except RuntimeError:  # the executor is shut down (the process is exiting)
            back(refused)

    def _settle_once(self) -> bool:
        """One settle step, on the database thread; whether rows may still be pending
        (also when it failed: the next step tries again)."""
        try:
            return self._settle()
        except Exception:  # left pending: the next reader or step writes it
            logger.exception("could not write the pending inbox rows")
            return True

    def _settled(self, more: bool) -> None:
        loop = asyncio.get_running_loop()
        self._writing = False
        if more:
            self._arm_settle(loop)
        if self._waiting or self._settle_due:
            self._next(loop)

    def _arm_settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Settle ``settle_delay`` from now, unless a settle is armed or due already."""
        if self.settle_delay is None or self._settle_timer is not None or self._settle_due:
            return
        self._settle_timer = loop.call_later(self.settle_delay, self._settle_time, loop)

    def _settle_now(self) -> None:
        """Settle in the database thread's next turn (enough rows wait already)."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._settle_due = True

    def _settle_time(self, loop: asyncio.AbstractEventLoop) -> None:
        self._settle_timer = None
        self._settle_due = True
        if not self._writing:
            self._next(loop)

    def _written(
        self,
        loop: asyncio.AbstractEventLoop,
        taken: list[tuple[Request, Done]],
        answers: Sequence[Answer | None],
    ) -> None:
        self._writing = False
        self._admitted -= len(taken)
        if any(answered is not None for answered in answers):
            self._arm_settle(loop)
            if self.settle_rows is not None and self._pending_rows() >= self.settle_rows:
                self._settle_now()
        if self._waiting or self._settle_due:
            self._next(loop)
        for (_, done), answered in zip(taken, answers, strict=True):
            try:
                done(answered)
            except Exception:  # one caller's failure is not the others'
                logger.exception("a publish's answer could not be delivered")
