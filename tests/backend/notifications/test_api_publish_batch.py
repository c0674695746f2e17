"""POST /api/notifications/batch/: many publish bodies, one transaction, one result each."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient
from websockets.sync.client import connect

from backend.notifications.models import ApiKey, Inbox, Message
from backend.notifications.services import api_key_create
from tests.backend.notifications.test_api_publish import body, login, nothing_written, with_key
from tests.fixtures.services import RunningServer

BATCH = "/api/notifications/batch/"
PUBLISH = "/api/notifications/"


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    return {
        "staff": make_user("staff", is_staff=True),
        "dev": make_user("dev", role="developer"),
        "designer": make_user("designer", role="designer"),
    }


@pytest.fixture
def as_staff(team: dict[str, Any]) -> APIClient:
    return login("staff")


@pytest.fixture
def key(team: dict[str, Any]) -> tuple[ApiKey, str]:
    return api_key_create(name="CI", created_by=team["staff"])


def to(*usernames: str, **fields: Any) -> dict[str, Any]:
    return body(audience={"usernames": list(usernames)}, **fields)


def send(client: APIClient, items: Any) -> Any:
    return client.post(BATCH, {"notifications": items}, format="json")


def seqs(username: str) -> list[tuple[int, str]]:
    rows = Inbox.objects.filter(user__username=username).order_by("seq")
    return [(row.seq, row.message.title) for row in rows.select_related("message")]


def test_one_bad_item_is_its_own_error_and_the_others_are_created(
    as_staff: APIClient, team: dict[str, Any]
) -> None:
    bad_title = to("dev", title="")
    unknown = to("nobody", title="To nobody")
    bad_link = to("dev", title="Link", url="javascript:alert(1)")
    invisible = to("dev", title="\u200d")  # refused by the service, after parsing
    response = send(
        as_staff,
        [
            to("dev", title="First"),
            bad_title,
            unknown,
            "not an object",
            bad_link,
            invisible,
            body(),
        ],
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["created", *["error"] * 5, "created"]
    assert [r["index"] for r in answer["results"]] == list(range(7))
    assert (answer["created"], answer["duplicates"], answer["errors"]) == (2, 0, 5)
    # Each item's error is what the single endpoint answers for that body.
    singles = [(1, bad_title), (2, unknown), (3, "not an object"), (4, bad_link), (5, invisible)]
    for index, item in singles:
        single = as_staff.post(PUBLISH, item, format="json")
        assert single.status_code == 400
        assert answer["results"][index]["error"] == single.json()["error"], index
    assert answer["results"][2]["error"]["code"] == "unknown_audience"
    assert answer["results"][4]["error"]["detail"] == {
        "url": [
            "url must be an http:// or https:// address with a host, "
            "or a path on this server starting with /"
        ]
    }
    assert answer["results"][5]["error"]["code"] == "invalid_title"
    first, last = answer["results"][0], answer["results"][6]
    assert (first["recipients"], last["recipients"]) == (1, 3)
    assert list(Message.objects.order_by("id").values_list("id", "title")) == [
        (first["id"], "First"),
        (last["id"], "Maintenance tonight"),
    ]
    assert Message.objects.get(pk=first["id"]).actor == team["staff"]
    assert Message.objects.get(pk=first["id"]).publisher == f"user:{team['staff'].pk}"


def test_duplicates_against_earlier_notifications_and_within_the_batch(
    as_staff: APIClient, team: dict[str, Any]
) -> None:
    earlier = as_staff.post(PUBLISH, body(idempotency_key="deploy-41"), format="json").json()
    response = send(
        as_staff,
        [
            body(title="again", idempotency_key="deploy-41"),
            to("dev", title="new", idempotency_key="deploy-42"),
            to("dev", title="new, sent twice", idempotency_key="deploy-42"),
        ],
    )
    answer = response.json()
    results = answer["results"]
    assert [(r["status"], r["id"], r["recipients"]) for r in results] == [
        ("duplicate", earlier["id"], 3),
        ("created", results[1]["id"], 1),
        ("duplicate", results[1]["id"], 1),
    ]
    assert (answer["created"], answer["duplicates"], answer["errors"]) == (1, 2, 0)
    assert Message.objects.count() == 2
    # Sending the same batch again creates nothing.
    again = send(
        as_staff,
        [
            body(title="again", idempotency_key="deploy-41"),
            to("dev", title="new", idempotency_key="deploy-42"),
        ],
    ).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert [r["id"] for r in again["results"]] == [earlier["id"], results[1]["id"]]
    assert Message.objects.count() == 2


def test_per_recipient_seq_is_gap_free_across_the_batch(
    as_staff: APIClient, team: dict[str, Any]
) -> None:
    as_staff.post(PUBLISH, to("dev", title="before"), format="json")
    items = [to("dev", title=f"n{i}") if i % 2 else body(title=f"n{i}") for i in range(10)]
    items.insert(4, to("dev", title="bad", priority="whenever"))
    response = send(as_staff, items)
    assert response.json()["errors"] == 1
    assert seqs("dev") == list(enumerate(["before", *(f"n{i}" for i in range(10))], 1))
    assert seqs("designer") == list(enumerate((f"n{i}" for i in range(0, 10, 2)), 1))


def test_an_integration_key_sends_a_batch(team: dict[str, Any], key: tuple[ApiKey, str]) -> None:
    response = send(with_key(key[1]), [to("dev", idempotency_key="k"), body()])
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 2
    message = Message.objects.get(idempotency_key="k")
    assert message.actor is None
    assert message.publisher == f"api_key:{key[0].pk}"


def test_anonymous_is_401_and_non_staff_is_403(team: dict[str, Any]) -> None:
    anonymous = send(APIClient(), [body()])
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    forbidden = send(login("dev"), [body()])
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    bad_key = send(with_key("tnk_unknown"), [body()])
    assert bad_key.status_code == 401
    assert nothing_written()


@pytest.mark.parametrize(
    "payload",
    [
        [body()],
        "text",
        None,
        {},
        {"notification": [body()]},
        {"notifications": body()},
        {"notifications": "x"},
        {"notifications": None},
        {"notifications": []},
        {"notifications": [body()], "extra": 1},
        {"notifications": [body()] * 1001},
    ],
)
def test_a_body_that_is_not_a_list_of_1_to_1000_is_400(as_staff: APIClient, payload: Any) -> None:
    response = as_staff.post(BATCH, json.dumps(payload), content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert "1 to 1000" in error["message"]
    assert nothing_written()


def test_too_many_items_says_how_many(as_staff: APIClient) -> None:
    error = send(as_staff, [body()] * 1001).json()["error"]
    assert error["detail"] == {"items": 1001, "max_items": 1000}
    assert "1001" in error["message"]


def test_a_thousand_typical_items_fit_in_one_request(
    as_staff: APIClient, team: dict[str, Any]
) -> None:
    items = [
        to(
            "dev",
            title=f"Build {i} failed on main",
            message="The nightly build failed: 3 tests red, see the log for details.",
            priority="high",
            url=f"https://ci.example.com/builds/{i}",
            event_type="ci.build_failed",
            idempotency_key=f"build-{i}",
        )
        for i in range(1000)
    ]
    response = send(as_staff, items)
    assert response.status_code == 200, response.content[:500]
    assert response.json()["created"] == 1000
    assert [seq for seq, _ in seqs("dev")] == list(range(1, 1001))


def test_a_batch_reaches_the_socket_in_seq_order(demo_server: RunningServer) -> None:
    """On the real server: committed first, then every frame, in item order, no gap."""

    def token(username: str) -> str:
        response = httpx.post(
            f"{demo_server.url}/api/auth/token/",
            json={"username": username, "password": "demo"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        access: str = response.json()["access"]
        return access

    titles = [f"Batch item {i}" for i in range(200)]
    with connect(
        demo_server.ws_url,
        additional_headers={"Authorization": f"Bearer {token('alice')}"},
        open_timeout=10,
    ) as websocket:
        hello = json.loads(websocket.recv(timeout=10))
        assert hello["type"] == "hello"
        latest = hello["payload"]["latest_seq"]
        sent = httpx.post(
            f"{demo_server.url}{BATCH}",
            json={"notifications": [to("alice", title=title) for title in titles]},
            headers={"Authorization": f"Bearer {token('admin')}"},
            timeout=30,
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["created"] == 200
        frames: list[dict[str, Any]] = []
        while len(frames) < len(titles):
            frame = json.loads(websocket.recv(timeout=10))
            if frame["type"] == "notification_created":
                frames.append(frame["payload"])
    assert [frame["seq"] for frame in frames] == list(range(latest + 1, latest + 201))
    assert [frame["title"] for frame in frames] == titles
