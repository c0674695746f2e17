"""Hostile server text on every display path: toasts, the tray menu, the history rows, and
the "Open" action.

Markup (``<b>``, ``<img src=file:///etc/passwd>``, links to local files), 1 MB titles,
right-to-left overrides and other bidi or control characters must show as inert plain
text: never rendered as rich text, cut to the display's limit, and never able to reverse
the text painted after them. A ``file:`` or ``javascript:`` link is never opened.
Widgets run offscreen (tests/settings.py); the toast is checked as the planner and the
balloon fallback hand it over (the native D-Bus path is tests/tray_app/ui/test_toasts.py's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QMenu
from pytestqt.qtbot import QtBot

from tests.tray_app.ui.test_history import make_inbox, payload
from tray_app import toast_policy
from tray_app.account import open_target, web_link
from tray_app.toast_policy import ToastPlanner, ToastPreferences, ToastRequest
from tray_app.ui.badge import TrayLook
from tray_app.ui.history import HistoryWindow, single_line
from tray_app.ui.toasts import _balloon_text
from tray_app.ui.tray import TITLE_LIMIT, MenuNotification, TrayController, TrayState

pytestmark = pytest.mark.qt_log_ignore(
    r"No such signal QPlatformNativeInterface::systemTrayWindowChanged",
    r"This plugin does not support",
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
RLO = "\u202e"
# Explicit embeddings, overrides and isolates: each can reorder what follows it.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
HOSTILE_TITLES = [
    "<b>bold</b>",
    "<img src=file:///etc/passwd>",
    '<a href="file:///etc/shadow">click</a>',
    "<script>alert(1)</script>",
    "&lt;b&gt; &amp; &",
    f"{RLO}gnp.exe",
    "invoice" + RLO + "fdp.exe",
    "".join(BIDI_CONTROLS) + "tail",
    "nul\x00bell\x07esc\x1b[31mred",
    "line\u2028sep\u2029para\r\nend",
    "x" * 1_000_000,
]


def no_bidi_controls(text: str) -> bool:
    return not any(ch in text for ch in BIDI_CONTROLS)


# --- toasts ----------------------------------------------------------------------------


def request(title: str, *, ident: int = 1, **fields: Any) -> ToastRequest:
    values: dict[str, Any] = {
        "id": ident, "seq": ident, "title": title, "message": title, "priority": "normal",
        "project_id": 1, "project_title": title, "url": "file:///etc/passwd",
        "is_read": False, "live": True, "arrived_at": 0.0,
    }  # fmt: skip
    values.update(fields)
    return ToastRequest(**values)


@pytest.mark.parametrize("title", HOSTILE_TITLES, ids=lambda t: repr(t[:20]))
def test_a_toast_is_plain_bounded_and_bidi_free(title: str) -> None:
    planner = ToastPlanner(clock=lambda: 0.0, now=lambda: NOW)
    started = time.monotonic()
    (toast,) = planner.offer(request(title), ToastPreferences())
    assert time.monotonic() - started < 1.0
    assert len(toast.title) <= toast_policy.TITLE_LIMIT
    assert len(toast.body) <= toast_policy.BODY_LIMIT
    assert "\n" not in toast.title
    for text in (toast.title, toast.body):
        assert no_bidi_controls(text)
        assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in text)
    # Markup is kept as the literal characters the sender typed, never dropped or rendered.
    if title.startswith("<"):
        assert toast.title.startswith(title[:10])


@pytest.mark.parametrize("title", [t for t in HOSTILE_TITLES if "<" in t])
def test_the_balloon_shows_markup_literally(title: str) -> None:
    shown = _balloon_text(title)
    document = QTextDocument()
    document.setHtml(shown) if shown != title else document.setPlainText(shown)
    assert document.toPlainText() == title
    assert "<img" not in shown or shown == title


# --- the tray menu ---------------------------------------------------------------------


@pytest.fixture
def tray(qtbot: QtBot) -> Iterator[TrayController]:
    controller = TrayController(clock=lambda: NOW)
    yield controller
    controller.hide()
    controller.deleteLater()


def entries(menu: QMenu) -> list[str]:
    return [action.text() for action in menu.actions() if not action.isSeparator()]


def test_menu_entries_are_plain_bounded_and_bidi_free(tray: TrayController) -> None:
    recent = tuple(
        MenuNotification(
            id=index + 1,
            title=title,
            project="Q&A" + RLO + "evil",
            created_at=NOW - timedelta(minutes=5),
            url="file:///etc/passwd",
        )
        for index, title in enumerate(HOSTILE_TITLES[:5] + HOSTILE_TITLES[5:])
    )
    started = time.monotonic()
    tray.set_state(
        TrayState(
            connection="Connected",
            look=TrayLook.CONNECTED,
            username="alice" + RLO,
            unread=len(recent),
            recent=recent,
        )
    )
    assert time.monotonic() - started < 2.0
    labels = entries(tray.menu)
    rows = [label for label in labels if " · 5 min" in label]
    assert len(rows) >= 5
    for label in labels:
        assert no_bidi_controls(label), repr(label[:40])
        assert "\x00" not in label
        assert "\x1b" not in label
        # TITLE_LIMIT for the title plus the project, age and separators.
        assert len(label) < 2 * TITLE_LIMIT + 100
    # Markup stays literal: a QAction label is never rich text, and every row's age
    # is still read left to right after its title.
    assert any(label.startswith("<b>bold</b>") for label in labels)
    assert any(label.startswith("<img src=file:///etc/passwd>") for label in labels)
    assert all(label.endswith("5 min") for label in rows)
    for action in tray.menu.actions():
        tip = action.toolTip()
        if "passwd" in tip:
            document = QTextDocument()
            document.setHtml(tip)
            assert "<img" in document.toPlainText()  # shown, not loaded


# --- the history window ----------------------------------------------------------------


def painted_row(tmp_path: Path, qtbot: QtBot, name: str, **fields: Any) -> Any:
    store = make_inbox(tmp_path / f"{name}.sqlite3", [payload(1, **fields)])
    window = HistoryWindow(store, clock=lambda: NOW)
    qtbot.addWidget(window)
    window.resize(600, 400)
    window.show()
    qtbot.waitExposed(window)
    return window, window.list_view.viewport().grab().toImage()


def test_a_bidi_override_cannot_reverse_a_painted_row(tmp_path: Path, qtbot: QtBot) -> None:
    _, hostile = painted_row(
        tmp_path, qtbot, "hostile", title=f"Invoice {RLO}fdp.exe", message=f"{RLO}abc"
    )
    _, clean = painted_row(tmp_path, qtbot, "clean", title="Invoice fdp.exe", message="abc")
    assert hostile == clean


def test_a_megabyte_title_is_elided_in_the_row(tmp_path: Path, qtbot: QtBot) -> None:
    started = time.monotonic()
    window, image = painted_row(tmp_path, qtbot, "huge", title="W" * 1_000_000)
    assert time.monotonic() - started < 10.0
    _, short = painted_row(tmp_path, qtbot, "short", title="W" * 1_000)
    # Both are cut to the row's width with an ellipsis: they paint the same pixels.
    assert image == short
    assert window.model.index(0, 0).data() == "W" * 1_000_000  # the store keeps it whole


@pytest.mark.parametrize("title", HOSTILE_TITLES, ids=lambda t: repr(t[:20]))
def test_single_line_is_one_line_without_controls(title: str) -> None:
    line = single_line(title)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x00" not in line
    assert no_bidi_controls(line)


# --- opening a notification ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        " file:///etc/passwd",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "smb://evil.example/share",
        "mailto:x@example.com",
        "ssh://evil.example",
        "http://",
        "",
    ],
)
def test_open_never_hands_a_local_or_script_link_to_the_desktop(url: str) -> None:
    assert web_link("https://notify.example.com", url) is None


@pytest.mark.parametrize(
    ("url", "opened"),
    [
        ("/projects/1/tasks/7", "https://notify.example.com/projects/1/tasks/7"),
        ("https://ci.example.com/build/1", "https://ci.example.com/build/1"),
        ("http://ci.example.com/b?x=1", "http://ci.example.com/b?x=1"),
    ],
)
def test_open_hands_web_links_to_the_desktop(url: str, opened: str) -> None:
    assert web_link("https://notify.example.com", url) == opened


@pytest.mark.parametrize(
    ("url", "opened"),
    [
        ("/projects/1/tasks/7", "https://notify.example.com/projects/1/tasks/7"),
        ("https://ci.example.com/build/1", "https://ci.example.com/build/1"),
        # No link, or one the desktop must not open: the notification's own page.
        ("", "https://notify.example.com/notifications/42"),
        ("javascript:alert(1)", "https://notify.example.com/notifications/42"),
        ("file:///etc/passwd", "https://notify.example.com/notifications/42"),
    ],
)
def test_open_always_leads_to_a_web_page(url: str, opened: str) -> None:
    assert open_target("https://notify.example.com/", url, 42) == opened
