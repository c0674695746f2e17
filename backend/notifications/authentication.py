"""``Authorization: Api-Key <raw key>``: how other systems publish notifications.

An integration key is not a person. A request it authenticates has an
anonymous ``request.user`` and the ApiKey as ``request.auth``, so it passes
only the permissions that look for a key (the publish API) and nothing that
needs a user, such as an inbox.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models.signals import post_delete, post_save
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from backend import log_context
from backend.notifications.models import ApiKey
from backend.notifications.services import api_key_authenticate

KEYWORD = "Api-Key"
# Generous for "tnk_" + 43 characters, small enough that no one hashes megabytes.
_MAX_KEY_LENGTH = 256

# sha256 of a raw key -> (monotonic deadline, the active key). Only keys that exist and
# are active are kept, so unknown keys cannot fill it.
_known_keys: dict[str, tuple[float, ApiKey]] = {}


def cached_api_key(raw: str) -> ApiKey | None:
    """``api_key_authenticate``, with its positive answer kept ``TRAY_AUTH_CACHE_SECONDS``.

    A key revoked anywhere is refused by every process within that bound, and at once
    by the process that revoked it (the receivers below). The key's last use is still
    recorded, to the minute, whenever the database is asked.
    """
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = time.monotonic()
    entry = _known_keys.get(digest)
    if entry is not None and entry[0] > now:
        return entry[1]
    key = api_key_authenticate(raw=raw)
    seconds: float = settings.TRAY["AUTH_CACHE_SECONDS"]
    if key is None:
        _known_keys.pop(digest, None)
    elif seconds > 0:
        _known_keys[digest] = (now + seconds, key)
    return key


def _forget_key(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    for digest in [d for d, (_, key) in _known_keys.items() if key.pk == instance.pk]:
        _known_keys.pop(digest, None)


post_save.connect(_forget_key, sender=ApiKey, weak=False, dispatch_uid="api-key-cache-save")
post_delete.connect(_forget_key, sender=ApiKey, weak=False, dispatch_uid="api-key-cache-delete")


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Api-Key <raw key>``; passes on any other scheme."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() != KEYWORD.lower():
            return None
        if len(parts) != 2 or len(parts[1]) > _MAX_KEY_LENGTH:
            raise exceptions.AuthenticationFailed(
                "Send the key as 'Authorization: Api-Key <key>'.", code="bad_authorization_header"
            )
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raw = ""
        key = cached_api_key(raw) if raw else None
        if key is None:
            raise exceptions.AuthenticationFailed(
                "This API key is unknown or has been revoked.", code="invalid_api_key"
            )
        log_context.bind_api_key(key.prefix)
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "backend.notifications.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An integration key, sent as `Api-Key <key>`.",
        }
