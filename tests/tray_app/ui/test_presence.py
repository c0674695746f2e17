"""The Who's online window: its model, ordering, live changes and signals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from tray_app.net.protocol import PresenceMember
from tray_app.ui.presence import (
    LOADING_TEXT,
    NO_MEMBERS_TEXT,
    NO_PROJECTS_TEXT,
    STATUS_COLOURS,
    MemberView,
    PresenceModel,
    PresenceRole,
    PresenceWindow,
    describe_presence,
    last_seen_from_epoch,
    member_from_protocol,
    status_icon,
)

# The offscreen platform says this whenever a top-level window is shown; it is not a fault.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
HTML = "<b>x</b><img src=x>"
PROJECTS = [(1, "Mobile App"), (2, "Website Redesign")]


def clock() -> datetime:
    return NOW


def member(
    user_id: int,
    name: str,
    *,
    status: str = "online",
    last_seen: datetime | None = NOW,
    username: str | None = None,
) -> MemberView:
    return MemberView(
        user_id=user_id,
        name=name,
        username=username if username is not None else name.split()[0].lower(),
        online=status != "offline",
        status=status,
        last_seen=last_seen,
    )


TEAM = [
    member(5, "Carol Chen", status="offline", last_seen=NOW - timedelta(minutes=5)),
    member(4, "bob Baker", status="away"),
    member(3, "Alice Archer"),
    member(6, "Dave Diaz", status="dnd"),
    member(7, "Erin Evans", status="offline", last_seen=None),
]


def names(model: PresenceModel) -> list[str]:
    return [model.member(row).name for row in range(model.rowCount())]


@pytest.fixture
def make_window(qtbot: QtBot) -> Callable[..., PresenceWindow]:
    def make(*, show: bool = False) -> PresenceWindow:
        window = PresenceWindow(clock=clock)
        qtbot.addWidget(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
            window.activateWindow()
        return window

    return make


def distinct_colours(image: QImage) -> int:
    return len(
        {image.pixel(x, y) for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)}
    )


def colour_present(image: QImage, wanted: str, tolerance: int = 6) -> bool:
    target = STATUS_COLOURS[wanted]
    for x in range(image.width()):
        for y in range(image.height()):
            pixel = image.pixelColor(x, y)
            if (
                abs(pixel.red() - target.red()) <= tolerance
                and abs(pixel.green() - target.green()) <= tolerance
                and abs(pixel.blue() - target.blue()) <= tolerance
            ):
                return True
    return False


# --- values -----------------------------------------------------------------------------


def test_member_from_protocol_names_people_and_reads_last_seen() -> None:
    raw = PresenceMember(
        user={"id": 3, "username": "alice", "first_name": "Alice", "last_name": "Archer"},
        online=True,
        status="away",
        last_seen=1_795_000_000.5,
    )
    view = member_from_protocol(raw)
    assert view == MemberView(
        user_id=3,
        name="Alice Archer",
        username="alice",
        online=True,
        status="away",
        last_seen=datetime.fromtimestamp(1_795_000_000.5, UTC),
    )
    bare = member_from_protocol(
        PresenceMember(user={"id": 4, "username": "bob"}, online=False, status="x", last_seen=None)
    )
    assert (bare.name, bare.last_seen, bare.shown_status) == ("bob", None, "offline")
    odd = member_from_protocol(
        PresenceMember(
            user={"id": 9, "username": 5, "first_name": ["x"], "last_name": "Line\nBreak"},
            online=True,
            status="busy",
            last_seen=float("inf"),
        )
    )
    assert (odd.name, odd.username, odd.last_seen, odd.shown_status) == (
        "Line Break",
        "",
        None,
        "online",
    )


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), 1e300, -1e300])
def test_last_seen_from_epoch_refuses_absurd_values(value: float | None) -> None:
    assert last_seen_from_epoch(value) is None


def test_describe_presence_says_status_or_last_seen() -> None:
    assert [describe_presence(view, NOW) for view in TEAM] == [
        "Last seen 5 min ago",
        "Away",
        "Online",
        "Do not disturb",
        "Offline",
    ]


def test_status_icon_is_sharp_at_several_sizes(qtbot: QtBot) -> None:
    icon = status_icon("dnd")
    assert len(icon.availableSizes()) >= 4
    image = icon.pixmap(32, 32).toImage()
    assert image.pixelColor(16, 16) == STATUS_COLOURS["dnd"]
    assert image.pixelColor(0, 0).alpha() == 0


# --- the model --------------------------------------------------------------------------


def test_members_are_ordered_online_first_then_by_name(qtbot: QtBot) -> None:
    model = PresenceModel(clock=clock)
    model.set_members(TEAM)
    assert names(model) == ["Alice Archer", "bob Baker", "Dave Diaz", "Carol Chen", "Erin Evans"]
    index = model.index(1, 0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == "bob Baker"
    assert index.data(PresenceRole.USER_ID) == 4
    assert index.data(PresenceRole.USERNAME) == "bob"
    assert index.data(PresenceRole.ONLINE) is True
    assert index.data(PresenceRole.STATUS) == "away"
    assert index.data(PresenceRole.LAST_SEEN) == NOW
    assert index.data(PresenceRole.STATUS_TEXT) == "Away"
    assert index.data(Qt.ItemDataRole.AccessibleTextRole) == "bob Baker. Away"
    assert bytes(model.roleNames()[int(PresenceRole.STATUS)].data()) == b"status"
    assert model.index(9, 0).data(PresenceRole.USER_ID) is None


def test_a_change_in_place_repaints_one_row(qtbot: QtBot) -> None:
    model = PresenceModel(clock=clock)
    model.set_members(TEAM)
    changed = member(4, "bob Baker", status="dnd")
    with (
        qtbot.assertNotEmitted(model.modelReset),
        qtbot.assertNotEmitted(model.rowsMoved),
        qtbot.waitSignal(model.dataChanged) as signal,
    ):
        assert model.update_member(changed)
    assert signal.args is not None
    assert (signal.args[0].row(), signal.args[1].row()) == (1, 1)
    assert model.index(1, 0).data(PresenceRole.STATUS_TEXT) == "Do not disturb"


@pytest.mark.parametrize(
    ("changed", "order"),
    [
        # Erin comes online: from the bottom to her place among the online.
        (
            member(7, "Erin Evans"),
            ["Alice Archer", "bob Baker", "Dave Diaz", "Erin Evans", "Carol Chen"],
        ),
        # Alice goes offline: from the top to her place among the offline.
        (
            member(3, "Alice Archer", status="offline", last_seen=NOW),
            ["bob Baker", "Dave Diaz", "Alice Archer", "Carol Chen", "Erin Evans"],
        ),
    ],
)
def test_a_change_of_place_moves_one_row(
    qtbot: QtBot, changed: MemberView, order: list[str]
) -> None:
    model = PresenceModel(clock=clock)
    model.set_members(TEAM)
    with qtbot.assertNotEmitted(model.modelReset), qtbot.waitSignal(model.rowsMoved):
        model.update_member(changed)
    assert names(model) == order
    # What the model says matches a fresh sort of the same people.
    fresh = PresenceModel(clock=clock)
    fresh.set_members(model.members())
    assert names(fresh) == order


def test_an_unknown_member_changes_nothing(qtbot: QtBot) -> None:
    model = PresenceModel(clock=clock)
    model.set_members(TEAM)
    with qtbot.assertNotEmitted(model.dataChanged):
        assert not model.update_member(member(99, "Zed"))


def test_last_seen_follows_the_clock(qtbot: QtBot) -> None:
    now = [NOW]
    model = PresenceModel(clock=lambda: now[0])
    model.set_members(TEAM)
    carol = model.index(model.row_of(5) or 0, 0)
    assert carol.data(PresenceRole.STATUS_TEXT) == "Last seen 5 min ago"
    now[0] = NOW + timedelta(minutes=30)
    with qtbot.waitSignal(model.dataChanged):
        model.refresh_last_seen()
    assert carol.data(PresenceRole.STATUS_TEXT) == "Last seen 35 min ago"


# --- the window -------------------------------------------------------------------------


def test_set_projects_selects_the_first_and_asks_for_it(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window()
    assert window.empty_label.text() == NO_PROJECTS_TEXT
    with qtbot.waitSignal(window.project_selected) as selected:
        window.set_projects(PROJECTS)
    assert selected.args == [1]
    assert window.stack.currentWidget() is window.empty_label
    assert window.empty_label.text() == LOADING_TEXT
    window.show_snapshot(1, TEAM)
    assert window.stack.currentWidget() is window.list_view
    assert window.summary.text() == "3 of 5 members online"
    # The same list again (a refresh) keeps the project and asks for nothing.
    with qtbot.assertNotEmitted(window.project_selected):
        window.set_projects([(2, "Website Redesign"), (1, "Mobile App")])
    assert window.current_project_id() == 1
    assert window.model.rowCount() == 5


def test_choosing_a_project_emits_and_shows_what_is_known(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window(show=True)
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    window.show_snapshot(2, [member(3, "Alice Archer"), member(8, "Frank Fox", status="away")])
    window.project_combo.setFocus()
    with qtbot.waitSignal(window.project_selected) as selected:
        QTest.keyClick(window.project_combo, Qt.Key.Key_Down)
    assert selected.args == [2]
    assert names(window.model) == ["Alice Archer", "Frank Fox"]
    assert window.summary.text() == "2 of 2 members online"


def test_a_snapshot_for_another_project_waits_for_its_turn(
    make_window: Callable[..., PresenceWindow],
) -> None:
    window = make_window()
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    window.show_snapshot(2, [member(8, "Frank Fox")])
    assert window.model.rowCount() == 5  # project 1 is still shown
    window.show_snapshot(1, [])
    assert window.empty_label.text() == NO_MEMBERS_TEXT


def test_choosing_a_status_emits_and_setting_it_does_not(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window(show=True)
    with qtbot.assertNotEmitted(window.status_chosen):
        window.set_own_status("away")
    assert window.own_status() == "away"
    window.set_own_status("sleeping")  # not offered: ignored, not an error
    assert window.own_status() == "away"
    window.status_combo.setFocus()
    with qtbot.waitSignal(window.status_chosen) as chosen:
        QTest.keyClick(window.status_combo, Qt.Key.Key_Down)
    assert chosen.args == ["dnd"]
    with qtbot.waitSignal(window.status_chosen) as chosen:
        QTest.keyClick(window.status_combo, Qt.Key.Key_Home)
    assert chosen.args == ["online"]


def test_live_changes_update_one_row_and_keep_the_scroll(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window(show=True)
    window.set_projects(PROJECTS)
    crowd = [
        member(100 + n, f"Member {n:02d}", status="online" if n % 2 else "offline")
        for n in range(60)
    ]
    window.show_snapshot(1, crowd)
    bar = window.list_view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum() // 2)
    scrolled = bar.value()
    with (
        qtbot.assertNotEmitted(window.model.modelReset),
        qtbot.waitSignal(window.model.dataChanged),
    ):
        window.apply_change(1, 101, True, "away", NOW)
    assert bar.value() == scrolled
    row = window.model.row_of(101)
    assert row is not None
    assert window.model.index(row, 0).data(PresenceRole.STATUS_TEXT) == "Away"
    with qtbot.waitSignal(window.model.rowsMoved):
        window.apply_change(1, 100, True, "online", NOW)  # an offline member comes online
    assert bar.value() == scrolled
    assert window.summary.text() == "31 of 60 members online"
    # Changes for a project not shown are kept for when it is.
    window.show_snapshot(2, [member(3, "Alice Archer")])
    window.apply_change(2, 3, False, "offline", NOW - timedelta(minutes=2))
    assert window.model.rowCount() == 60
    window.project_combo.setFocus()
    with qtbot.waitSignal(window.project_selected):
        QTest.keyClick(window.project_combo, Qt.Key.Key_Down)
    assert window.model.index(0, 0).data(PresenceRole.STATUS_TEXT) == "Last seen 2 min ago"


def test_changes_for_unknown_projects_or_members_are_ignored(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    with qtbot.assertNotEmitted(window.model.dataChanged):
        window.apply_change(1, 999, True, "online", NOW)
        window.apply_change(42, 3, False, "offline", None)
    assert names(window.model)[0] == "Alice Archer"


def test_removal_from_the_shown_project_moves_on_and_says_so(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    with qtbot.waitSignal(window.project_selected) as selected:
        window.remove_project(1)
    assert selected.args == [2]
    assert window.project_combo.count() == 1
    assert window.notice.text() == "You are no longer a member of Mobile App."
    assert not window.notice.isHidden()
    assert window.empty_label.text() == LOADING_TEXT
    # Changes for the old project are no longer shown anywhere.
    window.apply_change(1, 3, False, "offline", None)
    assert window.model.rowCount() == 0
    with qtbot.assertNotEmitted(window.project_selected):
        window.remove_project(2)
    assert window.current_project_id() is None
    assert window.empty_label.text() == NO_PROJECTS_TEXT
    assert not window.project_combo.isEnabled()
    window.remove_project(77)  # never listed: nothing to do


def test_removal_of_another_project_keeps_the_shown_one(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    with qtbot.assertNotEmitted(window.project_selected):
        window.remove_project(2)
    assert window.current_project_id() == 1
    assert window.model.rowCount() == 5


def test_names_with_markup_stay_plain(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot
) -> None:
    window = make_window(show=True)
    window.set_projects([(1, HTML)])
    assert window.project_combo.itemText(0) == HTML
    window.show_snapshot(1, [member(3, HTML, username=HTML)])
    index = window.model.index(0, 0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == HTML
    tooltip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert "<img" not in tooltip
    assert "&lt;b&gt;x&lt;/b&gt;" in tooltip
    window.remove_project(1)
    assert window.notice.textFormat() == Qt.TextFormat.PlainText
    assert window.notice.text() == f"You are no longer a member of {HTML}."


def test_window_renders_status_dots(
    make_window: Callable[..., PresenceWindow], qtbot: QtBot, tmp_path: Path
) -> None:
    window = make_window(show=True)
    window.set_projects(PROJECTS)
    window.show_snapshot(1, TEAM)
    image = window.grab().toImage()
    path = tmp_path / "presence.png"
    assert image.save(str(path))
    assert distinct_colours(image) > 40
    list_image = window.list_view.viewport().grab().toImage()
    for status in ("online", "away", "dnd", "offline"):
        assert colour_present(list_image, status), status


def test_model_ignores_invalid_parents(qtbot: QtBot) -> None:
    model = PresenceModel(clock=clock)
    model.set_members(TEAM)
    assert model.rowCount(model.index(0, 0)) == 0
    assert model.rowCount(QModelIndex()) == 5
    duplicate: list[Any] = [*TEAM, member(3, "Alice Again")]
    model.set_members(duplicate)
    assert model.rowCount() == 5
    assert "Alice Again" in names(model)
