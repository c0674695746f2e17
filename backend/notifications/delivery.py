"""The doorbell: after a commit, tell every server process that something changed.

The database is the record; this only says "look". An event is a small JSON
dict (see ``hub.Hub.dispatch`` for the kinds). In the embedded default it goes
straight to this process's hub; with ``REDIS_URL`` it is one PUBLISH that every
server process receives once, whatever the size of the audience.

``ring`` is called from synchronous code (services, in any thread), usually
through ``ring_on_commit`` so that nothing is announced before it is durable
(shared/DESIGN.md, invariant 1).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

REDIS_CHANNEL = "tray-notifier:doorbell"

Event = dict[str, Any]

_redis_lock = threading.Lock()
_redis_client: Any = None


def _redis() -> Any:
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            import redis

            _redis_client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5
            )
        return _redis_client


def ring(event: Event) -> None:
    """Announce ``event`` to every server process. Never raises: the record is safe,
    and clients that miss a doorbell catch up from the database on their next frame
    or reconnect."""
    try:
        if settings.REDIS_URL:
            _redis().publish(REDIS_CHANNEL, json.dumps(event, separators=(",", ":")))
        else:
            from backend.notifications.hub import Hub

            Hub.ring_local(event)
    except Exception:
        logger.exception("doorbell failed for a %s event", event.get("kind"))


def ring_on_commit(event: Event) -> None:
    """Ring once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: ring(event), robust=True)
