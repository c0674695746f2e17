"""The web companion's live page (backend/web/static/web/live.js) in a real browser,
against the real server: its socket is authenticated by the session cookie alone, a
notification sent from the CLI appears without a reload, read state follows a desktop
client's socket both ways, and a project page shows who is online. Behind a proxy that
breaks WebSockets (nginx without the Upgrade headers) the page goes live over the HTTP
stream instead (docs/protocol.md, "The web companion on the fallback")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import Page
from websockets.sync.client import ClientConnection, connect

from tests.e2e.browser import cdp, csp_console, csp_violations, navigate_by
from tests.e2e.conftest import login
from tests.fixtures.proxies import nginx_without_upgrade
from tests.fixtures.services import RunningServer, ServerFactory

# Frames that do not matter to a step (presence, acks, the replay's end) are skipped.
WAIT = 10.0


@contextmanager
def _desktop(server: RunningServer, username: str) -> Iterator[ClientConnection]:
    """A desktop client's socket (a Bearer token), past its hello."""
    with connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {login(server, username)}"},
        open_timeout=WAIT,
    ) as socket:
        assert json.loads(socket.recv(timeout=WAIT))["type"] == "hello"
        yield socket


def _until(socket: ClientConnection, kind: str, **match: Any) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(socket.recv(timeout=WAIT))
        payload: dict[str, Any] = frame.get("payload", {})
        if frame["type"] == kind and all(payload.get(k) == v for k, v in match.items()):
            return payload


def _log_in(
    page: Page,
    server: RunningServer,
    username: str,
    at: str = "/",
    *,
    through: str | None = None,
    status: str = "Live",
) -> None:
    """Log in on the page at ``server`` (or the proxy at ``through``), then wait for
    the live status to say ``status``."""
    page.goto((through or server.url) + at)
    navigate_by(
        page,
        f"""document.getElementById('id_username').value = {json.dumps(username)};
        document.getElementById('id_password').value = 'demo';
        document.querySelector('form[action="/login/"]').submit();""",
    )
    _wait_status(page, status)


def _wait_status(page: Page, status: str = "Live") -> None:
    page.wait_for_function(
        f"() => document.getElementById('live-status').textContent === {json.dumps(status)}"
    )


def _count(page: Page) -> int:
    return int(page.evaluate("document.getElementById('unread-count').textContent"))


def test_a_new_notification_appears_and_read_state_follows_the_desktop(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server, "alice")
    before = _count(browser)
    with _desktop(demo_server, "alice") as desktop:
        _talk_to_the_desktop(browser, demo_server, desktop, before)

    # A row that arrived live has working buttons too (its form carries the CSRF token).
    demo_server.cli("notify", "--user", "alice", "--title", "Delete me", check=True)
    browser.wait_for_function(
        "() => document.querySelector('#inbox li:first-child a')?.textContent.trim()"
        " === 'Delete me'"
    )
    navigate_by(
        browser, "document.querySelector('#inbox li:first-child button[value=delete]').click()"
    )
    assert "Delete me" not in browser.evaluate("document.getElementById('inbox').textContent")


def _talk_to_the_desktop(
    browser: Page, demo_server: RunningServer, desktop: ClientConnection, before: int
) -> None:
    demo_server.cli("notify", "--user", "alice", "--title", "Live from the CLI", check=True)
    browser.wait_for_function(
        "() => document.querySelector('#inbox li:first-child a')?.textContent.trim()"
        " === 'Live from the CLI'"
    )
    assert _count(browser) == before + 1
    assert browser.evaluate("document.title").startswith(f"({before + 1}) ")
    assert "Live from the CLI" in browser.evaluate(
        "document.getElementById('announcer').textContent"
    )
    created = _until(desktop, "notification_created", title="Live from the CLI")

    # Marked read on the desktop: the page's row and bell follow.
    desktop.send(json.dumps({"type": "mark_read", "payload": {"ids": [created["id"]]}}))
    browser.wait_for_function(
        f"() => document.querySelector('li[data-id=\"{created['id']}\"]')"
        ".classList.contains('read')"
    )
    browser.wait_for_function(
        f"() => document.getElementById('unread-count').textContent === '{before}'"
    )

    # Marked unread in the page (its button): the desktop hears it.
    navigate_by(
        browser,
        f"document.querySelector('li[data-id=\"{created['id']}\"] button[value=unread]').click()",
    )
    _until(desktop, "notification_updated", id=created["id"], updates={"is_read": False})
    assert _count(browser) == before + 1


