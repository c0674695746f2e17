"""Changing a user's attention settings, and telling every device of theirs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from backend.attention import rules
from backend.attention.models import Attention
from backend.attention.selectors import attention_payload
from backend.errors import InvalidInput
from backend.notifications import delivery
from backend.projects.models import Membership


def attention_update(*, user_id: int, changes: Any, now: datetime | None = None) -> dict[str, Any]:
    """Apply ``changes`` (any subset of the settings, as JSON) to the user's attention
    settings; the new payload. A change that changes nothing keeps the version and
    tells no one.

    Once committed, every socket of the user gets ``attention_changed`` and their
    presence follows do-not-disturb (the hub, ``Hub.dispatch``).

    Raises:
        InvalidInput: ``invalid_attention``, with ``detail.fields`` naming each bad
            setting and why (a muted project must be one of the user's).
    """
    now = now or timezone.now()
    try:
        change = rules.parse_change(changes, now=now)
    except rules.AttentionError as error:
        raise _invalid(error.problems) from None
    muted = change.muted_projects
    if muted:
        theirs = set(
            Membership.objects.filter(user_id=user_id, project_id__in=muted).values_list(
                "project_id", flat=True
            )
        )
        strangers = [project_id for project_id in muted if project_id not in theirs]
        if strangers:
            listed = ", ".join(map(str, strangers[:5]))
            raise _invalid({"muted_projects": f"not among your projects: {listed}"})
    with transaction.atomic():
        row = Attention.objects.select_for_update().filter(user_id=user_id).first()
        stored = row.state if row is not None else None
        version = row.version if row is not None else 0
        before = rules.current(stored, now=now)
        after = rules.apply(before, change)
        if after == before:  # nothing to store (and no row made for the defaults)
            return attention_payload(state=stored, version=version, now=now)
        version += 1
        Attention.objects.update_or_create(
            user_id=user_id, defaults={"state": after, "version": version}
        )
        payload = attention_payload(state=after, version=version, now=now)
        delivery.ring_on_commit({"kind": "attention", "user_id": user_id, "attention": payload})
    return payload


def _invalid(problems: dict[str, str]) -> InvalidInput:
    first_key, first = next(iter(problems.items()))
    return InvalidInput(f"{first_key}: {first}", code="invalid_attention", fields=problems)
