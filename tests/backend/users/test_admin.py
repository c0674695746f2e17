"""Admin of users and roles: deactivating here ends sessions like user_deactivate does."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from backend.users.models import LoginSession, Role, User
from backend.users.throttling import LoginRateThrottle


@pytest.fixture
def browser(superuser_browser: Client) -> Client:
    return superuser_browser


def refresh_token_of(username: str) -> str:
    response = APIClient().post(
        "/api/auth/token/", {"username": username, "password": "pw"}, format="json"
    )
    assert response.status_code == 200
    token: str = response.json()["refresh"]
    return token


def can_refresh(token: str) -> bool:
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": token}, format="json")
    return response.status_code == 200


def change_form(user: User, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role_id or "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_unticking_active_in_the_change_form_ends_sessions(browser: Client, make_user: Any) -> None:
    alice = make_user("alice", role="developer")
    token = refresh_token_of("alice")
    response = browser.post(
        reverse("admin:users_user_change", args=[alice.pk]), change_form(alice, is_active=None)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert not alice.is_active
    assert alice.role == Role.objects.get(name="developer")
    assert LoginSession.objects.get(user=alice).end_reason == LoginSession.END_DEACTIVATED
    assert not can_refresh(token)


def test_editing_an_active_user_leaves_sessions_alone(browser: Client, make_user: Any) -> None:
    alice = make_user("alice")
    token = refresh_token_of("alice")
    designer = Role.objects.create(name="designer")
    response = browser.post(
        reverse("admin:users_user_change", args=[alice.pk]),
        change_form(alice, first_name="Alice", role=designer.pk),
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.first_name, alice.role, alice.is_active) == ("Alice", designer, True)
    assert can_refresh(token)


def test_deactivate_action(browser: Client, make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    carol = make_user("carol")
    tokens = {name: refresh_token_of(name) for name in ("alice", "bob", "carol")}
    root = User.objects.get(username="root")
    response = browser.post(
        reverse("admin:users_user_changelist"),
        {"action": "deactivate_users", "_selected_action": [alice.pk, bob.pk, root.pk]},
    )
    assert response.status_code == 302
    active = dict(User.objects.values_list("username", "is_active"))
    assert active == {"alice": False, "bob": False, "carol": True, "root": True}
    assert not can_refresh(tokens["alice"])
    assert not can_refresh(tokens["bob"])
    assert can_refresh(tokens["carol"])
    assert carol.is_active


def test_user_list_and_role_list_render(browser: Client, make_user: Any) -> None:
    make_user("alice", role="developer")
    users = browser.get(reverse("admin:users_user_changelist"))
    assert users.status_code == 200
    assert "developer" in users.content.decode()
    roles = browser.get(reverse("admin:users_role_changelist"))
    assert roles.status_code == 200
    assert roles.context["cl"].result_list[0]._user_count == 1
    add = browser.get(reverse("admin:users_user_add"))
    assert add.status_code == 200
    assert "role" in add.context["adminform"].form.fields


def test_the_admin_login_spends_the_same_per_address_budget_as_the_api(
    make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "4/min"})
    cache.clear()
    make_user("root", password="right-one", is_staff=True, is_superuser=True)
    browser = Client()
    url = reverse("admin:login")
    try:
        # Looking at the form is free; every submitted password counts, the API's too.
        assert browser.get(url).status_code == 200
        for _ in range(3):
            wrong = browser.post(url, {"username": "root", "password": "nope"})
            assert wrong.status_code == 200  # the form again, with its error
        api = APIClient().post(
            "/api/auth/token/", {"username": "root", "password": "nope"}, format="json"
        )
        assert api.status_code == 401
        refused = browser.post(url, {"username": "root", "password": "right-one"})
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) >= 1
        assert "Too many login attempts" in refused.content.decode()
        assert "_auth_user_id" not in browser.session
    finally:
        cache.clear()
