"""The HTTP stream (Server-Sent Events), server side: pure parse and encode, no I/O.

The stream at ``/api/stream/`` carries the socket's frames (protocol.py) to clients
whose network passes HTTPS but breaks WebSockets. Each frame is one event::

    id: 43                      <- notification_created only: its seq
    data: {"type": "notification_created", "payload": {...}}
                                <- a blank line ends the event

A ``retry:`` line opens the body, ``: ping`` comments keep idle proxies from cutting
it, and a ``closed`` frame ends it where the socket would close. docs/protocol.md,
"HTTP fallback (Server-Sent Events)", is the reference for clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from django.http.cookie import parse_cookie

from backend.errors import InvalidInput
from backend.notifications import protocol, selectors
from backend.numbers import positive_id

STREAM_PATH: Final = "/api/stream/"
# How long an EventSource waits before it reconnects by itself (ms).
RETRY_MS: Final = 3000
PRELUDE: Final = b"retry: %d\n\n" % RETRY_MS
HEARTBEAT: Final = b": ping\n\n"
# The most projects one stream watches (?watch=, repeated).
MAX_WATCH: Final = 100

# Every frame of a notification starts so (protocol.notification_frame, and the
# replay's protocol.encode of payloads.recipient_payload): its seq follows the id.
_NOTIFICATION_HEAD: Final = '{"type":"notification_created","payload":{"id":'
_SEQ_KEY: Final = ',"seq":'
# Characters that are no line end in SSE or JSON but are one to str.splitlines, which
# line readers such as httpx's iter_lines use: escaped, the JSON text means the same.
_SPLITLINES_SAFE: Final = str.maketrans(
    {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_UNSAFE: Final = frozenset("\x85\u2028\u2029")

# What a ``closed`` frame says for each close code (docs/protocol.md, "Close codes").
_CLOSED: Final[dict[int, tuple[str, str]]] = {
    protocol.CLOSE_TOKEN_INVALID: (
        "token_invalid",
        "The access token expired or its session ended: refresh it, then reconnect "
        "with your cursor.",
    ),
    protocol.CLOSE_FORBIDDEN: (
        "account_disabled",
        "This account is disabled. Ask an administrator.",
    ),
    protocol.CLOSE_SERVER_ERROR: ("server_error", "The server could not go on; reconnect."),
    protocol.CLOSE_RESTART: ("server_restart", "The server is restarting; reconnect."),
    protocol.CLOSE_TRY_AGAIN: (
        "too_far_behind",
        "This stream fell too far behind; reconnect with your cursor.",
    ),
}


def frame_seq(frame: str) -> int | None:
    """The seq of a ``notification_created`` frame (its event's ``id``); None for any
    other frame."""
    if not frame.startswith(_NOTIFICATION_HEAD):
        if '"type":"notification_created"' not in frame[:60]:
            return None
        return _seq_of_document(frame)  # not the server's usual key order
    start = frame.find(_SEQ_KEY, len(_NOTIFICATION_HEAD))
    end = frame.find(",", start + len(_SEQ_KEY))
    digits = frame[start + len(_SEQ_KEY) : end]
    if start < 0 or end < 0 or not digits.isdigit():
        return _seq_of_document(frame)
    return int(digits)


def _seq_of_document(frame: str) -> int | None:
    document = json.loads(frame)
    seq = document.get("payload", {}).get("seq") if isinstance(document, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def event(frame: str) -> str:
    """One frame (a JSON text, with no line break in it) as one event, blank line
    included; a notification's carries ``id: <seq>``, so that an EventSource's
    automatic reconnect sends its seq back as ``Last-Event-ID``."""
    if not _UNSAFE.isdisjoint(frame):
        frame = frame.translate(_SPLITLINES_SAFE)
    seq = frame_seq(frame)
    if seq is None:
        return f"data: {frame}\n\n"
    return f"id: {seq}\ndata: {frame}\n\n"


def events(frames: Iterable[str]) -> bytes:
    """Frames as consecutive events, one write's worth."""
    return "".join(event(frame) for frame in frames).encode()


def closed_frame(code: int) -> str:
    """The last frame of a stream the server ends: ``{"type": "closed", "payload":
    {"code", "reason", "message"}}``, ``code`` being the socket's close code."""
    reason, message = _CLOSED.get(code, ("closed", "The server ended the stream; reconnect."))
    return protocol.encode("closed", {"code": code, "reason": reason, "message": message})


@dataclass(frozen=True)
class StreamRequest:
    """What a stream's URL and headers ask for, checked."""

    after_seq: int | None
    watch: tuple[int, ...]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _query_values(scope: dict[str, Any], name: str) -> list[str]:
    """Every value of the parameter spelled exactly ``name`` (as protocol.py reads
    ``token`` and ``after_seq``: an encoded spelling of the name is another name)."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            values.append(unquote(value))
    return values


def stream_request(scope: dict[str, Any]) -> StreamRequest:
    """The cursor and the watched projects of a stream request.

    The cursor is the ``Last-Event-ID`` header (an EventSource reconnecting sends the
    seq of the last notification it got) or else ``?after_seq=``: the header wins, as
    it is newer than the URL the EventSource keeps reusing. ``?watch=<project id>``
    may be repeated.

    Raises:
        InvalidInput: ``invalid_cursor`` (not a whole number from 0 to 2^63-1, empty,
            or ``after_seq`` given twice), ``invalid_project`` (a ``watch`` that is no
            project id, or more than ``MAX_WATCH`` of them).
    """
    raw = _header(scope, b"last-event-id")
    name = "Last-Event-ID"
    if raw is None or not raw.strip():
        raw, name = protocol.after_seq_from_scope(scope), "after_seq"
    after = None if raw is None else selectors.validate_seq(raw, name=name)
    watch: list[int] = []
    for value in _query_values(scope, "watch"):
        project_id = positive_id(value)
        if project_id is None:
            raise InvalidInput("watch must be a project id", code="invalid_project")
        if project_id not in watch:
            watch.append(project_id)
    if len(watch) > MAX_WATCH:
        raise InvalidInput(f"watch at most {MAX_WATCH} projects", code="invalid_project")
    return StreamRequest(after_seq=after, watch=tuple(watch))


def session_cookie(
    scope: dict[str, Any], *, name: str, own_origins: Iterable[str] = ()
) -> str | None:
    """The web companion's session cookie, from a page of this server only.

    As for the socket (``protocol.session_cookie_from_scope``) when the request has an
    ``Origin``. A browser sends none with a same-origin GET (an ``EventSource`` on the
    server's own page), so then the cookie counts only when the browser says the request
    came from this origin (``Sec-Fetch-Site: same-origin``, a header no page can set).
    """
    if protocol.origin_from_scope(scope) is not None:
        return protocol.session_cookie_from_scope(scope, name=name, own_origins=list(own_origins))
    if _header(scope, b"sec-fetch-site") != "same-origin":
        return None
    cookies = "; ".join(
        value.decode("latin-1")
        for key, value in scope.get("headers", [])
        if key.lower() == b"cookie"
    )
    return parse_cookie(cookies).get(name) or None


def cors_headers(scope: dict[str, Any], *, allowed_origins: list[str]) -> list[tuple[bytes, bytes]]:
    """The headers that let a page on an allowed origin read the stream (no
    credentials: such a page sends its token as ``?token=`` or ``Authorization``)."""
    origin = protocol.origin_from_scope(scope)
    if origin is None or not protocol.origin_allowed(
        origin, host=protocol.host_from_scope(scope), allowed=allowed_origins
    ):
        return []
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]
