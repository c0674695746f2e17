"""The tray icon's pixels: the app's bell tile, the unread badge and the state marks.

Pure painting with QPainter: no I/O except :func:`app_icon`, which loads the shipped PNGs
(and paints them itself when they are missing). Every size is drawn on its own pixel grid
rather than scaled from a large master, so the 16 px icon stays crisp at every device pixel
ratio; the badge is a red pill with white bold digits ringed in the panel's colour so it
stands out on light and dark panels alike, and the bell makes room for it (and for the
state marks) rather than vanish under it, so the icon stays a bell at every count.

The app icon also comes with a mark for high-priority and urgent toasts (:class:`AppMark`).

Its records are dataclasses, where the rest of the app's are msgspec Structs: B8's minimal
tray app imports this module for the app icon, and must not pay for msgspec's import.
"""

from __future__ import annotations

import enum
import math
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

import shiboken6
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QIcon,
    QIconEngine,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

#: The logical sizes the tray icon offers: 16 (Windows, classic X11), 22/24 (GNOME, KDE,
#: xfce4-panel), 32..64 (large panels). Any other size, and any pixel ratio, is drawn on
#: its own grid when asked for (:class:`TrayIconEngine`).
TRAY_SIZES: Final = (16, 22, 24, 32, 48, 64)
#: The device pixel ratios of common screens ("100 %" and "200 %").
TRAY_PIXEL_RATIOS: Final = (1.0, 2.0)
#: The sizes of the shipped app icon PNGs (resources/icons/tray-notifier-<size>.png).
APP_ICON_SIZES: Final = (16, 22, 24, 32, 48, 64, 128, 256)
#: The sizes :func:`app_icon` loads for windows: title bars and task bars use 16..64 (up
#: to 128 at 200 %); the 256 px file is for installers and the icon theme, whose
#: desktop-file icon the large views of a desktop show. A window sends every size it has
#: to the X server and keeps them decoded (256 px alone is 256 KiB).
WINDOW_ICON_SIZES: Final = (16, 22, 24, 32, 48, 64, 128)
APP_ICON_NAME: Final = "tray-notifier"
#: The sizes of the shipped marked app icons for high-priority and urgent toasts
#: (resources/icons/tray-notifier_<mark>-<size>.png, see :func:`app_icon_file_name`).
MARKED_APP_ICON_SIZES: Final = (64,)
#: Counts above this show as "99+": a wider pill would hide the bell at 16 px.
MAX_BADGE_COUNT: Final = 99
#: The bell beside a badge or a state mark, and beside both, as a share of the tile.
_BELL_BESIDE_ONE: Final = 0.82
_BELL_BESIDE_BOTH: Final = 0.72
#: The badge's height as a share of the icon: a circle for one digit, a flatter pill for
#: two or three, so that the bell below it keeps its dome, rim and clapper in view.
_BADGE_HEIGHT: Final = 0.5
_WIDE_BADGE_HEIGHT: Final = 0.42
#: Tray icons kept (~35 KiB each once a 1x host has read them): the count going back and
#: forth, or the look flipping between connected and offline, then costs no painting.
TRAY_ICON_CACHE_SIZE: Final = 4


class TrayLook(enum.Enum):
    """How the icon says what state the app is in.

    Attributes:
        CONNECTED: Live: the coloured tile.
        OFFLINE: Reconnecting or offline: the whole icon greyed, badge included, since
            the count may be stale.
        LOGIN_REQUIRED: Greyed, with an amber warning triangle.
        DND: Do not disturb: the coloured tile with a violet moon mark.
        QUIET_HOURS: Quiet hours: the coloured tile with a teal clock mark (a schedule,
            where the moon is a choice the user made).
    """

    CONNECTED = "connected"
    OFFLINE = "offline"
    LOGIN_REQUIRED = "login_required"
    DND = "dnd"
    QUIET_HOURS = "quiet_hours"


class AppMark(enum.Enum):
    """A mark on the app icon for toasts that must stand out from the rest.

    Attributes:
        HIGH: High priority: an orange disc with an upward arrow.
        URGENT: Urgent: a red disc with an exclamation mark.
    """

    HIGH = "high"
    URGENT = "urgent"


@dataclass(frozen=True)
class _Palette:
    tile_top: QColor
    tile_bottom: QColor
    glyph: QColor
    badge_fill: QColor
    badge_text: QColor
    ring: QColor


