"""Presence over REST (backend/notifications/presence_api.py): a project's snapshot and
the caller's status, with the socket's checks and words (live_presence.py), through
Django's test client (the views run the presence coroutines with async_to_sync)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from backend.projects.models import Membership, Project
from backend.users.services import session_start

pytestmark = pytest.mark.django_db


def client_of(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
    return client


@pytest.fixture
def team(make_user: Any) -> tuple[Any, Any, Any, Project]:
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    project = Project.objects.create(title="Mobile App")
    Membership.objects.bulk_create(
        [Membership(project=project, user=alice), Membership(project=project, user=bob)]
    )
    return alice, bob, eve, project


def test_a_member_gets_the_presence_snapshot_payload(team: Any) -> None:
    alice, bob, _eve, project = team
    answer = client_of(alice).get(f"/api/projects/{project.pk}/presence/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["project_id"] == project.pk
    assert [m["user"]["username"] for m in body["members"]] == ["alice", "bob"]
    assert body["members"][1] == {
        "user": {"id": bob.pk, "username": "bob", "first_name": "", "last_name": ""},
        "online": False,
        "status": "offline",
        "last_seen": None,
    }


@pytest.mark.parametrize("path", ["{pk}", "999999", "x", "0", str(2**63)])
def test_anyone_else_gets_the_same_404(team: Any, path: str) -> None:
    _alice, _bob, eve, project = team
    answer = client_of(eve).get(f"/api/projects/{path.format(pk=project.pk)}/presence/")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_presence_needs_a_login(team: Any) -> None:
    project = team[3]
    assert APIClient().get(f"/api/projects/{project.pk}/presence/").status_code == 401
    assert APIClient().post("/api/presence/status/", {"status": "away"}).status_code == 401


def test_setting_a_status_answers_it_and_dnd_is_the_attention_setting(team: Any) -> None:
    alice = team[0]
    client = client_of(alice)
    for status in ("away", "online"):
        answer = client.post("/api/presence/status/", {"status": status}, format="json")
        assert (answer.status_code, answer.json()) == (200, {"status": status})
    until = "2999-01-01T00:00:00Z"
    answer = client.post("/api/presence/status/", {"status": "dnd", "until": until}, format="json")
    assert (answer.status_code, answer.json()) == (200, {"status": "dnd"})
    assert client.get("/api/attention/").json()["dnd"] == {"until": until}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"status": "busy"}, "invalid_status"),
        ({}, "invalid_status"),
        ({"status": ["away"]}, "invalid_status"),
        ({"status": "dnd", "until": "tomorrow"}, "invalid_attention"),
    ],
)
def test_a_bad_status_is_a_400_in_the_sockets_words(
    team: Any, body: dict[str, Any], code: str
) -> None:
    answer = client_of(team[0]).post("/api/presence/status/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == code
