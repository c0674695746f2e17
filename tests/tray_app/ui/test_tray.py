"""The tray controller: icon, tooltip and menu driven through its real QActions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, QSize
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QTextDocument
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from tests.tray_app.conftest import stored_notification
from tray_app.attention import Silence, SilenceReason
from tray_app.net import ConnectionState, StateChange
from tray_app.ui.badge import TrayIconCache, TrayIconKey, TrayLook
from tray_app.ui.tray import (
    MAX_RECENT,
    ROW_SEPARATOR,
    TITLE_LIMIT,
    MenuNotification,
    TrayController,
    TrayState,
    connection_look,
    describe_connection,
    describe_transport,
    elide,
    menu_text,
    silence_line,
    sync_menu_actions,
    tooltip_text,
)

NOW = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
# Under QT_QPA_PLATFORM=offscreen there is no tray and no real popup; Qt says so in
# warnings that describe the test platform, not a fault in the code under test.
OFFSCREEN_TRAY = pytest.mark.qt_log_ignore(
    r"No such signal QPlatformNativeInterface::systemTrayWindowChanged",
    r"This plugin does not support",
)


class Clock:
    """A settable clock, so ages and do-not-disturb checks do not depend on the day."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def notification(
    ident: int, title: str = "Build failed", *, minutes: float = 5, project: str | None = "Mobile"
) -> MenuNotification:
    return MenuNotification(
        id=ident,
        title=title,
        project=project,
        created_at=NOW - timedelta(minutes=minutes),
        url=f"https://example.test/n/{ident}",
    )


