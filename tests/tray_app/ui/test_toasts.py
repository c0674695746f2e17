"""The toaster on a real desktop: Xvfb, a private D-Bus session bus and xfce4-notifyd.

What reaches the daemon is read off the bus by ``dbus-monitor`` (a subprocess whose output
is parsed), and the toast's buttons are clicked with ``xdotool`` where xfce4-notifyd drew
them, found by their pixels; the daemon then sends ActionInvoked, which must come back as
the Toaster's Qt signals. The display and daemon start once for the module.

The event loop: the app runs everything on a qasync loop (``qasync.QEventLoop`` driving
the Qt event loop), so these tests do too. Each test is a plain function that runs its
coroutine with ``asyncio.Runner(loop_factory=qasync.QEventLoop)``, the same
run-until-complete the app's ``__main__`` does, and waits for Qt signals *inside* that
loop (an asyncio future set by the slot), so the toaster's D-Bus reader and the Qt
signals are served by one loop as in the app. pytest-asyncio was not used: its loop is a
plain asyncio loop unless a ``pytest_asyncio_loop_factories`` hook in a conftest swaps it,
and ``qtbot.waitSignal`` would spin a nested Qt loop under a loop that asyncio does not
consider running.

The stand-ins: the fallback's ``QSystemTrayIcon`` records ``showMessage`` calls instead
of drawing a balloon, and a click on the balloon is its ``messageClicked`` signal emitted by
the test, because under the offscreen platform of in-process tests there is no tray for Qt
to draw one on. The toaster's own D-Bus path is never faked: its failures come from a bus
address with nothing behind it, from a real bus with no notification server, and from a
scripted server (``fake_notifyd.py``) that hangs, or that does on cue what xfce4-notifyd
does only when a user acts (a click on the body, a dismissal).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtCore import QTimer, QUrl, SignalInstance
from PySide6.QtGui import QIcon, QImage, QPixmap, Qt, QTextDocument
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from tests.tray_app.conftest import toast_request
from tests.tray_app.desktop_session import DesktopSession
from tests.tray_app.ui.display import (
    NotificationDesktop,
    NotifyCall,
    NotifyMonitor,
    Rect,
    bus_connections_of,
    start_notifyd,
)
from tray_app.toast_policy import Toast, ToastPlanner, ToastPreferences
from tray_app.ui import toasts
from tray_app.ui.toasts import MARK_READ_LABEL, OPEN_LABEL, SHOW_ALL_LABEL, Toaster

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[3]
WAIT = 15.0
HOSTILE_TITLE = "<b>x</b><img src=x>"
HOSTILE_MESSAGE = "a & b <i>c</i> <b>bold</b>"
FAKE_NOTIFYD = Path(__file__).with_name("fake_notifyd.py")
FAKE_LOGIND = Path(__file__).with_name("fake_logind.py")


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotificationDesktop]:
    with NotificationDesktop(tmp_path_factory.mktemp("desktop"), timeout=WAIT) as started:
        started.start_notifyd()
        yield started


@pytest.fixture
def on_desktop(
    desktop: NotificationDesktop, monkeypatch: pytest.MonkeyPatch
) -> NotificationDesktop:
    """The test process joins the desktop's session bus (desktop-notifier reads the
    address from the environment when it connects)."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.bus_address)
    return desktop


