"""``Authorization: Api-Key <raw key>``: how other systems publish notifications.

An integration key is not a person. A request it authenticates has an
anonymous ``request.user`` and the ApiKey as ``request.auth``, so it passes
only the permissions that look for a key (the publish API) and nothing that
needs a user, such as an inbox.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from backend.notifications.models import ApiKey
from backend.notifications.services import api_key_authenticate

KEYWORD = "Api-Key"
# Generous for "tnk_" + 43 characters, small enough that no one hashes megabytes.
_MAX_KEY_LENGTH = 256


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
        key = api_key_authenticate(raw=raw) if raw else None
        if key is None:
            raise exceptions.AuthenticationFailed(
                "This API key is unknown or has been revoked.", code="invalid_api_key"
            )
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