def state(**changes: object) -> TrayState:
    """A tray state; ``dnd_until`` stands for a do-not-disturb silence ending then."""
    values: dict[str, object] = {
        "connection": "Connected",
        "look": TrayLook.CONNECTED,
        "username": "alice",
        "unread": 0,
        "recent": (),
        "silence": None,
    }
    if "dnd_until" in changes:
        until = changes.pop("dnd_until")
        values["silence"] = None if until is None else Silence("dnd", until)  # type: ignore[arg-type]
    values.update(changes)
    return TrayState(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tray(qtbot: QtBot, clock: Clock) -> Iterator[TrayController]:
    controller = TrayController(clock=clock)
    yield controller
    controller.hide()
    controller.deleteLater()


def test_a_tray_built_with_its_first_state_draws_that_icon_only(
    qtbot: QtBot, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's start builds the tray with its starting state: one icon is drawn (twelve
    pixmaps, before the icon is on the bus), not a default one and then the right one."""
    drawn: list[TrayIconKey] = []
    draw = TrayIconCache.icon

    def recording(cache: TrayIconCache, key: TrayIconKey) -> QIcon:
        drawn.append(key)
        return draw(cache, key)

    monkeypatch.setattr(TrayIconCache, "icon", recording)
    state = TrayState.starting(username="alice", unread=7)
    controller = TrayController(clock=clock, state=state)
    try:
        assert controller.state == state
        assert [(key.badge, key.look) for key in drawn] == [("7", TrayLook.OFFLINE)]
    finally:
        controller.deleteLater()


def texts(menu: QMenu) -> list[str]:
    return [action.text() for action in menu.actions() if not action.isSeparator()]


def action(menu: QMenu, prefix: str) -> QAction:
    matches = [a for a in menu.actions() if a.text().startswith(prefix)]
    assert len(matches) == 1, (prefix, texts(menu))
    return matches[0]


def submenu(menu: QMenu, prefix: str) -> QMenu:
    """The submenu whose title starts with ``prefix`` (a line of text may start alike)."""
    found = [a.menu() for a in menu.actions() if a.menu() and a.text().startswith(prefix)]
    assert len(found) == 1, (prefix, texts(menu))
    assert isinstance(found[0], QMenu)
    return found[0]


def local_clock(moment: datetime) -> str:
    """``moment`` as this computer's clock shows it, "16:00"."""
    return moment.astimezone().strftime("%H:%M")


def test_tooltip_says_the_count_and_the_state(tray: TrayController) -> None:
    tray.set_state(state(unread=3))
    assert tray.tray_icon.toolTip() == "Tray Notifier — 3 unread — Connected"
    tray.set_state(state(unread=0, connection="Reconnecting in 12 s", look=TrayLook.OFFLINE))
    assert tray.tray_icon.toolTip() == "Tray Notifier — no unread — Reconnecting in 12 s"


def test_the_starting_state_is_greyed_with_the_last_known_count() -> None:
    now = datetime.now(UTC)
    starting = TrayState.starting(username="alice", unread=3)
    assert starting.look is TrayLook.OFFLINE
    assert tooltip_text(starting, now) == "Tray Notifier — 3 unread — Starting…"
    unknown = TrayState.starting(username="alice", unread=None)
    assert tooltip_text(unknown, now) == "Tray Notifier — no unread — Starting…"
    nobody = TrayState.starting(username=None, unread=None)
    assert nobody.look is TrayLook.LOGIN_REQUIRED
    assert tooltip_text(nobody, now) == "Tray Notifier — no unread — Not logged in"


def test_tooltip_says_why_pop_ups_are_held_back() -> None:
    until = NOW + timedelta(hours=1)
    active = state(unread=2, look=TrayLook.DND, dnd_until=until)
    local = until.astimezone().strftime("%H:%M")
    assert tooltip_text(active, NOW) == (
        f"Tray Notifier — 2 unread — Connected — Do not disturb until {local}"
    )
    forever = state(unread=2, look=TrayLook.DND, silence=Silence("dnd", None))
    assert tooltip_text(forever, NOW).endswith("Do not disturb (until you turn it off)")
    quiet = state(look=TrayLook.DND, silence=Silence("quiet_hours", until))
    assert tooltip_text(quiet, NOW).endswith(f"Quiet hours until {local}")
    assert "disturb" not in tooltip_text(state(unread=2), NOW)


def test_header_shows_user_and_state_and_is_not_clickable(tray: TrayController) -> None:
    tray.set_state(state(connection="Offline", look=TrayLook.OFFLINE))
    header = tray.menu.actions()[0]
    assert header.text() == "alice · Offline"
    assert not header.isEnabled()
    assert not header.icon().isNull()  # the status dot
    tray.set_state(state(username=None, connection="Login required", look=TrayLook.OFFLINE))
    assert tray.menu.actions()[0].text() == "Login required"


def test_empty_state_and_fixed_entries(tray: TrayController) -> None:
    tray.set_state(state())
    assert texts(tray.menu) == [
        "alice · Connected",
        "No unread notifications",
        "Mark all read",
        "History…",
        "Who's online…",
        "Do not disturb",
        "Settings…",
        "Log out",
        "Quit",
    ]
    assert not action(tray.menu, "No unread").isEnabled()
    assert not action(tray.menu, "Mark all read").isEnabled()


def test_recent_unread_rows_show_title_project_and_age(tray: TrayController) -> None:
    tray.set_state(
        state(
            unread=3,
            recent=(
                notification(1, "Deploy failed", minutes=5, project="Mobile App"),
                notification(2, "Carol assigned you a task", minutes=125, project=None),
                notification(3, "Milestone due", minutes=60 * 20, project="Web"),
            ),
        )
    )
    rows = texts(tray.menu)[1:4]
    assert rows == [
        "Deploy failed  —  Mobile App · 5 min",
        "Carol assigned you a task  —  2 h",
        "Milestone due  —  Web · yesterday",
    ]
    assert action(tray.menu, "Mark all read").isEnabled()


def test_clicking_a_row_opens_that_notification(qtbot: QtBot, tray: TrayController) -> None:
    big_id = 2**40 + 7  # ids are 64-bit
    tray.set_state(state(unread=2, recent=(notification(big_id, "First"), notification(9, "B"))))
    with qtbot.waitSignal(tray.notification_opened, timeout=1000) as opened:
        action(tray.menu, "First").trigger()
    assert opened.args == [big_id]


def test_each_notification_is_listed_once(tray: TrayController) -> None:
    """No second list of the same rows ("Mark read ▸"): a row opens and marks read, and
    "Mark all read" clears them all."""
    tray.set_state(state(unread=2, recent=(notification(4, "First"), notification(5, "Second"))))
    submenus = [a.menu() for a in tray.menu.actions() if a.menu() is not None]
    assert [m.title() for m in submenus if isinstance(m, QMenu)] == ["Do not disturb"]
    rows = [t.split(ROW_SEPARATOR)[0] for t in texts(tray.menu) if ROW_SEPARATOR in t]
    assert rows == ["First", "Second"]
    assert texts(tray.menu)[1:4] == [
        f"First{ROW_SEPARATOR}Mobile · 5 min",
        f"Second{ROW_SEPARATOR}Mobile · 5 min",
        "Mark all read",
    ]


def test_mark_all_read(qtbot: QtBot, tray: TrayController) -> None:
    tray.set_state(state(unread=4, recent=(notification(1),)))
    with qtbot.waitSignal(tray.mark_all_read_requested, timeout=1000):
        action(tray.menu, "Mark all read").trigger()


@pytest.mark.parametrize(
    ("prefix", "signal"),
    [
        ("History…", "history_requested"),
        ("Who's online…", "presence_requested"),
        ("Settings…", "settings_requested"),
        ("Log out", "logout_requested"),
        ("Quit", "quit_requested"),
    ],
)
def test_each_entry_asks_for_its_window_or_action(
    qtbot: QtBot, tray: TrayController, prefix: str, signal: str
) -> None:
    tray.set_state(state(unread=1, recent=(notification(1),)))
    with qtbot.waitSignal(getattr(tray, signal), timeout=1000):
        action(tray.menu, prefix).trigger()


def test_more_unread_than_listed_points_to_history(qtbot: QtBot, tray: TrayController) -> None:
    recent = tuple(notification(i, f"Item {i}", minutes=i) for i in range(1, 15))
    tray.set_state(state(unread=25, recent=recent))
    rows = [text for text in texts(tray.menu) if text.startswith("Item ")]
    assert len(rows) == MAX_RECENT
    assert rows[0].startswith("Item 1  —  ")
    more = action(tray.menu, "15 more unread")
    assert more.text() == "15 more unread in History…"
    with qtbot.waitSignal(tray.history_requested, timeout=1000):
        more.trigger()


@pytest.mark.parametrize(
    ("dnd_until", "checked", "title"),
    [
        (None, "Off", "Do not disturb"),
        (NOW + timedelta(hours=1), "For 1 hour", "Do not disturb (until 16:00)"),
        (
            datetime(2025, 3, 15, 8, 0, tzinfo=UTC),
            "Until tomorrow",
            "Do not disturb (until tomorrow 08:00)",
        ),
    ],
)
def test_do_not_disturb_shows_its_state(
    tray: TrayController, dnd_until: datetime | None, checked: str, title: str
) -> None:
    tray.set_state(state(look=TrayLook.DND, dnd_until=dnd_until))
    dnd = submenu(tray.menu, "Do not disturb")
    assert dnd.title() == title
    assert [a.text() for a in dnd.actions() if a.isChecked()] == [checked]


def test_do_not_disturb_until_turned_off_shows_its_state(tray: TrayController) -> None:
    tray.set_state(state(look=TrayLook.DND, silence=Silence("dnd", None)))
    dnd = submenu(tray.menu, "Do not disturb")
    assert dnd.title() == "Do not disturb (on)"
    assert [a.text() for a in dnd.actions() if a.isChecked()] == ["Until I turn it off"]


@pytest.mark.parametrize(
    ("entry", "word"),
    [
        ("For 1 hour", "1h"),
        ("Until tomorrow", "tomorrow"),
        ("Until I turn it off", "on"),
        ("Off", "off"),
    ],
)
def test_do_not_disturb_choices_are_requested(
    qtbot: QtBot, tray: TrayController, entry: str, word: str
) -> None:
    tray.set_state(state(dnd_until=NOW + timedelta(minutes=30)))
    with qtbot.waitSignal(tray.dnd_requested, timeout=1000) as requested:
        action(submenu(tray.menu, "Do not disturb"), entry).trigger()
    assert requested.args == [word]


# --- the head of the menu: silence and reconnecting --------------------------------------


def test_do_not_disturb_is_named_at_the_head_with_one_click_to_end_it(
    qtbot: QtBot, tray: TrayController
) -> None:
    until = NOW + timedelta(hours=1)
    tray.set_state(state(look=TrayLook.DND, dnd_until=until, unread=1, recent=(notification(1),)))
    assert texts(tray.menu)[:4] == [
        "alice · Connected",
        f"Do not disturb until {local_clock(until)}",
        "Turn off do not disturb",
        f"Build failed{ROW_SEPARATOR}Mobile · 5 min",
    ]
    line = tray.menu.actions()[1]
    assert not line.isEnabled()
    assert not line.icon().isNull()  # the moon the tray icon carries
    end = action(tray.menu, "Turn off do not disturb")
    assert end.isEnabled()
    assert end.toolTip()  # what it does, in plain words
    assert "<" not in end.toolTip()
    with (
        qtbot.waitSignal(tray.dnd_requested, timeout=1000) as requested,
        qtbot.assertNotEmitted(tray.quiet_hours_end_requested),
    ):
        end.trigger()
    assert requested.args == ["off"]
    # The submenu is still there for the other choices.
    assert (
        submenu(tray.menu, "Do not disturb").title()
        == f"Do not disturb (until {local_clock(until)})"
    )


def test_do_not_disturb_until_turned_off_is_named_plainly(tray: TrayController) -> None:
    tray.set_state(state(look=TrayLook.DND, silence=Silence("dnd", None)))
    assert texts(tray.menu)[1:3] == [
        "Do not disturb until you turn it off",
        "Turn off do not disturb",
    ]


def test_quiet_hours_are_named_at_the_head_with_one_click_to_end_them(
    qtbot: QtBot, tray: TrayController
) -> None:
    until = NOW + timedelta(hours=3)
    tray.set_state(state(look=TrayLook.QUIET_HOURS, silence=Silence("quiet_hours", until)))
    assert texts(tray.menu)[1:3] == [
        f"Quiet hours until {local_clock(until)}",
        "Turn off quiet hours",
    ]
    assert "Turn off do not disturb" not in texts(tray.menu)
    # Do-not-disturb is off: its submenu says so.
    dnd = submenu(tray.menu, "Do not disturb")
    assert [a.text() for a in dnd.actions() if a.isChecked()] == ["Off"]
    end = action(tray.menu, "Turn off quiet hours")
    with (
        qtbot.waitSignal(tray.quiet_hours_end_requested, timeout=1000),
        qtbot.assertNotEmitted(tray.dnd_requested),
    ):
        end.trigger()


def test_quiet_hours_set_by_it_are_named_but_not_offered_to_turn_off(
    tray: TrayController,
) -> None:
    until = NOW + timedelta(hours=3)
    tray.set_state(
        state(
            look=TrayLook.QUIET_HOURS,
            silence=Silence("quiet_hours", until),
            quiet_hours_locked=True,
        )
    )
    assert texts(tray.menu)[1:3] == [
        f"Quiet hours until {local_clock(until)}",
        "No unread notifications",
    ]
    assert "Turn off quiet hours" not in texts(tray.menu)
    made = TrayState.of(
        connection=StateChange(ConnectionState.CONNECTED),
        username="alice",
        silence=Silence("quiet_hours", until),
        quiet_hours_locked=True,
    )
    assert made.quiet_hours_locked


def test_the_silence_lines_go_when_the_silence_ends(tray: TrayController) -> None:
    tray.set_state(state(look=TrayLook.DND, dnd_until=NOW + timedelta(hours=1)))
    icon_of_dnd = tray.menu.actions()[1].icon().cacheKey()
    tray.set_state(state(look=TrayLook.QUIET_HOURS, silence=Silence("quiet_hours", NOW)))
    assert texts(tray.menu)[2] == "Turn off quiet hours"
    assert tray.menu.actions()[1].icon().cacheKey() != icon_of_dnd  # the clock now
    tray.set_state(state())
    assert not [t for t in texts(tray.menu) if "until" in t or t.startswith("Turn off")]
    assert texts(tray.menu)[:2] == ["alice · Connected", "No unread notifications"]


def test_silence_line_words() -> None:
    until = NOW + timedelta(minutes=90)
    assert silence_line(Silence("dnd", until), NOW) == f"Do not disturb until {local_clock(until)}"
    assert silence_line(Silence("dnd", None), NOW) == "Do not disturb until you turn it off"
    assert silence_line(Silence("quiet_hours", until), NOW) == (
        f"Quiet hours until {local_clock(until)}"
    )


def test_reconnect_now_shows_only_while_the_connection_is_down(
    qtbot: QtBot, tray: TrayController
) -> None:
    tray.set_state(state())
    assert "Reconnect now" not in texts(tray.menu)
    tray.set_state(
        state(connection="Reconnecting in 12 s", look=TrayLook.OFFLINE, reconnectable=True)
    )
    assert texts(tray.menu)[:2] == ["alice · Reconnecting in 12 s", "Reconnect now"]
    reconnect = action(tray.menu, "Reconnect now")
    assert reconnect.isEnabled()
    assert reconnect.toolTip()  # what it does, in plain words
    assert "<" not in reconnect.toolTip()
    with qtbot.waitSignal(tray.reconnect_requested, timeout=1000):
        reconnect.trigger()
    tray.set_state(state())
    assert "Reconnect now" not in texts(tray.menu)


def test_the_icon_shows_which_silence_holds(tray: TrayController) -> None:
    def icon_for(look: TrayLook) -> QImage:
        tray.set_state(state(look=look, unread=3))
        return tray.tray_icon.icon().pixmap(QSize(22, 22)).toImage()

    connected, dnd, quiet = (
        icon_for(look) for look in (TrayLook.CONNECTED, TrayLook.DND, TrayLook.QUIET_HOURS)
    )
    for first, second in ((connected, dnd), (connected, quiet), (dnd, quiet)):
        differing = sum(
            first.pixel(x, y) != second.pixel(x, y)
            for y in range(first.height())
            for x in range(first.width())
        )
        assert differing > 22
    for image in (connected, dnd, quiet):
        assert _red_pixels(image) > 20  # the count stays on the badge either way


# --- the tooltip does not cover the open menu -------------------------------------------------


def test_the_tooltip_is_empty_while_the_menu_is_open(tray: TrayController) -> None:
    tray.set_state(state(unread=3))
    assert tray.tray_icon.toolTip() == "Tray Notifier — 3 unread — Connected"
    tray.menu.aboutToShow.emit()
    assert tray.tray_icon.toolTip() == ""
    # What changes meanwhile is kept for later, not shown over the menu.
    tray.set_state(state(unread=4))
    assert tray.tray_icon.toolTip() == ""
    tray.menu.aboutToHide.emit()
    assert tray.tray_icon.toolTip() == "Tray Notifier — 4 unread — Connected"


def test_a_click_in_the_menu_brings_the_tooltip_back(qtbot: QtBot, tray: TrayController) -> None:
    """A panel that never says the menu closed still closes it on a click."""
    tray.set_state(state(unread=3, recent=(notification(1, "One"),)))
    tray.menu.aboutToShow.emit()
    assert tray.tray_icon.toolTip() == ""
    with qtbot.waitSignal(tray.history_requested, timeout=1000):
        action(tray.menu, "History…").trigger()
    assert tray.tray_icon.toolTip() == "Tray Notifier — 3 unread — Connected"


@OFFSCREEN_TRAY
def test_the_tooltip_is_empty_while_the_menu_is_really_shown(
    qtbot: QtBot, tray: TrayController
) -> None:
    tray.set_state(state(unread=2, recent=(notification(1, "One"),)))
    tray.menu.popup(QPoint(0, 0))
    qtbot.waitUntil(tray.menu.isVisible, timeout=2000)
    assert tray.tray_icon.toolTip() == ""
    tray.menu.hide()
    qtbot.waitUntil(lambda: not tray.menu.isVisible(), timeout=2000)
    assert tray.tray_icon.toolTip() == "Tray Notifier — 2 unread — Connected"


def test_login_required_offers_log_in_first(qtbot: QtBot, tray: TrayController) -> None:
    tray.set_state(state(look=TrayLook.LOGIN_REQUIRED, connection="Login required"))
    log_in = tray.menu.actions()[1]
    assert log_in.text() == "Log in…"
    assert log_in.isEnabled()
    assert log_in.font().bold()
    with qtbot.waitSignal(tray.login_requested, timeout=1000):
        log_in.trigger()
    tray.set_state(state())
    assert "Log in…" not in texts(tray.menu)


def test_left_click_opens_history_and_right_click_does_not(
    qtbot: QtBot, tray: TrayController
) -> None:
    with qtbot.waitSignal(tray.history_requested, timeout=1000):
        tray.tray_icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    with qtbot.assertNotEmitted(tray.history_requested):
        tray.tray_icon.activated.emit(QSystemTrayIcon.ActivationReason.Context)
    assert tray.tray_icon.contextMenu() is tray.menu


def test_text_is_plain_ampersands_and_markup_stay_literal(tray: TrayController) -> None:
    tray.set_state(
        state(
            unread=2,
            username="r&d",
            recent=(
                notification(1, "R&D <b>x</b><img src=x>", project="Q&A"),
                notification(2, "line one\nline\ttwo"),
            ),
        )
    )
    shown = texts(tray.menu)
    assert shown[0] == "r&&d · Connected"  # Qt shows "&&" as one "&", no mnemonic
    assert shown[1] == "R&&D <b>x</b><img src=x>  —  Q&&A · 5 min"
    assert shown[2].startswith("line one line two  —  ")
    # Qt renders a tooltip as rich text when it looks like HTML: the title must come
    # back out of the tooltip exactly as it went in, tags included.
    tooltip = QTextDocument()
    tooltip.setHtml(action(tray.menu, "R&&D").toolTip())
    assert tooltip.toPlainText() == "R&D <b>x</b><img src=x>"


def test_long_titles_are_elided_with_the_full_title_in_the_tooltip(tray: TrayController) -> None:
    title = "A very long notification title that keeps going " * 3
    tray.set_state(state(unread=1, recent=(notification(1, title),)))
    row = action(tray.menu, "A very long")
    shown_title = row.text().split(ROW_SEPARATOR)[0]
    assert len(shown_title) <= TITLE_LIMIT
    assert shown_title.endswith("…")
    document = QTextDocument()
    document.setHtml(row.toolTip())
    assert document.toPlainText() == title.strip()
    assert tray.menu.toolTipsVisible()


@pytest.mark.parametrize(
    ("text", "limit", "result"),
    [("short", 10, "short"), ("exactly10!", 10, "exactly10!"), ("a b  c\n d", 20, "a b c d")],
)
def test_elide(text: str, limit: int, result: str) -> None:
    assert elide(text, limit) == result


def test_elide_cuts_with_an_ellipsis() -> None:
    assert elide("abcdefghijkl", 6) == "abcde…"
    assert menu_text("a&b&&c") == "a&&b&&&&c"


def test_a_negative_unread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        state(unread=-1)


def _red_pixels(image: QImage) -> int:
    return sum(
        1
        for y in range(image.height())
        for x in range(image.width())
        if (c := image.pixelColor(x, y)).red() > 170 and c.green() < 90 and c.alpha() > 200
    )


def test_icon_shows_the_badge_and_is_only_redrawn_when_it_changes(tray: TrayController) -> None:
    tray.set_state(state(unread=0))
    assert _red_pixels(tray.tray_icon.icon().pixmap(QSize(22, 22)).toImage()) == 0
    tray.set_state(state(unread=3))
    badged = tray.tray_icon.icon()
    assert _red_pixels(badged.pixmap(QSize(22, 22)).toImage()) > 20
    tray.set_state(state(unread=3, connection="Connected again", recent=(notification(1),)))
    assert tray.tray_icon.icon().cacheKey() == badged.cacheKey()
    tray.set_state(state(unread=3, look=TrayLook.OFFLINE))
    assert tray.tray_icon.icon().cacheKey() != badged.cacheKey()
    assert _red_pixels(tray.tray_icon.icon().pixmap(QSize(22, 22)).toImage()) == 0


def test_opening_the_menu_refreshes_the_ages(tray: TrayController, clock: Clock) -> None:
    tray.set_state(state(unread=1, recent=(notification(1, "Ping", minutes=5),)))
    assert action(tray.menu, "Ping").text().endswith("5 min")
    clock.now = NOW + timedelta(hours=3)
    tray.menu.aboutToShow.emit()
    assert action(tray.menu, "Ping").text().endswith("3 h")


def _live_actions(tray: TrayController) -> int:
    # Deleted-later rows only go away when the event loop handles DeferredDelete.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return len(tray.findChildren(QAction))


def test_set_state_rebuilds_without_leaking_actions(tray: TrayController) -> None:
    recent = tuple(notification(i, f"Item {i}") for i in range(1, 11))
    full = state(unread=12, recent=recent, dnd_until=NOW + timedelta(hours=1))
    tray.set_state(full)
    menu_count = len(tray.menu.actions())
    live = _live_actions(tray)
    for step in range(max(10, int(100 * SCALE))):
        # Alternate between shapes, so rows really are dropped and made again, and the
        # head's entries come and go.
        tray.set_state(
            state(
                unread=step % 3,
                recent=recent[: step % 4],
                silence=Silence("quiet_hours", NOW + timedelta(hours=2)) if step % 2 else None,
                reconnectable=bool(step % 3),
            )
        )
        tray.set_state(full)
    assert len(tray.menu.actions()) == menu_count
    assert _live_actions(tray) == live


def test_a_request_that_updates_the_state_at_once_is_safe(
    qtbot: QtBot, tray: TrayController
) -> None:
    """The lead may answer "mark read" synchronously with a new state: the row that was
    triggered is then dropped while its signal is still being delivered."""
    tray.set_state(state(unread=2, recent=(notification(1, "One"), notification(2, "Two"))))
    tray.notification_opened.connect(
        lambda ident: tray.set_state(state(unread=1, recent=(notification(2, "Two"),)))
    )
    row = action(tray.menu, "One")
    with qtbot.waitSignal(tray.notification_opened, timeout=1000):
        row.trigger()
    _live_actions(tray)
    assert [t.split(ROW_SEPARATOR)[0] for t in texts(tray.menu)][1] == "Two"


@OFFSCREEN_TRAY
def test_show_and_hide(tray: TrayController) -> None:
    tray.show()
    assert tray.tray_icon.isVisible()
    tray.hide()
    assert not tray.tray_icon.isVisible()


@OFFSCREEN_TRAY
def test_the_menu_renders(qtbot: QtBot, tray: TrayController, tmp_path: Path) -> None:
    tray.set_state(
        state(
            unread=12,
            recent=(
                notification(1, "Build #1432 failed on main: checkout flow timed out", minutes=5),
                notification(2, "Carol assigned you “Fix login redirect”", minutes=130),
            ),
        )
    )
    tray.menu.popup(QPoint(0, 0))
    qtbot.waitUntil(tray.menu.isVisible, timeout=2000)
    image = tray.menu.grab().toImage()
    tray.menu.hide()
    path = tmp_path / "tray-menu.png"
    assert image.save(str(path))
    assert image.width() > 250
    assert image.height() > 200
    colours = {image.pixel(x, y) for y in range(image.height()) for x in range(image.width())}
    assert len(colours) > 20  # text, separators, the status dot: not a blank rectangle
    green = QColor("#2eb67d").rgb()
    assert green in colours


class MenuChanges(QObject):
    """Counts what Qt tells a menu's platform side (over D-Bus on Linux): entries added,
    removed or changed. Each is a signal to the panel, which then reads the menu again."""

    def __init__(self, *menus: QMenu) -> None:
        super().__init__()
        self.count = 0
        for menu in menus:
            menu.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # Qt names it
        if event.type() in (
            QEvent.Type.ActionAdded,
            QEvent.Type.ActionRemoved,
            QEvent.Type.ActionChanged,
        ):
            self.count += 1
        return False


def test_the_same_state_again_changes_nothing(tray: TrayController) -> None:
    recent = tuple(notification(i, f"Item {i}") for i in range(1, 11))
    full = state(unread=12, recent=recent, dnd_until=NOW + timedelta(hours=1))
    tray.set_state(full)
    icon = tray.tray_icon.icon().cacheKey()
    changes = MenuChanges(tray.menu, submenu(tray.menu, "Do not disturb"))
    tray.set_state(state(unread=12, recent=recent, dnd_until=NOW + timedelta(hours=1)))
    assert changes.count == 0
    tray.menu.aboutToShow.emit()  # brought up to date as it opens: nothing moved on
    assert changes.count == 0
    assert tray.tray_icon.icon().cacheKey() == icon


def test_a_new_notification_moves_the_list_in_place(tray: TrayController) -> None:
    """The rows still listed keep their entries; the new one goes in at the top and the
    oldest drops out: a handful of changes for the panel, not the whole menu again."""
    recent = tuple(notification(i, f"Item {i}", minutes=i) for i in range(1, 11))
    tray.set_state(state(unread=10, recent=recent))
    kept = {a.text().split(ROW_SEPARATOR)[0]: a for a in tray.menu.actions()}["Item 1"]
    changes = MenuChanges(tray.menu)
    newest = notification(11, "Item 11", minutes=0)
    tray.set_state(state(unread=11, recent=(newest, *recent[:9])))
    rows = [t.split(ROW_SEPARATOR)[0] for t in texts(tray.menu) if t.startswith("Item ")]
    assert rows == ["Item 11", *(f"Item {i}" for i in range(1, 10))]
    assert action(tray.menu, "Item 1 ") is kept
    assert action(tray.menu, "1 more unread").text() == "1 more unread in History…"
    # The new row in, the oldest out, and the "more" entry in (it was not needed before);
    # the whole menu again would be some forty.
    assert changes.count <= 4, changes.count


def test_an_age_that_moves_on_changes_only_its_row(tray: TrayController, clock: Clock) -> None:
    recent = (notification(1, "Fresh", minutes=0.5), notification(2, "Older", minutes=200))
    tray.set_state(state(unread=2, recent=recent))
    assert action(tray.menu, "Fresh").text().endswith("now")
    changes = MenuChanges(tray.menu)
    clock.now = NOW + timedelta(minutes=2)
    tray.menu.aboutToShow.emit()
    assert action(tray.menu, "Fresh").text().endswith("2 min")
    assert action(tray.menu, "Older").text().endswith("3 h")  # unchanged: 3 h either way
    assert changes.count == 1  # "Fresh" alone


def test_a_notification_listed_again_gets_its_own_entries(
    qtbot: QtBot, tray: TrayController
) -> None:
    tray.set_state(state(unread=2, recent=(notification(1, "One"), notification(2, "Two"))))
    tray.set_state(state(unread=1, recent=(notification(2, "Two"),)))
    tray.set_state(state(unread=2, recent=(notification(2, "Two"), notification(1, "One"))))
    assert [t.split(ROW_SEPARATOR)[0] for t in texts(tray.menu)[1:3]] == ["Two", "One"]
    with qtbot.waitSignal(tray.notification_opened, timeout=1000) as opened:
        action(tray.menu, "One").trigger()
    assert opened.args == [1]
    with qtbot.waitSignal(tray.notification_opened, timeout=1000) as opened:
        action(tray.menu, "Two").trigger()
    assert opened.args == [2]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("abcde", "abcde"),
        ("abcde", "xabcd"),
        ("abcde", "edcba"),
        ("abc", ""),
        ("", "abc"),
        ("abcde", "acxe"),
        ("abcd", "dabc"),
    ],
)
def test_sync_menu_actions_reaches_the_wanted_order(
    qapp: QApplication, before: str, after: str
) -> None:
    menu = QMenu()
    actions = {name: QAction(name, menu) for name in "abcdex"}
    for name in before:
        menu.addAction(actions[name])
    changes = MenuChanges(menu)
    sync_menu_actions(menu, [actions[name] for name in after])
    assert "".join(a.text() for a in menu.actions()) == after
    if before == after:
        assert changes.count == 0
    # Never more than taking everything out and putting everything back in.
    assert changes.count <= len(before) + len(after)