@pytest.fixture
def run(qapp: QApplication) -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coro)``: run it to completion on a qasync loop, as the app does."""
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(qapp)) as runner:

        def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
            return runner.run(asyncio.wait_for(coroutine, WAIT * 2))

        yield run_coroutine
    # The loop's Qt objects sit in reference cycles: collect them here, in the GUI thread,
    # not whenever some other thread happens to trigger the collector.
    gc.collect()


@pytest.fixture
def make_toaster(run) -> Iterator[Callable[..., Toaster]]:
    """``make_toaster(tray, **options)``: a Toaster, closed (with its D-Bus connection)
    after the test."""
    made: list[Toaster] = []

    def make(tray: QSystemTrayIcon | None = None, **options: Any) -> Toaster:
        toaster = Toaster(tray, **options)
        made.append(toaster)
        return toaster

    yield make
    for toaster in made:
        run(toaster.aclose())


async def emitted(signal: SignalInstance, action: Callable[[], object]) -> list[Any]:
    """Do ``action`` and wait, inside the running loop, for ``signal``; its arguments."""
    future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    def slot(*args: Any) -> None:
        if not future.done():
            future.set_result(list(args))

    signal.connect(slot)
    try:
        action()
        async with asyncio.timeout(WAIT):
            return await future
    finally:
        signal.disconnect(slot)


def toast_for(notification_id: int, **fields: Any) -> Toast:
    """What the real planner makes of one live notification."""
    request = toast_request(notification_id, arrived_at=0.0, **fields)
    [toast] = ToastPlanner(clock=lambda: 0.0).offer(request, ToastPreferences())
    return toast


def summary_toast() -> Toast:
    clock = [0.0]
    planner = ToastPlanner(clock=lambda: clock[0])
    for n in range(1, 13):
        request = toast_request(
            n, title=f"Build {n} finished", message="", url="/x", arrived_at=n / 10
        )
        planner.offer(request, ToastPreferences())
    clock[0] = 10.0
    [summary] = planner.flush(ToastPreferences())
    return summary


def distinct_colours(path: Path) -> int:
    image = QImage(str(path))
    return len(
        {image.pixel(x, y) for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)}
    )


def shown_by_auto_text_label(text: str) -> str:
    """The characters a QLabel with Qt.AutoText (as in Qt's balloon) puts on screen."""
    document = QTextDocument()
    if Qt.mightBeRichText(text):
        document.setHtml(text)
    else:
        document.setPlainText(text)
    return document.toPlainText()


class RecordingTray(QSystemTrayIcon):
    """A tray icon that records balloons (offscreen Qt has no tray to draw them on)."""

    def __init__(self) -> None:
        super().__init__()
        pixmap = QPixmap(16, 16)
        pixmap.fill()
        self.setIcon(QIcon(pixmap))
        self.balloons: list[tuple[str, str, QSystemTrayIcon.MessageIcon]] = []

    def showMessage(self, title: str, body: str, icon: Any = None, msecs: int = 10000) -> None:
        self.balloons.append((title, body, icon))


def show_and_find(
    toaster: Toaster, toast: Toast, desktop: NotificationDesktop, run: Callable[..., Any]
) -> tuple[int, list[Rect]]:
    """Show ``toast`` and wait for its window; the window and its buttons."""
    before = set(desktop.windows())
    run(toaster.show(toast))
    window = desktop.wait_for_window(exclude=before)
    return window, desktop.buttons(window)


# --- what reaches the daemon ---------------------------------------------------------------


def icon_file(call: NotifyCall) -> Path:
    """The local file a Notify call's icon (a file:// URI) names."""
    url = QUrl(call.icon)
    assert url.isLocalFile(), call.icon
    return Path(url.toLocalFile())


@pytest.mark.parametrize(
    ("priority", "urgency_hint", "word", "icon"),
    [
        ("low", 0, "", "tray-notifier-64.png"),
        ("normal", 1, "", "tray-notifier-64.png"),
        ("high", 1, "High: ", "tray-notifier_high-64.png"),
        ("urgent", 2, "Urgent: ", "tray-notifier_urgent-64.png"),
    ],
)
def test_a_single_toast_reaches_the_daemon_as_the_policy_said(
    make_toaster, on_desktop, run, qtbot, priority, urgency_hint, word, icon
):
    toaster = make_toaster(None)
    ident = 10 + urgency_hint
    toast = toast_for(ident, priority=priority)
    with on_desktop.monitor_notify() as monitor:
        run(toaster.show(toast))
        [call] = monitor.wait_for(lambda calls: len(calls) >= 1)
    assert call.app_name == "Tray Notifier"
    assert call.summary == toast.title == f"{word}Task {ident} moved to Done"
    assert call.body == toast.body == "Mobile App \u00b7 Reviewed by bob"
    assert call.action_labels == [OPEN_LABEL, MARK_READ_LABEL]
    assert call.urgency == urgency_hint
    # The shipped icon, marked for high and urgent ones: a file the daemon can read.
    assert icon_file(call) == REPO / "resources" / "icons" / icon
    assert icon_file(call).is_file()
    assert toaster.native_available
    run(toaster.close_all())


def red_pixels(path: Path) -> int:
    image = QImage(str(path))
    return sum(
        1
        for y in range(image.height())
        for x in range(image.width())
        if (c := image.pixelColor(x, y)).red() > 170 and c.green() < 90 and c.blue() < 90
    )


def test_an_urgent_toast_is_drawn_with_the_red_mark(make_toaster, on_desktop, run, qtbot, tmp_path):
    """What the user sees: xfce4-notifyd draws the urgent toast's icon, red mark and all,
    and the plain one without any red."""
    toaster = make_toaster(None)
    shots = {}
    for priority, ident in (("normal", 80), ("urgent", 81)):
        window, _ = show_and_find(toaster, toast_for(ident, priority=priority), on_desktop, run)
        shots[priority] = on_desktop.screenshot(tmp_path / f"{priority}-toast.png", window)
        run(toaster.close_all())
        on_desktop.wait_until_gone(window)
    assert red_pixels(shots["normal"]) == 0
    assert red_pixels(shots["urgent"]) > 100


def test_without_the_marked_icons_an_urgent_toast_asks_for_the_theme_warning_icon(
    make_toaster, on_desktop, run, qtbot
):
    toaster = make_toaster(None, emphasis_icons={})
    with on_desktop.monitor_notify() as monitor:
        run(toaster.show(toast_for(90, priority="urgent")))
        run(toaster.show(toast_for(91, priority="high")))
        urgent, high = monitor.wait_for(lambda calls: len(calls) >= 2)
    assert (urgent.icon, urgent.urgency) == ("dialog-warning", 2)
    assert icon_file(high).name == "tray-notifier-64.png"  # the title still says "High: "
    assert high.summary.startswith("High: ")
    run(toaster.close_all())


def test_server_text_is_shown_as_plain_text(make_toaster, on_desktop, run, qtbot, tmp_path):
    """xfce4-notifyd renders valid body markup (``<b>bold</b>`` in bold) and shows the
    summary verbatim; the body's markup characters must reach it escaped."""
    toaster = make_toaster(None)
    toast = toast_for(20, title=HOSTILE_TITLE, message=HOSTILE_MESSAGE, project_title=None)
    with on_desktop.monitor_notify() as monitor:
        window, _ = show_and_find(toaster, toast, on_desktop, run)
        [call] = monitor.wait_for(lambda calls: len(calls) >= 1)
    assert call.summary == HOSTILE_TITLE
    assert call.body == "a &amp; b &lt;i&gt;c&lt;/i&gt; &lt;b&gt;bold&lt;/b&gt;"
    shot = on_desktop.screenshot(tmp_path / "plain-text-toast.png", window)
    assert distinct_colours(shot) > 8
    run(toaster.close_all())
    on_desktop.wait_until_gone(window)


# --- the buttons, clicked for real -----------------------------------------------------------


def test_clicking_mark_read_asks_to_mark_that_notification_read(
    make_toaster, on_desktop, run, qtbot, tmp_path
):
    toaster = make_toaster(None)
    window, buttons = show_and_find(toaster, toast_for(42), on_desktop, run)
    assert len(buttons) == 2  # Open, Mark read: in the order they were sent
    shot = on_desktop.screenshot(tmp_path / "toast.png", window)
    assert distinct_colours(shot) > 8

    opened: list[Any] = []
    toaster.open_requested.connect(lambda *args: opened.append(args))
    args = run(emitted(toaster.mark_read_requested, lambda: on_desktop.click(*buttons[1].center)))
    assert args == [42]
    assert opened == []
    on_desktop.wait_until_gone(window)


def test_clicking_open_asks_to_open_that_notification(make_toaster, on_desktop, run, qtbot):
    toaster = make_toaster(None)
    window, buttons = show_and_find(toaster, toast_for(43), on_desktop, run)
    marked: list[Any] = []
    toaster.mark_read_requested.connect(marked.append)
    args = run(emitted(toaster.open_requested, lambda: on_desktop.click(*buttons[0].center)))
    assert args == [43, "/projects/7/tasks/43"]
    assert marked == []
    on_desktop.wait_until_gone(window)


def test_a_summary_toast_offers_the_history(make_toaster, on_desktop, run, qtbot):
    toaster = make_toaster(None)
    summary = summary_toast()
    assert summary.title == "7 more updates in Mobile App"
    with on_desktop.monitor_notify() as monitor:
        window, buttons = show_and_find(toaster, summary, on_desktop, run)
        [call] = monitor.wait_for(lambda calls: len(calls) >= 1)
    assert (call.summary, call.action_labels, call.urgency) == (
        "7 more updates in Mobile App",
        [SHOW_ALL_LABEL],
        1,
    )
    assert call.body == summary.body
    assert "\n" in call.body  # several lines survive the trip
    assert len(buttons) == 1
    args = run(emitted(toaster.history_requested, lambda: on_desktop.click(*buttons[0].center)))
    assert args == []
    on_desktop.wait_until_gone(window)


def test_toasts_shown_at_once_arrive_in_order_on_one_connection(
    make_toaster, on_desktop, run, qtbot
):
    """The app spawns one show() per toast; at once they must not open a D-Bus connection
    each, and aclose() closes the one they share."""
    toaster = make_toaster(None)
    toasts = [toast_for(n) for n in (71, 72, 73)]

    async def show_all() -> None:
        await asyncio.gather(*(toaster.show(toast) for toast in toasts))

    with on_desktop.monitor_notify() as monitor:
        run(show_all())
        calls = monitor.wait_for(lambda calls: len(calls) >= 3)
    assert [call.summary for call in calls] == [toast.title for toast in toasts]
    # One connection stays (for the buttons' signals); each show's short probe is gone.
    on_desktop.session.wait_until(
        lambda: len(on_desktop.connections_of(os.getpid())) == 1,
        what="this process to keep exactly one bus connection",
    )
    run(toaster.aclose())
    on_desktop.session.wait_until(
        lambda: on_desktop.connections_of(os.getpid()) == [],
        what="aclose() to close the bus connection",
    )


def test_withdrawing_closes_a_toast_read_elsewhere(make_toaster, on_desktop, run, qtbot):
    toaster = make_toaster(None)
    window, _ = show_and_find(toaster, toast_for(44), on_desktop, run)
    run(toaster.withdraw([44, 999]))  # 999 was never shown: nothing happens for it
    on_desktop.wait_until_gone(window)


# --- the fallback ---------------------------------------------------------------------------


def test_without_a_session_bus_the_balloon_is_used_and_logged_once(
    make_toaster, run, qtbot, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    tray = RecordingTray()
    toaster = make_toaster(tray)
    caplog.set_level(logging.DEBUG, logger="tray_app.ui.toasts")
    urgent = toast_for(50, priority="urgent", title=HOSTILE_TITLE, message="a & b")

    reasons: list[str] = []
    toaster.fallback_used.connect(reasons.append)
    run(toaster.show(urgent))
    assert len(reasons) == 1
    assert "FileNotFoundError" in reasons[0] or "No such file" in reasons[0], reasons
    assert not toaster.native_available
    title, body, icon = tray.balloons[-1]
    # Qt draws the balloon with labels that guess rich text: what they show is verbatim.
    assert shown_by_auto_text_label(title) == f"Urgent: {HOSTILE_TITLE}"
    assert shown_by_auto_text_label(body) == body == "Mobile App \u00b7 a & b"
    assert icon == QSystemTrayIcon.MessageIcon.Critical

    run(toaster.show(toast_for(52, priority="high")))
    title, _body, icon = tray.balloons[-1]
    assert (title, icon) == ("High: Task 52 moved to Done", QSystemTrayIcon.MessageIcon.Warning)
    run(toaster.show(toast_for(51, priority="low")))
    assert len(tray.balloons) == 3
    title, _body, icon = tray.balloons[-1]
    assert (title, icon) == ("Task 51 moved to Done", QSystemTrayIcon.MessageIcon.Information)
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "tray_app.ui.toasts"
    ]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("native notifications unavailable (")
    assert warnings[0].getMessage().endswith("): using the tray icon's balloon")

    # A click on the balloon opens the last toast's notification.
    args = run(emitted(toaster.open_requested, tray.messageClicked.emit))
    assert args == [51, "/projects/7/tasks/51"]


def test_a_bus_without_a_notification_server_falls_back_then_recovers(
    make_toaster, desktop, run, qtbot, monkeypatch, tmp_path
):
    """A real bus with no daemon: the balloon, and nothing sent to the bus. Once
    xfce4-notifyd starts on it, toasts go native again."""
    with DesktopSession(tmp_path / "session", timeout=WAIT) as session:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)
        tray = RecordingTray()
        toaster = make_toaster(tray, retry_after=0.0)
        fallbacks: list[str] = []
        toaster.fallback_used.connect(fallbacks.append)
        with NotifyMonitor(session.address, timeout=WAIT) as monitor:
            run(toaster.show(toast_for(60)))
            reasons = list(fallbacks)
            assert len(reasons) == 1
            assert "no notification server" in reasons[0]
            assert "ServiceUnknown" in reasons[0]
            assert [b[0] for b in tray.balloons] == ["Task 60 moved to Done"]

            start_notifyd(session, desktop.display)
            run(toaster.show(toast_for(61)))
            [call] = monitor.wait_for(lambda calls: len(calls) >= 1)
        assert call.summary == "Task 61 moved to Done"
        assert fallbacks == reasons  # no new fallback
        assert len(tray.balloons) == 1
        assert toaster.native_available
        run(toaster.close_all())


