"""Requests that check a password run on threads of their own, a bounded number at once.

Every other request and every socket share one thread (backend/config/asgi.py).
A password check is ~0.3 s of PBKDF2 by design, so eight login loops on that
thread once held an authenticated request for ~1.8 s. The lane's threads hash
beside it instead (hashlib releases the GIL while it works), at most
``LOGIN_WORKERS`` at a time with ``LOGIN_QUEUE`` more waiting; past that a
login is answered 503 with Retry-After at once rather than queued without
bound. The rate limit (backend/users/throttling.py) runs first in the lane,
before any hashing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

# POSTs to these paths check or hash a password (logins, password changes, new people).
LOGIN_PATHS = frozenset(
    {"/api/auth/token/", "/admin/login/", "/api/auth/password/", "/api/users/", "/password/"}
)
RETRY_AFTER_SECONDS = 2
# Added to the lane threads' nice value by default (TRAY_LOGIN_NICENESS): on one busy
# core a password check waits for the shared thread rather than the other way round
# (bench/login_stall.py). The price: a check also waits for any other busy process in
# the server's cgroup (a service's own under systemd or in a container), at +10 for
# about a tenth of a core each.
LANE_NICENESS = 10
#: The highest nice value Linux has.
MAX_NICENESS = 19
BUSY_MESSAGE = "The server is checking many logins right now. Try again in a few seconds."


class LoginLane:
    """A bounded pool for the password-checking requests of one server process."""

    def __init__(self, *, workers: int, queue: int, niceness: int = LANE_NICENESS) -> None:
        """The threads start with the first password check.

        Args:
            workers: Password checks at once.
            queue: Logins that may wait for a worker; past that, 503.
            niceness: Added to each lane thread's nice value (0: the process's own).
        """
        self._workers = max(1, workers)
        self._limit = self._workers + max(0, queue)
        self._niceness = max(0, niceness)
        self._executor: ThreadPoolExecutor | None = None
        self._admitted = 0

    @staticmethod
    def takes(request: HttpRequest) -> bool:
        return request.method == "POST" and request.path_info in LOGIN_PATHS

    async def respond(
        self, get_response: Callable[[HttpRequest], HttpResponseBase], request: HttpRequest
    ) -> HttpResponseBase:
        """``get_response(request)`` on a lane thread, or 503 when the lane is full.

        Called on the event loop only, so the admission count needs no lock.
        """
        if self._admitted >= self._limit:
            return busy_response(request)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self._workers,
                thread_name_prefix="login-lane",
                initializer=_lower_priority,
                initargs=(self._niceness,),
            )
        self._admitted += 1
        try:
            run = sync_to_async(_respond, thread_sensitive=False, executor=self._executor)
            response: HttpResponseBase = await run(get_response, request)
            return response
        finally:
            self._admitted -= 1


def _lower_priority(niceness: int) -> None:
    """Let the thread everyone shares go first when a core is busy hashing (Linux nices
    threads one by one; elsewhere the lane runs at the process's priority)."""
    if niceness <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(MAX_NICENESS, current + niceness))


def _respond(
    get_response: Callable[[HttpRequest], HttpResponseBase], request: HttpRequest
) -> HttpResponseBase:
    # Django's request signals tidy connections on the shared thread only; a lane thread
    # keeps its own, so it drops a broken or obsolete one itself (a restarted database).
    close_old_connections()
    try:
        return get_response(request)
    finally:
        close_old_connections()


def busy_response(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {"error": {"code": "login_busy", "message": BUSY_MESSAGE}}, status=503
        )
    else:
        response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