def test_the_page_socket_needs_the_login_and_ends_with_it(
    browser: Page, demo_server: RunningServer
) -> None:
    # Logged out, the page has no socket to open; logged in, it opens on the cookie
    # alone (the URL carries no token), and logging out elsewhere closes it.
    _log_in(browser, demo_server, "alice")
    assert "token=" not in browser.evaluate(
        "performance.getEntriesByType('resource').map((e) => e.name).join(' ')"
    )
    opened = browser.evaluate(
        """new Promise((resolve) => {
            const s = new WebSocket(`ws://${location.host}/ws/notifications/`);
            s.onmessage = (e) => { resolve(JSON.parse(e.data).type); s.close(); };
            s.onclose = (e) => resolve(`closed ${e.code}`);
        })"""
    )
    assert opened == "hello"
    navigate_by(browser, "document.querySelector('form[action=\"/logout/\"]').submit()")
    refused = browser.evaluate(
        """new Promise((resolve) => {
            const s = new WebSocket(`ws://${location.host}/ws/notifications/`);
            s.onmessage = (e) => {
                const f = JSON.parse(e.data);
                if (f.type !== 'error') resolve(f.type);
            };
            s.onclose = (e) => resolve(`closed ${e.code}`);
        })"""
    )
    assert refused == "closed 4001"


def test_a_project_page_shows_who_is_online(browser: Page, demo_server: RunningServer) -> None:
    _log_in(browser, demo_server, "alice", at="/projects/1")
    with _desktop(demo_server, "bob"):
        bob_id = _user_id(demo_server, "bob")
        browser.wait_for_function(
            f"() => document.querySelector('#presence li[data-user=\"{bob_id}\"]')?.dataset.status"
            " === 'online'"
        )
    browser.wait_for_function(
        f"() => document.querySelector('#presence li[data-user=\"{bob_id}\"]').dataset.status"
        " === 'offline'"
    )


def _user_id(server: RunningServer, username: str) -> int:
    with connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {login(server, username)}"},
        open_timeout=WAIT,
    ) as socket:
        return int(json.loads(socket.recv(timeout=WAIT))["payload"]["user"]["id"])


# Installed before the page's own scripts: the real Notification, recording what the
# page shows through it and whether the browser reported it shown. The notifications
# themselves are chromium's (headless, so nothing reaches a desktop).
RECORD_NOTIFICATIONS = """
window.shownNotifications = [];
if ('Notification' in window) {
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      const entry = { title, body: options.body, tag: options.tag, shown: false, it: this };
      this.addEventListener('show', () => { entry.shown = true; });
      window.shownNotifications.push(entry);
    }
  };
}
"""


def _look_away(page: Page) -> Page:
    """Take the focus from ``page`` until it loads another document: a second page of its
    context gets the window's focus, and the focus Playwright emulates in every page it
    opens is turned off in this one. Playwright set it from its own DevTools session;
    the renderer keeps a setting per session and ignores a command that changes nothing
    in it, so ours turns it on, then off. The second page, returned, is the user's."""
    cdp(page, "Emulation.setFocusEmulationEnabled", {"enabled": True})
    cdp(page, "Emulation.setFocusEmulationEnabled", {"enabled": False})
    elsewhere = page.context.new_page()
    assert page.evaluate("document.hasFocus()") is False
    return elsewhere


