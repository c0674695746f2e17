"""User and session services: creation rules, deactivation, refresh rotation, logout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from backend.errors import Conflict, InvalidInput, NotAuthenticated
from backend.notifications import delivery
from backend.users.models import Role, User
from backend.users.services import (
    role_create,
    session_logout,
    session_refresh,
    user_create,
    user_deactivate,
)

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "correct-horse-battery"


def test_user_create_with_a_role_by_name_or_object() -> None:
    developer = role_create(name="developer")
    by_name = user_create(username="alice", password=GOOD_PASSWORD, role="developer")
    by_object = user_create(
        username="bob",
        password=GOOD_PASSWORD,
        role=developer,
        email="bob@example.com",
        first_name="Bob",
        is_staff=True,
    )
    assert by_name.role == developer
    assert by_object.role == developer
    assert by_object.is_staff
    assert by_object.is_active
    assert by_object.check_password(GOOD_PASSWORD)
    assert User.objects.get(username="bob").email == "bob@example.com"


def test_user_create_refuses_a_taken_username_whatever_its_case() -> None:
    user_create(username="alice", password=GOOD_PASSWORD)
    with pytest.raises(Conflict):
        user_create(username="ALICE", password=GOOD_PASSWORD)
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"username": "has space"}, "invalid_username"),
        ({"username": ""}, "invalid_username"),
        ({"username": "x" * 151}, "invalid_username"),
        ({"password": "password"}, "invalid_password"),  # a common password
        ({"email": "not-an-email"}, "invalid_email"),
        ({"role": "no-such-role"}, "unknown_role"),
    ],
)
def test_user_create_refuses_bad_input_and_writes_nothing(
    fields: dict[str, Any], code: str
) -> None:
    arguments: dict[str, Any] = {"username": "alice", "password": GOOD_PASSWORD, **fields}
    with pytest.raises(InvalidInput) as caught:
        user_create(**arguments)
    assert caught.value.code == code
    assert not User.objects.exists()


def test_role_create_refuses_duplicates_and_non_slugs() -> None:
    role_create(name="designer", description="Makes it pretty")
    with pytest.raises(Conflict):
        role_create(name="designer")
    with pytest.raises(InvalidInput):
        role_create(name="Not a slug")
    assert list(Role.objects.values_list("name", flat=True)) == ["designer"]


def test_user_deactivate_blacklists_live_refresh_tokens_and_rings(
    make_user: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    alice_tokens = [RefreshToken.for_user(alice) for _ in range(2)]
    bob_token = RefreshToken.for_user(bob)
    rung: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery, "ring", rung.append)

    with django_capture_on_commit_callbacks(execute=True):
        user_deactivate(user=alice)

    alice.refresh_from_db()
    assert not alice.is_active
    blacklisted = set(BlacklistedToken.objects.values_list("token__jti", flat=True))
    assert blacklisted == {token["jti"] for token in alice_tokens}
    assert bob_token["jti"] not in blacklisted
    assert rung == [{"kind": "user_disabled", "user_id": alice.pk}]


def test_user_deactivate_twice_is_harmless(make_user: Any) -> None:
    alice = make_user("alice")
    RefreshToken.for_user(alice)
    user_deactivate(user=alice)
    user_deactivate(user=alice)
    assert BlacklistedToken.objects.count() == 1


def test_session_refresh_rotates_once(make_user: Any) -> None:
    alice = make_user("alice")
    first = str(RefreshToken.for_user(alice))
    pair = session_refresh(refresh=first)
    assert pair.refresh != first
    with pytest.raises(NotAuthenticated) as caught:
        session_refresh(refresh=first)
    assert caught.value.code == "token_not_valid"
    # The rotated token is outstanding, so deactivation can reach it.
    assert OutstandingToken.objects.filter(user=alice).count() == 2
    session_refresh(refresh=pair.refresh)


def test_session_refresh_of_a_token_minted_outside_the_blacklist_still_rotates_once(
    make_user: Any,
) -> None:
    alice = make_user("alice")
    token = RefreshToken.for_user(alice)
    OutstandingToken.objects.all().delete()  # e.g. flushed by flushexpiredtokens
    session_refresh(refresh=str(token))
    with pytest.raises(NotAuthenticated):
        session_refresh(refresh=str(token))


def test_session_logout_is_idempotent_and_accepts_expired_tokens(make_user: Any) -> None:
    alice = make_user("alice")
    token = str(RefreshToken.for_user(alice))
    session_logout(refresh=token)
    session_logout(refresh=token)
    assert BlacklistedToken.objects.count() == 1
    expired = RefreshToken.for_user(alice)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    session_logout(refresh=str(expired))
    with pytest.raises(NotAuthenticated):
        session_logout(refresh="junk")
    with pytest.raises(NotAuthenticated):
        session_logout(refresh=str(RefreshToken.for_user(alice).access_token))
