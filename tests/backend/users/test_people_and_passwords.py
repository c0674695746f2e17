"""Adding people (``POST /api/users/``, ``user_create``) and changing one's own password
(``POST /api/auth/password/``, ``password_change``): the other sessions end, this one
goes on with a fresh pair."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from backend.errors import InvalidInput
from backend.users.models import LoginSession, User
from backend.users.services import password_change, session_start, user_create
from backend.users.throttling import LoginRateThrottle
from backend.users.tokens import read_access_token
from tests.backend.notifications.test_api_schema import fetch_schema
from tests.backend.users.test_api_auth import assert_error, bearer

USERS = "/api/users/"
PASSWORD = "/api/auth/password/"
REFRESH = "/api/auth/token/refresh/"
ME = "/api/me"
NEW_PASSWORD = "a-Much-longer-one-42"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]


@pytest.fixture
def alice(make_user: Any) -> User:
    user: User = make_user("alice", password="s3cret-pass")
    return user


@pytest.fixture
def staff(make_user: Any) -> User:
    user: User = make_user("root", password="s3cret-pass", is_staff=True)
    return user


def _bearer_of(user: User) -> tuple[APIClient, str, str]:
    """A client of a new session of ``user``, and that session's tokens."""
    pair = session_start(user=user)
    return bearer(pair.access), pair.access, pair.refresh


# --- adding people ----------------------------------------------------------------


