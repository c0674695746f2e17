"""The login dialog: server address, username, password and "remember me".

Passive like every widget here: it checks what it can check locally (empty
fields, an http/https address), then emits ``login_submitted`` and waits for
the app to call :meth:`LoginDialog.set_busy`, :meth:`LoginDialog.show_error`
or ``accept()``. Every text it shows is plain text.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QPalette
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

from tray_app.managed import MANAGED_NOTE
from tray_app.ui.badge import app_icon

__all__ = ["MANAGED_NOTE", "LoginDialog", "validate_server_url"]

_ERROR_STYLE = "color: #b3261e;"


def validate_server_url(text: str) -> tuple[str, str | None]:
    """Check a server address typed by the user.

    Args:
        text: what the user typed.

    Returns:
        ``(normalized, problem)``: the address without surrounding spaces or
        trailing slashes, and a plain-language problem or ``None`` when it is
        usable.
    """
    address = text.strip().rstrip("/")
    if not address:
        return address, "Enter the server address."
    try:
        parts = urlsplit(address)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return address, "The port number is not valid."
    if parts.scheme not in ("http", "https"):
        return address, "The address must start with https:// or http://."
    if not host:
        return address, "The address has no server name."
    return address, None


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


def _field_error() -> QLabel:
    # One short line under a field; word wrap would make Qt reserve two lines.
    label = _small(_plain_label(error=True))
    label.setWordWrap(False)
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
            every field passed the local checks.
        cancelled(): the user gave up (Cancel, Escape or closing the window).

    Attributes:
        server_edit: the server address field.
        username_edit: the username field.
        password_edit: the password field (echo mode Password).
        remember_check: the "Remember me" checkbox.
        login_button: the default "Log in" button.
        progress: the indeterminate busy indicator.
        error_label: where the core's message is shown.
    """

    login_submitted = Signal(str, str, str, bool)
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
                the checkbox is off and disabled and the reason is shown.
            parent: the Qt parent.
        """
        super().__init__(parent)
        self.setWindowTitle("Log in - Tray Notifier")
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(460)
        self._busy = False

        title = QLabel("Log in to Tray Notifier")
        title.setTextFormat(Qt.TextFormat.PlainText)
        title_font = QFont(title.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.35)
        title_font.setBold(True)
        title.setFont(title_font)
        subtitle = _plain_label("Use your account on your team's notification server.")
        subtitle.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.server_edit = QLineEdit(server_url)
        self.server_edit.setPlaceholderText("https://notify.example.com")
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
        self._server_error = _field_error()

        self.username_edit = QLineEdit(username)
        self.username_edit.setPlaceholderText("Your username")
        self._username_error = _field_error()

        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("Your password")
        self._password_error = _field_error()

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
        self._field_errors: dict[str, tuple[int, QLabel]] = {}
        self._field_errors["server"] = (form.rowCount(), self._server_error)
        form.addRow(_plain_label(), self._server_error)
        form.addRow(self._row_label("&Username", self.username_edit), self.username_edit)
        self._field_errors["username"] = (form.rowCount(), self._username_error)
        form.addRow(_plain_label(), self._username_error)
        form.addRow(self._row_label("&Password", self.password_edit), self.password_edit)
        self._field_errors["password"] = (form.rowCount(), self._password_error)
        form.addRow(_plain_label(), self._password_error)
        form.addRow(_plain_label(), self.remember_check)
        if keyring_reason:
            form.addRow(_plain_label(), self._keyring_note)
        for row, _label in self._field_errors.values():
            form.setRowVisible(row, False)

        self.error_label = _plain_label(error=True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

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

        self.server_edit.textEdited.connect(lambda _text: self._set_field_error("server", None))
        self.username_edit.textEdited.connect(lambda _text: self._set_field_error("username", None))
        self.password_edit.textEdited.connect(lambda _text: self._set_field_error("password", None))
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

    def _set_field_error(self, field: str, message: str | None) -> None:
        row, label = self._field_errors[field]
        label.setText(message or "")
        label.setVisible(bool(message))
        self._form.setRowVisible(row, bool(message))
        if self.isVisible():
            self.adjustSize()  # word-wrapped rows need the height back

    def field_error(self, field: str) -> str:
        """The inline message under ``field``: ``"server"``, ``"username"`` or
        ``"password"``; empty when there is none."""
        return self._field_errors[field][1].text()

    def _submit(self) -> None:
        if self._busy:
            return
        self.error_label.setVisible(False)
        server, server_problem = validate_server_url(self.server_edit.text())
        username = self.username_edit.text().strip()
        password = self.password_edit.text()
        problems = [
            ("server", self.server_edit, server_problem),
            ("username", self.username_edit, None if username else "Enter your username."),
            ("password", self.password_edit, None if password else "Enter your password."),
        ]
        first_invalid: QLineEdit | None = None
        for field, edit, problem in problems:
            self._set_field_error(field, problem)
            if problem and first_invalid is None:
                first_invalid = edit
        if first_invalid is not None:
            first_invalid.setFocus()
            return
        self.login_submitted.emit(server, username, password, self.remember_check.isChecked())

    def set_busy(self, busy: bool) -> None:
        """Show or hide the busy indicator; while busy the fields cannot be edited.

        Args:
            busy: True while a login is running.
        """
        self._busy = busy
        self.progress.setVisible(busy)
        for edit in (self.server_edit, self.username_edit, self.password_edit):
            edit.setEnabled(not busy)
        self.remember_check.setEnabled(not busy and not self._keyring_note.text())
        self.login_button.setEnabled(not busy)
        self.login_button.setText("Logging in…" if busy else "Log in")
        if busy:
            self.error_label.setVisible(False)

    def show_error(self, message: str) -> None:
        """Show the core's plain-language message and end the busy state.

        Args:
            message: shown as plain text (never interpreted as HTML).
        """
        self.set_busy(False)
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        if self.isVisible():
            self.adjustSize()
        self.password_edit.setFocus()
        self.password_edit.selectAll()

    @property
    def busy(self) -> bool:
        """Whether a login is shown as running."""
        return self._busy

    def reject(self) -> None:
        """Close the dialog and emit ``cancelled`` (Cancel, Escape, the close button)."""
        self.cancelled.emit()
        super().reject()
