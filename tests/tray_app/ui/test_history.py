"""The History window and its lazy model, over real SQLite stores (tray_app.store)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, QRect, Qt, QTimer
from PySide6.QtGui import QFont, QImage, QKeySequence, QTextDocument
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.db import open_database
from tray_app.store.inbox import NO_FILTERS, Filters, Inbox, StoredNotification
from tray_app.time_words import describe_age
from tray_app.ui.history import (
    DELETE_BATCH,
    EMPTY_TEXT,
    LOAD_FAILED_TEXT,
    NO_MATCH_TEXT,
    OFFLINE_TEXT,
    DateRange,
    HistoryModel,
    HistoryRole,
    HistoryWindow,
    absolute_time,
    actor_name,
    day_label,
    plain_lines,
    plain_tooltip,
    range_start,
    single_line,
)

# The offscreen platform says this whenever a top-level window is shown; it is not a fault.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
# The same Friday at noon on this machine's clock, for what is worded in local days.
LOCAL_NOON = datetime(2025, 3, 14, 12, 0).astimezone()
HTML = "<b>x</b><img src=x>"
BIG_STORE_ROWS = 100_000


def clock() -> datetime:
    return NOW


def payload(seq: int, **fields: Any) -> Notification:
    """A notification as the server sends it; newer seqs are newer in time too."""
    project = fields.pop("project", (1, "Mobile App"))
    document: dict[str, Any] = {
        "seq": seq,
        "id": seq + 1000,
        "title": f"Notification {seq}",
        "message": f"Message {seq}",
        "event_type": "task_updated",
        "priority": "normal",
        "url": f"https://example.test/n/{seq}",
        "created_at": (NOW - timedelta(minutes=10_000 - seq)).isoformat(),
        "is_read": False,
    }
    if project is not None:
        document["project"] = {"id": project[0], "title": project[1]}
    document.update(fields)
    return parse_notification(document)


_OPEN_STORES: list[sqlite3.Connection] = []


def make_inbox(
    path: Path, payloads: list[Notification], *, closed_after_test: bool = True
) -> Inbox:
    connection = open_database(path).connection
    if closed_after_test:
        _OPEN_STORES.append(connection)
    inbox = Inbox(connection)
    if payloads:
        inbox.ingest(payloads)
    return inbox


@pytest.fixture(autouse=True)
def close_stores() -> Iterator[None]:
    yield
    while _OPEN_STORES:
        _OPEN_STORES.pop().close()


@dataclass
class CountingSource:
    """The real Inbox, with the rows it hands out counted (what "lazy" is measured by)."""

    inbox: Inbox
    fetched_rows: int = 0
    searches: list[Filters] = field(default_factory=list)

    def search(
        self, filters: Filters = NO_FILTERS, *, limit: int = 100, offset: int = 0
    ) -> list[StoredNotification]:
        rows = self.inbox.search(filters, limit=limit, offset=offset)
        self.fetched_rows += len(rows)
        self.searches.append(filters)
        return rows

    def count(self, filters: Filters = NO_FILTERS) -> int:
        return self.inbox.count(filters)

    def projects(self) -> list[tuple[int, str]]:
        return self.inbox.projects()

    def unread_count(self) -> int:
        return self.inbox.unread_count()


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    """30 notifications in two projects; every third one read; 27 and 29 high/urgent."""
    payloads = [
        payload(
            seq,
            is_read=seq % 3 == 0,
            project=(1, "Mobile App") if seq % 2 else (2, "Website Redesign"),
            priority={27: "high", 29: "urgent"}.get(seq, "normal"),
        )
        for seq in range(1, 31)
    ]
    return make_inbox(tmp_path / "history.sqlite3", payloads)


@pytest.fixture
def make_window(qtbot: QtBot) -> Callable[..., HistoryWindow]:
    def make(source: Any, *, show: bool = False, **options: Any) -> HistoryWindow:
        window = HistoryWindow(source, clock=options.pop("clock", clock), **options)
        qtbot.addWidget(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
            window.activateWindow()
            window.list_view.setFocus()
            qtbot.waitUntil(window.list_view.hasFocus)
        return window

    return make


def loaded_ids(model: HistoryModel) -> list[int]:
    return model.ids(range(model.rowCount()))


def fetch_all(model: HistoryModel) -> None:
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())


def select_rows(window: HistoryWindow, rows: list[int]) -> None:
    selection = window.list_view.selectionModel()
    selection.clearSelection()
    for row in rows:
        selection.select(window.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select)
    selection.setCurrentIndex(
        window.model.index(rows[0], 0), QItemSelectionModel.SelectionFlag.NoUpdate
    )


def distinct_colours(image: QImage) -> int:
    step = 3
    return len(
        {
            image.pixel(x, y)
            for x in range(0, image.width(), step)
            for y in range(0, image.height(), step)
        }
    )


# --- pure helpers ---------------------------------------------------------------------------


def test_plain_tooltip_shows_markup_literally() -> None:
    tooltip = plain_tooltip(HTML, "line one\nline two")
    assert "<b>x</b>" not in tooltip
    assert "<img" not in tooltip
    assert "&lt;b&gt;x&lt;/b&gt;&lt;img src=x&gt;" in tooltip
    assert "line one<br>line two" in tooltip


def test_plain_tooltip_reads_back_as_exactly_its_text(qapp: QApplication) -> None:
    """Qt's own rich-text reading of the tooltip gives back the literal input: markup,
    entities, ampersands and quotes included."""
    text = "<b>x</b> & &amp; &lt; \"q\" 'r' <script>alert(1)</script>"
    document = QTextDocument()
    document.setHtml(plain_tooltip(text, "second"))
    assert document.toPlainText() == f"{text}\nsecond"


def test_single_line_folds_breaks_and_control_characters() -> None:
    assert single_line("a\nb\r\n\tc\x00d\u2028e ") == "a b c d e"


def test_date_ranges_start_where_the_label_says() -> None:
    assert range_start(DateRange.ALL, NOW) is None
    assert range_start(DateRange.LAST_7_DAYS, NOW) == NOW - timedelta(days=7)
    assert range_start(DateRange.LAST_30_DAYS, NOW) == NOW - timedelta(days=30)
    today = range_start(DateRange.TODAY, NOW)
    assert today is not None
    local = NOW.astimezone()
    assert today == local.replace(hour=0, minute=0, second=0, microsecond=0)


# --- the model ------------------------------------------------------------------------------


def test_model_roles_carry_each_field(inbox: Inbox, qtbot: QtBot) -> None:
    model = HistoryModel(inbox, clock=clock)
    model.refresh()
    index = model.index(0, 0)  # the newest: seq 30
    stored = inbox.search(limit=1)[0]
    assert index.data(HistoryRole.TITLE) == "Notification 30"
    assert index.data(Qt.ItemDataRole.DisplayRole) == "Notification 30"
    assert index.data(HistoryRole.MESSAGE) == "Message 30"
    assert index.data(HistoryRole.PROJECT) == "Website Redesign"
    assert index.data(HistoryRole.AGE) == describe_age(
        stored.created_at, NOW.astimezone(), ago=True
    )
    assert index.data(HistoryRole.PRIORITY) == "normal"
    assert index.data(HistoryRole.IS_READ) is True
    assert index.data(HistoryRole.ID) == 1030
    assert index.data(HistoryRole.URL) == "https://example.test/n/30"
    assert index.data(HistoryRole.CREATED_AT) == stored.created_at
    assert model.index(1, 0).data(HistoryRole.PRIORITY) == "urgent"
    assert "Unread. Urgent. Notification 29. Mobile App" in model.index(1, 0).data(
        Qt.ItemDataRole.AccessibleTextRole
    )
    assert bytes(model.roleNames()[int(HistoryRole.IS_READ)].data()) == b"is_read"
    assert model.index(99, 0).data(HistoryRole.TITLE) is None


def test_model_pages_lazily_in_store_order_without_gaps(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 1001)])
    source = CountingSource(store)
    model = HistoryModel(source, page_size=100)
    model.refresh()
    assert model.rowCount() == 100
    assert source.fetched_rows == 100
    assert model.total == 1000
    assert model.canFetchMore(QModelIndex())
    with qtbot.waitSignal(model.rowsInserted):
        model.fetchMore(QModelIndex())
    assert model.rowCount() == 200
    fetch_all(model)
    assert not model.canFetchMore(QModelIndex())
    assert loaded_ids(model) == [seq + 1000 for seq in range(1000, 0, -1)]
    assert source.fetched_rows == 1000


def test_apply_read_restyles_rows_in_place(inbox: Inbox, qtbot: QtBot) -> None:
    model = HistoryModel(inbox, clock=clock)
    model.refresh()
    row = model.row_of(1029)
    assert row is not None
    inbox.set_read([1029], True)
    with (
        qtbot.assertNotEmitted(model.modelReset),
        qtbot.waitSignal(model.dataChanged) as changed,
    ):
        assert model.apply_read([1029, 424242], True) == [1029]
    assert changed.args is not None
    assert changed.args[0].row() == row
    assert changed.args[1].row() == row
    assert model.index(row, 0).data(HistoryRole.IS_READ) is True
    # Already read: nothing to repaint.
    with qtbot.assertNotEmitted(model.dataChanged):
        assert model.apply_read([1029], True) == []


def test_read_changes_under_the_unread_filter_leave_no_gap(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 301)])
    model = HistoryModel(store, page_size=100)
    model.refresh(Filters(unread=True))
    first_page = loaded_ids(model)
    # Marking read shifts every later row up by one in the store's unread list; the next
    # page must still start right after the loaded rows.
    store.set_read(first_page[:10], True)
    model.apply_read(first_page[:10], True)
    assert model.total == 290
    fetch_all(model)
    assert sorted(loaded_ids(model)) == sorted(seq + 1000 for seq in range(1, 301))
    assert len(set(loaded_ids(model))) == 300


def test_removed_rows_go_in_place_and_later_pages_stay_whole(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 301)])
    model = HistoryModel(store, page_size=100)
    model.refresh()
    gone = [1300, 1298, 1297, 1250]
    store.remove(gone)
    with qtbot.assertNotEmitted(model.modelReset), qtbot.waitSignal(model.rowsRemoved):
        assert sorted(model.remove([*gone, 999_999])) == sorted(gone)
    assert model.rowCount() == 96
    assert model.total == 296
    fetch_all(model)
    expected = [seq + 1000 for seq in range(300, 0, -1) if seq + 1000 not in gone]
    assert loaded_ids(model) == expected


def test_rows_stored_before_a_merge_do_not_duplicate_a_page(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 251)])
    model = HistoryModel(store, page_size=100)
    model.refresh()
    store.ingest([payload(seq) for seq in range(251, 261)])  # arrived, not merged yet
    fetch_all(model)
    assert loaded_ids(model) == [seq + 1000 for seq in range(260, 0, -1)]


def test_a_merge_reads_only_the_new_rows_even_under_a_search(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 501)])
    source = CountingSource(store)
    model = HistoryModel(source, page_size=100)
    model.refresh(Filters(text="message"))
    assert source.fetched_rows == 100
    store.ingest(
        [payload(501, message="other words"), payload(502), payload(503, message="no match")]
    )
    with qtbot.assertNotEmitted(model.modelReset):
        model.merge_new()
    # One new row matches; nothing else is read (a page of known rows cost 100 here).
    assert source.fetched_rows == 101
    assert loaded_ids(model)[:2] == [1502, 1500]
    assert model.total == 501
    fetch_all(model)
    assert loaded_ids(model) == [1502] + [seq + 1000 for seq in range(500, 0, -1)]


def test_merges_at_the_top_keep_only_a_page_loaded(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    """A long catch-up with the window open: the rows pushed down are unloaded, so each
    insertion costs the view a page of layout, not every row merged so far."""
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 51)])
    window = make_window(store, show=True, page_size=100)
    model = window.model
    for first in range(51, 551, 100):
        store.ingest([payload(seq) for seq in range(first, first + 100)])
        window.notifications_changed()
        assert model.rowCount() == 100
        assert loaded_ids(model)[0] == first + 99 + 1000
    assert model.total == 550
    assert window.status_label.text() == "550 notifications"
    # A selected row stays loaded (with the rows above it) as new ones push it down.
    select_rows(window, [30])
    window.list_view.verticalScrollBar().setValue(0)  # selecting scrolled it into view
    store.ingest([payload(seq) for seq in range(551, 651)])
    window.notifications_changed()
    assert window.selected_ids() == [1520]
    assert model.rowCount() == 131
    fetch_all(model)
    assert loaded_ids(model) == [seq + 1000 for seq in range(650, 0, -1)]


def test_a_failing_store_is_reported_not_raised(tmp_path: Path, qtbot: QtBot) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 301)])
    model = HistoryModel(store, page_size=100)
    model.refresh()
    store._connection.close()  # what a vanished or broken file looks like to the store
    with qtbot.waitSignal(model.load_failed) as failed:
        model.fetchMore(QModelIndex())  # called by the view, from C++: must not raise
    assert failed.args is not None
    assert "local notification database failed" in failed.args[0]
    assert model.rowCount() == 100
    assert not model.canFetchMore(QModelIndex())
    with qtbot.waitSignal(model.load_failed):
        model.refresh(Filters(text="x"))
    assert model.rowCount() == 0
    assert model.total == 0
    assert not model.canFetchMore(QModelIndex())


def test_window_says_when_saved_notifications_cannot_be_read(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(tmp_path / "n.sqlite3", [payload(seq) for seq in range(1, 11)])
    window = make_window(store)
    store._connection.close()
    with qtbot.waitSignal(window.filters_changed):
        window.unread_only.setChecked(True)
    assert window.stack.currentWidget() is window.empty_state
    assert window.empty_title.text() == LOAD_FAILED_TEXT
    assert "local notification database failed" in window.empty_hint.text()
    assert window.clear_filters_button.isHidden()
    assert "local notification database failed" in window.status_label.text()


def test_ages_follow_the_clock(inbox: Inbox, qtbot: QtBot) -> None:
    inbox.ingest([payload(31, created_at=(NOW - timedelta(minutes=10)).isoformat())])
    now = [NOW]
    model = HistoryModel(inbox, clock=lambda: now[0])
    model.refresh()
    index = model.index(0, 0)
    before = index.data(HistoryRole.AGE)
    assert before == "10 min ago"
    now[0] = NOW + timedelta(hours=5)
    with qtbot.waitSignal(model.dataChanged) as changed:
        model.refresh_ages()
    assert changed.args is not None
    assert changed.args[2] == [int(HistoryRole.AGE)]
    assert index.data(HistoryRole.AGE) != before
    assert index.data(HistoryRole.AGE) == "5 h ago"


# --- 100,000 rows ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    """100,000 notifications; every 250th one mentions "deploy" (400 of them)."""
    started = datetime(2025, 1, 1, tzinfo=UTC)
    payloads = [
        {
            "seq": seq,
            "id": seq,
            "title": f"Deploy {seq} finished" if seq % 250 == 0 else f"Task {seq} moved",
            "message": "Carol moved the card to Done",
            "priority": ("low", "normal", "high", "urgent")[seq % 4],
            "created_at": (started + timedelta(seconds=seq)).isoformat(),
            "project": {"id": 1 + seq % 2, "title": ("Mobile App", "Website Redesign")[seq % 2]},
            "is_read": seq % 3 == 0,
        }
        for seq in range(1, BIG_STORE_ROWS + 1)
    ]
    store = make_inbox(
        tmp_path_factory.mktemp("big") / "big.sqlite3",
        [parse_notification(payload) for payload in payloads],
        closed_after_test=False,
    )
    assert store.count() == BIG_STORE_ROWS
    yield store
    store._connection.close()


def test_opening_over_100000_rows_reads_only_the_first_page(
    big_store: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    source = CountingSource(big_store)
    started = time.perf_counter()
    window = make_window(source, show=True)
    qtbot.waitUntil(lambda: window.list_view.viewport().isVisible())
    elapsed = time.perf_counter() - started
    print(f"opened over {BIG_STORE_ROWS:,} rows in {elapsed * 1000:.0f} ms")
    assert window.model.total == BIG_STORE_ROWS
    assert window.model.rowCount() == window.model.page_size
    assert source.fetched_rows <= 2 * window.model.page_size
    assert window.status_label.text() == "100,000 notifications"


def test_scrolling_to_the_end_fetches_the_next_page(
    big_store: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    source = CountingSource(big_store)
    window = make_window(source, show=True)
    first = window.model.rowCount()
    bar = window.list_view.verticalScrollBar()
    with qtbot.waitSignal(window.model.rowsInserted):
        bar.setValue(bar.maximum())
    assert window.model.rowCount() == first + window.model.page_size
    assert source.fetched_rows == window.model.rowCount()
    assert loaded_ids(window.model) == list(range(BIG_STORE_ROWS, BIG_STORE_ROWS - 400, -1))


def test_searching_100000_rows_is_answered_by_the_store(
    big_store: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    source = CountingSource(big_store)
    window = make_window(source, show=True)
    with qtbot.waitSignal(window.filters_changed, timeout=5000):
        QTest.keyClicks(window.search_box, "deplo")
    expected = Filters(text="deplo")
    assert window.model.filters == expected
    assert window.model.total == big_store.count(expected) == 400
    assert window.model.rowCount() == window.model.page_size
    bar = window.list_view.verticalScrollBar()
    while window.model.canFetchMore(QModelIndex()):
        with qtbot.waitSignal(window.model.rowsInserted):
            bar.setValue(bar.maximum())
    assert window.model.rowCount() == 400
    assert all(window.model.notification(row).title.startswith("Deploy ") for row in range(400))
    # Only the matches were read: the first page of everything, then the 400 matches.
    assert source.fetched_rows == window.model.page_size + 400

    with qtbot.waitSignal(window.filters_changed):
        window.unread_only.setChecked(True)
    unread = Filters(text="deplo", unread=True)
    assert window.model.total == big_store.count(unread)
    assert all(not window.model.notification(row).is_read for row in range(100))


# --- the window -----------------------------------------------------------------------------


def test_window_lists_newest_first_with_a_count(
    inbox: Inbox, make_window: Callable[..., HistoryWindow]
) -> None:
    window = make_window(inbox)
    assert window.model.rowCount() == 30
    assert window.model.index(0, 0).data(HistoryRole.ID) == 1030
    assert window.stack.currentWidget() is window.list_view
    assert window.status_label.text() == "30 notifications"
    assert window.offline_banner.isHidden()


def test_offline_banner_shows_and_hides(
    inbox: Inbox, make_window: Callable[..., HistoryWindow]
) -> None:
    window = make_window(inbox, show=True)
    window.set_offline(True)
    assert window.offline_banner.isVisible()
    assert window.offline_banner.text() == OFFLINE_TEXT
    assert window.offline_banner.textFormat() == Qt.TextFormat.PlainText
    window.set_offline(False)
    assert not window.offline_banner.isVisible()


def test_empty_store_says_so(tmp_path: Path, make_window: Callable[..., HistoryWindow]) -> None:
    window = make_window(make_inbox(tmp_path / "e.sqlite3", []))
    assert window.stack.currentWidget() is window.empty_state
    assert window.empty_title.text() == EMPTY_TEXT
    assert window.clear_filters_button.isHidden()
    assert window.status_label.text() == "0 notifications"


def test_no_match_offers_to_clear_filters(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox)
    with qtbot.waitSignal(window.filters_changed):
        window.search_box.setText("zebra")
    assert window.stack.currentWidget() is window.empty_state
    assert window.empty_title.text() == NO_MATCH_TEXT
    assert not window.clear_filters_button.isHidden()
    with qtbot.waitSignal(window.filters_changed):
        window.clear_filters_button.click()
    assert window.search_box.text() == ""
    assert window.stack.currentWidget() is window.list_view
    assert window.model.rowCount() == 30


def test_punctuation_only_search_matches_nothing_without_error(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox)
    with qtbot.waitSignal(window.filters_changed):
        window.search_box.setText('"NEAR( *')
    assert window.model.rowCount() == 0
    assert window.empty_title.text() == NO_MATCH_TEXT


def test_search_is_debounced_into_one_store_query(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    source = CountingSource(inbox)
    window = make_window(source, show=True)
    emitted: list[None] = []
    window.filters_changed.connect(lambda: emitted.append(None))
    before = len(source.searches)
    with qtbot.waitSignal(window.filters_changed, timeout=5000):
        QTest.keyClicks(window.search_box, "notification 2")
    assert emitted == [None]
    assert source.searches[before:] == [Filters(text="notification 2")]
    # "Notification 2" and 20..29 (prefix match on the word "2").
    assert window.model.total == inbox.count(Filters(text="notification 2")) == 11


def test_enter_in_the_search_box_searches_at_once(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    window.search_box.setFocus()
    QTest.keyClicks(window.search_box, "message 7")
    assert window.model.filters == Filters()  # still waiting for the typing to pause
    with qtbot.waitSignal(window.filters_changed, timeout=100):
        QTest.keyClick(window.search_box, Qt.Key.Key_Return)
    assert window.model.filters == Filters(text="message 7")
    assert loaded_ids(window.model) == [1007]
    assert window.status_label.text() == "1 match"


def test_filter_controls_build_the_store_filters(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox)
    assert [window.project_combo.itemText(i) for i in range(3)] == [
        "All projects",
        "Mobile App",
        "Website Redesign",
    ]
    with qtbot.waitSignal(window.filters_changed):
        window.unread_only.setChecked(True)
    assert window.model.total == inbox.count(Filters(unread=True)) == 20
    with qtbot.waitSignal(window.filters_changed):
        window.project_combo.setCurrentIndex(1)
    assert window.model.filters == Filters(unread=True, project_id=1)
    assert window.model.total == 10
    with qtbot.waitSignal(window.filters_changed):
        window.priority_actions["urgent"].setChecked(True)
    with qtbot.waitSignal(window.filters_changed):
        window.priority_actions["high"].setChecked(True)
    assert window.model.filters.priorities == frozenset({"urgent", "high"})
    assert window.priority_button.text() == "Priority: Urgent, High"
    # 29 (urgent) is odd and unread; 27 (high) is read, so the unread filter leaves it out.
    assert loaded_ids(window.model) == [1029]
    window.clear_filters()
    assert window.model.filters == Filters()
    assert window.priority_button.text() == "Any priority"


def test_date_range_uses_the_clock(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    ages = [timedelta(minutes=5), timedelta(days=3), timedelta(days=20), timedelta(days=90)]
    store = make_inbox(
        tmp_path / "d.sqlite3",
        [
            payload(seq, created_at=(NOW - age).isoformat())
            for seq, age in enumerate(reversed(ages), start=1)
        ],
    )
    window = make_window(store)
    counts = {}
    for choice in (DateRange.LAST_7_DAYS, DateRange.LAST_30_DAYS, DateRange.ALL):
        with qtbot.waitSignal(window.filters_changed):
            window.date_combo.setCurrentIndex(window.date_combo.findData(int(choice)))
        counts[choice] = window.model.rowCount()
    assert counts == {DateRange.LAST_7_DAYS: 2, DateRange.LAST_30_DAYS: 3, DateRange.ALL: 4}
    with qtbot.waitSignal(window.filters_changed):
        window.date_combo.setCurrentIndex(window.date_combo.findData(int(DateRange.TODAY)))
    assert window.model.filters.since == range_start(DateRange.TODAY, NOW)
    assert window.model.total == store.count(window.model.filters)


def test_the_platform_close_keys_hide_the_window_from_the_list_or_the_search(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    close = QKeySequence(QKeySequence.StandardKey.Close)
    assert not close.isEmpty()  # Ctrl+W here, as on every Linux desktop
    window = make_window(inbox, show=True)
    for focused in (window.list_view, window.search_box):
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        focused.setFocus()
        qtbot.waitUntil(focused.hasFocus)
        QTest.keySequence(focused, close)
        qtbot.waitUntil(lambda: not window.isVisible())


def test_enter_and_double_click_ask_to_open(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    view = window.list_view
    view.setCurrentIndex(window.model.index(2, 0))
    with qtbot.waitSignal(window.open_requested) as opened:
        QTest.keyClick(view, Qt.Key.Key_Return)
    assert opened.args == [1028, "https://example.test/n/28"]
    rect = view.visualRect(window.model.index(0, 0))
    # A real double click starts with a press that sets the view's pressed index.
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(window.open_requested) as opened:
        QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened.args == [1030, "https://example.test/n/30"]


def test_space_marks_read_then_unread(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    select_rows(window, [0, 1, 2])  # 30 is read, 29 and 28 unread
    with qtbot.waitSignal(window.mark_read_requested) as marked:
        QTest.keyClick(window.list_view, Qt.Key.Key_Space)
    assert marked.args == [[1029, 1028]]
    inbox.set_read([1029, 1028], True)
    window.apply_read([1029, 1028], True)
    assert window.selected_ids() == [1030, 1029, 1028]
    with qtbot.waitSignal(window.mark_unread_requested) as marked:
        QTest.keyClick(window.list_view, Qt.Key.Key_Space)
    assert marked.args == [[1030, 1029, 1028]]


def test_delete_key_deletes_a_multi_selection(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=20)
    view = window.list_view
    view.setCurrentIndex(window.model.index(3, 0))
    QTest.keyClick(view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    with qtbot.waitSignal(window.delete_requested) as deleted:
        QTest.keyClick(view, Qt.Key.Key_Delete)
    assert deleted.args == [[1027, 1026, 1025]]
    # The rows left the list at once and stay out until the app confirms the delete.
    assert window.model.rowCount() == 27

    inbox.remove([1027, 1026, 1025])
    with qtbot.assertNotEmitted(window.model.modelReset):
        window.apply_removed([1027, 1026, 1025])
    assert window.model.rowCount() == 27
    assert window.model.total == 27
    # The selection landed on the row after the deleted ones, ready for the next key.
    assert window.selected_ids() == [1024]
    assert view.currentIndex().data(HistoryRole.ID) == 1024
    fetch_all(window.model)
    assert loaded_ids(window.model) == [
        i for i in range(1030, 1000, -1) if i not in (1027, 1026, 1025)
    ]


def test_ctrl_f_focuses_search_and_ctrl_a_selects_all(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    QTest.keyClick(window.list_view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert len(window.selected_ids()) == 30
    assert window.status_label.text() == "30 selected of 30 notifications"
    assert window.delete_action.isEnabled()
    QTest.keyClick(window.list_view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(window.search_box.hasFocus)
    # Space typed in the search box is a space, not a read toggle.
    with qtbot.assertNotEmitted(window.mark_read_requested, wait=50):
        QTest.keyClick(window.search_box, Qt.Key.Key_Space)
    assert window.search_box.text() == " "


def test_context_menu_actions_follow_the_selection(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    select_rows(window, [1])  # 29: unread
    menu = window.context_menu()
    labels = [action.text() for action in menu.actions() if not action.isSeparator()]
    assert labels == ["Open", "Mark read", "Mark unread", "Delete"]
    assert window.mark_read_action.isEnabled()
    assert not window.mark_unread_action.isEnabled()
    with qtbot.waitSignal(window.mark_read_requested) as marked:
        window.mark_read_action.trigger()
    assert marked.args == [[1029]]
    select_rows(window, [0])  # 30: read
    assert not window.mark_read_action.isEnabled()
    with qtbot.waitSignal(window.mark_unread_requested) as marked:
        window.mark_unread_action.trigger()
    assert marked.args == [[1030]]
    menu.close()


def test_new_notifications_appear_on_top_keeping_the_selection(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    select_rows(window, [4, 5])
    inbox.ingest([payload(31, project=(3, "Data Platform")), payload(32)])
    with (
        qtbot.assertNotEmitted(window.model.modelReset),
        qtbot.waitSignal(window.model.rowsInserted) as inserted,
    ):
        window.notifications_changed()
    assert inserted.args is not None
    assert (inserted.args[1], inserted.args[2]) == (0, 1)
    assert loaded_ids(window.model)[:3] == [1032, 1031, 1030]
    assert window.selected_ids() == [1026, 1025]
    assert window.status_label.text() == "2 selected of 32 notifications"
    select_rows(window, [0])
    assert window.status_label.text() == "32 notifications"
    assert window.project_combo.findText("Data Platform") > 0


def test_new_notifications_do_not_move_the_rows_being_read(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(tmp_path / "s.sqlite3", [payload(seq) for seq in range(1, 151)])
    window = make_window(store, show=True)
    view = window.list_view
    view.scrollTo(window.model.index(60, 0), QAbstractItemView.ScrollHint.PositionAtTop)
    top_before = view.indexAt(view.viewport().rect().topLeft()).data(HistoryRole.ID)
    assert top_before == 1090
    store.ingest([payload(seq) for seq in range(151, 156)])
    window.notifications_changed()
    qtbot.waitUntil(
        lambda: view.indexAt(view.viewport().rect().topLeft()).data(HistoryRole.ID) == 1090
    )
    assert window.model.rowCount() == 155


def test_a_filled_gap_reloads_and_keeps_the_selection(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    payloads = [payload(seq) for seq in range(1, 21) if seq != 10]
    store = make_inbox(tmp_path / "g.sqlite3", payloads)
    window = make_window(store, show=True)
    select_rows(window, [2])  # seq 18
    store.ingest([payload(10)])  # the missing one arrives from a replay, below the top
    with qtbot.waitSignal(window.model.modelReset):
        window.notifications_changed()
    assert loaded_ids(window.model) == [seq + 1000 for seq in range(20, 0, -1)]
    assert window.selected_ids() == [1018]
    assert window.list_view.currentIndex().data(HistoryRole.ID) == 1018


def test_a_project_that_disappears_falls_back_to_all(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox)
    with qtbot.waitSignal(window.filters_changed):
        window.project_combo.setCurrentIndex(window.project_combo.findData(2))
    website = [seq + 1000 for seq in range(2, 31, 2)]
    inbox.remove(website)
    with qtbot.waitSignal(window.filters_changed):
        window.apply_removed(website)
    assert window.project_combo.currentData() is None
    assert window.model.rowCount() == 15


def test_markup_in_server_text_stays_plain(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "h.sqlite3",
        [payload(1, title=HTML, message=HTML, project=(7, HTML), priority="urgent")],
    )
    window = make_window(store, show=True)
    index = window.model.index(0, 0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == HTML
    assert index.data(HistoryRole.MESSAGE) == HTML
    assert "<img" not in index.data(Qt.ItemDataRole.ToolTipRole)
    assert window.project_combo.itemText(1) == HTML
    image = window.list_view.viewport().grab().toImage()
    assert distinct_colours(image) > 10  # the row was painted (chip, dot, text)


def test_window_renders_a_polished_screenshot(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    rows = [
        payload(1, title="Sprint 14 planning moved to Thursday", project=(2, "Website Redesign")),
        payload(2, title="bob commented on Login screen", is_read=True, priority="high"),
        payload(
            3,
            title="Milestone Beta release is due tomorrow",
            message="3 of 12 tasks are still open. Owners: alice, bob, carol.",
            priority="urgent",
        ),
    ]
    window = make_window(make_inbox(tmp_path / "s.sqlite3", rows), show=True)
    window.set_offline(True)
    image = window.grab().toImage()
    path = tmp_path / "history.png"
    assert image.save(str(path))
    assert path.stat().st_size > 5_000
    assert distinct_colours(image) > 40


# --- grouping by day ------------------------------------------------------------------------


def test_day_labels_follow_the_local_calendar() -> None:
    assert day_label(LOCAL_NOON - timedelta(hours=11), LOCAL_NOON) == "Today"
    assert day_label(LOCAL_NOON + timedelta(minutes=5), LOCAL_NOON) == "Today"  # clock skew
    assert day_label(LOCAL_NOON - timedelta(days=1), LOCAL_NOON) == "Yesterday"
    assert day_label(LOCAL_NOON - timedelta(days=3), LOCAL_NOON) == "Tuesday"
    assert day_label(LOCAL_NOON - timedelta(days=6), LOCAL_NOON) == "Saturday"
    assert day_label(LOCAL_NOON - timedelta(days=10), LOCAL_NOON) == "4 Mar"
    assert day_label(datetime(2024, 12, 30, 12, 0).astimezone(), LOCAL_NOON) == "30 Dec 2024"


def day_store(path: Path) -> Inbox:
    """Six notifications, newest first: two today, two yesterday, Tuesday, 4 March."""
    moments = [
        LOCAL_NOON - timedelta(hours=1),
        LOCAL_NOON - timedelta(hours=2),
        LOCAL_NOON - timedelta(days=1),
        LOCAL_NOON - timedelta(days=1, hours=1),
        LOCAL_NOON - timedelta(days=3),
        LOCAL_NOON - timedelta(days=10),
    ]
    return make_inbox(
        path,
        [
            payload(seq, created_at=moment.isoformat())
            for seq, moment in zip(range(6, 0, -1), moments, strict=True)
        ],
    )


DAY_HEADERS = ["Today", "", "Yesterday", "", "Tuesday", "4 Mar"]


def headers(model: HistoryModel) -> list[str]:
    return [model.index(row, 0).data(HistoryRole.DAY) for row in range(model.rowCount())]


def test_rows_are_grouped_under_day_headers_that_are_not_rows(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(day_store(tmp_path / "d.sqlite3"), show=True, clock=lambda: LOCAL_NOON)
    model, view = window.model, window.list_view
    assert model.rowCount() == 6  # a header is not a row: nothing to select or skip
    assert headers(model) == DAY_HEADERS
    # The first row of each day is taller by its header band, which is painted.
    heights = [view.visualRect(model.index(row, 0)).height() for row in range(6)]
    assert heights[0] == heights[2] == heights[4] == heights[5] > heights[1] == heights[3]
    band = heights[2] - heights[3]
    yesterday = view.visualRect(model.index(2, 0))
    image = (
        view.viewport()
        .grab(QRect(yesterday.topLeft(), QPoint(yesterday.right(), yesterday.top() + band)))
        .toImage()
    )
    assert distinct_colours(image) > 2  # the word "Yesterday", not an empty band
    # A screen reader hears the day on the day's first row.
    assert model.index(2, 0).data(Qt.ItemDataRole.AccessibleTextRole).startswith("Yesterday. ")
    assert model.index(3, 0).data(Qt.ItemDataRole.AccessibleTextRole).startswith("Unread. ")


def test_keyboard_and_mouse_pass_over_day_headers(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(day_store(tmp_path / "d.sqlite3"), show=True, clock=lambda: LOCAL_NOON)
    model, view = window.model, window.list_view
    view.setCurrentIndex(model.index(1, 0))  # the last of today
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex().data(HistoryRole.ID) == 1004  # yesterday's first, not a header
    QTest.keyClick(view, Qt.Key.Key_Down)
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex().data(HistoryRole.ID) == 1002  # Tuesday's
    QTest.keyClick(view, Qt.Key.Key_Up)
    assert view.currentIndex().data(HistoryRole.ID) == 1003
    assert window.selected_ids() == [1003]

    # A click on a header selects nothing; a click on the row under it selects the row.
    row = view.visualRect(model.index(2, 0))
    on_header = QPoint(row.center().x(), row.top() + 3)
    assert view.header_at(on_header)
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=on_header)
    assert window.selected_ids() == [1003]
    with qtbot.assertNotEmitted(window.open_requested):
        QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=on_header)
    QTest.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(row.center().x(), row.bottom() - 5)
    )
    assert window.selected_ids() == [1004]


def test_row_heights_follow_the_views_font(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(day_store(tmp_path / "d.sqlite3"), show=True, clock=lambda: LOCAL_NOON)
    view = window.list_view
    before = [view.visualRect(window.model.index(row, 0)).height() for row in (0, 1)]
    font = view.font()
    font.setPointSizeF(font.pointSizeF() * 2)
    view.setFont(font)
    view.doItemsLayout()
    after = [view.visualRect(window.model.index(row, 0)).height() for row in (0, 1)]
    assert after[0] > before[0]
    assert after[1] > before[1]


def test_day_groups_run_on_across_pages(tmp_path: Path, qtbot: QtBot) -> None:
    model = HistoryModel(day_store(tmp_path / "d.sqlite3"), clock=lambda: LOCAL_NOON, page_size=1)
    model.refresh()
    fetch_all(model)
    # Each page was one row: a page that goes on with the day above it opens no new group.
    assert headers(model) == DAY_HEADERS


def test_days_are_grouped_on_the_local_clock(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    """10:30 and 11:30 UTC are one day in UTC but two at UTC+13, where it is now 01:00."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XXX-13"  # POSIX: 13 hours east of UTC, no tz database needed
    time.tzset()
    try:
        store = make_inbox(
            tmp_path / "tz.sqlite3",
            [
                payload(1, created_at="2025-03-14T10:30:00+00:00"),
                payload(2, created_at="2025-03-14T11:30:00+00:00"),
            ],
        )
        window = make_window(store)  # the clock says 12:00 UTC
        assert headers(window.model) == ["Today", "Yesterday"]
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


