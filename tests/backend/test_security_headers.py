"""Every page the server serves carries a Content-Security-Policy that forbids inline
script, and the admin's pages need none (they would break under it)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)


def _policy(response: Any) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


def test_the_admin_login_page_forbids_inline_script_and_framing(client: Client) -> None:
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"


@pytest.mark.parametrize(
    "name",
    [
        "admin:index",
        "admin:users_user_changelist",
        "admin:users_user_add",
        "admin:notifications_message_add",
        "admin:projects_project_changelist",
    ],
)
def test_admin_pages_carry_the_policy_and_run_no_inline_script(
    superuser_browser: Client, name: str
) -> None:
    response = superuser_browser.get(reverse(name))
    assert response.status_code == 200
    assert _policy(response)["script-src"] == "'self'"
    inline = _INLINE_SCRIPT.findall(response.content.decode())
    assert inline == [], f"{name} has inline script the policy would block: {inline}"


def test_api_answers_carry_the_policy_too(client: Client) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert _policy(response)["default-src"] == "'self'"
