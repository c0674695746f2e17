"""The History window: every stored notification, searchable, over the local store.

The list is a lazy :class:`HistoryModel` over a :class:`HistorySource` (the store's
:class:`~tray_app.store.inbox.Inbox`): it holds only the pages the view has asked for
(``canFetchMore``/``fetchMore``), so 100,000 stored rows open as fast as 100. Searching and
filtering are answered by the store (full-text index, SQL), never by walking loaded rows.

The window is passive (shared/DESIGN.md, invariant 6): it reads through the source it is
given and emits requests (mark read, delete, open); the app applies them and tells the
window what changed (:meth:`HistoryWindow.apply_read`, :meth:`HistoryWindow.apply_removed`,
:meth:`HistoryWindow.notifications_changed`). Notification text is plain text everywhere:
the delegate paints it with ``QPainter.drawText``, tooltips escape it and the detail pane
shows it in a plain-text editor and plain-text labels.

Rows are grouped by local day ("Today", "Yesterday", "Monday", "4 Mar"): the header is
painted by the delegate above the first row of each day, so headers are not rows (nothing
to select, nothing for the keyboard to skip) and the model's paging is untouched.

A delete waits: the rows leave the list at once (:meth:`HistoryModel.hide`), and
``delete_requested`` goes out only when the undo offer lapses, the user deletes again,
changes the filters or closes the window. Undo puts the rows back where they were.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from enum import IntEnum
from typing import Any, Final, Protocol

import msgspec
from msgspec.structs import replace
from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QEvent,
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
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QFont,
    QFontMetrics,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from tray_app.store import NO_FILTERS, Filters, StoredNotification, StoreError
from tray_app.time_words import as_aware, describe_age
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
NO_DETAIL_TEXT: Final = "Select a notification to read it here."
# How long a delete can be undone before it reaches the engine.
UNDO_DELAY_MS: Final = 10_000
# "Clear read" asks first when it would delete more rows than this.
CLEAR_READ_CONFIRM_ABOVE: Final = 50
# The outbox takes at most this many ids per action (tray_app.store.outbox).
DELETE_BATCH: Final = 1_000
# The detail pane's one-line fields (project, actor, link) are cut here: they are server
# text of any length, and a label lays out all of it. The title and message are shown whole.
DETAIL_FIELD_LIMIT: Final = 500
# The link button shows at most this many characters of the url (the middle elided).
LINK_TEXT_LIMIT: Final = 80

_LINE_BREAKS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BIDI_CONTROLS: Final = re.compile(f"[{BIDI_CONTROLS}]")
# Control characters other than tab and newline, for text that keeps its lines.
_CONTROLS_BUT_LINES: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_LONG_RUN: Final = re.compile(r"\S{2000}")


def single_line(text: str) -> str:
    """``text`` with line breaks and control characters folded into single spaces."""
    return _LINE_BREAKS.sub(" ", _BIDI_CONTROLS.sub("", text)).strip()


def plain_lines(text: str) -> str:
    """``text`` with its line breaks kept as newlines, control and bidi characters removed.

    For the detail pane, which shows a message whole: a bidi override must not reverse
    what follows it, and a NUL or escape has nothing to show.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROLS_BUT_LINES.sub(" ", _BIDI_CONTROLS.sub("", text)).strip()


def _cut(text: str, limit: int = DETAIL_FIELD_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _elide_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def local_day(moment: datetime) -> date:
    """The local calendar day ``moment`` falls on (a naive moment is UTC)."""
    return as_aware(moment).astimezone().date()


def day_label(moment: datetime, now: datetime) -> str:
    """The header of ``moment``'s day group, on the local clock: "Today", "Yesterday",
    a weekday name within the last week ("Monday"), then "4 Mar", or "30 Dec 2024" in
    another year. A moment after ``now`` (clocks disagree a little) is today.
    """
    day = local_day(moment)
    today = local_day(now)
    days = (today - day).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 7:
        return f"{day:%A}"
    if day.year == today.year:
        return f"{day.day} {day:%b}"
    return f"{day.day} {day:%b %Y}"


def absolute_time(moment: datetime) -> str:
    """``moment`` on the local clock, in full: "Fri 14 Mar 2025, 13:05"."""
    local = as_aware(moment).astimezone()
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}"


def actor_name(actor: dict[str, Any] | None) -> str:
    """Who caused a notification, as the detail pane says it: "Bob Baker (bob)", "bob",
    or "System" when no one did. Every field is untrusted server text."""
    if not actor:
        return "System"

    def text(key: str) -> str:
        value = actor.get(key)
        return single_line(value) if isinstance(value, str) else ""

    username = text("username")
    display = text("display_name") or " ".join(
        part for part in (text("first_name"), text("last_name")) if part
    )
    if display and username and display != username:
        return f"{display} ({username})"
    return display or username or "Someone"


# What text between tags must escape. Not html.escape: the html module loads its table of
# 2,231 named entities (0.5 MiB that stays after the window closes; issue 20).
_HTML_TEXT: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "<br>"})


def plain_tooltip(*paragraphs: str) -> str:
    """A tooltip that shows ``paragraphs`` literally.

    Qt renders a tooltip as rich text when it merely looks like HTML, and as plain text
    otherwise (where an escaped ``&lt;`` would show as is), so the text is escaped and
    always wrapped in a tag: it is rich text whose content is the literal input.
    """
    body = "<br>".join(part.translate(_HTML_TEXT) for part in paragraphs if part)
    return f"<p style='white-space:pre-wrap'>{body}</p>"


def _age(item: StoredNotification, now: datetime) -> str:
    """How long ago ``item`` arrived, as a row says it ("5 min ago"), in local time."""
    return describe_age(item.created_at, now.astimezone(), ago=True)


