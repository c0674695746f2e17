"""The WebSocket protocol, client side: pure parse and encode functions, no I/O.

docs/protocol.md is the reference. Every frame is a JSON text frame
``{"type": ..., "payload": {...}}``; answers to a request carry its ``ref``.

``parse_server_frame`` turns a text frame into one of the frozen records
below or raises :class:`FrameError`, whose message is safe to log: it names
the frame type and what is wrong, never the frame's content (which may hold
notification text or, for ``authenticate``, a token).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from tray_app.attention import Attention, AttentionFormatError, parse_attention
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


class TokenGrant(msgspec.Struct, frozen=True):
    """A new token pair handed over on the socket: ``hello`` after a handshake with the
    refresh token, or the ``ack`` of a ``refresh`` frame. The refresh token it replaced
    is spent."""

    access: str
    refresh: str

    def __repr__(self) -> str:
        return "TokenGrant()"  # no token shown: safe to log


class Hello(msgspec.Struct, frozen=True):
    protocol: int
    user: dict[str, Any]
    unread_count: int
    latest_seq: int
    token_expires_at: float | None
    max_frame_bytes: int | None
    # None: a server older than attention settings, or settings this client cannot read
    # (the last known ones stay in force).
    attention: Attention | None = None
    # Only after a handshake with the refresh token (``Authorization: Refresh``).
    tokens: TokenGrant | None = None  # its repr hides the tokens


PRIORITIES: Final = frozenset({"low", "normal", "high", "urgent"})
DEFAULT_PRIORITY: Final = "normal"
# The server's ids and seqs are 64-bit signed (the backend's MAX_SEQ), as SQLite's INTEGER.
MAX_ID: Final = 2**63 - 1


class Notification(msgspec.Struct, frozen=True):
    """One notification as the server sent it (docs/protocol.md, ``notification_created``;
    the REST inbox's rows have the same shape), read once by ``parse_notification``.

    Text fields are plain text (never HTML), and storable: a lone surrogate from a
    ``\\ud800`` escape is replaced.

    Attributes:
        created_at: None when missing or unreadable (whoever keeps it chooses a time).
        actor: Who caused it (``id``, ``username``, names), or None.
        project_id: Its project, or None; ``project_title`` is None with it.
        data: The event's extra fields; empty when none.
    """

    id: int
    seq: int
    title: str = ""
    message: str = ""
    event_type: str = ""
    priority: str = DEFAULT_PRIORITY
    url: str = ""
    created_at: datetime | None = None
    actor: dict[str, Any] | None = None
    project_id: int | None = None
    project_title: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    is_read: bool = False


class NotificationCreated(msgspec.Struct, frozen=True):
    """One notification pushed live (or replayed)."""

    notification: Notification

    @property
    def seq(self) -> int:
        return self.notification.seq

    @property
    def id(self) -> int:
        return self.notification.id


class NotificationUpdated(msgspec.Struct, frozen=True):
    id: int
    is_read: bool


class NotificationDeleted(msgspec.Struct, frozen=True):
    id: int


class AllRead(msgspec.Struct, frozen=True):
    up_to_seq: int | None


class UnreadCount(msgspec.Struct, frozen=True):
    unread_count: int


class CaughtUp(msgspec.Struct, frozen=True):
    """A replay ended: every row in ``(after_seq, through_seq]`` was sent in it (but
    deleted ones). ``after_seq`` is None from servers that predate it; then the range is
    unknown and ``through_seq`` must not move a cursor."""

    through_seq: int
    replayed: int
    after_seq: int | None = None


class ResyncRequired(msgspec.Struct, frozen=True):
    after_seq: int
    latest_seq: int
    ref: Ref = None


class PresenceMember(msgspec.Struct, frozen=True):
    user: dict[str, Any]
    online: bool
    status: str
    last_seen: float | None


class PresenceSnapshot(msgspec.Struct, frozen=True):
    project_id: int
    members: tuple[PresenceMember, ...]
    ref: Ref = None


class PresenceChanged(msgspec.Struct, frozen=True):
    project_id: int
    user_id: int
    online: bool
    status: str
    last_seen: float | None


class AttentionChanged(msgspec.Struct, frozen=True):
    """The user's attention settings changed on some device (docs/protocol.md, "Attention")."""

    attention: Attention


class PresenceUnsubscribed(msgspec.Struct, frozen=True):
    project_id: int
    reason: str


class Ack(msgspec.Struct, frozen=True):
    request: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    ref: Ref = None


class ServerErrorFrame(msgspec.Struct, frozen=True):
    """An ``error`` frame: a request failed, or (without ref) the socket is about to close."""

    code: str
    message: str
    ref: Ref = None


class Pong(msgspec.Struct, frozen=True):
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
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
    | AttentionChanged
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

    def whole(
        self,
        doc: Mapping[str, Any],
        key: str,
        what: str,
        *,
        minimum: int = 0,
        maximum: int | None = None,
    ) -> int:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._error(f"{what}: {key} must be a whole number >= {minimum}")
        if maximum is not None and value > maximum:
            raise self._error(f"{what}: {key} must be a whole number <= {maximum}")
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


def parse_notification(
    payload: object, *, what: str = "notification", fields: FieldReader = FRAME_FIELDS
) -> Notification:
    """A notification the server sent, read once.

    Only ``id`` and ``seq`` are required, whole numbers from 1: what deduplication and
    the cursor rest on. The other fields are read leniently (a missing title is "", an
    unknown priority "normal", an unreadable ``created_at`` None, a project without a
    usable id none), because refusing a notification over a cosmetic field would lose
    it for good.

    Args:
        payload: The decoded JSON.
        what: What the document is, for messages.
        fields: The reader whose error a bad id or seq raises (``FRAME_FIELDS``:
            ``FrameError``; the REST client's: ``NotOurServer``).

    Raises:
        NetError: not an object, or ``id`` or ``seq`` unusable (the message names no
            content).
    """
    document = fields.document(payload, what)
    seq = fields.whole(document, "seq", what, minimum=1, maximum=MAX_ID)
    notification_id = fields.whole(document, "id", what, minimum=1, maximum=MAX_ID)
    priority = document.get("priority")
    if not isinstance(priority, str):
        priority = DEFAULT_PRIORITY
    project = document.get("project")
    project_id = project_title = None
    if isinstance(project, dict):
        project_id = _lenient_id(project.get("id"))
        if project_id is not None:
            project_title = _lenient_text(project.get("title"))
    actor = document.get("actor")
    data = document.get("data")
    return Notification(
        id=notification_id,
        seq=seq,
        title=_lenient_text(document.get("title")),
        message=_lenient_text(document.get("message")),
        event_type=_lenient_text(document.get("event_type")),
        priority=priority
        if isinstance(priority, str) and priority in PRIORITIES
        else DEFAULT_PRIORITY,
        url=_lenient_text(document.get("url")),
        created_at=_lenient_moment(document.get("created_at")),
        actor=actor if isinstance(actor, dict) else None,
        project_id=project_id,
        project_title=project_title,
        data=data if isinstance(data, dict) else {},
        is_read=document.get("is_read") is True,
    )


def _lenient_text(value: object) -> str:
    if isinstance(value, str):
        if value.isascii():
            return value
        # A JSON "\ud800" escape decodes to a lone surrogate, which UTF-8 cannot hold.
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _lenient_id(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        return None
    return value


def _lenient_moment(value: object) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; a time without a zone is UTC (the
    server always sends "...Z"); None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


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


def _hello_attention(raw: object) -> Attention | None:
    if raw is None:
        return None
    try:
        return parse_attention(raw)
    except AttentionFormatError:
        return None


def parse_token_grant(payload: Mapping[str, Any], what: str) -> TokenGrant | None:
    """The ``tokens`` of a ``hello`` or a ``refresh`` ack; None when it has none.

    Raises:
        FrameError: ``tokens`` is there but not two non-empty texts.
    """
    raw = payload.get("tokens")
    if raw is None:
        return None
    tokens = _frame.document(raw, f"{what}.tokens")
    return TokenGrant(
        access=_frame.text(tokens, "access", f"{what}.tokens", non_empty=True),
        refresh=_frame.text(tokens, "refresh", f"{what}.tokens", non_empty=True),
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
                attention=_hello_attention(payload.get("attention")),
                tokens=parse_token_grant(payload, kind),
            )
        case "notification_created":
            return NotificationCreated(parse_notification(payload, what=kind))
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
        case "attention_changed":
            try:
                return AttentionChanged(parse_attention(payload))
            except AttentionFormatError as error:
                raise FrameError(f"{kind}: {error}") from None
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
    "refresh",
    "list_projects",
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


def encode_refresh(refresh_token: str, *, ref: Ref = None) -> str:
    """Trade the refresh token for a new pair on the open socket (the ``ack`` has it)."""
    return encode("refresh", {"token": refresh_token}, ref=ref)


def encode_list_projects(ref: Ref) -> str:
    """Ask for the user's projects (the ``ack`` lists them); ``ref`` pairs the answer."""
    return encode("list_projects", ref=ref)


def encode_presence(
    kind: Literal["subscribe_presence", "unsubscribe_presence"], project_id: int, *, ref: Ref = None
) -> str:
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError("project_id must be a positive whole number")
    return encode(kind, {"project_id": project_id}, ref=ref)


def encode_set_status(status: str, *, ref: Ref = None) -> str:
    """``dnd`` is do-not-disturb on every device, until turned off (the server's
    attention settings); ``online`` and ``away`` end it."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return encode("set_status", {"status": status}, ref=ref)
