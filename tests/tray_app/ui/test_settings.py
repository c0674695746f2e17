"""The settings dialog edits a copy of the preferences and emits the new value on OK/Apply;
settings IT locked are disabled, say so, and never change; what IT set is listed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QTime
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QCheckBox, QDialogButtonBox, QLabel, QListWidgetItem
from pytestqt.qtbot import QtBot

from tray_app.managed import MANAGED_NOTE, ManagedConfig, parse_managed_config
from tray_app.preferences import Preferences, SavedPreferences
from tray_app.ui.settings import SettingsDialog, describe_dnd

# The offscreen platform plugin cannot pass a window's size hints on and says so
# whenever a laid-out top-level window is shown; no other Qt warning is tolerated.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

HOSTILE = "<b>x</b><img src=x>"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PROJECTS = [(1, "Mobile App"), (2, "Website"), (3, HOSTILE)]


def _dialog(
    qtbot: QtBot,
    preferences: Preferences,
    projects: list[tuple[int, str]] = PROJECTS,
    managed: ManagedConfig | None = None,
) -> SettingsDialog:
    dialog = SettingsDialog(preferences, projects, managed=managed, now=lambda: NOW)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _toggle(check: QCheckBox) -> None:
    # A checkbox stretched across the dialog only reacts on its box and text, not
    # at the widget's centre, where a plain mouseClick would land.
    QTest.mouseClick(check, Qt.MouseButton.LeftButton, pos=QPoint(8, check.height() // 2))


def _click(dialog: SettingsDialog, which: QDialogButtonBox.StandardButton) -> None:
    QTest.mouseClick(dialog._buttons.button(which), Qt.MouseButton.LeftButton)


def _project_item(dialog: SettingsDialog, project_id: int) -> QListWidgetItem:
    for row in range(dialog.projects_list.count()):
        item = dialog.projects_list.item(row)
        if item.data(Qt.ItemDataRole.UserRole) == project_id:
            return item
    raise AssertionError(f"project {project_id} not listed")


def test_shows_the_given_preferences(qtbot: QtBot) -> None:
    preferences = Preferences(
        toasts_enabled=True,
        sound=False,
        quiet_hours=(time(21, 30), time(6, 15)),
        muted_projects=frozenset({2}),
        start_at_login=True,
    )
    dialog = _dialog(qtbot, preferences)
    assert dialog.start_at_login_check.isChecked()
    assert dialog.toasts_check.isChecked()
    assert not dialog.sound_check.isChecked()
    assert dialog.quiet_hours_check.isChecked()
    assert dialog.quiet_from_edit.time() == QTime(21, 30)
    assert dialog.quiet_to_edit.time() == QTime(6, 15)
    checked = {
        dialog.projects_list.item(row).data(Qt.ItemDataRole.UserRole)
        for row in range(dialog.projects_list.count())
        if dialog.projects_list.item(row).checkState() == Qt.CheckState.Checked
    }
    assert checked == {2}
    assert dialog.preferences() == preferences
    assert not dialog.apply_button.isEnabled()  # nothing changed yet


def test_no_quiet_hours_shows_disabled_defaults(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, Preferences())
    assert not dialog.quiet_hours_check.isChecked()
    assert not dialog.quiet_from_edit.isEnabled()
    assert not dialog.quiet_to_edit.isEnabled()
    _toggle(dialog.quiet_hours_check)
    assert dialog.quiet_from_edit.isEnabled()
    assert dialog.preferences().quiet_hours == (time(22, 0), time(7, 0))


def test_apply_emits_every_edit_and_keeps_the_dialog_open(qtbot: QtBot) -> None:
    original = Preferences(
        dnd_until=NOW + timedelta(hours=1), remember_me=False, muted_projects=frozenset({99})
    )
    dialog = _dialog(qtbot, original)
    _toggle(dialog.start_at_login_check)
    _toggle(dialog.sound_check)
    dialog.quiet_hours_check.setChecked(True)
    dialog.quiet_from_edit.setTime(QTime(23, 0))
    dialog.quiet_to_edit.setTime(QTime(6, 30))
    _project_item(dialog, 1).setCheckState(Qt.CheckState.Checked)
    _project_item(dialog, 3).setCheckState(Qt.CheckState.Checked)
    assert dialog.apply_button.isEnabled()
    with qtbot.waitSignal(dialog.preferences_changed, timeout=1000) as blocker:
        _click(dialog, QDialogButtonBox.StandardButton.Apply)
    emitted = blocker.args[0]
    assert emitted == dataclasses.replace(
        original,
        start_at_login=True,
        sound=False,
        quiet_hours=(time(23, 0), time(6, 30)),
        # 99 is not in the list (a project the user left?): its mute is kept.
        muted_projects=frozenset({1, 3, 99}),
    )
    assert emitted.dnd_until == original.dnd_until
    assert emitted.remember_me is False
    assert original == Preferences(  # the caller's object is untouched
        dnd_until=NOW + timedelta(hours=1), remember_me=False, muted_projects=frozenset({99})
    )
    assert dialog.isVisible()
    assert not dialog.apply_button.isEnabled()
    # OK right after Apply has nothing new to send.
    with qtbot.assertNotEmitted(dialog.preferences_changed):
        _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert not dialog.isVisible()


def test_ok_emits_unapplied_changes_and_closes(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, Preferences(muted_projects=frozenset({2})))
    _project_item(dialog, 2).setCheckState(Qt.CheckState.Unchecked)
    _toggle(dialog.toasts_check)
    assert not dialog.sound_check.isEnabled()  # no pop-ups, no pop-up sound
    with qtbot.waitSignal(dialog.preferences_changed, timeout=1000) as blocker:
        _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert blocker.args[0] == Preferences(toasts_enabled=False, muted_projects=frozenset())
    assert dialog.result() == SettingsDialog.DialogCode.Accepted


def test_cancel_emits_nothing(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, Preferences())
    _toggle(dialog.start_at_login_check)
    with qtbot.assertNotEmitted(dialog.preferences_changed):
        _click(dialog, QDialogButtonBox.StandardButton.Cancel)
    assert dialog.result() == SettingsDialog.DialogCode.Rejected


def test_undoing_a_change_disables_apply(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, Preferences())
    _toggle(dialog.toasts_check)
    assert dialog.apply_button.isEnabled()
    _toggle(dialog.toasts_check)
    assert not dialog.apply_button.isEnabled()


def test_project_names_are_plain_text_and_elided(qtbot: QtBot) -> None:
    long_name = "A project with a very long name " * 6
    dialog = _dialog(qtbot, Preferences(), [(1, HOSTILE), (2, long_name)])
    assert _project_item(dialog, 1).text() == HOSTILE  # shown as typed, never as markup
    assert _project_item(dialog, 2).toolTip() == long_name
    assert dialog.projects_list.textElideMode() == Qt.TextElideMode.ElideRight
    for label in dialog.findChildren(QLabel):
        if label.text():
            assert label.textFormat() == Qt.TextFormat.PlainText, label.text()


def test_no_projects_says_so(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, Preferences(muted_projects=frozenset({5})), [])
    assert not dialog.projects_list.isVisible()
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert "You are not a member of any project yet." in texts
    assert dialog.preferences().muted_projects == frozenset({5})


def test_dnd_status_line(qtbot: QtBot) -> None:
    until = NOW + timedelta(hours=2)
    dialog = _dialog(qtbot, Preferences(dnd_until=until))
    assert dialog.dnd_label.text() == describe_dnd(until, NOW)
    assert until.astimezone().strftime("%H:%M") in dialog.dnd_label.text()
    assert dialog.dnd_label.text().startswith("Do not disturb is on until")


def test_describe_dnd() -> None:
    assert describe_dnd(None, NOW).startswith("Do not disturb is off")
    assert describe_dnd(NOW - timedelta(minutes=1), NOW).startswith("Do not disturb is off")
    tomorrow = NOW + timedelta(days=1, hours=1)
    text = describe_dnd(tomorrow, NOW)
    assert tomorrow.astimezone().strftime("%a %d %b, %H:%M") in text


def test_screenshot_is_not_blank(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = _dialog(
        qtbot,
        Preferences(
            quiet_hours=(time(22), time(7)),
            muted_projects=frozenset({2}),
            dnd_until=NOW + timedelta(hours=1),
        ),
    )
    image: QImage = dialog.grab().toImage()
    assert image.save(str(tmp_path / "settings.png"))
    colours = {
        image.pixel(x, y) for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
    }
    assert len(colours) > 20


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


def _locked_dialog(qtbot: QtBot) -> tuple[SettingsDialog, Preferences]:
    # The app opens the dialog on the effective preferences: IT's values already applied.
    effective = LOCKING.effective_preferences(SavedPreferences().choose(toasts_enabled=True))
    return _dialog(qtbot, effective, managed=LOCKING), effective


def test_locked_settings_are_disabled_with_a_visible_note(qtbot: QtBot) -> None:
    dialog, _effective = _locked_dialog(qtbot)
    assert dialog.start_at_login_check.isChecked()
    assert not dialog.sound_check.isChecked()
    assert dialog.quiet_from_edit.time() == QTime(21, 0)
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


def test_a_click_on_a_locked_setting_changes_nothing(qtbot: QtBot) -> None:
    dialog, effective = _locked_dialog(qtbot)
    _toggle(dialog.start_at_login_check)
    assert dialog.start_at_login_check.isChecked()
    assert dialog.preferences() == effective
    assert not dialog.apply_button.isEnabled()


def test_locked_values_survive_widgets_set_from_code(qtbot: QtBot) -> None:
    dialog, effective = _locked_dialog(qtbot)
    # Bypass the disabled widgets: set them the way code (or an accessibility tool) could.
    dialog.start_at_login_check.setChecked(False)
    dialog.sound_check.setChecked(True)
    dialog.quiet_hours_check.setChecked(False)
    dialog.quiet_from_edit.setTime(QTime(1, 0))
    assert dialog.preferences() == effective
    assert not dialog.apply_button.isEnabled()
    # An unlocked change next to them goes out alone.
    _toggle(dialog.toasts_check)
    with qtbot.waitSignal(dialog.preferences_changed, timeout=1000) as blocker:
        _click(dialog, QDialogButtonBox.StandardButton.Ok)
    assert blocker.args[0] == dataclasses.replace(effective, toasts_enabled=False)


def test_a_forged_result_does_not_change_the_effective_value() -> None:
    """Whatever a dialog's result says about a locked key, the app's rule keeps IT's value
    in force and out of the user's file (the app applies results through these two calls)."""
    saved = SavedPreferences()
    effective = LOCKING.effective_preferences(saved)
    forged = dataclasses.replace(effective, start_at_login=False, sound=True, quiet_hours=None)
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
    texts = [label.text() for label in dialog.findChildren(QLabel)]
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
    dialog = _dialog(qtbot, Preferences())
    assert not dialog.managed_box.isVisible()
    assert dialog.locked_notes == {}
    assert all(
        widget.isEnabled()
        for widget in (dialog.start_at_login_check, dialog.sound_check, dialog.quiet_hours_check)
    )


def test_locked_screenshot_is_not_blank(qtbot: QtBot, tmp_path: Path) -> None:
    dialog, _effective = _locked_dialog(qtbot)
    image: QImage = dialog.grab().toImage()
    assert image.save(str(tmp_path / "settings-managed.png"))
    colours = {
        image.pixel(x, y) for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
    }
    assert len(colours) > 20
    # Every note is shown whole, not cut off at the dialog's edge.
    for note in dialog.locked_notes.values():
        assert note.width() >= note.sizeHint().width(), note.text()
