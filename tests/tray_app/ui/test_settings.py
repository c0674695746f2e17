"""The settings dialog edits copies of this computer's preferences, its history's retention
and the user's attention settings, and emits on OK/Apply only what changed (attention
settings as the server's change, docs/protocol.md "Attention"); it offers to log in or
out and to clear the local history (after asking); without an account the attention
settings are disabled and never sent; settings IT locked are disabled, say so, and never
change; what IT set is listed. The last test drives the dialog inside the real app."""

from __future__ import annotations

import asyncio
import json
import time as clock_module
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import qasync
from msgspec.structs import replace
from PySide6.QtCore import QPoint, Qt, QTime, QTimer, SignalInstance
from PySide6.QtGui import QAccessible, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QTimeEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from tests.fixtures.services import RunningServer
from tray_app import config
from tray_app.attention import Attention
from tray_app.managed import MANAGED_NOTE, ManagedConfig, parse_managed_config
from tray_app.net.connection_state import ConnectionState
from tray_app.preferences import Preferences, SavedPreferences
from tray_app.ui.app import AppOptions, TrayApp
from tray_app.ui.settings import (
    RETENTION_FOREVER_DAYS,
    Retention,
    SettingsDialog,
    describe_silence,
)

# The offscreen platform plugin cannot pass a window's size hints on and says so
# whenever a laid-out top-level window is shown; no other Qt warning is tolerated.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

HOSTILE = "<b>x</b><img src=x>"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PROJECTS = [(1, "Mobile App"), (2, "Website"), (3, HOSTILE)]
SERVER = "https://notify.example.com"
ZONE = "Europe/Berlin"


@pytest.fixture(autouse=True)
def computer_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This computer's zone, as the dialog names it when it saves quiet hours (read from
    ``TZ`` first), whatever the machine running the tests is set to. The C library's
    clock follows (``tzset``) and goes back after: a zone left behind would move every
    later test's local times."""
    monkeypatch.setenv("TZ", ZONE)
    clock_module.tzset()
    yield ZONE
    monkeypatch.undo()
    clock_module.tzset()


def _dialog(
    qtbot: QtBot,
    preferences: Preferences | None = None,
    projects: list[tuple[int, str]] = PROJECTS,
    **options: Any,
) -> SettingsDialog:
    """The dialog, shown, for alice logged in to SERVER with the default attention
    settings unless ``options`` say otherwise."""
    options.setdefault("attention", Attention())
    options.setdefault("username", "alice")
    options.setdefault("server_url", SERVER)
    dialog = SettingsDialog(preferences or Preferences(), projects, now=lambda: NOW, **options)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _logged_out(qtbot: QtBot, preferences: Preferences | None = None) -> SettingsDialog:
    return _dialog(qtbot, preferences, [], attention=None, username=None, server_url=None)


def _record(signal: SignalInstance) -> list[Any]:
    """What ``signal`` emits from now on (no arguments: None each time)."""
    seen: list[Any] = []
    signal.connect(lambda *arguments: seen.append(arguments[0] if arguments else None))
    return seen


