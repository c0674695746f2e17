"""POST /api/notifications/: staff JWTs and integration keys publish; nobody else does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from backend.notifications.models import ApiKey, Inbox, Message
from backend.notifications.services import api_key_authenticate, api_key_create, api_key_revoke
from backend.projects.models import Membership, Project

PUBLISH = "/api/notifications/"


def login(username: str, password: str = "pw") -> APIClient:
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


def with_key(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def body(**fields: Any) -> dict[str, Any]:
    return {"audience": {"everyone": True}, "title": "Maintenance tonight", **fields}


def nothing_written() -> bool:
    return not Message.objects.exists() and not Inbox.objects.exists()


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    return {
        "staff": make_user("staff", is_staff=True),
        "dev": make_user("dev", role="developer"),
        "designer": make_user("designer", role="designer"),
        "gone": make_user("gone", role="developer", is_active=False),
    }


@pytest.fixture
def as_staff(team: dict[str, Any]) -> APIClient:
    return login("staff")


@pytest.fixture
def key(team: dict[str, Any]) -> tuple[ApiKey, str]:
    return api_key_create(name="CI", created_by=team["staff"])


def test_staff_jwt_publishes_to_everyone_active(as_staff: APIClient, team: dict[str, Any]) -> None:
    response = as_staff.post(
        PUBLISH, body(priority="high", url="https://status.example"), format="json"
    )
    assert response.status_code == 201, response.content
    result = response.json()
    assert result["created"] is True
    assert result["recipients"] == 3  # everyone but the inactive user
    message = Message.objects.get(pk=result["id"])
    assert message.actor == team["staff"]
    assert message.priority == "high"
    assert message.event_type == "announcement"
    assert message.audience == {"everyone": True}
    recipients = set(Inbox.objects.filter(message=message).values_list("user__username", flat=True))
    assert recipients == {"staff", "dev", "designer"}


def test_api_key_publishes_without_an_actor(team: dict[str, Any], key: tuple[ApiKey, str]) -> None:
    stored, raw = key
    response = with_key(raw).post(
        PUBLISH,
        body(audience={"roles": ["developer"]}, event_type="ci.build_failed", message="Red"),
        format="json",
    )
    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.actor is None
    assert message.event_type == "ci.build_failed"
    assert response.json()["recipients"] == 1
    assert list(message.deliveries.values_list("user", flat=True)) == [team["dev"].pk]
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_audience_parts_are_a_union(as_staff: APIClient, team: dict[str, Any]) -> None:
    project = Project.objects.create(title="Apollo")
    Membership.objects.create(project=project, user=team["designer"])
    response = as_staff.post(
        PUBLISH,
        body(
            audience={
                "users": [team["staff"].pk],
                "usernames": ["dev", "gone"],
                "projects": [project.pk],
                "roles": ["designer"],
            }
        ),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["recipients"] == 3
    users = set(Inbox.objects.values_list("user__username", flat=True))
    assert users == {"staff", "dev", "designer"}


def test_idempotency_key_makes_one_message(as_staff: APIClient, team: dict[str, Any]) -> None:
    payload = body(idempotency_key="deploy-2024-06-01")
    first = as_staff.post(PUBLISH, payload, format="json")
    second = as_staff.post(PUBLISH, payload, format="json")
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {**first.json(), "created": False}
    assert Message.objects.count() == 1
    per_user = list(Inbox.objects.values_list("user_id", flat=True))
    assert sorted(per_user) == sorted(set(per_user))
    assert len(per_user) == 3


def test_idempotency_keys_are_scoped_to_their_publisher(
    as_staff: APIClient, team: dict[str, Any], key: tuple[ApiKey, str]
) -> None:
    # Security review, finding 9: a key's "deploy-42" to one user made a later staff
    # announcement with the same idempotency key return it and never send.
    ci = with_key(key[1])
    other_key = with_key(api_key_create(name="Monitoring")[1])
    to_dev = body(audience={"usernames": ["dev"]}, title="Deploy 42", idempotency_key="deploy-42")

    first = ci.post(PUBLISH, to_dev, format="json")
    announcement = as_staff.post(PUBLISH, body(idempotency_key="deploy-42"), format="json")
    other = other_key.post(PUBLISH, to_dev, format="json")
    repeated = ci.post(PUBLISH, to_dev, format="json")

    assert [first.status_code, announcement.status_code, other.status_code] == [201, 201, 201]
    assert announcement.json()["recipients"] == 3
    assert len({first.json()["id"], announcement.json()["id"], other.json()["id"]}) == 3
    assert repeated.status_code == 200
    assert repeated.json() == {**first.json(), "created": False}
    inboxes = {
        name: sorted(Inbox.objects.filter(user__username=name).values_list("seq", flat=True))
        for name in ("staff", "dev", "designer")
    }
    assert inboxes == {"staff": [1], "dev": [1, 2, 3], "designer": [1]}
    assert Message.objects.get(pk=first.json()["id"]).publisher == f"api_key:{key[0].pk}"
    assert Message.objects.get(pk=announcement.json()["id"]).publisher == (
        f"user:{team['staff'].pk}"
    )


# Who may publish


def test_non_staff_jwt_is_403(team: dict[str, Any]) -> None:
    response = login("dev").post(PUBLISH, body(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "staff" in response.json()["error"]["message"]
    assert nothing_written()


def test_no_credentials_is_401(team: dict[str, Any]) -> None:
    response = APIClient().post(PUBLISH, body(), format="json")
    assert response.status_code == 401
    assert nothing_written()


def test_revoked_key_is_401(team: dict[str, Any], key: tuple[ApiKey, str]) -> None:
    api_key_revoke(key=key[0])
    response = with_key(key[1]).post(PUBLISH, body(), format="json")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert "revoked" in error["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    "header",
    ["Api-Key tnk_unknown", "Api-Key", "Api-Key a b", "Api-Key " + "x" * 300, "api-key tnk_nope"],
)
def test_unknown_or_malformed_key_is_401(team: dict[str, Any], header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(PUBLISH, body(), format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"invalid_api_key", "bad_authorization_header"}
    assert nothing_written()


def test_a_key_opens_nothing_but_publishing(team: dict[str, Any], key: tuple[ApiKey, str]) -> None:
    client = with_key(key[1])
    assert client.get("/api/inbox/").status_code == 401
    assert client.get("/api/me").status_code == 401


def test_inactive_staff_is_401(as_staff: APIClient, team: dict[str, Any]) -> None:
    team["staff"].is_active = False
    team["staff"].save()
    assert as_staff.post(PUBLISH, body(), format="json").status_code == 401
    assert nothing_written()


# Bad input: 400, nothing written


@pytest.mark.parametrize(
    "payload",
    [
        body(title=""),
        body(title="   "),
        body(title=123),
        body(title=None),
        body(title="x" * 201),
        body(message="x" * 5001),
        body(message=["not", "text"]),
        body(priority="whenever"),
        body(priority=1),
        body(url="javascript:alert(1)"),
        body(url="file:///etc/passwd"),
        body(url="x" * 2001),
        body(event_type="Has Spaces"),
        body(event_type="x" * 51),
        body(idempotency_key=""),
        body(idempotency_key="k" * 201),
        body(idempotency_key=7),
        body(audience={}),
        body(audience={"everyone": False}),
        body(audience={"users": []}),
        body(audience=[1, 2]),
        body(audience="everyone"),
        body(audience={"everyone": "yes"}),
        body(audience={"everyone": 1}),
        body(audience={"users": ["1"]}),
        body(audience={"users": [True]}),
        body(audience={"users": [0]}),
        body(audience={"users": [2**63]}),
        body(audience={"users": 5}),
        body(audience={"roles": [5]}),
        body(audience={"users": list(range(1, 1002))}),
        body(audience={"user": [1]}),
        body(audience={"everyone": True}, mesage="typo"),
        {"title": "No audience"},
        [],
        "text",
    ],
)
def test_bad_input_is_400_and_writes_nothing(as_staff: APIClient, payload: Any) -> None:
    response = as_staff.post(PUBLISH, payload, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "//evil.example/x",
        "/\\evil.example",
        "java\tscript:x",
    ],
)
def test_links_that_are_not_web_pages_are_a_field_error(as_staff: APIClient, url: str) -> None:
    response = as_staff.post(PUBLISH, body(url=url), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"].startswith("url: url ")
    assert list(error["detail"]) == ["url"]
    assert nothing_written()


def test_a_path_on_this_server_is_a_link(as_staff: APIClient) -> None:
    response = as_staff.post(PUBLISH, body(url="/projects/1/tasks/2"), format="json")
    assert response.status_code == 201, response.content
    assert Message.objects.get().url == "/projects/1/tasks/2"


@pytest.mark.parametrize(
    "title",
    ["\u200d", "\u3164", "\u200b\u00a0\u200b", "\u2800", "Deploy\u2028at 5", "a\u2029b", "a\x85b"],
)
def test_invisible_or_multi_line_titles_are_invalid_title(as_staff: APIClient, title: str) -> None:
    response = as_staff.post(PUBLISH, body(title=title), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_title"
    assert error["message"].startswith("title ")
    assert nothing_written()


def test_empty_audience_has_its_own_code(as_staff: APIClient) -> None:
    response = as_staff.post(PUBLISH, body(audience={"everyone": False}), format="json")
    assert response.json()["error"]["code"] == "empty_audience"


def test_unknown_names_are_named(as_staff: APIClient, team: dict[str, Any]) -> None:
    response = as_staff.post(
        PUBLISH,
        body(
            audience={
                "users": [team["dev"].pk, 999_999],
                "usernames": ["dev", "nobody", "ghost"],
                "projects": [424_242],
                "roles": ["developer", "astronaut"],
            }
        ),
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_audience"
    assert error["detail"]["unknown"] == {
        "users": [999_999],
        "usernames": ["nobody", "ghost"],
        "projects": [424_242],
        "roles": ["astronaut"],
    }
    for name in ("nobody", "ghost", "424242", "astronaut", "999999"):
        assert name in error["message"]
    assert nothing_written()


def test_field_errors_name_the_field(as_staff: APIClient) -> None:
    response = as_staff.post(PUBLISH, body(priority="whenever"), format="json")
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "priority" in error["detail"]
    assert error["message"].startswith("priority:")


def test_an_audience_that_resolves_to_nobody_is_fine(as_staff: APIClient) -> None:
    Project.objects.create(title="Empty")
    project = Project.objects.get()
    response = as_staff.post(PUBLISH, body(audience={"projects": [project.pk]}), format="json")
    assert response.status_code == 201
    assert response.json()["recipients"] == 0


def test_a_key_is_looked_up_once_per_bound_and_its_use_recorded_to_the_minute(
    team: dict[str, Any], key: tuple[ApiKey, str]
) -> None:
    stored, raw = key
    client = with_key(raw)
    with CaptureQueriesContext(connection) as first:
        assert client.post(PUBLISH, body(), format="json").status_code == 201
    with CaptureQueriesContext(connection) as second:
        assert client.post(PUBLISH, body(), format="json").status_code == 201
    key_queries = [
        [q["sql"] for q in run.captured_queries if "apikey" in q["sql"].lower()]
        for run in (first, second)
    ]
    assert len(key_queries[0]) == 2  # the lookup and last_used_at
    assert key_queries[1] == []  # cached
    stored.refresh_from_db()
    used = stored.last_used_at
    assert used is not None
    # Asked again within the minute: the use is not written again.
    assert api_key_authenticate(raw=raw) == stored
    stored.refresh_from_db()
    assert stored.last_used_at == used
    ApiKey.objects.filter(pk=stored.pk).update(last_used_at=used - timedelta(minutes=2))
    api_key_authenticate(raw=raw)
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    assert stored.last_used_at > used


def test_a_key_revoked_in_this_process_is_refused_at_once(
    team: dict[str, Any], key: tuple[ApiKey, str]
) -> None:
    client = with_key(key[1])
    assert client.post(PUBLISH, body(), format="json").status_code == 201
    api_key_revoke(key=key[0])
    assert client.post(PUBLISH, body(), format="json").status_code == 401
