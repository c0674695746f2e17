"""What a log line is about: the request or socket, and the user, of the code logging it.

Context variables, so whatever logs (Django, DRF, uvicorn's access log, our own
modules, code run in the database thread by ``database_sync_to_async``) is tagged
without passing anything along. Each request and each socket runs in its own
asyncio task, whose context is its own copy:

- ``backend/config/asgi.py`` gives every HTTP request an id (``request_id``) as it
  enters the handler, the proxy's ``X-Request-ID`` when it sends a plausible one
  (nginx's ``$request_id``), so the proxy's log and ours can be joined; a fast
  publish answered below ASGI (backend/config/publish_protocol.py) gets a context of
  its own with its id, in which the publish lane writes it;
- the WebSocket consumer and the HTTP stream set ``socket_id`` (the hub's id, the one
  presence keys in Redis) and ``user_id`` once they know them;
- REST authentication and the web companion's session check set ``user_id``, an API
  key's set ``api_key`` (the key's prefix, as the admin lists it; never the key).

The hub delivers in contexts of its own (backend/notifications/doorbell.py), not in the
publisher's; what it calls on a socket logs under that socket's ids with
``about_socket`` (``extra=``) and starts its tasks in ``socket_context``.

The JSON log format (``TRAY_LOG_FORMAT=json``, backend/logging_json.py) writes them.
"""

from __future__ import annotations

import re
import secrets
from contextvars import Context, ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("tray_request_id", default=None)
socket_id: ContextVar[str | None] = ContextVar("tray_socket_id", default=None)
user_id: ContextVar[int | None] = ContextVar("tray_user_id", default=None)
api_key: ContextVar[str | None] = ContextVar("tray_api_key", default=None)
# The attribute of a log record that carries the ids it is about, in place of the
# context's (``about_socket``).
RECORD_IDS = "tray_ids"

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


def bind_api_key(prefix: str) -> None:
    """Tag this task's log lines with the API key that authenticated: its prefix only
    (``tnk_`` and 8 characters, stored and shown by the admin), never the key."""
    api_key.set(prefix)


def adopt(context: Context) -> None:
    """Tag this task's log lines with the caller ``context`` authenticated (the fast
    publish's, written in a context of its own on the database thread)."""
    if (uid := context.get(user_id)) is not None:
        user_id.set(uid)
    if (prefix := context.get(api_key)) is not None:
        api_key.set(prefix)


def socket_context(sid: str | None, uid: int | None) -> Context:
    """A fresh context carrying only a socket's ids: for a task started on a socket's
    behalf by whoever called it (the hub's delivery, another request)."""
    context = Context()
    if sid is not None:
        context.run(bind_socket, sid, uid)
    else:
        context.run(bind_user, uid)
    return context


def about_socket(sid: str | None, uid: int | None) -> dict[str, Any]:
    """``extra=`` for a line about a socket, logged by whatever code runs (the hub's
    call into it): the line carries that socket's ids instead of the context's."""
    ids: dict[str, Any] = {}
    if sid is not None:
        ids["socket_id"] = sid
    if uid:
        ids["user_id"] = uid
    return {RECORD_IDS: ids}


def current() -> dict[str, Any]:
    """The ids known here, only those that are set."""
    found: dict[str, Any] = {}
    if (rid := request_id.get()) is not None:
        found["request_id"] = rid
    if (sid := socket_id.get()) is not None:
        found["socket_id"] = sid
    if (uid := user_id.get()) is not None:
        found["user_id"] = uid
    if (prefix := api_key.get()) is not None:
        found["api_key"] = prefix
    return found
