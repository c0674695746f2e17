"""Writes of users and of their sessions (refresh tokens). Keyword-only and atomic.

A session is a refresh token: rotating it blacklists the old one, logging out
blacklists it, and deactivating a user blacklists all of theirs, so the only
way back in is the password of an active account.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from backend.errors import Conflict, InvalidInput, NotAuthenticated
from backend.users.models import Role, User

SESSION_ENDED = "Your session has ended. Log in again."
ACCOUNT_DISABLED = "This account is disabled. Ask an administrator."


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _messages(error: ValidationError) -> str:
    return " ".join(str(message) for message in error.messages)


@transaction.atomic
def role_create(*, name: str, description: str = "") -> Role:
    """A new global role. Names are slugs ("developer", "qa-lead")."""
    role = Role(name=name.strip(), description=description.strip())
    try:
        role.full_clean()
    except ValidationError as error:
        if "name" in error.error_dict and Role.objects.filter(name=role.name).exists():
            raise Conflict(f"The role {role.name!r} already exists.", code="role_exists") from None
        raise InvalidInput(_messages(error), code="invalid_role") from None
    role.save()
    return role


def _role_of(role: Role | str | None) -> Role | None:
    if role is None or isinstance(role, Role):
        return role
    found = Role.objects.filter(name=role).first()
    if found is None:
        raise InvalidInput(f"Unknown role: {role}", code="unknown_role", roles=[role])
    return found


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    role: Role | str | None = None,
    is_staff: bool = False,
) -> User:
    """A new active account. ``role`` is a Role or the name of an existing one.

    Raises:
        InvalidInput: a malformed username or email, a password the configured
            validators reject, or an unknown role.
        Conflict: the username is taken (compared without case, as the admin does).
    """
    username = username.strip()
    try:
        User.username_validator(username)
    except ValidationError as error:
        raise InvalidInput(_messages(error), code="invalid_username") from None
    if not username or len(username) > 150:
        raise InvalidInput("A username is 1 to 150 characters.", code="invalid_username")
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"The username {username!r} is taken.", code="username_taken")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise InvalidInput(f"Not an email address: {email}", code="invalid_email") from None
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        role=_role_of(role),
        is_staff=is_staff,
    )
    try:
        validate_password(password, user=user)
    except ValidationError as error:
        raise InvalidInput(_messages(error), code="invalid_password") from None
    user.set_password(password)
    user.save()
    return user


@transaction.atomic
def user_deactivate(*, user: User) -> None:
    """Lock the account out: no new login, no refresh, no open socket.

    Access tokens already issued are refused too, because every request checks
    ``is_active``; the users app's save signal closes the user's sockets.
    Deactivating twice is not an error.
    """
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    session_tokens_blacklist(user=user)


def session_tokens_blacklist(*, user: User) -> int:
    """Blacklist every unexpired refresh token of ``user``; returns how many were new."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    pending = [BlacklistedToken(token=token) for token in live]
    BlacklistedToken.objects.bulk_create(pending, ignore_conflicts=True)
    return len(pending)


def _session_ended(error: TokenError) -> NotAuthenticated:
    return NotAuthenticated(SESSION_ENDED, code="token_not_valid", reason=str(error))


def _active_user(token: RefreshToken) -> User:
    user_id = str(token.get(jwt_settings.USER_ID_CLAIM, ""))
    user = User.objects.filter(pk=int(user_id)).first() if user_id.isdecimal() else None
    if user is None or not user.is_active:
        raise NotAuthenticated(ACCOUNT_DISABLED, code="user_inactive")
    return user


def session_refresh(*, refresh: str) -> TokenPair:
    """Trade a refresh token for a new access token and a new refresh token.

    The old refresh token is blacklisted in the same transaction that checks it
    is not blacklisted yet, so of two clients racing with one token only one
    wins: a stolen copy cannot be used alongside the real one.

    Raises:
        NotAuthenticated: the token is malformed, forged, expired, not a refresh
            token or already used (code ``token_not_valid``), or its user is
            inactive or gone (code ``user_inactive``).
    """
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # the stubs want a Token
    except TokenError as error:
        raise _session_ended(error) from None
    user = _active_user(token)
    with transaction.atomic():
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=token[jwt_settings.JTI_CLAIM],
            defaults={
                "user": user,
                "token": refresh,
                "created_at": datetime_from_epoch(token["iat"]) if "iat" in token else None,
                "expires_at": datetime_from_epoch(token["exp"]),
            },
        )
        _, fresh = BlacklistedToken.objects.get_or_create(token=outstanding)
        if not fresh:
            raise _session_ended(TokenError("Token is blacklisted"))
        rotated = RefreshToken.for_user(user)
    return TokenPair(access=str(rotated.access_token), refresh=str(rotated))


class _RefreshTokenToRevoke(RefreshToken):
    def check_blacklist(self) -> None:
        # Logging out with a token that is already blacklisted is a repeat, not an error.
        return None


def session_logout(*, refresh: str) -> None:
    """End the session of ``refresh`` by blacklisting it. Idempotent.

    An expired token is accepted silently: that session has ended already.

    Raises:
        NotAuthenticated: the token is malformed, forged or not a refresh token.
    """
    try:
        token = _RefreshTokenToRevoke(refresh)  # type: ignore[arg-type]
    except ExpiredTokenError:
        return
    except TokenError as error:
        raise _session_ended(error) from None
    token.blacklist()
