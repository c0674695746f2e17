"""The web companion's "Change password" page (backend/web/views.py ``password``): a plain
CSRF-protected form that ends the user's other sessions and keeps this browser's."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from backend.users.models import LoginSession, User
from backend.users.services import session_start
from backend.users.throttling import LoginRateThrottle
from backend.users.web_sessions import LOGIN_SESSION
from tests.backend.users.test_api_auth import bearer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]

NEW = "a-Much-longer-one-42"


@pytest.fixture
def alice(make_user: Any) -> User:
    user: User = make_user("alice", password="right-one")
    return user


def _logged_in(alice: User) -> Client:
    browser = Client()
    assert (
        browser.post("/login/", {"username": "alice", "password": "right-one"}).status_code == 302
    )
    return browser


def _change(browser: Client, current: str, new: str, again: str | None = None, **extra: Any) -> Any:
    return browser.post(
        "/password/",
        {
            "current_password": current,
            "new_password": new,
            "new_password_again": new if again is None else again,
            **extra,
        },
    )


def test_the_header_links_to_the_page_and_the_page_is_a_plain_form(alice: User) -> None:
    browser = _logged_in(alice)

    home = browser.get("/")
    assert b'href="/password/"' in home.content
    page = browser.get("/password/")

    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'<form method="post" action="/password/">', html)
    assert 'name="csrfmiddlewaretoken"' in html
    for field in ("current_password", "new_password", "new_password_again"):
        assert f'name="{field}"' in html


def test_a_visitor_is_sent_to_the_login(client: Client) -> None:
    answer = client.get("/password/")
    assert answer.status_code == 302
    assert answer["Location"] == "/?next=/password/"


def test_changing_ends_the_other_sessions_and_keeps_this_browser(alice: User) -> None:
    browser = _logged_in(alice)
    other_browser = _logged_in(alice)
    desktop = bearer(session_start(user=alice).access)
    kept = browser.session[LOGIN_SESSION]

    answer = _change(browser, "right-one", NEW)

    assert answer.status_code == 302
    assert answer["Location"] == "/password/?changed=1"
    done = browser.get(answer["Location"])
    assert done.status_code == 200
    assert b"Your password was changed" in done.content
    # This browser goes on; the other browser and the desktop are logged out.
    assert browser.get("/projects").status_code == 200
    assert other_browser.get("/projects").status_code == 302
    assert desktop.get("/api/me").status_code == 401
    live = LoginSession.objects.filter(user=alice, ended_at__isnull=True)
    assert [session.pk for session in live] == [kept]
    alice.refresh_from_db()
    assert alice.check_password(NEW)


@pytest.mark.parametrize(
    ("current", "new", "again", "words"),
    [
        ("wrong", NEW, None, b"Your current password is not right."),
        ("right-one", NEW, NEW + "x", b"The two new passwords differ."),
        ("right-one", "password", None, b"This password is too common."),
    ],
)
def test_a_refused_change_says_why_and_changes_nothing(
    alice: User, current: str, new: str, again: str | None, words: bytes
) -> None:
    browser = _logged_in(alice)
    desktop = bearer(session_start(user=alice).access)

    answer = _change(browser, current, new, again)

    assert answer.status_code == 400
    assert words in answer.content
    assert desktop.get("/api/me").status_code == 200
    alice.refresh_from_db()
    assert alice.check_password("right-one")


def test_the_form_needs_its_csrf_token(alice: User) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = _logged_in(alice).cookies  # logged in, but posting without the token

    answer = _change(strict, "right-one", NEW)

    assert answer.status_code == 403
    alice.refresh_from_db()
    assert alice.check_password("right-one")


def test_guesses_spend_the_login_budget(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    browser = _logged_in(alice)
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "2/min"})
    cache.clear()
    for _ in range(2):
        assert _change(browser, "wrong", NEW).status_code == 400

    refused = _change(browser, "right-one", NEW)

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    alice.refresh_from_db()
    assert alice.check_password("right-one")
