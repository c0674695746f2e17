"""The login dialog: server address, username, password and "remember me".

Passive like every widget here: the form's rule (:func:`check_login_form`, Qt-free)
says what is missing or wrong before anything is sent; then the dialog emits
``login_submitted`` and waits for the app to call :meth:`LoginDialog.set_busy`,
:meth:`LoginDialog.show_error` or ``accept()``. Every text it shows is plain text.

Every message, the form's and the app's, goes to one place (``error_label``) and is
cleared as soon as the user changes anything: two places (a line under a field and a
line under the form) left a stale one standing, and screen readers announced neither.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent, QFont, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tray_app.account import ServerAddressProblem, normalize_server_url
from tray_app.managed import MANAGED_NOTE
from tray_app.ui.badge import app_icon

__all__ = [
    "MANAGED_NOTE",
    "FormProblem",
    "LoginDialog",
    "LoginField",
    "LoginForm",
    "check_login_form",
]

_ERROR_STYLE = "color: #b3261e;"

LoginField = Literal["server", "username", "password"]
"""A field of the form, as messages name the one at fault."""

_MISSING: tuple[tuple[LoginField, str], ...] = (
    ("server", "the server address"),
    ("username", "your username"),
    ("password", "your password"),
)


class LoginForm(msgspec.Struct, frozen=True):
    """What a valid form submits.

    Attributes:
        server: the full server address (``normalize_server_url``).
        username: the username without surrounding spaces.
        password: the password exactly as typed.
    """

    server: str
    username: str
    password: str


class FormProblem(msgspec.Struct, frozen=True):
    """Why the form cannot be sent.

    Attributes:
        field: the field at fault, the first one when several are.
        message: plain words for the user.
    """

    field: LoginField
    message: str


def check_login_form(server: str, username: str, password: str) -> LoginForm | FormProblem:
    """The form's rule, without Qt: every field filled in, and a usable server address.

    Empty fields are named together ("Enter your username and your password."), so
    the user does not learn of them one submit at a time.

    Args:
        server: the server field as typed.
        username: the username field as typed.
        password: the password field as typed.

    Returns:
        The values to log in with, or the first problem.
    """
    values: dict[LoginField, str] = {
        "server": server.strip(),
        "username": username.strip(),
        "password": password,
    }
    missing = [(field, words) for field, words in _MISSING if not values[field]]
    if missing:
        names = [words for _field, words in missing]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return FormProblem(missing[0][0], f"Enter {listed}.")
    try:
        address = normalize_server_url(server)
    except ServerAddressProblem as problem:
        return FormProblem("server", str(problem))
    return LoginForm(address, values["username"], password)


def _plain_label(text: str = "", *, muted: bool = False, error: bool = False) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if muted:
        label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    if error:
        label.setStyleSheet(_ERROR_STYLE)
        label.setVisible(False)
    return label


def _small(label: QLabel) -> QLabel:
    font = QFont(label.font())
    font.setPointSizeF(max(font.pointSizeF() * 0.9, 7.0))
    label.setFont(font)
    return label


class LoginDialog(QDialog):
    """Asks for the server address, username and password.

    The dialog stays open after a submission: the app logs in, then closes it
    with ``accept()`` or shows the core's message with :meth:`show_error`.

    Signals:
        login_submitted(str, str, str, bool): the user asked to log in with
            (server address, username, password, remember me); sent only when
            the form passed :func:`check_login_form`, with the full address
            (``notify.example.com`` goes out as ``https://notify.example.com``,
            and the dialog shows that address in its field and says so).
        edited(): the user changed the server, username, password or "remember
            me"; the message shown no longer applies and has been cleared.
        cancelled(): the user gave up (Cancel, Escape or closing the window).

    Attributes:
        server_edit: the server address field.
        server_hint: the line under it saying which address was used.
        username_edit: the username field.
        password_edit: the password field (echo mode Password).
        remember_check: the "Remember me" checkbox.
        login_button: the default "Log in" button.
        progress: the indeterminate busy indicator.
        error_label: the one message area: the form's problems and the core's
            messages alike.
    """

    login_submitted = Signal(str, str, str, bool)
    edited = Signal()
    cancelled = Signal()

    def __init__(
        self,
        server_url: str = "",
        username: str = "",
        *,
        server_locked: bool = False,
        remember_me: bool = True,
        keyring_reason: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """Build the dialog.

        Args:
            server_url: the address to pre-fill.
            username: the username to pre-fill (the last one used).
            server_locked: IT set the address: it is shown read-only with a note.
            remember_me: the checkbox's initial state.
            keyring_reason: why the keyring cannot keep the login (from
                ``tray_app.store.secrets``), or ``None`` when it can; when set
                the checkbox is off and disabled and the reason is shown beside
                it (a lasting state, not a message that an edit clears).
            parent: the Qt parent.
        """
        super().__init__(parent)
        self.setWindowTitle("Log in - Tray Notifier")
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(460)
        self._busy = False
        self._focus_before_busy: QWidget | None = None
        self._described: QWidget | None = None

        title = QLabel("Log in to Tray Notifier")
        title.setTextFormat(Qt.TextFormat.PlainText)
        title_font = QFont(title.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.35)
        title_font.setBold(True)
        title.setFont(title_font)
        subtitle = _plain_label("Use your account on your team's notification server.")
        subtitle.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.server_edit = QLineEdit(server_url)
        self.server_edit.setPlaceholderText("notify.example.com")
        self.server_edit.setClearButtonEnabled(not server_locked)
        self._server_note = _small(_plain_label(MANAGED_NOTE, muted=True))
        self._server_note.setToolTip(MANAGED_NOTE)
        self._server_note.setVisible(server_locked)
        if server_locked:
            self.server_edit.setReadOnly(True)
            self.server_edit.setToolTip(MANAGED_NOTE)
            # Read-only fields look editable in most styles: give it the window's colour.
            palette = self.server_edit.palette()
            palette.setColor(QPalette.ColorRole.Base, palette.color(QPalette.ColorRole.Window))
            self.server_edit.setPalette(palette)
        self.server_hint = _small(_plain_label(muted=True))
        # One short line; word wrap would make Qt reserve two.
        self.server_hint.setWordWrap(False)

        self.username_edit = QLineEdit(username)
        self.username_edit.setPlaceholderText("Your username")

        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("Your password")

        self.remember_check = QCheckBox("Remember me on this computer")
        self._keyring_note = _small(_plain_label(keyring_reason or "", muted=True))
        if keyring_reason:
            self.remember_check.setChecked(False)
            self.remember_check.setEnabled(False)
            self.remember_check.setToolTip(keyring_reason)
        else:
            self.remember_check.setChecked(remember_me)
            self._keyring_note.setVisible(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(6)
        form.setHorizontalSpacing(12)
        # Rows that may never show are not added at all: a hidden row still leaves
        # its spacing behind.
        form.addRow(self._row_label("&Server address", self.server_edit), self.server_edit)
        if server_locked:
            form.addRow(_plain_label(), self._server_note)
        self._hint_row = form.rowCount()
        form.addRow(_plain_label(), self.server_hint)
        form.setRowVisible(self._hint_row, False)
        form.addRow(self._row_label("&Username", self.username_edit), self.username_edit)
        form.addRow(self._row_label("&Password", self.password_edit), self.password_edit)
        form.addRow(_plain_label(), self.remember_check)
        if keyring_reason:
            form.addRow(_plain_label(), self._keyring_note)

        self.error_label = _plain_label(error=True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setAccessibleName("Login message")

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # indeterminate: a login has no measurable progress
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(6)
        self.progress.setVisible(False)

        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.login_button = QPushButton("Log in")
        self._buttons.addButton(self.login_button, QDialogButtonBox.ButtonRole.AcceptRole)
        # Accept is the app's to decide, after the server said yes.
        self.login_button.clicked.connect(self._submit)
        self._buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(8)
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(QSize(48, 48), self.devicePixelRatioF()))
        icon.setFixedSize(48, 48)
        heading = QVBoxLayout()
        heading.setSpacing(2)
        heading.addWidget(title)
        heading.addWidget(subtitle)
        header = QHBoxLayout()
        header.setSpacing(14)
        header.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        header.addLayout(heading, 1)
        layout.addLayout(header)
        layout.addSpacing(10)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addSpacing(4)
        layout.addWidget(self.progress)
        layout.addWidget(self._buttons)
        self._form = form
        # Only once the button sits inside the dialog does the dialog learn it is the
        # default, the one Enter presses.
        self.login_button.setDefault(True)

        # textEdited and clicked come from the user only: the dialog's own setText
        # (the address said back) is no edit.
        self.server_edit.textEdited.connect(self._server_edited)
        self.username_edit.textEdited.connect(self._user_edited)
        self.password_edit.textEdited.connect(self._user_edited)
        self.remember_check.clicked.connect(self._user_edited)
        self._fields: dict[LoginField, QLineEdit] = {
            "server": self.server_edit,
            "username": self.username_edit,
            "password": self.password_edit,
        }
        self._first_empty_field().setFocus()

    @staticmethod
    def _row_label(text: str, buddy: QWidget) -> QLabel:
        label = QLabel(text)
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setBuddy(buddy)
        return label

    def _first_empty_field(self) -> QLineEdit:
        for edit in (self.server_edit, self.username_edit, self.password_edit):
            if not edit.text() and not edit.isReadOnly():
                return edit
        return self.password_edit

    def _server_edited(self, _text: str) -> None:
        self._set_hint("")  # it named the address that was there before
        self._user_edited()

    def _user_edited(self, *_args: object) -> None:
        self.clear_message()
        self.edited.emit()

    def _set_hint(self, text: str) -> None:
        self.server_hint.setText(text)
        self.server_hint.setVisible(bool(text))
        self._form.setRowVisible(self._hint_row, bool(text))
        self._fit()

    def _fit(self) -> None:
        if self.isVisible():
            self.adjustSize()  # word-wrapped rows need the height back

    @property
    def message(self) -> str:
        """The message shown in the message area; empty when there is none."""
        return self.error_label.text()

    @property
    def hint(self) -> str:
        """The line under the server field ("Using https://..."); empty when hidden."""
        return self.server_hint.text()

    def _submit(self) -> None:
        if self._busy:
            return
        typed = self.server_edit.text()
        checked = check_login_form(typed, self.username_edit.text(), self.password_edit.text())
        if isinstance(checked, FormProblem):
            self.show_error(checked.message, field=checked.field)
            return
        self.clear_message()
        if checked.server != typed.strip():
            # Say back what will be used, so a guessed https:// is never a surprise.
            self.server_edit.setText(checked.server)
            self._set_hint(f"Using {checked.server}")
        self.login_submitted.emit(
            checked.server, checked.username, checked.password, self.remember_check.isChecked()
        )

    def set_busy(self, busy: bool) -> None:
        """Show or hide the busy indicator; while busy the fields cannot be edited.

        Going busy clears the message: it was about the previous attempt.

        Args:
            busy: True while a login is running.
        """
        if busy and not self._busy:
            self._focus_before_busy = self.focusWidget()
        self._busy = busy
        self.progress.setVisible(busy)
        for edit in (self.server_edit, self.username_edit, self.password_edit):
            edit.setEnabled(not busy)
        self.remember_check.setEnabled(not busy and not self._keyring_note.text())
        self.login_button.setEnabled(not busy)
        self.login_button.setText("Logging in…" if busy else "Log in")
        if busy:
            self.clear_message()
        elif self._focus_before_busy is not None:
            # Disabling the focused field moved the focus away; give it back.
            before, self._focus_before_busy = self._focus_before_busy, None
            if before.isEnabled():
                before.setFocus()

    def show_error(
        self, message: str, *, field: LoginField | None = "password", announce: bool = True
    ) -> None:
        """Show a plain-language message in the message area and end the busy state.

        Args:
            message: shown as plain text (never interpreted as HTML).
            field: the field at fault: it gets the focus (the password also gets
                selected, ready to be retyped) and the message as its accessible
                description; None leaves the focus where it is.
            announce: tell assistive technology now; False for a message that only
                updates the one before (a countdown), which would be noise.
        """
        self.set_busy(False)
        self._describe(None)
        was_shown = self.error_label.isVisibleTo(self)
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        # Where a screen reader looks for it: the area itself, the dialog (the form's
        # status) and the field the focus goes to.
        self.error_label.setAccessibleDescription(message)
        self.setAccessibleDescription(message)
        if announce or not was_shown:
            # Not on every tick of a countdown: it would undo the user's own resizing
            # once a second.
            self._fit()
        edit = self._fields[field] if field is not None else None
        if edit is not None and not edit.isReadOnly():
            self._describe(edit, message)
            edit.setFocus()
            if edit is self.password_edit:
                edit.selectAll()
        if announce and message:
            event = QAccessibleAnnouncementEvent(self.error_label, message)
            event.setPoliteness(QAccessible.AnnouncementPoliteness.Assertive)
            QAccessible.updateAccessibility(event)

    def _describe(self, edit: QWidget | None, message: str = "") -> None:
        if self._described is not None:
            self._described.setAccessibleDescription("")
        self._described = edit
        if edit is not None:
            edit.setAccessibleDescription(message)

    def clear_message(self) -> None:
        """Hide the message area's message (and its accessible descriptions)."""
        self._describe(None)
        if not self.error_label.text():
            return
        self.error_label.setText("")
        self.error_label.setVisible(False)
        self.error_label.setAccessibleDescription("")
        self.setAccessibleDescription("")
        self._fit()

    @property
    def busy(self) -> bool:
        """Whether a login is shown as running."""
        return self._busy

    def reject(self) -> None:
        """Close the dialog and emit ``cancelled`` (Cancel, Escape, the close button)."""
        self.cancelled.emit()
        super().reject()
