"""The hub's two contracts, as types: the doorbell events it hands out, and the sockets
it hands them to.

A leaf module: it imports nothing of the project, so services (which build events),
the doorbell (which carries them), the hub (which dispatches them) and the consumer
(which is a ``ClientSocket``) can all import it without importing each other. The
import graph of ``backend`` has no cycle; tests/backend/notifications/test_events.py
pins that.

Events are JSON-safe dicts (``TypedDict``), one type per ``kind``, so they cross a
process boundary (Redis) as they are. ``encode`` / ``decode`` are that wire form,
stamped with the sending deployment's namespace (``namespace.deployment_namespace``):
a process drops what another deployment sent, should their channels ever meet.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, Protocol, TypedDict, cast, get_args

# The key of an event's deployment namespace on the wire (never seen by dispatch).
DEPLOYMENT = "deployment"
# When the event was rung (epoch seconds, the ringing process's clock).
RUNG_AT = "rung_at"


class NotificationEvent(TypedDict):
    """A notification was stored: its shared content, and each recipient's row."""

    kind: Literal["notification"]
    message_id: int
    shared: dict[str, Any]  # payloads.message_payload
    recipients: list[list[int]]  # [[user_id, inbox_id, seq], ...]


class ReadStateEvent(TypedDict):
    """One user's read state changed (on any of their devices)."""

    kind: Literal["read_state"]
    user_id: int
    updates: list[list[Any]]  # [[inbox_id, is_read], ...]
    deleted: list[int]
    all_read_up_to: int | None
    unread_count: int
    # The newest seq unread_count includes (absent from servers before it was added).
    latest_seq: NotRequired[int]


class UserDisabledEvent(TypedDict):
    """An account was deactivated: its sockets close with 4003."""

    kind: Literal["user_disabled"]
    user_id: int


class SessionsEndedEvent(TypedDict):
    """Login sessions ended (logout, password change, deactivation, reuse)."""

    kind: Literal["sessions_ended"]
    user_id: int
    session_ids: list[str]
    reason: str  # LoginSession.END_*


class MembershipRemovedEvent(TypedDict):
    """A user left a project: their sockets stop watching its presence."""

    kind: Literal["membership_removed"]
    user_id: int
    project_id: int


class PresenceEvent(TypedDict):
    """A user's presence changed; told to the watchers of their projects."""

    kind: Literal["presence"]
    user_id: int
    user: dict[str, Any] | None  # selectors.user_summary
    project_ids: list[int]
    state: dict[str, Any]  # PresenceState.as_payload


class AttentionEvent(TypedDict):
    """A user's attention settings changed (backend/attention): every device of theirs
    is told, and do-not-disturb shows in their presence."""

    kind: Literal["attention"]
    user_id: int
    attention: dict[str, Any]  # backend.attention.selectors.attention_payload


Event = (
    NotificationEvent
    | ReadStateEvent
    | UserDisabledEvent
    | SessionsEndedEvent
    | MembershipRemovedEvent
    | PresenceEvent
    | AttentionEvent
)
Kind = Literal[
    "notification",
    "read_state",
    "user_disabled",
    "sessions_ended",
    "membership_removed",
    "presence",
    "attention",
]
KINDS: frozenset[str] = frozenset(get_args(Kind))


class ForeignDoorbell(ValueError):
    """A doorbell message that is not this deployment's."""

    def __init__(self, deployment: object) -> None:
        super().__init__(f"a doorbell of another deployment ({deployment!r})")
        self.deployment = deployment


def encode(event: Event, deployment: str, *, rung_at: float | None = None) -> str:
    """The wire form of ``event`` (one Redis message), stamped with its deployment, and
    with the time it was rung (``time.time()``) when given (the doorbell lag metric)."""
    stamped = {**event, DEPLOYMENT: deployment}
    if rung_at is not None:
        stamped[RUNG_AT] = rung_at
    return json.dumps(stamped, separators=(",", ":"))


def decode(raw: bytes | str, deployment: str) -> Event:
    """The event in a wire message, if ``deployment`` sent it (``decode_timed`` without
    the time it was rung)."""
    return decode_timed(raw, deployment)[0]


def decode_timed(raw: bytes | str, deployment: str) -> tuple[Event, float | None]:
    """The event in a wire message, if ``deployment`` sent it, and when it was rung
    (None: not stamped).

    The kind is not checked here: the hub logs and ignores a kind it does not know
    (a newer server's event during a rolling upgrade).

    Raises:
        ForeignDoorbell: it carries another deployment's namespace, or none (an older
            server, a hand-typed PUBLISH).
        ValueError: it is not a JSON object.
    """
    try:
        event = json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        event = None
    if not isinstance(event, dict):
        raise ValueError("a doorbell message must be a JSON object")
    sender = event.pop(DEPLOYMENT, None)
    if sender != deployment:
        raise ForeignDoorbell(sender)
    rung_at = event.pop(RUNG_AT, None)
    if not isinstance(rung_at, int | float) or isinstance(rung_at, bool):
        rung_at = None
    return cast(Event, event), rung_at


class ClientSocket(Protocol):
    """What the hub needs of a client socket (the consumer; shared/interfaces item 5).

    The hub never awaits a socket: every method only queues work on it, so one slow
    client cannot stall a broadcast.
    """

    @property
    def user_id(self) -> int: ...

    @property
    def session_id(self) -> str: ...

    @property
    def socket_id(self) -> str: ...

    @property
    def token_expires_at(self) -> float:
        """Epoch seconds; the hub closes the socket with 4001 once they pass."""
        ...

    @property
    def watching(self) -> set[int]:
        """The projects whose presence the socket watches (the hub adds and removes)."""
        ...

    def deliver_notification(self, seq: int, frame: str) -> None:
        """Send a ``notification_created`` frame with this seq (or catch up on a gap)."""
        ...

    def deliver_frames(self, frames: list[str]) -> None:
        """Queue frames as they are."""
        ...

    def deliver_read_state(
        self, frames: list[str], *, unread_count: int, latest_seq: int | None
    ) -> None:
        """Queue a read-state change's frames (the last its ``unread_count``), the count
        being as of ``latest_seq`` (None: unknown, an older server's event)."""
        ...

    def close_with(self, code: int) -> None:
        """Close with this code (after the frames already queued)."""
        ...

    def request_catch_up(self) -> None:
        """Doorbells may have been missed: replay from the database after ``sent_seq``."""
        ...
