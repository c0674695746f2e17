"""The web companion in a real browser (backend/web/): the login at the root, the inbox,
and a page behind every link the demo's notifications carry; someone else's task is a
404 that looks exactly like a missing one. Every page is checked for Content-Security-
Policy violations (tests/e2e/browser.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.e2e.browser import csp_console, csp_violations, navigate_by
from tests.e2e.conftest import login
from tests.fixtures.services import RunningServer

SUFFIX = " · Tray notifier"


def _api(server: RunningServer, token: str, path: str) -> Any:
    response = httpx.get(
        f"{server.url}/api/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    return response.json()


def _log_in(page: Page, server: RunningServer, username: str, *, at: str = "/") -> None:
    page.goto(server.url + at)
    assert page.evaluate("document.title") == "Log in" + SUFFIX
    navigate_by(
        page,
        f"""document.getElementById('id_username').value = {json.dumps(username)};
        document.getElementById('id_password').value = 'demo';
        document.querySelector('form[action="/login/"]').submit();""",
    )


def _title(page: Page) -> str:
    """The page's title, less the unread count the live page puts in front ("(3) ")."""
    title: str = page.evaluate(r"document.title.replace(/^\(\d+\) /, '')")
    return title


def _clean(page: Page) -> list[str]:
    return [str(v) for v in csp_violations(page)] + csp_console(page)


def test_every_link_a_notification_carries_opens_its_page(
    browser: Page, demo_server: RunningServer
) -> None:
    token = login(demo_server, "alice")
    inbox = _api(demo_server, token, "inbox/?limit=100")
    rows: list[dict[str, Any]] = inbox["results"] if isinstance(inbox, dict) else inbox
    unread = _api(demo_server, token, "inbox/unread-count/")

    _log_in(browser, demo_server, "alice")
    assert browser.evaluate("location.pathname") == "/"
    assert _title(browser) == "Inbox" + SUFFIX
    assert browser.evaluate("document.querySelectorAll('#inbox li').length") == len(rows)
    assert browser.evaluate("document.getElementById('unread-count').textContent") == str(
        unread["unread_count"]
    )
    assert _clean(browser) == []

    linked = [row for row in rows if row["url"]]
    kinds = {row["url"].split("/")[3] if row["url"].count("/") > 2 else "" for row in linked}
    assert {"tasks", "milestones", "members"} <= kinds, kinds
    for row in linked:
        url: str = row["url"]
        parts = url.strip("/").split("/")
        project = _api(demo_server, token, f"projects/{parts[1]}/")
        if len(parts) == 4:
            thing = _api(demo_server, token, f"projects/{parts[1]}/{parts[2]}/{parts[3]}/")
            expected = f"{thing['title']} · {project['title']}{SUFFIX}"
        else:
            expected = project["title"] + SUFFIX
        # Through the notification's own page, as a user clicks it.
        browser.goto(f"{demo_server.url}/notifications/{row['id']}")
        assert _title(browser) == row["title"] + SUFFIX
        navigate_by(browser, "document.querySelector('a.button').click()")
        assert browser.evaluate("location.pathname") == url
        assert _title(browser) == expected, url
        if len(parts) == 4:  # a task's or a milestone's page lists what was said of it
            about = sorted(other["title"] for other in rows if other["url"] == url)
            assert (
                sorted(
                    browser.evaluate(
                        "[...document.querySelectorAll('#history-list li a')]"
                        ".map((a) => a.textContent.trim())"
                    )
                )
                == about
            ), url
        assert _clean(browser) == [], url


def test_someone_elses_task_is_the_same_404_as_a_missing_one(
    browser: Page, demo_server: RunningServer
) -> None:
    admin = login(demo_server, "admin")
    headers = {"Authorization": f"Bearer {admin}"}
    project = httpx.post(
        f"{demo_server.url}/api/projects/", json={"title": "Admins only"}, headers=headers
    ).json()
    task = httpx.post(
        f"{demo_server.url}/api/projects/{project['id']}/tasks/",
        json={"title": "Secret task"},
        headers=headers,
    ).json()

    _log_in(browser, demo_server, "alice")
    pages = {}
    for path in (
        f"/projects/{project['id']}/tasks/{task['id']}",
        f"/projects/{project['id']}",
        "/projects/999999/tasks/999999",
        "/notifications/999999",
    ):
        status = browser.evaluate(f"fetch({json.dumps(path)}).then((r) => r.status)")
        browser.goto(demo_server.url + path)
        pages[path] = (status, browser.evaluate("document.querySelector('main').innerText"))
    assert {status for status, _ in pages.values()} == {404}
    assert len({text for _, text in pages.values()}) == 1
    assert "Secret" not in str(pages)


def test_a_deep_link_leads_through_the_login_and_back(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server, "alice", at="/projects/1")
    assert browser.evaluate("location.pathname") == "/projects/1"
    assert browser.evaluate("document.querySelectorAll('#members li').length") > 0

    navigate_by(browser, "document.querySelector('form[action=\"/logout/\"]').submit()")
    assert _title(browser) == "Log in" + SUFFIX
    browser.goto(demo_server.url + "/projects/1")
    assert browser.evaluate("location.pathname + location.search") == "/?next=/projects/1"
