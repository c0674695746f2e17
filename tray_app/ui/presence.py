"""The Who's online window: the members of one project at a time, with live status.

Passive (shared/DESIGN.md, invariant 6): the app hands it the user's projects, presence
snapshots and changes as plain :class:`MemberView` values, and it asks for what the user
chooses through signals (which project to watch, the user's own status). Names are plain
text: the delegate paints them with ``QPainter.drawText`` and tooltips escape them.
"""

from __future__ import annotations

import logging
import math
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final

import msgspec
from msgspec.structs import replace
from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from tray_app.net import PresenceMember
from tray_app.time_words import describe_age
from tray_app.ui.history import plain_tooltip, single_line
from tray_app.ui.row_painting import paint_over_item_panel, secondary_font, utc_now

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ModelIndex = QModelIndex | QPersistentModelIndex

CHOOSABLE_STATUSES: Final = ("online", "away", "dnd")
STATUS_LABELS: Final = {
    "online": "Online",
    "away": "Away",
    "dnd": "Do not disturb",
    "offline": "Offline",
}
STATUS_COLOURS: Final = {
    "online": QColor("#1e8e3e"),
    "away": QColor("#f29900"),
    "dnd": QColor("#d93025"),
    "offline": QColor("#9aa0a6"),
}
# "Last seen" moves on by the minute; repainting twice a minute keeps it right.
LAST_SEEN_REFRESH_MS: Final = 30_000
# Avatar backgrounds, picked by user id so a person keeps their colour everywhere.
_AVATAR_COLOURS: Final = (
    "#5b6ee1",
    "#0f9d8a",
    "#c2185b",
    "#7b1fa2",
    "#ef6c00",
    "#2e7d32",
    "#1565c0",
    "#6d4c41",
)
NO_PROJECTS_TEXT: Final = "You are not a member of any project yet."
LOADING_TEXT: Final = "Loading members…"
NO_MEMBERS_TEXT: Final = "This project has no members."


class MemberView(msgspec.Struct, frozen=True):
    """One project member as the window shows them.

    Attributes:
        user_id: The server's user id.
        name: The display name (plain text).
        username: The login name (plain text).
        online: Whether any of their sockets is open.
        status: ``online``, ``away``, ``dnd`` while online; ``offline`` otherwise.
        last_seen: When they were last online (timezone-aware), if known.
    """

    user_id: int
    name: str
    username: str
    online: bool
    status: str
    last_seen: datetime | None

    @property
    def shown_status(self) -> str:
        """The status to draw: ``offline`` when not online, ``online`` for unknown words."""
        if not self.online:
            return "offline"
        return self.status if self.status in CHOOSABLE_STATUSES else "online"


def last_seen_from_epoch(value: float | None) -> datetime | None:
    """Epoch seconds from the protocol as a UTC time; None for missing or absurd values."""
    if value is None or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def member_from_protocol(member: PresenceMember) -> MemberView:
    """A ``presence_snapshot`` member as a :class:`MemberView`.

    The name is "First Last" when the server sends either part, else the username.
    """
    user: Mapping[str, Any] = member.user
    username = single_line(_text(user.get("username")))
    full_name = " ".join(
        part for part in (_text(user.get("first_name")), _text(user.get("last_name"))) if part
    )
    user_id = user.get("id")
    return MemberView(
        user_id=user_id if isinstance(user_id, int) else 0,
        name=single_line(full_name) or username or f"User {user_id}",
        username=username,
        online=member.online,
        status=member.status,
        last_seen=last_seen_from_epoch(member.last_seen),
    )


def describe_presence(member: MemberView, now: datetime) -> str:
    """The status line: "Online", "Away", "Do not disturb", "Last seen 5 min ago"."""
    status = member.shown_status
    if status != "offline":
        return STATUS_LABELS[status]
    if member.last_seen is None:
        return STATUS_LABELS["offline"]
    return f"Last seen {describe_age(member.last_seen, now.astimezone(), ago=True)}"


def _order(member: MemberView) -> tuple[bool, str, str, int]:
    """Online first, then by name as people read it."""
    return (not member.online, member.name.casefold(), member.username.casefold(), member.user_id)


