"""The History window: every stored notification, searchable, over the local store.

The list is a lazy :class:`HistoryModel` over a :class:`HistorySource` (the store's
:class:`~tray_app.store.inbox.Inbox`): it holds only the pages the view has asked for
(``canFetchMore``/``fetchMore``), so 100,000 stored rows open as fast as 100. Searching and
filtering are answered by the store (full-text index, SQL), never by walking loaded rows.

The window is passive (shared/DESIGN.md, invariant 6): it reads through the source it is
given and emits requests (mark read, delete, open); the app applies them and tells the
window what changed (:meth:`HistoryWindow.apply_read`, :meth:`HistoryWindow.apply_removed`,
:meth:`HistoryWindow.notifications_changed`). Notification text is plain text everywhere:
the delegate paints it with ``QPainter.drawText`` and tooltips escape it.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any, Final, Protocol

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont, QFontMetrics, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from tray_app.store import NO_FILTERS, Filters, StoredNotification, StoreError
from tray_app.time_words import describe_age
from tray_app.toast_policy import BIDI_CONTROLS
from tray_app.ui.row_painting import paint_over_item_panel, secondary_font, utc_now

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ModelIndex = QModelIndex | QPersistentModelIndex

PAGE_SIZE: Final = 200
SEARCH_DEBOUNCE_MS: Final = 250
# Ages are shown to the minute; repainting twice a minute keeps them right without cost.
AGE_REFRESH_MS: Final = 30_000
# New rows at the top are merged in place up to this many; beyond that a reload is cheaper.
MAX_MERGED_ROWS: Final = 1_000

PRIORITY_LABELS: Final = {"urgent": "Urgent", "high": "High", "normal": "Normal", "low": "Low"}
# Chip colours for the priorities worth flagging; readable on light and dark palettes.
PRIORITY_CHIP_COLOURS: Final = {"urgent": QColor("#d93025"), "high": QColor("#e37400")}
UNREAD_DOT_COLOUR: Final = QColor("#1a73e8")
OFFLINE_TEXT: Final = "Offline — showing saved notifications"
EMPTY_TEXT: Final = "No notifications yet"
EMPTY_HINT: Final = "New notifications will appear here as they arrive."
NO_MATCH_TEXT: Final = "Nothing matches"
NO_MATCH_HINT: Final = "Try other words, or clear the filters."
LOAD_FAILED_TEXT: Final = "Saved notifications cannot be read"

_LINE_BREAKS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BIDI_CONTROLS: Final = re.compile(f"[{BIDI_CONTROLS}]")


def single_line(text: str) -> str:
    """``text`` with line breaks and control characters folded into single spaces."""
    return _LINE_BREAKS.sub(" ", _BIDI_CONTROLS.sub("", text)).strip()


def plain_tooltip(*paragraphs: str) -> str:
    """A tooltip that shows ``paragraphs`` literally.

    Qt renders a tooltip as rich text when it merely looks like HTML, and as plain text
    otherwise (where an escaped ``&lt;`` would show as is), so the text is escaped and
    always wrapped in a tag: it is rich text whose content is the literal input.
    """
    body = "<br>".join(html.escape(part).replace("\n", "<br>") for part in paragraphs if part)
    return f"<p style='white-space:pre-wrap'>{body}</p>"


def _age(item: StoredNotification, now: datetime) -> str:
    """How long ago ``item`` arrived, as a row says it ("5 min ago"), in local time."""
    return describe_age(item.created_at, now.astimezone(), ago=True)


class HistorySource(Protocol):
    """What the history reads from: the engine (:class:`tray_app.engine.Engine`), or
    the store itself (:class:`tray_app.store.inbox.Inbox`) in tests."""

    def search(
        self, filters: Filters = ..., *, limit: int = 100, offset: int = 0
    ) -> list[StoredNotification]:
        """One page of the notifications ``filters`` selects, newest first."""
        ...

    def count(self, filters: Filters = ...) -> int:
        """How many notifications ``filters`` selects."""
        ...

    def projects(self) -> list[tuple[int, str]]:
        """``(project_id, title)`` of every project seen."""
        ...


class HistoryRole(IntEnum):
    """The model's data roles (besides Qt's display, tooltip and accessibility roles)."""

    TITLE = int(Qt.ItemDataRole.UserRole) + 1
    MESSAGE = TITLE + 1
    PROJECT = TITLE + 2
    AGE = TITLE + 3
    PRIORITY = TITLE + 4
    IS_READ = TITLE + 5
    ID = TITLE + 6
    URL = TITLE + 7
    CREATED_AT = TITLE + 8


def _counts_toward(filters: Filters, notification: StoredNotification) -> bool:
    """Whether the store still lists ``notification`` under ``filters``.

    Only the read state of a loaded row can change, so only that filter is checked.
    """
    return filters.unread is None or filters.unread != notification.is_read


class HistoryModel(QAbstractListModel):
    """Stored notifications, newest first, loaded a page at a time.

    The loaded rows are always the first rows the store lists for the current filters, so
    the next page is read at ``offset`` = how many loaded rows the store still lists.
    ``apply_read``/``remove`` change rows in place; ``merge_new`` inserts new rows at the
    top; anything the model cannot reconcile cheaply becomes a reload (a model reset), which
    views see as ``modelAboutToBeReset``/``modelReset``.

    A store failure (:class:`~tray_app.store.errors.StoreError`: disk full, file gone) is
    never raised out of a Qt callback: the model keeps what it has, stops fetching, logs it
    and emits ``load_failed``.

    Signals:
        total_changed(int): How many notifications the current filters select changed.
        load_failed(str): Reading the store failed; the text is fit to show the user.

    Args:
        source: The store to read.
        clock: The current time (timezone-aware), for ages.
        page_size: Rows per fetch.
        parent: The Qt parent.
    """

    total_changed = Signal(int)
    load_failed = Signal(str)

    def __init__(
        self,
        source: HistorySource,
        *,
        clock: Clock = utc_now,
        page_size: int = PAGE_SIZE,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._source = source
        self._clock = clock
        self._page_size = page_size
        self._filters = NO_FILTERS
        self._rows: list[StoredNotification] = []
        self._row_of: dict[int, int] = {}
        self._offset = 0
        self._total = 0
        self._exhausted = True

    # -- what the model holds --

    @property
    def filters(self) -> Filters:
        """The filters the rows were read with."""
        return self._filters

    @property
    def total(self) -> int:
        """How many notifications the store holds for the current filters."""
        return self._total

    @property
    def page_size(self) -> int:
        """Rows per fetch."""
        return self._page_size

    def now(self) -> datetime:
        """The current time, as the model's clock tells it (ages are relative to it)."""
        return self._clock()

    def notification(self, row: int) -> StoredNotification:
        """The notification shown in ``row`` (IndexError outside the loaded rows)."""
        if row < 0:
            raise IndexError(row)
        return self._rows[row]

    def row_of(self, notification_id: int) -> int | None:
        """The row showing this notification, or None when it is not loaded."""
        return self._row_of.get(notification_id)

    def ids(self, rows: Iterable[int]) -> list[int]:
        """The notification ids in these rows (rows outside the model are skipped)."""
        return [self._rows[row].id for row in rows if 0 <= row < len(self._rows)]

    # -- Qt model interface --

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """How many rows are loaded (a list has no children)."""
        return 0 if parent.isValid() else len(self._rows)

    def canFetchMore(self, parent: ModelIndex) -> bool:  # noqa: N802
        """Whether the store lists rows that are not loaded yet."""
        return not parent.isValid() and not self._exhausted and self._offset < self._total

    def fetchMore(self, parent: ModelIndex) -> None:  # noqa: N802
        """Load the next page from the store."""
        if parent.isValid() or self._exhausted:
            return
        try:
            page = self._source.search(self._filters, limit=self._page_size, offset=self._offset)
        except StoreError as exc:
            self._failed(exc)
            return
        if any(item.id in self._row_of for item in page):
            # Rows arrived at the top of the store since the last merge, so offsets moved.
            logger.debug("history: the store moved under a fetch; reloading")
            self._reload(minimum=len(self._rows) + self._page_size)
            return
        self._offset += len(page)
        if len(page) < self._page_size:
            self._exhausted = True
        if page:
            self._append(page)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The notification's fields for the view (see :class:`HistoryRole`)."""
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item = self._rows[index.row()]
        match role:
            case Qt.ItemDataRole.DisplayRole | HistoryRole.TITLE:
                return single_line(item.title)
            case HistoryRole.MESSAGE:
                return item.message
            case HistoryRole.PROJECT:
                return item.project_title or ""
            case HistoryRole.AGE:
                return _age(item, self._clock())
            case HistoryRole.PRIORITY:
                return item.priority
            case HistoryRole.IS_READ:
                return item.is_read
            case HistoryRole.ID:
                return item.id
            case HistoryRole.URL:
                return item.url
            case HistoryRole.CREATED_AT:
                return item.created_at
            case Qt.ItemDataRole.ToolTipRole:
                return plain_tooltip(item.title, item.message)
            case Qt.ItemDataRole.AccessibleTextRole:
                return self._spoken(item)
        return None

    def roleNames(self) -> dict[int, QByteArray]:  # noqa: N802
        """Role names for QML-style consumers."""
        names = super().roleNames()
        for role in HistoryRole:
            names[int(role)] = QByteArray(role.name.lower().encode())
        return names

    def _spoken(self, item: StoredNotification) -> str:
        parts = [
            "Read" if item.is_read else "Unread",
            PRIORITY_LABELS.get(item.priority, "") if item.priority in ("high", "urgent") else "",
            single_line(item.title),
            item.project_title or "",
            _age(item, self._clock()),
        ]
        return ". ".join(part for part in parts if part)

    # -- changes --

    def refresh(self, filters: Filters = NO_FILTERS) -> None:
        """Show what ``filters`` selects, from its first page (a model reset)."""
        self._filters = filters
        self._reload(minimum=self._page_size)

    def reload(self) -> None:
        """Read again as many rows as are loaded (at least a page), as a model reset."""
        self._reload(minimum=max(len(self._rows), self._page_size))

    def _reload(self, *, minimum: int) -> None:
        self.beginResetModel()
        try:
            rows = self._source.search(self._filters, limit=minimum, offset=0)
            # A failing count must not leave the rows and the total disagreeing: read both
            # before touching anything.
            total = self._source.count(self._filters)
        except StoreError as exc:
            self._set_rows([])
            self._offset = 0
            self._exhausted = True
            self.endResetModel()
            self._set_total(0)
            self._failed(exc)
            return
        self._set_rows(rows)
        self._offset = len(rows)
        self._exhausted = len(rows) < minimum
        self.endResetModel()
        self._set_total(total)

    def merge_new(self) -> None:
        """Take in notifications that arrived since the rows were read.

        New rows at the top are inserted in place (views keep their selection); anything
        else (rows that appeared between loaded ones, rows deleted elsewhere) reloads.
        """
        newest_seq = self._rows[0].seq if self._rows else 0
        try:
            total = self._source.count(self._filters)
            # Only what is newer than the top row: the store reads exactly the new rows.
            fresh = self._source.search(
                replace(self._filters, after_seq=newest_seq), limit=MAX_MERGED_ROWS + 1
            )
        except StoreError as exc:
            self._failed(exc)
            return
        if len(fresh) > MAX_MERGED_ROWS or self._total + len(fresh) != total:
            self.reload()
            return
        if fresh:
            self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
            self._rows[0:0] = fresh
            self._reindex()
            self._offset += len(fresh)
            self.endInsertRows()
        self._set_total(total)

    def trim(self, keep: int) -> None:
        """Unload the rows past the first ``keep``; the view fetches them again if it needs them.

        Rows merged in at the top otherwise pile up: a catch-up of 10,000 rows with the
        window open would leave 10,000 loaded, and the view lays out every loaded row (a
        call into this model per row) each time rows are inserted.
        """
        keep = max(keep, 0)
        if len(self._rows) <= keep:
            return
        self.beginRemoveRows(QModelIndex(), keep, len(self._rows) - 1)
        for item in self._rows[keep:]:
            self._offset -= _counts_toward(self._filters, item)
            del self._row_of[item.id]
        del self._rows[keep:]
        self._exhausted = False
        self.endRemoveRows()

    def apply_read(self, ids: Iterable[int], is_read: bool) -> list[int]:
        """Show these notifications as read (or unread), row by row.

        Rows stay where they are even when the filters would now exclude them (an
        "unread only" view keeps a row just marked read until the next refresh, so Space can
        undo it).

        Returns:
            The ids whose loaded row changed.
        """
        changed: list[int] = []
        for notification_id in ids:
            row = self._row_of.get(notification_id)
            if row is None or self._rows[row].is_read == is_read:
                continue
            before = self._rows[row]
            after = replace(before, is_read=is_read)
            self._rows[row] = after
            self._offset += _counts_toward(self._filters, after) - _counts_toward(
                self._filters, before
            )
            index = self.index(row, 0)
            self.dataChanged.emit(index, index)
            changed.append(notification_id)
        if self._filters.unread is not None:
            self._recount()
        return changed

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Drop these notifications' rows (unknown ids are ignored).

        Returns:
            The ids whose rows were removed.
        """
        rows = sorted({row for i in ids if (row := self._row_of.get(i)) is not None})
        removed = [self._rows[row].id for row in rows]
        # Contiguous runs, bottom up, so earlier row numbers stay valid.
        for first, last in reversed(list(_runs(rows))):
            self.beginRemoveRows(QModelIndex(), first, last)
            for item in self._rows[first : last + 1]:
                self._offset -= _counts_toward(self._filters, item)
            del self._rows[first : last + 1]
            self._reindex()
            self.endRemoveRows()
        self._recount()
        return removed

    def refresh_ages(self) -> None:
        """Tell views the ages changed (the clock moved on)."""
        if self._rows:
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(self._rows) - 1, 0), [int(HistoryRole.AGE)]
            )

    # -- bookkeeping --

    def _append(self, page: Sequence[StoredNotification]) -> None:
        start = len(self._rows)
        self.beginInsertRows(QModelIndex(), start, start + len(page) - 1)
        for offset, item in enumerate(page):
            self._rows.append(item)
            self._row_of[item.id] = start + offset
        self.endInsertRows()

    def _set_rows(self, rows: list[StoredNotification]) -> None:
        self._rows = rows
        self._reindex()

    def _reindex(self) -> None:
        self._row_of = {item.id: row for row, item in enumerate(self._rows)}

    def _recount(self) -> None:
        try:
            self._set_total(self._source.count(self._filters))
        except StoreError as exc:
            self._failed(exc)

    def _failed(self, error: StoreError) -> None:
        # StoreError messages name no notification content, so they are safe to log.
        logger.warning("history: reading the store failed: %s", error)
        self._exhausted = True
        self.load_failed.emit(str(error))

    def _set_total(self, total: int) -> None:
        self._total = total
        self.total_changed.emit(total)


def _runs(rows: Sequence[int]) -> Iterable[tuple[int, int]]:
    """Sorted row numbers as ``(first, last)`` runs of consecutive rows."""
    start = previous = None
    for row in rows:
        if start is None or previous is None:
            start = previous = row
        elif row == previous + 1:
            previous = row
        else:
            yield start, previous
            start = previous = row
    if start is not None and previous is not None:
        yield start, previous


class HistoryDelegate(QStyledItemDelegate):
    """Paints one notification in three lines, as plain text.

    Line one: an unread dot, the title (bold while unread) and a chip for high and urgent
    priority. Line two: project and age. Line three: the start of the message. Every string
    is drawn with ``QPainter.drawText`` and elided to fit, so nothing is ever read as HTML.
    """

    PADDING: Final = 8
    DOT_SIZE: Final = 8
    GUTTER: Final = 22
    LINE_GAP: Final = 2

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:  # noqa: N802
        """Three lines of text and padding; every row is the same height."""
        title = QFontMetrics(self._title_font(option.font, unread=True))
        small = QFontMetrics(secondary_font(option.font))
        height = title.height() + 2 * small.height() + 2 * self.LINE_GAP + 2 * self.PADDING
        return QSize(320, height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        """Draw the row."""
        model = index.model()
        if not isinstance(model, HistoryModel):
            super().paint(painter, option, index)
            return
        item = model.notification(index.row())
        paint_over_item_panel(
            self, painter, option, index, lambda: self._paint_content(painter, option, item, model)
        )

    def _paint_content(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        item: StoredNotification,
        model: HistoryModel,
    ) -> None:
        rect: QRect = option.rect
        palette: QPalette = option.palette
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_colour = palette.color(text_role)
        secondary = QColor(text_colour)
        secondary.setAlphaF(0.75 if selected else 0.62)
        unread = not item.is_read
        base_font: QFont = option.font
        title_font = self._title_font(base_font, unread=unread)
        small_font = secondary_font(base_font)
        title_metrics = QFontMetrics(title_font)
        small_metrics = QFontMetrics(small_font)

        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        left = rect.left() + self.GUTTER
        right = rect.right() - self.PADDING - 4
        top = rect.top() + self.PADDING

        if unread:
            dot_y = top + (title_metrics.height() - self.DOT_SIZE) // 2
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(text_colour if selected else UNREAD_DOT_COLOUR)
            painter.drawEllipse(
                rect.left() + (self.GUTTER - self.DOT_SIZE) // 2 + 1,
                dot_y,
                self.DOT_SIZE,
                self.DOT_SIZE,
            )

        chip_colour = PRIORITY_CHIP_COLOURS.get(item.priority)
        if chip_colour is not None:
            chip_font = QFont(small_font)
            chip_font.setBold(True)
            chip_metrics = QFontMetrics(chip_font)
            label = PRIORITY_LABELS[item.priority]
            chip_width = chip_metrics.horizontalAdvance(label) + 12
            chip_height = chip_metrics.height() + 2
            chip = QRect(
                right - chip_width + 1,
                top + (title_metrics.height() - chip_height) // 2,
                chip_width,
                chip_height,
            )
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(chip_colour)
            painter.drawRoundedRect(chip, chip_height / 2, chip_height / 2)
            painter.setFont(chip_font)
            painter.setPen(QColor("white"))
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, label)
            title_right = chip.left() - 8
        else:
            title_right = right

        title_rect = QRect(left, top, max(0, title_right - left), title_metrics.height())
        painter.setFont(title_font)
        painter.setPen(text_colour)
        painter.drawText(
            title_rect,
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            title_metrics.elidedText(
                single_line(item.title) or "(no title)",
                Qt.TextElideMode.ElideRight,
                title_rect.width(),
            ),
        )

        painter.setFont(small_font)
        line_two = top + title_metrics.height() + self.LINE_GAP
        age = _age(item, model.now())
        meta = " · ".join(part for part in (single_line(item.project_title or ""), age) if part)
        meta_rect = QRect(left, line_two, max(0, right - left), small_metrics.height())
        painter.setPen(secondary)
        painter.drawText(
            meta_rect,
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            small_metrics.elidedText(meta, Qt.TextElideMode.ElideMiddle, meta_rect.width()),
        )

        message = single_line(item.message)
        if message:
            line_three = line_two + small_metrics.height() + self.LINE_GAP
            message_rect = QRect(left, line_three, max(0, right - left), small_metrics.height())
            painter.drawText(
                message_rect,
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                small_metrics.elidedText(
                    message, Qt.TextElideMode.ElideRight, message_rect.width()
                ),
            )

        if not selected:
            separator = palette.color(QPalette.ColorRole.Mid)
            separator.setAlphaF(0.35)
            painter.setPen(separator)
            painter.drawLine(left, rect.bottom(), rect.right(), rect.bottom())

    @staticmethod
    def _title_font(base: QFont, *, unread: bool) -> QFont:
        font = QFont(base)
        font.setBold(unread)
        return font


class DateRange(IntEnum):
    """The date filter's choices."""

    ALL = 0
    TODAY = 1
    LAST_7_DAYS = 2
    LAST_30_DAYS = 3


