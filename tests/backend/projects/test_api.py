"""The projects REST API: shapes, rights per role, and bad input, through real
requests (authenticated the way the desktop client is, with a JWT)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from backend.notifications.models import Inbox
from backend.projects.models import Membership, Milestone, Project, Task
from backend.projects.services import milestone_create, task_create
from backend.users.models import User
from backend.users.services import session_start
from tests.conftest import grant

from .conftest import News, Team, snapshot

pytestmark = pytest.mark.django_db

Client = Callable[[User | None], APIClient]


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def jwt_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
    return client


# --- happy paths ------------------------------------------------------------------------


def test_create_and_list_projects_with_a_real_token(team: Team) -> None:
    grant(team.bob, "projects.add_project")
    client = jwt_client(team.bob)
    created = client.post("/api/projects/", {"title": "Side project"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["title"] == "Side project"
    assert body["description"] == ""
    assert body["role"] == "owner"
    listed = client.get("/api/projects/")
    assert listed.status_code == 200
    assert [(p["title"], p["role"]) for p in listed.json()] == [
        ("Mobile App", "member"),
        ("Side project", "owner"),
    ]


def test_project_detail_update_and_delete(team: Team, client_for: Client) -> None:
    pid = team.project.pk
    manager = client_for(team.mia)
    detail = manager.get(f"/api/projects/{pid}/")
    assert detail.status_code == 200
    assert detail.json()["role"] == "manager"
    patched = manager.patch(f"/api/projects/{pid}/", {"title": "Mobile"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["title"] == "Mobile"
    assert_error(client_for(team.mia).delete(f"/api/projects/{pid}/"), 403, "forbidden")
    deleted = client_for(team.alice).delete(f"/api/projects/{pid}/")
    assert deleted.status_code == 204
    assert not Project.objects.filter(pk=pid).exists()
    assert_error(client_for(team.alice).get(f"/api/projects/{pid}/"), 404, "not_found")


def test_team_endpoints(team: Team, client_for: Client, make_user: Callable[..., User]) -> None:
    dana, erin = make_user("dana"), make_user("erin")
    pid = team.project.pk
    manager = client_for(team.mia)
    listed = client_for(team.bob).get(f"/api/projects/{pid}/members/")
    assert listed.status_code == 200
    assert [(m["user"]["username"], m["role"]) for m in listed.json()] == [
        ("alice", "owner"),
        ("mia", "manager"),
        ("bob", "member"),
        ("carol", "member"),
    ]
    by_id = manager.post(
        f"/api/projects/{pid}/members/", {"user_id": dana.pk, "capacity": 30}, format="json"
    )
    assert by_id.status_code == 201, by_id.content
    assert by_id.json()["user"] == {
        "id": dana.pk,
        "username": "dana",
        "first_name": "",
        "last_name": "",
    }
    assert (by_id.json()["role"], by_id.json()["capacity"]) == ("member", 30)
    by_name = manager.post(
        f"/api/projects/{pid}/members/", {"username": "erin", "role": "manager"}, format="json"
    )
    assert by_name.status_code == 201, by_name.content
    assert Membership.objects.get(project=team.project, user=erin).role == "manager"
    mid = by_id.json()["id"]
    patched = manager.patch(
        f"/api/projects/{pid}/members/{mid}/", {"role": "manager"}, format="json"
    )
    assert patched.status_code == 200
    assert patched.json()["role"] == "manager"
    assert client_for(team.bob).get(f"/api/projects/{pid}/members/{mid}/").status_code == 200
    assert manager.delete(f"/api/projects/{pid}/members/{mid}/").status_code == 204
    assert not Membership.objects.filter(pk=mid).exists()
    twice = manager.post(f"/api/projects/{pid}/members/", {"user_id": erin.pk}, format="json")
    assert_error(twice, 409, "already_member")


def test_the_last_owner_is_a_conflict(team: Team, client_for: Client) -> None:
    pid, mid = team.project.pk, team.membership(team.alice).pk
    owner = client_for(team.alice)
    before = snapshot()
    demote = owner.patch(f"/api/projects/{pid}/members/{mid}/", {"role": "member"}, format="json")
    assert_error(demote, 409, "last_owner")
    assert_error(owner.delete(f"/api/projects/{pid}/members/{mid}/"), 409, "last_owner")
    assert snapshot() == before


def test_milestone_endpoints(team: Team, client_for: Client) -> None:
    pid = team.project.pk
    manager = client_for(team.mia)
    created = manager.post(
        f"/api/projects/{pid}/milestones/",
        {"title": "Beta", "due_date": "2027-03-01", "progress": 20},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["title"], body["due_date"], body["progress"]) == ("Beta", "2027-03-01", 20)
    assert body["project_id"] == pid
    msid = body["id"]
    listed = client_for(team.bob).get(f"/api/projects/{pid}/milestones/")
    assert [m["id"] for m in listed.json()] == [msid]
    patched = manager.patch(
        f"/api/projects/{pid}/milestones/{msid}/", {"due_date": None, "progress": 80}, format="json"
    )
    assert patched.status_code == 200, patched.content
    assert (patched.json()["due_date"], patched.json()["progress"]) == (None, 80)
    assert client_for(team.bob).get(f"/api/projects/{pid}/milestones/{msid}/").status_code == 200
    assert manager.delete(f"/api/projects/{pid}/milestones/{msid}/").status_code == 204
    assert not Milestone.objects.filter(pk=msid).exists()


def test_task_endpoints_and_their_notifications(team: Team, client_for: Client) -> None:
    pid = team.project.pk
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    manager = client_for(team.mia)
    news = News()
    created = manager.post(
        f"/api/projects/{pid}/tasks/",
        {"title": "Fix login", "assignee_id": team.bob.pk, "milestone_id": milestone.pk},
        format="json",
    )
    assert created.status_code == 201, created.content
    task = created.json()
    assert task["assignee"]["username"] == "bob"
    assert (task["status"], task["milestone_id"], task["project_id"]) == (
        "todo",
        milestone.pk,
        pid,
    )
    tid = task["id"]
    moved = client_for(team.bob).patch(
        f"/api/projects/{pid}/tasks/{tid}/", {"status": "in_progress"}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["status"] == "in_progress"
    reassigned = manager.patch(
        f"/api/projects/{pid}/tasks/{tid}/",
        {"assignee_id": team.carol.pk, "milestone_id": None},
        format="json",
    )
    assert reassigned.status_code == 200, reassigned.content
    assert reassigned.json()["assignee"]["username"] == "carol"
    assert reassigned.json()["milestone_id"] is None
    unassigned = manager.patch(
        f"/api/projects/{pid}/tasks/{tid}/", {"assignee_id": None}, format="json"
    )
    assert unassigned.json()["assignee"] is None
    listed = client_for(team.carol).get(f"/api/projects/{pid}/tasks/")
    assert [t["id"] for t in listed.json()] == [tid]
    assert manager.delete(f"/api/projects/{pid}/tasks/{tid}/").status_code == 204
    assert news.events() == [
        ("task_created", ["alice", "carol"]),
        ("task_assigned", ["bob"]),
        ("task_status_changed", ["alice", "carol", "mia"]),
        ("task_updated", ["alice", "bob"]),
        ("task_assigned", ["carol"]),
        ("task_updated", ["alice", "bob", "carol"]),
        ("task_deleted", ["alice", "bob", "carol"]),
    ]


# --- rights -----------------------------------------------------------------------------


def _endpoints(team: Team) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every endpoint of ``team.other`` (otto's project), with a valid body."""
    pid = team.other.pk
    tid = Task.objects.get(project=team.other).pk
    msid = Milestone.objects.get(project=team.other).pk
    mid = Membership.objects.get(project=team.other).pk
    return [
        ("get", f"/api/projects/{pid}/", None),
        ("patch", f"/api/projects/{pid}/", {"title": "Mine"}),
        ("delete", f"/api/projects/{pid}/", None),
        ("get", f"/api/projects/{pid}/members/", None),
        ("post", f"/api/projects/{pid}/members/", {"username": "alice"}),
        ("get", f"/api/projects/{pid}/members/{mid}/", None),
        ("patch", f"/api/projects/{pid}/members/{mid}/", {"capacity": 1}),
        ("delete", f"/api/projects/{pid}/members/{mid}/", None),
        ("get", f"/api/projects/{pid}/milestones/", None),
        ("post", f"/api/projects/{pid}/milestones/", {"title": "M"}),
        ("get", f"/api/projects/{pid}/milestones/{msid}/", None),
        ("patch", f"/api/projects/{pid}/milestones/{msid}/", {"progress": 5}),
        ("delete", f"/api/projects/{pid}/milestones/{msid}/", None),
        ("get", f"/api/projects/{pid}/tasks/", None),
        ("post", f"/api/projects/{pid}/tasks/", {"title": "T"}),
        ("get", f"/api/projects/{pid}/tasks/{tid}/", None),
        ("patch", f"/api/projects/{pid}/tasks/{tid}/", {"status": "done"}),
        ("delete", f"/api/projects/{pid}/tasks/{tid}/", None),
    ]


