"""Writes of users and of their sessions (refresh tokens). Keyword-only and atomic.

A session is a ``LoginSession``: one password check on one device, and the
family of refresh tokens rotated from it. Logging out ends it; a password
change or a deactivation ends all of the user's; a rotated refresh token used
again ends it for whoever holds it; it cannot outlive ``SESSION_MAX_DAYS``.
An ended session's access tokens are refused at once and its sockets close, so
the only way back in is the password of an active account.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError

from backend.errors import Conflict, InvalidInput, NotAuthenticated
from backend.notifications import delivery
from backend.users.models import LoginSession, Role, User
from backend.users.tokens import (
    ACCOUNT_DISABLED,
    SESSION_ENDED,
    forget_sessions,
    issue_pair,
    read_refresh_token,
)

logger = logging.getLogger(__name__)


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
    password: str | None = None,
    password_hash: str | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    role: Role | str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """A new active account. ``role`` is a Role or the name of an existing one.

    Give exactly one of ``password`` (checked by the configured validators, then
    hashed) and ``password_hash`` (already hashed by Django's hashers, as an import or
    the demo's shared password is; it cannot be checked).

    Raises:
        InvalidInput: a malformed username or email, a password the configured
            validators reject, or an unknown role.
        Conflict: the username is taken (compared without case, as the admin does).
    """
    if (password is None) == (password_hash is None):
        raise TypeError("user_create takes exactly one of password and password_hash")
    username = username.strip()
    try:
        User.username_validator(username)
    except ValidationError as error:
        raise InvalidInput(
            _messages(error), code="invalid_username", username=list(error.messages)
        ) from None
    if not username or len(username) > 150:
        message = "A username is 1 to 150 characters."
        raise InvalidInput(message, code="invalid_username", username=[message])
    if User.objects.filter(username__iexact=username).exists():
        message = f"The username {username!r} is taken."
        raise Conflict(message, code="username_taken", username=[message])
    if email:
        try:
            validate_email(email)
        except ValidationError:
            message = f"Not an email address: {email}"
            raise InvalidInput(message, code="invalid_email", email=[message]) from None
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        role=_role_of(role),
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    if password_hash is not None:
        user.password = password_hash
    elif password is not None:
        try:
            validate_password(password, user=user)
        except ValidationError as error:
            raise InvalidInput(
                _messages(error), code="invalid_password", password=list(error.messages)
            ) from None
        user.set_password(password)
    try:
        with transaction.atomic():  # a savepoint: the race below leaves the outer one usable
            user.save()
    except IntegrityError:
        # Another request took the name between the check above and this insert.
        message = f"The username {username!r} is taken."
        raise Conflict(message, code="username_taken", username=[message]) from None
    return user


@transaction.atomic
def user_deactivate(*, user: User) -> None:
    """Lock the account out: no new login, no refresh, no open socket.

    Every session ends (its access tokens are refused at once, everywhere), and
    the users app's save signal closes the user's sockets with 4003.
    Deactivating twice is not an error.
    """
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    sessions_end(user_id=user.pk, reason=LoginSession.END_DEACTIVATED)


def _new_session(user: User) -> LoginSession:
    now = timezone.now()
    return LoginSession.objects.create(
        id=secrets.token_hex(16),
        user=user,
        created_at=now,
        expires_at=now + timedelta(days=settings.TRAY["SESSION_MAX_DAYS"]),
    )


def session_start(*, user: User) -> TokenPair:
    """A new login session for ``user`` (whose password was just checked) and its first pair."""
    session = _new_session(user)
    access, refresh = issue_pair(session, now=session.created_at)
    return TokenPair(access=access, refresh=refresh)


def web_session_start(*, user: User) -> LoginSession:
    """A login session for the web companion's session cookie (backend/web/): no tokens;
    it ends, and its sockets close, exactly like a desktop's (logout, password change,
    deactivation, ``SESSION_MAX_DAYS``)."""
    return _new_session(user)


@transaction.atomic
def web_session_end(*, user_id: int, session_id: str) -> None:
    """The web companion's logout: the session ends and its sockets close. Idempotent."""
    _end(
        LoginSession.objects.filter(pk=session_id, user_id=user_id),
        reason=LoginSession.END_LOGOUT,
    )


def _end(sessions: QuerySet[LoginSession], *, reason: str) -> list[tuple[int, str]]:
    """End the live sessions among ``sessions`` and close their sockets after commit;
    returns (user id, session id) of each one ended now."""
    ended = list(sessions.filter(ended_at__isnull=True).values_list("user_id", "id"))
    if not ended:
        return []
    LoginSession.objects.filter(pk__in=[sid for _, sid in ended], ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )
    by_user: dict[int, list[str]] = {}
    for user_id, session_id in ended:
        by_user.setdefault(user_id, []).append(session_id)
    for user_id, session_ids in by_user.items():
        # This process stops trusting its cached session checks at once, and again
        # after commit, in case another thread asked the database in between.
        forget_sessions(user_id, session_ids)
        transaction.on_commit(partial(forget_sessions, user_id, session_ids), robust=True)
        delivery.ring_on_commit(
            {
                "kind": "sessions_ended",
                "user_id": user_id,
                "session_ids": session_ids,
                "reason": reason,
            }
        )
    return ended