_LIVE_TILE: Final = (QColor("#4f86f7"), QColor("#2450d0"))
_GREY_TILE_LIGHT_PANEL: Final = (QColor("#a3a8b0"), QColor("#767c85"))
# A dark panel needs a lighter grey so the greyed tile still stands apart from it.
_GREY_TILE_DARK_PANEL: Final = (QColor("#b9bec5"), QColor("#8b9199"))
_BADGE_RED: Final = QColor("#e02424")
_BADGE_GREY: Final = QColor("#55595f")
_WARNING_AMBER: Final = QColor("#f5a524")
_WARNING_INK: Final = QColor("#3d2800")
_DND_VIOLET: Final = QColor("#6246ea")
_DND_MOON: Final = QColor("#ffffff")
_QUIET_TEAL: Final = QColor("#0b7a75")
_QUIET_FACE: Final = QColor("#ffffff")
# The history window's priority chips use the same two colours (tray_app/ui/history.py).
_URGENT_RED: Final = QColor("#d93025")
_HIGH_ORANGE: Final = QColor("#e37400")
_MARK_INK: Final = QColor("#ffffff")
# The ring around badge and marks takes the panel's colour: it cuts the badge out of the
# tile and lets its outline melt into the panel, whichever way the panel is painted.
_RING_LIGHT_PANEL: Final = QColor("#ffffff")
_RING_DARK_PANEL: Final = QColor("#1f2023")


def badge_text(unread: int) -> str:
    """The words on the badge.

    Args:
        unread: The unread count (not negative).

    Returns:
        ``""`` for 0 (no badge), the number up to 99, ``"99+"`` above.

    Raises:
        ValueError: ``unread`` is negative.
    """
    if unread < 0:
        raise ValueError(f"an unread count cannot be negative, got {unread}")
    if unread == 0:
        return ""
    if unread > MAX_BADGE_COUNT:
        return f"{MAX_BADGE_COUNT}+"
    return str(unread)


def _palette(look: TrayLook, dark_panel: bool) -> _Palette:
    live = look in (TrayLook.CONNECTED, TrayLook.DND, TrayLook.QUIET_HOURS)
    if live:
        top, bottom = _LIVE_TILE
    else:
        top, bottom = _GREY_TILE_DARK_PANEL if dark_panel else _GREY_TILE_LIGHT_PANEL
    return _Palette(
        tile_top=top,
        tile_bottom=bottom,
        glyph=QColor("#ffffff") if live else QColor(255, 255, 255, 235),
        badge_fill=_BADGE_RED if live else _BADGE_GREY,
        badge_text=QColor("#ffffff"),
        ring=_RING_DARK_PANEL if dark_panel else _RING_LIGHT_PANEL,
    )


class _Grid:
    """Snaps logical coordinates to the device pixel grid, so edges land on pixels."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def snap(self, value: float) -> float:
        return round(value * self.ratio) / self.ratio


def _bell_path(tile: QRectF) -> QPainterPath:
    """The bell's body in unit coordinates of the tile: dome and flared rim."""

    def at(x: float, y: float) -> QPointF:
        return QPointF(tile.left() + x * tile.width(), tile.top() + y * tile.height())

    path = QPainterPath(at(0.18, 0.70))
    path.lineTo(at(0.82, 0.70))
    path.cubicTo(at(0.82, 0.655), at(0.735, 0.635), at(0.735, 0.55))
    path.lineTo(at(0.735, 0.46))
    path.cubicTo(at(0.735, 0.335), at(0.635, 0.245), at(0.5, 0.245))
    path.cubicTo(at(0.365, 0.245), at(0.265, 0.335), at(0.265, 0.46))
    path.lineTo(at(0.265, 0.55))
    path.cubicTo(at(0.265, 0.635), at(0.18, 0.655), at(0.18, 0.70))
    path.closeSubpath()
    return path


def _knob_rect(tile: QRectF) -> QRectF:
    """The knob on top of the bell (drawn on its own: uniting paths flattens the curves)."""
    radius_x, radius_y = 0.055 * tile.width(), 0.055 * tile.height()
    center = QPointF(tile.center().x(), tile.top() + 0.235 * tile.height())
    return QRectF(center.x() - radius_x, center.y() - radius_y, 2 * radius_x, 2 * radius_y)