def _call(client: APIClient, method: str, url: str, body: Any) -> Any:
    return getattr(client, method)(url, body, format="json")


def test_an_outsider_gets_404_on_every_endpoint(team: Team, client_for: Client) -> None:
    before = snapshot()
    for method, url, body in _endpoints(team):
        assert_error(_call(client_for(team.alice), method, url, body), 404, "not_found")
    assert snapshot() == before
    assert client_for(team.alice).get("/api/projects/").json()[0]["title"] == "Mobile App"
    assert [p["title"] for p in client_for(team.alice).get("/api/projects/").json()] == [
        "Mobile App"
    ]


def test_ids_of_another_project_are_404_under_ones_own(team: Team, client_for: Client) -> None:
    # Otto's task, milestone and membership ids, asked for under alice's own project.
    pid = team.project.pk
    before = snapshot()
    for method, url, body in _endpoints(team):
        parts = url.split("/")
        if len(parts) < 7:
            continue
        parts[3] = str(pid)
        assert_error(_call(client_for(team.alice), method, "/".join(parts), body), 404)
    assert snapshot() == before


def test_a_member_reads_but_does_not_manage(team: Team, client_for: Client) -> None:
    task = task_create(actor=team.alice, project=team.project, title="Other", assignee=team.carol)
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    pid, mid = team.project.pk, team.membership(team.carol).pk
    member = client_for(team.bob)
    reads = [
        f"/api/projects/{pid}/",
        f"/api/projects/{pid}/members/",
        f"/api/projects/{pid}/members/{mid}/",
        f"/api/projects/{pid}/milestones/",
        f"/api/projects/{pid}/milestones/{milestone.pk}/",
        f"/api/projects/{pid}/tasks/",
        f"/api/projects/{pid}/tasks/{task.pk}/",
    ]
    for url in reads:
        assert member.get(url).status_code == 200, url
    before = snapshot()
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("patch", f"/api/projects/{pid}/", {"title": "Mine"}),
        ("delete", f"/api/projects/{pid}/", None),
        ("post", f"/api/projects/{pid}/members/", {"username": "otto"}),
        ("patch", f"/api/projects/{pid}/members/{mid}/", {"capacity": 1}),
        ("delete", f"/api/projects/{pid}/members/{mid}/", None),
        ("post", f"/api/projects/{pid}/milestones/", {"title": "M"}),
        ("patch", f"/api/projects/{pid}/milestones/{milestone.pk}/", {"progress": 5}),
        ("delete", f"/api/projects/{pid}/milestones/{milestone.pk}/", None),
        ("post", f"/api/projects/{pid}/tasks/", {"title": "T"}),
        ("patch", f"/api/projects/{pid}/tasks/{task.pk}/", {"status": "done"}),
        ("delete", f"/api/projects/{pid}/tasks/{task.pk}/", None),
    ]
    for method, url, body in writes:
        assert_error(_call(member, method, url, body), 403, "forbidden")
    assert snapshot() == before