# --- what the app shows --------------------------------------------------------------------


def test_the_state_of_nobody_logged_in_shows_none_of_an_account() -> None:
    state = TrayState.of(
        connection=StateChange(ConnectionState.CONNECTED),
        username=None,
        unread=4,
        recent=[stored_notification(1)],
        silence=Silence("dnd", None),
    )
    assert state == TrayState(
        connection="Not logged in", look=TrayLook.LOGIN_REQUIRED, username=None, unread=0
    )


@pytest.mark.parametrize(
    ("change", "silence", "words", "look", "reconnectable"),
    [
        (StateChange(ConnectionState.CONNECTED), None, "Connected", TrayLook.CONNECTED, False),
        (StateChange(ConnectionState.CONNECTED), "dnd", "Connected", TrayLook.DND, False),
        (
            StateChange(ConnectionState.CONNECTED),
            "quiet_hours",
            "Connected",
            TrayLook.QUIET_HOURS,
            False,
        ),
        (StateChange(ConnectionState.CONNECTING), "dnd", "Connecting…", TrayLook.OFFLINE, False),
        (
            StateChange(ConnectionState.RECONNECTING),
            None,
            "Reconnecting…",
            TrayLook.OFFLINE,
            True,
        ),
        (
            StateChange(ConnectionState.OFFLINE),
            "quiet_hours",
            "Offline",
            TrayLook.OFFLINE,
            True,
        ),
        (
            StateChange(ConnectionState.LOGIN_REQUIRED),
            "dnd",
            "Login required",
            TrayLook.LOGIN_REQUIRED,
            False,
        ),
        (StateChange(ConnectionState.STOPPED), None, "Not connected", TrayLook.OFFLINE, False),
    ],
)
def test_the_state_of_an_account_says_its_connection(
    change: StateChange,
    silence: SilenceReason | None,
    words: str,
    look: TrayLook,
    reconnectable: bool,
) -> None:
    held = None if silence is None else Silence(silence, NOW)
    state = TrayState.of(
        connection=change,
        username="alice",
        unread=2,
        recent=[stored_notification(2), stored_notification(1)],
        silence=held,
    )
    assert (state.connection, state.look, state.username, state.unread) == (
        words,
        look,
        "alice",
        2,
    )
    assert state.silence == held  # the tooltip and the menu name it, offline too
    assert state.reconnectable is reconnectable
    assert connection_look(change.state, silence=silence) is look
    assert [item.id for item in state.recent] == [2, 1]
    assert state.recent[0] == MenuNotification(
        id=2, title="Build 2 failed", project="Mobile App", created_at=NOW, url="/projects/2/"
    )


