"""The JSON shape of a notification, shared by REST, the WebSocket and the doorbell.

Pure functions: a Message is rendered once (``message_payload``) and each
recipient's frame adds only its own id, seq and read state, so a broadcast to
thousands of sockets does not rebuild the shared part per socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from backend.notifications.models import Inbox, Message


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def message_payload(message: Message) -> dict[str, Any]:
    """Everything about a notification that is the same for every recipient."""
    actor = message.actor
    return _shared(
        message.title,
        message.message,
        message.event_type,
        message.priority,
        message.url,
        message.created_at,
        None if actor is None else (actor.pk, actor.username, actor.first_name, actor.last_name),
        message.project_id,
        message.project_title,
        message.data,
    )


def _shared(
    title: str,
    message: str,
    event_type: str,
    priority: str,
    url: str,
    created_at: datetime | None,
    actor: tuple[int, str, str, str] | None,
    project_id: int | None,
    project_title: str,
    data: Any,
) -> dict[str, Any]:
    return {
        "title": title,
        "message": message,
        "event_type": event_type,
        "priority": priority,
        "url": url,
        "created_at": _timestamp(created_at),
        "actor": (
            None
            if actor is None
            else {
                "id": actor[0],
                "username": actor[1],
                "first_name": actor[2],
                "last_name": actor[3],
            }
        ),
        "project": ({"id": project_id, "title": project_title} if project_id is not None else None),
        "data": data,
    }


# The columns of one Inbox row with its message and actor, in the order
# ``values_payload`` reads them: what a replay selects instead of model instances.
PAYLOAD_COLUMNS = (
    "id",
    "seq",
    "read_at",
    "message__title",
    "message__message",
    "message__event_type",
    "message__priority",
    "message__url",
    "message__created_at",
    "message__actor_id",
    "message__actor__username",
    "message__actor__first_name",
    "message__actor__last_name",
    "message__project_id",
    "message__project_title",
    "message__data",
)


# The first PAYLOAD_COLUMNS are the recipient's own (id, seq, read_at); the rest are
# the message's, the same for every recipient.
RECIPIENT_COLUMNS = 3


def values_payload(values: Sequence[Any]) -> dict[str, Any]:
    """An Inbox row read as ``PAYLOAD_COLUMNS`` values, in ``inbox_payload``'s shape.

    A replay of thousands of rows reads plain values: building a model instance per
    row (and its init signals) cost more than the query itself.
    """
    inbox_id, seq, read_at = values[:RECIPIENT_COLUMNS]
    shared = shared_values_payload(values[RECIPIENT_COLUMNS:])
    return recipient_payload(shared, inbox_id=inbox_id, seq=seq, read_at=read_at)


def shared_values_payload(values: Sequence[Any]) -> dict[str, Any]:
    """``message_payload`` from the message's ``PAYLOAD_COLUMNS`` values (those after
    the first ``RECIPIENT_COLUMNS``)."""
    title, message, event_type, priority, url, created_at = values[:6]
    actor_id, username, first_name, last_name, project_id, project_title, data = values[6:]
    actor = None if actor_id is None else (actor_id, username, first_name, last_name)
    return _shared(
        title,
        message,
        event_type,
        priority,
        url,
        created_at,
        actor,
        project_id,
        project_title,
        data,
    )


def recipient_payload(
    shared: dict[str, Any], *, inbox_id: int, seq: int, read_at: datetime | None = None
) -> dict[str, Any]:
    """One recipient's view of a notification: the shared part plus id, seq and read state."""
    return {
        "id": inbox_id,
        "seq": seq,
        "is_read": read_at is not None,
        "read_at": _timestamp(read_at),
        **shared,
    }


def inbox_payload(row: Inbox) -> dict[str, Any]:
    """A stored Inbox row (with its message) as the client sees it."""
    return recipient_payload(
        message_payload(row.message), inbox_id=row.pk, seq=row.seq, read_at=row.read_at
    )