def _toggle(check: QCheckBox) -> None:
    # A checkbox stretched across the dialog only reacts on its box and text, not
    # at the widget's centre, where a plain mouseClick would land.
    QTest.mouseClick(check, Qt.MouseButton.LeftButton, pos=QPoint(8, check.height() // 2))


def _click(dialog: SettingsDialog, which: QDialogButtonBox.StandardButton) -> None:
    QTest.mouseClick(dialog._buttons.button(which), Qt.MouseButton.LeftButton)


def _press(button: QAbstractButton) -> None:
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def _choose(combo: QComboBox, value: object) -> None:
    index = combo.findData(value)
    assert index >= 0, value
    combo.setCurrentIndex(index)


def _item(listing: QListWidget, key: object) -> QListWidgetItem:
    for row in range(listing.count()):
        item = listing.item(row)
        if item.data(Qt.ItemDataRole.UserRole) == key:
            return item
    raise AssertionError(f"{key!r} not listed")


def _checked(listing: QListWidget) -> set[object]:
    return {
        listing.item(row).data(Qt.ItemDataRole.UserRole)
        for row in range(listing.count())
        if listing.item(row).checkState() == Qt.CheckState.Checked
    }


def _shown_texts(dialog: SettingsDialog) -> list[str]:
    return [label.text() for label in dialog.findChildren(QLabel)]


def _not_blank(image: QImage) -> None:
    colours = {
        image.pixel(x, y) for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
    }
    assert len(colours) > 20


# --- this computer's preferences ---------------------------------------------------------


def test_shows_the_given_preferences(qtbot: QtBot) -> None:
    preferences = Preferences(toasts_enabled=True, sound=False, start_at_login=True)
    dialog = _dialog(qtbot, preferences)
    assert dialog.start_at_login_check.isChecked()
    assert dialog.toasts_check.isChecked()
    assert not dialog.sound_check.isChecked()
    assert dialog.preferences() == preferences
    assert not dialog.apply_button.isEnabled()  # nothing changed yet


def test_apply_emits_every_edit_and_keeps_the_dialog_open(qtbot: QtBot) -> None:
    original = Preferences(remember_me=False)
    dialog = _dialog(
        qtbot,
        original,
        attention=Attention(muted_projects=frozenset({99}), urgent_breaks_through=True),
    )
    preferences = _record(dialog.preferences_changed)
    changes = _record(dialog.attention_change_requested)
    retentions = _record(dialog.retention_changed)
    _toggle(dialog.start_at_login_check)
    _toggle(dialog.sound_check)
    _toggle(dialog.quiet_hours_check)
    dialog.quiet_from_edit.setTime(QTime(23, 0))
    dialog.quiet_to_edit.setTime(QTime(6, 30))
    _choose(dialog.min_priority_combo, "normal")
    _toggle(dialog.urgent_check)
    _item(dialog.projects_list, 1).setCheckState(Qt.CheckState.Checked)
    _item(dialog.projects_list, 3).setCheckState(Qt.CheckState.Checked)
    _item(dialog.event_types_list, "announcement").setCheckState(Qt.CheckState.Checked)
    _choose(dialog.retention_days_combo, 90)
    assert dialog.apply_button.isEnabled()

    _click(dialog, QDialogButtonBox.StandardButton.Apply)

    # remember_me, which the dialog does not show, keeps its value.
    assert preferences == [replace(original, start_at_login=True, sound=False)]
    assert original == Preferences(remember_me=False)  # the caller's object is untouched
    assert changes == [
        {
            "quiet_hours": {"start": "23:00", "end": "06:30"},
            "time_zone": ZONE,
            "min_priority": "normal",
            "urgent_breaks_through": False,
            # 99 is not in the list (a project the user left?): its mute is kept.
            "muted_projects": [1, 3, 99],
            "muted_event_types": ["announcement"],
        }
    ]
    assert retentions == [Retention(days=90, rows=100_000)]
    assert dialog.isVisible()
    assert not dialog.apply_button.isEnabled()
    # OK right after Apply has nothing new to send.
    _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert len(preferences) == len(changes) == len(retentions) == 1
    assert not dialog.isVisible()


def test_ok_emits_unapplied_changes_and_closes(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, attention=Attention(muted_projects=frozenset({2})))
    preferences = _record(dialog.preferences_changed)
    changes = _record(dialog.attention_change_requested)
    _item(dialog.projects_list, 2).setCheckState(Qt.CheckState.Unchecked)
    _toggle(dialog.toasts_check)
    assert not dialog.sound_check.isEnabled()  # no pop-ups, no pop-up sound
    _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert preferences == [Preferences(toasts_enabled=False)]
    assert changes == [{"muted_projects": []}]
    assert dialog.result() == SettingsDialog.DialogCode.Accepted


def test_cancel_emits_nothing(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    emitted = [
        _record(signal)
        for signal in (
            dialog.preferences_changed,
            dialog.attention_change_requested,
            dialog.retention_changed,
        )
    ]
    _toggle(dialog.start_at_login_check)
    _choose(dialog.min_priority_combo, "urgent")
    _choose(dialog.retention_rows_combo, 10_000)
    _click(dialog, QDialogButtonBox.StandardButton.Cancel)
    assert emitted == [[], [], []]
    assert dialog.result() == SettingsDialog.DialogCode.Rejected


def test_undoing_a_change_disables_apply(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    _toggle(dialog.toasts_check)
    assert dialog.apply_button.isEnabled()
    _toggle(dialog.toasts_check)
    assert not dialog.apply_button.isEnabled()
    _choose(dialog.min_priority_combo, "high")
    assert dialog.apply_button.isEnabled()
    _choose(dialog.min_priority_combo, "low")
    assert not dialog.apply_button.isEnabled()
    _choose(dialog.retention_days_combo, 30)
    assert dialog.apply_button.isEnabled()
    _choose(dialog.retention_days_combo, 365)
    assert not dialog.apply_button.isEnabled()


def test_names_are_plain_text_and_elided(qtbot: QtBot) -> None:
    long_name = "A project with a very long name " * 6
    dialog = _dialog(qtbot, projects=[(1, HOSTILE), (2, long_name)], username=HOSTILE)
    assert _item(dialog.projects_list, 1).text() == HOSTILE  # shown as typed, never as markup
    assert _item(dialog.projects_list, 2).toolTip() == long_name
    assert dialog.projects_list.textElideMode() == Qt.TextElideMode.ElideRight
    assert dialog.account_label.text() == f"Logged in as {HOSTILE} on {SERVER}"
    for label in dialog.findChildren(QLabel):
        if label.text():
            assert label.textFormat() == Qt.TextFormat.PlainText, label.text()


def test_no_projects_says_so_and_keeps_their_mutes(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, projects=[], attention=Attention(muted_projects=frozenset({5})))
    assert not dialog.projects_list.isVisible()
    assert "You are not a member of any project yet." in _shown_texts(dialog)
    assert dialog.attention_change() == {}
    _item(dialog.event_types_list, "task_created").setCheckState(Qt.CheckState.Checked)
    assert dialog.attention_change() == {"muted_event_types": ["task_created"]}


def test_every_control_has_an_accessible_name(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, attention=Attention(dnd=True))
    controls: list[QWidget] = [
        *dialog.findChildren(QAbstractButton),
        *dialog.findChildren(QComboBox),
        *dialog.findChildren(QListWidget),
        *dialog.findChildren(QTimeEdit),
    ]
    assert len(controls) > 15
    for control in controls:
        accessible = QAccessible.queryAccessibleInterface(control)
        assert accessible is not None
        assert accessible.text(QAccessible.Text.Name).strip(), control


# --- the user's attention settings (every device's) ----------------------------------------


def test_shows_the_attention_settings(qtbot: QtBot) -> None:
    attention = Attention(
        quiet_hours=(time(21, 30), time(6, 15)),
        time_zone=ZONE,
        min_priority="high",
        urgent_breaks_through=False,
        muted_projects=frozenset({2, 99}),
        muted_event_types=frozenset({"task_updated", "build_broken"}),
    )
    dialog = _dialog(qtbot, attention=attention)
    assert dialog.quiet_hours_check.isChecked()
    assert dialog.quiet_from_edit.isEnabled()
    assert dialog.quiet_from_edit.time() == QTime(21, 30)
    assert dialog.quiet_to_edit.time() == QTime(6, 15)
    assert dialog.zone_label.text() == "Quiet hours follow this computer's clock."
    assert dialog.min_priority_combo.currentData() == "high"
    assert dialog.min_priority_combo.currentText() == "High and urgent"
    assert not dialog.urgent_check.isChecked()
    assert _checked(dialog.projects_list) == {2}
    assert _checked(dialog.event_types_list) == {"task_updated", "build_broken"}
    assert _item(dialog.event_types_list, "task_updated").text() == "Task edits"
    # A kind this version does not know (a newer server's, another device's) is listed as is.
    assert _item(dialog.event_types_list, "build_broken").text() == "build_broken"
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()


def test_quiet_hours_set_in_another_zone_say_so(qtbot: QtBot) -> None:
    attention = Attention(quiet_hours=(time(22), time(7)), time_zone="America/New_York")
    dialog = _dialog(qtbot, attention=attention)
    assert dialog.zone_label.text() == (
        f"Quiet hours are in America/New_York (set on another device); saving here uses {ZONE}."
    )
    assert dialog.attention_change() == {}  # shown, not changed: nothing to send
    dialog.quiet_to_edit.setTime(QTime(8, 0))
    assert dialog.attention_change() == {
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "time_zone": ZONE,
    }


def test_no_quiet_hours_shows_disabled_defaults(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    assert not dialog.quiet_hours_check.isChecked()
    assert not dialog.quiet_from_edit.isEnabled()
    assert not dialog.quiet_to_edit.isEnabled()
    _toggle(dialog.quiet_hours_check)
    assert dialog.quiet_from_edit.isEnabled()
    assert dialog.attention_change() == {
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "time_zone": ZONE,
    }


@pytest.mark.parametrize(
    ("edit", "change"),
    [
        (
            lambda d: _choose(d.min_priority_combo, "urgent"),
            {"min_priority": "urgent"},
        ),
        (lambda d: _toggle(d.urgent_check), {"urgent_breaks_through": True}),
        (
            lambda d: _item(d.event_types_list, "task_deleted").setCheckState(
                Qt.CheckState.Checked
            ),
            {"muted_event_types": ["task_created", "task_deleted"]},
        ),
        (
            lambda d: _item(d.projects_list, 1).setCheckState(Qt.CheckState.Unchecked),
            {"muted_projects": []},
        ),
        (
            lambda d: d.quiet_to_edit.setTime(QTime(6, 0)),
            {"quiet_hours": {"start": "22:00", "end": "06:00"}, "time_zone": ZONE},
        ),
        (lambda d: _toggle(d.quiet_hours_check), {"quiet_hours": None}),
    ],
    ids=["priority", "urgent", "kinds", "projects", "quiet hours", "no quiet hours"],
)
def test_apply_emits_exactly_the_changed_attention_settings(
    qtbot: QtBot, edit: Callable[[SettingsDialog], None], change: dict[str, Any]
) -> None:
    attention = Attention(
        quiet_hours=(time(22), time(7)),
        time_zone=ZONE,
        min_priority="normal",
        urgent_breaks_through=False,
        muted_projects=frozenset({1}),
        muted_event_types=frozenset({"task_created"}),
    )
    dialog = _dialog(qtbot, attention=attention)
    changes = _record(dialog.attention_change_requested)
    preferences = _record(dialog.preferences_changed)
    edit(dialog)
    _click(dialog, QDialogButtonBox.StandardButton.Apply)
    assert changes == [change]
    assert preferences == []
    # What was applied is the dialog's new starting point: nothing more to send.
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()


def test_a_mute_of_a_project_not_listed_is_kept(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, attention=Attention(muted_projects=frozenset({2, 99})))
    changes = _record(dialog.attention_change_requested)
    _item(dialog.projects_list, 2).setCheckState(Qt.CheckState.Unchecked)
    _click(dialog, QDialogButtonBox.StandardButton.Apply)
    _item(dialog.projects_list, 1).setCheckState(Qt.CheckState.Checked)
    _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert changes == [{"muted_projects": [99]}, {"muted_projects": [1, 99]}]


def test_an_empty_quiet_range_is_no_change(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, attention=Attention(quiet_hours=(time(22), time(7))))
    dialog.quiet_to_edit.setTime(QTime(22, 0))  # from 22:00 to 22:00: no hours at all
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()


@pytest.mark.parametrize(
    ("attention", "shown"),
    [
        (Attention(dnd=True, dnd_until=NOW + timedelta(hours=1)), True),
        (Attention(dnd=True), True),
        (Attention(dnd=True, dnd_until=NOW - timedelta(minutes=1)), False),
        (Attention(quiet_hours=(time(11), time(13)), time_zone="UTC"), False),
        (Attention(), False),
    ],
    ids=["until a time", "until turned off", "ended", "quiet hours", "off"],
)
def test_turn_off_dnd_is_offered_only_while_dnd_holds(
    qtbot: QtBot, attention: Attention, shown: bool
) -> None:
    dialog = _dialog(qtbot, attention=attention)
    assert dialog.dnd_off_button.isVisible() is shown
    assert dialog.dnd_label.text() == describe_silence(attention, NOW)


def test_turn_off_dnd_asks_the_server_at_once(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, attention=Attention(dnd=True, dnd_until=NOW + timedelta(hours=2)))
    changes = _record(dialog.attention_change_requested)
    preferences = _record(dialog.preferences_changed)
    _press(dialog.dnd_off_button)
    assert changes == [{"dnd": None}]
    assert preferences == []
    assert not dialog.dnd_off_button.isVisible()
    assert dialog.dnd_label.text() == "Do not disturb is turning off."
    assert dialog.isVisible()  # not OK: the dialog stays open for the rest


def test_describe_silence() -> None:
    until = NOW + timedelta(hours=2)
    assert describe_silence(Attention(dnd=True, dnd_until=until), NOW) == (
        f"Do not disturb until {until.astimezone():%H:%M}: pop-ups are held back."
        " Urgent notifications still pop up."
    )
    assert describe_silence(Attention(dnd=True, urgent_breaks_through=False), NOW) == (
        "Do not disturb (until you turn it off): pop-ups are held back."
    )
    quiet = Attention(
        quiet_hours=(time(11), time(13)), time_zone="UTC", urgent_breaks_through=False
    )
    end = NOW.replace(hour=13).astimezone()
    assert describe_silence(quiet, NOW) == f"Quiet hours until {end:%H:%M}: pop-ups are held back."
    assert describe_silence(Attention(), NOW) == (
        "Pop-ups are on. Turn on do not disturb from the tray menu."
    )
    # Do-not-disturb that ended says nothing of itself.
    assert describe_silence(Attention(dnd=True, dnd_until=NOW), NOW) == (
        describe_silence(Attention(), NOW)
    )


# --- nobody logged in -------------------------------------------------------------------


def test_logged_out_the_attention_settings_are_disabled_and_never_sent(qtbot: QtBot) -> None:
    dialog = _logged_out(qtbot)
    for widget in (
        dialog.quiet_hours_check,
        dialog.min_priority_combo,
        dialog.urgent_check,
        dialog.projects_list,
        dialog.event_types_list,
    ):
        assert not widget.isEnabled(), widget
    assert not dialog.dnd_off_button.isVisible()
    # This computer's settings stay the user's to change.
    assert dialog.toasts_check.isEnabled()
    assert dialog.retention_days_combo.isEnabled()
    changes = _record(dialog.attention_change_requested)
    preferences = _record(dialog.preferences_changed)
    # Set from code, the way an accessibility tool could reach a disabled widget.
    dialog.quiet_hours_check.setChecked(True)
    _choose(dialog.min_priority_combo, "urgent")
    _item(dialog.event_types_list, "announcement").setCheckState(Qt.CheckState.Checked)
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()
    _toggle(dialog.toasts_check)
    _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert changes == []
    assert preferences == [Preferences(toasts_enabled=False)]


# --- the account ------------------------------------------------------------------------


def test_the_account_says_who_is_logged_in_and_offers_to_log_out(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    assert dialog.account_label.text() == f"Logged in as alice on {SERVER}"
    assert dialog.logout_button.isVisible()
    assert not dialog.login_button.isVisible()
    logouts = _record(dialog.logout_requested)
    logins = _record(dialog.login_requested)
    preferences = _record(dialog.preferences_changed)
    _toggle(dialog.sound_check)
    _press(dialog.logout_button)
    # What was changed is applied first, as OK would, and the dialog closes.
    assert preferences == [Preferences(sound=False)]
    assert logouts == [None]
    assert logins == []
    assert not dialog.isVisible()
    assert dialog.result() == SettingsDialog.DialogCode.Accepted


def test_the_account_says_how_the_app_is_connected(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, connection="Connected")
    assert dialog.connection_label.isVisible()
    assert dialog.connection_label.text() == "Connection: Connected"
    fallback = "Connected (HTTP fallback: WebSockets are blocked on this network)"
    dialog.show_connection(fallback)
    assert dialog.connection_label.text() == f"Connection: {fallback}"
    assert not _logged_out(qtbot).connection_label.isVisible()


def test_logged_out_the_account_offers_to_log_in(qtbot: QtBot) -> None:
    dialog = _logged_out(qtbot)
    assert dialog.account_label.text() == "Not logged in"
    assert dialog.login_button.isVisible()
    assert not dialog.logout_button.isVisible()
    logins = _record(dialog.login_requested)
    logouts = _record(dialog.logout_requested)
    _press(dialog.login_button)
    assert logins == [None]
    assert logouts == []
    assert not dialog.isVisible()


# --- the local history ------------------------------------------------------------------


def test_the_history_retention_is_shown_and_applied(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, retention=Retention(days=90, rows=50_000))
    assert dialog.retention_days_combo.currentText() == "90 days"
    assert dialog.retention_rows_combo.currentText() == "50,000 notifications"
    assert dialog.retention() == Retention(days=90, rows=50_000)
    assert not dialog.apply_button.isEnabled()
    retentions = _record(dialog.retention_changed)
    preferences = _record(dialog.preferences_changed)
    _choose(dialog.retention_days_combo, RETENTION_FOREVER_DAYS)
    assert dialog.retention_days_combo.currentText() == "Forever"
    _choose(dialog.retention_rows_combo, 10_000)
    _click(dialog, QDialogButtonBox.StandardButton.Apply)
    assert retentions == [Retention(days=RETENTION_FOREVER_DAYS, rows=10_000)]
    assert preferences == []
    _click(dialog, QDialogButtonBox.StandardButton.Ok)  # nothing new
    assert len(retentions) == 1


def test_a_retention_set_by_hand_is_listed_and_kept(qtbot: QtBot) -> None:
    # settings.json may hold any whole number: the dialog shows it and changes nothing.
    dialog = _dialog(qtbot, retention=Retention(days=180, rows=20_000))
    assert dialog.retention_days_combo.currentText() == "180 days"
    assert dialog.retention_rows_combo.currentText() == "20,000 notifications"
    assert dialog.retention() == Retention(days=180, rows=20_000)
    assert not dialog.apply_button.isEnabled()


def test_the_default_retention_is_configs(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    assert dialog.retention() == Retention.of(config.Settings()) == Retention(365, 100_000)
    assert dialog.retention_days_combo.currentText() == "1 year"


def test_clear_local_history_asks_first(qtbot: QtBot) -> None:
    answers = [False, True]
    asked: list[bool] = []

    def confirm() -> bool:
        asked.append(answers[len(asked)])
        return asked[-1]

    dialog = _dialog(qtbot, confirm_clear=confirm)
    cleared = _record(dialog.clear_history_requested)
    assert "come back" in dialog.clear_history_button.toolTip()
    _press(dialog.clear_history_button)
    assert asked == [False]
    assert cleared == []  # declined: nothing happens
    _press(dialog.clear_history_button)
    assert asked == [False, True]
    assert cleared == [None]
    assert dialog.clear_hint.text().startswith("Cleared.")
    assert dialog.isVisible()


def _answer_question(button_text: str, seen: list[str]) -> None:
    """Once the question box is up, note its words and press ``button_text``."""

    def answer() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen.append(f"{box.text()}\n{box.informativeText()}")
        assert box.textFormat() == Qt.TextFormat.PlainText
        (button,) = (b for b in box.buttons() if b.text() == button_text)
        button.click()

    # Fires inside the box's own event loop, once it is shown.
    QTimer.singleShot(0, answer)


@pytest.mark.parametrize(("button", "emitted"), [("Cancel", []), ("Clear", [None])])
def test_clear_local_history_asks_with_a_question_box(
    qtbot: QtBot, button: str, emitted: list[None]
) -> None:
    dialog = _dialog(qtbot, username=HOSTILE)
    cleared = _record(dialog.clear_history_requested)
    seen: list[str] = []
    _answer_question(button, seen)
    _press(dialog.clear_history_button)
    assert cleared == emitted
    (words,) = seen
    assert f"for {HOSTILE}?" in words
    assert "stay on the server" in words


def test_logged_out_there_is_no_history_to_clear(qtbot: QtBot) -> None:
    dialog = _logged_out(qtbot)
    assert not dialog.clear_history_button.isEnabled()
    assert dialog.clear_history_button.toolTip() == "Log in to clear an account's history."


# --- screenshots and size -----------------------------------------------------------------


def test_screenshot_is_not_blank_and_fits_a_small_screen(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = _dialog(
        qtbot,
        attention=Attention(
            dnd=True,
            dnd_until=NOW + timedelta(hours=1),
            quiet_hours=(time(22), time(7)),
            muted_projects=frozenset({2}),
        ),
        server_url="https://notifications.a-rather-long-name.corporate.example.com:8443/notify",
    )
    image: QImage = dialog.grab().toImage()
    assert image.save(str(tmp_path / "settings.png"))
    _not_blank(image)
    # 1280x800, less a title bar and a panel.
    assert dialog.width() <= 1280
    assert dialog.height() <= 740


# --- settings IT manages -----------------------------------------------------------------

MANAGED_FILE = Path("/etc/xdg/tray-notifier/managed.json")
LOCKING = parse_managed_config(
    """{
  "server_url": "https://notify.example.com",
  "start_at_login": true,
  "sound": false,
  "quiet_hours": ["21:00", "06:00"],
  "toasts_enabled": {"value": true, "locked": false},
  "proxy": "http://bob:hunter2@proxy.example.com:3128"
}""",
    MANAGED_FILE,
)
# What the server holds: the user's own quiet hours, which IT's lock hides on this computer.
SERVERS = Attention(quiet_hours=(time(23), time(5)), time_zone="America/New_York")


def _locked_dialog(qtbot: QtBot) -> tuple[SettingsDialog, Preferences]:
    # The app opens the dialog on the effective preferences (IT's values already applied)
    # and the attention settings in force (IT's lock on top).
    effective = LOCKING.effective_preferences(SavedPreferences().choose(toasts_enabled=True))
    in_force = SERVERS.locked(quiet_hours=LOCKING.quiet_hours_lock())
    return _dialog(qtbot, effective, managed=LOCKING, attention=in_force), effective


def test_locked_settings_are_disabled_with_a_visible_note(qtbot: QtBot) -> None:
    dialog, _effective = _locked_dialog(qtbot)
    assert dialog.start_at_login_check.isChecked()
    assert not dialog.sound_check.isChecked()
    assert dialog.quiet_hours_check.isChecked()
    assert dialog.quiet_from_edit.time() == QTime(21, 0)
    assert dialog.quiet_to_edit.time() == QTime(6, 0)
    for widget in (
        dialog.start_at_login_check,
        dialog.sound_check,
        dialog.quiet_hours_check,
        dialog.quiet_from_edit,
        dialog.quiet_to_edit,
    ):
        assert not widget.isEnabled(), widget
        assert widget.toolTip() == MANAGED_NOTE
    assert set(dialog.locked_notes) == {"start_at_login", "sound", "quiet_hours"}
    for note in dialog.locked_notes.values():
        assert note.isVisible()
        assert note.text() == note.toolTip() == MANAGED_NOTE
    # An unlocked default stays the user's to change, without a note.
    assert dialog.toasts_check.isEnabled()
    assert "toasts_enabled" not in dialog.locked_notes
    # Turning pop-ups off and on again must not re-enable the locked sound box.
    _toggle(dialog.toasts_check)
    _toggle(dialog.toasts_check)
    assert not dialog.sound_check.isEnabled()


def test_locked_quiet_hours_show_its_value_even_from_the_servers_settings(
    qtbot: QtBot,
) -> None:
    # Handed the server's settings as they are, the dialog still shows IT's.
    dialog = _dialog(qtbot, managed=LOCKING, attention=SERVERS)
    assert not dialog.quiet_hours_check.isEnabled()
    assert dialog.quiet_from_edit.time() == QTime(21, 0)
    assert dialog.quiet_to_edit.time() == QTime(6, 0)
    assert dialog.zone_label.text() == "Quiet hours follow this computer's clock."
    assert dialog.attention_change() == {}


def test_quiet_hours_locked_to_none_are_off_and_disabled(qtbot: QtBot) -> None:
    managed = parse_managed_config('{"quiet_hours": null}', MANAGED_FILE)
    dialog = _dialog(qtbot, managed=managed, attention=SERVERS)
    assert not dialog.quiet_hours_check.isChecked()
    assert not dialog.quiet_hours_check.isEnabled()
    assert not dialog.quiet_from_edit.isEnabled()
    assert dialog.attention_change() == {}


def test_a_click_on_a_locked_setting_changes_nothing(qtbot: QtBot) -> None:
    dialog, effective = _locked_dialog(qtbot)
    _toggle(dialog.start_at_login_check)
    _toggle(dialog.quiet_hours_check)
    assert dialog.start_at_login_check.isChecked()
    assert dialog.quiet_hours_check.isChecked()
    assert dialog.preferences() == effective
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()


def test_locked_values_survive_widgets_set_from_code(qtbot: QtBot) -> None:
    dialog, effective = _locked_dialog(qtbot)
    # Bypass the disabled widgets: set them the way code (or an accessibility tool) could.
    dialog.start_at_login_check.setChecked(False)
    dialog.sound_check.setChecked(True)
    dialog.quiet_hours_check.setChecked(False)
    dialog.quiet_from_edit.setTime(QTime(1, 0))
    assert dialog.preferences() == effective
    assert dialog.attention_change() == {}
    assert not dialog.apply_button.isEnabled()
    # Unlocked changes next to them go out alone: never the locked quiet hours.
    preferences = _record(dialog.preferences_changed)
    changes = _record(dialog.attention_change_requested)
    _toggle(dialog.toasts_check)
    _choose(dialog.min_priority_combo, "high")
    _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert preferences == [replace(effective, toasts_enabled=False)]
    assert changes == [{"min_priority": "high"}]


def test_a_forged_result_does_not_change_the_effective_value() -> None:
    """Whatever a dialog's result says about a locked key, the app's rule keeps IT's value
    in force and out of the user's file (the app applies results through these two calls)."""
    saved = SavedPreferences()
    effective = LOCKING.effective_preferences(saved)
    forged = replace(effective, start_at_login=False, sound=True)
    after = LOCKING.record_choices(saved, forged)
    assert after == saved
    assert LOCKING.effective_preferences(after) == effective


def test_the_managed_section_lists_what_it_set_and_the_file(qtbot: QtBot) -> None:
    dialog, _effective = _locked_dialog(qtbot)
    assert dialog.managed_box.isVisible()
    assert dialog.managed_label.text().splitlines() == [
        "Server address: https://notify.example.com",
        "Start when you log in: on",
        "Sound with pop-ups: off",
        "Quiet hours: 21:00 to 06:00",
        "Pop-ups: on (a default you can change)",
        "Proxy: http://bob:***@proxy.example.com:3128",
    ]
    texts = _shown_texts(dialog)
    assert f"From {MANAGED_FILE}" in texts
    assert not any("hunter2" in text for text in texts)
    assert not dialog.problems_label.isVisible()


def test_problems_in_the_managed_file_are_listed(qtbot: QtBot) -> None:
    managed = parse_managed_config(
        '{\n  "sound": "loud",\n  "start_at_login": true\n}', MANAGED_FILE
    )
    dialog = _dialog(qtbot, managed.effective_preferences(Preferences()), managed=managed)
    assert dialog.problems_label.isVisible()
    assert f"{MANAGED_FILE}, line 2:" in dialog.problems_label.text()
    assert dialog.managed_label.text() == "Start when you log in: on"


def test_nothing_managed_shows_no_managed_section(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, managed=ManagedConfig())
    assert not dialog.managed_box.isVisible()
    assert dialog.locked_notes == {}
    assert all(
        widget.isEnabled()
        for widget in (dialog.start_at_login_check, dialog.sound_check, dialog.quiet_hours_check)
    )


def test_locked_screenshot_is_not_blank_and_fits_a_small_screen(
    qtbot: QtBot, tmp_path: Path
) -> None:
    dialog, _effective = _locked_dialog(qtbot)
    image: QImage = dialog.grab().toImage()
    assert image.save(str(tmp_path / "settings-managed.png"))
    _not_blank(image)
    assert dialog.width() <= 1280
    assert dialog.height() <= 740
    # Every note is shown whole, not cut off at the dialog's edge.
    for note in dialog.locked_notes.values():
        assert note.width() >= note.sizeHint().width(), note.text()
    # Nor is any check box's text (a check box cannot wrap).
    for check in dialog.findChildren(QCheckBox):
        assert check.width() >= check.sizeHint().width(), check.text()


# --- in the app ---------------------------------------------------------------------------

WAIT = 20.0


async def _until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition while the qasync loop runs Qt and asyncio work in between."""
    async with asyncio.timeout(timeout):
        # The conditions span widgets, store and server; no single signal covers them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# The offscreen platform has no tray host either; Qt says so when the icon is shown.
@pytest.mark.qt_log_ignore(
    "No such signal QPlatformNativeInterface::systemTrayWindowChanged",
    r"This plugin does not support propagateSizeHints",
)
def test_the_app_saves_the_retention_clears_the_history_and_logs_out(
    qtbot: QtBot, demo_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings opened from the tray, in the real app logged in to the real server: a
    new retention is saved and applied to the store at once; "Clear local history" empties
    the store, which the server fills again; "Log out" ends the account and asks to log in."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("TRAY_NOTIFIER_MANAGED_FILE", str(tmp_path / "no-managed.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    # The question box would wait for a person: the user says yes.
    monkeypatch.setattr(SettingsDialog, "_ask_to_clear", lambda _self: True)
    options = AppOptions(
        server_url=demo_server.url,
        username="alice",
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        password="demo",
        session_only=True,
    )

    def settings(app: TrayApp) -> SettingsDialog:
        app.tray.settings_requested.emit()
        dialog: SettingsDialog = app._settings_dialog
        assert dialog.isVisible()
        return dialog

    async def scenario() -> None:
        app = TrayApp(options)
        running = asyncio.get_running_loop().create_task(app.run())
        await _until(lambda: app.state.state is ConnectionState.CONNECTED)
        account = app.account
        assert account is not None
        engine = account.engine
        await _until(lambda: not engine.session.replaying and engine.inbox.cursor() > 0)
        cursor = engine.inbox.cursor()
        stored = len(engine.inbox.recent(10_000))
        assert stored > 2

        dialog = settings(app)
        assert dialog.account_label.text() == f"Logged in as alice on {demo_server.url}"
        # The smallest row cap the dialog offers is above the demo's history: hand it a
        # smaller one the way a settings.json set by hand would.
        dialog.retention_rows_combo.addItem("2 notifications", 2)
        _choose(dialog.retention_rows_combo, 2)
        _choose(dialog.retention_days_combo, 30)
        _click(dialog, QDialogButtonBox.StandardButton.Ok)
        saved = json.loads((options.config_dir / "settings.json").read_text(encoding="utf-8"))
        assert (saved["retention_days"], saved["retention_rows"]) == (30, 2)
        assert (app.settings.retention_days, app.settings.retention_rows) == (30, 2)
        assert len(engine.inbox.recent(10_000)) == 2  # applied now, not at the next start

        dialog = settings(app)
        _press(dialog.clear_history_button)
        assert engine.inbox.recent(10_000) == []
        assert engine.inbox.cursor() == 0
        # The server's notifications come back at once, not at the next reconnect.
        await _until(lambda: engine.inbox.cursor() == cursor)
        assert len(engine.inbox.recent(10_000)) == stored
        dialog.reject()

        dialog = settings(app)
        _press(dialog.logout_button)
        await _until(lambda: app.account is None and app.login is not None)
        assert not dialog.isVisible()

        app.tray.quit_requested.emit()
        async with asyncio.timeout(WAIT):
            await running

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(scenario())
