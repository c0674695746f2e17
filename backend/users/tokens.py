"""Access-token checks for the WebSocket (REST uses simplejwt's authentication class)."""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from backend.errors import Forbidden, NotAuthenticated
from backend.users.models import User


def authenticate_access_token(raw: str | None) -> tuple[User, datetime]:
    """The user an access token belongs to and when it expires.

    Raises NotAuthenticated for a missing, malformed, expired, wrongly signed or
    non-access token (a refresh token is rejected by its ``token_type``; ``alg:
    none`` by the fixed algorithm list), and Forbidden for a deactivated user.
    """
    if not raw:
        raise NotAuthenticated("No access token was sent.", code="token_missing")
    if len(raw) > 4096:
        raise NotAuthenticated("The access token is malformed.", code="token_invalid")
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as error:
        raise NotAuthenticated(
            f"The access token was rejected: {error}", code="token_invalid"
        ) from None
    user_id = token.get("user_id")
    user = User.objects.filter(pk=user_id).select_related("role").first() if user_id else None
    if user is None:
        raise NotAuthenticated("The access token names no user.", code="token_invalid")
    if not user.is_active:
        raise Forbidden("This account has been deactivated.", code="account_disabled")
    return user, datetime.fromtimestamp(int(token["exp"]), tz=UTC)