def test_a_member_may_leave_through_the_api(team: Team, client_for: Client) -> None:
    pid, mid = team.project.pk, team.membership(team.bob).pk
    assert client_for(team.bob).delete(f"/api/projects/{pid}/members/{mid}/").status_code == 204
    assert_error(client_for(team.bob).get(f"/api/projects/{pid}/"), 404)


def test_a_manager_cannot_touch_an_owner(team: Team, client_for: Client) -> None:
    pid, mid = team.project.pk, team.membership(team.alice).pk
    manager = client_for(team.mia)
    before = snapshot()
    patch = manager.patch(f"/api/projects/{pid}/members/{mid}/", {"capacity": 10}, format="json")
    assert_error(patch, 403)
    assert_error(manager.delete(f"/api/projects/{pid}/members/{mid}/"), 403)
    promote = manager.post(
        f"/api/projects/{pid}/members/", {"username": "otto", "role": "owner"}, format="json"
    )
    assert_error(promote, 403)
    assert snapshot() == before


def test_no_token_is_401_with_the_error_shape(team: Team, client_for: Client) -> None:
    pid = team.project.pk
    assert_error(client_for(None).get("/api/projects/"), 401)
    assert_error(client_for(None).get(f"/api/projects/{pid}/tasks/"), 401)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(bad.get("/api/projects/"), 401)


