"""Reading a user's attention settings."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from backend.attention import rules
from backend.attention.models import Attention


def attention_payload(*, state: Any, version: int, now: datetime | None = None) -> dict[str, Any]:
    """What clients get (the REST answer, ``hello``'s and ``attention_changed``'s
    ``attention``): the state as of ``now`` (a do-not-disturb that ended reads as off)
    and its version. ``state`` may be the database's JSON text or None (no row yet)."""
    if isinstance(state, str | bytes):
        state = json.loads(state)
    stored = state if isinstance(state, dict) else None
    return {"version": version, **rules.current(stored, now=now or timezone.now())}


def attention_of(*, user_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The user's attention payload; the defaults (version 0) until they change one."""
    row = Attention.objects.filter(user_id=user_id).values_list("state", "version").first()
    state, version = row if row is not None else (None, 0)
    return attention_payload(state=state, version=version, now=now)