@transaction.atomic
def sessions_end(*, user_id: int, reason: str, keep_session_id: str | None = None) -> int:
    """End every session of a user (password changed, deactivated), but
    ``keep_session_id`` (the one that changed its own password); returns how many."""
    sessions = LoginSession.objects.filter(user_id=user_id)
    if keep_session_id is not None:
        sessions = sessions.exclude(pk=keep_session_id)
    return len(_end(sessions, reason=reason))


WRONG_CURRENT_PASSWORD = "Your current password is not right."


@transaction.atomic
def password_change(
    *, user_id: int, current_password: str, new_password: str, keep_session_id: str | None
) -> User:
    """A user changes their own password: every other session of theirs ends (its
    sockets close with 4001), ``keep_session_id``, the one asking, goes on.

    Raises:
        InvalidInput: the current password is wrong (code ``wrong_password``), or the
            configured validators reject the new one (code ``invalid_password``).
        NotAuthenticated: the account is gone or inactive.
    """
    user = User.objects.select_for_update().filter(pk=user_id, is_active=True).first()
    if user is None:
        raise NotAuthenticated(ACCOUNT_DISABLED, code="user_inactive")
    if not user.check_password(current_password):
        raise InvalidInput(
            WRONG_CURRENT_PASSWORD,
            code="wrong_password",
            current_password=[WRONG_CURRENT_PASSWORD],
        )
    try:
        validate_password(new_password, user=user)
    except ValidationError as error:
        raise InvalidInput(
            _messages(error), code="invalid_password", new_password=list(error.messages)
        ) from None
    user.set_password(new_password)
    # The users app's save signal ends the sessions, sparing this one.
    user._keep_session_id = keep_session_id  # type: ignore[attr-defined]
    user.save(update_fields=["password"])
    return user


@transaction.atomic
def session_reissue(*, user_id: int, session_id: str) -> TokenPair:
    """A fresh pair for a live session (after its user changed the password): the
    session's generation moves on, so its earlier refresh token stops working.

    Raises:
        NotAuthenticated: the session has ended or passed its lifetime.
    """
    session = (
        LoginSession.objects.select_for_update()
        .filter(pk=session_id, user_id=user_id, ended_at__isnull=True)
        .first()
    )
    now = timezone.now()
    if session is None or session.expires_at <= now:
        raise _session_ended("Session has ended")
    session.generation += 1
    session.refreshed_at = now
    session.save(update_fields=["generation", "refreshed_at"])
    access, refresh = issue_pair(session, now=now)
    return TokenPair(access=access, refresh=refresh)


def _session_ended(reason: str) -> NotAuthenticated:
    return NotAuthenticated(SESSION_ENDED, code="token_not_valid", reason=reason)


def session_refresh(*, refresh: str) -> TokenPair:
    """Trade a refresh token for a new access token and a new refresh token.

    The session's generation moves on in the transaction that checks it, so of
    two parties holding one token only the first wins, and the token it replaced
    is dead. An older generation coming back means the family was copied: the
    session ends for everyone holding it, thief and owner alike, and its sockets
    close. Rotation never extends the session's absolute lifetime.

    Raises:
        NotAuthenticated: the token is malformed, forged, expired, not a refresh
            token, of an earlier generation, or its session has ended (code
            ``token_not_valid``), or its user is inactive or gone (code
            ``user_inactive``).
    """
    try:
        claims = read_refresh_token(refresh)
    except ExpiredTokenError:
        raise _session_ended("Token is expired") from None
    reused = False
    with transaction.atomic():
        session = (
            LoginSession.objects.select_for_update()
            .select_related("user")
            .filter(pk=claims.session_id, user_id=claims.user_id)
            .first()
        )
        if session is None or session.ended_at is not None:
            deactivated = (
                session.end_reason == LoginSession.END_DEACTIVATED
                if session is not None
                else not User.objects.filter(pk=claims.user_id, is_active=True).exists()
            )
            if deactivated:
                raise NotAuthenticated(ACCOUNT_DISABLED, code="user_inactive")
            raise _session_ended("Session has ended")
        if not session.user.is_active:
            raise NotAuthenticated(ACCOUNT_DISABLED, code="user_inactive")
        now = timezone.now()
        if session.expires_at <= now:
            _end(LoginSession.objects.filter(pk=session.pk), reason=LoginSession.END_EXPIRED)
            outcome = "Session has reached its maximum lifetime"
        elif claims.generation != session.generation:
            _end(LoginSession.objects.filter(pk=session.pk), reason=LoginSession.END_REFRESH_REUSED)
            reused, outcome = True, "Token was already used"
        else:
            session.generation += 1
            session.refreshed_at = now
            session.save(update_fields=["generation", "refreshed_at"])
            access, rotated = issue_pair(session, now=now)
            return TokenPair(access=access, refresh=rotated)
    # Out of the transaction: the session's end is committed before the error goes out.
    if reused:
        logger.warning(
            "a refresh token of session %s… (user %s) was used twice: the session is ended",
            claims.session_id[:8],
            claims.user_id,
        )
    raise _session_ended(outcome)


def session_logout(*, refresh: str) -> None:
    """End the session of ``refresh``: its tokens stop working and its sockets close.
    Idempotent.

    An expired token is accepted silently: it cannot be used any more.

    Raises:
        NotAuthenticated: the token is malformed, forged or not a refresh token.
    """
    try:
        claims = read_refresh_token(refresh)
    except ExpiredTokenError:
        return
    with transaction.atomic():
        _end(
            LoginSession.objects.filter(pk=claims.session_id, user_id=claims.user_id),
            reason=LoginSession.END_LOGOUT,
        )