# --- bad input --------------------------------------------------------------------------

BAD_PATH_IDS = [
    "abc",
    "-1",
    "0",
    "1.5",
    "1e3",
    "99999999999999999999999",
    "9223372036854775808",
    "٣",
]


@pytest.mark.parametrize("bad", BAD_PATH_IDS)
def test_malformed_ids_in_the_path_are_a_json_404(team: Team, client_for: Client, bad: str) -> None:
    pid = team.project.pk
    owner = client_for(team.alice)
    lists = [
        f"/api/projects/{bad}/members/",
        f"/api/projects/{bad}/tasks/",
        f"/api/projects/{bad}/milestones/",
    ]
    details = [
        f"/api/projects/{bad}/",
        f"/api/projects/{pid}/members/{bad}/",
        f"/api/projects/{pid}/tasks/{bad}/",
        f"/api/projects/{pid}/milestones/{bad}/",
    ]
    before = snapshot()
    for url in lists:
        assert_error(owner.get(url), 404, "not_found")
        assert_error(owner.post(url, {"title": "x"}, format="json"), 404, "not_found")
    for url in details:
        assert_error(owner.get(url), 404, "not_found")
        assert_error(owner.patch(url, {"title": "x"}, format="json"), 404, "not_found")
        assert_error(owner.delete(url), 404, "not_found")
    assert snapshot() == before


def _bodies(team: Team) -> list[tuple[str, str, Any]]:
    """(method, url, bad body) for every endpoint that takes a body."""
    pid = team.project.pk
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    mid = team.membership(team.bob).pk
    projects, project = "/api/projects/", f"/api/projects/{pid}/"
    members, member = f"{project}members/", f"{project}members/{mid}/"
    milestones, one_milestone = f"{project}milestones/", f"{project}milestones/{milestone.pk}/"
    tasks, one_task = f"{project}tasks/", f"{project}tasks/{task.pk}/"
    huge = "x" * 100_000
    foreign = Milestone.objects.get(project=team.other).pk
    return [
        ("post", projects, {}),
        ("post", projects, {"title": ""}),
        ("post", projects, {"title": "   "}),
        ("post", projects, {"title": huge}),
        ("post", projects, {"title": 12}),
        ("post", projects, {"title": None}),
        ("post", projects, {"title": ["a"]}),
        ("post", projects, {"title": "ok", "description": huge}),
        ("post", projects, {"title": "ok", "owner": 1}),
        ("post", projects, {"title": "nul\x00"}),
        ("post", projects, ["title"]),
        ("post", projects, "title"),
        ("patch", project, {}),
        ("patch", project, {"title": {"a": 1}}),
        ("patch", project, {"description": 5}),
        ("post", members, {}),
        ("post", members, {"user_id": team.otto.pk, "username": "otto"}),
        ("post", members, {"user_id": "7"}),
        ("post", members, {"user_id": -1}),
        ("post", members, {"user_id": 0}),
        ("post", members, {"user_id": 2**63}),
        ("post", members, {"user_id": 10**40}),
        ("post", members, {"user_id": 1.5}),
        ("post", members, {"user_id": True}),
        ("post", members, {"user_id": 987_654}),
        ("post", members, {"username": "nobody"}),
        ("post", members, {"username": huge}),
        ("post", members, {"username": "otto", "role": "admin"}),
        ("post", members, {"username": "otto", "role": 1}),
        ("post", members, {"username": "otto", "capacity": 101}),
        ("post", members, {"username": "otto", "capacity": -1}),
        ("post", members, {"username": "otto", "capacity": "50"}),
        ("patch", member, {}),
        ("patch", member, {"role": None}),
        ("patch", member, {"capacity": 1000}),
        ("patch", member, {"user_id": team.otto.pk}),
        ("post", milestones, {"title": "M", "progress": 101}),
        ("post", milestones, {"title": "M", "progress": -5}),
        ("post", milestones, {"title": "M", "due_date": "tomorrow"}),
        ("post", milestones, {"title": "M", "due_date": 20270101}),
        ("post", milestones, {"title": "M", "due_date": "2027-02-30"}),
        ("patch", one_milestone, {"progress": "half"}),
        ("patch", one_milestone, {"title": huge}),
        ("post", tasks, {"title": "T", "status": "blocked"}),
        ("post", tasks, {"title": "T", "assignee_id": team.otto.pk}),
        ("post", tasks, {"title": "T", "assignee_id": 987_654}),
        ("post", tasks, {"title": "T", "assignee_id": -3}),
        ("post", tasks, {"title": "T", "assignee_id": "bob"}),
        ("post", tasks, {"title": "T", "assignee_id": 10**30}),
        ("post", tasks, {"title": "T", "milestone_id": foreign}),
        ("post", tasks, {"title": "T", "milestone_id": 987_654}),
        ("patch", one_task, {}),
        ("patch", one_task, {"status": None}),
        ("patch", one_task, {"status": ["done"]}),
        ("patch", one_task, {"assignee_id": team.otto.pk}),
        ("patch", one_task, {"assignee_id": 2**64}),
        ("patch", one_task, {"milestone_id": "x"}),
        ("patch", one_task, {"milestone_id": foreign}),
        ("patch", one_task, {"title": "T", "project_id": team.other.pk}),
    ]


