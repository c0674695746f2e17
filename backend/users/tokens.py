"""Access and refresh tokens: what they carry, and the checks every way in shares.

A token pair belongs to a login session (``LoginSession``): both carry its id
(``sid``), the refresh token also the generation it was issued at (``gen``).
Reading a token (signature, type, expiry) needs no database; accepting it also
needs its session to be live, which REST (``SessionJWTAuthentication``), the
socket's handshake and its in-band ``authenticate`` check in the same query
that loads the user.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import (
    AuthenticationFailed,
    ExpiredTokenError,
    InvalidToken,
    TokenError,
)
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token

from backend import log_context
from backend.errors import Forbidden, NotAuthenticated
from backend.numbers import positive_id
from backend.users.models import LoginSession, User

SESSION_CLAIM = "sid"
GENERATION_CLAIM = "gen"
MAX_TOKEN_LENGTH = 4096
SESSION_ENDED = "Your session has ended. Log in again."
# An ended session's token is an invalid token to every client: the code clients of
# protocol version 1 already answer by refreshing (which then asks for a login).
SESSION_ENDED_CODE = "token_invalid"
ACCOUNT_DISABLED = "This account is disabled. Ask an administrator."
# What a socket (handshake or stream) whose token names a deactivated user is told.
ACCOUNT_DEACTIVATED = "This account has been deactivated."


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says: whose it is, its session, when it expires."""

    user_id: int
    session_id: str
    expires_at: datetime


@dataclass(frozen=True)
class RefreshClaims:
    user_id: int
    session_id: str
    generation: int


def _user_id(token: Token) -> int | None:
    # simplejwt writes the id as a string in newer releases and as an int in older ones.
    return positive_id(token.get(jwt_settings.USER_ID_CLAIM))


def _session_id(token: Token) -> str | None:
    value = token.get(SESSION_CLAIM)
    if not isinstance(value, str) or not 0 < len(value) <= 32:
        return None
    return value


def read_access_token(raw: str | None) -> AccessClaims:
    """The claims of an access token, without the database.

    Raises NotAuthenticated for a missing, malformed, expired, wrongly signed or
    non-access token (a refresh token is rejected by its ``token_type``; ``alg:
    none`` by the fixed algorithm list), and for one issued before sessions
    existed (no ``sid``).
    """
    if not raw:
        raise NotAuthenticated("No access token was sent.", code="token_missing")
    if len(raw) > MAX_TOKEN_LENGTH:
        raise NotAuthenticated("The access token is malformed.", code="token_invalid")
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as error:
        raise NotAuthenticated(
            f"The access token was rejected: {error}", code="token_invalid"
        ) from None
    user_id = _user_id(token)
    if user_id is None:
        raise NotAuthenticated("The access token names no user.", code="token_invalid")
    session_id = _session_id(token)
    if session_id is None:
        raise NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE)
    return AccessClaims(
        user_id=user_id,
        session_id=session_id,
        expires_at=datetime.fromtimestamp(int(token["exp"]), tz=UTC),
    )


# Raw access token -> its claims, for tokens whose signature was verified here; oldest
# first, at most _VERIFIED_MAX (a reconnect storm of that many clients finds them all).
_verified: dict[str, AccessClaims] = {}
_VERIFIED_MAX = 4096


def read_access_token_cached(raw: str | None) -> AccessClaims:
    """``read_access_token``, remembering a token that passed until it expires.

    Verifying the signature and claims cost ~0.1 ms of every socket's connect (B5: a
    reconnect storm, each client presenting the token it connected with before). What
    a token says cannot change, and only its expiry depends on the time, so a token
    seen before is answered from memory while it has not expired. Whether its session
    is still live is not remembered here: callers check that in the database, as before.
    Refusals are never kept.
    """
    claims = _verified.get(raw) if raw else None
    if claims is not None and claims.expires_at.timestamp() > time.time():
        return claims
    claims = read_access_token(raw)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.pop(next(iter(_verified)), None)
    _verified[raw] = claims  # type: ignore[index]  # read_access_token refused a None
    return claims


