"""Log in, refresh (with rotation), log out, who am I, and every way a token can be bad."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from backend.projects.models import Membership, Project
from backend.users.models import LoginSession
from backend.users.services import session_start, user_deactivate
from backend.users.throttling import LoginRateThrottle

LOGIN = "/api/auth/token/"
REFRESH = "/api/auth/token/refresh/"
LOGOUT = "/api/auth/logout/"
ME = "/api/me"
# Long enough that PyJWT signs without a warning; just not the server's key.
WRONG_KEY = "not-the-server-key-" * 3


def new_refresh(user: Any) -> RefreshToken:
    return RefreshToken(session_start(user=user).refresh)  # type: ignore[arg-type]


def new_access(user: Any) -> AccessToken:
    return AccessToken(session_start(user=user).access)  # type: ignore[arg-type]


def login(client: APIClient, username: str, password: str = "pw") -> Any:
    return client.post(LOGIN, {"username": username, "password": password}, format="json")


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
def client() -> APIClient:
    return APIClient()


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice", password="s3cret-pass", first_name="Alice", role="developer")


# Log in


def test_login_returns_a_working_pair(client: APIClient, alice: Any) -> None:
    response = login(client, "alice", "s3cret-pass")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    me = bearer(body["access"]).get(ME)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_wrong_password_is_401_with_a_plain_message(client: APIClient, alice: Any) -> None:
    error = assert_error(login(client, "alice", "nope"), 401, "no_active_account")
    assert error["message"] == "Wrong username or password."


def test_inactive_user_gets_the_same_answer_as_a_wrong_password(
    client: APIClient, make_user: Any
) -> None:
    make_user("gone", password="s3cret-pass", is_active=False)
    inactive = assert_error(login(client, "gone", "s3cret-pass"), 401)
    unknown = assert_error(login(client, "nobody", "s3cret-pass"), 401)
    assert inactive == unknown


def test_login_without_a_password_is_400(client: APIClient, alice: Any) -> None:
    response = client.post(LOGIN, {"username": "alice"}, format="json")
    error = assert_error(response, 400, "invalid")
    assert "password" in error["detail"]


def test_login_is_throttled(client: APIClient, alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "3/min"})
    cache.clear()
    try:
        statuses = [login(client, "alice", "wrong").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        # Even the right password waits: that is what stops guessing.
        assert_error(login(client, "alice", "s3cret-pass"), 429, "throttled")
    finally:
        cache.clear()


# Refresh and rotation


def test_refresh_rotates_and_the_old_refresh_token_stops_working(
    client: APIClient, alice: Any
) -> None:
    first = login(client, "alice", "s3cret-pass").json()
    response = client.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert bearer(second["access"]).get(ME).status_code == 200

    reuse = client.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert_error(reuse, 401, "token_not_valid")
    # Two parties held the family: it ends for both, the rotated-to pair included.
    third = client.post(REFRESH, {"refresh": second["refresh"]}, format="json")
    assert_error(third, 401, "token_not_valid")
    assert_error(bearer(second["access"]).get(ME), 401, "token_not_valid")
    assert LoginSession.objects.get().end_reason == LoginSession.END_REFRESH_REUSED


def test_refresh_with_an_access_token_is_401(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    response = client.post(REFRESH, {"refresh": pair["access"]}, format="json")
    assert_error(response, 401, "token_not_valid")


def test_refresh_with_garbage_is_401_and_missing_is_400(client: APIClient, db: None) -> None:
    assert_error(client.post(REFRESH, {"refresh": "x.y.z"}, format="json"), 401)
    assert_error(client.post(REFRESH, {}, format="json"), 400, "invalid")


def test_refresh_of_a_deactivated_user_is_401(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    alice.is_active = False
    alice.save()  # not through the service: the refresh itself must check
    response = client.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert_error(response, 401, "user_inactive")


def test_refresh_of_a_deleted_user_is_401_not_500(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    alice.delete()
    response = client.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert_error(response, 401, "user_inactive")


# Log out


def test_logout_ends_the_session_and_is_idempotent(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    assert client.post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 204
    assert client.post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 204
    assert LoginSession.objects.get().end_reason == LoginSession.END_LOGOUT
    reuse = client.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert_error(reuse, 401, "token_not_valid")


def test_logout_needs_no_access_token_and_ignores_a_bad_one(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    client.credentials(HTTP_AUTHORIZATION="Bearer expired-or-junk")
    assert client.post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 204


def test_logout_with_an_expired_refresh_token_is_204(client: APIClient, alice: Any) -> None:
    token = new_refresh(alice)
    token.set_exp(lifetime=timedelta(seconds=-5))
    assert client.post(LOGOUT, {"refresh": str(token)}, format="json").status_code == 204


def test_logout_with_a_forged_token_is_401(client: APIClient, alice: Any) -> None:
    forged = jwt.encode(dict(new_refresh(alice).payload), WRONG_KEY, algorithm="HS256")
    assert_error(client.post(LOGOUT, {"refresh": forged}, format="json"), 401, "token_not_valid")


# Me


def test_me_shows_account_role_and_projects(client: APIClient, alice: Any, make_user: Any) -> None:
    apollo = Project.objects.create(title="Apollo")
    gemini = Project.objects.create(title="Gemini")
    Project.objects.create(title="Not hers")
    Membership.objects.create(project=gemini, user=alice, role="owner")
    Membership.objects.create(project=apollo, user=alice, role="member")
    access = login(client, "alice", "s3cret-pass").json()["access"]

    body = bearer(access).get(ME).json()
    assert body == {
        "id": alice.pk,
        "username": "alice",
        "first_name": "Alice",
        "last_name": "",
        "email": "",
        "is_staff": False,
        "role": "developer",
        "projects": [
            {"id": apollo.pk, "title": "Apollo", "role": "member"},
            {"id": gemini.pk, "title": "Gemini", "role": "owner"},
        ],
        "can_create_projects": False,
    }


def test_me_without_a_role(client: APIClient, make_user: Any) -> None:
    make_user("plain", password="s3cret-pass", is_staff=True)
    access = login(client, "plain", "s3cret-pass").json()["access"]
    body = bearer(access).get(ME).json()
    assert body["role"] is None
    assert body["is_staff"] is True
    assert body["projects"] == []
    # Staff may create projects without being granted anything.
    assert body["can_create_projects"] is True


def test_me_says_whether_projects_may_be_created(client: APIClient, make_user: Any) -> None:
    """A client shows "New project" only to those the server would let create one."""
    from django.contrib.auth.models import Group, Permission

    plain = make_user("plain", password="s3cret-pass")
    direct = make_user("direct", password="s3cret-pass", can_create_projects=True)
    grouped = make_user("grouped", password="s3cret-pass")
    managers = Group.objects.create(name="Project managers")
    managers.permissions.add(
        Permission.objects.get(content_type__app_label="projects", codename="add_project")
    )
    grouped.groups.add(managers)
    seen = {}
    for user in (plain, direct, grouped):
        access = login(client, user.username, "s3cret-pass").json()["access"]
        seen[user.username] = bearer(access).get(ME).json()["can_create_projects"]
    assert seen == {"plain": False, "direct": True, "grouped": True}


# Bad tokens over REST: all 401 with the error shape


def _payload(user: Any, **changes: Any) -> dict[str, Any]:
    payload = dict(new_access(user).payload)
    payload.update(changes)
    return payload


def test_missing_token_is_401(client: APIClient, db: None) -> None:
    response = client.get(ME)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer",
        "Bearer two tokens",
    ],
)
def test_malformed_token_is_401(client: APIClient, db: None, header: str) -> None:
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get(ME), 401)


def test_expired_token_is_401_with_a_reason(client: APIClient, alice: Any) -> None:
    token = new_access(alice)
    token.set_exp(lifetime=timedelta(seconds=-1))
    error = assert_error(bearer(str(token)).get(ME), 401, "token_not_valid")
    assert error["message"] == "Your session has ended. Log in again."
    assert "expired" in error["detail"]["reason"]


def test_wrong_signature_is_401(alice: Any) -> None:
    forged = jwt.encode(_payload(alice), WRONG_KEY, algorithm="HS256")
    assert_error(bearer(forged).get(ME), 401, "token_not_valid")


def test_alg_none_is_401(alice: Any) -> None:
    unsigned = jwt.encode(_payload(alice), "", algorithm="none")
    assert_error(bearer(unsigned).get(ME), 401, "token_not_valid")


def test_a_token_for_another_user_id_cannot_be_minted(alice: Any, make_user: Any) -> None:
    admin = make_user("root", is_staff=True)
    forged = jwt.encode(_payload(alice, user_id=str(admin.pk)), WRONG_KEY, algorithm="HS256")
    assert_error(bearer(forged).get(ME), 401, "token_not_valid")


def test_refresh_token_used_as_access_is_401(client: APIClient, alice: Any) -> None:
    refresh = login(client, "alice", "s3cret-pass").json()["refresh"]
    assert_error(bearer(refresh).get(ME), 401, "token_not_valid")


def test_deactivated_user_access_token_is_401(client: APIClient, alice: Any) -> None:
    pair = login(client, "alice", "s3cret-pass").json()
    user_deactivate(user=alice)
    error = assert_error(bearer(pair["access"]).get(ME), 401, "user_inactive")
    assert "disabled" in error["message"]
    assert_error(client.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401)
    assert_error(login(client, "alice", "s3cret-pass"), 401)
