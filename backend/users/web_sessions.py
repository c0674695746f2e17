"""The web companion's login (backend/web/): Django's session cookie, tied to a ``LoginSession``.

A login through the web page starts a login session as the desktop's does
(``web_session_start``), and the cookie's session keeps its id. So the web page
and its socket end exactly when a desktop's would: on logout, a password change,
deactivation, or ``SESSION_MAX_DAYS`` after the login, and ending it closes the
socket (``sessions_ended``). Pages check it through the same short cache as the REST
API's tokens (``token_user_cached``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import import_module

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from backend import log_context
from backend.errors import BackendError, NotAuthenticated
from backend.users.models import User
from backend.users.services import password_change, web_session_end, web_session_start
from backend.users.tokens import SESSION_ENDED, SESSION_ENDED_CODE, AccessClaims, token_user_cached

LOGIN_SESSION = "tray_login_session"
EXPIRES = "tray_login_session_expires"


def log_in(request: HttpRequest, user: User) -> None:
    """Log ``user`` in to this browser (password checked): cookie and login session."""
    auth.login(request, user)
    session = web_session_start(user=user)
    request.session[LOGIN_SESSION] = session.id
    request.session[EXPIRES] = session.expires_at.timestamp()
    request.session.set_expiry(session.expires_at)


def log_out(request: HttpRequest) -> None:
    """End this browser's login session (its sockets close) and forget the cookie's."""
    user = request.user
    session_id = request.session.get(LOGIN_SESSION)
    if isinstance(user, User) and isinstance(session_id, str):
        web_session_end(user_id=user.pk, session_id=session_id)
    auth.logout(request)


def change_password(
    request: HttpRequest, user: User, *, current_password: str, new_password: str
) -> None:
    """``user`` changes their password from this browser: their other sessions end (every
    desktop's and browser's, whose sockets close with 4001), this browser's goes on.

    Raises:
        InvalidInput: a wrong current password or a new one the validators refuse.
    """
    session_id = request.session.get(LOGIN_SESSION)
    changed = password_change(
        user_id=user.pk,
        current_password=current_password,
        new_password=new_password,
        keep_session_id=session_id if isinstance(session_id, str) else None,
    )
    # Django's cookie session holds a hash of the password: renewed, or it would end too.
    auth.update_session_auth_hash(request, changed)


def live_user(request: HttpRequest) -> User | None:
    """The logged-in user whose login session is still live, else None (and the browser
    is logged out: the session ended elsewhere, or was made before login sessions)."""
    user = request.user
    if not isinstance(user, User):
        return None
    session_id = request.session.get(LOGIN_SESSION)
    try:
        if not isinstance(session_id, str):
            raise NotAuthenticated(SESSION_ENDED)
        token_user_cached(user.pk, session_id=session_id)
    except BackendError:
        auth.logout(request)
        return None
    log_context.bind_user(user.pk)
    return user


def socket_claims(session_key: str) -> AccessClaims:
    """What a same-origin socket's session cookie stands for, as an access token's claims
    (its session's end is the socket's deadline). Django reads the cookie's session and
    its user as for a page (the password's hash still matching, the account active);
    the login session's liveness is checked when the socket opens.

    Raises:
        NotAuthenticated: no such session, nobody logged in, or no login session.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    request = HttpRequest()
    request.session = store
    user = auth.get_user(request)
    session_id, expires = store.get(LOGIN_SESSION), store.get(EXPIRES)
    if not isinstance(user, User) or not isinstance(session_id, str):
        raise NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE)
    if not isinstance(expires, int | float):
        raise NotAuthenticated(SESSION_ENDED, code=SESSION_ENDED_CODE)
    return AccessClaims(
        user_id=user.pk, session_id=session_id, expires_at=datetime.fromtimestamp(expires, UTC)
    )
