"""User and session services: creation rules, deactivation, refresh rotation, logout."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from backend.errors import Conflict, InvalidInput, NotAuthenticated
from backend.notifications import delivery
from backend.users.models import LoginSession, Role, User
from backend.users.services import (
    role_create,
    session_logout,
    session_refresh,
    session_start,
    user_create,
    user_deactivate,
)
from backend.users.tokens import authenticate_access_token, read_refresh_token

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


def test_user_create_takes_a_hashed_password_unchecked() -> None:
    # The demo's shared password ("demo") is one the validators refuse.
    admin = user_create(
        username="ada", password_hash=make_password("demo"), is_staff=True, is_superuser=True
    )
    assert admin.check_password("demo")
    assert admin.is_superuser
    with pytest.raises(InvalidInput):
        user_create(username="bob", password="demo")
    with pytest.raises(TypeError):
        user_create(username="carol")
    with pytest.raises(TypeError):
        user_create(username="carol", password=GOOD_PASSWORD, password_hash=make_password("x"))


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


def test_user_deactivate_ends_every_live_session_and_rings(
    make_user: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    alice_pairs = [session_start(user=alice) for _ in range(2)]
    bob_pair = session_start(user=bob)
    rung: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery, "ring", rung.append)

    with django_capture_on_commit_callbacks(execute=True):
        user_deactivate(user=alice)

    alice.refresh_from_db()
    assert not alice.is_active
    ended = LoginSession.objects.filter(user=alice, end_reason=LoginSession.END_DEACTIVATED)
    assert ended.count() == 2
    assert LoginSession.objects.get(user=bob).ended_at is None
    assert {"kind": "user_disabled", "user_id": alice.pk} in rung
    [sessions_event] = [event for event in rung if event["kind"] == "sessions_ended"]
    assert sessions_event["user_id"] == alice.pk
    assert sessions_event["reason"] == LoginSession.END_DEACTIVATED
    assert len(sessions_event["session_ids"]) == 2
    for pair in alice_pairs:
        with pytest.raises(NotAuthenticated) as caught:
            session_refresh(refresh=pair.refresh)
        assert caught.value.code == "user_inactive"
    session_refresh(refresh=bob_pair.refresh)


def test_user_deactivate_twice_is_harmless(make_user: Any) -> None:
    alice = make_user("alice")
    session_start(user=alice)
    user_deactivate(user=alice)
    user_deactivate(user=alice)
    assert LoginSession.objects.get().end_reason == LoginSession.END_DEACTIVATED


def test_session_refresh_rotates_once(make_user: Any) -> None:
    alice = make_user("alice")
    first = session_start(user=alice).refresh
    pair = session_refresh(refresh=first)
    assert pair.refresh != first
    assert LoginSession.objects.get().generation == 1
    session_refresh(refresh=pair.refresh)


def test_a_reused_refresh_token_ends_the_whole_family(
    make_user: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_user("alice")
    other = session_start(user=alice)
    stolen = session_start(user=alice).refresh
    rotated = session_refresh(refresh=stolen)  # the owner rotates first
    rung: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery, "ring", rung.append)

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(NotAuthenticated) as caught,
    ):
        session_refresh(refresh=stolen)  # the copy comes back
    assert caught.value.code == "token_not_valid"

    # The pair it was rotated into is dead too, and the family's sockets are told.
    with pytest.raises(NotAuthenticated):
        session_refresh(refresh=rotated.refresh)
    with pytest.raises(NotAuthenticated):
        authenticate_access_token(rotated.access)
    family = LoginSession.objects.get(pk=read_refresh_token(stolen).session_id)
    assert family.end_reason == LoginSession.END_REFRESH_REUSED
    assert rung == [
        {
            "kind": "sessions_ended",
            "user_id": alice.pk,
            "session_ids": [family.pk],
            "reason": LoginSession.END_REFRESH_REUSED,
        }
    ]
    # Another device's session of the same user is not the thief's: it carries on.
    session_refresh(refresh=other.refresh)


def test_a_session_has_an_absolute_lifetime_that_rotation_does_not_extend(
    make_user: Any, settings: Any
) -> None:
    alice = make_user("alice")
    settings.TRAY = {**settings.TRAY, "SESSION_MAX_DAYS": 1}
    pair = session_start(user=alice)
    session = LoginSession.objects.get()
    # Neither token outlives the session, however long their own lifetimes are.
    assert RefreshToken(pair.refresh)["exp"] <= session.expires_at.timestamp()  # type: ignore[arg-type]
    pair = session_refresh(refresh=pair.refresh)
    session.refresh_from_db()
    assert session.expires_at == session.created_at + timedelta(days=1)
    LoginSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(NotAuthenticated):
        session_refresh(refresh=pair.refresh)
    with pytest.raises(NotAuthenticated):
        authenticate_access_token(pair.access)
    assert LoginSession.objects.get().end_reason == LoginSession.END_EXPIRED


def test_a_refresh_token_from_before_sessions_is_refused(make_user: Any) -> None:
    alice = make_user("alice")
    legacy = RefreshToken.for_user(alice)  # no session claim: minted by an older release
    with pytest.raises(NotAuthenticated) as caught:
        session_refresh(refresh=str(legacy))
    assert caught.value.code == "token_not_valid"
    with pytest.raises(NotAuthenticated):
        authenticate_access_token(str(legacy.access_token))


def test_a_password_change_ends_every_session_of_that_user(make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    pairs = [session_start(user=alice) for _ in range(2)]
    bob_pair = session_start(user=bob)

    alice.set_password("a-new-password-42")
    alice.save()

    for pair in pairs:
        with pytest.raises(NotAuthenticated):
            session_refresh(refresh=pair.refresh)
        with pytest.raises(NotAuthenticated):
            authenticate_access_token(pair.access)
    assert set(LoginSession.objects.filter(user=alice).values_list("end_reason", flat=True)) == {
        LoginSession.END_PASSWORD_CHANGED
    }
    authenticate_access_token(bob_pair.access)


def test_upgrading_the_stored_hash_at_login_is_not_a_password_change(make_user: Any) -> None:
    alice = make_user("alice", password="pw")
    pair = session_start(user=alice)
    # Django's check_password re-saves a hash made with older parameters this way.
    alice.password = make_password("pw", hasher="md5")  # an equivalent, different hash
    alice._password = None
    alice.save(update_fields=["password"])
    authenticate_access_token(pair.access)
    session_refresh(refresh=pair.refresh)


def test_editing_other_fields_keeps_sessions(make_user: Any) -> None:
    alice = make_user("alice")
    pair = session_start(user=alice)
    alice.first_name = "Alice"
    alice.save()
    authenticate_access_token(pair.access)


def test_session_logout_is_idempotent_and_accepts_expired_tokens(make_user: Any) -> None:
    alice = make_user("alice")
    pair = session_start(user=alice)
    session_logout(refresh=pair.refresh)
    session_logout(refresh=pair.refresh)
    assert LoginSession.objects.get().end_reason == LoginSession.END_LOGOUT
    with pytest.raises(NotAuthenticated):
        authenticate_access_token(pair.access)
    expired = RefreshToken(session_start(user=alice).refresh)  # type: ignore[arg-type]
    expired.set_exp(lifetime=timedelta(seconds=-1))
    session_logout(refresh=str(expired))
    with pytest.raises(NotAuthenticated):
        session_logout(refresh="junk")
    with pytest.raises(NotAuthenticated):
        session_logout(refresh=session_start(user=alice).access)


def test_no_token_is_stored_only_the_session(make_user: Any) -> None:
    alice = make_user("alice")
    pair = session_start(user=alice)
    pair = session_refresh(refresh=pair.refresh)
    stored = json.dumps(list(LoginSession.objects.values()), default=str)
    for token in (pair.access, pair.refresh):
        assert token not in stored
        assert token.split(".")[2] not in stored
