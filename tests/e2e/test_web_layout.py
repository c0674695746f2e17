"""The web companion on a phone-sized screen and by keyboard, in a real browser, and the
README's screenshots of it.

At a desktop's width and a phone's (390 px), the inbox, a project and a task lay out
without sideways scrolling; every control has an accessible name; Tab starts at the
"skip to content" link and reaches the inbox's search and buttons. The screenshots land
in the test's directory (``docs/screenshots/web-*.png`` are copies of them).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.browser import Page
from tests.fixtures.services import RunningServer

VIEWPORTS = {"desktop": (1280, 800, False), "phone": (390, 844, True)}
PAGES = {"inbox": "/", "project": "/projects/2", "task": "/projects/2/tasks/5"}

# Controls with no name a screen reader could say: no text, aria-label or label.
_UNNAMED = """[...document.querySelectorAll(
    'a[href], button:not([hidden]), input:not([type=hidden]), select')]
    .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim()
        || (el.id && document.querySelector(`label[for="${el.id}"]`))
        || el.closest('label')))
    .map((el) => el.outerHTML.slice(0, 80))"""


def _log_in(page: Page, server: RunningServer) -> None:
    page.navigate(server.url + "/")
    page.navigate_by(
        """document.getElementById('id_username').value = 'alice';
        document.getElementById('id_password').value = 'demo';
        document.querySelector('form[action="/login/"]').submit();"""
    )
    page.wait_for("document.getElementById('live-status').textContent === 'Live'")


def _view(page: Page, width: int, height: int, mobile: bool) -> None:
    page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def _screenshot(page: Page, path: Path) -> Image.Image:
    shot = page.send("Page.captureScreenshot", {"format": "png"})
    data = base64.b64decode(shot["data"])
    path.write_bytes(data)
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_the_pages_fit_the_screen_name_their_controls_and_look_like_something(
    browser: Page, demo_server: RunningServer, tmp_path: Path, viewport: str
) -> None:
    width, height, mobile = VIEWPORTS[viewport]
    _log_in(browser, demo_server)
    _view(browser, width, height, mobile)
    for name, path in PAGES.items():
        browser.navigate(demo_server.url + path)
        assert browser.evaluate("location.pathname") == path
        assert browser.evaluate("document.documentElement.scrollWidth") <= width, name
        assert browser.evaluate(_UNNAMED) == [], name
        image = _screenshot(browser, tmp_path / f"web-{name}-{viewport}.png")
        assert image.size == (width, height)
        colours = image.getcolors(maxcolors=width * height) or []
        assert len(colours) > 20, f"{name} looks blank"


def test_the_keyboard_starts_at_skip_to_content_and_reaches_the_inbox(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server)
    browser.navigate(demo_server.url + "/")
    focused: list[str] = []
    for _ in range(40):
        for kind in ("keyDown", "keyUp"):
            browser.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
            )
        focused.append(
            browser.evaluate(
                "(() => { const el = document.activeElement;"
                " return el.id || el.getAttribute('value') || el.textContent.trim(); })()"
            )
        )
    assert focused[0] == "Skip to content", focused
    assert "q" in focused, focused  # the search box
    assert "read" in focused, focused  # a row's "Mark read"
    # Following the skip link goes past the header.
    browser.evaluate("document.querySelector('a.skip').click()")
    browser.wait_for("location.hash === '#main'")