class HistorySource(Protocol):
    """What the history reads from: the engine (:class:`tray_app.engine.Engine`), or
    the store itself (:class:`tray_app.store.inbox.Inbox`) in tests."""

    def unread_count(self) -> int:
        """How many notifications are unread (what the tray's badge says)."""
        ...

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
    DAY = TITLE + 9  # the day header above this row ("Today"), or "" inside a day group


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

    Hidden rows (:meth:`hide`: deleted, with the deletion not yet sent) are rows the store
    still lists but the model does not show: they still count toward the offset of the
    next page, and pages skip them. While read rows are hidden by "Clear read", the store
    is asked for unread rows only, so skipping never walks every read row of a big store.

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
        # How many of the rows the store lists (for the effective filters) the loaded rows,
        # shown and hidden, cover: where the next page starts.
        self._offset = 0
        # What the store counts for the effective filters, hidden rows included.
        self._total = 0
        self._exhausted = True
        self._newest_seq = 0
        # Ids not shown (a delete waiting for its undo to lapse, or sent and not yet
        # confirmed by apply_removed/remove), and those of them read in the loaded range.
        self._hidden: set[int] = set()
        self._hidden_rows: dict[int, StoredNotification] = {}
        self._hide_read = False
        # Local day of each loaded row, by id: the day headers ask for it on every layout.
        self._days: dict[int, date] = {}

    # -- what the model holds --

    @property
    def filters(self) -> Filters:
        """The filters the rows were read with."""
        return self._filters

    @property
    def total(self) -> int:
        """How many notifications the current filters select, hidden ones left out."""
        effective = self._effective
        listed_hidden = sum(
            1 for item in self._hidden_rows.values() if _counts_toward(effective, item)
        )
        return max(0, self._total - listed_hidden)

    @property
    def _effective(self) -> Filters:
        """The filters the store is asked with: the user's, and unread only while
        "Clear read" hides every read row (the store skips them, not the model)."""
        if self._hide_read and self._filters.unread is None:
            return replace(self._filters, unread=True)
        return self._filters

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

    def starts_day(self, row: int) -> bool:
        """Whether ``row`` is the first loaded row of its local day (it carries a header)."""
        if not 0 <= row < len(self._rows):
            return False
        return row == 0 or self._day(self._rows[row - 1]) != self._day(self._rows[row])

    def day_header(self, row: int) -> str | None:
        """The header of the day group ``row`` opens ("Today", "4 Mar"), or None when
        the row above is on the same local day (or ``row`` is not loaded)."""
        if not self.starts_day(row):
            return None
        return day_label(self._rows[row].created_at, self._clock())

    def _day(self, item: StoredNotification) -> date:
        day = self._days.get(item.id)
        if day is None:
            day = self._days[item.id] = local_day(item.created_at)
        return day

    # -- Qt model interface --

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """How many rows are loaded (a list has no children)."""
        return 0 if parent.isValid() else len(self._rows)

    def canFetchMore(self, parent: ModelIndex) -> bool:  # noqa: N802
        """Whether the store lists rows that are not loaded yet."""
        return not parent.isValid() and not self._exhausted and self._offset < self._total

    def fetchMore(self, parent: ModelIndex) -> None:  # noqa: N802
        """Load the next page from the store (more pages while every row read is hidden)."""
        if parent.isValid():
            return
        while not self._exhausted:
            try:
                page = self._source.search(
                    self._effective, limit=self._page_size, offset=self._offset
                )
            except StoreError as exc:
                self._failed(exc)
                return
            if any(item.id in self._row_of or item.id in self._hidden_rows for item in page):
                # Rows arrived at the top of the store since the last merge, so offsets moved.
                logger.debug("history: the store moved under a fetch; reloading")
                self._reload(minimum=self._loaded + self._page_size)
                return
            self._offset += len(page)
            if len(page) < self._page_size:
                self._exhausted = True
            shown = self._take_hidden(page)
            if len(shown) < len(page):
                self._set_total(self._total)  # hidden rows seen: the total shown drops
            if shown:
                self._append(shown)
                return

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The notification's fields for the view (see :class:`HistoryRole`)."""
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        item = self._rows[index.row()]
        match role:
            case HistoryRole.DAY:
                return self.day_header(index.row()) or ""
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
                return self._spoken(item, self.day_header(index.row()))
        return None

    def roleNames(self) -> dict[int, QByteArray]:  # noqa: N802
        """Role names for QML-style consumers."""
        names = super().roleNames()
        for role in HistoryRole:
            names[int(role)] = QByteArray(role.name.lower().encode())
        return names

    def _spoken(self, item: StoredNotification, day: str | None) -> str:
        # A screen reader meets no painted header: the first row of a day says the day.
        parts = [
            day or "",
            "Read" if item.is_read else "Unread",
            PRIORITY_LABELS.get(item.priority, "") if item.priority in ("high", "urgent") else "",
            single_line(item.title),
            item.project_title or "",
            _age(item, self._clock()),
        ]
        return ". ".join(part for part in parts if part)

    # -- changes --

    def refresh(self, filters: Filters = NO_FILTERS) -> None:
        """Show what ``filters`` selects, from its first page (a model reset).

        Read rows hidden by ``hide(..., read_rows=True)`` show again (that hiding was for
        the old filters); rows hidden by id stay hidden.
        """
        self._filters = filters
        self._hide_read = False
        self._reload(minimum=self._page_size)

    def reload(self) -> None:
        """Read again as many rows as are loaded (at least a page), as a model reset."""
        self._reload(minimum=max(self._loaded, self._page_size))

    @property
    def _loaded(self) -> int:
        return len(self._rows) + len(self._hidden_rows)

    def _reload(self, *, minimum: int) -> None:
        self.beginResetModel()
        effective = self._effective
        try:
            rows = self._source.search(effective, limit=minimum, offset=0)
            # A failing count must not leave the rows and the total disagreeing: read both
            # before touching anything.
            total = self._source.count(effective)
        except StoreError as exc:
            self._set_rows([])
            self._hidden_rows = {}
            self._offset = 0
            self._exhausted = True
            self.endResetModel()
            self._set_total(0)
            self._failed(exc)
            return
        self._hidden_rows = {}
        self._days = {}
        self._offset = len(rows)
        self._exhausted = len(rows) < minimum
        self._newest_seq = rows[0].seq if rows else 0
        self._set_rows(self._take_hidden(rows))
        self.endResetModel()
        self._set_total(total)

    def _take_hidden(self, rows: Sequence[StoredNotification]) -> list[StoredNotification]:
        """The rows to show; the hidden ones among ``rows`` are kept aside."""
        if not self._hidden:
            return list(rows)
        shown = []
        for item in rows:
            if item.id in self._hidden:
                self._hidden_rows[item.id] = item
            else:
                shown.append(item)
        return shown

    def merge_new(self) -> None:
        """Take in notifications that arrived since the rows were read.

        New rows at the top are inserted in place (views keep their selection); anything
        else (rows that appeared between loaded ones, rows deleted elsewhere) reloads.
        """
        effective = self._effective
        try:
            total = self._source.count(effective)
            # Only what is newer than the top row: the store reads exactly the new rows.
            fresh = self._source.search(
                replace(effective, after_seq=self._newest_seq),
                limit=MAX_MERGED_ROWS + 1,
            )
        except StoreError as exc:
            self._failed(exc)
            return
        if len(fresh) > MAX_MERGED_ROWS or self._total + len(fresh) != total:
            self.reload()
            return
        if fresh:
            self._newest_seq = fresh[0].seq
            self._offset += len(fresh)
            shown = self._take_hidden(fresh)
            if shown:
                self.beginInsertRows(QModelIndex(), 0, len(shown) - 1)
                self._rows[0:0] = shown
                self._reindex()
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
        effective = self._effective
        self.beginRemoveRows(QModelIndex(), keep, len(self._rows) - 1)
        for item in self._rows[keep:]:
            self._offset -= _counts_toward(effective, item)
            del self._row_of[item.id]
        del self._rows[keep:]
        # Hidden rows below the last kept one are unloaded too (rows are in seq order).
        last_kept = self._rows[-1].seq if self._rows else self._newest_seq + 1
        for item in [item for item in self._hidden_rows.values() if item.seq < last_kept]:
            self._offset -= _counts_toward(effective, item)
            del self._hidden_rows[item.id]
        self._exhausted = False
        self.endRemoveRows()
        self._set_total(self._total)

    def apply_read(self, ids: Iterable[int], is_read: bool) -> list[int]:
        """Show these notifications as read (or unread), row by row.

        Rows stay where they are even when the filters would now exclude them (an
        "unread only" view keeps a row just marked read until the next refresh, so Space can
        undo it).

        Returns:
            The ids whose loaded row changed.
        """
        changed: list[int] = []
        effective = self._effective
        for notification_id in ids:
            hidden = self._hidden_rows.get(notification_id)
            if hidden is not None and hidden.is_read != is_read:
                # Not shown, but the store's list moved: the next page must still line up.
                self._hidden_rows[notification_id] = replace(hidden, is_read=is_read)
                self._offset += _counts_toward(
                    effective, self._hidden_rows[notification_id]
                ) - _counts_toward(effective, hidden)
            row = self._row_of.get(notification_id)
            if row is None or self._rows[row].is_read == is_read:
                continue
            before = self._rows[row]
            after = replace(before, is_read=is_read)
            self._rows[row] = after
            self._offset += _counts_toward(effective, after) - _counts_toward(effective, before)
            index = self.index(row, 0)
            self.dataChanged.emit(index, index)
            changed.append(notification_id)
        if effective.unread is not None:
            self._recount()
        return changed

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Drop these notifications' rows (unknown ids are ignored).

        Returns:
            The ids whose rows were removed.
        """
        ids = list(ids)
        effective = self._effective
        for notification_id in ids:
            self._hidden.discard(notification_id)
            hidden = self._hidden_rows.pop(notification_id, None)
            if hidden is not None:
                self._offset -= _counts_toward(effective, hidden)
        rows = sorted({row for i in ids if (row := self._row_of.get(i)) is not None})
        removed = [self._rows[row].id for row in rows]
        # Contiguous runs, bottom up, so earlier row numbers stay valid.
        for first, last in reversed(list(_runs(rows))):
            self.beginRemoveRows(QModelIndex(), first, last)
            for item in self._rows[first : last + 1]:
                self._offset -= _counts_toward(effective, item)
            del self._rows[first : last + 1]
            self._reindex()
            self.endRemoveRows()
        self._recount()
        return removed

    def hide(self, ids: Iterable[int], *, read_rows: bool = False) -> None:
        """Take these notifications out of the list; the store still holds them.

        For a delete that can be undone: the rows go at once (row by row, so views keep
        their selection and scroll) and pages read later skip them, until :meth:`unhide`
        or :meth:`remove` (the store deleted them).

        Args:
            ids: The notifications to hide.
            read_rows: These are every read row of the current filters ("Clear read"):
                the store is asked for unread rows only while they are hidden (a model
                reset), rather than the model skipping page after page of read rows.
        """
        wanted = set(ids) - self._hidden
        self._hidden |= wanted
        if read_rows and self._filters.unread is None:
            self._hide_read = True
            self.reload()
            return
        rows = sorted({row for i in wanted if (row := self._row_of.get(i)) is not None})
        for first, last in reversed(list(_runs(rows))):
            self.beginRemoveRows(QModelIndex(), first, last)
            for item in self._rows[first : last + 1]:
                self._hidden_rows[item.id] = item
            del self._rows[first : last + 1]
            self._reindex()
            self.endRemoveRows()
        self._set_total(self._total)

    def stop_hiding_read(self) -> None:
        """End the read-row hiding of ``hide(..., read_rows=True)`` (a reload); the ids it
        hid stay hidden until :meth:`remove` or :meth:`unhide`."""
        if self._hide_read:
            self._hide_read = False
            self.reload()

    def hidden_read_count(self) -> int:
        """How many of the hidden rows the loaded range holds are read."""
        return sum(1 for item in self._hidden_rows.values() if item.is_read)

    def unhide(self, ids: Iterable[int]) -> list[int]:
        """Show these hidden notifications again, where they were (undo of a delete).

        Returns:
            The ids whose rows came back into the loaded rows (others come with later
            pages, or were never loaded).
        """
        wanted = set(ids) & self._hidden
        self._hidden -= wanted
        if self._hide_read:
            self._hide_read = False
            self.reload()
            return [item.id for item in self._rows if item.id in wanted]
        back = sorted(
            (self._hidden_rows.pop(i) for i in wanted if i in self._hidden_rows),
            key=lambda item: -item.seq,
        )
        if not back:
            return []
        # The rows are in seq order (newest first): merge the returning ones in place, as
        # runs of consecutive rows, top down so that each run's row numbers are final.
        merged = sorted([*self._rows, *back], key=lambda item: -item.seq)
        returning = {item.id for item in back}
        positions = [row for row, item in enumerate(merged) if item.id in returning]
        for first, last in _runs(positions):
            self.beginInsertRows(QModelIndex(), first, last)
            self._rows[first:first] = merged[first : last + 1]
            self._reindex()
            self.endInsertRows()
        self._set_total(self._total)
        return [item.id for item in back]

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
            self._set_total(self._source.count(self._effective))
        except StoreError as exc:
            self._failed(exc)

    def _failed(self, error: StoreError) -> None:
        # StoreError messages name no notification content, so they are safe to log.
        logger.warning("history: reading the store failed: %s", error)
        self._exhausted = True
        self.load_failed.emit(str(error))

    def _set_total(self, total: int) -> None:
        self._total = total
        self.total_changed.emit(self.total)


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
    """Paints one notification in three lines, as plain text, under its day's header.

    Line one: an unread dot, the title (bold while unread) and a chip for high and urgent
    priority. Line two: project and age. Line three: the start of the message. Every string
    is drawn with ``QPainter.drawText`` and elided to fit, so nothing is ever read as HTML.
    The first row of each local day is taller by a header band ("Today", "4 Mar") drawn
    above the row's own panel, so the selection never covers the header.
    """

    PADDING: Final = 8
    DOT_SIZE: Final = 8
    GUTTER: Final = 22
    LINE_GAP: Final = 2
    HEADER_PADDING: Final = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # (row height, header band height) by font, and those of the view's font: the view
        # asks every loaded row's size on each layout (100,000 times, scrolled to the end
        # of a big store), so that path must not even build a font key.
        self._heights: dict[str, tuple[int, int]] = {}
        self._view_heights: tuple[int, int] | None = None

    def forget_font(self) -> None:
        """The view's font or style changed: measure the rows again."""
        self._view_heights = None

    def heights(self, font: QFont) -> tuple[int, int]:
        """The height of a row and of a day header band, in ``font``."""
        key = font.key()
        known = self._heights.get(key)
        if known is None:
            title = QFontMetrics(self._title_font(font, unread=True))
            small = QFontMetrics(secondary_font(font))
            row = title.height() + 2 * small.height() + 2 * self.LINE_GAP + 2 * self.PADDING
            header = QFontMetrics(self._header_font(font)).height() + 2 * self.HEADER_PADDING
            known = self._heights[key] = (row, header)
        return known

    def header_height(self, font: QFont, index: ModelIndex) -> int:
        """The height of the day header band drawn above ``index``'s row (0 for none)."""
        model = index.model()
        if not isinstance(model, HistoryModel) or not model.starts_day(index.row()):
            return 0
        return self.heights(font)[1]

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:  # noqa: N802
        """Three lines of text and padding, and the day's header above a day's first row."""
        known = self._view_heights
        if known is None:
            known = self._view_heights = self.heights(option.font)
        row, header = known
        model = index.model()
        if isinstance(model, HistoryModel) and model.starts_day(index.row()):
            return QSize(320, row + header)
        return QSize(320, row)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        """Draw the row (and its day header)."""
        model = index.model()
        if not isinstance(model, HistoryModel):
            super().paint(painter, option, index)
            return
        item = model.notification(index.row())
        header = model.day_header(index.row())
        if header is None:
            row_option = option
        else:
            band = self.heights(option.font)[1]
            self._paint_header(painter, option, header)
            row_option = QStyleOptionViewItem(option)
            row_option.rect = QRect(option.rect).adjusted(0, band, 0, 0)
        paint_over_item_panel(
            self,
            painter,
            row_option,
            index,
            lambda: self._paint_content(painter, row_option, item, model),
        )

    def _paint_header(self, painter: QPainter, option: QStyleOptionViewItem, label: str) -> None:
        rect: QRect = option.rect
        band = QRect(rect.left(), rect.top(), rect.width(), self.heights(option.font)[1])
        palette: QPalette = option.palette
        painter.save()
        try:
            painter.fillRect(band, palette.color(QPalette.ColorRole.Window))
            font = self._header_font(option.font)
            painter.setFont(font)
            colour = QColor(palette.color(QPalette.ColorRole.WindowText))
            colour.setAlphaF(0.7)
            painter.setPen(colour)
            text_rect = band.adjusted(self.GUTTER, 0, -self.PADDING, 0)
            painter.drawText(
                text_rect,
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                QFontMetrics(font).elidedText(
                    label, Qt.TextElideMode.ElideRight, text_rect.width()
                ),
            )
        finally:
            painter.restore()

    @staticmethod
    def _header_font(base: QFont) -> QFont:
        font = secondary_font(base)
        font.setBold(True)
        return font

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


