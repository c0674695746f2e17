"""The OpenAPI schema covers the auth, inbox, publish and attention endpoints, without
warnings."""

from __future__ import annotations

from typing import Any

from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient

MY_PATHS = {
    "/api/auth/token/": {"post"},
    "/api/auth/token/refresh/": {"post"},
    "/api/auth/logout/": {"post"},
    "/api/me": {"get"},
    "/api/inbox/": {"get"},
    "/api/inbox/unread-count/": {"get"},
    "/api/inbox/{inbox_id}/": {"get", "delete"},
    "/api/inbox/mark-read/": {"post"},
    "/api/inbox/mark-unread/": {"post"},
    "/api/inbox/mark-all-read/": {"post"},
    "/api/inbox/delete/": {"post"},
    "/api/notifications/": {"post"},
    "/api/notifications/batch/": {"post"},
    "/api/attention/": {"get", "patch"},
    "/api/connections/": {"get"},
}
MY_MODULES = (
    "backend/users/",
    "backend/notifications/api.py",
    "backend/notifications/seria",
    "backend/attention/",
    "backend/notifications/connections",
)


def fetch_schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def test_schema_lists_the_endpoints(db: None) -> None:
    paths = fetch_schema()["paths"]
    for path, methods in MY_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))


def test_schema_generation_has_no_warnings_for_these_views(db: None) -> None:
    fetch_schema()
    problems = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    mine = [message for message in problems if any(part in message for part in MY_MODULES)]
    assert mine == []


def test_schema_documents_both_ways_to_publish_and_the_error_shape(db: None) -> None:
    schema = fetch_schema()
    publish = schema["paths"]["/api/notifications/"]["post"]
    assert {"jwtAuth": []} in publish["security"]
    assert {"apiKeyAuth": []} in publish["security"]
    assert set(publish["responses"]) >= {"200", "201", "400", "401", "403"}
    login = schema["paths"]["/api/auth/token/"]["post"]
    assert "security" not in login or login["security"] in ([], [{}])
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorBody")
    item = schema["components"]["schemas"]["InboxItem"]["properties"]
    assert {"id", "seq", "is_read", "title", "data", "actor", "project"} <= set(item)


def test_schema_documents_the_batch_publish(db: None) -> None:
    schema = fetch_schema()
    batch = schema["paths"]["/api/notifications/batch/"]["post"]
    assert {"jwtAuth": []} in batch["security"]
    assert {"apiKeyAuth": []} in batch["security"]
    assert set(batch["responses"]) >= {"200", "400", "401", "403"}
    components = schema["components"]["schemas"]
    request = components["PublishBatchInput"]["properties"]["notifications"]
    assert (request["minItems"], request["maxItems"]) == (1, 1000)
    assert request["items"]["$ref"].endswith("/PublishInput")
    output = components["PublishBatchOutput"]["properties"]
    assert {"results", "created", "duplicates", "errors"} <= set(output)
    result = components["PublishBatchResult"]["properties"]
    assert {"index", "status", "id", "recipients", "error"} <= set(result)


def test_schema_documents_who_is_connected_now(db: None) -> None:
    schema = fetch_schema()
    listing = schema["paths"]["/api/connections/"]["get"]
    assert set(listing["responses"]) >= {"200", "400", "401", "403", "503"}
    assert [p["name"] for p in listing["parameters"]] == ["user"]
    row = schema["components"]["schemas"]["Connection"]["properties"]
    assert set(row) == {"user", "client", "transport", "connected_at", "process"}