def test_browser_notifications_once_allowed_and_the_in_page_toast_otherwise(
    browser: Page, demo_server: RunningServer
) -> None:
    browser.add_init_script(RECORD_NOTIFICATIONS)
    _log_in(browser, demo_server, "alice")
    assert browser.evaluate("Notification.permission") == "default"
    assert browser.evaluate("document.getElementById('allow-notifications').hidden") is False

    # Not allowed: the in-page toast, a link to the notification's page.
    demo_server.cli("notify", "--user", "alice", "--title", "Toast in the page", check=True)
    browser.wait_for_function(
        "() => [...document.querySelectorAll('#announcer .toast a')]"
        ".some((a) => a.textContent === 'Toast in the page')"
    )
    assert browser.evaluate("window.shownNotifications.length") == 0

    # Allowed (what the permission prompt's "Allow" does) and the page not in focus
    # (another page has it): the browser's own notification, and no toast.
    origin = demo_server.url.rstrip("/")
    browser.context.grant_permissions(["notifications"], origin=origin)
    browser.goto(demo_server.url + "/")
    browser.wait_for_function("() => document.getElementById('live-status').textContent === 'Live'")
    assert browser.evaluate("document.getElementById('allow-notifications').hidden") is True
    elsewhere = _look_away(browser)
    demo_server.cli(
        "notify", "--user", "alice", "--title", "From the browser", "--message", "Body", check=True
    )
    browser.wait_for_function("() => window.shownNotifications.some((n) => n.shown)")
    shown = browser.evaluate(
        "window.shownNotifications.map(({ title, body, tag }) => ({ title, body, tag }))"
    )
    (only,) = shown
    assert (only["title"], only["body"]) == ("From the browser", "Body")
    inbox_id = int(only["tag"].removeprefix("tray-"))
    assert "From the browser" not in browser.evaluate(
        "document.getElementById('announcer').textContent"
    )
    # Clicking it opens the notification's page.
    navigate_by(browser, "window.shownNotifications[0].it.dispatchEvent(new Event('click'))")
    assert browser.evaluate("location.pathname") == f"/notifications/{inbox_id}"
    assert "From the browser" in browser.evaluate("document.querySelector('main').textContent")

    # Allowed but the user is looking at the page: the toast, not the browser's.
    elsewhere.close()
    cdp(browser, "Emulation.setFocusEmulationEnabled", {"enabled": True})
    browser.goto(demo_server.url + "/")
    browser.wait_for_function("() => document.getElementById('live-status').textContent === 'Live'")
    demo_server.cli("notify", "--user", "alice", "--title", "Looking at it", check=True)
    browser.wait_for_function(
        "() => [...document.querySelectorAll('#announcer .toast a')]"
        ".some((a) => a.textContent === 'Looking at it')"
    )
    assert browser.evaluate("window.shownNotifications.length") == 0


def test_do_not_disturb_in_the_page_is_every_devices_and_holds_its_toasts(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server, "alice")
    assert browser.evaluate("document.getElementById('dnd-state').hidden") is True
    with _desktop(demo_server, "alice") as desktop:
        # The header's button: the desktop's socket hears it, the header says it.
        navigate_by(browser, "document.getElementById('dnd-toggle').click()")
        changed = _until(desktop, "attention_changed")
        assert changed["dnd"] == {"until": None}
        browser.wait_for_function(
            "() => document.getElementById('live-status').textContent === 'Live'"
        )
        assert browser.evaluate("document.getElementById('dnd-state').textContent") == (
            "Do not disturb"
        )

        # Held back in the page: no toast for a normal one (it is in the list), one for
        # an urgent one, which breaks through.
        demo_server.cli("notify", "--user", "alice", "--title", "Quiet please", check=True)
        demo_server.cli(
            "notify", "--user", "alice", "--title", "Server on fire", "--priority", "urgent",
            check=True,
        )  # fmt: skip
        browser.wait_for_function(
            "() => [...document.querySelectorAll('#announcer .toast a')]"
            ".some((a) => a.textContent === 'Server on fire')"
        )
        toasts = browser.evaluate("document.getElementById('announcer').textContent")
        assert "Quiet please" not in toasts
        assert "Quiet please" in browser.evaluate("document.getElementById('inbox').textContent")

        # Turned off on another device: the page follows without a reload.
        phone = httpx.patch(
            f"{demo_server.url}/api/attention/",
            json={"dnd": None},
            headers={"Authorization": f"Bearer {login(demo_server, 'alice')}"},
            timeout=WAIT,
        )
        assert phone.status_code == 200, phone.text
        browser.wait_for_function("() => document.getElementById('dnd-state').hidden")
        assert browser.evaluate("document.getElementById('dnd-toggle').textContent") == (
            "Do not disturb"
        )
        demo_server.cli("notify", "--user", "alice", "--title", "Back to normal", check=True)
        browser.wait_for_function(
            "() => [...document.querySelectorAll('#announcer .toast a')]"
            ".some((a) => a.textContent === 'Back to normal')"
        )


# --- the HTTP fallback: where WebSockets are blocked -------------------------------------

FALLBACK = "Live (HTTP fallback)"

