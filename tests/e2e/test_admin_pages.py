"""The admin in a real browser under the server's Content-Security-Policy: each page
renders, the admin's own JavaScript runs on it, and the browser reports no violation.

tests/backend/test_security_headers.py checks the header and reads the HTML for inline
script; only a browser can tell that nothing else the pages do (inline handlers, styles,
images, script-made elements) trips the policy. Violations are read from two sources
(tests/e2e/browser.py); the positive control below proves both see a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Page

from tests.e2e.browser import (
    CspViolation,
    clear_csp_console,
    csp_console,
    csp_violations,
    navigate_by,
)
from tests.fixtures.services import RunningServer

# nav_sidebar.js marks the main column open on every admin page but the index.
_SIDEBAR_RAN = "document.getElementById('main').classList.contains('shifted')"
# change_form.js focuses a form's first field (the template does not say autofocus).
_FOCUSED = "document.activeElement.id === '{}'"
# actions.js: the header checkbox selects every row and updates the counter, whose
# "N of M selected" comes from the JavaScript catalogue (/admin/jsi18n/).
_ACTIONS_RAN = """(() => {
    const rows = [...document.querySelectorAll('#result_list tbody tr')];
    document.getElementById('action-toggle').click();
    return rows.length > 0 && rows.every((row) => row.classList.contains('selected'))
        && document.querySelector('.action-counter').textContent.trim()
            === `${rows.length} of ${rows.length} selected`;
})()"""


@dataclass(frozen=True)
class AdminPage:
    path: str
    title: str  # how document.title starts
    rendered: str  # a JavaScript condition on what the server rendered
    scripted: str  # a JavaScript condition only the admin's own scripts make true


PAGES = (
    AdminPage(
        "/admin/",
        "Site administration |",
        "!!document.querySelector('#content-main .app-users')"
        " && !!document.querySelector('#content-main .app-projects')"
        " && !!document.querySelector('#operations-module a[href=\"/admin/connected/\"]')",
        # theme.js, the only script the index runs, sets the theme on <html>.
        "document.documentElement.dataset.theme === 'auto'",
    ),
    AdminPage(
        "/admin/connected/",
        "Connected now |",
        # Nobody is connected to this server: the table says so.
        "document.getElementById('connection-counts').textContent.startsWith('0 connections')"
        " && document.querySelectorAll('#connections tbody tr').length === 1",
        _SIDEBAR_RAN,
    ),
    AdminPage(
        "/admin/users/user/",
        "Select user to change |",
        "document.querySelectorAll('#result_list tbody tr').length === 4",
        f"{_SIDEBAR_RAN} && {_ACTIONS_RAN}",
    ),
    AdminPage(
        "/admin/users/user/add/",
        "Add user |",
        "!!document.getElementById('id_password1') && !!document.getElementById('id_role')",
        f"{_SIDEBAR_RAN} && {_FOCUSED.format('id_username')}",
    ),
    AdminPage(
        "/admin/users/user/1/change/",
        "alice | Change user |",
        "document.getElementById('id_username').value === 'alice'",
        # SelectFilter2.js turns the groups and permissions <select>s into two-box widgets.
        f"{_SIDEBAR_RAN} && !!document.getElementById('id_groups_from')"
        " && !!document.getElementById('id_user_permissions_to')",
    ),
    AdminPage(
        "/admin/notifications/message/add/",
        "Send an announcement |",
        "!!document.getElementById('id_everyone') && !!document.getElementById('id_roles')",
        f"{_SIDEBAR_RAN} && {_FOCUSED.format('id_title')}",
    ),
    AdminPage(
        "/admin/projects/project/",
        "Select project to change |",
        "document.querySelectorAll('#result_list tbody tr').length === 2",
        f"{_SIDEBAR_RAN} && {_ACTIONS_RAN}",
    ),
    AdminPage(
        "/admin/projects/project/1/change/",
        "Mobile App | Change project |",
        "!!document.getElementById('memberships-group')"
        " && !!document.getElementById('milestones-group')",
        # inlines.js adds the "Add another" rows; DateTimeShortcuts.js the date pickers.
        f"{_SIDEBAR_RAN}"
        " && [...document.querySelectorAll('.add-row a')].map((a) => a.textContent).join()"
        " === 'Add another Membership,Add another Milestone'"
        " && document.querySelectorAll('.datetimeshortcuts').length > 0",
    ),
)


def _log_in(page: Page, server: RunningServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/admin/login/")
    navigate_by(
        page,
        f"""document.getElementById('id_username').value = {username!r};
        document.getElementById('id_password').value = {password!r};
        document.getElementById('login-form').submit();""",
    )
    assert page.evaluate("location.pathname") == "/admin/", page.evaluate("document.title")


def _problems(page: Page, server: RunningServer, admin_page: AdminPage) -> list[str]:
    """What is wrong with one page: empty when it rendered, its scripts ran and the
    browser saw no policy violation."""
    clear_csp_console(page)
    page.goto(server.url + admin_page.path)
    problems = []
    path = page.evaluate("location.pathname")
    title = page.evaluate("document.title")
    if path != admin_page.path or not title.startswith(admin_page.title):
        return [f"landed on {path} ({title!r})"]
    if not page.evaluate(admin_page.rendered):
        problems.append(f"not rendered: {admin_page.rendered}")
    if not page.evaluate(admin_page.scripted):
        problems.append(f"the admin's JavaScript did not run: {admin_page.scripted}")
    problems += [f"violation: {v}" for v in csp_violations(page)]
    problems += [f"console: {text}" for text in csp_console(page)]
    return problems


def test_admin_pages_render_and_run_their_scripts_without_csp_violations(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server, "admin", "demo")
    report = {page.path: _problems(browser, demo_server, page) for page in PAGES}
    assert {path: found for path, found in report.items() if found} == {}


def test_the_detector_sees_an_injected_inline_script_and_passes_own_origin_script(
    browser: Page, demo_server: RunningServer
) -> None:
    """The positive control: the policy blocks script injected into a server page, both
    sources report it, and the page's own static files still load."""
    browser.goto(f"{demo_server.url}/admin/login/")
    assert csp_violations(browser) == []
    assert browser.evaluate(
        """(() => {
            const script = document.createElement('script');
            script.textContent = 'window.__inlineRan = true;';
            document.head.appendChild(script);
            return true;
        })()"""
    )
    browser.wait_for_function("() => window.__cspViolations.length > 0")
    assert browser.evaluate("window.__inlineRan === undefined"), "the inline script ran"
    # The policy names script-src; Chrome reports the directive that applied to a
    # <script> element, script-src-elem, which falls back to it.
    [violation] = csp_violations(browser)
    assert violation.directive in {"script-src", "script-src-elem"}, violation
    assert violation.blocked == "inline", violation
    [message] = csp_console(browser)
    assert "inline script" in message, message
    assert "script-src 'self'" in message, message

    # A script from the page's own origin loads and runs, and is no violation.
    assert browser.evaluate("typeof URLify") == "undefined"  # the login page has no urlify.js
    outcome = browser.evaluate(
        """new Promise((resolve) => {
            const script = document.createElement('script');
            script.src = '/static/admin/js/urlify.js';
            script.onload = () => resolve('loaded');
            script.onerror = () => resolve('failed');
            document.head.appendChild(script);
        })"""
    )
    assert outcome == "loaded"
    assert browser.evaluate("typeof URLify") == "function"
    assert csp_violations(browser) == [CspViolation(violation.directive, "inline", "")]
    assert len(csp_console(browser)) == 1