def _clapper_path(tile: QRectF) -> QPainterPath:
    """The clapper: the lower half of a disc, just under the rim."""
    radius_x = 0.095 * tile.width()
    radius_y = 0.095 * tile.height()
    center = QPointF(tile.center().x(), tile.top() + 0.735 * tile.height())
    box = QRectF(center.x() - radius_x, center.y() - radius_y, 2 * radius_x, 2 * radius_y)
    path = QPainterPath(QPointF(box.left(), center.y()))
    path.arcTo(box, 180, 180)
    path.closeSubpath()
    return path


def _tile_rect(size: float, grid: _Grid) -> QRectF:
    # Small icons fill their square (a tray slot is small already); large ones keep a
    # margin like other launcher icons.
    margin = grid.snap(size / 16 if size <= 64 else size * 0.07)
    return QRectF(margin, margin, size - 2 * margin, size - 2 * margin)


def _bell_box(tile: QRectF, *, badge: bool, mark: bool) -> QRectF:
    """The square the bell is drawn in (the unit square of :func:`_bell_path`).

    Alone, the bell sits in the middle of the tile, a touch low: the knob would otherwise
    crowd the tile's top edge. Beside a badge (top right) it is smaller and sits low at
    the left, so that the badge can hide at most the top of the dome; beside a state mark
    (bottom right) it sits high at the left; beside both, smaller still, low at the left.
    Either way the dome, the rim and the clapper, which make it a bell, stay in view.
    """
    if not badge and not mark:
        return tile.translated(0, tile.height() * 0.02)
    scale = _BELL_BESIDE_BOTH if badge and mark else _BELL_BESIDE_ONE
    side = tile.width() * scale
    # Placed by the bell's ink (x 0.18..0.82, y 0.18..0.83 of its square), not the square.
    left = tile.left() + tile.width() * 0.07 - 0.18 * side
    if badge:
        top = tile.bottom() - tile.height() * 0.03 - 0.83 * side
    else:
        top = tile.top() + tile.height() * 0.1 - 0.18 * side
    return QRectF(left, top, side, side)


def _paint_tile(painter: QPainter, tile: QRectF, palette: _Palette, bell: QRectF) -> None:
    gradient = QLinearGradient(tile.topLeft(), tile.bottomLeft())
    gradient.setColorAt(0.0, palette.tile_top)
    gradient.setColorAt(1.0, palette.tile_bottom)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(gradient))
    radius = tile.width() * 0.23
    painter.drawRoundedRect(tile, radius, radius)
    painter.setBrush(palette.glyph)
    painter.drawPath(_bell_path(bell))
    painter.drawEllipse(_knob_rect(bell))
    painter.drawPath(_clapper_path(bell))


def _ring_width(size: float, grid: _Grid) -> float:
    return max(grid.snap(size / 16), 1 / grid.ratio)


def _badge_font(pixel_size: int, *, condensed: bool) -> QFont:
    font = QFont()
    font.setPixelSize(pixel_size)
    font.setWeight(QFont.Weight.Bold)
    font.setHintingPreference(QFont.HintingPreference.PreferFullHinting)
    if condensed:
        font.setStretch(QFont.Stretch.Condensed)
    return font


@dataclass(frozen=True)
class _BadgeLayout:
    """Where the badge goes: the pill, its ring, the digits and the optional plus."""

    outline: QRectF
    pill: QRectF
    radius: float  # the pill's corners (the outline's are ``radius`` plus the ring)
    font: QFont
    digits: str
    digits_origin: QPointF
    plus: QRectF | None  # the square the "+" of "99+" is drawn in


def _font_candidates(largest: int) -> list[tuple[int, bool]]:
    """Badge fonts to try, best first: each size plain, then condensed; 6 px at least."""
    return [(size, condensed) for size in range(largest, 5, -1) for condensed in (False, True)]


