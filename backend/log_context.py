"""What a log line is about: the request or socket, and the user, of the code logging it.

Context variables, so whatever logs (Django, DRF, uvicorn's access log, our own
modules, code run in the database thread by ``database_sync_to_async``) is tagged
without passing anything along. Each request and each socket runs in its own
asyncio task, whose context is its own copy:

- ``backend/config/asgi.py`` gives every HTTP request an id (``request_id``) as it
  enters the handler, the proxy's ``X-Request-ID`` when it sends a plausible one
  (nginx's ``$request_id``), so the proxy's log and ours can be joined;
- the WebSocket consumer and the HTTP stream set ``socket_id`` (the hub's id, the one
  presence keys in Redis) and ``user_id`` once they know them;
- REST authentication and the web companion's session check set ``user_id``.

The JSON log format (``TRAY_LOG_FORMAT=json``, backend/logging_json.py) writes them.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("tray_request_id", default=None)
socket_id: ContextVar[str | None] = ContextVar("tray_socket_id", default=None)
user_id: ContextVar[int | None] = ContextVar("tray_user_id", default=None)

# What a proxy's request id may look like to be taken as it is (nginx's $request_id is
# 32 hex digits); anything else is replaced, so no client writes into our log lines.
_PLAUSIBLE_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")
_REQUEST_ID_HEADER = b"x-request-id"


def start_request(scope: dict[str, Any]) -> str:
    """Tag this task's log lines with a new request id (or the proxy's); returns it."""
    given: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER:
            given = value
            break
    rid = (
        given.decode("ascii")
        if given is not None and _PLAUSIBLE_ID.fullmatch(given)
        else secrets.token_hex(8)
    )
    request_id.set(rid)
    return rid


def bind_socket(sid: str, uid: int | None = None) -> None:
    """Tag this task's log lines with a socket (WebSocket or HTTP stream) and its user."""
    socket_id.set(sid)
    if uid:
        user_id.set(uid)


def bind_user(uid: int | None) -> None:
    """Tag this task's log lines with the authenticated user."""
    if uid:
        user_id.set(uid)


def current() -> dict[str, Any]:
    """The ids known here, only those that are set."""
    found: dict[str, Any] = {}
    if (rid := request_id.get()) is not None:
        found["request_id"] = rid
    if (sid := socket_id.get()) is not None:
        found["socket_id"] = sid
    if (uid := user_id.get()) is not None:
        found["user_id"] = uid
    return found