def test_staff_add_a_person_who_can_then_log_in(staff: User) -> None:
    client, _, _ = _bearer_of(staff)

    answer = client.post(
        USERS,
        {"username": "dave", "password": "Quite-Long-Pass-123", "email": "dave@example.com"},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["username"] == "dave"
    assert body["email"] == "dave@example.com"
    assert body["is_staff"] is False
    assert body["role"] is None
    assert "password" not in body
    login = APIClient().post(
        "/api/auth/token/",
        {"username": "dave", "password": "Quite-Long-Pass-123"},
        format="json",
    )
    assert login.status_code == 200


def test_adding_people_is_for_staff_only(alice: User) -> None:
    client, _, _ = _bearer_of(alice)

    answer = client.post(
        USERS, {"username": "eve", "password": "Quite-Long-Pass-123"}, format="json"
    )

    assert_error(answer, 403, "staff_only")
    assert not User.objects.filter(username="eve").exists()
    assert_error(APIClient().post(USERS, {"username": "eve"}, format="json"), 401)


def test_a_taken_username_is_409_whatever_its_case(staff: User, alice: User) -> None:
    client, _, _ = _bearer_of(staff)

    answer = client.post(
        USERS, {"username": "ALICE", "password": "Quite-Long-Pass-123"}, format="json"
    )

    error = assert_error(answer, 409, "username_taken")
    assert "username" in error["detail"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"username": "dave", "password": "password"}, 400, "invalid_password", "password"),
        (
            {"username": "has space", "password": "Quite-Long-Pass-1"},
            400,
            "invalid_username",
            "username",
        ),
        ({"username": "dave"}, 400, "invalid", "password"),
        (
            {"username": "dave", "password": "Quite-Long-Pass-1", "email": "no"},
            400,
            "invalid",
            "email",
        ),
        (
            {"username": "dave", "password": "Quite-Long-Pass-1", "role": "nope"},
            400,
            "unknown_role",
            None,
        ),
    ],
)
def test_bad_people_are_400_with_the_fields_errors(
    staff: User, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    client, _, _ = _bearer_of(staff)

    error = assert_error(client.post(USERS, body, format="json"), status, code)

    if field is not None:
        assert field in error["detail"], error
    assert not User.objects.filter(username="dave").exists()


def test_user_create_refuses_a_weak_password_with_the_validators_words() -> None:
    with pytest.raises(InvalidInput) as caught:
        user_create(username="dave", password="password")
    assert caught.value.code == "invalid_password"
    assert caught.value.detail["password"]


def test_the_schema_documents_both_endpoints() -> None:
    paths = fetch_schema()["paths"]
    create = paths[USERS]["post"]
    assert {"201", "400", "403", "409"} <= set(create["responses"])
    change = paths[PASSWORD]["post"]
    assert {"200", "400", "401"} <= set(change["responses"])


# --- changing one's own password ----------------------------------------------------


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(alice: User) -> None:
    client, access, old_refresh = _bearer_of(alice)
    other, _, other_refresh = _bearer_of(alice)

    answer = client.post(
        PASSWORD, {"current_password": "s3cret-pass", "new_password": NEW_PASSWORD}, format="json"
    )

    assert answer.status_code == 200, answer.content
    pair = answer.json()
    assert set(pair) == {"access", "refresh"}
    # This session goes on: the old access token and the new pair both work.
    assert client.get(ME).status_code == 200
    assert bearer(pair["access"]).get(ME).status_code == 200
    assert read_access_token(pair["access"]).session_id == read_access_token(access).session_id
    # The other session is over, its refresh token too.
    assert_error(other.get(ME), 401, "token_not_valid")
    assert_error(APIClient().post(REFRESH, {"refresh": other_refresh}, format="json"), 401)
    ended = LoginSession.objects.get(pk=read_access_token(access).session_id)
    assert ended.ended_at is None
    assert (
        LoginSession.objects.filter(
            user=alice, end_reason=LoginSession.END_PASSWORD_CHANGED
        ).count()
        == 1
    )
    # The new refresh token rotates; the one it replaced is spent.
    assert APIClient().post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    del old_refresh


def test_a_wrong_current_password_changes_nothing(alice: User) -> None:
    client, _, _ = _bearer_of(alice)
    other, _, _ = _bearer_of(alice)

    answer = client.post(
        PASSWORD, {"current_password": "guess", "new_password": NEW_PASSWORD}, format="json"
    )

    error = assert_error(answer, 400, "wrong_password")
    assert "current_password" in error["detail"]
    assert other.get(ME).status_code == 200
    alice.refresh_from_db()
    assert alice.check_password("s3cret-pass")


def test_a_weak_new_password_is_refused_by_the_validators(alice: User) -> None:
    client, _, _ = _bearer_of(alice)

    answer = client.post(
        PASSWORD, {"current_password": "s3cret-pass", "new_password": "password"}, format="json"
    )

    error = assert_error(answer, 400, "invalid_password")
    assert error["detail"]["new_password"]
    alice.refresh_from_db()
    assert alice.check_password("s3cret-pass")


def test_the_password_change_needs_a_login(alice: User) -> None:
    answer = APIClient().post(
        PASSWORD, {"current_password": "s3cret-pass", "new_password": NEW_PASSWORD}, format="json"
    )
    assert_error(answer, 401)


def test_password_guesses_spend_the_login_budget(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "3/min"})
    client, _, _ = _bearer_of(alice)
    body = {"current_password": "guess", "new_password": NEW_PASSWORD}
    for _ in range(3):
        assert_error(client.post(PASSWORD, body, format="json"), 400, "wrong_password")

    refused = client.post(
        PASSWORD, {"current_password": "s3cret-pass", "new_password": NEW_PASSWORD}, format="json"
    )

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    alice.refresh_from_db()
    assert alice.check_password("s3cret-pass")


def test_password_change_service_spares_only_the_named_session(alice: User) -> None:
    kept = read_access_token(session_start(user=alice).access).session_id
    for _ in range(2):
        session_start(user=alice)

    password_change(
        user_id=alice.pk,
        current_password="s3cret-pass",
        new_password=NEW_PASSWORD,
        keep_session_id=kept,
    )

    live = list(LoginSession.objects.filter(user=alice, ended_at__isnull=True))
    assert [session.pk for session in live] == [kept]


def test_an_admin_setting_a_password_still_ends_every_session(alice: User) -> None:
    session_start(user=alice)
    alice.set_password(NEW_PASSWORD)
    alice.save()
    assert not LoginSession.objects.filter(user=alice, ended_at__isnull=True).exists()
