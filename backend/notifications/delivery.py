"""What services call after a write: ring the doorbell once the write is durable.

The database is the record; the doorbell (``doorbell.current()``: in-process plus a
"look" datagram to the other server processes, or Redis) only says something
changed. ``ring`` is called from synchronous code (services, in any thread),
usually through ``ring_on_commit`` so that nothing is announced before it is
durable (shared/DESIGN.md, invariant 1).

This module imports neither the hub nor the consumer: the hub listens to the
doorbell (``doorbell.Listener``), so services -> delivery -> doorbell -> events is
a chain with no way back (tests/backend/notifications/test_events.py).
"""

from __future__ import annotations

import logging

from django.db import transaction

from backend.notifications import doorbell
from backend.notifications.doorbell import current_namespace
from backend.notifications.events import DEPLOYMENT, Event, ForeignDoorbell
from backend.notifications.events import decode as decode_doorbell
from backend.notifications.events import encode as encode_doorbell

# The wire helpers' earlier home: kept importable from here.
__all__ = [
    "DEPLOYMENT",
    "Event",
    "ForeignDoorbell",
    "current_namespace",
    "decode_doorbell",
    "encode_doorbell",
    "ring",
    "ring_on_commit",
]

logger = logging.getLogger(__name__)


def ring(event: Event) -> None:
    """Announce ``event`` to every server process. Never raises: the record is safe,
    and clients that miss a doorbell catch up from the database on their next frame
    or reconnect."""
    try:
        doorbell.current().ring(event)
    except Exception:
        logger.exception("doorbell failed for a %s event", event.get("kind"))


def ring_on_commit(event: Event) -> None:
    """Ring once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: ring(event), robust=True)
