"""One row per user who changed their attention settings (the others have the defaults)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Attention(models.Model):
    """A user's do-not-disturb, quiet hours, mutes and priority threshold, shared by every
    device they use. ``state`` is ``rules``' normalised object; ``version`` goes up by one
    with each change, so a device applies a late frame only if it is newer."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    state = models.JSONField(default=dict)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "attention settings"
        verbose_name_plural = "attention settings"

    def __str__(self) -> str:
        return f"{self.user_id} v{self.version}"
