"""The REST error shape for what Django itself refuses: request bodies over the limit.

A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` raised RequestDataTooBig when DRF read it,
and Django answered with its HTML "Bad Request" page (security review, finding 13b).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.conf import LazySettings
from rest_framework.test import APIClient

from backend.notifications.models import Message
from backend.users.services import session_start
from tests.fixtures.services import RunningServer

LIMIT = 10_000


def _oversized(limit: int) -> str:
    return json.dumps({"username": "x" * limit, "password": "demo", "title": "x" * limit})


def _assert_too_large(status: int, content_type: str, body: Any, limit: int) -> None:
    assert status == 413, body
    assert content_type.startswith("application/json"), content_type
    assert list(body) == ["error"]
    assert body["error"]["code"] == "request_too_large"
    assert f"at most {limit} bytes" in body["error"]["message"]


@pytest.mark.parametrize(
    "path",
    ["/api/auth/token/", "/api/notifications/", "/api/projects/", "/api/inbox/mark-read/"],
)
def test_an_oversized_body_is_a_json_413(make_user: Any, settings: LazySettings, path: str) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    staff = make_user("staff", is_staff=True)
    client = APIClient()
    if path != "/api/auth/token/":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=staff).access}")

    response = client.post(path, _oversized(LIMIT), content_type="application/json")

    _assert_too_large(response.status_code, response["Content-Type"], response.json(), LIMIT)
    assert not Message.objects.exists()


def test_a_body_at_the_limit_is_parsed_as_usual(make_user: Any, settings: LazySettings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    make_user("alice", password="demo")
    body = json.dumps({"username": "alice", "password": "demo"})
    response = APIClient().post(
        "/api/auth/token/", body.ljust(LIMIT), content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_the_real_server_answers_json_413_and_stays_up(demo_server: RunningServer) -> None:
    # Django's default limit, 2.5 MB, through uvicorn and the whole ASGI stack.
    limit = 2_621_440
    login = httpx.post(
        f"{demo_server.url}/api/auth/token/",
        json={"username": "admin", "password": "demo"},
        timeout=20,
    )
    assert login.status_code == 200, login.text
    staff = {"Authorization": f"Bearer {login.json()['access']}"}
    oversized = _oversized(limit).encode()

    for path, headers in (("/api/auth/token/", {}), ("/api/notifications/", staff)):
        response = httpx.post(
            demo_server.url + path,
            content=oversized,
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        _assert_too_large(
            response.status_code, response.headers["content-type"], response.json(), limit
        )

    assert demo_server.is_running()
    assert httpx.get(f"{demo_server.url}/healthz", timeout=10).status_code == 200
    again = httpx.post(
        f"{demo_server.url}/api/notifications/",
        json={"audience": {"usernames": ["alice"]}, "title": "still here"},
        headers=staff,
        timeout=20,
    )
    assert again.status_code == 201, again.text