def test_without_a_tray_the_fallback_is_still_reported(
    make_toaster, run, qtbot, monkeypatch, tmp_path
):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    toaster = make_toaster(None)
    reasons: list[str] = []
    toaster.fallback_used.connect(reasons.append)
    run(toaster.show(summary_toast()))
    assert len(reasons) == 1
    assert reasons[0]
    run(toaster.close_all())  # nothing native to close: returns quietly


# --- a scripted server: a hang, a click on the body, a dismissal, a forgery ------------------


class ScriptedServer:
    """``fake_notifyd.py`` in ``mode`` on a private session bus of its own."""

    def __init__(self, session: DesktopSession, mode: str, record: Path) -> None:
        self.session = session
        self.record_path = record
        session.start_daemon(
            [sys.executable, str(FAKE_NOTIFYD), mode, str(record)],
            name="org.freedesktop.Notifications",
        )

    def calls(self, member: str | None = None) -> list[dict[str, Any]]:
        """The calls the server got so far (of ``member``), oldest first."""
        if not self.record_path.exists():
            return []
        lines = self.record_path.read_text("utf-8").splitlines()
        calls = [json.loads(line) for line in lines]
        return [c for c in calls if member is None or c["member"] == member]

    def connections_of(self, pid: int) -> list[str]:
        return bus_connections_of(self.session, pid)


