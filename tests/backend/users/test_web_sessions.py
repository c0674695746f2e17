"""The web companion's login sessions (backend/users/web_sessions.py): a browser's
cookie session stands on a LoginSession, and ends with it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from backend.errors import NotAuthenticated
from backend.users.models import LoginSession
from backend.users.services import sessions_end
from backend.users.tokens import forget_sessions
from backend.users.web_sessions import LOGIN_SESSION, socket_claims

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice", password="right-one")


def _logged_in(alice: Any) -> Client:
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": "right-one"}).status_code == 302
    return client


def test_a_web_login_starts_a_login_session_and_the_socket_claims_name_it(alice: Any) -> None:
    client = _logged_in(alice)
    session_id = client.session[LOGIN_SESSION]
    login_session = LoginSession.objects.get(pk=session_id)

    claims = socket_claims(client.session.session_key or "")

    assert claims.user_id == alice.pk
    assert claims.session_id == session_id
    assert claims.expires_at == login_session.expires_at


def test_logout_ends_the_login_session(alice: Any) -> None:
    client = _logged_in(alice)
    session_id = client.session[LOGIN_SESSION]
    key = client.session.session_key or ""

    client.post("/logout/")

    assert LoginSession.objects.get(pk=session_id).end_reason == LoginSession.END_LOGOUT
    with pytest.raises(NotAuthenticated):
        socket_claims(key)


def test_a_session_ended_elsewhere_logs_the_page_out(alice: Any) -> None:
    client = _logged_in(alice)
    assert client.get("/projects").status_code == 200

    sessions_end(user_id=alice.pk, reason=LoginSession.END_PASSWORD_CHANGED)
    forget_sessions(alice.pk)

    assert client.get("/projects").status_code == 302
    assert LOGIN_SESSION not in client.session


@pytest.mark.parametrize("key", ["", "nonsense", "a" * 32])
def test_a_cookie_without_a_login_is_refused(key: str) -> None:
    with pytest.raises(NotAuthenticated):
        socket_claims(key)
