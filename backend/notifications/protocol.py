"""The WebSocket protocol, server side: pure parse and encode functions, no I/O.

Every frame is a JSON text frame ``{"type": ..., "payload": {...}}``; a client
request may carry ``"ref"`` (a string or number it chooses), which the answer
(``ack`` or ``error``) echoes. docs/protocol.md is the reference for clients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from django.http.request import split_domain_port, validate_host

PROTOCOL_VERSION: Final = 1

# Close codes (docs/protocol.md, "Close codes").
CLOSE_TOKEN_INVALID: Final = 4001  # refresh the access token, then reconnect
CLOSE_FORBIDDEN: Final = 4003  # stop and ask the user (account disabled, origin refused)
CLOSE_POLICY: Final = 1008  # rate limit exceeded
CLOSE_TOO_BIG: Final = 1009
CLOSE_SERVER_ERROR: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_TRY_AGAIN: Final = 1013  # this socket fell too far behind; reconnect and resume

CLIENT_TYPES: Final = frozenset(
    {
        "ping",
        "resume",
        "authenticate",
        "refresh",
        "list_projects",
        "mark_read",
        "mark_unread",
        "mark_all_read",
        "delete",
        "subscribe_presence",
        "unsubscribe_presence",
        "set_status",
    }
)
STATUSES: Final = ("online", "away", "dnd")


class ProtocolError(Exception):
    """A client frame we cannot act on; becomes an ``error`` frame, never a crash."""

    def __init__(self, code: str, message: str, *, ref: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True)
class ClientFrame:
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    ref: str | int | None = None


def _ref_of(document: dict[str, Any]) -> str | int | None:
    ref = document.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None
    if isinstance(ref, str) and len(ref) > 100:
        return None
    return ref


def parse_client_frame(text: str) -> ClientFrame:
    """Decode one client text frame, or raise ProtocolError saying what is wrong."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise ProtocolError("invalid_json", "The frame is nested too deeply.") from None
    except ValueError:
        raise ProtocolError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ProtocolError("invalid_frame", 'A frame must be a JSON object with a "type".')
    ref = _ref_of(document)
    kind = document.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_frame", 'A frame must have a string "type".', ref=ref)
    if kind not in CLIENT_TYPES:
        shown = kind[:40]
        raise ProtocolError("unknown_type", f"Unknown frame type {shown!r}.", ref=ref)
    payload = document.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_frame", '"payload" must be a JSON object.', ref=ref)
    return ClientFrame(type=kind, payload=payload, ref=ref)


def encode(
    kind: str, payload: dict[str, Any] | None = None, *, ref: str | int | None = None
) -> str:
    frame: dict[str, Any] = {"type": kind, "payload": payload if payload is not None else {}}
    if ref is not None:
        frame["ref"] = ref
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def unread_count_frame(unread_count: int) -> str:
    """``encode("unread_count", {"unread_count": n})``, built without json (it follows
    every delivered notification)."""
    return f'{{"type":"unread_count","payload":{{"unread_count":{int(unread_count)}}}}}'


def encode_error(code: str, message: str, *, ref: str | int | None = None) -> str:
    return encode("error", {"code": code, "message": message}, ref=ref)


def hello_frame(
    *,
    user: dict[str, Any],
    unread_count: int,
    latest_seq: int,
    token_expires_at: float,
    max_frame_bytes: int,
    attention: dict[str, Any],
    tokens: dict[str, str] | None = None,
) -> str:
    """The first frame on every socket.

    Args:
        tokens: The pair a ``Refresh`` handshake rotated to (``{"access", "refresh"}``);
            omitted otherwise. The frame then holds credentials: it must not be logged.
    """
    payload: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "user": user,
        "unread_count": unread_count,
        "latest_seq": latest_seq,
        "token_expires_at": int(token_expires_at),
        "max_frame_bytes": max_frame_bytes,
    }
    if tokens is not None:
        # Not at either end: at DEBUG the websockets library logs every frame's first
        # 48 and last 24 characters (uvicorn.error), which the log filter cannot see.
        payload["tokens"] = tokens
    payload["attention"] = attention
    return encode("hello", payload)


def notification_frame_prefix(shared: dict[str, Any]) -> str:
    """The shared part of a ``notification_created`` frame, serialised once per broadcast.

    ``notification_frame`` splices each recipient's id, seq and read state in
    front of it, so a broadcast costs one json.dumps, not one per socket.
    """
    return json.dumps(shared, separators=(",", ":"), ensure_ascii=False)[1:]


def notification_frame_tail(prefix: str) -> str:
    """What follows a recipient's read state in every frame of one broadcast (once per
    broadcast; ``notification_frame`` with ``tail=``)."""
    return ("," + prefix if prefix != "}" else "}") + "}"


