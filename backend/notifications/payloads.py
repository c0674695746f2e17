"""The JSON shape of a notification, shared by REST, the WebSocket and the doorbell.

Pure functions: a Message is rendered once (``message_payload``) and each
recipient's frame adds only its own id, seq and read state, so a broadcast to
thousands of sockets does not rebuild the shared part per socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.notifications.models import Inbox, Message


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def message_payload(message: Message) -> dict[str, Any]:
    """Everything about a notification that is the same for every recipient."""
    actor = message.actor
    return {
        "title": message.title,
        "message": message.message,
        "event_type": message.event_type,
        "priority": message.priority,
        "url": message.url,
        "created_at": _timestamp(message.created_at),
        "actor": (
            {
                "id": actor.pk,
                "username": actor.username,
                "first_name": actor.first_name,
                "last_name": actor.last_name,
            }
            if actor is not None
            else None
        ),
        "project": (
            {"id": message.project_id, "title": message.project_title}
            if message.project_id is not None
            else None
        ),
        "data": message.data,
    }


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