def test_bad_bodies_are_400_and_write_nothing(team: Team, client_for: Client) -> None:
    owner = client_for(team.alice)
    cases = _bodies(team)
    before = snapshot()
    for method, url, body in cases:
        response = _call(owner, method, url, body)
        error = assert_error(response, 400)
        assert error["code"] in {
            "invalid",
            "invalid_assignee",
            "invalid_milestone",
            "unknown_user",
            "parse_error",
        }, (method, url, body, error)
    assert snapshot() == before


@pytest.mark.parametrize("title", ["\u200d", "\u3164", "\u2800", "Fix\u2028login", "a\x85b"])
def test_invisible_or_multi_line_titles_are_invalid_title(
    team: Team, client_for: Client, title: str
) -> None:
    owner = client_for(team.alice)
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    project = f"/api/projects/{team.project.pk}/"
    before = snapshot()
    for method, url in (
        ("post", "/api/projects/"),
        ("patch", project),
        ("post", f"{project}milestones/"),
        ("patch", f"{project}milestones/{milestone.pk}/"),
        ("post", f"{project}tasks/"),
        ("patch", f"{project}tasks/{task.pk}/"),
    ):
        response = _call(owner, method, url, {"title": title})
        error = assert_error(response, 400, "invalid_title")
        assert error["message"].startswith("title "), (method, url, error)
    assert snapshot() == before


def test_a_body_that_is_not_json_is_400(team: Team, client_for: Client) -> None:
    owner = client_for(team.alice)
    before = snapshot()
    response = owner.post("/api/projects/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")
    assert snapshot() == before


def test_the_assignee_check_does_not_reveal_which_users_exist(
    team: Team, client_for: Client
) -> None:
    pid = team.project.pk
    owner = client_for(team.alice)
    outsider = owner.post(
        f"/api/projects/{pid}/tasks/", {"title": "T", "assignee_id": team.otto.pk}, format="json"
    )
    missing = owner.post(
        f"/api/projects/{pid}/tasks/", {"title": "T", "assignee_id": 987_654}, format="json"
    )
    assert assert_error(outsider, 400) == assert_error(missing, 400)


def test_the_removed_members_inbox_stays_silent_through_the_api(
    team: Team, client_for: Client
) -> None:
    pid, mid = team.project.pk, team.membership(team.carol).pk
    manager = client_for(team.mia)
    rows = Inbox.objects.filter(user=team.carol).count()
    assert manager.delete(f"/api/projects/{pid}/members/{mid}/").status_code == 204
    manager.post(f"/api/projects/{pid}/tasks/", {"title": "After"}, format="json")
    manager.patch(f"/api/projects/{pid}/", {"title": "Renamed"}, format="json")
    assert Inbox.objects.filter(user=team.carol).count() == rows


# --- schema -----------------------------------------------------------------------------


def test_the_openapi_schema_is_clean() -> None:
    GENERATOR_STATS.reset()
    patterns = [path("api/", include("backend.projects.urls"))]
    generator = SchemaGenerator(patterns=patterns)  # type: ignore[no-untyped-call]
    schema = generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    assert not GENERATOR_STATS._warn_cache, dict(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._error_cache)
    task = schema["paths"]["/api/projects/{project_id}/tasks/{task_id}/"]
    assert {p["name"]: p["schema"]["type"] for p in task["patch"]["parameters"]} == {
        "project_id": "integer",
        "task_id": "integer",
    }
    components = schema["components"]["schemas"]
    assert "PatchedTaskUpdateInput" in components or "TaskUpdateInput" in components
    assert set(components["TaskOutput"]["properties"]) == {
        "id",
        "project_id",
        "title",
        "status",
        "assignee",
        "milestone_id",
        "created_at",
        "updated_at",
    }
