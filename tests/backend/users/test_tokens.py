"""backend/users/tokens.py: the cached session check of Bearer tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from backend.errors import Forbidden, NotAuthenticated
from backend.users.models import LoginSession, User
from backend.users.services import session_start, sessions_end, user_deactivate
from backend.users.tokens import read_access_token, token_user_cached

pytestmark = pytest.mark.django_db


def _claims(user: User) -> tuple[int, str]:
    claims = read_access_token(session_start(user=user).access)
    return claims.user_id, claims.session_id


def _queries(call: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


def test_a_live_session_is_checked_once_per_bound(make_user: Callable[..., User]) -> None:
    user_id, session_id = _claims(make_user("staff", is_staff=True))
    assert _queries(lambda: token_user_cached(user_id, session_id=session_id)) == 1
    assert _queries(lambda: token_user_cached(user_id, session_id=session_id)) == 0
    first = token_user_cached(user_id, session_id=session_id)
    first.first_name = "changed, not saved"
    # Each caller gets its own copy: one request's changes are not the next one's.
    assert token_user_cached(user_id, session_id=session_id).first_name == ""


def test_an_ended_session_is_refused_at_once_in_this_process(
    make_user: Callable[..., User],
) -> None:
    user = make_user("staff", is_staff=True)
    user_id, session_id = _claims(user)
    token_user_cached(user_id, session_id=session_id)
    sessions_end(user_id=user_id, reason=LoginSession.END_PASSWORD_CHANGED)
    with pytest.raises(NotAuthenticated):
        token_user_cached(user_id, session_id=session_id)


def test_deactivation_and_demotion_are_seen_at_once(make_user: Callable[..., User]) -> None:
    user = make_user("staff", is_staff=True)
    user_id, session_id = _claims(user)
    assert token_user_cached(user_id, session_id=session_id).is_staff
    user.is_staff = False
    user.save()
    assert not token_user_cached(user_id, session_id=session_id).is_staff
    user_deactivate(user=user)
    with pytest.raises((Forbidden, NotAuthenticated)):
        token_user_cached(user_id, session_id=session_id)


def test_logout_refuses_the_cached_session_over_rest(make_user: Callable[..., User]) -> None:
    make_user("staff", is_staff=True)
    client = APIClient()
    pair = client.post(
        "/api/auth/token/", {"username": "staff", "password": "pw"}, format="json"
    ).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    body: dict[str, Any] = {"audience": {"everyone": True}, "title": "Hello"}
    assert client.post("/api/notifications/", body, format="json").status_code == 201
    assert (
        client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code
        == 204
    )
    refused = client.post("/api/notifications/", body, format="json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "token_not_valid"


def test_a_verified_access_token_is_remembered_until_it_expires(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket's token is verified once, not on every reconnect; a forged, expired or
    different token is still refused, and the memory holds a bounded number."""
    import time
    from datetime import timedelta

    from backend.users import tokens
    from tests.backend.conftest import access_token

    alice = make_user("alice")
    tokens._verified.clear()
    raw = session_start(user=alice).access
    claims = tokens.read_access_token_cached(raw)
    assert claims == read_access_token(raw)
    assert tokens._verified == {raw: claims}
    assert tokens.read_access_token_cached(raw) is claims

    head, _, signature = raw.rpartition(".")
    forged = f"{head}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for bad in (forged, "", None, "not.a.token"):
        with pytest.raises(NotAuthenticated):
            tokens.read_access_token_cached(bad)
    assert list(tokens._verified) == [raw]  # refusals are not kept

    short = access_token(alice, lifetime=timedelta(seconds=1))
    expires = tokens.read_access_token_cached(short).expires_at.timestamp()
    assert short in tokens._verified
    while time.time() <= expires:  # the condition is the clock itself
        time.sleep(0.05)
    with pytest.raises(NotAuthenticated) as expired:
        tokens.read_access_token_cached(short)
    assert expired.value.code == "token_invalid"

    monkeypatch.setattr(tokens, "_VERIFIED_MAX", 2)
    tokens._verified.clear()
    three = [session_start(user=alice).access for _ in range(3)]
    for one in three:
        tokens.read_access_token_cached(one)
    assert list(tokens._verified) == three[1:]  # the oldest went first
