"""Receivers that keep derived state in step with users, wherever they are edited
(services, the admin, a shell, another process)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from backend.notifications import delivery
from backend.notifications.models import InboxSequence
from backend.users.models import LoginSession, User
from backend.users.tokens import forget_sessions


@receiver(post_save, sender=User)
def _user_saved(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    from backend.users.services import sessions_end

    # Staff rights, activity: the next request of this user asks the database again.
    forget_sessions(instance.pk)
    if created:
        # Created up front so that seq assignment only ever locks existing rows.
        InboxSequence.objects.get_or_create(user_id=instance.pk)
        return
    if getattr(instance, "_was_active", True) and not instance.is_active:
        # Every session ends, so that a process with no doorbell to this one (the
        # embedded default's `manage shell`) still closes the sockets: its database
        # watch sees the ended sessions. Sockets of a deactivated user get 4003.
        sessions_end(user_id=instance.pk, reason=LoginSession.END_DEACTIVATED)
        delivery.ring_on_commit({"kind": "user_disabled", "user_id": instance.pk})
    elif getattr(instance, "_password_changed", False):
        # Whoever knew the old password may hold a session: all of them end, but the
        # one of a user who changed their own password (backend/users/services.py).
        sessions_end(
            user_id=instance.pk,
            reason=LoginSession.END_PASSWORD_CHANGED,
            keep_session_id=getattr(instance, "_keep_session_id", None),
        )


@receiver(pre_save, sender=User)
def _user_saving(sender: type[User], instance: User, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    previous = User.objects.filter(pk=instance.pk).values_list("is_active", "password").first()
    instance._was_active = bool(previous and previous[0])  # type: ignore[attr-defined]
    instance._password_changed = previous is not None and previous[1] != instance.password  # type: ignore[attr-defined]
    if instance._password_changed and _is_rehash(instance, kwargs.get("update_fields")):  # type: ignore[attr-defined]
        instance._password_changed = False  # type: ignore[attr-defined]


def _is_rehash(instance: User, update_fields: Any) -> bool:
    """A login upgrading the stored hash of the same password (Django's check_password
    saves only the password, with the raw password already forgotten), not a change."""
    fields = frozenset(update_fields or ())
    return fields == {"password"} and getattr(instance, "_password", None) is None


@receiver(post_delete, sender=User)
def _user_deleted(sender: type[User], instance: User, **kwargs: Any) -> None:
    forget_sessions(instance.pk)
