"""A real browser for end-to-end tests: Debian's ``chromium``, headless, driven over the
DevTools protocol (CDP) with the ``websockets`` sync client and ``httpx``. No WebDriver,
no downloaded browser.

::

    with launch(tmp_path / "browser") as page:
        page.navigate(f"{server.url}/admin/login/")      # returns after the load event
        assert page.evaluate("document.title") == "Log in | ..."
        assert page.csp_violations() == []                # seen by the page
        assert page.csp_console() == []                   # seen by the console

Content-Security-Policy violations are recorded from two independent sources: a
``securitypolicyviolation`` listener installed in every new document before the page's
own scripts run (``window.__cspViolations``), and the ``Log`` domain's console entries
that mention the policy. A page that works only because the detector is broken would
show up in the positive control of tests/e2e/test_admin_pages.py.

chromium starts with ``--remote-debugging-port=0`` and a private profile; the port it
picked is read from ``DevToolsActivePort`` in that profile. As root it needs
``--no-sandbox``; the ``--disable-*`` flags keep it off the network it would otherwise
call (updates, sync, safe browsing) on a machine that has none.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

WAIT = 30.0  # seconds for chromium to start, a page to load, a condition to hold

#: Flags for a quiet, private, headless chromium (see the module's docstring).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

# Installed in every new document before its own scripts: the page's view of violations.
_CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(
        {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


class BrowserError(RuntimeError):
    """chromium did not start, a CDP command failed, or a wait ran out."""


@dataclass(frozen=True)
class CspViolation:
    """One ``securitypolicyviolation`` event: the directive (Chrome names the effective
    one, e.g. ``script-src-elem`` for a ``<script>`` that ``script-src`` governs), the
    blocked URL (or ``inline``/``eval``) and a sample when the policy asks for one."""

    directive: str
    blocked: str
    sample: str


def chromium_binary() -> str | None:
    return shutil.which("chromium")


class Page:
    """One page target of a running chromium, over its own CDP socket."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self._console: list[str] = []

    # --- protocol -----------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one CDP command and return its result; events read meanwhile are kept."""
        message_id = next(self._ids)
        self._connection.send(
            json.dumps({"id": message_id, "method": method, "params": params or {}})
        )
        deadline = time.monotonic() + WAIT
        while True:
            message = self._receive(deadline, what=f"the answer to {method}")
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def _receive(self, deadline: float, *, what: str) -> dict[str, Any]:
        try:
            raw = self._connection.recv(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise BrowserError(f"timed out waiting for {what}") from None
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self._on_event(message)
        return message

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["method"] == "Log.entryAdded":
            text = str(event["params"]["entry"].get("text", ""))
            if "Content Security Policy" in text:
                self._console.append(text)
        self._events.append(event)

    def wait_for_event(self, method: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first event ``method`` received since the last wait (or yet to come)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event["method"] == method:
                    del self._events[: index + 1]
                    return event
            self._events.clear()
            self._receive(deadline, what=method)

    # --- what tests use -----------------------------------------------------------

    def enable(self) -> None:
        """The domains the page's methods need, and the violation listener."""
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": _CSP_LISTENER})

    def navigate(self, url: str, timeout: float = WAIT) -> None:
        """Open ``url`` and return once its load event has fired."""
        self._events.clear()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired", timeout)

    def navigate_by(self, expression: str, timeout: float = WAIT) -> None:
        """Evaluate ``expression`` (say, a form's ``submit()``) and return once the page
        it leads to has loaded."""
        self._events.clear()
        self.evaluate(expression)
        self.wait_for_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression in the page (JSON-like values only);
        with ``await_promise``, the value the promise it returns resolves to."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw: {description}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = WAIT, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} was still {value!r} after {timeout:.0f} s")
            time.sleep(interval)

    def csp_violations(self) -> list[CspViolation]:
        """What the current document's ``securitypolicyviolation`` listener recorded."""
        found = self.evaluate("window.__cspViolations ?? null")
        if found is None:
            raise BrowserError("the violation listener is not installed in this document")
        return [
            CspViolation(str(v["directive"]), str(v["blocked"]), str(v["sample"])) for v in found
        ]

    def csp_console(self) -> list[str]:
        """Console messages about the policy, from every document since the browser
        started or :meth:`clear_csp_console` was last called."""
        # Drain what has arrived so far without waiting for more.
        with contextlib.suppress(BrowserError):
            while True:
                self._receive(time.monotonic(), what="queued events")
        return list(self._console)

    def clear_csp_console(self) -> None:
        self._console.clear()


def _read_active_port(
    profile: Path, process: subprocess.Popen[bytes], log: Path
) -> tuple[int, str]:
    """chromium's DevTools port and browser socket path, from ``DevToolsActivePort``."""
    path = profile / "DevToolsActivePort"
    deadline = time.monotonic() + WAIT
    while True:
        with contextlib.suppress(FileNotFoundError):
            lines = path.read_text().split()
            if len(lines) == 2:  # written, not half-written
                return int(lines[0]), lines[1]
        if process.poll() is not None:
            raise BrowserError(
                f"chromium exited ({process.returncode}) before it listened:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise BrowserError(f"chromium wrote no {path} within {WAIT:.0f} s:\n{_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _stop(
    process: subprocess.Popen[bytes], browser_socket: str | None, timeout: float = 10
) -> None:
    """``Browser.close`` over CDP; SIGKILL to chromium's process group if that hangs."""
    if process.poll() is None and browser_socket is not None:
        with contextlib.suppress(Exception), connect(browser_socket, open_timeout=5) as browser:
            browser.send(json.dumps({"id": 1, "method": "Browser.close"}))
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Its helpers (zygote, renderers) share its process group: kill them all while
        # the group is certainly still chromium's (its leader has not been reaped).
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@contextlib.contextmanager
def launch(workdir: Path, *, binary: str | None = None) -> Iterator[Page]:
    """A headless chromium with one blank page, ready (:meth:`Page.enable`). Its log
    stays in ``workdir/chromium.log``; its profile is removed afterwards."""
    binary = binary or chromium_binary()
    if binary is None:
        raise BrowserError("chromium is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / "profile"
    profile.mkdir()
    log = workdir / "chromium.log"
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
    command.append("about:blank")
    browser_socket: str | None = None
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port, browser_path = _read_active_port(profile, process, log)
        browser_socket = f"ws://127.0.0.1:{port}{browser_path}"
        # A fresh page target of our own rather than whatever chromium opened first.
        response = httpx.put(f"http://127.0.0.1:{port}/json/new?about:blank", timeout=WAIT)
        response.raise_for_status()
        target: dict[str, Any] = response.json()
        with connect(target["webSocketDebuggerUrl"], open_timeout=WAIT, max_size=None) as socket:
            page = Page(socket)
            page.enable()
            yield page
    finally:
        _stop(process, browser_socket)
        shutil.rmtree(profile, ignore_errors=True)