def status_icon(status: str) -> QIcon:
    """A round dot in the status colour, drawn sharp at several sizes."""
    colour = STATUS_COLOURS.get(status, STATUS_COLOURS["offline"])
    icon = QIcon()
    for size in (12, 16, 24, 32, 48):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        inset = size * 0.2
        painter.drawEllipse(QRectF(inset, inset, size - 2 * inset, size - 2 * inset))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


class PresenceRole(IntEnum):
    """The model's data roles (besides display, tooltip and accessibility)."""

    USER_ID = int(Qt.ItemDataRole.UserRole) + 1
    USERNAME = USER_ID + 1
    ONLINE = USER_ID + 2
    STATUS = USER_ID + 3
    LAST_SEEN = USER_ID + 4
    STATUS_TEXT = USER_ID + 5


class PresenceModel(QAbstractListModel):
    """The members of one project, online first, then by name.

    A change to one member touches one row (``dataChanged``, or ``rowsMoved`` when the
    member's place in the order changes), so views keep their scroll and selection.

    Args:
        clock: The current time (timezone-aware), for "last seen".
        parent: The Qt parent.
    """

    def __init__(self, *, clock: Clock = utc_now, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._clock = clock
        self._rows: list[MemberView] = []

    def now(self) -> datetime:
        """The current time, as the model's clock tells it."""
        return self._clock()

    def members(self) -> list[MemberView]:
        """The members in display order."""
        return list(self._rows)

    def member(self, row: int) -> MemberView:
        """The member in ``row`` (IndexError outside the rows)."""
        if row < 0:
            raise IndexError(row)
        return self._rows[row]

    def row_of(self, user_id: int) -> int | None:
        """The row showing this user, or None."""
        for row, member in enumerate(self._rows):
            if member.user_id == user_id:
                return row
        return None

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """How many members are shown."""
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The member's fields for the view (see :class:`PresenceRole`)."""
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        member = self._rows[index.row()]
        match role:
            case Qt.ItemDataRole.DisplayRole:
                return member.name
            case PresenceRole.USER_ID:
                return member.user_id
            case PresenceRole.USERNAME:
                return member.username
            case PresenceRole.ONLINE:
                return member.online
            case PresenceRole.STATUS:
                return member.shown_status
            case PresenceRole.LAST_SEEN:
                return member.last_seen
            case PresenceRole.STATUS_TEXT:
                return describe_presence(member, self._clock())
            case Qt.ItemDataRole.ToolTipRole:
                handle = f"@{member.username}" if member.username else ""
                return plain_tooltip(member.name, handle, describe_presence(member, self._clock()))
            case Qt.ItemDataRole.AccessibleTextRole:
                return f"{member.name}. {describe_presence(member, self._clock())}"
        return None

    def roleNames(self) -> dict[int, QByteArray]:  # noqa: N802
        """Role names for QML-style consumers."""
        names = super().roleNames()
        for role in PresenceRole:
            names[int(role)] = QByteArray(role.name.lower().encode())
        return names

    def set_members(self, members: Iterable[MemberView]) -> None:
        """Show these members (a model reset); a repeated user id keeps its last entry."""
        unique = {member.user_id: member for member in members}
        self.beginResetModel()
        self._rows = sorted(unique.values(), key=_order)
        self.endResetModel()

    def update_member(self, member: MemberView) -> bool:
        """Replace the row of ``member.user_id``, moving it if its place changes.

        Returns:
            False when the user is not shown (nothing changed).
        """
        row = self.row_of(member.user_id)
        if row is None:
            return False
        others = self._rows[:row] + self._rows[row + 1 :]
        target = bisect_left([_order(other) for other in others], _order(member))
        if target != row:
            # Qt counts the destination before the move: moving down lands past the row.
            destination = target + 1 if target > row else target
            self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), destination)
            others.insert(target, member)
            self._rows = others
            self.endMoveRows()
        else:
            self._rows[row] = member
        index = self.index(target, 0)
        self.dataChanged.emit(index, index)
        return True

    def refresh_last_seen(self) -> None:
        """Tell views the "last seen" texts changed (the clock moved on)."""
        if self._rows:
            self.dataChanged.emit(
                self.index(0, 0),
                self.index(len(self._rows) - 1, 0),
                [int(PresenceRole.STATUS_TEXT)],
            )