def read_refresh_token(raw: str) -> RefreshClaims:
    """The claims of a refresh token, without the database.

    Raises:
        ExpiredTokenError: the token has expired.
        NotAuthenticated: (code ``token_not_valid``) a malformed, forged or
            non-refresh token, or one issued before sessions existed.
    """
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        raise NotAuthenticated(SESSION_ENDED, code="token_not_valid", reason="Token is invalid")
    try:
        token = RefreshToken(raw)  # type: ignore[arg-type]
    except ExpiredTokenError:
        raise
    except TokenError as error:
        raise NotAuthenticated(SESSION_ENDED, code="token_not_valid", reason=str(error)) from None
    user_id, session_id = _user_id(token), _session_id(token)
    generation = token.get(GENERATION_CLAIM)
    if (
        user_id is None
        or session_id is None
        or not isinstance(generation, int)
        or isinstance(generation, bool)
    ):
        raise NotAuthenticated(SESSION_ENDED, code="token_not_valid", reason="Token has no session")
    return RefreshClaims(user_id=user_id, session_id=session_id, generation=generation)


def issue_pair(session: LoginSession, *, now: datetime | None = None) -> tuple[str, str]:
    """A new (access, refresh) pair for ``session`` at its current generation.

    Neither outlives the session's absolute end.
    """
    now = now or timezone.now()
    left = session.expires_at - now
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(session.user_id)
    refresh[SESSION_CLAIM] = session.pk
    refresh[GENERATION_CLAIM] = session.generation
    refresh.set_exp(from_time=now, lifetime=min(jwt_settings.REFRESH_TOKEN_LIFETIME, left))
    access = refresh.access_token
    del access[GENERATION_CLAIM]
    access.set_exp(from_time=now, lifetime=min(jwt_settings.ACCESS_TOKEN_LIFETIME, left))
    return str(access), str(refresh)


def with_session_state(
    users: QuerySet[User], session_id: str, *, now: datetime | None = None
) -> QuerySet[User]:
    """``users`` annotated with ``session_live``: whether ``session_id`` is a live session
    of theirs (read in the same query as the user) at ``now`` (default: the current time).

    Raw SQL: an ``Exists()`` over a queryset cost ~0.75 ms of ORM compiling on every
    authenticated request, ten times the query itself; this costs ~0.15 ms.
    """
    quote = connection.ops.quote_name
    sessions, users_table = quote(LoginSession._meta.db_table), quote(User._meta.db_table)
    live = RawSQL(  # noqa: S611 (our table and column names; the values are parameters)
        f"EXISTS(SELECT 1 FROM {sessions} s WHERE s.{quote('id')} = %s"  # noqa: S608 (our names)
        f" AND s.{quote('user_id')} = {users_table}.{quote('id')}"
        f" AND s.{quote('ended_at')} IS NULL AND s.{quote('expires_at')} > %s)",
        (session_id, connection.ops.adapt_datetimefield_value(now or timezone.now())),
        output_field=BooleanField(),
    )
    return users.annotate(session_live=live)


def token_user(user_id: int, *, session_id: str, users: QuerySet[User] | None = None) -> User:
    """The active user a token named, from ``users`` (default every user), in one query
    that also checks the token's session is live.

    Raises NotAuthenticated when there is no such user or the session has ended
    (logout, password change, reuse, absolute lifetime), and Forbidden for a
    deactivated user.
    """
    queryset = User.objects.all() if users is None else users
    user = (
        with_session_state(queryset, session_id).filter(pk=user_id).select_related("role").first()
    )
    refuse_unless_live(
        found=user is not None,
        is_active=user is not None and user.is_active,
        session_live=user is not None and user.session_live,  # type: ignore[attr-defined]
    )
    return user  # type: ignore[return-value]  # refused above when None


