"""The settings dialog: the account (who is logged in, log in or out), this computer's
preferences (start at login, pop-ups, sound), how long this computer keeps the local
history, and the user's attention settings, shared by every device (do-not-disturb, quiet
hours, the minimum priority, urgent's break-through, muted projects and event types).

It edits copies and, on OK or Apply, emits the new
:class:`~tray_app.preferences.Preferences`, the new :class:`Retention` and the attention
change (only the settings that changed, as docs/protocol.md words them); the app saves the
first two and hands the last to the server. It writes no file itself. Names (projects, the
user, the server) are shown as plain text.

"Clear local history" empties this computer's copy of the account's notifications and
lets the app download again what the server still has. The local history is a cache
of the server's (the web companion and every other device show the same notifications,
the unread count is the server's): emptying it for good would leave this computer out
of step with all of them, and dropping only old read rows is what the retention does
anyway. A user clears it to start again from a fresh copy, and the confirmation and the
hint say that the notifications come back.

Settings IT locked (:mod:`tray_app.managed`) are shown disabled with a note, and
the dialog never reports a change to them; a section lists everything IT set,
the file it came from and any problem in that file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time
from typing import Any

import msgspec
from msgspec.structs import replace
from PySide6.QtCore import Qt, QTime, Signal, SignalInstance
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QTimeEdit,
    QVBoxLayout,
    QWidget,
)

from tray_app import config
from tray_app.attention import (
    PRIORITIES,
    Attention,
    dnd_change,
    local_time_zone,
    parse_attention,
    quiet_hours_change,
    silence_words,
)
from tray_app.managed import MANAGED_NOTE, ManagedConfig, display_value
from tray_app.preferences import Preferences
from tray_app.ui.badge import app_icon

__all__ = [
    "DEFAULT_QUIET_HOURS",
    "EVENT_TYPE_NAMES",
    "RETENTION_FOREVER_DAYS",
    "Retention",
    "SettingsDialog",
    "account_words",
    "describe_silence",
]

DEFAULT_QUIET_HOURS = (time(22, 0), time(7, 0))
_ID_ROLE = Qt.ItemDataRole.UserRole
# The server's own kinds of events, in words (others a user muted are listed as they are).
EVENT_TYPE_NAMES: dict[str, str] = {
    "task_created": "New tasks",
    "task_assigned": "Tasks assigned",
    "task_status_changed": "Task status changes",
    "task_updated": "Task edits",
    "task_deleted": "Deleted tasks",
    "milestone_created": "New milestones",
    "milestone_updated": "Milestone edits",
    "milestone_deleted": "Deleted milestones",
    "project_created": "New projects",
    "project_updated": "Project edits",
    "project_deleted": "Deleted projects",
    "team_member_added": "New team members",
    "team_member_updated": "Team members' role changes",
    "team_member_removed": "Team members leaving",
    "announcement": "Announcements",
}
_PRIORITY_CHOICES = (
    ("low", "Every priority"),
    ("normal", "Normal and above"),
    ("high", "High and urgent"),
    ("urgent", "Urgent only"),
)
assert tuple(name for name, _ in _PRIORITY_CHOICES) == PRIORITIES

# "Forever" as config.Settings keeps it: the store prunes by age in whole days, so forever
# is an age no notification reaches (a century). The row cap still bounds the file.
RETENTION_FOREVER_DAYS = 36_500
_RETENTION_DAY_CHOICES = (
    (30, "30 days"),
    (90, "90 days"),
    (365, "1 year"),
    (RETENTION_FOREVER_DAYS, "Forever"),
)
_RETENTION_ROW_CHOICES = (10_000, 50_000, 100_000, 500_000)
_CLEAR_HINT = (
    "Removes the notifications stored on this computer. Those the server still has "
    "come back as the app catches up with it."
)


class Retention(msgspec.Struct, frozen=True):
    """How long this computer keeps an account's local history (``retention_days`` and
    ``retention_rows`` of :class:`tray_app.config.Settings`).

    Attributes:
        days: notifications older than this many days are removed;
            :data:`RETENTION_FOREVER_DAYS` means kept whatever their age.
        rows: at most this many are kept, the newest.
    """

    days: int
    rows: int

    @classmethod
    def of(cls, settings: config.Settings) -> Retention:
        """The retention ``settings`` hold."""
        return cls(days=settings.retention_days, rows=settings.retention_rows)


def account_words(username: str | None, server_url: str | None) -> str:
    """ "Logged in as alice on https://server", or "Not logged in"."""
    if not username:
        return "Not logged in"
    return f"Logged in as {username} on {server_url}" if server_url else f"Logged in as {username}"


def describe_silence(attention: Attention, now: datetime) -> str:
    """One line saying whether pop-ups are held back, why, until when, and how to end it."""
    silence = attention.silence(now)
    if silence is None:
        return "Pop-ups are on. Turn on do not disturb from the tray menu."
    urgent = " Urgent notifications still pop up." if attention.urgent_breaks_through else ""
    return f"{silence_words(silence, now)}: pop-ups are held back.{urgent}"


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
    """Lets the user change this computer's preferences, its local history's retention
    and their attention settings, log in or out, and clear the local history.

    Log in and Log out apply what is unapplied, as OK does, and close the dialog: it
    shows one account, and the next one's settings are another dialog's.

    Signals:
        preferences_changed(object): the user applied new preferences (OK with
            unapplied changes, or Apply); the argument is the new
            :class:`~tray_app.preferences.Preferences`.
        retention_changed(object): the user applied a new retention (OK or Apply); the
            argument is the new :class:`Retention`.
        attention_change_requested(object): the user applied attention settings (OK or
            Apply), or turned do-not-disturb off; the argument is the change, a dict of
            the settings that changed (docs/protocol.md, "Attention").
        logout_requested(): the user asked to log out (the dialog has closed).
        login_requested(): the user, logged out, asked to log in (the dialog has closed).
        clear_history_requested(): the user asked, and confirmed, to empty this
            computer's copy of the account's notifications.

    Attributes:
        account_label: who is logged in on which server, or "Not logged in".
        connection_label: the live connection's state and transport ("Connection:
            Connected (HTTP fallback: ...)"); hidden while nobody is logged in.
        logout_button: "Log out" (shown while someone is logged in).
        login_button: "Log in…" (shown while nobody is).
        start_at_login_check: "Start when I log in".
        toasts_check: pop-ups on or off.
        sound_check: sound on or off (only with pop-ups).
        quiet_hours_check: quiet hours on or off.
        quiet_from_edit: when quiet hours start.
        quiet_to_edit: when quiet hours end.
        zone_label: which clock quiet hours follow.
        dnd_label: whether pop-ups are held back now, why and until when.
        dnd_off_button: ends do-not-disturb (shown while it is on).
        min_priority_combo: the lowest priority that pops up.
        urgent_check: urgent ones break through do-not-disturb and quiet hours.
        projects_list: the projects; a checked one is muted.
        event_types_list: kinds of events; a checked one is muted.
        retention_days_combo: how long the local history keeps notifications.
        retention_rows_combo: how many notifications it keeps at most.
        clear_history_button: "Clear local history…" (asks first; needs an account).
        clear_hint: what clearing does (and, once done, that it was).
        apply_button: the Apply button (enabled when something changed).
        locked_notes: the "Set by your IT department" note of each locked
            preference, by field name.
        managed_box: the section listing what IT set (hidden when nothing is
            managed); its ``managed_label`` and ``problems_label`` hold the text.
    """

    preferences_changed = Signal(object)
    retention_changed = Signal(object)
    attention_change_requested = Signal(object)
    logout_requested = Signal()
    login_requested = Signal()
    clear_history_requested = Signal()

    def __init__(
        self,
        preferences: Preferences,
        projects: Sequence[tuple[int, str]],
        *,
        attention: Attention | None = None,
        retention: Retention | None = None,
        username: str | None = None,
        server_url: str | None = None,
        connection: str | None = None,
        managed: ManagedConfig | None = None,
        confirm_clear: Callable[[], bool] | None = None,
        now: Callable[[], datetime] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """Build the dialog around a copy of ``preferences`` and ``attention``.

        Args:
            preferences: the preferences in force (IT's values already laid
                over the user's); not modified.
            projects: ``(id, name)`` of the user's projects, in display order.
            attention: the user's attention settings (None when no one is logged in:
                the dialog then offers none of them).
            retention: the local history's retention; config's defaults when None.
            username: who is logged in (None: nobody; the account section then offers
                to log in and there is no history to clear).
            server_url: the server they are logged in to.
            connection: the live connection in words (``describe_connection``); kept
                up to date with :meth:`show_connection`.
            managed: what IT set; locked preferences are shown disabled and keep
                their value. ``None``: nothing is managed.
            confirm_clear: asked before "Clear local history" goes ahead (True: go);
                a question box by default.
            now: the clock for the do-not-disturb line (aware); the real one by default.
            parent: the Qt parent.
        """
        super().__init__(parent)
        self.setWindowTitle("Settings - Tray Notifier")
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(880)
        self._base = replace(preferences)
        self._applied = replace(preferences)
        self._applied_retention = retention or Retention.of(config.Settings())
        self._username = username or None
        self._confirm_clear = confirm_clear or self._ask_to_clear
        self._now = now or (lambda: datetime.now(UTC))
        self._managed = managed or ManagedConfig()
        self._locked = set(self._managed.locked_preferences())
        quiet_hours_lock = self._managed.quiet_hours_lock()
        if quiet_hours_lock is not False:
            self._locked.add("quiet_hours")
        # IT's lock laid on here too (the app already does): the locked value is what
        # the dialog shows, whatever the server holds.
        self._attention = (attention or Attention()).locked(quiet_hours=quiet_hours_lock)
        self._logged_in = attention is not None
        self.locked_notes: dict[str, QLabel] = {}

        # --- account
        self.account_label = QLabel(account_words(self._username, server_url))
        self.account_label.setTextFormat(Qt.TextFormat.PlainText)
        self.account_label.setWordWrap(True)
        self.account_label.setToolTip(self.account_label.text())
        self.account_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.logout_button = QPushButton("Log out")
        self.logout_button.setAccessibleName("Log out")
        self.logout_button.setVisible(self._username is not None)
        self.logout_button.clicked.connect(lambda: self._leave(self.logout_requested))
        self.login_button = QPushButton("Log in…")
        self.login_button.setAccessibleName("Log in")
        self.login_button.setVisible(self._username is None)
        self.login_button.clicked.connect(lambda: self._leave(self.login_requested))
        self.connection_label = QLabel()
        self.connection_label.setTextFormat(Qt.TextFormat.PlainText)
        self.connection_label.setWordWrap(True)
        self.connection_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_connection(connection)
        account_box = QGroupBox("Account")
        account_row = QHBoxLayout()
        account_row.addWidget(self.account_label, 1)
        account_row.addWidget(self.logout_button)
        account_row.addWidget(self.login_button)
        account_layout = QVBoxLayout(account_box)
        account_layout.addLayout(account_row)
        account_layout.addWidget(self.connection_label)

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
        popups = QGroupBox("Pop-ups on this computer")
        popups_layout = QVBoxLayout(popups)
        popups_layout.addLayout(self._row("toasts_enabled", self.toasts_check))
        popups_layout.addLayout(self._row("sound", self.sound_check))

        # --- attention: every device's
        attention = self._attention
        self.dnd_label = QLabel(describe_silence(attention, self._now()))
        self.dnd_label.setTextFormat(Qt.TextFormat.PlainText)
        self.dnd_label.setWordWrap(True)
        self.dnd_off_button = QPushButton("Turn off do not disturb")
        self.dnd_off_button.setAccessibleName("Turn off do not disturb")
        self.dnd_off_button.setVisible(attention.dnd_active(self._now()))
        self.dnd_off_button.clicked.connect(self._end_dnd)
        dnd_row = QHBoxLayout()
        dnd_row.addWidget(self.dnd_label, 1)
        dnd_row.addWidget(self.dnd_off_button)
        self.quiet_hours_check = QCheckBox("Quiet hours from")
        self.quiet_hours_check.setChecked(attention.quiet_hours is not None)
        start, end = attention.quiet_hours or DEFAULT_QUIET_HOURS
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
        self.min_priority_combo = QComboBox()
        self.min_priority_combo.setAccessibleName("Pop up for")
        for name, words in _PRIORITY_CHOICES:
            self.min_priority_combo.addItem(words, name)
        self.min_priority_combo.setCurrentIndex(PRIORITIES.index(attention.min_priority))
        priority_row = QHBoxLayout()
        priority_label = QLabel("Pop up for")
        priority_label.setTextFormat(Qt.TextFormat.PlainText)
        priority_label.setBuddy(self.min_priority_combo)
        priority_row.addWidget(priority_label)
        priority_row.addWidget(self.min_priority_combo)
        priority_row.addStretch(1)
        self.urgent_check = QCheckBox(
            "Urgent notifications pop up even during do not disturb and quiet hours"
        )
        self.urgent_check.setChecked(attention.urgent_breaks_through)
        interrupt = QGroupBox("When to interrupt you (on every device)")
        interrupt_layout = QVBoxLayout(interrupt)
        interrupt_layout.addLayout(dnd_row)
        interrupt_layout.addLayout(quiet_row)
        if "quiet_hours" in self._locked:
            # On a line of its own: the row is already as wide as the dialog.
            self._lock(
                "quiet_hours",
                interrupt_layout,
                self.quiet_hours_check,
                self.quiet_from_edit,
                self.quiet_to_edit,
            )
        self.zone_label = _hint(self._zone_words())
        interrupt_layout.addWidget(self.zone_label)
        interrupt_layout.addLayout(priority_row)
        interrupt_layout.addWidget(self.urgent_check)

        # --- muted projects and kinds of events
        self.projects_list = self._check_list(
            [(project_id, name) for project_id, name in projects],
            muted=attention.muted_projects,
            name="Muted projects",
        )
        muted_box = QGroupBox("Muted projects")
        muted_layout = QVBoxLayout(muted_box)
        muted_layout.addWidget(
            _hint("Checked projects never pop up; they are still counted and kept.")
        )
        muted_layout.addWidget(self.projects_list)
        if not projects:
            self.projects_list.setVisible(False)
            muted_layout.addWidget(_hint("You are not a member of any project yet."))
        kinds = dict(EVENT_TYPE_NAMES)
        for unknown in sorted(attention.muted_event_types - kinds.keys()):
            kinds[unknown] = unknown
        self.event_types_list = self._check_list(
            list(kinds.items()), muted=attention.muted_event_types, name="Muted kinds of events"
        )
        kinds_box = QGroupBox("Muted kinds of events")
        kinds_layout = QVBoxLayout(kinds_box)
        kinds_layout.addWidget(_hint("Checked kinds never pop up, whatever the project."))
        kinds_layout.addWidget(self.event_types_list)
        for box in (interrupt, muted_box, kinds_box):
            box.setEnabled(self._logged_in)
            if not self._logged_in:
                box.setToolTip("Log in to change these: they are kept on the server.")

        # --- the local history: this computer's, whoever logs in
        self.retention_days_combo = self._choices(
            "Keep notifications for",
            [(days, words) for days, words in _RETENTION_DAY_CHOICES],
            self._applied_retention.days,
            lambda days: f"{days:,} days",
        )
        self.retention_rows_combo = self._choices(
            "Keep at most",
            [(rows, f"{rows:,} notifications") for rows in _RETENTION_ROW_CHOICES],
            self._applied_retention.rows,
            lambda rows: f"{rows:,} notifications",
        )
        self.clear_history_button = QPushButton("Clear local history…")
        self.clear_history_button.setAccessibleName("Clear local history")
        self.clear_history_button.setAccessibleDescription(_CLEAR_HINT)
        self.clear_history_button.setToolTip(_CLEAR_HINT)
        self.clear_history_button.setEnabled(self._username is not None)
        if self._username is None:
            self.clear_history_button.setToolTip("Log in to clear an account's history.")
        self.clear_history_button.clicked.connect(self._clear_history)
        history_box = QGroupBox("History on this computer")
        history_layout = QVBoxLayout(history_box)
        retention_grid = QGridLayout()
        for row, (text, combo) in enumerate(
            (
                ("Keep notifications for", self.retention_days_combo),
                ("and at most", self.retention_rows_combo),
            )
        ):
            label = QLabel(text)
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setBuddy(combo)
            retention_grid.addWidget(label, row, 0)
            retention_grid.addWidget(combo, row, 1)
        retention_grid.setColumnStretch(2, 1)
        history_layout.addLayout(retention_grid)
        history_layout.addWidget(
            _hint("For every account on this computer; older ones go when you apply.")
        )
        clear_row = QHBoxLayout()
        clear_row.addWidget(self.clear_history_button)
        clear_row.addStretch(1)
        history_layout.addLayout(clear_row)
        self.clear_hint = _hint(_CLEAR_HINT)
        history_layout.addWidget(self.clear_hint)

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

        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        left.addWidget(account_box)
        left.addWidget(general)
        left.addWidget(popups)
        left.addWidget(interrupt)
        left.addWidget(history_box)
        left.addStretch(1)
        right.addWidget(muted_box)
        right.addWidget(kinds_box)
        # Below the lists rather than across the dialog: the dialog then fits a
        # 1280x800 screen with everything IT may set.
        self.managed_box = self._managed_section()
        right.addWidget(self.managed_box)
        right.addStretch(1)
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(12)
        layout.addLayout(columns, 1)
        layout.addWidget(buttons)
        # The size hint assumes the wrapped hints at their narrowest; at the real
        # width they need fewer lines, so open exactly as tall as the content.
        width = max(self.minimumWidth(), layout.minimumSize().width())
        self.resize(width, layout.totalHeightForWidth(width))

        for check in (
            self.start_at_login_check,
            self.toasts_check,
            self.sound_check,
            self.quiet_hours_check,
            self.urgent_check,
        ):
            check.toggled.connect(self._changed)
        self.quiet_from_edit.timeChanged.connect(self._changed)
        self.quiet_to_edit.timeChanged.connect(self._changed)
        self.min_priority_combo.currentIndexChanged.connect(self._changed)
        self.retention_days_combo.currentIndexChanged.connect(self._changed)
        self.retention_rows_combo.currentIndexChanged.connect(self._changed)
        self.projects_list.itemChanged.connect(self._changed)
        self.event_types_list.itemChanged.connect(self._changed)
        self._changed()

    def show_connection(self, words: str | None) -> None:
        """The live connection's state in words (None: nobody is logged in)."""
        self.connection_label.setText(f"Connection: {words}" if words else "")
        self.connection_label.setVisible(bool(words) and self._username is not None)

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
    def _choices(
        name: str, choices: Sequence[tuple[int, str]], current: int, words: Callable[[int], str]
    ) -> QComboBox:
        """A combo box of ``choices``; a ``current`` value that is none of them (set by
        hand in settings.json) is listed too, so opening the dialog changes nothing."""
        combo = QComboBox()
        combo.setAccessibleName(name)
        for value, text in choices:
            combo.addItem(text, value)
        if combo.findData(current) < 0:
            combo.addItem(words(current), current)
        combo.setCurrentIndex(combo.findData(current))
        return combo

    @staticmethod
    def _time_edit(value: time, name: str) -> QTimeEdit:
        edit = QTimeEdit(QTime(value.hour, value.minute))
        edit.setDisplayFormat("HH:mm")
        edit.setAccessibleName(name)
        return edit

    def preferences(self) -> Preferences:
        """This computer's preferences as the dialog shows them now.

        Fields the dialog does not edit (remember me) keep their values. Fields IT
        locked keep the value the dialog was opened with, whatever their widgets say.
        """
        shown: dict[str, Any] = {
            "start_at_login": self.start_at_login_check.isChecked(),
            "toasts_enabled": self.toasts_check.isChecked(),
            "sound": self.sound_check.isChecked(),
        }
        return replace(
            self._base,
            **{name: value for name, value in shown.items() if name not in self._locked},
        )

    def retention(self) -> Retention:
        """The local history's retention as the dialog shows it now."""
        return Retention(
            days=int(self.retention_days_combo.currentData()),
            rows=int(self.retention_rows_combo.currentData()),
        )

    def attention_change(self) -> dict[str, Any]:
        """The attention settings the dialog shows that differ from the ones it was
        opened with (or last applied), as a change for the server; empty when none do.
        Mutes of projects or kinds not listed are kept."""
        if not self._logged_in:
            return {}
        base = self._attention
        change: dict[str, Any] = {}
        if "quiet_hours" not in self._locked:
            quiet: tuple[time, time] | None = None
            if self.quiet_hours_check.isChecked():
                quiet = (_to_time(self.quiet_from_edit.time()), _to_time(self.quiet_to_edit.time()))
            if quiet is not None and quiet[0] == quiet[1]:
                quiet = base.quiet_hours  # an empty range is not a choice: keep what was
            if quiet != base.quiet_hours:
                change.update(quiet_hours_change(quiet, time_zone=local_time_zone()))
        priority = str(self.min_priority_combo.currentData())
        if priority != base.min_priority:
            change["min_priority"] = priority
        if self.urgent_check.isChecked() != base.urgent_breaks_through:
            change["urgent_breaks_through"] = self.urgent_check.isChecked()
        projects = _checked(self.projects_list, base.muted_projects)
        if projects != base.muted_projects:
            change["muted_projects"] = sorted(int(p) for p in projects)
        kinds = _checked(self.event_types_list, base.muted_event_types)
        if kinds != base.muted_event_types:
            change["muted_event_types"] = sorted(str(k) for k in kinds)
        return change

    def _zone_words(self) -> str:
        zone = self._attention.time_zone
        here = local_time_zone()
        if zone is None or zone == here:
            return "Quiet hours follow this computer's clock."
        return f"Quiet hours are in {zone} (set on another device); saving here uses {here}."

    def _leave(self, request: SignalInstance) -> None:
        """Log in or out: what is unapplied is applied (as OK), the dialog closes, and
        ``request`` (a signal) is emitted."""
        self.accept()
        request.emit()

    def _clear_history(self) -> None:
        if not self._confirm_clear():
            return
        self.clear_history_requested.emit()
        self.clear_hint.setText(
            "Cleared. Notifications the server still has come back as the app catches up."
        )

    def _ask_to_clear(self) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Clear local history",
            f"Remove the notifications stored on this computer for {self._username}?",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setInformativeText(
            "They stay on the server: those it still has are downloaded again as the app "
            "catches up, with their read marks."
        )
        clear = box.addButton("Clear", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() == clear

    def _end_dnd(self) -> None:
        self.attention_change_requested.emit(dnd_change(None, on=False))
        self.dnd_off_button.setVisible(False)
        self.dnd_label.setText("Do not disturb is turning off.")

    def _check_list(
        self, entries: Sequence[tuple[Any, str]], *, muted: frozenset[Any], name: str
    ) -> QListWidget:
        listing = QListWidget()
        listing.setAccessibleName(name)
        listing.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        listing.setTextElideMode(Qt.TextElideMode.ElideRight)
        listing.setUniformItemSizes(True)
        for key, name in entries:
            item = QListWidgetItem(name)
            item.setData(_ID_ROLE, key)
            item.setToolTip(name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if key in muted else Qt.CheckState.Unchecked)
            listing.addItem(item)
        listing.setSpacing(2)
        # Tall enough for up to eight entries without scrolling; more scroll.
        row_height = max(listing.sizeHintForRow(0), 0) + 4
        shown_rows = min(max(len(entries), 3), 8)
        height = shown_rows * row_height + 2 * listing.frameWidth() + 4
        listing.setMinimumHeight(height)
        if len(entries) <= 8:
            listing.setMaximumHeight(height)
        return listing

    def _changed(self) -> None:
        self.sound_check.setEnabled(self.toasts_check.isChecked() and "sound" not in self._locked)
        quiet = self.quiet_hours_check.isChecked() and "quiet_hours" not in self._locked
        self.quiet_from_edit.setEnabled(quiet)
        self.quiet_to_edit.setEnabled(quiet)
        changed = (
            self.preferences() != self._applied
            or self.retention() != self._applied_retention
            or bool(self.attention_change())
        )
        self.apply_button.setEnabled(changed)

    def _clicked(self, button: QAbstractButton) -> None:
        if button is self.apply_button:
            self.apply()

    def apply(self) -> None:
        """Emit the dialog's preferences, retention and attention change when they differ
        from the last applied ones."""
        current = self.preferences()
        if current != self._applied:
            self._applied = current
            self.preferences_changed.emit(current)
        retention = self.retention()
        if retention != self._applied_retention:
            self._applied_retention = retention
            self.retention_changed.emit(retention)
        change = self.attention_change()
        if change:
            # What was applied is the new base, merged as the engine merges a change.
            self._attention = parse_attention({**self._attention.payload(), **change})
            self.attention_change_requested.emit(change)
        self.apply_button.setEnabled(False)

    def accept(self) -> None:
        """Apply unapplied changes, then close (OK)."""
        self.apply()
        super().accept()


def _checked(listing: QListWidget, before: frozenset[Any]) -> frozenset[Any]:
    """The keys checked in ``listing``, with those of ``before`` it does not list."""
    listed: set[Any] = set()
    checked: set[Any] = set()
    for row in range(listing.count()):
        item = listing.item(row)
        key = item.data(_ID_ROLE)
        listed.add(key)
        if item.checkState() == Qt.CheckState.Checked:
            checked.add(key)
    return frozenset((before - listed) | checked)