@pytest.fixture
def scripted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], ScriptedServer]]:
    """``scripted(mode)``: a scripted server on a private bus this process joins."""
    with DesktopSession(tmp_path / "session", timeout=WAIT) as session:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)

        def start(mode: str) -> ScriptedServer:
            return ScriptedServer(session, mode, tmp_path / "calls.jsonl")

        yield start


async def settle(seconds: float = 0.5) -> None:
    """Let the loop serve what the bus delivers meanwhile."""
    await asyncio.sleep(seconds)


def test_a_hung_server_gives_the_balloon_after_the_timeout_and_the_loop_runs_meanwhile(
    make_toaster, scripted, run, qtbot, monkeypatch
):
    """A server that takes Notify and never answers: the toast goes to the balloon once
    the timeout is up, and the Qt event loop kept running all along (a timer ticked)."""
    monkeypatch.setattr(toasts, "NATIVE_TIMEOUT", 1.0)
    server = scripted("hang")
    tray = RecordingTray()
    toaster = make_toaster(tray)
    reasons: list[str] = []
    toaster.fallback_used.connect(reasons.append)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))

    timer.start()
    started = time.monotonic()
    run(toaster.show(toast_for(100)))
    elapsed = time.monotonic() - started
    timer.stop()

    assert reasons == ["no answer within 1 s"]
    assert [b[0] for b in tray.balloons] == ["Task 100 moved to Done"]
    assert not toaster.native_available
    assert 0.9 <= elapsed < 3.0
    assert len(server.calls("Notify")) == 1  # it hung on Notify itself
    # The loop ran while the call hung: ~50 ticks in the second, never a long gap.
    assert len(ticks) >= 25, len(ticks)
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.5