# Installed before the page's own scripts: every EventSource and WebSocket the page
# opens, kept (the real ones, only counted).
RECORD_TRANSPORTS = """
window.openedStreams = [];
window.openedSockets = 0;
{
  const RealEventSource = window.EventSource;
  window.EventSource = class extends RealEventSource {
    constructor(url, init) { super(url, init); window.openedStreams.push(this); }
  };
  const RealWebSocket = window.WebSocket;
  window.WebSocket = class extends RealWebSocket {
    constructor(url, protocols) { super(url, protocols); window.openedSockets += 1; }
  };
}
"""


def _rows_titled(page: Page, title: str) -> int:
    return int(
        page.evaluate(
            f"[...document.querySelectorAll('#inbox li a')]"
            f".filter((a) => a.textContent.trim() === {json.dumps(title)}).length"
        )
    )


def _toasts_titled(page: Page, title: str) -> int:
    return int(
        page.evaluate(
            f"[...document.querySelectorAll('#announcer .toast a')]"
            f".filter((a) => a.textContent === {json.dumps(title)}).length"
        )
    )


def _wait_row(page: Page, title: str) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#inbox li a')]"
        f".some((a) => a.textContent.trim() === {json.dumps(title)})"
    )


def test_behind_a_proxy_without_websockets_the_page_goes_live_over_the_stream(
    browser: Page, demo_server: RunningServer, server_factory: ServerFactory
) -> None:
    browser.add_init_script(RECORD_TRANSPORTS)
    with (
        nginx_without_upgrade(demo_server.port) as proxy,
        _desktop(demo_server, "alice") as desktop,
    ):
        base = proxy.url  # nginx's default buffering, as an admin would leave it
        _log_in(browser, demo_server, "alice", through=base, status=FALLBACK)
        assert "WebSockets are blocked" in browser.evaluate(
            "document.getElementById('live-status').title"
        )
        # Three sockets failed (and the probe right after the stream's hello, which
        # finds them still blocked); one stream, on the cookie and the page's cursor.
        browser.wait_for_function("() => window.openedSockets === 4")
        latest = int(browser.evaluate("document.body.dataset.latestSeq"))
        assert browser.evaluate("window.openedStreams.map((s) => s.url)") == [
            f"{base}/api/stream/?after_seq={latest}"
        ]
        before = _count(browser)

        # Live, exactly once: in the list, on the bell and as a toast.
        demo_server.cli("notify", "--user", "alice", "--title", "Over the stream", check=True)
        _wait_row(browser, "Over the stream")
        demo_server.cli("notify", "--user", "alice", "--title", "Second one", check=True)
        _wait_row(browser, "Second one")
        browser.wait_for_function(
            f"() => document.getElementById('unread-count').textContent === '{before + 2}'"
        )
        assert _rows_titled(browser, "Over the stream") == 1
        assert _toasts_titled(browser, "Over the stream") == 1
        first = _until(desktop, "notification_created", title="Over the stream")
        second = _until(desktop, "notification_created", title="Second one")

        # Read state from elsewhere arrives over the stream too.
        desktop.send(json.dumps({"type": "mark_read", "payload": {"ids": [second["id"]]}}))
        browser.wait_for_function(
            f"() => document.querySelector('li[data-id=\"{second['id']}\"]')"
            ".classList.contains('read')"
        )

        # Marked read in the page (its button, a form): the server has it, and the next
        # page of the tab goes straight to the stream (no socket tried: the probe is
        # not due yet).
        navigate_by(
            browser,
            f"document.querySelector('li[data-id=\"{first['id']}\"] button[value=read]').click()",
        )
        _until(desktop, "notification_updated", id=first["id"], updates={"is_read": True})
        _wait_status(browser, FALLBACK)
        assert browser.evaluate("window.openedSockets") == 0
        assert _count(browser) == before

        # A restart: the stream's `closed` (1012), then reopened from the page's cursor
        # once the server is back; what came in between appears once.
        port = demo_server.port
        assert demo_server.stop() == 0
        browser.wait_for_function(
            "() => document.getElementById('live-status').textContent.startsWith('Offline')"
        )
        demo_server.cli("notify", "--user", "alice", "--title", "While it was down", check=True)
        server_factory("--port", str(port))
        _wait_row(browser, "While it was down")
        _wait_status(browser, FALLBACK)
        browser.wait_for_function(
            f"() => document.getElementById('unread-count').textContent === '{before + 1}'"
        )
        assert _rows_titled(browser, "While it was down") == 1
        assert _rows_titled(browser, "Over the stream") == 1
        assert (
            browser.evaluate("window.openedStreams.filter((s) => s.readyState !== 2).length") == 1
        )

        # A reload catches up from what the server renders, and stays on the stream.
        browser.reload()
        _wait_status(browser, FALLBACK)
        assert _rows_titled(browser, "While it was down") == 1
        assert _count(browser) == before + 1
        assert csp_violations(browser) == []  # EventSource is connect-src 'self'
        assert csp_console(browser) == []


