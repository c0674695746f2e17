"""The WebSocket protocol, client side: pure parse and encode functions, no I/O.

docs/protocol.md is the reference. Every frame is a JSON text frame
``{"type": ..., "payload": {...}}``; answers to a request carry its ``ref``.

``parse_server_frame`` turns a text frame into one of the frozen dataclasses
below or raises :class:`FrameError`, whose message is safe to log: it names
the frame type and what is wrong, never the frame's content (which may hold
notification text or, for ``authenticate``, a token).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tray_app.net.errors import NetError

PROTOCOL_VERSION: Final = 1

# Close codes (docs/protocol.md, "Close codes").
CLOSE_TOKEN_INVALID: Final = 4001
CLOSE_FORBIDDEN: Final = 4003
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_SERVER_ERROR: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_TRY_AGAIN: Final = 1013

STATUSES: Final = ("online", "away", "dnd")

Ref = str | int | None


class FrameError(NetError):
    """A server frame the client cannot use. Its message is safe to log."""

    code = "bad_frame"
    user_message = "The server sent something this version of the app does not understand."


# --- server -> client frames ---------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    protocol: int
    user: dict[str, Any]
    unread_count: int
    latest_seq: int
    token_expires_at: float | None
    max_frame_bytes: int | None


@dataclass(frozen=True)
class NotificationCreated:
    """One notification; ``notification`` is the payload as the server sent it."""

    seq: int
    id: int
    notification: dict[str, Any]


@dataclass(frozen=True)
class NotificationUpdated:
    id: int
    is_read: bool


@dataclass(frozen=True)
class NotificationDeleted:
    id: int


@dataclass(frozen=True)
class AllRead:
    up_to_seq: int | None


@dataclass(frozen=True)
class UnreadCount:
    unread_count: int


@dataclass(frozen=True)
class CaughtUp:
    """A replay ended: every row in ``(after_seq, through_seq]`` was sent in it (but
    deleted ones). ``after_seq`` is None from servers that predate it; then the range is
    unknown and ``through_seq`` must not move a cursor."""

    through_seq: int
    replayed: int
    after_seq: int | None = None


@dataclass(frozen=True)
class ResyncRequired:
    after_seq: int
    latest_seq: int
    ref: Ref = None


@dataclass(frozen=True)
class PresenceMember:
    user: dict[str, Any]
    online: bool
    status: str
    last_seen: float | None


@dataclass(frozen=True)
class PresenceSnapshot:
    project_id: int
    members: tuple[PresenceMember, ...]
    ref: Ref = None


@dataclass(frozen=True)
class PresenceChanged:
    project_id: int
    user_id: int
    online: bool
    status: str
    last_seen: float | None


@dataclass(frozen=True)
class PresenceUnsubscribed:
    project_id: int
    reason: str


@dataclass(frozen=True)
class Ack:
    request: str
    payload: dict[str, Any] = field(default_factory=dict)
    ref: Ref = None


@dataclass(frozen=True)
class ServerErrorFrame:
    """An ``error`` frame: a request failed, or (without ref) the socket is about to close."""

    code: str
    message: str
    ref: Ref = None


@dataclass(frozen=True)
class Pong:
    payload: dict[str, Any] = field(default_factory=dict)
    ref: Ref = None


ServerFrame = (
    Hello
    | NotificationCreated
    | NotificationUpdated
    | NotificationDeleted
    | AllRead
    | UnreadCount
    | CaughtUp
    | ResyncRequired
    | PresenceSnapshot
    | PresenceChanged
    | PresenceUnsubscribed
    | Ack
    | ServerErrorFrame
    | Pong
)


# --- field readers: one set for frames and REST answers alike --------------------------


class FieldReader:
    """Typed reads of a server document's fields: a frame's payload, a REST answer.

    Every problem raises ``error(message)``, whose message names the document and the
    field but never the value, so it is safe to log. The frames' reader
    (``FRAME_FIELDS``) raises ``FrameError``; the REST client's (net/api.py) raises
    ``NotOurServer``.
    """

    def __init__(self, error: Callable[[str], NetError]) -> None:
        self._error = error

    def document(self, value: object, what: str) -> Mapping[str, Any]:
        """``value`` itself, which must be a JSON object."""
        if not isinstance(value, dict):
            raise self._error(f"{what} is not a JSON object")
        return value

    def whole(self, doc: Mapping[str, Any], key: str, what: str, *, minimum: int = 0) -> int:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._error(f"{what}: {key} must be a whole number >= {minimum}")
        return value

    def optional_whole(
        self, doc: Mapping[str, Any], key: str, what: str, *, present: bool = False
    ) -> int | None:
        """A whole number from 0, or None for null (or, unless ``present``, missing)."""
        if doc.get(key) is None:
            if present and key not in doc:
                raise self._error(f"{what}: {key} is missing")
            return None
        return self.whole(doc, key, what)

    def whole_list(self, doc: Mapping[str, Any], key: str, what: str) -> list[int]:
        values = doc.get(key)
        if not isinstance(values, list) or any(
            isinstance(value, bool) or not isinstance(value, int) for value in values
        ):
            raise self._error(f"{what}: {key} must be a list of whole numbers")
        return list(values)

    def flag(self, doc: Mapping[str, Any], key: str, what: str) -> bool:
        value = doc.get(key)
        if not isinstance(value, bool):
            raise self._error(f"{what}: {key} must be true or false")
        return value

    def text(self, doc: Mapping[str, Any], key: str, what: str, *, non_empty: bool = False) -> str:
        value = doc.get(key)
        if non_empty and (not isinstance(value, str) or not value):
            raise self._error(f"{what}: {key} must be non-empty text")
        if not isinstance(value, str):
            raise self._error(f"{what}: {key} must be text")
        return value

    def optional_number(self, doc: Mapping[str, Any], key: str, what: str) -> float | None:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(f"{what}: {key} must be a number")
        return float(value)

    def object(self, doc: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
        value = doc.get(key)
        if not isinstance(value, dict):
            raise self._error(f"{what}: {key} must be an object")
        return value


FRAME_FIELDS = FieldReader(FrameError)
_frame = FRAME_FIELDS


def _ref(document: Mapping[str, Any]) -> Ref:
    ref = document.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None
    return ref


def _presence_member(raw: object) -> PresenceMember:
    if not isinstance(raw, dict):
        raise FrameError("presence_snapshot: every member must be an object")
    kind = "presence_snapshot member"
    user = _frame.object(raw, "user", kind)
    _frame.whole(user, "id", kind, minimum=1)
    return PresenceMember(
        user=user,
        online=_frame.flag(raw, "online", kind),
        status=_frame.text(raw, "status", kind),
        last_seen=_frame.optional_number(raw, "last_seen", kind),
    )


def _parse(kind: str, payload: dict[str, Any], ref: Ref) -> ServerFrame:
    match kind:
        case "hello":
            return Hello(
                protocol=_frame.whole(payload, "protocol", kind, minimum=1),
                user=_frame.object(payload, "user", kind),
                unread_count=_frame.whole(payload, "unread_count", kind),
                latest_seq=_frame.whole(payload, "latest_seq", kind),
                token_expires_at=_frame.optional_number(payload, "token_expires_at", kind),
                max_frame_bytes=_frame.optional_whole(payload, "max_frame_bytes", kind),
            )
        case "notification_created":
            return NotificationCreated(
                seq=_frame.whole(payload, "seq", kind, minimum=1),
                id=_frame.whole(payload, "id", kind, minimum=1),
                notification=payload,
            )
        case "notification_updated":
            updates = _frame.object(payload, "updates", kind)
            return NotificationUpdated(
                id=_frame.whole(payload, "id", kind, minimum=1),
                is_read=_frame.flag(updates, "is_read", kind),
            )
        case "notification_deleted":
            return NotificationDeleted(id=_frame.whole(payload, "id", kind, minimum=1))
        case "all_read":
            return AllRead(up_to_seq=_frame.optional_whole(payload, "up_to_seq", kind))
        case "unread_count":
            return UnreadCount(unread_count=_frame.whole(payload, "unread_count", kind))
        case "caught_up":
            return CaughtUp(
                through_seq=_frame.whole(payload, "through_seq", kind),
                replayed=_frame.whole(payload, "replayed", kind),
                after_seq=_frame.optional_whole(payload, "after_seq", kind),
            )
        case "resync_required":
            return ResyncRequired(
                after_seq=_frame.whole(payload, "after_seq", kind),
                latest_seq=_frame.whole(payload, "latest_seq", kind),
                ref=ref,
            )
        case "presence_snapshot":
            members = payload.get("members")
            if not isinstance(members, list):
                raise FrameError(f"{kind}: members must be a list")
            return PresenceSnapshot(
                project_id=_frame.whole(payload, "project_id", kind, minimum=1),
                members=tuple(_presence_member(member) for member in members),
                ref=ref,
            )
        case "presence_changed":
            return PresenceChanged(
                project_id=_frame.whole(payload, "project_id", kind, minimum=1),
                user_id=_frame.whole(payload, "user_id", kind, minimum=1),
                online=_frame.flag(payload, "online", kind),
                status=_frame.text(payload, "status", kind),
                last_seen=_frame.optional_number(payload, "last_seen", kind),
            )
        case "presence_unsubscribed":
            return PresenceUnsubscribed(
                project_id=_frame.whole(payload, "project_id", kind, minimum=1),
                reason=_frame.text(payload, "reason", kind),
            )
        case "ack":
            return Ack(request=_frame.text(payload, "for", kind), payload=payload, ref=ref)
        case "error":
            return ServerErrorFrame(
                code=_frame.text(payload, "code", kind),
                message=_frame.text(payload, "message", kind),
                ref=ref,
            )
        case "pong":
            return Pong(payload=payload, ref=ref)
    # A newer server may add frame types (docs/protocol.md, "Versioning").
    raise FrameError(f"unknown frame type {kind[:40]!r}")


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Decode one server frame.

    Raises:
        FrameError: the frame is not JSON, not an envelope, of an unknown type, or
            its payload lacks a field the client needs. The message names the
            type and field only.
    """
    if isinstance(text, bytes):
        raise FrameError("binary frame: the protocol uses text frames only")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("frame is not valid JSON") from None
    if not isinstance(document, dict):
        raise FrameError("frame is not a JSON object")
    kind = document.get("type")
    if not isinstance(kind, str):
        raise FrameError('frame has no "type"')
    payload = document.get("payload", {})
    if not isinstance(payload, dict):
        raise FrameError(f"{kind[:40]}: payload must be an object")
    return _parse(kind, payload, _ref(document))


