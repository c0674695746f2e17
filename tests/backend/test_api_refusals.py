"""Requests no endpoint takes (backend/api_refusals.py): unknown /api/ paths and
methods an endpoint does not allow, answered in the API's error shape, through the
whole middleware chain (Django's test client)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve

from backend.api_refusals import allowed_methods

pytestmark = pytest.mark.django_db


def _error(response: object) -> dict[str, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    error: dict[str, str] = body["error"]
    return error


@pytest.mark.parametrize("path", ["/api/nope", "/api/nope/", "/api/v2/notifications/", "/api/"])
def test_an_unknown_api_path_answers_json_404(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert _error(response) == {
        "code": "not_found",
        "message": f"The API has no endpoint at {path}.",
    }


def test_a_path_missing_its_slash_is_told_the_path_with_it(client: Client) -> None:
    response = client.post("/api/notifications", data={}, content_type="application/json")

    assert response.status_code == 404
    assert "Did you mean /api/notifications/ (with the slash)?" in _error(response)["message"]


def test_the_404_keeps_the_security_headers(client: Client) -> None:
    response = client.get("/api/nope")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_a_method_the_publish_endpoint_does_not_take_is_405_before_authentication(
    client: Client, method: str
) -> None:
    response = getattr(client, method)("/api/notifications/")

    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert _error(response) == {
        "code": "method_not_allowed",
        "message": f"{method.upper()} is not allowed on /api/notifications/: it takes POST.",
    }


def test_the_allowed_method_still_needs_credentials(client: Client) -> None:
    response = client.post("/api/notifications/", data={}, content_type="application/json")

    assert response.status_code == 401
    assert _error(response)["code"] == "not_authenticated"


def test_an_endpoint_with_several_methods_lists_them(client: Client) -> None:
    response = client.put("/api/projects/")

    assert response.status_code == 405
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert _error(response)["message"] == (
        "PUT is not allowed on /api/projects/: it takes GET or POST."
    )


def test_pages_outside_the_api_are_left_alone(client: Client) -> None:
    # The admin's login page answers GET and POST itself; nothing here touches it.
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_allowed_methods_reads_the_rest_views_only() -> None:
    assert allowed_methods(resolve("/api/notifications/").func) == ["POST", "OPTIONS"]
    assert allowed_methods(resolve("/api/projects/1/").func) == [
        "GET",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
    ]
    assert allowed_methods(resolve("/healthz").func) is None
    assert allowed_methods(resolve("/admin/login/").func) is None
