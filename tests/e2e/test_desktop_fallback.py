"""The tray app on networks that break WebSockets (issue 18), on a real (virtual) desktop.

The same desktop as tests/e2e/test_desktop.py (Xvfb, a private session bus, gnome-keyring,
xfconfd, xfce4-notifyd, xfce4-panel holding only the system tray) and the real
``tray-notifier`` console script, logged in to a real demo server through a real proxy
that breaks WebSockets one of the ways company networks do (tests/fixtures/proxies.py):
nginx without the Upgrade headers, nginx answering 403 to upgrades, nginx cutting upgraded
connections after 5 s, tinyproxy refusing CONNECT (the app's proxy setting, from IT's
managed file, names it).

Everything is observed where a user sees it or where it is recorded: the tray's tooltip
and menu as the panel reads them over the session bus (StatusNotifierItem, DBusMenu),
menu entries clicked with the DBusMenu ``Event`` call the panel sends, toasts as the
``Notify`` calls the notification daemon receives, the badge by the icon's pixels, read
state over the server's REST API, and the app's history in its own SQLite file.

The app retries the socket ``retry`` seconds after falling back
(``TRAY_NOTIFIER_WEBSOCKET_RETRY``; doubling after each failed retry) instead of five
minutes, so that the move back, once the proxy lets WebSockets through, happens within
the test. Opening a notification from the menu goes to a stand-in ``xdg-open`` (first on
the app's PATH) that records the address instead of starting a browser.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from pathlib import Path
from typing import Any

import pytest
from jeepney import new_method_call

from tests.e2e.desktop import (
    RestUser,
    TrayAppProcess,
    TrayDesktop,
    user_session,
    wait_for,
)
from tests.e2e.sni import TrayItem, TrayItemError
from tests.fixtures.proxies import CONDITIONS, BrokenProxy
from tests.fixtures.services import ServerFactory
from tests.tray_app.conftest import RestartableServer
from tests.tray_app.test_headless import GENEROUS_LOGINS
from tests.tray_app.ui.display import NotifyCall, NotifyMonitor, Rect
from tray_app.managed import MANAGED_FILE_ENV, WEBSOCKET_RETRY_ENVIRONMENT
from tray_app.net.transport_choice import REASON_BLOCKED, REASON_FORCED_HTTP
from tray_app.ui.tray import APP_NAME, ROW_SEPARATOR

pytestmark = pytest.mark.slow

WAIT = 20.0
# Seconds before the first retry of the socket on the stream (doubling after each failed
# one). Through the cutting proxy a retry gets hello and reads "Connected" for 5 s before
# the cut: there the first comes later, so that the steps meant for the fallback (toasts,
# mark read) run on it.
RETRY = 4
RETRY_BY_KIND = {"nginx-cutting-upgrades": 12}
ON_FALLBACK = f"Connected ({REASON_BLOCKED})"
FORCED_HTTP = f"Connected ({REASON_FORCED_HTTP})"
ON_SOCKET = "Connected"
# Three refusals (four cuts of 5 s for the cutting proxy) with the backoff between them;
# as tests/tray_app/test_headless_fallback.py allows the headless client.
SWITCH_WITHIN = 90.0
# Retries come at r, 3r, 7r, 15r... s after the switch (r = the retry): one allowed t s after
# the switch comes within t + r s. Allowed to the bound: twice that (a retry already cut
# through a cutting proxy's old configuration doubles the wait once more), plus this for
# the handshake, the catch-up and the D-Bus round trips.
BACK_SLACK = 15.0
# How long "Connected" must hold to count as back on the socket: past the cutting proxy's
# 5 s, so that a retry through its old configuration (cut after hello) does not count.
STEADY = 8.0
# tray_app/toast_policy.py: catch-up rows never toast singly; one away toast lists them.
AWAY_TITLE = "{count} new while you were away"


# --- the app, started as a user starts it, with IT's managed file -----------------------


def start_app(
    desktop: TrayDesktop,
    server_url: str,
    root: Path,
    managed: dict[str, Any],
    *,
    retry: int = RETRY,
) -> TrayAppProcess:
    """``tray-notifier --server URL --username alice`` on the desktop, with ``managed`` as
    IT's managed file, the socket retried ``retry`` s after a fallback, and a recording
    ``xdg-open``.

    ``root`` may hold an earlier run's files: the same user starting the app again."""
    desktop.wait_for_empty_tray()
    script = Path(sys.executable).with_name("tray-notifier")
    assert script.exists(), f"the console script is not installed at {script}"
    session = user_session(desktop, root, password="demo")
    tools = root / "bin"
    tools.mkdir(exist_ok=True)
    opener = tools / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{root / "opened.txt"}"\n')
    opener.chmod(0o755)
    session.env["PATH"] = f"{tools}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    managed_file = root / "managed.json"
    managed_file.write_text(json.dumps(managed), encoding="utf-8")
    session.env[MANAGED_FILE_ENV] = str(managed_file)
    session.env[WEBSOCKET_RETRY_ENVIRONMENT] = str(retry)
    output = (root / "output.log").open("ab")
    process = session.start([str(script), "--server", server_url, "--username", "alice"], output)
    return TrayAppProcess(
        process,
        root=root,
        runtime_dir=session.runtime_dir,
        server_url=server_url,
        username="alice",
        output=output,
    )