# --- the detail pane ------------------------------------------------------------------------


def test_detail_words() -> None:
    assert absolute_time(datetime(2025, 3, 14, 13, 5).astimezone()) == "Fri 14 Mar 2025, 13:05"
    assert actor_name({"username": "bob", "first_name": "Bob", "last_name": "Baker"}) == (
        "Bob Baker (bob)"
    )
    assert actor_name({"username": "bob", "display_name": "Bobby"}) == "Bobby (bob)"
    assert actor_name({"username": "bob", "first_name": 7}) == "bob"
    assert actor_name({"username": "a\nb<i>"}) == "a b<i>"
    assert actor_name(None) == "System"
    assert plain_lines("one\r\ntwo\u2028three\x00\u202efour ") == "one\ntwo\nthree four"


def test_detail_pane_shows_the_whole_notification_as_plain_text(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    message = "First line <i>not italic</i>\nSecond line " + "long words " * 300
    url = "https://example.test/a?b=1&c=<i>x</i>"
    store = make_inbox(
        tmp_path / "d.sqlite3",
        [
            payload(1, title="Plain one", url="", actor=None),
            payload(
                2,
                title=HTML,
                message=message,
                url=url,
                project=(7, "<b>Mobile</b>"),
                priority="urgent",
                actor={"id": 4, "username": "bob", "first_name": "Bob", "last_name": "Baker"},
                created_at=(NOW - timedelta(minutes=5)).isoformat(),
            ),
        ],
    )
    window = make_window(store)
    assert window.detail_stack.currentWidget() is window.detail_placeholder  # nothing current
    window.show()
    qtbot.waitExposed(window)
    view = window.list_view
    view.setCurrentIndex(window.model.index(0, 0))
    assert window.detail_stack.currentWidget() is window.detail_content

    text = window.detail_text
    # The title literally (markup is text), then the whole message, lines kept.
    assert text.document().firstBlock().text() == HTML
    assert text.toPlainText() == f"{HTML}\n{message.strip()}"
    title_format = text.document().firstBlock().begin().fragment().charFormat()
    assert title_format.fontWeight() == QFont.Weight.Bold
    assert text.isReadOnly()
    assert text.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByKeyboard
    assert text.lineWrapMode() == QPlainTextEdit.LineWrapMode.WidgetWidth
    assert text.horizontalScrollBar().maximum() == 0  # wrapped, not scrolled sideways

    assert window.detail_project.text() == "<b>Mobile</b>"
    for label in (window.detail_project, window.detail_actor, window.detail_time):
        assert label.textFormat() == Qt.TextFormat.PlainText
    assert window.detail_actor.text() == "Bob Baker (bob)"
    created = store.get(1002)
    assert created is not None
    assert window.detail_time.text() == f"{absolute_time(created.created_at)} (5 min ago)"
    assert window.detail_priority.text() == "Urgent"
    assert window.detail_link.isVisibleTo(window)
    assert window.detail_link.text() == url.replace("&", "&&")  # "&" is no mnemonic
    with qtbot.waitSignal(window.open_requested) as opened:
        window.detail_link.click()
    assert opened.args == [1002, url]

    # It follows the keyboard.
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert text.toPlainText() == "Plain one\nMessage 1"
    assert window.detail_actor.text() == "System"
    assert not window.detail_link.isVisibleTo(window)


def test_detail_pane_keeps_the_readers_selection_when_only_the_state_changes(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    window.list_view.setCurrentIndex(window.model.index(1, 0))  # 1029, unread
    window.detail_text.selectAll()
    inbox.set_read([1029], True)
    window.apply_read([1029], True)
    assert window.detail_text.textCursor().selectedText().startswith("Notification 29")
    window.model.refresh_ages()
    assert window.detail_text.textCursor().hasSelection()


def test_detail_pane_strips_bidi_controls_and_takes_a_megabyte(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "m.sqlite3",
        [payload(1, title="Invoice \u202efdp.exe", message="M" * 1_000_000)],
    )
    window = make_window(store, show=True)
    started = time.monotonic()
    window.list_view.setCurrentIndex(window.model.index(0, 0))
    qtbot.waitUntil(lambda: window.detail_text.document().blockCount() == 2)
    # Qt wrapping a megabyte without spaces at word boundaries took most of a minute.
    assert time.monotonic() - started < 10.0
    shown = window.detail_text.toPlainText()
    assert shown.startswith("Invoice fdp.exe\n")
    assert len(shown) == len("Invoice fdp.exe\n") + 1_000_000


def test_open_without_a_link_reads_it_in_the_pane(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "o.sqlite3", [payload(1, url="", message="Read me here"), payload(2)]
    )
    window = make_window(store, show=True)
    view = window.list_view
    view.setCurrentIndex(window.model.index(1, 0))  # 1001: no link, unread
    with (
        qtbot.assertNotEmitted(window.open_requested),
        qtbot.waitSignal(window.mark_read_requested) as marked,
    ):
        QTest.keyClick(view, Qt.Key.Key_Return)
    assert marked.args == [[1001]]  # opening it is reading it
    qtbot.waitUntil(window.detail_text.hasFocus)
    assert window.selected_ids() == [1001]
    assert window.detail_text.toPlainText() == "Notification 1\nRead me here"
    # Escape in the pane goes back to the list.
    QTest.keyClick(window.detail_text, Qt.Key.Key_Escape)
    qtbot.waitUntil(view.hasFocus)

    # A double click does the same; the toolbar's Open too.
    view.setCurrentIndex(window.model.index(0, 0))
    rect = view.visualRect(window.model.index(1, 0))
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.assertNotEmitted(window.open_requested):
        QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(window.detail_text.hasFocus)

    # With a link, Open asks to open the link, as before.
    view.setFocus()
    view.setCurrentIndex(window.model.index(0, 0))
    with qtbot.waitSignal(window.open_requested) as opened:
        window.open_action.trigger()
    assert opened.args == [1002, "https://example.test/n/2"]
    assert not window.detail_text.hasFocus()


# --- deleting with undo ---------------------------------------------------------------------


def app_deletes(window: HistoryWindow, store: Inbox) -> list[list[int]]:
    """Wire ``delete_requested`` as the app does: the engine deletes, then the window hears
    of it. Returns the list of what was requested."""
    sent: list[list[int]] = []

    def delete(ids: list[int]) -> None:
        sent.append(ids)
        store.remove(ids)
        window.apply_removed(ids)

    window.delete_requested.connect(delete)
    return sent


def test_delete_hides_the_rows_at_once_and_undo_puts_them_back(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=60_000)
    sent = app_deletes(window, inbox)
    view = window.list_view
    before = loaded_ids(window.model)
    view.setCurrentIndex(window.model.index(3, 0))
    QTest.keyClick(view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(view, Qt.Key.Key_Delete)

    assert sent == []  # not yet: Undo is offered first
    assert window.pending_delete == (1027, 1026, 1025)
    assert loaded_ids(window.model) == [i for i in before if i not in (1027, 1026, 1025)]
    assert window.model.total == 27
    assert window.status_label.text() == "27 notifications"
    assert window.undo_bar.isVisible()
    assert window.undo_label.text() == "Deleted 3 notifications"
    # The focus is on the next row, in the list.
    assert view.hasFocus()
    assert window.selected_ids() == [1024]

    # Ctrl+Z (or the Undo button) puts them back where they were, selected.
    with qtbot.assertNotEmitted(window.model.modelReset):
        QTest.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert loaded_ids(window.model) == before
    assert window.selected_ids() == [1027, 1026, 1025]
    assert window.model.total == 30
    assert window.pending_delete == ()
    assert not window.undo_bar.isVisible()
    # Nothing was sent, and closing the window sends nothing.
    window.close()
    assert sent == []
    assert inbox.count() == 30


def test_a_delete_not_undone_reaches_the_engine_once(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=30)
    sent = app_deletes(window, inbox)
    select_rows(window, [0, 1])
    with qtbot.waitSignal(window.delete_requested, timeout=5000):
        QTest.keyClick(window.list_view, Qt.Key.Key_Delete)
        assert sent == []
    assert sent == [[1030, 1029]]
    assert inbox.get(1030) is None
    assert window.pending_delete == ()
    assert not window.undo_bar.isVisible()
    assert not window.undo_action.isEnabled()
    assert window.model.total == 28
    assert loaded_ids(window.model)[:2] == [1028, 1027]
    window.close()
    assert sent == [[1030, 1029]]


def test_deleting_again_changing_filters_or_closing_sends_the_waiting_delete(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=60_000)
    sent = app_deletes(window, inbox)
    view = window.list_view
    select_rows(window, [0])
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert sent == []
    QTest.keyClick(view, Qt.Key.Key_Delete)  # the next row (1029) is selected: delete it too
    assert sent == [[1030]]
    assert window.pending_delete == (1029,)
    assert window.undo_label.text() == "Deleted 1 notification"
    with qtbot.waitSignal(window.filters_changed):
        window.unread_only.setChecked(True)
    assert sent == [[1030], [1029]]
    assert window.pending_delete == ()
    select_rows(window, [0])  # 1028, unread
    QTest.keyClick(view, Qt.Key.Key_Delete)
    window.close()
    assert sent == [[1030], [1029], [1028]]
    assert inbox.count() == 27


def test_deleted_elsewhere_first_is_not_requested_again(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=60_000)
    sent = app_deletes(window, inbox)
    select_rows(window, [0, 1])
    QTest.keyClick(window.list_view, Qt.Key.Key_Delete)
    inbox.remove([1030])  # another device deleted it; the server says so
    window.apply_removed([1030])
    assert window.pending_delete == (1029,)
    window.close()
    assert sent == [[1029]]


def test_focus_leaves_the_delete_button_for_the_next_row(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True, undo_delay_ms=60_000)
    view = window.list_view
    button = window.toolbar.widgetForAction(window.delete_action)
    select_rows(window, [27])  # 1003
    button.setFocus()
    qtbot.waitUntil(button.hasFocus)
    QTest.keyClick(button, Qt.Key.Key_Space)
    qtbot.waitUntil(view.hasFocus)
    assert window.selected_ids() == [1002]
    # From the last row the next one is the row above.
    select_rows(window, [window.model.rowCount() - 1])  # 1001
    button.setFocus()
    qtbot.waitUntil(button.hasFocus)
    QTest.keyClick(button, Qt.Key.Key_Space)
    qtbot.waitUntil(view.hasFocus)
    assert window.selected_ids() == [1002]

    # Nothing left to show: the list makes way for the empty page, the focus goes to Undo.
    QTest.keyClick(view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert window.stack.currentWidget() is window.empty_state
    assert window.empty_title.text() == EMPTY_TEXT
    qtbot.waitUntil(window.undo_button.hasFocus)
    QTest.keyClick(window.undo_button, Qt.Key.Key_Space)
    assert window.model.rowCount() == 28
    qtbot.waitUntil(view.hasFocus)


def test_a_delete_past_the_loaded_rows_lands_on_the_next_page(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(tmp_path / "p.sqlite3", [payload(seq) for seq in range(1, 31)])
    window = make_window(store, show=True, page_size=10, undo_delay_ms=60_000)
    fetch_all(window.model)
    window.model.trim(10)
    select_rows(window, list(range(10)))  # every loaded row
    QTest.keyClick(window.list_view, Qt.Key.Key_Delete)
    assert window.selected_ids() == [1020]  # read from the store, after the hidden ones
    assert window.model.total == 20
    fetch_all(window.model)
    assert loaded_ids(window.model) == list(range(1020, 1000, -1))


def test_clear_read_deletes_the_read_rows_of_the_filters_with_undo(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    def never_asked(count: int) -> bool:
        pytest.fail(f"asked before deleting only {count}")

    window = make_window(inbox, show=True, undo_delay_ms=60_000, confirm_clear=never_asked)
    sent = app_deletes(window, inbox)
    with qtbot.waitSignal(window.filters_changed):
        window.project_combo.setCurrentIndex(window.project_combo.findData(1))
    project_one = loaded_ids(window.model)
    assert window.clear_read_button.isEnabled()
    window.clear_read_button.click()

    # Project 1 is the odd seqs; every third one is read: 27, 21, 15, 9, 3.
    assert window.pending_delete == (1027, 1021, 1015, 1009, 1003)
    assert all(not window.model.notification(row).is_read for row in range(10))
    assert window.model.rowCount() == window.model.total == 10
    assert window.undo_label.text() == "Deleted 5 notifications"
    assert not window.clear_read_button.isEnabled()

    window.undo_button.click()
    assert loaded_ids(window.model) == project_one
    assert window.clear_read_button.isEnabled()
    assert sent == []

    window.clear_read_button.click()
    with qtbot.waitSignal(window.filters_changed):
        window.project_combo.setCurrentIndex(0)  # showing something else sends it
    assert sent == [[1027, 1021, 1015, 1009, 1003]]
    assert inbox.count() == 25
    assert window.model.total == 25
    # Project 2's read rows are left, so there is still something to clear here.
    assert window.clear_read_button.isEnabled()


def test_clear_read_is_disabled_when_nothing_read_is_listed(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(tmp_path / "u.sqlite3", [payload(seq) for seq in range(1, 4)])
    window = make_window(store, show=True)
    assert not window.clear_read_button.isEnabled()
    store.set_read([1002], True)
    window.apply_read([1002], True)
    assert window.clear_read_button.isEnabled()
    with qtbot.waitSignal(window.filters_changed):
        window.unread_only.setChecked(True)
    assert not window.clear_read_button.isEnabled()


def test_clear_read_asks_first_when_it_is_many(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "many.sqlite3",
        [payload(seq, is_read=seq > 5) for seq in range(1, 66)],  # 60 read
    )
    asked: list[int] = []
    answer = [False]

    def confirm(count: int) -> bool:
        asked.append(count)
        return answer[0]

    window = make_window(store, show=True, undo_delay_ms=60_000, confirm_clear=confirm)
    window.clear_read_button.click()
    assert asked == [60]
    assert window.pending_delete == ()
    assert window.model.rowCount() == 65
    answer[0] = True
    window.clear_read_button.click()
    assert len(window.pending_delete) == 60
    assert loaded_ids(window.model) == [1005, 1004, 1003, 1002, 1001]


def test_clear_read_does_not_page_through_the_read_rows(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    """Most stores are mostly read: hidden by id, every read row would be read again and
    skipped, page after page; the store is asked for unread rows instead."""
    store = make_inbox(
        tmp_path / "read.sqlite3", [payload(seq, is_read=seq <= 1_000) for seq in range(1, 1_006)]
    )
    source = CountingSource(store)
    window = make_window(
        source, show=True, page_size=50, undo_delay_ms=60_000, confirm_clear=lambda _n: True
    )
    before = len(source.searches)
    window.clear_read()
    fetch_all(window.model)
    assert len(window.pending_delete) == 1_000
    assert loaded_ids(window.model) == [2005, 2004, 2003, 2002, 2001]
    # The read ids once (to delete them), then unread rows only.
    assert [filters.unread for filters in source.searches[before:]] == [False, True]
    window.undo_delete()
    assert window.model.total == 1_005
    assert window.model.rowCount() == 50


def answer_message_box(button_text: str) -> None:
    """Press the button of the message box about to open (it runs its own event loop)."""

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(10, answer)
            return
        next(b for b in box.buttons() if b.text().replace("&", "") == button_text).click()

    QTimer.singleShot(0, answer)


def test_clear_read_asks_with_a_message_box_by_default(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "box.sqlite3", [payload(seq, is_read=True) for seq in range(1, 53)]
    )
    window = make_window(store, show=True, undo_delay_ms=60_000)
    answer_message_box("Cancel")
    window.clear_read()
    assert window.pending_delete == ()
    answer_message_box("Delete")
    window.clear_read()
    assert len(window.pending_delete) == 52
    assert window.stack.currentWidget() is window.empty_state


def test_a_big_clear_read_is_requested_in_batches_the_outbox_takes(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    rows = DELETE_BATCH + 200
    store = make_inbox(
        tmp_path / "big.sqlite3", [payload(seq, is_read=True) for seq in range(1, rows + 1)]
    )
    window = make_window(store, show=True, undo_delay_ms=20, confirm_clear=lambda _n: True)
    sent = app_deletes(window, store)
    window.clear_read()
    qtbot.waitUntil(lambda: len(sent) == 2)
    assert [len(batch) for batch in sent] == [DELETE_BATCH, 200]
    assert store.count() == 0
    assert window.stack.currentWidget() is window.empty_state


# --- the unread count -----------------------------------------------------------------------


def test_unread_count_follows_the_store_and_mark_all_read(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    assert window.unread_label.text() == "20 unread"
    assert window.unread_label.accessibleName() == "20 unread"
    assert window.mark_all_read_button.isEnabled()
    with qtbot.waitSignal(window.mark_all_read_requested):
        window.mark_all_read_button.click()
    assert window.unread_label.text() == "20 unread"  # passive: the engine does it

    changed = inbox.mark_all_read()  # what the engine does, then tells the window
    window.apply_read(changed, True)
    assert window.unread_label.text() == "0 unread"
    assert not window.mark_all_read_button.isEnabled()

    inbox.ingest([payload(31), payload(32)])
    window.notifications_changed()
    assert window.unread_label.text() == "2 unread"
    assert window.mark_all_read_button.isEnabled()
    inbox.remove([1032])
    window.apply_removed([1032])
    assert window.unread_label.text() == "1 unread"
    window.set_unread_count(1_234)  # the server's count, relayed by the app
    assert window.unread_label.text() == "1,234 unread"


# --- access and size ------------------------------------------------------------------------


def test_every_control_is_named_and_reached_from_the_keyboard(
    inbox: Inbox, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    window = make_window(inbox, show=True)
    window.list_view.setCurrentIndex(window.model.index(0, 0))
    kinds = (QAbstractButton, QLineEdit, QComboBox, QAbstractItemView, QPlainTextEdit)
    controls = [
        widget
        for widget in window.findChildren(QWidget)
        if isinstance(widget, kinds)
        and widget.window() is window
        and not isinstance(widget.parent(), QLineEdit)  # the search box's own clear button
        and widget.objectName() != "qt_toolbar_ext_button"
    ]
    names = {
        widget.accessibleName() or (widget.text() if isinstance(widget, QAbstractButton) else "")
        for widget in controls
    }
    assert {"Mark all read", "Clear read notifications", "Undo delete", "Open link"} <= names
    assert {"Notification text", "Notifications", "Search notifications", "Delete"} <= names
    for widget in controls:
        name = widget.accessibleName() or (
            widget.text() if isinstance(widget, QAbstractButton) else ""
        )
        assert name.strip(), widget
        assert widget.focusPolicy() & Qt.FocusPolicy.TabFocus, name


def test_window_stays_usable_small(
    tmp_path: Path, make_window: Callable[..., HistoryWindow], qtbot: QtBot
) -> None:
    store = make_inbox(
        tmp_path / "s.sqlite3",
        [payload(1, project=(3, "W" * 5_000), url="https://example.test/" + "w" * 5_000)],
    )
    window = make_window(store, show=True)
    window.list_view.setCurrentIndex(window.model.index(0, 0))
    smallest = window.minimumSizeHint()
    # Long server text (project, link) does not widen it.
    assert smallest.width() <= 480
    assert smallest.height() <= 400
    window.resize(smallest)
    qtbot.waitUntil(lambda: window.size() == smallest)
    assert window.list_view.height() >= 120
    assert window.detail_area.height() >= 80
    assert window.toolbar.widgetForAction(window.delete_action).isVisible()
