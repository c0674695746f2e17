"""Reads of what presence keeps in the database (``PresenceRecord``); writes are in
``presence_services``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend.notifications.models import PresenceRecord


@dataclass(frozen=True)
class KeptPresence:
    """A user's kept presence: the status they chose ("" if never), and when they were
    last seen (epoch seconds, or None)."""

    chosen_status: str
    last_seen: float | None


def presence_kept(*, user_ids: Iterable[int] | None = None) -> dict[int, KeptPresence]:
    """What is kept of ``user_ids`` (every user with a record when None), by user id:
    what an empty presence store is seeded from. Users with nothing kept are left out."""
    rows = PresenceRecord.objects.order_by()
    if user_ids is not None:
        rows = rows.filter(user_id__in=list(user_ids))
    return {
        user_id: KeptPresence(
            chosen_status=chosen, last_seen=None if seen is None else seen.timestamp()
        )
        for user_id, chosen, seen in rows.values_list(
            "user_id", "chosen_status", "last_seen"
        ).iterator(chunk_size=2000)
    }
