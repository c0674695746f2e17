"""Users and their global roles (the audience of role-wide announcements)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.Model):
    """A company-wide role such as "developer" or "designer"."""

    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.SET_NULL, related_name="users"
    )


class LoginSession(models.Model):
    """One login on one device: the family of refresh tokens descended from one password check.

    Only the session's id and the generation of its one valid refresh token are
    stored, never a token: the database file alone lets no one in. Refreshing
    moves ``generation`` on; a refresh token of an older generation coming back
    means two parties hold the family, so the whole session ends
    (``END_REFRESH_REUSED``). Access tokens carry the session id and are refused
    once it has ended (logout, password change, deactivation) or passed
    ``expires_at``, the absolute lifetime that rotation never extends.
    """

    END_LOGOUT = "logout"
    END_PASSWORD_CHANGED = "password_changed"
    END_DEACTIVATED = "deactivated"
    END_REFRESH_REUSED = "refresh_reused"
    END_EXPIRED = "expired"

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_sessions")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    generation = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "ended_at"], name="login_session_user_live")]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.id[:8]}…"
