"""Access-token checks for the WebSocket (REST uses simplejwt's authentication class)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import QuerySet
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from backend.errors import Forbidden, NotAuthenticated
from backend.users.models import User


def read_access_token(raw: str | None) -> tuple[int, datetime]:
    """The user id an access token names and when it expires, without the database.

    Raises NotAuthenticated for a missing, malformed, expired, wrongly signed or
    non-access token (a refresh token is rejected by its ``token_type``; ``alg:
    none`` by the fixed algorithm list).
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
    # simplejwt writes the id as a string in newer releases and as an int in older ones.
    if isinstance(user_id, str) and user_id.isascii() and user_id.isdigit():
        user_id = int(user_id)
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise NotAuthenticated("The access token names no user.", code="token_invalid")
    return user_id, datetime.fromtimestamp(int(token["exp"]), tz=UTC)


def token_user(user_id: int, *, users: QuerySet[User] | None = None) -> User:
    """The active user a token named, from ``users`` (default every user) in one query.

    Raises NotAuthenticated when there is no such user and Forbidden for a
    deactivated one.
    """
    queryset = User.objects.all() if users is None else users
    user = queryset.filter(pk=user_id).select_related("role").first()
    if user is None:
        raise NotAuthenticated("The access token names no user.", code="token_invalid")
    if not user.is_active:
        raise Forbidden("This account has been deactivated.", code="account_disabled")
    return user


def authenticate_access_token(raw: str | None) -> tuple[User, datetime]:
    """The user an access token belongs to and when it expires (one query).

    Raises NotAuthenticated for a token ``read_access_token`` rejects or that
    names no user, and Forbidden for a deactivated user.
    """
    user_id, expires_at = read_access_token(raw)
    return token_user(user_id), expires_at