class PresenceDelegate(QStyledItemDelegate):
    """Paints a member: an initials avatar with a status dot, the name, the status line."""

    PADDING: Final = 8
    AVATAR: Final = 34
    DOT: Final = 12

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:  # noqa: N802
        """Two lines of text or the avatar, whichever is taller, plus padding."""
        name = QFontMetrics(self._name_font(option.font))
        small = QFontMetrics(secondary_font(option.font))
        text_height = name.height() + small.height() + 2
        return QSize(260, max(self.AVATAR, text_height) + 2 * self.PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        """Draw the row."""
        model = index.model()
        if not isinstance(model, PresenceModel):
            super().paint(painter, option, index)
            return
        member = model.member(index.row())
        paint_over_item_panel(
            self,
            painter,
            option,
            index,
            lambda: self._paint_member(painter, option, member, model.now()),
        )

    def _paint_member(
        self, painter: QPainter, option: QStyleOptionViewItem, member: MemberView, now: datetime
    ) -> None:
        rect: QRect = option.rect
        palette: QPalette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_colour = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        secondary = QColor(text_colour)
        secondary.setAlphaF(0.75 if selected else 0.6)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)

        # Avatar: initials on a colour of their own; faded while offline.
        avatar = QRect(
            rect.left() + self.PADDING + 4,
            rect.top() + (rect.height() - self.AVATAR) // 2,
            self.AVATAR,
            self.AVATAR,
        )
        background = QColor(_AVATAR_COLOURS[zlib.crc32(str(member.user_id).encode()) % 8])
        if not member.online:
            background.setAlphaF(0.45)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(background)
        painter.drawEllipse(avatar)
        initials_font = QFont(option.font)
        initials_font.setBold(True)
        if initials_font.pointSizeF() > 0:
            initials_font.setPointSizeF(max(7.0, initials_font.pointSizeF() - 1))
        painter.setFont(initials_font)
        painter.setPen(QColor("white"))
        painter.drawText(avatar, Qt.AlignmentFlag.AlignCenter, _initials(member))

        # Status dot on the avatar's corner, ringed in the row's background so it reads.
        status = member.shown_status
        dot = QRect(
            avatar.right() - self.DOT + 3, avatar.bottom() - self.DOT + 3, self.DOT, self.DOT
        )
        ring = palette.color(QPalette.ColorRole.Highlight if selected else QPalette.ColorRole.Base)
        painter.setPen(QPen(ring, 2))
        painter.setBrush(STATUS_COLOURS[status])
        painter.drawEllipse(dot)

        left = avatar.right() + 12
        right = rect.right() - self.PADDING - 4
        name_font = self._name_font(option.font)
        small_font = secondary_font(option.font)
        name_metrics = QFontMetrics(name_font)
        small_metrics = QFontMetrics(small_font)
        block = name_metrics.height() + 2 + small_metrics.height()
        top = rect.top() + (rect.height() - block) // 2
        width = max(0, right - left)

        name = member.name
        handle = f"@{member.username}" if member.username and member.username != name else ""
        name_width = min(name_metrics.horizontalAdvance(name), width)
        painter.setFont(name_font)
        painter.setPen(text_colour)
        painter.drawText(
            QRect(left, top, name_width, name_metrics.height()),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            name_metrics.elidedText(name, Qt.TextElideMode.ElideRight, width),
        )
        remaining = width - name_width - 8
        if handle and remaining > small_metrics.horizontalAdvance("@…") + 4:
            painter.setFont(small_font)
            painter.setPen(secondary)
            painter.drawText(
                QRect(left + name_width + 8, top, remaining, name_metrics.height()),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                small_metrics.elidedText(handle, Qt.TextElideMode.ElideRight, remaining),
            )

        painter.setFont(small_font)
        painter.setPen(secondary)
        painter.drawText(
            QRect(left, top + name_metrics.height() + 2, width, small_metrics.height()),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
            small_metrics.elidedText(
                describe_presence(member, now), Qt.TextElideMode.ElideRight, width
            ),
        )

    @staticmethod
    def _name_font(base: QFont) -> QFont:
        font = QFont(base)
        font.setWeight(QFont.Weight.DemiBold)
        return font


def _initials(member: MemberView) -> str:
    words = [word for word in member.name.split() if word[:1].isalnum()]
    if not words:
        return (member.username[:1] or "?").upper()
    if len(words) == 1:
        return words[0][:2].title()
    return (words[0][:1] + words[-1][:1]).upper()


