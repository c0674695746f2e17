"""The doorbell: after a commit, tell every server process that something changed.

The database is the record; this only says "look". An event is a small JSON
dict (see ``hub.Hub.dispatch`` for the kinds). In the embedded default it goes
straight to this process's hub; with ``REDIS_URL`` it is one PUBLISH that every
server process receives once, whatever the size of the audience.

In Redis the channel is the deployment's own (``namespace.doorbell_channel``), and
each event carries the deployment's namespace as ``deployment``: a process drops
what another deployment sent (``decode_doorbell``), should the channels ever meet.

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

from backend.notifications import namespace

logger = logging.getLogger(__name__)

Event = dict[str, Any]
# The key of an event's deployment namespace on the wire (never seen by dispatch).
DEPLOYMENT = "deployment"


class ForeignDoorbell(ValueError):
    """A doorbell message that is not this deployment's."""

    def __init__(self, deployment: object) -> None:
        super().__init__(f"a doorbell of another deployment ({deployment!r})")
        self.deployment = deployment


def current_namespace() -> str:
    """This deployment's Redis namespace, from the settings (see ``namespace``)."""
    return namespace.deployment_namespace(
        database=settings.DATABASES["default"],
        secret_key=settings.SECRET_KEY,
        override=settings.TRAY_REDIS_NAMESPACE,
    )


def encode_doorbell(event: Event, deployment: str) -> str:
    """The Redis message for ``event``, stamped with the sending deployment."""
    return json.dumps({**event, DEPLOYMENT: deployment}, separators=(",", ":"))


def decode_doorbell(raw: bytes | str, deployment: str) -> Event:
    """The event in a Redis message, if ``deployment`` sent it.

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
    return event


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
            deployment = current_namespace()
            _redis().publish(
                namespace.doorbell_channel(deployment), encode_doorbell(event, deployment)
            )
        else:
            from backend.notifications.hub import Hub

            Hub.ring_local(event)
    except Exception:
        logger.exception("doorbell failed for a %s event", event.get("kind"))


def ring_on_commit(event: Event) -> None:
    """Ring once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: ring(event), robust=True)
