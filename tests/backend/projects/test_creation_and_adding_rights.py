"""Who may create projects and add people to them (finding 2 of the security review).

Bob, a plain user, created a project of his own and added every account to it
(ids 1..7 answered 201 with each name), then watched the admin's presence and
sent her a high-priority "your account is locked" task. The rule now: creating
a project is a right rooted in staff (staff, or ``projects.add_project`` granted
in the admin); owners and managers add people; the answers do not tell who has
an account; creating and adding are throttled per user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from backend.errors import Forbidden
from backend.projects.models import Membership, Project
from backend.projects.selectors import can_create_project
from backend.projects.services import project_create
from backend.users.models import User
from tests.conftest import grant

from .conftest import Team, snapshot

pytestmark = pytest.mark.django_db

Client = Callable[[User | None], APIClient]
NO_RIGHT = "Ask an administrator for the right to create projects."


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"]
    return body


# --- creating projects ------------------------------------------------------------------


def test_a_plain_user_cannot_create_a_project(team: Team, client_for: Client) -> None:
    before = snapshot()
    response = client_for(team.bob).post("/api/projects/", {"title": "Mine"}, format="json")
    assert error_of(response, 403) == {"error": {"code": "forbidden", "message": NO_RIGHT}}
    assert snapshot() == before
    with pytest.raises(Forbidden):
        project_create(actor=team.bob, title="Mine")
    assert snapshot() == before


def _direct(user: User) -> None:
    grant(user, "projects.add_project")


def _group(user: User) -> None:
    group = Group.objects.create(name="Project managers")
    group.permissions.add(
        Permission.objects.get(content_type__app_label="projects", codename="add_project")
    )
    user.groups.add(group)


def _staff(user: User) -> None:
    user.is_staff = True
    user.save(update_fields=["is_staff"])


def _superuser(user: User) -> None:
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])


@pytest.mark.parametrize("how", [_direct, _group, _staff, _superuser])
def test_the_right_comes_from_staff_or_a_grant(
    how: Callable[[User], None], make_user: Callable[..., User]
) -> None:
    dana = make_user("dana")
    assert not can_create_project(user=dana)
    how(dana)
    dana = User.objects.get(pk=dana.pk)  # as a new request would load her
    assert can_create_project(user=dana)
    client = APIClient()
    client.force_authenticate(dana)
    created = client.post("/api/projects/", {"title": "Website"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["role"] == "owner"


def test_a_deactivated_account_has_no_right(make_user: Callable[..., User]) -> None:
    gone = make_user("gone", is_staff=True, can_create_projects=True, is_active=False)
    assert not can_create_project(user=gone)


# --- adding people ----------------------------------------------------------------------


def test_an_owner_adds_an_active_user(
    team: Team, client_for: Client, make_user: Callable[..., User]
) -> None:
    dana = make_user("dana", first_name="Dana")
    response = client_for(team.alice).post(
        f"/api/projects/{team.project.pk}/members/", {"user_id": dana.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["user"]["username"] == "dana"
    assert Membership.objects.get(project=team.project, user=dana).role == "member"


def test_bob_can_pull_no_one_into_a_project(
    team: Team, client_for: Client, make_user: Callable[..., User]
) -> None:
    """The reported attack, replayed: every id, real or not, gets one and the same 403."""
    admin = make_user("admin", is_staff=True, first_name="Ada", last_name="Admin")
    gone = make_user("gone", is_active=False)
    bob = client_for(team.bob)
    assert bob.post("/api/projects/", {"title": "Bob's"}, format="json").status_code == 403
    url = f"/api/projects/{team.project.pk}/members/"  # bob is a plain member there
    top = User.objects.order_by("-pk").values_list("pk", flat=True)[0]
    before = snapshot()
    bodies = [
        *({"user_id": user_id} for user_id in range(1, top + 3)),
        {"user_id": 987_654},
        {"username": "admin"},
        {"username": "gone"},
        {"username": "nobody"},
    ]
    refused = {
        "error": {
            "code": "forbidden",
            "message": "Only the project's owners and managers can add people to the team.",
        }
    }
    for body in bodies:
        assert error_of(bob.post(url, body, format="json"), 403) == refused, body
    assert snapshot() == before
    assert not Membership.objects.filter(user__in=[admin, gone]).exists()


def test_a_manager_gets_one_answer_for_unknown_and_inactive_users(
    team: Team, client_for: Client, make_user: Callable[..., User]
) -> None:
    gone = make_user("gone", is_active=False)
    manager = client_for(team.mia)
    url = f"/api/projects/{team.project.pk}/members/"
    before = snapshot()
    by_id = [
        error_of(manager.post(url, {"user_id": user_id}, format="json"), 400)
        for user_id in (gone.pk, 987_654)
    ]
    by_name = [
        error_of(manager.post(url, {"username": name}, format="json"), 400)
        for name in ("gone", "nobody")
    ]
    assert by_id[0] == by_id[1] == by_name[0] == by_name[1]
    assert by_id[0]["error"]["code"] == "unknown_user"
    assert snapshot() == before


def test_an_outsider_still_gets_404_for_the_project(team: Team, client_for: Client) -> None:
    # Otto may create projects, but that gives him nothing in alice's.
    url = f"/api/projects/{team.project.pk}/members/"
    real = client_for(team.otto).post(url, {"user_id": team.bob.pk}, format="json")
    missing = client_for(team.otto).post(
        "/api/projects/987654/members/", {"user_id": team.bob.pk}, format="json"
    )
    assert error_of(real, 404) == error_of(missing, 404)


# --- throttles --------------------------------------------------------------------------


@pytest.fixture
def tiny_rates(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # DRF's throttles read their rates once, at import: patch the class, not settings.
    monkeypatch.setattr(
        ScopedRateThrottle,
        "THROTTLE_RATES",
        {"login": "1000/min", "project_create": "2/hour", "member_add": "2/hour"},
    )
    cache.clear()
    yield
    cache.clear()


def test_creating_projects_is_throttled_per_user(
    team: Team, client_for: Client, tiny_rates: None
) -> None:
    alice = client_for(team.alice)
    made = [
        alice.post("/api/projects/", {"title": f"P{n}"}, format="json").status_code
        for n in range(2)
    ]
    assert made == [201, 201]
    count = Project.objects.count()
    third = alice.post("/api/projects/", {"title": "P3"}, format="json")
    assert error_of(third, 429)["error"]["code"] == "throttled"
    assert 0 < int(third["Retry-After"]) <= 3600
    assert Project.objects.count() == count
    # Reads are not writes, and the limit is alice's alone.
    assert alice.get("/api/projects/").status_code == 200
    otto = client_for(team.otto)
    assert otto.post("/api/projects/", {"title": "O"}, format="json").status_code == 201


def test_adding_people_is_throttled_per_user(
    team: Team, client_for: Client, make_user: Callable[..., User], tiny_rates: None
) -> None:
    dana, erin, fred = (make_user(name) for name in ("dana", "erin", "fred"))
    owner = client_for(team.alice)
    url = f"/api/projects/{team.project.pk}/members/"
    added = [owner.post(url, {"user_id": u.pk}, format="json").status_code for u in (dana, erin)]
    assert added == [201, 201]
    third = owner.post(url, {"user_id": fred.pk}, format="json")
    assert error_of(third, 429)["error"]["code"] == "throttled"
    assert int(third["Retry-After"]) > 0
    assert not Membership.objects.filter(user=fred).exists()
    assert owner.get(url).status_code == 200
    # Probing ids as a plain member is slowed down the same way.
    bob = client_for(team.bob)
    probes = [bob.post(url, {"user_id": n}, format="json").status_code for n in (1, 2, 3)]
    assert probes == [403, 403, 429]