def test_what_a_notify_call_carries_on_the_wire(make_toaster, scripted, run, qtbot):
    """The spec's types (replaces_id uint32, urgency a byte), the default action where the
    server supports clicks (this one does, xfce4-notifyd not), the sound, the expiry."""
    server = scripted("quiet")
    toaster = make_toaster(None)
    run(toaster.show(toast_for(104, priority="urgent")))
    [call] = server.calls("Notify")
    assert call["signature"] == "susssasa{sv}i"
    app_name, replaces_id, icon, summary, body, actions, hints, expire = call["args"]
    assert (app_name, replaces_id, summary, expire) == (
        "Tray Notifier",
        0,
        "Urgent: Task 104 moved to Done",
        -1,
    )
    assert icon_file(NotifyCall("", 0, icon, "", "", (), {}, -1)) == (
        REPO / "resources" / "icons" / "tray-notifier_urgent-64.png"
    )
    assert body == "Mobile App \u00b7 Reviewed by bob"
    assert actions == ["default", "", "open", OPEN_LABEL, "mark-read", MARK_READ_LABEL]
    assert hints == {"urgency": ["y", 2], "sound-name": ["s", "message-new-instant"]}
    # A low one: urgency 0, and no sound (the toast rules' choice).
    run(toaster.show(toast_for(109, priority="low")))
    assert server.calls("Notify")[1]["args"][6] == {"urgency": ["y", 0]}
    # Asked once per connection, before the first toast.
    assert [c["member"] for c in server.calls()][:2] == ["GetCapabilities", "GetServerInformation"]


