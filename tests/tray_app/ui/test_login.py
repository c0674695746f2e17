"""The login dialog: the form's rule, the submitted values, busy state, and every message
in one plain-text area that an edit clears."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from tray_app.ui.login import (
    MANAGED_NOTE,
    FormProblem,
    LoginDialog,
    LoginForm,
    check_login_form,
)

# The offscreen platform plugin cannot pass a window's size hints on and says so
# whenever a laid-out top-level window is shown; no other Qt warning is tolerated.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

HOSTILE = "<b>x</b><img src=x>"
KEYRING_REASON = (
    "No keyring service is running (such as GNOME Keyring or KWallet), so the app cannot "
    "remember your login."
)


def _dialog(qtbot: QtBot, *args: object, **kwargs: object) -> LoginDialog:
    dialog = LoginDialog(*args, **kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _distinct_colours(image: QImage) -> int:
    colours = set()
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            colours.add(image.pixel(x, y))
    return len(colours)


@pytest.mark.parametrize(
    ("server", "username", "password", "expected"),
    [
        (
            " notify.example.com/ ",
            " alice ",
            " pass word ",
            LoginForm("https://notify.example.com", "alice", " pass word "),
        ),
        (
            "",
            "",
            "",
            FormProblem("server", "Enter the server address, your username and your password."),
        ),
        ("x.example", " ", "", FormProblem("username", "Enter your username and your password.")),
        ("x.example", "alice", "", FormProblem("password", "Enter your password.")),
        # Empty fields first: the address is judged once everything is filled in.
        ("ftp://x", "", "pw", FormProblem("username", "Enter your username.")),
        (
            "http://host:notaport",
            "alice",
            "pw",
            FormProblem("server", "The port must be a number from 1 to 65535."),
        ),
    ],
)
def test_check_login_form(
    server: str, username: str, password: str, expected: LoginForm | FormProblem
) -> None:
    assert check_login_form(server, username, password) == expected


def test_prefilled_fields_and_password_echo(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice")
    assert dialog.server_edit.text() == "http://127.0.0.1:8000"
    assert dialog.username_edit.text() == "alice"
    assert dialog.password_edit.echoMode() == QLineEdit.EchoMode.Password
    assert not dialog.server_edit.isReadOnly()
    assert dialog.remember_check.isChecked()
    assert dialog.remember_check.isEnabled()
    assert not dialog.progress.isVisible()
    assert dialog.focusWidget() is dialog.password_edit  # the first empty field


def test_enter_submits_the_trimmed_values(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "https://notify.example.com/", " alice ")
    QTest.keyClicks(dialog.password_edit, " pass word ")
    with qtbot.waitSignal(dialog.login_submitted, timeout=1000) as blocker:
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    # The password is sent exactly as typed; the address and username are trimmed.
    assert blocker.args == ["https://notify.example.com", "alice", " pass word ", True]
    assert dialog.isVisible()  # the app closes it once the server said yes


def test_login_button_submits_with_remember_off(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "bob", remember_me=False)
    dialog.password_edit.setText("demo")
    with qtbot.waitSignal(dialog.login_submitted, timeout=1000) as blocker:
        QTest.mouseClick(dialog.login_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["http://127.0.0.1:8000", "bob", "demo", False]


def test_empty_fields_are_one_message_and_an_edit_clears_it(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    with qtbot.assertNotEmitted(dialog.login_submitted):
        QTest.mouseClick(dialog.login_button, Qt.MouseButton.LeftButton)
    message = "Enter the server address, your username and your password."
    assert dialog.message == message
    assert dialog.error_label.isVisible()
    # No second place for messages: the area is the only label saying it.
    saying = [label for label in dialog.findChildren(type(dialog.error_label)) if label.text()]
    assert [label for label in saying if "Enter" in label.text()] == [dialog.error_label]
    assert dialog.focusWidget() is dialog.server_edit  # the first field at fault
    assert dialog.server_edit.accessibleDescription() == message
    # Typing into any field clears it, and says so.
    with qtbot.waitSignal(dialog.edited, timeout=1000):
        QTest.keyClicks(dialog.username_edit, "a")
    assert dialog.message == ""
    assert not dialog.error_label.isVisible()
    assert dialog.server_edit.accessibleDescription() == ""
    assert dialog.accessibleDescription() == ""


@pytest.mark.parametrize("field", ["server", "username", "password", "remember"])
def test_an_edit_of_any_field_clears_the_message(qtbot: QtBot, field: str) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice")
    dialog.password_edit.setText("pw")
    dialog.show_error("Wrong username or password.")
    assert dialog.message == "Wrong username or password."
    with qtbot.waitSignal(dialog.edited, timeout=1000):
        if field == "remember":
            QTest.mouseClick(dialog.remember_check, Qt.MouseButton.LeftButton)
        else:
            edit = getattr(dialog, f"{field}_edit")
            QTest.keyClick(edit, Qt.Key.Key_End)
            QTest.keyClicks(edit, "x")
    assert dialog.message == ""
    assert not dialog.error_label.isVisible()


def test_the_message_area_is_named_and_described_for_screen_readers(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice")
    area = QAccessible.queryAccessibleInterface(dialog.error_label)
    assert area.text(QAccessible.Text.Name) == "Login message"
    dialog.show_error("Wrong username or password.")
    assert area.text(QAccessible.Text.Description) == "Wrong username or password."
    assert dialog.accessibleDescription() == "Wrong username or password."  # the form's status
    field = QAccessible.queryAccessibleInterface(dialog.password_edit)
    assert field.text(QAccessible.Text.Description) == "Wrong username or password."
    assert dialog.focusWidget() is dialog.password_edit


def test_messages_are_announced_and_a_countdown_is_not(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced: list[str] = []

    def record(event: QAccessibleAnnouncementEvent) -> None:
        assert event.politeness() == QAccessible.AnnouncementPoliteness.Assertive
        announced.append(event.message())

    # Offscreen Qt has no assistive technology listening: the call itself is the record.
    monkeypatch.setattr(QAccessible, "updateAccessibility", staticmethod(record))
    dialog = _dialog(qtbot, "", "alice")
    dialog.password_edit.setText("pw")
    QTest.mouseClick(dialog.login_button, Qt.MouseButton.LeftButton)
    dialog.show_error("Retrying in 5 s.", field=None)
    dialog.show_error("Retrying in 4 s.", field=None, announce=False)
    assert announced == ["Enter the server address.", "Retrying in 5 s."]
    assert dialog.message == "Retrying in 4 s."


@pytest.mark.parametrize(
    ("typed", "used"),
    [
        ("notify.example.com", "https://notify.example.com"),
        ("localhost:8000", "http://localhost:8000"),
        ("127.0.0.1", "http://127.0.0.1"),
        ("[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_an_address_without_a_scheme_is_completed_and_said_back(
    qtbot: QtBot, typed: str, used: str
) -> None:
    dialog = _dialog(qtbot, typed, "alice")
    dialog.password_edit.setText("pw")
    with qtbot.waitSignal(dialog.login_submitted, timeout=1000) as blocker:
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    assert blocker.args == [used, "alice", "pw", True]
    assert dialog.server_edit.text() == used
    assert dialog.hint == f"Using {used}"
    assert dialog.server_hint.isVisible()
    assert dialog.message == ""
    # The line names the address that was in the field: editing it takes the line away.
    QTest.keyClicks(dialog.server_edit, "x")
    assert dialog.hint == ""
    assert not dialog.server_hint.isVisible()


def test_a_full_address_is_not_said_back(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "https://notify.example.com", "alice")
    dialog.password_edit.setText("pw")
    with qtbot.waitSignal(dialog.login_submitted, timeout=1000):
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    assert dialog.hint == ""
    assert not dialog.server_hint.isVisible()


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("ftp://notify.example.com", "“ftp://” addresses cannot be used"),
        ("notify example com", "cannot contain spaces"),
        ("https://", "no server name"),
        ("http://:8000", "no server name"),
    ],
)
def test_a_server_address_that_cannot_be_used_is_refused_in_the_message_area(
    qtbot: QtBot, typed: str, words: str
) -> None:
    dialog = _dialog(qtbot, typed, "alice")
    dialog.password_edit.setText("pw")
    with qtbot.assertNotEmitted(dialog.login_submitted):
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Return)
    assert words in dialog.message
    assert dialog.error_label.isVisible()
    assert dialog.server_edit.text() == typed  # left as typed, to be fixed
    assert dialog.hint == ""
    assert dialog.focusWidget() is dialog.server_edit


def test_managed_server_is_read_only_with_a_note(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "https://it.example.com", "", server_locked=True)
    assert dialog.server_edit.isReadOnly()
    notes = [label.text() for label in dialog.findChildren(type(dialog.error_label))]
    assert MANAGED_NOTE in notes
    assert dialog.focusWidget() is dialog.username_edit  # the locked field is skipped
    QTest.keyClicks(dialog.server_edit, "evil")
    assert dialog.server_edit.text() == "https://it.example.com"
    assert dialog.server_edit.toolTip() == MANAGED_NOTE
    assert not dialog.server_edit.isClearButtonEnabled()
    # A login attempt that fails (busy, then an error) leaves the address locked.
    dialog.set_busy(True)
    dialog.show_error("Wrong password.")
    assert dialog.server_edit.isReadOnly()
    QTest.keyClicks(dialog.server_edit, "evil")
    assert dialog.server_edit.text() == "https://it.example.com"


def test_unusable_keyring_disables_remember_me_and_says_why(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice", keyring_reason=KEYRING_REASON)
    assert not dialog.remember_check.isChecked()
    assert not dialog.remember_check.isEnabled()
    shown = [label.text() for label in dialog.findChildren(type(dialog.error_label))]
    assert KEYRING_REASON in shown
    dialog.password_edit.setText("demo")
    with qtbot.waitSignal(dialog.login_submitted, timeout=1000) as blocker:
        QTest.keyClick(dialog.password_edit, Qt.Key.Key_Enter)
    assert blocker.args[3] is False
    # Leaving the busy state must not re-enable it.
    dialog.set_busy(True)
    dialog.set_busy(False)
    assert not dialog.remember_check.isEnabled()


def test_busy_state_locks_the_form_and_blocks_a_second_submit(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice")
    dialog.password_edit.setText("demo")
    dialog.set_busy(True)
    assert dialog.busy
    assert dialog.progress.isVisible()
    assert dialog.progress.minimum() == dialog.progress.maximum() == 0  # indeterminate
    assert not dialog.login_button.isEnabled()
    assert not dialog.password_edit.isEnabled()
    with qtbot.assertNotEmitted(dialog.login_submitted):
        QTest.keyClick(dialog, Qt.Key.Key_Return)
    dialog.set_busy(False)
    assert not dialog.progress.isVisible()
    assert dialog.login_button.isEnabled()
    assert dialog.password_edit.isEnabled()


def test_show_error_ends_busy_and_shows_plain_text(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000", "alice")
    dialog.password_edit.setText("wrong")
    dialog.set_busy(True)
    dialog.show_error(HOSTILE)
    assert not dialog.busy
    assert not dialog.progress.isVisible()
    assert dialog.error_label.isVisible()
    assert dialog.error_label.text() == HOSTILE
    assert dialog.error_label.textFormat() == Qt.TextFormat.PlainText
    assert dialog.focusWidget() is dialog.password_edit
    assert dialog.password_edit.selectedText() == "wrong"  # ready to be retyped
    # A new attempt hides the old message.
    dialog.set_busy(True)
    assert not dialog.error_label.isVisible()


def test_every_label_is_plain_text(qtbot: QtBot) -> None:
    dialog = _dialog(
        qtbot, HOSTILE, HOSTILE, server_locked=True, keyring_reason=f"{HOSTILE} reason"
    )
    dialog.show_error(HOSTILE)
    labels = dialog.findChildren(type(dialog.error_label))
    texts = [label.text() for label in labels]
    assert f"{HOSTILE} reason" in texts
    for label in labels:
        if label.text():
            assert label.textFormat() == Qt.TextFormat.PlainText, label.text()


def test_cancel_escape_and_close_emit_cancelled(qtbot: QtBot) -> None:
    for close in ("button", "escape", "window"):
        dialog = _dialog(qtbot, "http://127.0.0.1:8000")
        with qtbot.waitSignal(dialog.cancelled, timeout=1000):
            if close == "button":
                QTest.mouseClick(
                    dialog._buttons.button(dialog._buttons.StandardButton.Cancel),
                    Qt.MouseButton.LeftButton,
                )
            elif close == "escape":
                QTest.keyClick(dialog, Qt.Key.Key_Escape)
            else:
                dialog.close()
        assert not dialog.isVisible()


def test_accept_does_not_emit_cancelled(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, "http://127.0.0.1:8000")
    with qtbot.assertNotEmitted(dialog.cancelled):
        dialog.accept()
    assert dialog.result() == LoginDialog.DialogCode.Accepted


def test_screenshots_are_not_blank(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, "https://notify.example.com", "alice", server_locked=True)
    dialog.password_edit.setText("secret")
    dialog.show_error("Wrong username or password.")
    image = dialog.grab().toImage()
    assert image.save(str(tmp_path / "login.png"))
    assert image.width() >= 400
    assert image.height() >= 200
    assert _distinct_colours(image) > 20
