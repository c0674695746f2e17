"""The inbox over REST: pages and cursors, filters, and idempotent, caller-scoped actions."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.numbers import MAX_INT64
from backend.projects.models import Project

INBOX = "/api/inbox/"


def login(username: str, password: str = "pw") -> APIClient:
    """A client holding a real access token from the token endpoint."""
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


def notify(*users: Any, title: str = "Hello", **fields: Any) -> None:
    notification_create(audience=Audience(users=tuple(u.pk for u in users)), title=title, **fields)


def seqs(body: dict[str, Any]) -> list[int]:
    return [item["seq"] for item in body["results"]]


def ids_of(user: Any) -> list[int]:
    return list(Inbox.objects.filter(user=user).order_by("seq").values_list("id", flat=True))


def state_of(user: Any) -> list[tuple[int, bool, bool]]:
    return [
        (row.seq, row.read_at is not None, row.deleted_at is not None)
        for row in Inbox.objects.filter(user=user).order_by("seq")
    ]


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Any) -> Any:
    return make_user("bob")


@pytest.fixture
def as_alice(alice: Any) -> APIClient:
    return login("alice")


@pytest.fixture
def seven(alice: Any, bob: Any) -> None:
    """Alice gets seq 1..7; Bob shares some and has one of his own in between."""
    for number in range(1, 8):
        if number == 4:
            notify(bob, title="Bob only")
        if number % 2:
            notify(alice, bob, title=f"n{number}")
        else:
            notify(alice, title=f"n{number}")


# Listing


def test_list_newest_first_with_state(as_alice: APIClient, seven: None) -> None:
    body = as_alice.get(INBOX).json()
    assert seqs(body) == [7, 6, 5, 4, 3, 2, 1]
    assert body["latest_seq"] == 7
    assert body["unread_count"] == 7
    assert body["next_before_seq"] is None
    assert body["next_after_seq"] is None
    first = body["results"][-1]
    assert first["title"] == "n1"
    assert first["is_read"] is False
    assert set(first) >= {"id", "seq", "is_read", "read_at", "title", "message", "priority"}


def test_browse_down_with_before_seq(as_alice: APIClient, seven: None) -> None:
    page = as_alice.get(INBOX, {"limit": 3}).json()
    assert seqs(page) == [7, 6, 5]
    assert page["next_before_seq"] == 5
    page = as_alice.get(INBOX, {"limit": 3, "before_seq": 5}).json()
    assert seqs(page) == [4, 3, 2]
    page = as_alice.get(INBOX, {"limit": 3, "before_seq": page["next_before_seq"]}).json()
    assert seqs(page) == [1]
    assert page["next_before_seq"] is None


def test_catch_up_with_after_seq(as_alice: APIClient, seven: None) -> None:
    page = as_alice.get(INBOX, {"after_seq": 0, "limit": 4}).json()
    assert seqs(page) == [1, 2, 3, 4]
    assert page["next_after_seq"] == 4
    assert page["next_before_seq"] is None
    page = as_alice.get(INBOX, {"after_seq": 4, "limit": 4}).json()
    assert seqs(page) == [5, 6, 7]
    assert page["next_after_seq"] is None
    assert as_alice.get(INBOX, {"after_seq": 7}).json()["results"] == []


def test_after_and_before_together_bound_a_window(as_alice: APIClient, seven: None) -> None:
    assert seqs(as_alice.get(INBOX, {"after_seq": 2, "before_seq": 6}).json()) == [3, 4, 5]


def test_limit_is_capped_at_200(as_alice: APIClient, alice: Any) -> None:
    for _ in range(205):
        notify(alice)
    body = as_alice.get(INBOX, {"limit": 10_000, "after_seq": 0}).json()
    assert len(body["results"]) == 200
    assert body["next_after_seq"] == 200
    assert len(as_alice.get(INBOX).json()["results"]) == 50  # the default


def test_other_users_rows_never_appear(
    as_alice: APIClient, seven: None, alice: Any, bob: Any
) -> None:
    body = as_alice.get(INBOX, {"limit": 200}).json()
    assert "Bob only" not in [item["title"] for item in body["results"]]
    listed = [item["id"] for item in body["results"]]
    assert listed == ids_of(alice)[::-1]
    assert set(listed).isdisjoint(ids_of(bob))


def test_unread_filter(as_alice: APIClient, alice: Any, seven: None) -> None:
    as_alice.post("/api/inbox/mark-read/", {"ids": ids_of(alice)[:3]}, format="json")
    assert seqs(as_alice.get(INBOX, {"unread": "true"}).json()) == [7, 6, 5, 4]
    assert seqs(as_alice.get(INBOX, {"unread": "false"}).json()) == [3, 2, 1]
    assert as_alice.get(INBOX, {"unread": "true"}).json()["unread_count"] == 4


def test_project_filter(as_alice: APIClient, alice: Any) -> None:
    apollo = Project.objects.create(title="Apollo")
    notify(alice, title="general")
    notify(alice, title="apollo", project_id=apollo.pk, project_title="Apollo")
    body = as_alice.get(INBOX, {"project": apollo.pk}).json()
    assert [item["title"] for item in body["results"]] == ["apollo"]
    assert body["results"][0]["project"] == {"id": apollo.pk, "title": "Apollo"}


def test_deleted_rows_are_not_listed(as_alice: APIClient, alice: Any, seven: None) -> None:
    as_alice.post("/api/inbox/delete/", {"ids": ids_of(alice)[:2]}, format="json")
    assert seqs(as_alice.get(INBOX).json()) == [7, 6, 5, 4, 3]


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        str(MAX_INT64 + 1),
        str(2**64),
        "abc",
        "1.5",
        "1e3",
        "\u00b2",
        "\uff19",
        "9" * 5000,
        "0x10",
    ],
)
@pytest.mark.parametrize("name", ["after_seq", "before_seq"])
def test_bad_cursor_is_400_invalid_cursor(as_alice: APIClient, name: str, value: str) -> None:
    response = as_alice.get(INBOX, {name: value})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_largest_cursor_is_fine(as_alice: APIClient, seven: None) -> None:
    response = as_alice.get(INBOX, {"after_seq": MAX_INT64})
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "-5"}, {"limit": "lots"}, {"unread": "maybe"}, {"project": "x"}],
)
def test_bad_filters_are_400(as_alice: APIClient, params: dict[str, str]) -> None:
    response = as_alice.get(INBOX, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_limit", "invalid_filter"}


def test_inbox_needs_a_user(db: None) -> None:
    response = APIClient().get(INBOX)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# Single rows


def test_get_one(as_alice: APIClient, alice: Any, seven: None) -> None:
    row_id = ids_of(alice)[2]
    body = as_alice.get(f"{INBOX}{row_id}/").json()
    assert body["id"] == row_id
    assert body["seq"] == 3


@pytest.mark.parametrize("which", ["bob", "missing", "huge", "zero"])
def test_get_someone_elses_or_a_missing_row_is_404(
    as_alice: APIClient, bob: Any, seven: None, which: str
) -> None:
    row_id = {"bob": ids_of(bob)[0], "missing": 10**9, "huge": 2**70, "zero": 0}[which]
    response = as_alice.get(f"{INBOX}{row_id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert as_alice.delete(f"{INBOX}{row_id}/").status_code == 404


def test_delete_one_is_idempotent_and_hides_the_row(
    as_alice: APIClient, alice: Any, seven: None
) -> None:
    row_id = ids_of(alice)[0]
    assert as_alice.delete(f"{INBOX}{row_id}/").status_code == 204
    assert as_alice.delete(f"{INBOX}{row_id}/").status_code == 204
    assert as_alice.get(f"{INBOX}{row_id}/").status_code == 404
    assert as_alice.get("/api/inbox/unread-count/").json() == {"unread_count": 6, "latest_seq": 7}


def test_unread_count(as_alice: APIClient, alice: Any, seven: None) -> None:
    assert as_alice.get("/api/inbox/unread-count/").json() == {"unread_count": 7, "latest_seq": 7}


def test_unread_count_of_a_new_user_is_zero(as_alice: APIClient) -> None:
    assert as_alice.get("/api/inbox/unread-count/").json() == {"unread_count": 0, "latest_seq": 0}


# Actions: idempotent, scoped to the caller


def test_mark_read_twice_gives_the_same_state(as_alice: APIClient, alice: Any, seven: None) -> None:
    chosen = ids_of(alice)[:3]
    first = as_alice.post("/api/inbox/mark-read/", {"ids": chosen}, format="json")
    assert first.status_code == 200
    assert first.json() == {"changed": sorted(chosen), "not_found": [], "unread_count": 4}
    after_first = state_of(alice)
    second = as_alice.post("/api/inbox/mark-read/", {"ids": chosen}, format="json").json()
    assert second == {"changed": [], "not_found": [], "unread_count": 4}
    assert state_of(alice) == after_first
    item = as_alice.get(f"{INBOX}{chosen[0]}/").json()
    assert item["is_read"] is True
    assert item["read_at"] is not None


def test_mark_unread_twice_gives_the_same_state(
    as_alice: APIClient, alice: Any, seven: None
) -> None:
    chosen = ids_of(alice)[:3]
    as_alice.post("/api/inbox/mark-read/", {"ids": chosen}, format="json")
    first = as_alice.post("/api/inbox/mark-unread/", {"ids": chosen[:2]}, format="json").json()
    assert first == {"changed": sorted(chosen[:2]), "not_found": [], "unread_count": 6}
    after_first = state_of(alice)
    second = as_alice.post("/api/inbox/mark-unread/", {"ids": chosen[:2]}, format="json").json()
    assert second["changed"] == []
    assert second["unread_count"] == 6
    assert state_of(alice) == after_first


def test_mark_all_read_up_to_a_seq(as_alice: APIClient, alice: Any, seven: None) -> None:
    first = as_alice.post("/api/inbox/mark-all-read/", {"up_to_seq": 5}, format="json").json()
    assert len(first["changed"]) == 5
    assert first["unread_count"] == 2
    after_first = state_of(alice)
    again = as_alice.post("/api/inbox/mark-all-read/", {"up_to_seq": 5}, format="json").json()
    assert again == {"changed": [], "not_found": [], "unread_count": 2}
    assert state_of(alice) == after_first
    everything = as_alice.post("/api/inbox/mark-all-read/", {}, format="json").json()
    assert everything["unread_count"] == 0
    assert as_alice.post("/api/inbox/mark-all-read/", format="json").json()["changed"] == []


def test_mark_all_read_leaves_other_users_alone(as_alice: APIClient, bob: Any, seven: None) -> None:
    before = state_of(bob)
    as_alice.post("/api/inbox/mark-all-read/", {}, format="json")
    assert state_of(bob) == before


@pytest.mark.parametrize("value", [-1, MAX_INT64 + 1, "x", 1.5, True, "²"])
def test_mark_all_read_refuses_a_bad_bound(as_alice: APIClient, alice: Any, value: Any) -> None:
    notify(alice)
    response = as_alice.post("/api/inbox/mark-all-read/", {"up_to_seq": value}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"
    assert state_of(alice) == [(1, False, False)]


def test_delete_twice_gives_the_same_state(as_alice: APIClient, alice: Any, seven: None) -> None:
    chosen = ids_of(alice)[4:]
    first = as_alice.post("/api/inbox/delete/", {"ids": chosen}, format="json").json()
    assert first == {"changed": sorted(chosen), "not_found": [], "unread_count": 4}
    after_first = state_of(alice)
    second = as_alice.post("/api/inbox/delete/", {"ids": chosen}, format="json").json()
    assert second == {"changed": [], "not_found": [], "unread_count": 4}
    assert state_of(alice) == after_first


@pytest.mark.parametrize("action", ["mark-read", "mark-unread", "delete"])
def test_other_users_ids_are_not_found_and_untouched(
    as_alice: APIClient, alice: Any, bob: Any, seven: None, action: str
) -> None:
    login("bob").post("/api/inbox/mark-read/", {"ids": ids_of(bob)[:1]}, format="json")
    bob_before = state_of(bob)
    mine = ids_of(alice)[0]
    theirs = ids_of(bob)[:2]
    response = as_alice.post(f"/api/inbox/{action}/", {"ids": [mine, *theirs]}, format="json")
    assert response.status_code == 200
    assert response.json()["not_found"] == theirs
    assert state_of(bob) == bob_before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": "1,2"},
        {"ids": 5},
        {"ids": [1, "2"]},
        {"ids": [True]},
        {"ids": [0]},
        {"ids": [-3]},
        {"ids": [2**63]},
        {"ids": [1.0]},
        {"ids": list(range(1, 1002))},
        [1, 2],
    ],
)
@pytest.mark.parametrize("action", ["mark-read", "mark-unread", "delete"])
def test_bad_ids_are_400_and_change_nothing(
    as_alice: APIClient, alice: Any, seven: None, action: str, body: Any
) -> None:
    before = state_of(alice)
    response = as_alice.post(f"/api/inbox/{action}/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_ids"
    assert state_of(alice) == before


def test_actions_need_a_user(alice: Any, seven: None) -> None:
    before = state_of(alice)
    response = APIClient().post("/api/inbox/mark-read/", {"ids": ids_of(alice)}, format="json")
    assert response.status_code == 401
    assert state_of(alice) == before