def notification_frame(prefix: str, *, inbox_id: int, seq: int, tail: str | None = None) -> str:
    """One recipient's ``notification_created`` frame.

    Args:
        prefix: ``notification_frame_prefix`` of the broadcast.
        inbox_id: The recipient's Inbox row.
        seq: The recipient's seq.
        tail: ``notification_frame_tail(prefix)``, when the caller made it once for
            many recipients (the hub's fan-out: one string built per delivery).
    """
    if tail is None:
        tail = notification_frame_tail(prefix)
    return (
        f'{{"type":"notification_created","payload":{{"id":{inbox_id},"seq":{seq},'
        f'"is_read":false,"read_at":null{tail}'
    )


def token_from_scope(scope: dict[str, Any]) -> tuple[str | None, str]:
    """The access token of a WebSocket handshake and how it came.

    Returns (token, "header") for ``Authorization: Bearer``, (token, "query") for
    ``?token=`` (browsers cannot set headers), or (None, "none").
    """
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip(), "header"
            return None, "header"
    # Only the parameter spelled exactly "token": a parser would also decode "tok%65n"
    # into it, a spelling the log redaction could miss (backend/logging_filters.py).
    query = scope.get("query_string", b"").decode("latin-1")
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if name == "token" and equals and value:
            return unquote(value), "query"
    return None, "none"


def refresh_token_from_scope(scope: dict[str, Any]) -> str | None:
    """The refresh token of a handshake's ``Authorization: Refresh <token>`` (the scheme
    in any case, as for Bearer), or None when the header is absent or of another scheme.

    A ``Refresh`` header without a token gives "": it is refused as an invalid token,
    never taken for a handshake without credentials (the session cookie's path).
    """
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            decoded: str = value.decode("latin-1")
            scheme, _, credentials = decoded.strip().partition(" ")
            return credentials.strip() if scheme.lower() == "refresh" else None
    return None


def session_cookie_from_scope(
    scope: dict[str, Any], *, name: str, own_origins: Sequence[str] = ()
) -> str | None:
    """The value of the cookie ``name`` (the web companion's login session) in a
    same-origin handshake: its ``Origin`` is the server itself (http or https on the
    ``Host`` it came to), or one of ``own_origins`` (its public address behind a proxy
    that forwards another Host: ``TRAY_CSRF_TRUSTED_ORIGINS``). None otherwise, so a
    page on another origin, to which a browser may send the cookie too, never opens a
    socket with it (cross-site WebSocket hijacking)."""
    host, origin = host_from_scope(scope), origin_from_scope(scope)
    if origin is None:
        return None
    same = host is not None and origin in (f"http://{host}", f"https://{host}")
    if not same and origin not in own_origins:
        return None
    for header, value in scope.get("headers", []):
        if header.lower() != b"cookie":
            continue
        cookies: str = value.decode("latin-1")
        for part in cookies.split(";"):
            key, equals, found = part.strip().partition("=")
            if key == name and equals and found:
                return found
    return None


def after_seq_from_scope(scope: dict[str, Any]) -> str | None:
    """The raw ``after_seq`` query parameter of a WebSocket handshake (resume at connect),
    or None when absent. Only that exact spelling counts, as for ``token``; given twice
    it is ambiguous and answered as an invalid cursor (an empty string here)."""
    query = scope.get("query_string", b"").decode("latin-1")
    found: str | None = None
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "after_seq":
            if found is not None:
                return ""
            found = unquote(value)
    return found


def origin_from_scope(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"origin":
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def host_from_scope(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"host":
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def host_allowed(host: str | None, *, allowed: list[str]) -> bool:
    """Whether a handshake's Host names this server, by Django's ALLOWED_HOSTS rules.
    A handshake without a Host header (HTTP/1.0 clients, ASGI test tools) passes when
    any host is allowed."""
    if host is None:
        return "*" in allowed
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def origin_allowed(origin: str | None, *, host: str | None, allowed: list[str]) -> bool:
    """Browser origins must be listed (or be this server itself); no Origin means a
    non-browser client, which a browser page cannot impersonate."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if host is None:
        return False
    return origin in {f"http://{host}", f"https://{host}"}


def handshake_refusal(
    scope: dict[str, Any], *, allowed_hosts: list[str], allowed_origins: list[str]
) -> str | None:
    """Why a WebSocket handshake is refused (before accept: HTTP 403), for the log; None
    when it may go on. The Host is checked first, as Django refuses such an HTTP request:
    a page whose name was rebound to this server (DNS rebinding) sends a matching Origin,
    so the origin check alone cannot."""
    host = host_from_scope(scope)
    if not host_allowed(host, allowed=allowed_hosts):
        return f"refused a WebSocket for host {host[:100] if host else None}"
    origin = origin_from_scope(scope)
    if not origin_allowed(origin, host=host, allowed=allowed_origins):
        return (
            f"refused a WebSocket from origin {origin[:100] if origin else None}: "
            "not this server; list it in TRAY_ALLOWED_ORIGINS to allow it"
        )
    return None