def opened(root: Path) -> list[str]:
    """The addresses the app asked ``xdg-open`` to open."""
    path = root / "opened.txt"
    return path.read_text("utf-8").splitlines() if path.exists() else []


# --- the tray as the panel sees it --------------------------------------------------------


def _plain(label: str) -> str:
    """A DBusMenu label as a user reads it: "_" marks a mnemonic, "__" is one "_"."""
    return label.replace("__", "\0").replace("_", "").replace("\0", "_")


class Tray(TrayItem):
    """The app's StatusNotifierItem on the bus, with every tooltip it showed (as read)
    kept with the time it was first seen."""

    def __init__(self, desktop: TrayDesktop, app: TrayAppProcess) -> None:
        super().__init__(desktop.bus_address, timeout=WAIT)
        self.app = app
        self.app_started = time.monotonic()
        self.seen: list[tuple[float, str]] = []

    def __enter__(self) -> Tray:
        return self

    def read(self) -> str | None:
        """The tooltip now; None while no item is registered (starting, or gone)."""
        try:
            text = self.tooltip()
        except TrayItemError:
            return None
        if not self.seen or self.seen[-1][1] != text:
            self.seen.append((time.monotonic(), text))
        return text

    def parts(self) -> tuple[str, str] | None:
        """``(unread words, connection words)`` of "Tray Notifier — 2 unread — Connected"."""
        text = self.read()
        if text is None:
            return None
        parts = text.replace("\n", " — ").split(" — ")
        assert parts[0] == APP_NAME, text
        assert len(parts) >= 3, text
        return parts[1], parts[2]

    def connection(self) -> str | None:
        parts = self.parts()
        return None if parts is None else parts[1]

    def unread(self) -> str | None:
        parts = self.parts()
        return None if parts is None else parts[0]

    def connections(self, since: float) -> set[str]:
        """The connection words of the tooltips read since ``since`` (and the one shown
        then)."""
        shown = [text for at, text in self.seen if at <= since][-1:]
        shown += [text for at, text in self.seen if at > since]
        return {text.replace("\n", " — ").split(" — ")[2] for text in shown}

    def wait(self, condition: Callable[[], bool], *, what: str, timeout: float = WAIT) -> float:
        """Poll the tooltip (over D-Bus) until ``condition``; when it first held
        (``time.monotonic()``). Fails early when the app exits."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.app.process.poll() is not None:
                raise AssertionError(f"the app exited while waiting for {what}:\n{self.story()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{self.story()}"
                )
            time.sleep(0.05)
        return time.monotonic()

    def wait_connection(self, words: str, *, timeout: float = WAIT) -> float:
        return self.wait(
            lambda: self.connection() == words,
            what=f"the tooltip to say {words!r}",
            timeout=timeout,
        )

    def wait_unread(self, count: int) -> None:
        words = f"{count} unread" if count else "no unread"
        self.wait(lambda: self.unread() == words, what=f"the tooltip to say {words!r}")

    def story(self, since: float | None = None) -> str:
        """The tooltips seen (seconds after ``since``, by default the app's start), the
        menu, and the app's log: for failure messages."""
        start = self.app_started if since is None else since
        lines = [f"  {at - start:+7.2f} s  {text!r}" for at, text in self.seen if at >= start]
        try:
            menu = repr(self.menu_labels())
        except TrayItemError as error:
            menu = str(error)
        return (
            "tooltips seen:\n"
            + "\n".join(lines)
            + f"\nmenu: {menu}\n--- app log:\n"
            + self.app.log()[-6000:]
        )

    # --- the menu ---------------------------------------------------------------------

    def menu_labels(self) -> list[str]:
        return [_plain(label) for label in self.labels()]

    def rows(self, title: str) -> list[int]:
        """The menu entries that are rows of the notification titled ``title``."""
        prefix = title + ROW_SEPARATOR
        return [
            entry
            for entry, label in self._entries(self._menu())
            if _plain(label).startswith(prefix)
        ]

    def wait_listed_once(self, title: str) -> None:
        self.wait(lambda: len(self.rows(title)) == 1, what=f"one menu row for {title!r}")

    def click_row(self, title: str) -> None:
        """Click the notification's row, as the panel does when a user clicks it."""
        found: list[int] = []

        def listed() -> bool:
            found[:] = self.rows(title)
            return len(found) == 1

        self.wait(listed, what=f"one menu row for {title!r}")
        stamp = int(time.time()) & 0xFFFFFFFF
        self._call(
            new_method_call(self._menu(), "Event", "isvu", (found[0], "clicked", ("i", 0), stamp))
        )


# --- toasts -------------------------------------------------------------------------------


def singles(calls: list[NotifyCall], title: str) -> list[NotifyCall]:
    """The single toasts (with "Open" and "Mark read") of the notification ``title``."""
    return [c for c in calls if c.summary == title and c.action_labels == ["Open", "Mark read"]]


def away_toasts(calls: list[NotifyCall]) -> list[NotifyCall]:
    """The "N new while you were away" toasts (tray_app/toast_policy.py, catch-up)."""
    return [c for c in calls if c.summary.endswith(" while you were away")]


def wait_for_toast(monitor: NotifyMonitor, title: str) -> None:
    """Wait for the single toast of a live notification ``title``.

    Fails at once when it came folded into an away toast instead: the app got it by a
    replay (as after an absence), not live, though it never showed itself away.
    """
    calls = monitor.wait_for(
        lambda seen: bool(singles(seen, title)) or any(title in c.body for c in away_toasts(seen)),
        timeout=WAIT,
    )
    assert singles(calls, title), (
        f"{title!r} was published live but toasted as {away_toasts(calls)}: the app stored "
        "it from a replay (the stream reopened around a retry of the socket?)"
    )


def quit_from_menu(tray: Tray, app: TrayAppProcess) -> None:
    """Click "Quit" in the tray menu: the app exits with 0, having logged no error."""
    tray.click("Quit")
    code = app.process.wait(timeout=WAIT)
    assert code == 0, app.output()
    errors = [line for line in app.log().splitlines() if " ERROR " in line]
    assert not errors, app.log()
    assert "Traceback" not in app.output(), app.output()


def ready_badge(desktop: TrayDesktop, *, badge: bool) -> Rect:
    """The icon's area once it shows the connected (blue) tile with or without a badge."""
    area = desktop.wait_for_tray_icon()
    desktop.wait_for_icon(
        area, lambda c: c.live and c.badge == badge, what=f"the blue tile, badge={badge}"
    )
    return area


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def server(server_factory: ServerFactory) -> RestartableServer:
    return RestartableServer(server_factory, env=GENEROUS_LOGINS)


@pytest.fixture
def alice(server: RestartableServer) -> Iterator[RestUser]:
    """Alice's inbox over REST, straight to the server (the ground truth), every demo
    notification read: the count starts at 0."""
    inbox = RestUser(server.url, "alice")
    inbox.mark_all_read()
    assert inbox.unread_count() == 0
    yield inbox
    inbox.close()


@pytest.fixture
def admin(server: RestartableServer) -> Iterator[RestUser]:
    """The demo admin, who publishes, straight to the server."""
    with closing(RestUser(server.url, "admin")) as user:
        yield user


def caught_up(app: TrayAppProcess, alice: RestUser) -> None:
    _unread, latest = alice.state()
    wait_for(lambda: app.cursor() == latest, what=f"the app's store at seq {latest}")


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", sorted(CONDITIONS))
def test_through_a_proxy_that_breaks_websockets_the_tray_falls_back_and_comes_back(
    kind: str,
    desktop: TrayDesktop,
    server: RestartableServer,
    alice: RestUser,
    admin: RestUser,
    tmp_path: Path,
) -> None:
    """Falls back by itself and says so; toasts each live notification once and counts
    it; marks one read from the menu; after a restart catches up with one away toast and
    no repeated toast; moves back to the socket once the proxy allows WebSockets, and
    toasts there once."""
    condition: Callable[[int], AbstractContextManager[BrokenProxy]] = CONDITIONS[kind]
    root = tmp_path / "app"
    live = [f"{kind}: live {n}" for n in range(3)]
    away = [f"{kind}: away {n}" for n in range(2)]
    after = f"{kind}: on the socket"
    retry = RETRY_BY_KIND.get(kind, RETRY)
    timings: list[str] = []
    with condition(server.port) as proxy:
        managed = {"proxy": proxy.proxy} if proxy.proxy is not None else {}
        app = start_app(desktop, proxy.url, root, managed, retry=retry)
        try:
            with Tray(desktop, app) as tray, desktop.monitor_notify() as monitor:
                # 1. It falls back by itself and says so, in the tooltip and the menu.
                fell_back_at = fall_back(tray)
                timings.append(
                    f"on the fallback {fell_back_at - tray.app_started:.1f} s after start"
                )
                caught_up(app, alice)
                tray.wait_unread(0)
                # 2. Live notifications over the stream: one toast each, counted.
                on_stream_since = time.monotonic()
                for title in live:
                    tray.wait_connection(ON_FALLBACK)
                    admin.publish(title)
                    wait_for_toast(monitor, title)
                tray.wait_unread(3)
                assert alice.unread_count() == 3
                ready_badge(desktop, badge=True)
                # Opened from the menu: the stand-in browser got it, the server has it read.
                tray.click_row(live[0])
                tray.wait(
                    lambda: tray.read() is not None and alice.unread_count() == 2,
                    what="2 unread on the server",
                )
                tray.wait_unread(2)
                # On the stream all along, as far as the tooltip was read meanwhile.
                assert tray.connections(since=on_stream_since) == {ON_FALLBACK}, tray.story()
                [row] = [r for r in app.rows() if r.title == live[0]]
                wait_for(
                    lambda: all(r.is_read for r in app.rows() if r.id == row.id),
                    what="the app's store to hold it read",
                )
                assert tray.rows(live[0]) == [], tray.menu_labels()
                assert opened(root) == [f"{proxy.url}/notifications/{row.id}"], opened(root)
                quit_from_menu(tray, app)
                first_run = monitor.calls()
            for title in live:
                assert len(singles(first_run, title)) == 1, (title, first_run)

            # 3. Quit; two more meanwhile; started again: they come by catch-up.
            for title in away:
                admin.publish(title)
            app.close()
            app = start_app(desktop, proxy.url, root, managed, retry=retry)
            with Tray(desktop, app) as tray, desktop.monitor_notify() as monitor:
                fell_back_at = fall_back(tray)
                timings.append(f"again {fell_back_at - tray.app_started:.1f} s after the restart")
                caught_up(app, alice)
                summary = AWAY_TITLE.format(count=len(away))
                calls = monitor.wait_for(
                    lambda seen: any(c.summary == summary for c in seen), timeout=WAIT
                )
                [away_toast] = [c for c in calls if c.summary == summary]
                for title in away:
                    assert title in away_toast.body, away_toast.body
                tray.wait_unread(4)
                for title in [*live[1:], *away]:
                    tray.wait_listed_once(title)
                titles = [r.title for r in app.rows()]
                for title in [*live, *away]:
                    assert titles.count(title) == 1, (title, titles)
                # 4. The proxy lets WebSockets through: the next retry moves it back.
                proxy.allow_websockets()
                allowed_at = time.monotonic()
                bound = 2 * (allowed_at - fell_back_at + retry) + BACK_SLACK
                back_s = wait_steadily_on_socket(tray, allowed_at, bound) - allowed_at
                timings.append(
                    f"back on the socket {back_s:.1f} s after the proxy allowed it "
                    f"(bound {bound:.0f} s)"
                )
                assert f"alice · {ON_SOCKET}" in tray.menu_labels(), tray.menu_labels()
                admin.publish(after)
                wait_for_toast(monitor, after)
                tray.wait_unread(5)
                quit_from_menu(tray, app)
                second_run = monitor.calls()
        finally:
            app.kill()
    # Nothing shown before toasts again; the catch-up was one away toast; the one
    # published on the socket toasted once.
    for title in [*live, *away]:
        assert singles(second_run, title) == [], (title, second_run)
    assert len(away_toasts(second_run)) == 1, away_toasts(second_run)
    assert len(singles(second_run, after)) == 1, second_run
    print(f"{kind}: " + "; ".join(timings))


def fall_back(tray: Tray) -> float:
    """Wait for the fallback in the tooltip, and see it in the menu's header; when the
    tooltip first said it (``time.monotonic()``)."""
    fell_back_at = tray.wait_connection(ON_FALLBACK, timeout=SWITCH_WITHIN)
    assert f"alice · {ON_FALLBACK}" in tray.menu_labels(), tray.menu_labels()
    return fell_back_at


def wait_steadily_on_socket(tray: Tray, since: float, bound: float) -> float:
    """Wait until the tooltip says exactly "Connected" and keeps saying it for STEADY s
    (a retry through a cutting proxy's old configuration says it for 5 s, then is cut);
    when that steady "Connected" began, at most ``bound`` s after ``since``."""
    deadline = since + bound
    while True:
        began = tray.wait(
            lambda: tray.connection() == ON_SOCKET,
            what="the tooltip to say exactly 'Connected'",
            timeout=max(0.0, deadline - time.monotonic()),
        )
        # A bounded watch for a fall back (its absence is the point: no event to wait on).
        while time.monotonic() < began + STEADY and tray.connection() == ON_SOCKET:
            time.sleep(0.05)
        if tray.connection() == ON_SOCKET:
            return began
        if time.monotonic() > deadline:
            raise AssertionError(f"never steadily back on the socket\n{tray.story(since)}")


@pytest.mark.timeout(180)
def test_it_forcing_the_http_stream_is_obeyed_and_said(
    desktop: TrayDesktop,
    server: RestartableServer,
    alice: RestUser,
    admin: RestUser,
    tmp_path: Path,
) -> None:
    """IT's ``"live_transport": "http"`` on a direct connection: the tooltip says so from
    the first connection on, and notifications toast once each over the stream."""
    root = tmp_path / "app"
    app = start_app(desktop, server.url, root, {"live_transport": "http"})
    try:
        with Tray(desktop, app) as tray, desktop.monitor_notify() as monitor:
            tray.wait_connection(FORCED_HTTP)
            assert f"alice · {FORCED_HTTP}" in tray.menu_labels(), tray.menu_labels()
            caught_up(app, alice)
            titles = [f"forced stream {n}" for n in range(2)]
            for title in titles:
                admin.publish(title)
                wait_for_toast(monitor, title)
            tray.wait_unread(2)
            ready_badge(desktop, badge=True)
            tray.click_row(titles[0])
            wait_for(lambda: alice.unread_count() == 1, what="1 unread on the server")
            tray.wait_unread(1)
            # From the first connection on, and never anything else (no socket was tried,
            # none failed, nothing reconnected).
            words = tray.connections(since=tray.app_started)
            # ("Starting…" is the icon's state while the app loads, before any connection.)
            assert words - {"Starting…", "Connecting…"} == {FORCED_HTTP}, tray.story()
            assert "handshake" not in app.log(), app.log()
            quit_from_menu(tray, app)
            calls = monitor.calls()
    finally:
        app.kill()
    for title in titles:
        assert len(singles(calls, title)) == 1, (title, calls)
