"""The web companion on a phone-sized screen and by keyboard, in a real browser, and the
README's screenshots of it.

At a desktop's width and a phone's (390 px), the inbox, a project and a task lay out
without sideways scrolling; every control has an accessible name; Tab starts at the
"skip to content" link and reaches the inbox's search and buttons. The screenshots land
in the test's directory (``docs/screenshots/web-*.png`` are copies of them).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page

from tests.e2e.browser import WAIT, navigate_by
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
    page.goto(server.url + "/")
    navigate_by(
        page,
        """document.getElementById('id_username').value = 'alice';
        document.getElementById('id_password').value = 'demo';
        document.querySelector('form[action="/login/"]').submit();""",
    )
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'Live'")


@contextmanager
def _view(page: Page, width: int, height: int, mobile: bool) -> Iterator[Page]:
    """A page of the same browser in a context of its own with that screen, at one
    device pixel per CSS pixel: ``mobile`` is Chrome's mobile emulation (the page's
    viewport meta tag applies), which a context takes only when it is made."""
    browser = page.context.browser
    assert browser is not None
    context = browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1, is_mobile=mobile
    )
    try:
        viewed = context.new_page()
        viewed.set_default_timeout(WAIT * 1000)
        yield viewed
    finally:
        context.close()


def _screenshot(page: Page, path: Path) -> Image.Image:
    data = page.screenshot(path=path, type="png")
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_the_pages_fit_the_screen_name_their_controls_and_look_like_something(
    browser: Page, demo_server: RunningServer, tmp_path: Path, viewport: str
) -> None:
    width, height, mobile = VIEWPORTS[viewport]
    with _view(browser, width, height, mobile) as page:
        _log_in(page, demo_server)
        for name, path in PAGES.items():
            page.goto(demo_server.url + path)
            assert page.evaluate("location.pathname") == path
            assert page.evaluate("document.documentElement.scrollWidth") <= width, name
            assert page.evaluate(_UNNAMED) == [], name
            image = _screenshot(page, tmp_path / f"web-{name}-{viewport}.png")
            assert image.size == (width, height)
            colours = image.getcolors(maxcolors=width * height) or []
            assert len(colours) > 20, f"{name} looks blank"


def test_the_keyboard_starts_at_skip_to_content_and_reaches_the_inbox(
    browser: Page, demo_server: RunningServer
) -> None:
    _log_in(browser, demo_server)
    browser.goto(demo_server.url + "/")
    focused: list[str] = []
    for _ in range(40):
        browser.keyboard.press("Tab")
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
    browser.wait_for_function("() => location.hash === '#main'")