def test_a_click_on_the_toast_opens_its_notification(make_toaster, scripted, run, qtbot):
    server = scripted("click")
    toaster = make_toaster(None)
    marked: list[Any] = []
    toaster.mark_read_requested.connect(marked.append)

    async def show_and_wait() -> list[Any]:
        return await emitted(
            toaster.open_requested,
            lambda: asyncio.ensure_future(toaster.show(toast_for(101))),
        )

    assert run(show_and_wait()) == [101, "/projects/7/tasks/101"]
    assert marked == []
    run(settle())
    run(toaster.withdraw([101]))  # clicked, so closed: nothing left to close
    assert server.calls("CloseNotification") == []


def test_a_click_on_a_summary_toast_offers_the_history(make_toaster, scripted, run, qtbot):
    scripted("click")
    toaster = make_toaster(None)

    async def show_and_wait() -> list[Any]:
        return await emitted(
            toaster.history_requested,
            lambda: asyncio.ensure_future(toaster.show(summary_toast())),
        )

    assert run(show_and_wait()) == []


def test_a_toast_the_user_dismissed_is_not_closed_again(make_toaster, scripted, run, qtbot):
    server = scripted("dismiss")
    toaster = make_toaster(None)
    run(toaster.show(toast_for(102)))
    run(settle())  # NotificationClosed(1, dismissed) arrives
    run(toaster.withdraw([102]))
    run(toaster.close_all())
    assert server.calls("CloseNotification") == []


def test_withdraw_and_close_all_close_with_the_servers_ids(make_toaster, scripted, run, qtbot):
    server = scripted("quiet")
    toaster = make_toaster(None)
    for ident in (105, 106, 107):
        run(toaster.show(toast_for(ident)))
    run(toaster.withdraw([106, 999]))
    assert [(c["signature"], c["args"]) for c in server.calls("CloseNotification")] == [("u", [2])]
    run(toaster.close_all())
    closed = [c["args"][0] for c in server.calls("CloseNotification")]
    assert sorted(closed) == [1, 2, 3]


