"""Writes of what presence keeps in the database (``PresenceRecord``): the status a user
chose and when they were last seen. Reads are in ``presence_selectors``.

Presence itself lives in the hub's store (memory, or Redis); these rows are what the
store is seeded from when it starts empty (a server restart, Redis restarted without
persistence), so each write is small and most are batched (``presence_seen_record``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from django.db import transaction

from backend.notifications.models import PresenceRecord
from backend.users.models import User

# What a user may choose and keep (do-not-disturb is an attention setting).
CHOSEN_STATUSES = ("online", "away")


def presence_status_choose(*, user_id: int, status: str) -> bool:
    """Keep ``status`` (``online`` or ``away``) as the one ``user_id`` chose; True when it
    changed. A status re-sent unchanged (clients send theirs at every reconnect) costs
    one read and no write.

    Raises:
        ValueError: a status that is not ``online`` or ``away``.
    """
    if status not in CHOSEN_STATUSES:
        raise ValueError(f"not a status to keep: {status!r}")
    current = (
        PresenceRecord.objects.filter(user_id=user_id)
        .values_list("chosen_status", flat=True)
        .first()
    )
    if current == status:
        return False
    with transaction.atomic():
        PresenceRecord.objects.bulk_create(
            [PresenceRecord(user_id=user_id, chosen_status=status)],
            update_conflicts=True,
            unique_fields=["user"],
            update_fields=["chosen_status"],
        )
    return True


def presence_seen_record(*, seen: Mapping[int, float]) -> int:
    """Keep when each user in ``seen`` (user id -> epoch seconds) was last seen, in one
    transaction (the hub flushes a few seconds' worth at once, so a reconnect storm is
    not a write per disconnect). An older time never replaces a newer one (two
    processes may flush out of order). Users deleted meanwhile are skipped. Returns how
    many rows were written."""
    if not seen:
        return 0
    with transaction.atomic():
        existing = set(User.objects.filter(pk__in=list(seen)).values_list("pk", flat=True))
        newer = dict(
            PresenceRecord.objects.filter(
                user_id__in=existing, last_seen__isnull=False
            ).values_list("user_id", "last_seen")
        )
        rows = []
        for user_id in sorted(existing):
            at = datetime.fromtimestamp(seen[user_id], tz=UTC)
            stored = newer.get(user_id)
            if stored is not None and stored >= at:
                continue
            rows.append(PresenceRecord(user_id=user_id, last_seen=at))
        if rows:
            PresenceRecord.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["user"],
                update_fields=["last_seen"],
            )
    return len(rows)
