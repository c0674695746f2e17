"""User selectors: the profile of GET /api/me and the name lookups of the publish API."""

from __future__ import annotations

from typing import Any

import pytest

from backend.projects.models import Membership, Project
from backend.users.selectors import (
    ProjectRole,
    role_names_missing,
    user_ids_by_username,
    user_ids_missing,
    user_profile,
    user_projects,
)

pytestmark = pytest.mark.django_db


def test_user_profile_and_projects(make_user: Any) -> None:
    alice = make_user("alice", role="qa", email="a@example.com")
    other = make_user("other")
    second = Project.objects.create(title="Second")
    first = Project.objects.create(title="First")
    Membership.objects.create(project=first, user=alice, role="manager")
    Membership.objects.create(project=second, user=alice)
    Membership.objects.create(project=second, user=other, role="owner")

    profile = user_profile(user=alice)
    assert profile.role == "qa"
    assert profile.email == "a@example.com"
    assert profile.projects == [
        ProjectRole(id=second.pk, title="Second", role="member"),
        ProjectRole(id=first.pk, title="First", role="manager"),
    ]
    assert user_projects(user_id=other.pk) == [ProjectRole(second.pk, "Second", "owner")]


def test_name_lookups_report_what_is_missing(make_user: Any) -> None:
    alice = make_user("alice", role="developer")
    gone = make_user("gone", is_active=False)
    assert user_ids_by_username(usernames=["alice", "gone", "nobody"]) == {
        "alice": alice.pk,
        "gone": gone.pk,
    }
    assert user_ids_by_username(usernames=[]) == {}
    assert user_ids_missing(ids=[alice.pk, 999_999, 999_999]) == [999_999]
    assert user_ids_missing(ids=[]) == []
    assert role_names_missing(names=["developer", "pilot", "pilot"]) == ["pilot"]
    assert role_names_missing(names=[]) == []
