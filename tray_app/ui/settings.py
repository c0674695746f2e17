"""The settings dialog: start at login, pop-ups, sound, quiet hours, muted projects.

It edits a copy of :class:`~tray_app.preferences.Preferences` and emits the new
value on OK or Apply; the app saves it and switches start-at-login. It writes no
file itself. Project names are shown as plain text.

Settings IT locked (:mod:`tray_app.managed`) are shown disabled with a note, and
the dialog never reports a change to them; a section lists everything IT set,
the file it came from and any problem in that file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time
from typing import Any

from PySide6.QtCore import Qt, QTime, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QBoxLayout,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTimeEdit,
    QVBoxLayout,
    QWidget,
)

from tray_app.managed import MANAGED_NOTE, ManagedConfig, display_value
from tray_app.preferences import Preferences
from tray_app.ui.badge import app_icon

__all__ = ["DEFAULT_QUIET_HOURS", "SettingsDialog", "describe_dnd"]

DEFAULT_QUIET_HOURS = (time(22, 0), time(7, 0))
_PROJECT_ID_ROLE = Qt.ItemDataRole.UserRole


def describe_dnd(until: datetime | None, now: datetime) -> str:
    """One line saying whether do-not-disturb is on, in the computer's local time.

    Args:
        until: the preference's ``dnd_until`` (aware) or ``None``.
        now: the current aware instant.
    """
    if until is None or now >= until:
        return "Do not disturb is off. You can turn it on from the tray menu."
    local_until = until.astimezone()
    if local_until.date() == now.astimezone().date():
        when = local_until.strftime("%H:%M")
    else:
        when = local_until.strftime("%a %d %b, %H:%M")
    return f"Do not disturb is on until {when}. Only urgent notifications pop up."


def _to_time(value: QTime) -> time:
    return time(value.hour(), value.minute())


def _managed_note() -> QLabel:
    note = _hint(MANAGED_NOTE)
    note.setWordWrap(False)
    note.setToolTip(MANAGED_NOTE)
    return note


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    font = QFont(label.font())
    font.setPointSizeF(max(font.pointSizeF() * 0.9, 7.0))
    label.setFont(font)
    return label


class SettingsDialog(QDialog):
    """Lets the user change their :class:`~tray_app.preferences.Preferences`.

    Signals:
        preferences_changed(object): the user applied new preferences (OK with
            unapplied changes, or Apply); the argument is the new
            :class:`~tray_app.preferences.Preferences`.

    Attributes:
        start_at_login_check: "Start when I log in".
        toasts_check: pop-ups on or off.
        sound_check: sound on or off (only with pop-ups).
        quiet_hours_check: quiet hours on or off.
        quiet_from_edit: when quiet hours start (local time).
        quiet_to_edit: when quiet hours end (local time).
        dnd_label: the do-not-disturb status line.
        projects_list: the projects; a checked one is muted.
        apply_button: the Apply button (enabled when something changed).
        locked_notes: the "Set by your IT department" note of each locked
            preference, by field name.
        managed_box: the section listing what IT set (hidden when nothing is
            managed); its ``managed_label`` and ``problems_label`` hold the text.
    """

    preferences_changed = Signal(object)

    def __init__(
        self,
        preferences: Preferences,
        projects: Sequence[tuple[int, str]],
        *,
        managed: ManagedConfig | None = None,
        now: Callable[[], datetime] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """Build the dialog around a copy of ``preferences``.

        Args:
            preferences: the preferences in force (IT's values already laid
                over the user's); not modified.
            projects: ``(id, name)`` of the user's projects, in display order.
            managed: what IT set; locked preferences are shown disabled and keep
                their value. ``None``: nothing is managed.
            now: the clock for the do-not-disturb line (aware); the real one by default.
            parent: the Qt parent.
        """
        super().__init__(parent)
        self.setWindowTitle("Settings - Tray Notifier")
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(480)
        self._base = dataclasses.replace(preferences)
        self._applied = dataclasses.replace(preferences)
        self._now = now or (lambda: datetime.now(UTC))
        self._managed = managed or ManagedConfig()
        self._locked = self._managed.locked_preferences()
        self.locked_notes: dict[str, QLabel] = {}

        # --- general
        self.start_at_login_check = QCheckBox("Start Tray Notifier when I log in")
        self.start_at_login_check.setChecked(preferences.start_at_login)
        general = QGroupBox("General")
        general_layout = QVBoxLayout(general)
        general_layout.addLayout(self._row("start_at_login", self.start_at_login_check))

        # --- pop-ups
        self.toasts_check = QCheckBox("Show a pop-up for each new notification")
        self.toasts_check.setChecked(preferences.toasts_enabled)
        self.sound_check = QCheckBox("Play a sound with pop-ups")
        self.sound_check.setChecked(preferences.sound)
        self.quiet_hours_check = QCheckBox("Quiet hours from")
        self.quiet_hours_check.setChecked(preferences.quiet_hours is not None)
        start, end = preferences.quiet_hours or DEFAULT_QUIET_HOURS
        self.quiet_from_edit = self._time_edit(start, "Quiet hours start")
        self.quiet_to_edit = self._time_edit(end, "Quiet hours end")
        to_label = QLabel("to")
        to_label.setTextFormat(Qt.TextFormat.PlainText)
        quiet_row = QHBoxLayout()
        quiet_row.setSpacing(8)
        quiet_row.addWidget(self.quiet_hours_check)
        quiet_row.addWidget(self.quiet_from_edit)
        quiet_row.addWidget(to_label)
        quiet_row.addWidget(self.quiet_to_edit)
        quiet_row.addStretch(1)
        self.dnd_label = QLabel(describe_dnd(preferences.dnd_until, self._now()))
        self.dnd_label.setTextFormat(Qt.TextFormat.PlainText)
        self.dnd_label.setWordWrap(True)
        popups = QGroupBox("Pop-ups")
        popups_layout = QVBoxLayout(popups)
        popups_layout.addLayout(self._row("toasts_enabled", self.toasts_check))
        popups_layout.addLayout(self._row("sound", self.sound_check))
        popups_layout.addLayout(quiet_row)
        if "quiet_hours" in self._locked:
            # On a line of its own: the row is already as wide as the dialog.
            self._lock(
                "quiet_hours",
                popups_layout,
                self.quiet_hours_check,
                self.quiet_from_edit,
                self.quiet_to_edit,
            )
        popups_layout.addWidget(
            _hint("Urgent notifications still pop up during quiet hours and do not disturb.")
        )
        popups_layout.addSpacing(4)
        popups_layout.addWidget(self.dnd_label)

        # --- muted projects
        self.projects_list = QListWidget()
        self.projects_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.projects_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.projects_list.setUniformItemSizes(True)
        for project_id, name in projects:
            item = QListWidgetItem(name)
            item.setData(_PROJECT_ID_ROLE, project_id)
            item.setToolTip(name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            muted = project_id in preferences.muted_projects
            item.setCheckState(Qt.CheckState.Checked if muted else Qt.CheckState.Unchecked)
            self.projects_list.addItem(item)
        self.projects_list.setSpacing(2)
        # Tall enough for up to eight projects without scrolling; more scroll.
        row_height = max(self.projects_list.sizeHintForRow(0), 0) + 4
        shown_rows = min(max(len(projects), 3), 8)
        height = shown_rows * row_height + 2 * self.projects_list.frameWidth() + 4
        self.projects_list.setMinimumHeight(height)
        if len(projects) <= 8:
            self.projects_list.setMaximumHeight(height)
        muted_box = QGroupBox("Muted projects")
        muted_layout = QVBoxLayout(muted_box)
        muted_layout.addWidget(
            _hint("Checked projects never pop up; they are still counted and kept.")
        )
        if projects:
            muted_layout.addWidget(self.projects_list)
        else:
            self.projects_list.setVisible(False)
            muted_layout.addWidget(_hint("You are not a member of any project yet."))

        # --- buttons
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
        )
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.setEnabled(False)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.clicked.connect(self._clicked)
        self._buttons = buttons

        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(12)
        layout.addWidget(general)
        layout.addWidget(popups)
        layout.addWidget(muted_box)
        self.managed_box = self._managed_section()
        layout.addWidget(self.managed_box)
        layout.addStretch(1)
        layout.addWidget(buttons)
        # The size hint assumes the wrapped hints at their narrowest; at the real
        # width they need fewer lines, so open exactly as tall as the content.
        self.resize(self.minimumWidth(), layout.totalHeightForWidth(self.minimumWidth()))

        for check in (
            self.start_at_login_check,
            self.toasts_check,
            self.sound_check,
            self.quiet_hours_check,
        ):
            check.toggled.connect(self._changed)
        self.quiet_from_edit.timeChanged.connect(self._changed)
        self.quiet_to_edit.timeChanged.connect(self._changed)
        self.projects_list.itemChanged.connect(self._changed)
        self._changed()

    def _row(self, field: str, check: QCheckBox) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(check)
        if field in self._locked:
            self._lock(field, row, check)
        row.addStretch(1)
        return row

    def _lock(self, field: str, layout: QBoxLayout, *widgets: QWidget) -> None:
        for widget in widgets:
            widget.setEnabled(False)
            widget.setToolTip(MANAGED_NOTE)
        note = _managed_note()
        layout.addWidget(note)
        self.locked_notes[field] = note

    def _managed_section(self) -> QGroupBox:
        managed = self._managed
        box = QGroupBox("Managed by your IT department")
        box_layout = QVBoxLayout(box)
        lines = [
            f"{setting.label}: {display_value(setting)}"
            + ("" if setting.locked else " (a default you can change)")
            for setting in managed.settings
        ]
        if not lines:
            lines = ["Nothing is set by your IT department."]
        self.managed_label = QLabel("\n".join(lines))
        self.managed_label.setTextFormat(Qt.TextFormat.PlainText)
        self.managed_label.setWordWrap(True)
        self.managed_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box_layout.addWidget(self.managed_label)
        box_layout.addWidget(_hint(f"From {managed.source}"))
        problems = "\n".join(
            ["Some of it could not be used, so safe defaults apply instead:", *managed.problems]
            if managed.problems
            else []
        )
        self.problems_label = _hint(problems)
        self.problems_label.setForegroundRole(QPalette.ColorRole.WindowText)
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_label.setVisible(bool(problems))
        box_layout.addWidget(self.problems_label)
        box.setVisible(managed.source is not None)
        return box

    @staticmethod
    def _time_edit(value: time, name: str) -> QTimeEdit:
        edit = QTimeEdit(QTime(value.hour, value.minute))
        edit.setDisplayFormat("HH:mm")
        edit.setAccessibleName(name)
        return edit

    def preferences(self) -> Preferences:
        """The preferences as the dialog shows them now.

        Fields the dialog does not edit (do-not-disturb, remember me) keep their
        values, and so do mutes of projects that are not in the list. Fields IT
        locked keep the value the dialog was opened with, whatever their widgets say.
        """
        listed: set[int] = set()
        muted: set[int] = set()
        for row in range(self.projects_list.count()):
            item = self.projects_list.item(row)
            project_id = int(item.data(_PROJECT_ID_ROLE))
            listed.add(project_id)
            if item.checkState() == Qt.CheckState.Checked:
                muted.add(project_id)
        quiet: tuple[time, time] | None = None
        if self.quiet_hours_check.isChecked():
            quiet = (_to_time(self.quiet_from_edit.time()), _to_time(self.quiet_to_edit.time()))
        shown: dict[str, Any] = {
            "start_at_login": self.start_at_login_check.isChecked(),
            "toasts_enabled": self.toasts_check.isChecked(),
            "sound": self.sound_check.isChecked(),
            "quiet_hours": quiet,
        }
        return dataclasses.replace(
            self._base,
            **{name: value for name, value in shown.items() if name not in self._locked},
            muted_projects=frozenset((self._base.muted_projects - listed) | muted),
        )

    def _changed(self) -> None:
        self.sound_check.setEnabled(self.toasts_check.isChecked() and "sound" not in self._locked)
        quiet = self.quiet_hours_check.isChecked() and "quiet_hours" not in self._locked
        self.quiet_from_edit.setEnabled(quiet)
        self.quiet_to_edit.setEnabled(quiet)
        self.apply_button.setEnabled(self.preferences() != self._applied)

    def _clicked(self, button: QAbstractButton) -> None:
        if button is self.apply_button:
            self.apply()

    def apply(self) -> None:
        """Emit the dialog's preferences when they differ from the last applied ones."""
        current = self.preferences()
        if current != self._applied:
            self._applied = current
            self.preferences_changed.emit(current)
        self.apply_button.setEnabled(False)

    def accept(self) -> None:
        """Apply unapplied changes, then close (OK)."""
        self.apply()
        super().accept()