# --- client -> server frames ---------------------------------------------------------

ClientType = Literal[
    "ping",
    "resume",
    "authenticate",
    "mark_read",
    "mark_unread",
    "mark_all_read",
    "delete",
    "subscribe_presence",
    "unsubscribe_presence",
    "set_status",
]


def encode(kind: ClientType, payload: Mapping[str, Any] | None = None, *, ref: Ref = None) -> str:
    """One client frame as JSON text."""
    document: dict[str, Any] = {"type": kind, "payload": dict(payload or {})}
    if ref is not None:
        document["ref"] = ref
    return json.dumps(document, separators=(",", ":"))


def _checked_seq(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0")
    return value


def encode_ping(ref: Ref = None) -> str:
    return encode("ping", ref=ref)


def encode_resume(after_seq: int, *, ref: Ref = None) -> str:
    return encode("resume", {"after_seq": _checked_seq(after_seq, "after_seq")}, ref=ref)


def encode_authenticate(token: str, *, ref: Ref = None) -> str:
    return encode("authenticate", {"token": token}, ref=ref)


def encode_presence(
    kind: Literal["subscribe_presence", "unsubscribe_presence"], project_id: int, *, ref: Ref = None
) -> str:
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError("project_id must be a positive whole number")
    return encode(kind, {"project_id": project_id}, ref=ref)


def encode_set_status(status: str, *, ref: Ref = None) -> str:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return encode("set_status", {"status": status}, ref=ref)