_DATE_RANGE_LABELS: Final = {
    DateRange.ALL: "Any time",
    DateRange.TODAY: "Today",
    DateRange.LAST_7_DAYS: "Last 7 days",
    DateRange.LAST_30_DAYS: "Last 30 days",
}


def range_start(choice: DateRange, now: datetime) -> datetime | None:
    """Where a date range begins (``since``), or None for any time.

    "Today" starts at local midnight; the others count whole days back from ``now``.
    """
    match choice:
        case DateRange.TODAY:
            return now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        case DateRange.LAST_7_DAYS:
            return now - timedelta(days=7)
        case DateRange.LAST_30_DAYS:
            return now - timedelta(days=30)
    return None


class HistoryWindow(QWidget):
    """Every stored notification: search, filter, mark read or unread, delete, open.

    Keyboard: Enter opens, Space toggles read, Delete deletes the selected rows, Ctrl+F
    goes to the search box, Ctrl+A selects all; the arrows and Shift/Ctrl extend the
    selection as in any list.

    Signals:
        mark_read_requested(list): The user asked to mark these notification ids read.
        mark_unread_requested(list): The user asked to mark these ids unread.
        delete_requested(list): The user asked to delete these ids.
        open_requested(int, str): The user asked to open a notification (id, url).
        filters_changed(): The search text or a filter changed and the list was re-read.

    Args:
        source: The store to read (an :class:`~tray_app.store.inbox.Inbox`).
        clock: The current time (timezone-aware), for ages and date ranges.
        page_size: Rows read per fetch.
        parent: The Qt parent.
    """

    mark_read_requested = Signal(list)
    mark_unread_requested = Signal(list)
    delete_requested = Signal(list)
    open_requested = Signal(int, str)
    filters_changed = Signal()

    def __init__(
        self,
        source: HistorySource,
        *,
        clock: Clock = utc_now,
        page_size: int = PAGE_SIZE,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._source = source
        self._clock = clock
        self._saved_view: _ViewState | None = None
        # What the store said when it last failed; shown until the next successful read.
        self._failure: str | None = None
        self._resets = 0
        self._projects_listed: list[tuple[int, str]] | None = None
        self.setWindowTitle("Notification history")
        self.resize(620, 680)

        self.model = HistoryModel(source, clock=clock, page_size=page_size, parent=self)
        self._build_banner()
        self._build_filters()
        self._build_list()
        self._build_actions()
        self._build_layout()

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._apply_filters)
        self.search_box.textChanged.connect(lambda _text: self._search_timer.start())
        self.search_box.returnPressed.connect(self._apply_filters)

        self._age_timer = QTimer(self)
        self._age_timer.setInterval(AGE_REFRESH_MS)
        self._age_timer.timeout.connect(self.model.refresh_ages)
        self._age_timer.start()

        self.model.modelAboutToBeReset.connect(self._remember_view)
        self.model.modelReset.connect(self._restore_view)
        self.model.total_changed.connect(lambda _total: self._update_state())
        self.model.rowsInserted.connect(lambda *_: self._update_state())
        self.model.rowsRemoved.connect(lambda *_: self._update_state())
        self.model.dataChanged.connect(lambda *_: self._update_actions())
        self.model.load_failed.connect(self._show_failure)

        self._reload_projects()
        self.model.refresh(self.current_filters())
        self._update_state()

    # -- building --

    def _build_banner(self) -> None:
        self.offline_banner = QLabel(OFFLINE_TEXT, self)
        self.offline_banner.setObjectName("offlineBanner")
        self.offline_banner.setTextFormat(Qt.TextFormat.PlainText)
        self.offline_banner.setStyleSheet(
            "#offlineBanner { background: #fff4d6; color: #5c4400; border: 1px solid #f0c54a;"
            " border-radius: 6px; padding: 6px 10px; }"
        )
        self.offline_banner.setVisible(False)

    def _build_filters(self) -> None:
        self.search_box = QLineEdit(self)
        self.search_box.setPlaceholderText("Search notifications  (Ctrl+F)")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setAccessibleName("Search notifications")

        self.unread_only = QCheckBox("Unread only", self)
        self.unread_only.toggled.connect(lambda _on: self._apply_filters())

        self.project_combo = QComboBox(self)
        self.project_combo.setAccessibleName("Project")
        self.project_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.project_combo.setMinimumContentsLength(10)
        self.project_combo.currentIndexChanged.connect(lambda _i: self._apply_filters())

        self.priority_button = QPushButton(self)
        self.priority_button.setAccessibleName("Priority")
        self.priority_menu = QMenu(self.priority_button)
        self.priority_actions: dict[str, QAction] = {}
        for priority in ("urgent", "high", "normal", "low"):
            action = self.priority_menu.addAction(PRIORITY_LABELS[priority])
            action.setCheckable(True)
            action.setData(priority)
            action.toggled.connect(lambda _on: self._apply_filters())
            self.priority_actions[priority] = action
        self.priority_button.setMenu(self.priority_menu)
        self._update_priority_label()

        self.date_combo = QComboBox(self)
        self.date_combo.setAccessibleName("Date")
        for choice, label in _DATE_RANGE_LABELS.items():
            self.date_combo.addItem(label, int(choice))
        self.date_combo.currentIndexChanged.connect(lambda _i: self._apply_filters())

    def _build_list(self) -> None:
        self.list_view = QListView(self)
        self.list_view.setModel(self.model)
        self.list_view.setItemDelegate(HistoryDelegate(self.list_view))
        self.list_view.setUniformItemSizes(True)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list_view.setFrameShape(QFrame.Shape.NoFrame)
        self.list_view.setAccessibleName("Notifications")
        self.list_view.doubleClicked.connect(lambda index: self._open(index))
        self.list_view.customContextMenuRequested.connect(self._show_context_menu)
        selection = self.list_view.selectionModel()
        selection.selectionChanged.connect(lambda *_: self._update_actions())
        selection.currentChanged.connect(lambda *_: self._update_actions())

        self.empty_title = QLabel(self)
        self.empty_title.setTextFormat(Qt.TextFormat.PlainText)
        self.empty_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title_font = self.empty_title.font()
        title_font.setPointSizeF(title_font.pointSizeF() * 1.35)
        title_font.setBold(True)
        self.empty_title.setFont(title_font)
        self.empty_hint = QLabel(self)
        self.empty_hint.setTextFormat(Qt.TextFormat.PlainText)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.clear_filters_button = QPushButton("Clear filters", self)
        self.clear_filters_button.clicked.connect(self.clear_filters)
        empty = QWidget(self)
        empty_layout = QVBoxLayout(empty)
        empty_layout.addStretch(2)
        empty_layout.addWidget(self.empty_title)
        empty_layout.addWidget(self.empty_hint)
        empty_layout.addSpacing(8)
        empty_layout.addWidget(self.clear_filters_button, 0, Qt.AlignmentFlag.AlignCenter)
        empty_layout.addStretch(3)
        self.empty_state = empty

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.list_view)
        self.stack.addWidget(self.empty_state)

        self.status_label = QLabel(self)
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

    def _build_actions(self) -> None:
        def action(text: str, keys: Sequence[QKeySequence], slot: Callable[[], None]) -> QAction:
            made = QAction(text, self)
            made.setShortcuts(list(keys))
            # Scoped to the list: Space, Enter and Delete mean something else in the search box.
            made.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            made.triggered.connect(lambda _checked=False: slot())
            self.list_view.addAction(made)
            if keys:
                made.setToolTip(
                    f"{text} ({keys[0].toString(QKeySequence.SequenceFormat.NativeText)})"
                )
            return made

        self.open_action = action(
            "Open",
            [QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)],
            self._open_current,
        )
        self.toggle_read_action = action(
            "Toggle read", [QKeySequence(Qt.Key.Key_Space)], self._toggle_read
        )
        self.mark_read_action = action("Mark read", [], self._mark_selected_read)
        self.mark_unread_action = action("Mark unread", [], self._mark_selected_unread)
        self.delete_action = action(
            "Delete", [QKeySequence(QKeySequence.StandardKey.Delete)], self._delete_selected
        )
        self.find_action = QAction("Find", self)
        self.find_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Find))
        self.find_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.find_action.triggered.connect(self._focus_search)
        self.addAction(self.find_action)

        self.toolbar = QToolBar(self)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar.setIconSize(QSize(16, 16))
        for made in (
            self.open_action,
            self.mark_read_action,
            self.mark_unread_action,
            self.delete_action,
        ):
            self.toolbar.addAction(made)

    def _build_layout(self) -> None:
        filters = QHBoxLayout()
        filters.setSpacing(8)
        filters.addWidget(self.unread_only)
        filters.addWidget(self.project_combo)
        filters.addWidget(self.priority_button)
        filters.addWidget(self.date_combo)
        filters.addStretch(1)

        footer = QHBoxLayout()
        footer.addWidget(self.toolbar)
        footer.addStretch(1)
        footer.addWidget(self.status_label)

        top = QVBoxLayout()
        top.setContentsMargins(12, 12, 12, 6)
        top.setSpacing(8)
        top.addWidget(self.offline_banner)
        top.addWidget(self.search_box)
        top.addLayout(filters)

        line = QFrame(self)
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        bottom_line = QFrame(self)
        bottom_line.setFrameShape(QFrame.Shape.HLine)
        bottom_line.setFrameShadow(QFrame.Shadow.Sunken)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(8, 2, 12, 6)
        bottom.addLayout(footer)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(line)
        layout.addWidget(self.stack, 1)
        layout.addWidget(bottom_line)
        layout.addLayout(bottom)

    # -- public interface --

    def set_offline(self, offline: bool) -> None:
        """Show or hide the "Offline — showing saved notifications" banner."""
        self.offline_banner.setVisible(offline)

    def notifications_changed(self) -> None:
        """New notifications were stored: show them, keeping the selection and the scroll.

        Rows added at the top appear above the current ones; when the list is scrolled down,
        the rows in view stay in view.
        """
        bar = self.list_view.verticalScrollBar()
        anchored = bar.value() > 0
        before = self.model.rowCount()
        resets = self._resets
        row_height = self._row_height()
        self._failure = None
        self._reload_projects()
        self.model.merge_new()
        added = self.model.rowCount() - before
        if anchored and added > 0 and resets == self._resets:
            # Rows inserted above the viewport push its content down by their height.
            self.list_view.doItemsLayout()
            bar.setValue(bar.value() + added * row_height)
        elif not anchored and added > 0:
            # At the top the rows pushed down by new ones are out of view: unload all but
            # a page (and the selected rows), so the list stays as cheap as when it opened.
            selected = [index.row() for index in self.list_view.selectionModel().selectedRows()]
            self.model.trim(max([self.model.page_size - 1, *selected]) + 1)

    def apply_read(self, ids: Sequence[int], is_read: bool) -> None:
        """These notifications were marked read (or unread): restyle their rows in place."""
        self.model.apply_read(ids, is_read)
        self._update_actions()

    def apply_removed(self, ids: Sequence[int]) -> None:
        """These notifications were deleted: drop their rows, keep a sensible selection."""
        current = self.list_view.currentIndex()
        current_row = current.row() if current.isValid() else -1
        selected = {index.row() for index in self.list_view.selectionModel().selectedIndexes()}
        removed_rows = {row for i in ids if (row := self.model.row_of(i)) is not None}
        self.model.remove(ids)
        self._reload_projects()
        if current_row in removed_rows and self.model.rowCount() > 0:
            # Deleting from the keyboard should land on the next row, as in a mail client.
            below = current_row - sum(1 for row in removed_rows if row < current_row)
            row = min(below, self.model.rowCount() - 1)
            index = self.model.index(row, 0)
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
            if selected <= removed_rows:
                self.list_view.selectionModel().setCurrentIndex(index, flags)
            else:
                self.list_view.selectionModel().setCurrentIndex(
                    index, QItemSelectionModel.SelectionFlag.NoUpdate
                )
        self._update_state()

    def current_filters(self) -> Filters:
        """The filters the controls describe now."""
        project = self.project_combo.currentData()
        choice = DateRange(self.date_combo.currentData() or 0)
        return Filters(
            text=self.search_box.text().strip(),
            unread=True if self.unread_only.isChecked() else None,
            project_id=project if isinstance(project, int) else None,
            priorities=frozenset(
                priority for priority, action in self.priority_actions.items() if action.isChecked()
            ),
            since=range_start(choice, self._clock()),
        )

    def selected_ids(self) -> list[int]:
        """The ids of the selected rows, top to bottom."""
        rows = sorted(index.row() for index in self.list_view.selectionModel().selectedRows())
        return self.model.ids(rows)

    def clear_filters(self) -> None:
        """Reset the search and every filter (one re-read)."""
        widgets: list[QWidget] = [
            self.search_box,
            self.unread_only,
            self.project_combo,
            self.date_combo,
        ]
        for widget in widgets:
            widget.blockSignals(True)
        for action in self.priority_actions.values():
            action.blockSignals(True)
        try:
            self.search_box.clear()
            self.unread_only.setChecked(False)
            self.project_combo.setCurrentIndex(0)
            self.date_combo.setCurrentIndex(0)
            for action in self.priority_actions.values():
                action.setChecked(False)
        finally:
            for widget in widgets:
                widget.blockSignals(False)
            for action in self.priority_actions.values():
                action.blockSignals(False)
        self._apply_filters()

    # -- reacting to the user --

    def _apply_filters(self) -> None:
        self._failure = None
        self._search_timer.stop()
        self._update_priority_label()
        filters = self.current_filters()
        self.model.refresh(filters)
        self.list_view.scrollToTop()
        self._update_state()
        self.filters_changed.emit()

    def _focus_search(self) -> None:
        self.search_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_box.selectAll()

    def _open(self, index: QModelIndex | QPersistentModelIndex) -> None:
        if not index.isValid():
            return
        item = self.model.notification(index.row())
        self.open_requested.emit(item.id, item.url)

    def _open_current(self) -> None:
        current = self.list_view.currentIndex()
        if not current.isValid():
            rows = self.list_view.selectionModel().selectedRows()
            if not rows:
                return
            current = rows[0]
        self._open(current)

    def _selected_items(self) -> list[StoredNotification]:
        rows = sorted(index.row() for index in self.list_view.selectionModel().selectedRows())
        return [self.model.notification(row) for row in rows]

    def _toggle_read(self) -> None:
        items = self._selected_items()
        if not items:
            return
        unread = [item.id for item in items if not item.is_read]
        if unread:
            self.mark_read_requested.emit(unread)
        else:
            self.mark_unread_requested.emit([item.id for item in items])

    def _mark_selected_read(self) -> None:
        ids = [item.id for item in self._selected_items() if not item.is_read]
        if ids:
            self.mark_read_requested.emit(ids)

    def _mark_selected_unread(self) -> None:
        ids = [item.id for item in self._selected_items() if item.is_read]
        if ids:
            self.mark_unread_requested.emit(ids)

    def _delete_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.delete_requested.emit(ids)

    def _show_context_menu(self, position: QPoint) -> None:
        index = self.list_view.indexAt(position)
        if not index.isValid():
            return
        selection = self.list_view.selectionModel()
        if not selection.isSelected(index):
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        menu = self.context_menu()
        menu.popup(self.list_view.viewport().mapToGlobal(position))

    def context_menu(self) -> QMenu:
        """The menu for the selected rows (what a right click shows)."""
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        for made in (self.open_action, self.mark_read_action, self.mark_unread_action):
            menu.addAction(made)
        menu.addSeparator()
        menu.addAction(self.delete_action)
        return menu

    # -- keeping the view in step --

    def _row_height(self) -> int:
        if self.model.rowCount() == 0:
            return 0
        return self.list_view.sizeHintForRow(0)

    def _remember_view(self) -> None:
        view = self.list_view
        current = view.currentIndex()
        top = view.indexAt(QPoint(4, 4))
        self._saved_view = _ViewState(
            selected=self.selected_ids(),
            current=self.model.notification(current.row()).id if current.isValid() else None,
            top=self.model.notification(top.row()).id if top.isValid() else None,
            top_offset=view.visualRect(top).top() if top.isValid() else 0,
        )

    def _restore_view(self) -> None:
        saved, self._saved_view = self._saved_view, None
        self._resets += 1
        if saved is None:
            return
        view = self.list_view
        selection = view.selectionModel()
        chosen = QItemSelection()
        for notification_id in saved.selected:
            row = self.model.row_of(notification_id)
            if row is not None:
                index = self.model.index(row, 0)
                chosen.select(index, index)
        if not chosen.isEmpty():
            selection.select(chosen, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        current_row = None if saved.current is None else self.model.row_of(saved.current)
        if current_row is not None:
            selection.setCurrentIndex(
                self.model.index(current_row, 0), QItemSelectionModel.SelectionFlag.NoUpdate
            )
        top_row = None if saved.top is None else self.model.row_of(saved.top)
        if top_row is not None:
            view.doItemsLayout()
            view.scrollTo(self.model.index(top_row, 0), QAbstractItemView.ScrollHint.PositionAtTop)
            bar = view.verticalScrollBar()
            bar.setValue(bar.value() - saved.top_offset)

    def _show_failure(self, message: str) -> None:
        self._failure = message
        self._update_state()

    def _update_priority_label(self) -> None:
        chosen = [
            PRIORITY_LABELS[priority]
            for priority, action in self.priority_actions.items()
            if action.isChecked()
        ]
        self.priority_button.setText(
            "Any priority" if not chosen else "Priority: " + ", ".join(chosen)
        )

    def _reload_projects(self) -> None:
        combo = self.project_combo
        chosen = combo.currentData()
        try:
            projects = self._source.projects()
        except StoreError as exc:
            logger.warning("history: reading the projects failed: %s", exc)
            return
        if projects == self._projects_listed:
            return  # new rows of known projects: nothing to rebuild
        self._projects_listed = projects
        combo.blockSignals(True)
        try:
            combo.clear()
            combo.addItem("All projects", None)
            for project_id, title in projects:
                combo.addItem(single_line(title) or f"Project {project_id}", project_id)
            index = combo.findData(chosen) if chosen is not None else 0
            combo.setCurrentIndex(max(index, 0))
        finally:
            combo.blockSignals(False)
        if chosen is not None and combo.currentData() != chosen:
            # The chosen project is gone (its last notification deleted): show all.
            self._apply_filters()

    def _update_state(self) -> None:
        filtered = self.model.filters != NO_FILTERS
        if self.model.rowCount() == 0:
            if self._failure is not None:
                self.empty_title.setText(LOAD_FAILED_TEXT)
                self.empty_hint.setText(self._failure)
            elif filtered:
                self.empty_title.setText(NO_MATCH_TEXT)
                self.empty_hint.setText(NO_MATCH_HINT)
            else:
                self.empty_title.setText(EMPTY_TEXT)
                self.empty_hint.setText(EMPTY_HINT)
            self.clear_filters_button.setVisible(filtered and self._failure is None)
            self.stack.setCurrentWidget(self.empty_state)
        else:
            self.stack.setCurrentWidget(self.list_view)
        self._update_actions()

    def _update_actions(self) -> None:
        items = self._selected_items()
        self.open_action.setEnabled(self.list_view.currentIndex().isValid() or bool(items))
        self.toggle_read_action.setEnabled(bool(items))
        self.mark_read_action.setEnabled(any(not item.is_read for item in items))
        self.mark_unread_action.setEnabled(any(item.is_read for item in items))
        self.delete_action.setEnabled(bool(items))
        self.status_label.setText(self._status_text(len(items)))

    def _status_text(self, selected: int) -> str:
        if self._failure is not None:
            return self._failure
        total = self.model.total
        if self.model.filters != NO_FILTERS:
            counted = f"{total:,} " + ("match" if total == 1 else "matches")
        else:
            counted = f"{total:,} " + ("notification" if total == 1 else "notifications")
        return f"{selected:,} selected of {counted}" if selected > 1 else counted


@dataclass(frozen=True)
class _ViewState:
    """What the list showed before a reload, by notification id."""

    selected: list[int]
    current: int | None
    top: int | None
    top_offset: int