def test_an_action_signal_from_anyone_but_the_server_is_ignored(make_toaster, scripted, run, qtbot):
    """A forged ActionInvoked sent straight to this process (the bus routes a unicast
    signal whatever the match rules) opens nothing."""
    server = scripted("quiet")
    toaster = make_toaster(None)
    opened: list[Any] = []
    toaster.open_requested.connect(lambda *args: opened.append(args))
    run(toaster.show(toast_for(108)))
    [ours] = server.connections_of(os.getpid())
    subprocess.run(
        [
            "dbus-send",
            f"--bus={server.session.address}",
            "--type=signal",
            f"--dest={ours}",
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications.ActionInvoked",
            "uint32:1",
            "string:open",
        ],
        check=True,
        timeout=WAIT,
    )
    run(settle())
    assert opened == []


_MODULES_SCRIPT = """
import asyncio, json, sys
import qasync
from PySide6.QtWidgets import QApplication
import tray_app.ui.app  # everything the running app imports
from tray_app.toast_policy import Toast
from tray_app.ui.toasts import Toaster
from tray_app.ui.wakeups import WakeWatcher

app = QApplication([])

async def main():
    toaster = Toaster(None)
    watcher = WakeWatcher()
    await toaster.show(Toast("single", "Deploy finished", "Mobile App", "normal", 1, "/x", True))
    watching = await watcher.watch_sleep(bus_address=sys.argv[1])
    result = {
        "native": toaster.native_available,
        "watching": watching,
        "loaded": sorted(
            m for m in sys.modules if m.split(".")[0] in ("dbus_fast", "desktop_notifier")
        ),
    }
    watcher.stop()
    await toaster.aclose()
    return result

with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
    print(json.dumps(runner.run(main())))
"""


def test_the_linux_app_loads_neither_desktop_notifier_nor_dbus_fast(scripted, tmp_path):
    """The app's modules, a native toast and the sleep watch, in a process of their own:
    Qt's D-Bus module and jeepney carry them; desktop-notifier and dbus-fast stay out."""
    server = scripted("quiet")
    server.session.start_daemon([sys.executable, str(FAKE_LOGIND)], name="org.freedesktop.login1")
    result = subprocess.run(
        [sys.executable, "-c", _MODULES_SCRIPT, server.session.address],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "native": True,
        "watching": True,
        "loaded": [],
    }
    assert [c["args"][3] for c in server.calls("Notify")] == ["Deploy finished"]


def test_the_windows_and_macos_path_drives_desktop_notifier(scripted, run, qtbot):
    """DesktopNotifierNotifier, the Windows and macOS path, run here against
    desktop-notifier's own Linux backend: the toast goes out with its buttons, and a click
    on it comes back as the click key."""
    from tray_app.ui.native_toasts import CLICK, DesktopNotifierNotifier, NativeToast

    server = scripted("click")
    notifier = DesktopNotifierNotifier(app_name="Tray Notifier", app_icon=None)
    toast = NativeToast(
        title="Deploy finished",
        body="a & b",
        urgency="critical",
        buttons=(("open", OPEN_LABEL), ("mark-read", MARK_READ_LABEL)),
        icon="dialog-warning",
        sound=True,
    )

    async def send_and_wait() -> str:
        clicked: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_action(key: str) -> None:
            if not clicked.done():
                clicked.set_result(key)

        await notifier.send(toast, on_action)
        async with asyncio.timeout(WAIT):
            return await clicked

    async def disconnect() -> None:
        # desktop-notifier's D-Bus backend keeps its connection (Windows and macOS have
        # none to close, hence no aclose work): closed here for the test process.
        bus = notifier._notifier._backend.bus  # type: ignore[attr-defined]
        bus.disconnect()
        await bus.wait_for_disconnect()

    try:
        assert run(send_and_wait()) == CLICK
    finally:
        run(disconnect())
    [call] = server.calls("Notify")
    _app, _replaces, icon, summary, body, actions, hints, _expire = call["args"]
    assert (icon, summary, body) == ("dialog-warning", "Deploy finished", "a & b")
    assert actions[0] == "default"  # the buttons' keys are desktop-notifier's own
    assert actions[1::2] == ["", OPEN_LABEL, MARK_READ_LABEL]
    assert hints["urgency"] == ["y", 2]
