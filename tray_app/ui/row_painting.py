"""Pieces shared by the hand-painted list rows of the history and presence windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import QModelIndex, QPersistentModelIndex
from PySide6.QtGui import QFont, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem


def utc_now() -> datetime:
    """The default clock of the windows (tests pass their own)."""
    return datetime.now(UTC)


def secondary_font(base: QFont) -> QFont:
    """The secondary lines' font: one point smaller, never below 7 pt."""
    font = QFont(base)
    if font.pointSizeF() > 0:
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
    return font


def paint_over_item_panel(
    delegate: QStyledItemDelegate,
    painter: QPainter,
    option: QStyleOptionViewItem,
    index: QModelIndex | QPersistentModelIndex,
    content: Callable[[], None],
) -> None:
    """Let the style draw the row's panel (selection, hover, focus) without its text,
    then draw ``content`` over it, with the painter's state restored afterwards."""
    style_option = QStyleOptionViewItem(option)
    delegate.initStyleOption(style_option, index)
    style_option.text = ""  # the text is the delegate's own
    widget = option.widget
    style = widget.style() if widget is not None else None
    painter.save()
    try:
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, style_option, painter, widget
            )
        content()
    finally:
        painter.restore()