def refuse_unless_live(*, found: bool, is_active: bool, session_live: bool) -> None:
    """``token_user``'s verdict on a user row read with ``with_session_state`` (for
    selectors that read it within a larger statement, such as a socket's opening).

    Raises NotAuthenticated when there is no such user or the session has ended, and
    Forbidden for a deactivated user.
    """
    if not found:
        raise NotAuthenticated("The access token names no user.", code="token_invalid")
    if not is_active:
        raise Forbidden(ACCOUNT_DEACTIVATED, code="account_disabled")
    if not session_live:
        raise NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE)


# (user id, session id) -> (monotonic deadline, the user as token_user loaded it).
_live_sessions: dict[tuple[int, str], tuple[float, User]] = {}
# Past this many entries, expired ones are swept before another is added.
_LIVE_SESSIONS_SWEEP = 4096


def token_user_cached(user_id: int, *, session_id: str) -> User:
    """``token_user``, with its positive answer kept ``TRAY_AUTH_CACHE_SECONDS``.

    Every authenticated REST request checked the session in the database (~0.15 ms of
    a 1 ms publish). A session that ends (logout, password change, deactivation) is
    refused within that bound by every process, and at once by the process that ended
    it (``forget_sessions``, called by backend/users/services.py and the users app's
    save signal). Refusals are never kept: a user whose session is dead is asked again.
    Callers get their own copy of the user, so nothing one request does to it is seen
    by the next.
    """
    key = (user_id, session_id)
    now = time.monotonic()
    entry = _live_sessions.get(key)
    if entry is not None and entry[0] > now:
        return copy.copy(entry[1])
    user = token_user(user_id, session_id=session_id)
    seconds: float = settings.TRAY["AUTH_CACHE_SECONDS"]
    if seconds > 0:
        if len(_live_sessions) >= _LIVE_SESSIONS_SWEEP:
            for stale in [k for k, (deadline, _) in _live_sessions.items() if deadline <= now]:
                _live_sessions.pop(stale, None)
        _live_sessions[key] = (now + seconds, copy.copy(user))
    return user


def forget_sessions(user_id: int, session_ids: list[str] | None = None) -> None:
    """Drop this process's cached answers for ``user_id``'s sessions (all when None)."""
    if session_ids is not None:
        for session_id in session_ids:
            _live_sessions.pop((user_id, session_id), None)
        return
    for key in [key for key in _live_sessions if key[0] == user_id]:
        _live_sessions.pop(key, None)


def authenticate_access_token(raw: str | None) -> tuple[User, AccessClaims]:
    """The user an access token belongs to, and its claims (one query).

    Raises NotAuthenticated for a token ``read_access_token`` rejects, that
    names no user or whose session has ended, and Forbidden for a deactivated user.
    """
    claims = read_access_token(raw)
    return token_user(claims.user_id, session_id=claims.session_id), claims


class SessionJWTAuthentication(JWTAuthentication):
    """simplejwt's Bearer authentication, also refusing tokens whose session has ended.

    One query loads the user and checks the session, as before it loaded the user, and
    its positive answer is reused for ``TRAY_AUTH_CACHE_SECONDS`` (``token_user_cached``).
    """

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]
        user_id, session_id = _user_id(validated_token), _session_id(validated_token)
        if user_id is None:
            raise InvalidToken("Token contained no recognizable user identification")
        if session_id is None:
            raise AuthenticationFailed(SESSION_ENDED, code="token_not_valid")
        try:
            user = token_user_cached(user_id, session_id=session_id)
        except Forbidden:
            raise AuthenticationFailed(ACCOUNT_DISABLED, code="user_inactive") from None
        except NotAuthenticated as error:
            # On the socket both are token_invalid; REST keeps simplejwt's two codes.
            code = "token_not_valid" if error.message == SESSION_ENDED else "user_not_found"
            raise AuthenticationFailed(error.message, code=code) from None
        log_context.bind_user(user.pk)
        return user


class SessionJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]
    """The OpenAPI security scheme of ``SessionJWTAuthentication``: simplejwt's Bearer."""

    target_class = "backend.users.tokens.SessionJWTAuthentication"