def test_on_the_stream_a_logout_elsewhere_shows_the_login(
    browser: Page, demo_server: RunningServer
) -> None:
    # The stream's `closed` 4001 is the socket's 4001: the page reloads (to the login)
    # and its EventSource does not reconnect by itself.
    with nginx_without_upgrade(demo_server.port) as proxy:
        _log_in(browser, demo_server, "alice", through=proxy.url, status=FALLBACK)
        elsewhere = browser.context.new_page()
        elsewhere.goto(proxy.url + "/")
        with browser.expect_navigation():
            navigate_by(elsewhere, "document.querySelector('form[action=\"/logout/\"]').submit()")
        browser.wait_for_function("() => document.getElementById('id_username') !== null")
        assert browser.evaluate("document.getElementById('live-status')") is None


def test_on_the_stream_a_project_page_shows_who_is_online(
    browser: Page, demo_server: RunningServer
) -> None:
    # The stream's ?watch= in place of the socket's subscribe_presence.
    browser.add_init_script(RECORD_TRANSPORTS)
    with nginx_without_upgrade(demo_server.port) as proxy:
        _log_in(browser, demo_server, "alice", at="/projects/1", through=proxy.url, status=FALLBACK)
        assert browser.evaluate("window.openedStreams[0].url").endswith("&watch=1")
        with _desktop(demo_server, "bob"):
            bob_id = _user_id(demo_server, "bob")
            browser.wait_for_function(
                f"() => document.querySelector('#presence li[data-user=\"{bob_id}\"]')"
                "?.dataset.status === 'online'"
            )
        browser.wait_for_function(
            f"() => document.querySelector('#presence li[data-user=\"{bob_id}\"]').dataset.status"
            " === 'offline'"
        )


def test_on_a_direct_connection_the_page_stays_on_the_socket(
    browser: Page, demo_server: RunningServer
) -> None:
    browser.add_init_script(RECORD_TRANSPORTS)
    _log_in(browser, demo_server, "alice")
    demo_server.cli("notify", "--user", "alice", "--title", "Over the socket", check=True)
    _wait_row(browser, "Over the socket")
    assert browser.evaluate("window.openedStreams.length") == 0
    assert browser.evaluate("window.openedSockets") == 1
    assert browser.evaluate("document.getElementById('live-status').title") == ""


def test_on_the_stream_the_page_probes_the_socket_and_moves_back_to_it(
    browser: Page, demo_server: RunningServer
) -> None:
    # The proxy starts letting WebSockets through, as IT would fix it; the page's clock
    # is Playwright's, so that the five minutes to the next probe pass at once.
    browser.add_init_script(RECORD_TRANSPORTS)
    browser.clock.install()
    with nginx_without_upgrade(demo_server.port) as proxy:
        _log_in(browser, demo_server, "alice", through=proxy.url, status=FALLBACK)
        # The probe right after the stream's hello failed too: the next is due in 5 min.
        browser.wait_for_function("() => window.openedSockets === 4")
        browser.wait_for_function(
            "() => Number(sessionStorage.getItem('tray-live-stream-probe-at')) > Date.now() + 60000"
        )
        demo_server.cli("notify", "--user", "alice", "--title", "Before the probe", check=True)
        _wait_row(browser, "Before the probe")

        proxy.allow_websockets()
        browser.clock.fast_forward("05:01")
        _wait_status(browser, "Live")
        assert browser.evaluate("window.openedSockets") == 5
        assert browser.evaluate("window.openedStreams.every((s) => s.readyState === 2)") is True
        assert browser.evaluate("sessionStorage.getItem('tray-live-stream-probe-at')") is None
        demo_server.cli("notify", "--user", "alice", "--title", "After the probe", check=True)
        _wait_row(browser, "After the probe")
        assert _rows_titled(browser, "Before the probe") == 1
        assert _rows_titled(browser, "After the probe") == 1
        assert _toasts_titled(browser, "After the probe") == 1
        assert browser.evaluate("document.getElementById('live-status').title") == ""