class PresenceWindow(QWidget):
    """Who's online in each of the user's projects, and the user's own status.

    Signals:
        project_selected(int): This project is now shown: watch its presence. Emitted when
            the user picks a project, and when the shown project changes because of
            :meth:`set_projects` (the first project) or :meth:`remove_project`.
        status_chosen(str): The user chose their own status (``online``, ``away``,
            ``dnd``).

    Args:
        clock: The current time (timezone-aware), for "last seen".
        parent: The Qt parent.
    """

    project_selected = Signal(int)
    status_chosen = Signal(str)

    def __init__(self, *, clock: Clock = utc_now, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Who's online")
        self.resize(380, 480)
        self._members: dict[int, dict[int, MemberView]] = {}
        self._titles: dict[int, str] = {}
        self.model = PresenceModel(clock=clock, parent=self)

        self.project_combo = QComboBox(self)
        self.project_combo.setAccessibleName("Project")
        self.project_combo.activated.connect(self._project_chosen)

        self.status_combo = QComboBox(self)
        self.status_combo.setAccessibleName("Your status")
        for status in CHOOSABLE_STATUSES:
            self.status_combo.addItem(status_icon(status), STATUS_LABELS[status], status)
        self.status_combo.activated.connect(self._status_chosen)

        self.notice = QLabel(self)
        self.notice.setObjectName("presenceNotice")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet(
            "#presenceNotice { background: #fff4d6; color: #5c4400; border: 1px solid #f0c54a;"
            " border-radius: 6px; padding: 6px 10px; }"
        )
        self.notice.setVisible(False)

        self.summary = QLabel(self)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.list_view = QListView(self)
        self.list_view.setModel(self.model)
        self.list_view.setItemDelegate(PresenceDelegate(self.list_view))
        self.list_view.setUniformItemSizes(True)
        self.list_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setFrameShape(QFrame.Shape.NoFrame)
        self.list_view.setAccessibleName("Members")

        self.empty_label = QLabel(self)
        self.empty_label.setTextFormat(Qt.TextFormat.PlainText)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.list_view)
        self.stack.addWidget(self.empty_label)

        self._build_layout()

        self._timer = QTimer(self)
        self._timer.setInterval(LAST_SEEN_REFRESH_MS)
        self._timer.timeout.connect(self.model.refresh_last_seen)
        self._timer.start()
        self._show_current()

    def _build_layout(self) -> None:
        # Mnemonics: Alt+P and Alt+Y reach the two choices from the keyboard.
        project_label = QLabel("&Project", self)
        project_label.setBuddy(self.project_combo)
        status_label = QLabel("&Your status", self)
        status_label.setBuddy(self.status_combo)

        header = QHBoxLayout()
        header.setSpacing(8)
        header.addWidget(project_label)
        header.addWidget(self.project_combo, 1)

        own = QHBoxLayout()
        own.setSpacing(8)
        own.addWidget(status_label)
        own.addWidget(self.status_combo)
        own.addStretch(1)

        top = QVBoxLayout()
        top.setContentsMargins(12, 12, 12, 8)
        top.setSpacing(8)
        top.addLayout(header)
        top.addWidget(self.notice)
        top.addWidget(self.summary)

        line = QFrame(self)
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        bottom_line = QFrame(self)
        bottom_line.setFrameShape(QFrame.Shape.HLine)
        bottom_line.setFrameShadow(QFrame.Shadow.Sunken)

        footer = QVBoxLayout()
        footer.setContentsMargins(12, 8, 12, 10)
        footer.addLayout(own)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(line)
        layout.addWidget(self.stack, 1)
        layout.addWidget(bottom_line)
        layout.addLayout(footer)

    # -- public interface --

    def current_project_id(self) -> int | None:
        """The project shown, or None when the user has none."""
        data = self.project_combo.currentData()
        return data if isinstance(data, int) else None

    def set_projects(self, projects: list[tuple[int, str]]) -> None:
        """The user's projects as ``(project_id, title)``, in the order to list them.

        The shown project stays when it is still listed; otherwise the first one is shown
        and ``project_selected`` says so.
        """
        before = self.current_project_id()
        combo = self.project_combo
        combo.blockSignals(True)
        try:
            combo.clear()
            self._titles = {}
            for project_id, title in projects:
                if project_id in self._titles:
                    continue
                self._titles[project_id] = single_line(title) or f"Project {project_id}"
                combo.addItem(self._titles[project_id], project_id)
            index = combo.findData(before) if before is not None else -1
            combo.setCurrentIndex(index if index >= 0 else (0 if combo.count() else -1))
        finally:
            combo.blockSignals(False)
        for gone in set(self._members) - set(self._titles):
            del self._members[gone]
        self._after_project_change(before)

    def show_snapshot(self, project_id: int, members: list[MemberView]) -> None:
        """Everyone in ``project_id`` with their presence (replaces what was known)."""
        self._members[project_id] = {member.user_id: member for member in members}
        if project_id == self.current_project_id():
            self.model.set_members(self._members[project_id].values())
            self._show_current()

    def apply_change(
        self,
        project_id: int,
        user_id: int,
        online: bool,
        status: str,
        last_seen: datetime | None,
    ) -> None:
        """One member's presence changed; only their row is repainted or moved.

        A change for a project or user not in the last snapshot is ignored: the next
        snapshot brings them with their name.
        """
        known = self._members.get(project_id)
        if known is None or user_id not in known:
            logger.debug("presence change for an unknown member ignored")
            return
        member = replace(known[user_id], online=online, status=status, last_seen=last_seen)
        known[user_id] = member
        if project_id == self.current_project_id():
            self.model.update_member(member)
            self._update_summary()

    def remove_project(self, project_id: int) -> None:
        """The user is no longer a member of ``project_id``: forget it and say so."""
        title = self._titles.pop(project_id, None)
        self._members.pop(project_id, None)
        index = self.project_combo.findData(project_id)
        if index < 0:
            return
        before = self.current_project_id()
        self.project_combo.blockSignals(True)
        try:
            self.project_combo.removeItem(index)
        finally:
            self.project_combo.blockSignals(False)
        self.notice.setText(f"You are no longer a member of {title}.")
        self.notice.setVisible(True)
        self._after_project_change(before)

    def set_own_status(self, status: str) -> None:
        """Show the user's own status (from the server); emits nothing."""
        index = self.status_combo.findData(status)
        if index < 0:
            logger.warning("own status %r is not one the window offers; ignored", status)
            return
        self.status_combo.setCurrentIndex(index)

    def own_status(self) -> str:
        """The status the selector shows."""
        return str(self.status_combo.currentData())

    # -- reacting --

    def _project_chosen(self, index: int) -> None:
        project_id = self.project_combo.itemData(index)
        if not isinstance(project_id, int):
            return
        self.notice.setVisible(False)
        self._load_current()
        self.project_selected.emit(project_id)

    def _status_chosen(self, index: int) -> None:
        status = self.status_combo.itemData(index)
        if isinstance(status, str):
            self.status_chosen.emit(status)

    def _after_project_change(self, before: int | None) -> None:
        now = self.current_project_id()
        if now != before:
            self._load_current()
            if now is not None:
                self.project_selected.emit(now)
        else:
            self._show_current()

    def _load_current(self) -> None:
        project_id = self.current_project_id()
        known = self._members.get(project_id) if project_id is not None else None
        self.model.set_members(known.values() if known else [])
        self.list_view.scrollToTop()
        self._show_current()

    def _show_current(self) -> None:
        project_id = self.current_project_id()
        if project_id is None:
            self.empty_label.setText(NO_PROJECTS_TEXT)
            self.stack.setCurrentWidget(self.empty_label)
        elif project_id not in self._members:
            self.empty_label.setText(LOADING_TEXT)
            self.stack.setCurrentWidget(self.empty_label)
        elif self.model.rowCount() == 0:
            self.empty_label.setText(NO_MEMBERS_TEXT)
            self.stack.setCurrentWidget(self.empty_label)
        else:
            self.stack.setCurrentWidget(self.list_view)
        self.project_combo.setEnabled(self.project_combo.count() > 0)
        self._update_summary()

    def _update_summary(self) -> None:
        project_id = self.current_project_id()
        if project_id is None or project_id not in self._members:
            self.summary.setText("")
            self.summary.setVisible(False)
            return
        members = self.model.members()
        online = sum(1 for member in members if member.online)
        noun = "member" if len(members) == 1 else "members"
        self.summary.setText(f"{online} of {len(members)} {noun} online")
        self.summary.setVisible(True)
