"""GET and PATCH /api/attention/ (backend/attention/api.py and services.py): storage,
validation, who may mute what, and the version."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from backend.attention import rules
from backend.attention.models import Attention
from backend.projects.models import Membership, Project
from backend.users.services import session_start

pytestmark = pytest.mark.django_db
URL = "/api/attention/"


def client_of(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
    return client


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice")


def test_the_defaults_until_something_changes(alice: Any) -> None:
    answer = client_of(alice).get(URL)
    assert answer.status_code == 200
    assert answer.json() == {"version": 0, **rules.DEFAULT}
    assert not Attention.objects.exists()  # reading makes no row


def test_a_change_is_stored_versioned_and_read_back(alice: Any) -> None:
    client = client_of(alice)
    answer = client.patch(
        URL,
        {"quiet_hours": {"start": "22:00", "end": "07:00"}, "time_zone": "Europe/Berlin"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["version"] == 1
    assert answer.json()["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    again = client.patch(URL, {"min_priority": "high"}, format="json").json()
    assert again["version"] == 2
    assert (again["min_priority"], again["time_zone"]) == ("high", "Europe/Berlin")
    assert client.get(URL).json() == again

    # The same value again changes nothing: the same version, no one told.
    assert client.patch(URL, {"min_priority": "high"}, format="json").json() == again


def test_a_bad_change_is_a_400_naming_each_setting_and_nothing_is_stored(alice: Any) -> None:
    client = client_of(alice)
    answer = client.patch(URL, {"min_priority": "loud", "quiet_hours": "nights"}, format="json")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_attention"
    assert set(error["detail"]["fields"]) == {"min_priority", "quiet_hours"}
    assert error["message"].startswith("min_priority: ") or error["message"].startswith(
        "quiet_hours: "
    )
    assert client.get(URL).json()["version"] == 0
    assert client.patch(URL, [1, 2], format="json").status_code == 400
    assert client.patch(URL, "x" * 10, content_type="application/json").status_code == 400


def test_only_the_users_own_projects_can_be_muted(alice: Any, make_user: Any) -> None:
    bob = make_user("bob")
    theirs = Project.objects.create(title="Bob's", created_by=bob)
    Membership.objects.create(project=theirs, user=bob, role="owner")
    ours = Project.objects.create(title="Ours", created_by=alice)
    Membership.objects.create(project=ours, user=alice, role="owner")
    client = client_of(alice)

    refused = client.patch(URL, {"muted_projects": [ours.pk, theirs.pk, 99_999]}, format="json")
    assert refused.status_code == 400
    why = refused.json()["error"]["detail"]["fields"]["muted_projects"]
    assert why == f"not among your projects: {theirs.pk}, 99999"  # the same words for both
    allowed = client.patch(URL, {"muted_projects": [ours.pk]}, format="json")
    assert allowed.json()["muted_projects"] == [ours.pk]


def test_each_user_has_their_own(alice: Any, make_user: Any) -> None:
    client_of(alice).patch(URL, {"dnd": True}, format="json")
    assert client_of(make_user("bob")).get(URL).json()["dnd"] is None
    assert client_of(alice).get(URL).json()["dnd"] == {"until": None}


def test_it_needs_a_login() -> None:
    assert APIClient().get(URL).status_code == 401
    assert APIClient().patch(URL, {"dnd": True}, format="json").status_code == 401
    assert APIClient().post(URL, {}, format="json").status_code in {401, 405}


def test_changes_are_throttled_per_user(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF's throttles read their rates once, at import: patch the class, not settings.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"attention_change": "2/min"})
    cache.clear()
    client = client_of(alice)
    for priority in ("high", "normal"):
        assert client.patch(URL, {"min_priority": priority}, format="json").status_code == 200
    refused = client.patch(URL, {"min_priority": "low"}, format="json")
    assert refused.status_code == 429
    assert "Retry-After" in refused
    assert client.get(URL).status_code == 200  # reading is not a change
    cache.clear()
