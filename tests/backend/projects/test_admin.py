"""The admin of projects: its pages work, only staff reach them, and removing
people there still ends their live presence subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client

from backend.projects.admin import MembershipInline, MilestoneInline, ProjectAdmin
from backend.projects.models import Membership, Project, Task
from backend.users.models import User
from tests.conftest import grant

from .conftest import Team, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(superuser_browser: Client) -> Client:
    return superuser_browser


def test_project_and_task_are_registered_with_team_and_milestone_inlines() -> None:
    registered = admin.site._registry
    assert isinstance(registered[Project], ProjectAdmin)
    assert Task in registered
    assert set(registered[Project].inlines) == {MembershipInline, MilestoneInline}


def test_the_pages_render(team: Team, staff: Client) -> None:
    task = Task.objects.get(project=team.other)
    for url in [
        "/admin/projects/project/",
        "/admin/projects/project/add/",
        f"/admin/projects/project/{team.project.pk}/change/",
        "/admin/projects/task/",
        f"/admin/projects/task/{task.pk}/change/",
    ]:
        assert staff.get(url).status_code == 200, url


def test_deleting_a_project_in_the_admin_drops_presence_of_its_members(
    team: Team,
    staff: Client,
    rings: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    pid = team.project.pk
    members = set(Membership.objects.filter(project_id=pid).values_list("user_id", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/admin/projects/project/{pid}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Project.objects.filter(pk=pid).exists()
    assert {(e["kind"], e["project_id"]) for e in rings} == {("membership_removed", pid)}
    assert {e["user_id"] for e in rings} == members


def test_bulk_deleting_projects_in_the_admin_drops_presence_too(
    team: Team,
    staff: Client,
    rings: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ids = [team.project.pk, team.other.pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            "/admin/projects/project/",
            {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
        )
    assert response.status_code == 302
    assert not Project.objects.filter(pk__in=ids).exists()
    assert sorted((e["project_id"], e["user_id"]) for e in rings) == sorted(
        [(team.project.pk, u.pk) for u in (team.alice, team.mia, team.bob, team.carol)]
        + [(team.other.pk, team.otto.pk)]
    )


def test_removing_a_member_in_the_inline_drops_their_presence(
    team: Team,
    staff: Client,
    rings: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    project = team.project
    memberships = list(Membership.objects.filter(project=project).order_by("id"))
    form: dict[str, Any] = {
        "title": project.title,
        "description": project.description,
        "memberships-TOTAL_FORMS": len(memberships),
        "memberships-INITIAL_FORMS": len(memberships),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
        "milestones-TOTAL_FORMS": 0,
        "milestones-INITIAL_FORMS": 0,
        "milestones-MIN_NUM_FORMS": 0,
        "milestones-MAX_NUM_FORMS": 1000,
    }
    for index, membership in enumerate(memberships):
        prefix = f"memberships-{index}-"
        form |= {
            f"{prefix}id": membership.pk,
            f"{prefix}project": project.pk,
            f"{prefix}user": membership.user_id,
            f"{prefix}role": membership.role,
            f"{prefix}capacity": membership.capacity,
        }
        if membership.user_id == team.bob.pk:
            form[f"{prefix}DELETE"] = "on"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/admin/projects/project/{project.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    assert not Membership.objects.filter(project=project, user=team.bob).exists()
    assert rings == [
        {"kind": "membership_removed", "user_id": team.bob.pk, "project_id": project.pk}
    ]


def test_the_admin_stays_staff_only_whatever_a_user_was_granted(
    team: Team, make_user: Callable[..., User]
) -> None:
    """The admin edits teams without the services' rules, so it is staff's alone: a
    user granted the right to create projects (and more) gets the login page."""
    granted = make_user("pm", can_create_projects=True)
    grant(granted, "projects.change_project", "projects.add_membership")
    client = Client()
    client.force_login(granted)
    project = team.project
    before = snapshot()
    for url in ["/admin/projects/project/add/", f"/admin/projects/project/{project.pk}/change/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    form = {
        "title": project.title,
        "description": project.description,
        "memberships-TOTAL_FORMS": 1,
        "memberships-INITIAL_FORMS": 0,
        "memberships-0-project": project.pk,
        "memberships-0-user": granted.pk,
        "memberships-0-role": "owner",
        "memberships-0-capacity": 100,
        "milestones-TOTAL_FORMS": 0,
        "milestones-INITIAL_FORMS": 0,
    }
    response = client.post(f"/admin/projects/project/{project.pk}/change/", form)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert snapshot() == before
