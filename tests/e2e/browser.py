"""A real browser for end-to-end tests: Debian's ``chromium``, headless, driven by
Playwright for Python (its sync API). Playwright is pointed at the system chromium
(``executable_path``); ``playwright install`` is never run and no browser is downloaded:
the browser under test is the one the distribution ships and updates.

::

    with launch(tmp_path / "browser") as page:              # a playwright.sync_api.Page
        page.goto(f"{server.url}/admin/login/")             # returns after the load event
        assert page.evaluate("document.title") == "Log in | ..."
        assert csp_violations(page) == []                   # seen by the page
        assert csp_console(page) == []                      # seen by the console

The helpers here are what Playwright does not do itself: :func:`navigate_by` (run
JavaScript that navigates, such as a form's ``submit()``, and wait for the next page's
load), the two views of Content-Security-Policy violations, and :func:`cdp` for the odd
raw DevTools command. Violations are recorded from two independent sources: a
``securitypolicyviolation`` listener installed in every new document before the page's
own scripts run (``window.__cspViolations``), and the page's console messages that
mention the policy. A page that works only because the detector is broken would show up
in the positive control of tests/e2e/test_admin_pages.py. The page does not bypass the
policy (Playwright's ``bypass_csp`` stays off), so give ``page.wait_for_function`` a
function (``"() => condition"``): a bare expression is ``eval``-ed at every poll, which
the server's policy blocks (no ``'unsafe-eval'``) and reports as a violation.
``page.evaluate`` runs its string as a DevTools command, which the policy allows.

As root chromium needs ``--no-sandbox``; the ``--disable-*`` flags keep it off the
network it would otherwise call (updates, sync, safe browsing) on a machine that has
none. Every console message of the page is also kept in ``workdir/console.log``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from playwright.sync_api import CDPSession, ConsoleMessage, Page, sync_playwright

WAIT = 30.0  # seconds for chromium to start, a page to load, a condition to hold

#: Flags for a quiet, private chromium (see the module's docstring); Playwright adds
#: ``--headless`` and its own defaults.
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
)

# Installed in every new document before its own scripts: the page's view of violations.
_CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(
        {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


@dataclass(frozen=True)
class CspViolation:
    """One ``securitypolicyviolation`` event: the directive (Chrome names the effective
    one, e.g. ``script-src-elem`` for a ``<script>`` that ``script-src`` governs), the
    blocked URL (or ``inline``/``eval``) and a sample when the policy asks for one."""

    directive: str
    blocked: str
    sample: str


@dataclass
class _Watch:
    """What the helpers keep for one page: its console's policy messages and, once
    asked for, its DevTools session."""

    log: IO[str]
    csp_console: list[str] = field(default_factory=list)
    cdp: CDPSession | None = None

    def on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        print(f"{message.type}: {text}", file=self.log, flush=True)
        if "Content Security Policy" in text:
            self.csp_console.append(text)


_WATCHED: dict[Page, _Watch] = {}


def _watch(page: Page) -> _Watch:
    try:
        return _WATCHED[page]
    except KeyError:
        raise RuntimeError("this page was not opened by tests.e2e.browser.launch") from None


def chromium_binary() -> str | None:
    return shutil.which("chromium")


def navigate_by(page: Page, expression: str) -> None:
    """Evaluate ``expression`` (say, a form's ``submit()``) and return once the page it
    leads to has loaded."""
    with page.expect_navigation():
        page.evaluate(expression)


def csp_violations(page: Page) -> list[CspViolation]:
    """What the current document's ``securitypolicyviolation`` listener recorded."""
    found = page.evaluate("window.__cspViolations ?? null")
    if found is None:
        raise RuntimeError("the violation listener is not installed in this document")
    return [CspViolation(str(v["directive"]), str(v["blocked"]), str(v["sample"])) for v in found]


def csp_console(page: Page) -> list[str]:
    """Console messages about the policy, from every document the page has shown since
    it was launched or :func:`clear_csp_console` was last called."""
    return list(_watch(page).csp_console)


def clear_csp_console(page: Page) -> None:
    _watch(page).csp_console.clear()


def cdp(page: Page, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one raw DevTools command on ``page`` (for what Playwright has no API for)."""
    watch = _watch(page)
    if watch.cdp is None:
        watch.cdp = page.context.new_cdp_session(page)
    result: dict[str, Any] = watch.cdp.send(method, params)
    return result


@contextlib.contextmanager
def launch(workdir: Path, *, binary: str | None = None) -> Iterator[Page]:
    """A headless chromium with one blank page in a fresh context, its waits limited to
    :data:`WAIT`; the violation listener and the console watch are installed."""
    binary = binary or chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    root = os.geteuid() == 0
    with (
        (workdir / "console.log").open("w") as log,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=binary,
            args=list(CHROMIUM_FLAGS),
            # Playwright passes --no-sandbox unless asked for the sandbox: ask for it
            # unless root, where chromium refuses to run with it.
            chromium_sandbox=not root,
            timeout=WAIT * 1000,
        )
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(WAIT * 1000)
            page.add_init_script(_CSP_LISTENER)
            watch = _Watch(log)
            page.on("console", watch.on_console)
            _WATCHED[page] = watch
            try:
                yield page
            finally:
                del _WATCHED[page]
        finally:
            browser.close()