def _layout_badge(text: str, size: float, height: float, grid: _Grid) -> _BadgeLayout:
    """Fit the text into a pill in the top-right corner.

    The pill touches the icon's top and right edges: its ring there would only repeat
    the panel's colour, and the pixel it saves goes to the digits and the bell. Two or
    three characters get a flatter pill with tighter corners and digits as tall as the
    pill allows, so that "99+" stays readable at 16 px with the bell in view below it.

    The "+" of "99+" is drawn as two bars rather than as a glyph: at 16 px a font's plus
    is a blur, while bars snapped to the pixel grid stay sharp and narrow.
    """
    ring = _ring_width(size, grid)
    digits = text.rstrip("+")
    has_plus = digits != text
    wide = len(text) > 1
    max_width = size - ring
    # A single digit sits in a circle; longer text gets side padding, which shrinks
    # before the font does when the corner is tight.
    comfortable_padding = height * 0.5 if wide else 0.0
    tight_padding = height * 0.1 if wide else 0.0
    font = _badge_font(6, condensed=True)
    ink = QRectF()
    plus_side = gap = 0.0
    largest = round(height * (1.0 if wide else 0.8))
    for pixel_size, condensed in _font_candidates(max(6, largest)):
        font = _badge_font(pixel_size, condensed=condensed)
        ink = QFontMetricsF(font).tightBoundingRect(digits)
        plus_side = grid.snap(ink.height() * 0.6) if has_plus else 0.0
        gap = max(grid.snap(ink.height() * 0.12), 1 / grid.ratio) if has_plus else 0.0
        if ink.width() + gap + plus_side + tight_padding <= max_width:
            break
    content = ink.width() + gap + plus_side
    width = min(grid.snap(max(height, content + comfortable_padding)), max_width)
    pill = QRectF(size - width, 0, width, height)
    outline = pill.adjusted(-ring, -ring, ring, ring)
    # Centre the ink, not the font's line box: digits have no descenders.
    left = grid.snap(pill.center().x() - content / 2)
    origin = QPointF(
        left - ink.left(), grid.snap(pill.center().y() - (ink.top() + ink.height() / 2))
    )
    plus = None
    if has_plus:
        plus_left = left + ink.width() + gap
        plus_top = grid.snap(pill.center().y() - plus_side / 2)
        plus = QRectF(plus_left, plus_top, plus_side, plus_side)
    radius = height * (0.3 if wide else 0.5)
    return _BadgeLayout(outline, pill, radius, font, digits, origin, plus)