class HistoryListView(QListView):
    """The history's list, where a click on a day header selects nothing.

    Day headers are painted inside the first row of each day (:class:`HistoryDelegate`),
    so a press on one would otherwise select the row under it.
    """

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        """A new font or style changes the rows' heights."""
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            delegate = self.itemDelegate()
            if isinstance(delegate, HistoryDelegate):
                delegate.forget_font()
        super().changeEvent(event)

    def header_at(self, position: QPoint) -> bool:
        """Whether ``position`` (viewport coordinates) is on a day header."""
        index = self.indexAt(position)
        delegate = self.itemDelegate()
        if not index.isValid() or not isinstance(delegate, HistoryDelegate):
            return False
        band = delegate.header_height(self.font(), index)
        return position.y() < self.visualRect(index).top() + band

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Select as any list does, except on a day header."""
        if self.header_at(event.position().toPoint()):
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Open as any list does, except on a day header."""
        if self.header_at(event.position().toPoint()):
            event.accept()
            return
        super().mouseDoubleClickEvent(event)


class _PendingDelete(msgspec.Struct, frozen=True):
    """A delete the user can still undo."""

    ids: tuple[int, ...]
    read_rows: bool  # "Clear read": every read row of the filters


class HistoryWindow(QWidget):
    """Every stored notification: search, filter, read, mark read or unread, delete, open.

    The list is grouped by local day; the detail pane under it shows the current row in
    full. A delete (the Delete key or action, "Clear read") takes the rows out of the list
    at once and offers Undo for ``undo_delay_ms``; ``delete_requested`` is emitted only
    when that offer lapses, the user deletes again, changes the filters or closes the
    window.

    Keyboard: Enter opens (a notification without a link opens in the detail pane), Space
    toggles read, Delete deletes the selected rows, Ctrl+Z undoes a delete while Undo is
    offered, Escape in the detail pane goes back to the list, Ctrl+F goes to the search
    box, Ctrl+A selects all; the arrows and Shift/Ctrl extend the selection as in any list.

    Signals:
        mark_read_requested(list): The user asked to mark these notification ids read.
        mark_unread_requested(list): The user asked to mark these ids unread.
        mark_all_read_requested(): The user asked to mark every notification read.
        delete_requested(list): The user deleted these ids and did not undo it (at most
            ``DELETE_BATCH`` ids per emission; a bigger delete is several emissions).
        open_requested(int, str): The user asked to open a notification's link (id, url).
        filters_changed(): The search text or a filter changed and the list was re-read.

    Args:
        source: What to read: the engine, or a store (an
            :class:`~tray_app.store.inbox.Inbox`) in tests.
        clock: The current time (timezone-aware), for ages, day headers and date ranges.
        page_size: Rows read per fetch.
        undo_delay_ms: How long a delete can be undone before it is requested.
        confirm_clear: Asked, with the number of rows, before "Clear read" deletes more
            than ``CLEAR_READ_CONFIRM_ABOVE``; True goes ahead. A message box by default.
        parent: The Qt parent.
    """

    mark_read_requested = Signal(list)
    mark_unread_requested = Signal(list)
    mark_all_read_requested = Signal()
    delete_requested = Signal(list)
    open_requested = Signal(int, str)
    filters_changed = Signal()

    def __init__(
        self,
        source: HistorySource,
        *,
        clock: Clock = utc_now,
        page_size: int = PAGE_SIZE,
        undo_delay_ms: int = UNDO_DELAY_MS,
        confirm_clear: Callable[[int], bool] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._source = source
        self._clock = clock
        self._confirm_clear = confirm_clear or self._ask_to_clear
        self._saved_view: _ViewState | None = None
        # What the store said when it last failed; shown until the next successful read.
        self._failure: str | None = None
        self._resets = 0
        self._projects_listed: list[tuple[int, str]] | None = None
        self._pending: _PendingDelete | None = None
        # What the detail pane shows, to leave the text (and the user's selection in it)
        # alone when only the read state or the age changed.
        self._detail_item: StoredNotification | None = None
        self.setWindowTitle("Notification history")
        self.resize(620, 720)

        self.model = HistoryModel(source, clock=clock, page_size=page_size, parent=self)
        self._build_banner()
        self._build_filters()
        self._build_summary()
        self._build_list()
        self._build_detail()
        self._build_undo_bar(undo_delay_ms)
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
        self._refresh_counts()

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
        self.unread_only.setAccessibleName("Unread only")
        self.unread_only.toggled.connect(lambda _on: self._apply_filters())

        self.project_combo = QComboBox(self)
        self.project_combo.setAccessibleName("Project")
        self.project_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.project_combo.setMinimumContentsLength(10)
        # A project's title is server text of any length: past this the combo elides it
        # rather than widening the window.
        self.project_combo.setMaximumWidth(260)
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

    def _build_summary(self) -> None:
        self.unread_label = QLabel(self)
        self.unread_label.setTextFormat(Qt.TextFormat.PlainText)
        self.unread_label.setAccessibleDescription("Unread notifications")
        self.mark_all_read_button = QPushButton("Mark all read", self)
        self.mark_all_read_button.setAccessibleName("Mark all read")
        self.mark_all_read_button.setToolTip("Mark every notification read")
        self.mark_all_read_button.clicked.connect(
            lambda _checked=False: self.mark_all_read_requested.emit()
        )
        self.clear_read_button = QPushButton("Clear read", self)
        self.clear_read_button.setAccessibleName("Clear read notifications")
        self.clear_read_button.setToolTip("Delete every read notification in this list")
        self.clear_read_button.clicked.connect(lambda _checked=False: self.clear_read())

    def _build_list(self) -> None:
        self.list_view = HistoryListView(self)
        self.list_view.setModel(self.model)
        self.list_view.setItemDelegate(HistoryDelegate(self.list_view))
        # Rows are not all one height (a day's first row carries its header), so the view
        # asks each loaded row's size: a cached lookup per row (HistoryDelegate.heights).
        self.list_view.setUniformItemSizes(False)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list_view.setFrameShape(QFrame.Shape.NoFrame)
        self.list_view.setMinimumHeight(120)
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
        self.clear_filters_button.setAccessibleName("Clear filters")
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

    def _build_detail(self) -> None:
        pane = QFrame(self)
        pane.setObjectName("detailPane")
        pane.setAccessibleName("Notification details")

        self.detail_placeholder = QLabel(NO_DETAIL_TEXT, pane)
        self.detail_placeholder.setTextFormat(Qt.TextFormat.PlainText)
        self.detail_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail_placeholder.setWordWrap(True)
        self.detail_placeholder.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        def field(name: str) -> QLabel:
            label = QLabel(pane)
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse
                | Qt.TextInteractionFlag.TextSelectableByKeyboard
            )
            label.setAccessibleName(name)
            # One line each, cut to the pane (a wrapped label would make the pane's height
            # depend on its width, and the scroll area below would then never let it shrink);
            # server text of any width must not set the window's minimum width either.
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(40)
            return label

        self.detail_project = field("Project")
        self.detail_actor = field("From")
        self.detail_time = field("Received")
        self.detail_priority = field("Priority")
        # The link is a flat button drawn as a link: plain text (no rich-text label to feed
        # server text to), reached with Tab and pressed with Space or Enter, and it asks to
        # open the stored url like the Open action.
        self.detail_link = QPushButton(pane)
        self.detail_link.setObjectName("detailLink")
        self.detail_link.setFlat(True)
        self.detail_link.setAutoDefault(True)  # Enter presses it, as Space does
        self.detail_link.setCursor(Qt.CursorShape.PointingHandCursor)
        self.detail_link.setAccessibleName("Open link")
        self.detail_link.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.detail_link.setMinimumWidth(40)
        self.detail_link.setStyleSheet("#detailLink { text-align: left; }")
        link_palette = self.detail_link.palette()
        link_palette.setColor(
            QPalette.ColorRole.ButtonText, link_palette.color(QPalette.ColorRole.Link)
        )
        self.detail_link.setPalette(link_palette)
        link_font = self.detail_link.font()
        link_font.setUnderline(True)
        self.detail_link.setFont(link_font)
        self.detail_link.clicked.connect(lambda _checked=False: self._open_detail_link())

        # Title and message in a read-only plain-text editor: selectable, wrapped (long
        # words too), scrollable, and a megabyte of text costs it nothing much.
        self.detail_text = QPlainTextEdit(pane)
        self.detail_text.setReadOnly(True)
        self.detail_text.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.detail_text.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.detail_text.setTabChangesFocus(True)
        self.detail_text.setAccessibleName("Notification text")
        self.detail_text.setMinimumHeight(self.detail_text.fontMetrics().lineSpacing() * 3)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(2)
        form.addRow("Project:", self.detail_project)
        form.addRow("From:", self.detail_actor)
        form.addRow("Received:", self.detail_time)
        form.addRow("Priority:", self.detail_priority)
        form.addRow("Link:", self.detail_link)
        self._detail_form = form

        content = QWidget(pane)
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(6)
        content_layout.addWidget(self.detail_text, 1)
        content_layout.addLayout(form)
        self.detail_content = content

        self.detail_stack = QStackedWidget(pane)
        self.detail_stack.addWidget(self.detail_placeholder)
        self.detail_stack.addWidget(content)
        pane_layout = QVBoxLayout(pane)
        pane_layout.setContentsMargins(12, 8, 12, 8)
        pane_layout.addWidget(self.detail_stack)
        self.detail_pane = pane
        # In a small window the pane scrolls rather than squeezing the list to nothing.
        area = QScrollArea(self)
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(pane)
        area.setMinimumHeight(80)
        self.detail_area = area

        back = QAction("Back to the list", pane)
        back.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        back.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        back.triggered.connect(lambda _checked=False: self._focus_list())
        pane.addAction(back)

    def _build_undo_bar(self, delay_ms: int) -> None:
        bar = QFrame(self)
        bar.setObjectName("undoBar")
        bar.setAccessibleName("Deleted notifications")
        bar.setStyleSheet(
            "#undoBar { background: palette(alternate-base); border: 1px solid palette(mid);"
            " border-radius: 6px; }"
        )
        self.undo_label = QLabel(bar)
        self.undo_label.setTextFormat(Qt.TextFormat.PlainText)
        self.undo_button = QPushButton("Undo", bar)
        self.undo_button.setAccessibleName("Undo delete")
        self.undo_button.setToolTip(
            "Undo ("
            + QKeySequence(QKeySequence.StandardKey.Undo).toString(
                QKeySequence.SequenceFormat.NativeText
            )
            + ")"
        )
        self.undo_button.clicked.connect(lambda _checked=False: self.undo_delete())
        layout = QHBoxLayout(bar)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.addWidget(self.undo_label, 1)
        layout.addWidget(self.undo_button)
        bar.setVisible(False)
        self.undo_bar = bar

        self.undo_action = QAction("Undo delete", self)
        self.undo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Undo))
        # Window-wide, but the search box keeps Ctrl+Z for its own text (it claims the key
        # first, as a shortcut override).
        self.undo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.undo_action.setEnabled(False)
        self.undo_action.triggered.connect(lambda _checked=False: self.undo_delete())
        self.addAction(self.undo_action)

        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(delay_ms)
        self._undo_timer.timeout.connect(self.commit_delete)

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
        # The platform's "close window" keys (Ctrl+W, Cmd+W, Ctrl+F4): the window hides
        # and the app stays in the tray, as with the title bar's button.
        self.close_action = QAction("Close", self)
        self.close_action.setShortcuts(QKeySequence.StandardKey.Close)
        self.close_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.close_action.triggered.connect(lambda _checked=False: self.close())
        self.addAction(self.close_action)

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
            # A toolbar's buttons take no focus by default; these are the window's only
            # buttons for their actions, so Tab reaches them like any other control.
            button = self.toolbar.widgetForAction(made)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            button.setAccessibleName(made.text())

    def _build_layout(self) -> None:
        filters = QHBoxLayout()
        filters.setSpacing(8)
        filters.addWidget(self.unread_only)
        filters.addWidget(self.project_combo)
        filters.addWidget(self.priority_button)
        filters.addWidget(self.date_combo)
        filters.addStretch(1)

        summary = QHBoxLayout()
        summary.setSpacing(8)
        summary.addWidget(self.unread_label)
        summary.addStretch(1)
        summary.addWidget(self.mark_all_read_button)
        summary.addWidget(self.clear_read_button)

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
        top.addLayout(summary)

        # List above, detail below: at the default width the rows keep their room, and
        # either side can be dragged smaller; neither collapses out of sight.
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.stack)
        self.splitter.addWidget(self.detail_area)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([380, 240])  # the first split: most of the height to the list

        undo = QHBoxLayout()
        undo.setContentsMargins(12, 6, 12, 0)
        undo.addWidget(self.undo_bar)

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
        layout.addWidget(self.splitter, 1)
        layout.addLayout(undo)
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
        view = self.list_view
        bar = view.verticalScrollBar()
        anchored = bar.value() > 0
        before = self.model.rowCount()
        resets = self._resets
        anchor = self._top_row() if anchored else None
        self._failure = None
        self._reload_projects()
        self.model.merge_new()
        added = self.model.rowCount() - before
        row = None if anchor is None else self.model.row_of(anchor[0])
        if row is not None and anchor is not None and added > 0 and resets == self._resets:
            # Rows inserted above the viewport push its content down (by their heights,
            # which differ with the day headers): scroll by what the top row moved.
            view.doItemsLayout()
            bar.setValue(bar.value() + view.visualRect(self.model.index(row, 0)).top() - anchor[1])
        elif not anchored and added > 0:
            # At the top the rows pushed down by new ones are out of view: unload all but
            # a page (and the selected rows), so the list stays as cheap as when it opened.
            selected = [index.row() for index in view.selectionModel().selectedRows()]
            self.model.trim(max([self.model.page_size - 1, *selected]) + 1)
        self._refresh_counts()

    def apply_read(self, ids: Sequence[int], is_read: bool) -> None:
        """These notifications were marked read (or unread): restyle their rows in place."""
        self.model.apply_read(ids, is_read)
        self._update_actions()
        self._refresh_counts()

    def set_unread_count(self, count: int) -> None:
        """The engine's unread count changed (the server's word, when it has one)."""
        self._show_unread(count)

    def apply_removed(self, ids: Sequence[int]) -> None:
        """These notifications were deleted: drop their rows, keep a sensible selection."""
        current = self.list_view.currentIndex()
        current_row = current.row() if current.isValid() else -1
        selected = {index.row() for index in self.list_view.selectionModel().selectedIndexes()}
        removed_rows = {row for i in ids if (row := self.model.row_of(i)) is not None}
        self._forget_pending(ids)
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
        self._refresh_counts()

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

    @property
    def pending_delete(self) -> tuple[int, ...]:
        """The ids deleted in the list whose ``delete_requested`` is still waiting."""
        return self._pending.ids if self._pending is not None else ()

    def clear_read(self) -> None:
        """Delete every read notification the current filters select, with Undo offered.

        Asks first (``confirm_clear``) when that is more than ``CLEAR_READ_CONFIRM_ABOVE``.
        """
        self.commit_delete()
        filters = self.model.filters
        if filters.unread:
            return
        read = replace(filters, unread=False)
        try:
            count = self._source.count(read)
            if count == 0 or (count > CLEAR_READ_CONFIRM_ABOVE and not self._confirm_clear(count)):
                return
            ids = [item.id for item in self._source.search(read, limit=count)]
        except StoreError as exc:
            self._show_failure(str(exc))
            return
        if ids:
            self._defer_delete(ids, read_rows=True)
            self._focus_list()

    def undo_delete(self) -> None:
        """Put back the rows of the delete still waiting (no-op when none is)."""
        pending = self._end_pending()
        if pending is None:
            return
        restored = self.model.unhide(pending.ids)
        if not pending.read_rows:
            # The rows come back selected, as they were when deleted.
            rows = sorted(row for i in restored if (row := self.model.row_of(i)) is not None)
            if rows:
                chosen = QItemSelection()
                for row in rows:
                    index = self.model.index(row, 0)
                    chosen.select(index, index)
                selection = self.list_view.selectionModel()
                selection.select(chosen, QItemSelectionModel.SelectionFlag.ClearAndSelect)
                first = self.model.index(rows[0], 0)
                selection.setCurrentIndex(first, QItemSelectionModel.SelectionFlag.NoUpdate)
                self.list_view.scrollTo(first)
        self._focus_list()
        self._refresh_counts()

    def commit_delete(self) -> bool:
        """Request the delete still waiting for its undo offer to lapse, now; whether
        there was one. The rows stay out of the list until :meth:`apply_removed`."""
        pending = self._end_pending()
        if pending is None:
            return False
        ids = list(pending.ids)
        for start in range(0, len(ids), DELETE_BATCH):
            self.delete_requested.emit(ids[start : start + DELETE_BATCH])
        if pending.read_rows:
            # The store no longer needs asking for unread rows only: the deleted ids stay
            # hidden by id until the app confirms them (the engine does so at once).
            self.model.stop_hiding_read()
        self._refresh_counts()
        return True

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
        # A delete waiting for Undo is done with once the list shows something else: its
        # rows (and "Clear read"'s meaning) belong to the filters it was made under.
        self.commit_delete()
        self._failure = None
        self._search_timer.stop()
        self._update_priority_label()
        filters = self.current_filters()
        self.model.refresh(filters)
        self.list_view.scrollToTop()
        self._update_state()
        self._refresh_counts()
        self.filters_changed.emit()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Closing the window ends the undo offer: the waiting delete is requested."""
        self.commit_delete()
        super().closeEvent(event)

    def _focus_search(self) -> None:
        self.search_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_box.selectAll()

    def _focus_list(self) -> None:
        """Focus the list, or the Undo button when the list has nothing left to show."""
        if self.stack.currentWidget() is self.list_view:
            self.list_view.setFocus(Qt.FocusReason.OtherFocusReason)
        elif self.undo_bar.isVisibleTo(self):
            self.undo_button.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.list_view.setFocus(Qt.FocusReason.OtherFocusReason)

    def _open(self, index: QModelIndex | QPersistentModelIndex) -> None:
        if not index.isValid():
            return
        item = self.model.notification(index.row())
        if item.url.strip():
            self.open_requested.emit(item.id, item.url)
            return
        # Nothing to open in a browser: the notification is read here, in the detail pane.
        self.show_in_pane(item.id)
        if not item.is_read:
            self.mark_read_requested.emit([item.id])

    def show_in_pane(self, notification_id: int) -> bool:
        """Select this notification and move the focus to the detail pane showing it.

        Returns:
            False when the notification is not among the loaded rows.
        """
        row = self.model.row_of(notification_id)
        if row is None:
            return False
        index = self.model.index(row, 0)
        self.list_view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.list_view.scrollTo(index)
        self._update_detail()
        self.detail_text.setFocus(Qt.FocusReason.OtherFocusReason)
        return True

    def _open_detail_link(self) -> None:
        item = self._detail_item
        if item is not None and item.url.strip():
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
        rows = sorted(index.row() for index in self.list_view.selectionModel().selectedRows())
        ids = self.model.ids(rows)
        if not ids:
            return
        self._defer_delete(ids)
        # The focus goes to the row now where the first deleted one was (the next one), as
        # in a mail client, and never stays on the Delete button.
        model = self.model
        while rows[0] >= model.rowCount() and model.canFetchMore(QModelIndex()):
            model.fetchMore(QModelIndex())
        if model.rowCount() > 0:
            index = model.index(min(rows[0], model.rowCount() - 1), 0)
            self.list_view.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
            self.list_view.scrollTo(index)
        self._focus_list()

    def _defer_delete(self, ids: Sequence[int], *, read_rows: bool = False) -> None:
        self.commit_delete()  # deleting again ends the previous undo offer
        self._pending = _PendingDelete(tuple(ids), read_rows)
        self.model.hide(ids, read_rows=read_rows)
        self._show_pending()
        self._undo_timer.start()
        self.undo_action.setEnabled(True)
        self._update_state()
        self._refresh_counts()

    def _show_pending(self) -> None:
        count = len(self.pending_delete)
        text = f"Deleted {count:,} " + ("notification" if count == 1 else "notifications")
        self.undo_label.setText(text)
        self.undo_bar.setAccessibleDescription(text)
        self.undo_bar.setVisible(True)

    def _end_pending(self) -> _PendingDelete | None:
        pending, self._pending = self._pending, None
        self._undo_timer.stop()
        self.undo_action.setEnabled(False)
        self.undo_bar.setVisible(False)
        return pending

    def _forget_pending(self, ids: Sequence[int]) -> None:
        """Deleted elsewhere first: these ids are no longer this window's to delete."""
        if self._pending is None:
            return
        gone = set(ids)
        left = tuple(i for i in self._pending.ids if i not in gone)
        if len(left) == len(self._pending.ids):
            return
        if left:
            self._pending = replace(self._pending, ids=left)
            self._show_pending()
            return
        pending = self._end_pending()
        if pending is not None and pending.read_rows:
            self.model.stop_hiding_read()

    def _ask_to_clear(self, count: int) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Clear read notifications",
            f"Delete {count:,} read notifications?",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setInformativeText("You can undo this for a few seconds afterwards.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() == delete

    def _show_context_menu(self, position: QPoint) -> None:
        index = self.list_view.indexAt(position)
        if not index.isValid() or self.list_view.header_at(position):
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

    def _top_row(self) -> tuple[int, int] | None:
        """The notification at the top of the viewport and where its row starts."""
        view = self.list_view
        top = view.indexAt(QPoint(4, 4))
        if not top.isValid():
            return None
        return self.model.notification(top.row()).id, view.visualRect(top).top()

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
        self._update_detail()

    def _refresh_counts(self) -> None:
        """Re-read the unread count and whether "Clear read" has anything to clear."""
        try:
            unread = self._source.unread_count()
            filters = self.model.filters
            hiding_read = self._pending is not None and self._pending.read_rows
            read = 0
            if not filters.unread and not hiding_read:
                read = self._source.count(replace(filters, unread=False))
                read -= self.model.hidden_read_count()
        except StoreError as exc:
            logger.warning("history: reading the counts failed: %s", exc)
            return
        self._show_unread(unread)
        self.clear_read_button.setEnabled(read > 0)

    def _show_unread(self, count: int) -> None:
        text = f"{count:,} unread"
        self.unread_label.setText(text)
        self.unread_label.setAccessibleName(text)
        self.mark_all_read_button.setEnabled(count > 0)

    def _update_detail(self) -> None:
        """Show the current row in the detail pane (the first selected one without one)."""
        current = self.list_view.currentIndex()
        if not current.isValid():
            rows = self.list_view.selectionModel().selectedRows()
            current = min(rows, key=lambda index: index.row()) if rows else current
        if not current.isValid():
            self._detail_item = None
            self.detail_stack.setCurrentWidget(self.detail_placeholder)
            return
        item = self.model.notification(current.row())
        shown = self._detail_item
        if shown is None or (shown.id, shown.title, shown.message) != (
            item.id,
            item.title,
            item.message,
        ):
            self._fill_detail_text(item)
        if shown is None or shown != item:
            self._fill_detail_fields(item)
        self._detail_item = item
        now = self._clock()
        age = describe_age(item.created_at, now.astimezone(), ago=True)
        days = (local_day(now) - local_day(item.created_at)).days
        # Past a week the age is a date, which the absolute time already says.
        self.detail_time.setText(absolute_time(item.created_at) + (f" ({age})" if days < 7 else ""))
        self.detail_stack.setCurrentWidget(self.detail_content)

    def _fill_detail_text(self, item: StoredNotification) -> None:
        editor = self.detail_text
        title = plain_lines(item.title) or "(no title)"
        message = plain_lines(item.message)
        # Breaking "anywhere but at word boundaries first" costs Qt time that grows with
        # the square of a run without spaces (a megabyte of one: most of a minute); such
        # text has no words to keep whole, so it is broken anywhere, which is fast.
        unbroken = _LONG_RUN.search(title) or _LONG_RUN.search(message)
        editor.setWordWrapMode(
            QTextOption.WrapMode.WrapAnywhere
            if unbroken
            else QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere
        )
        editor.clear()
        cursor = QTextCursor(editor.document())
        title_format = QTextCharFormat()
        title_format.setFontWeight(QFont.Weight.Bold)
        size = editor.font().pointSizeF()
        if size > 0:
            title_format.setFontPointSize(size * 1.15)
        # insertText takes text literally (never markup); "\n" starts a new paragraph.
        cursor.insertText(title, title_format)
        if message:
            cursor.insertText("\n" + message, QTextCharFormat())
        editor.moveCursor(QTextCursor.MoveOperation.Start)

    def _fill_detail_fields(self, item: StoredNotification) -> None:
        self.detail_project.setText(_cut(single_line(item.project_title or "")) or "None")
        self.detail_actor.setText(_cut(actor_name(item.actor)))
        self.detail_priority.setText(PRIORITY_LABELS.get(item.priority, item.priority.title()))
        url = single_line(item.url)
        # "&" marks a button's mnemonic: doubled, it shows as itself.
        self.detail_link.setText(_elide_middle(url, LINK_TEXT_LIMIT).replace("&", "&&"))
        self.detail_link.setToolTip(plain_tooltip(_cut(url)) if url else "")
        self.detail_link.setAccessibleDescription(_cut(url))
        self._detail_form.setRowVisible(self.detail_link, bool(url))

    def _status_text(self, selected: int) -> str:
        if self._failure is not None:
            return self._failure
        total = self.model.total
        if self.model.filters != NO_FILTERS:
            counted = f"{total:,} " + ("match" if total == 1 else "matches")
        else:
            counted = f"{total:,} " + ("notification" if total == 1 else "notifications")
        return f"{selected:,} selected of {counted}" if selected > 1 else counted


class _ViewState(msgspec.Struct, frozen=True):
    """What the list showed before a reload, by notification id."""

    selected: list[int]
    current: int | None
    top: int | None
    top_offset: int
