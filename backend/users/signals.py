"""Receivers that keep derived state in step with users, wherever they are edited
(services, the admin, a shell)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from backend.notifications import delivery
from backend.notifications.models import InboxSequence
from backend.users.models import User


@receiver(post_save, sender=User)
def _user_saved(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    if created:
        # Created up front so that seq assignment only ever locks existing rows.
        InboxSequence.objects.get_or_create(user_id=instance.pk)
    if getattr(instance, "_was_active", True) and not instance.is_active:
        # Sockets of a deactivated user are closed with 4003 by every process.
        delivery.ring_on_commit({"kind": "user_disabled", "user_id": instance.pk})


@receiver(pre_save, sender=User)
def _user_saving(sender: type[User], instance: User, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    previous = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    instance._was_active = bool(previous)  # type: ignore[attr-defined]