def _paint_badge(painter: QPainter, layout: _BadgeLayout, palette: _Palette, grid: _Grid) -> None:
    outline = layout.outline
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(palette.ring)
    ring = (outline.height() - layout.pill.height()) / 2
    painter.drawRoundedRect(outline, layout.radius + ring, layout.radius + ring)
    painter.setBrush(palette.badge_fill)
    painter.drawRoundedRect(layout.pill, layout.radius, layout.radius)

    painter.setFont(layout.font)
    painter.setPen(palette.badge_text)
    painter.drawText(layout.digits_origin, layout.digits)
    if layout.plus is not None:
        box = layout.plus
        # Odd device-pixel sides keep the bars centred on whole pixels.
        bar = max(grid.snap(box.width() * 0.26), 1 / grid.ratio)
        middle_x = grid.snap(box.center().x() - bar / 2)
        middle_y = grid.snap(box.center().y() - bar / 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(palette.badge_text)
        painter.drawRect(QRectF(box.left(), middle_y, box.width(), bar))
        painter.drawRect(QRectF(middle_x, box.top(), bar, box.height()))


def _mark_box(size: float, diameter: float, grid: _Grid) -> tuple[QRectF, float]:
    """The bottom-right square of a state mark (warning, moon, clock), and its ring width."""
    ring = _ring_width(size, grid)
    box = QRectF(size - ring - diameter, size - ring - diameter, diameter, diameter)
    return box, ring


def _paint_warning(
    painter: QPainter, box: QRectF, ring: float, grid: _Grid, ring_color: QColor
) -> None:
    triangle = QPainterPath(QPointF(box.center().x(), box.top()))
    triangle.lineTo(box.bottomRight())
    triangle.lineTo(box.bottomLeft())
    triangle.closeSubpath()
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.setPen(
        QPen(ring_color, 2 * ring, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
             Qt.PenJoinStyle.RoundJoin)
    )  # fmt: skip
    painter.drawPath(triangle)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(_WARNING_AMBER)
    painter.drawPath(triangle)

    # The exclamation mark: a bar and a dot, at least one device pixel wide.
    stroke = max(grid.snap(box.width() * 0.13), 1 / grid.ratio)
    left = grid.snap(box.center().x() - stroke / 2)
    bar_top = grid.snap(box.top() + box.height() * 0.36)
    bar_bottom = grid.snap(box.top() + box.height() * 0.68)
    dot_top = grid.snap(box.top() + box.height() * 0.76)
    painter.setBrush(_WARNING_INK)
    painter.drawRect(QRectF(left, bar_top, stroke, bar_bottom - bar_top))
    painter.drawRect(QRectF(left, dot_top, stroke, stroke))


def _paint_disc(
    painter: QPainter, box: QRectF, ring: float, ring_color: QColor, fill: QColor
) -> None:
    """A mark's disc in ``fill``, ringed in the panel's colour."""
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(ring_color)
    painter.drawEllipse(box.adjusted(-ring, -ring, ring, ring))
    painter.setBrush(fill)
    painter.drawEllipse(box)


def _paint_moon(
    painter: QPainter, box: QRectF, ring: float, _grid: _Grid, ring_color: QColor
) -> None:
    _paint_disc(painter, box, ring, ring_color, _DND_VIOLET)
    # A crescent: a disc with an offset disc cut away.
    radius = box.width() * 0.3
    center = box.center()
    disc = QPainterPath()
    disc.addEllipse(center, radius, radius)
    bite = QPainterPath()
    offset = radius * 0.62
    bite.addEllipse(QPointF(center.x() + offset, center.y() - offset * 0.75), radius, radius)
    painter.setBrush(_DND_MOON)
    painter.drawPath(disc.subtracted(bite))


def _paint_clock(
    painter: QPainter, box: QRectF, ring: float, grid: _Grid, ring_color: QColor
) -> None:
    """Quiet hours: a white clock face on a teal disc, its hands at three o'clock."""
    _paint_disc(painter, box, ring, ring_color, _QUIET_TEAL)
    center = box.center()
    radius = box.width() * 0.34
    painter.setBrush(_QUIET_FACE)
    painter.drawEllipse(center, radius, radius)
    # The hands: bars at least one device pixel wide, snapped so they stay sharp.
    stroke = max(grid.snap(box.width() * 0.12), 1 / grid.ratio)
    left = grid.snap(center.x() - stroke / 2)
    top = grid.snap(center.y() - stroke / 2)
    painter.setBrush(_QUIET_TEAL)
    hour_top = grid.snap(center.y() - radius * 0.75)
    painter.drawRect(QRectF(left, hour_top, stroke, top + stroke - hour_top))
    minute_right = grid.snap(center.x() + radius * 0.7)
    painter.drawRect(QRectF(left, top, minute_right - left, stroke))


def _paint_exclamation(
    painter: QPainter, box: QRectF, ring: float, grid: _Grid, ring_color: QColor
) -> None:
    """Urgent: a white exclamation mark on a red disc."""
    _paint_disc(painter, box, ring, ring_color, _URGENT_RED)
    stroke = max(grid.snap(box.width() * 0.14), 1 / grid.ratio)
    left = grid.snap(box.center().x() - stroke / 2)
    bar_top = grid.snap(box.top() + box.height() * 0.2)
    bar_bottom = grid.snap(box.top() + box.height() * 0.6)
    dot_top = grid.snap(box.top() + box.height() * 0.68)
    painter.setBrush(_MARK_INK)
    painter.drawRoundedRect(
        QRectF(left, bar_top, stroke, bar_bottom - bar_top), stroke / 2, stroke / 2
    )
    painter.drawEllipse(QRectF(left, dot_top, stroke, stroke))


def _paint_arrow(
    painter: QPainter, box: QRectF, ring: float, grid: _Grid, ring_color: QColor
) -> None:
    """High priority: a white upward arrow on an orange disc."""
    _paint_disc(painter, box, ring, ring_color, _HIGH_ORANGE)
    center_x = box.center().x()
    stroke = max(grid.snap(box.width() * 0.14), 1 / grid.ratio)
    head_top = box.top() + box.height() * 0.2
    head_bottom = box.top() + box.height() * 0.5
    half_head = box.width() * 0.24
    head = QPainterPath(QPointF(center_x, head_top))
    head.lineTo(center_x + half_head, head_bottom)
    head.lineTo(center_x - half_head, head_bottom)
    head.closeSubpath()
    painter.setBrush(_MARK_INK)
    painter.drawPath(head)
    left = grid.snap(center_x - stroke / 2)
    shaft_bottom = grid.snap(box.top() + box.height() * 0.8)
    painter.drawRect(
        QRectF(left, head_bottom - stroke, stroke, shaft_bottom - head_bottom + stroke)
    )


_Mark = Callable[[QPainter, QRectF, float, _Grid, QColor], None]
#: The looks that carry a mark in the bottom-right corner, and how each is painted.
_MARKS: Final[dict[TrayLook, _Mark]] = {
    TrayLook.LOGIN_REQUIRED: _paint_warning,
    TrayLook.DND: _paint_moon,
    TrayLook.QUIET_HOURS: _paint_clock,
}
_APP_MARKS: Final[dict[AppMark, _Mark]] = {
    AppMark.HIGH: _paint_arrow,
    AppMark.URGENT: _paint_exclamation,
}


def paint_icon(
    painter: QPainter,
    *,
    size: float,
    unread: int = 0,
    look: TrayLook = TrayLook.CONNECTED,
    dark_panel: bool = False,
    pixel_ratio: float = 1.0,
) -> None:
    """Paint the icon into the square ``(0, 0, size, size)`` of ``painter``'s device.

    Args:
        painter: An active painter; its render hints are set here.
        size: The square's side in logical pixels.
        unread: The unread count shown on the badge (0: no badge).
        look: The state the icon shows.
        dark_panel: True when the panel behind the icon is dark.
        pixel_ratio: Device pixels per logical pixel, for snapping edges to pixels.
    """
    grid = _Grid(pixel_ratio)
    _paint(
        painter,
        size=size,
        text=badge_text(unread),
        palette=_palette(look, dark_panel),
        mark=_MARKS.get(look),
        grid=grid,
    )


def _paint(
    painter: QPainter,
    *,
    size: float,
    text: str,
    palette: _Palette,
    mark: _Mark | None,
    grid: _Grid,
) -> None:
    """The tile, the bell, the badge with ``text`` (none when empty) and ``mark``."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
    tile = _tile_rect(size, grid)
    badge = None
    if text:
        share = _BADGE_HEIGHT if len(text) == 1 else _WIDE_BADGE_HEIGHT
        badge = _layout_badge(text, size, grid.snap(size * share), grid)
    bell = _bell_box(tile, badge=badge is not None, mark=mark is not None)
    _paint_tile(painter, tile, palette, bell)
    if badge is not None:
        _paint_badge(painter, badge, palette, grid)
    if mark is not None:
        diameter = grid.snap(size * 0.5)
        if badge is not None:
            # The count matters more than the mark: the mark shrinks into the space the
            # badge leaves (rings may overlap, the pill and the mark may not), and to the
            # right of the bell.
            diameter = min(grid.snap(size * 0.42), size - badge.outline.bottom())
        box, ring = _mark_box(size, diameter, grid)
        mark(painter, box, ring, grid, palette.ring)


def _new_pixmap(size: int, device_pixel_ratio: float) -> QPixmap:
    if size <= 0 or not math.isfinite(device_pixel_ratio) or device_pixel_ratio <= 0:
        raise ValueError(
            f"size and device_pixel_ratio must be positive, got {size} and {device_pixel_ratio}"
        )
    side = round(size * device_pixel_ratio)
    pixmap = QPixmap(side, side)
    pixmap.setDevicePixelRatio(device_pixel_ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    return pixmap


def render_tray_pixmap(
    *,
    unread: int,
    look: TrayLook,
    size: int,
    device_pixel_ratio: float = 1.0,
    dark_panel: bool = False,
) -> QPixmap:
    """Draw the tray icon at one size and pixel ratio.

    Args:
        unread: The unread count (not negative).
        look: The state the icon shows.
        size: The side in logical pixels.
        device_pixel_ratio: Device pixels per logical pixel (2.0 on a "200 %" screen).
        dark_panel: True when the panel behind the icon is dark.

    Returns:
        A square pixmap of ``round(size * device_pixel_ratio)`` device pixels that
        carries ``device_pixel_ratio``, transparent around the tile.

    Raises:
        ValueError: ``size`` or ``device_pixel_ratio`` is not positive, or ``unread`` is
            negative.
    """
    badge_text(unread)  # validates before anything is drawn
    pixmap = _new_pixmap(size, device_pixel_ratio)
    painter = QPainter(pixmap)
    try:
        paint_icon(
            painter,
            size=size,
            unread=unread,
            look=look,
            dark_panel=dark_panel,
            pixel_ratio=device_pixel_ratio,
        )
    finally:
        painter.end()
    return pixmap


def tray_icon(*, unread: int, look: TrayLook, dark_panel: bool = False) -> QIcon:
    """The tray icon: every size a tray host asks for, each drawn on its own grid.

    Args:
        unread: The unread count (not negative).
        look: The state the icon shows.
        dark_panel: True when the panel behind the icon is dark.

    Returns:
        An icon offering :data:`TRAY_SIZES`, drawn by a :class:`TrayIconEngine` at the
        size and pixel ratio each caller asks for, when it first asks.

    Raises:
        ValueError: ``unread`` is negative.
    """
    badge_text(unread)  # validates now, not when the host first asks for pixels
    return QIcon(TrayIconEngine(unread=unread, look=look, dark_panel=dark_panel))


class TrayIconEngine(QIconEngine):
    """Draws one tray icon (a count, a look, a panel) at whatever size is asked for.

    An icon of added pixmaps (Qt's own engine) puts every pixmap read from it into the
    process-wide ``QPixmapCache`` (10 MiB), where it stays after the icon is dropped:
    the tray host reads each new icon over D-Bus, so every unread count shown left its
    pixmaps behind, ~50 KiB each (+5.2 MiB over the first 100 toasts; issue 20). This
    engine hands out what it drew itself and nothing else keeps it, so an icon's
    pixels go when the icon goes. It also draws only the sizes asked for (a tray host
    on a 1x screen reads six of the twelve ``(size, ratio)`` pairs drawn before), and
    any pixel ratio exactly, not the nearest of 1x and 2x. Every mode and state gets the
    same pixels: a tray icon is never shown disabled or selected.
    """

    # Copies that Qt made with clone(): PySide leaves a Python object returned from a
    # virtual owned by Python, so it is kept here until Qt deletes the copy.
    _clones: ClassVar[list[TrayIconEngine]] = []
    # Distinct (size, ratio) pairs kept drawn: hosts ask for a handful; this bounds one
    # that asks for every size.
    _KEPT: ClassVar[int] = 16

    def __init__(self, *, unread: int, look: TrayLook, dark_panel: bool = False) -> None:
        super().__init__()
        self._unread = unread
        self._look = look
        self._dark_panel = dark_panel
        self._drawn: dict[tuple[int, float], QPixmap] = {}

    def key(self) -> str:
        return "tray-notifier-badge"

    def clone(self) -> QIconEngine:
        TrayIconEngine._clones = [e for e in TrayIconEngine._clones if shiboken6.isValid(e)]
        twin = TrayIconEngine(unread=self._unread, look=self._look, dark_panel=self._dark_panel)
        TrayIconEngine._clones.append(twin)
        return twin

    def isNull(self) -> bool:  # noqa: N802
        return False

    def availableSizes(  # noqa: N802
        self, mode: QIcon.Mode = QIcon.Mode.Normal, state: QIcon.State = QIcon.State.Off
    ) -> list[QSize]:
        return [QSize(size, size) for size in TRAY_SIZES]

    def actualSize(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QSize:  # noqa: N802
        side = min(size.width(), size.height())
        return QSize(side, side)

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def scaledPixmap(  # noqa: N802
        self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float
    ) -> QPixmap:
        # The size is in logical pixels; the pixmap has size * scale device pixels.
        return self._pixmap(min(size.width(), size.height()), scale)

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        side = min(rect.width(), rect.height())
        if side <= 0:
            return
        device = painter.device()
        ratio = device.devicePixelRatioF() if device is not None else 1.0
        target = QRect(0, 0, side, side)
        target.moveCenter(rect.center())
        painter.drawPixmap(target, self._pixmap(side, ratio))

    def _pixmap(self, side: int, ratio: float) -> QPixmap:
        if side <= 0 or not math.isfinite(ratio) or ratio <= 0:
            return QPixmap()
        key = (side, ratio)
        pixmap = self._drawn.get(key)
        if pixmap is None:
            if len(self._drawn) >= self._KEPT:
                self._drawn.clear()
            pixmap = self._drawn[key] = render_tray_pixmap(
                unread=self._unread,
                look=self._look,
                size=side,
                device_pixel_ratio=ratio,
                dark_panel=self._dark_panel,
            )
        return pixmap


@dataclass(frozen=True)
class TrayIconKey:
    """What the tray icon's pixels depend on: counts with the same badge text look alike.

    Attributes:
        badge: The badge's text (:func:`badge_text`): ``""``, ``"1"`` .. ``"99"``, ``"99+"``.
        look: The state the icon shows.
        dark_panel: True when the panel behind the icon is dark.
    """

    badge: str
    look: TrayLook
    dark_panel: bool

    @classmethod
    def of(cls, unread: int, look: TrayLook, dark_panel: bool = False) -> TrayIconKey:
        """The key of the icon for ``unread`` (not negative) in ``look``."""
        return cls(badge_text(unread), look, dark_panel)

    @property
    def unread(self) -> int:
        """A count that draws this badge (any above :data:`MAX_BADGE_COUNT` reads "99+")."""
        if self.badge.endswith("+"):
            return MAX_BADGE_COUNT + 1
        return int(self.badge or 0)


class TrayIconCache:
    """The last few tray icons drawn, by :class:`TrayIconKey`, least recently used out.

    Args:
        size: How many icons to keep (at least 1).
    """

    def __init__(self, size: int = TRAY_ICON_CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a cache must hold at least one icon, got {size}")
        self._size = size
        self._icons: OrderedDict[TrayIconKey, QIcon] = OrderedDict()

    def __len__(self) -> int:
        return len(self._icons)

    def icon(self, key: TrayIconKey) -> QIcon:
        """The icon for ``key``: drawn now, or the one drawn before."""
        icon = self._icons.get(key)
        if icon is not None:
            self._icons.move_to_end(key)
            return icon
        icon = tray_icon(unread=key.unread, look=key.look, dark_panel=key.dark_panel)
        self._icons[key] = icon
        if len(self._icons) > self._size:
            self._icons.popitem(last=False)
        return icon


def icon_directories() -> list[Path]:
    """Where the shipped icons may be, most specific first.

    A PyInstaller bundle unpacks data files under ``sys._MEIPASS`` (the spec file puts
    ``resources/icons`` there); a source checkout or editable install has them beside
    the package.
    """
    directories: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if isinstance(bundle, str):
        directories.append(Path(bundle) / "resources" / "icons")
    directories.append(Path(__file__).resolve().parents[2] / "resources" / "icons")
    return directories


def app_icon() -> QIcon:
    """The plain app icon (no badge) for windows and dialogs, at :data:`WINDOW_ICON_SIZES`.

    Loads ``tray-notifier-<size>.png`` from the first of :func:`icon_directories` that has
    them; an install without the files still gets the same icon, painted here.
    """
    icon = QIcon()
    for directory in icon_directories():
        files = [directory / f"{APP_ICON_NAME}-{size}.png" for size in WINDOW_ICON_SIZES]
        for path in files:
            if path.is_file():
                icon.addFile(str(path), QSize())
        if not icon.isNull():
            return icon
    for size in WINDOW_ICON_SIZES:
        icon.addPixmap(render_app_pixmap(size))
    return icon


def render_app_pixmap(
    size: int, device_pixel_ratio: float = 1.0, mark: AppMark | None = None
) -> QPixmap:
    """The app icon at one size: the tile and bell, no badge, and ``mark`` if given."""
    if mark is None:
        return render_tray_pixmap(
            unread=0, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=device_pixel_ratio
        )
    pixmap = _new_pixmap(size, device_pixel_ratio)
    painter = QPainter(pixmap)
    try:
        grid = _Grid(device_pixel_ratio)
        palette = _palette(TrayLook.CONNECTED, dark_panel=False)
        _paint(painter, size=size, text="", palette=palette, mark=_APP_MARKS[mark], grid=grid)
    finally:
        painter.end()
    return pixmap


def app_icon_file_name(size: int, mark: AppMark | None = None) -> str:
    """The shipped PNG of the app icon at ``size``: ``tray-notifier-64.png``, or with a
    mark ``tray-notifier_urgent-64.png``."""
    if mark is None:
        return f"{APP_ICON_NAME}-{size}.png"
    # An underscore, not a dash: the Debian package installs every
    # tray-notifier-<anything>-<size>.png as the launcher's icon of that size
    # (scripts/build-installers), while the bundle takes every tray-notifier*.png.
    return f"{APP_ICON_NAME}_{mark.value}-{size}.png"


def render_mark_pixmap(look: TrayLook, size: int, device_pixel_ratio: float = 1.0) -> QPixmap:
    """A state's mark alone (the moon of DND, the clock of quiet hours...), filling a
    ``size`` square: the same mark the tray icon carries, for menu entries about it.

    Raises:
        ValueError: ``look`` has no mark, or the size or ratio is not positive.
    """
    mark = _MARKS.get(look)
    if mark is None:
        raise ValueError(f"the {look.name} look has no mark")
    pixmap = _new_pixmap(size, device_pixel_ratio)
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        grid = _Grid(device_pixel_ratio)
        # No ring: a menu has no panel to cut the mark out of.
        mark(painter, QRectF(0, 0, size, size), 0.0, grid, QColor(0, 0, 0, 0))
    finally:
        painter.end()
    return pixmap
