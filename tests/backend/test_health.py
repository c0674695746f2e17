"""``/healthz`` (liveness, no database) and ``/readyz`` (readiness), and database faults
answered 503/507 with Retry-After instead of a 500 (backend/health.py, backend/db_faults.py).

The real outages (PostgreSQL stopped, a full disk, a read-only file, Redis killed) are in
tests/e2e/test_database_faults.py; these pin the mapping and the answers' shape.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from backend import db_faults, health
from backend.api import exception_handler


@pytest.mark.django_db
def test_healthz_is_liveness_and_touches_no_database(client: Client) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert len(queries) == 0


@pytest.mark.django_db
def test_readyz_answers_ok_when_the_database_answers(client: Client) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.content) == (200, b"ok\n")
    assert "Retry-After" not in response


@pytest.mark.django_db
def test_readyz_answers_503_with_the_reason_and_retry_after(client: Client) -> None:
    with mock.patch.object(
        health, "check_database", return_value="database unavailable: OperationalError"
    ):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content == b"database unavailable: OperationalError\n"
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)
    assert response["Content-Type"].startswith("text/plain")


def test_a_hung_check_answers_within_the_timeout() -> None:
    def hangs() -> str | None:
        import time

        time.sleep(health.CHECK_TIMEOUT + 3)
        return None

    with (
        mock.patch.object(health, "CHECK_TIMEOUT", 0.2),
        mock.patch.object(health, "_checks", return_value=[("database", hangs)]),
    ):
        reasons = health.readiness()
    assert reasons == ["database unavailable: no answer within 1.2 s"]


def test_error_text_keeps_addresses_out_of_the_answer() -> None:
    error = OperationalError(
        'connection to server at "10.1.2.3", port 5432 failed: Connection refused'
    )
    assert health._short(error) == "OperationalError (connection refused)"
    assert health._short(OperationalError("secret host db.internal")) == "OperationalError"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (OperationalError("connection refused"), 503, "database_unavailable"),
        (InterfaceError("connection already closed"), 503, "database_unavailable"),
        (OperationalError("database or disk is full"), 507, "storage_full"),
        (OperationalError("attempt to write a readonly database"), 503, "database_read_only"),
    ],
)
def test_database_faults_become_the_apis_error_with_retry_after(
    error: Exception, status: int, code: str
) -> None:
    with mock.patch.object(db_faults, "_reopen_later"):
        response = exception_handler(error, {})
    assert response is not None
    assert response.status_code == status
    assert response.data["error"]["code"] == code
    assert "Try again" in response.data["error"]["message"]
    assert response["Retry-After"] == str(db_faults.RETRY_AFTER_SECONDS)


def test_other_exceptions_are_not_database_faults() -> None:
    assert db_faults.classify(ValueError("x")) is None
    assert exception_handler(ValueError("x"), {}) is None  # still Django's 500


@pytest.mark.django_db
def test_a_database_fault_outside_drf_answers_503_not_500(client: Client) -> None:
    """``handler500``: a fault in middleware or a page (here the web companion's inbox
    page, whose session lookup fails) answers 503 plain text with Retry-After."""
    client.raise_request_exception = False
    with mock.patch(
        "django.contrib.sessions.backends.db.SessionStore.load",
        side_effect=OperationalError("connection refused"),
    ):
        client.cookies["sessionid"] = "x" * 32
        response = client.get("/")
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == str(db_faults.RETRY_AFTER_SECONDS)
    assert b"Try again" in response.content