def test_a_retry_is_counted_down_in_seconds() -> None:
    change = StateChange(ConnectionState.RECONNECTING, next_attempt_at=1000.0)
    assert describe_connection(change, now=988.4) == "Reconnecting in 12 s"
    assert describe_connection(change, now=999.8) == "Reconnecting…"
    assert describe_connection(change, now=1005.0) == "Reconnecting…"


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (None, "Connected"),
        (
            "HTTP fallback: WebSockets are blocked on this network",
            "Connected (HTTP fallback: WebSockets are blocked on this network)",
        ),
        (
            "HTTP streaming, set by your administrator",
            "Connected (HTTP streaming, set by your administrator)",
        ),
    ],
)
def test_the_connection_names_the_http_fallback(reason: str | None, words: str) -> None:
    change = StateChange(ConnectionState.CONNECTED, fallback_reason=reason)
    assert describe_connection(change) == words
    assert TrayState.of(connection=change, username="alice").connection == words
    # The settings window names the transport either way.
    expected = words if reason else "Connected over WebSocket"
    assert describe_transport(change) == expected


def test_the_transport_is_named_only_while_connected() -> None:
    change = StateChange(ConnectionState.RECONNECTING, next_attempt_at=1000.0)
    assert describe_transport(change, now=990.0) == "Reconnecting in 10 s"
