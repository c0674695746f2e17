"""The tray icon's pixels: the app's bell tile, the unread badge and the state marks.

Pure painting with QPainter: no I/O except :func:`app_icon`, which loads the shipped PNGs
(and paints them itself when they are missing). Every size is drawn on its own pixel grid
rather than scaled from a large master, so the 16 px icon stays crisp at every device pixel
ratio; the badge is a red pill with white bold digits ringed in the panel's colour so it
stands out on light and dark panels alike.
"""

from __future__ import annotations

import enum
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QIcon,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

#: The logical sizes a tray host asks for: 16 (Windows, classic X11), 22/24 (GNOME, KDE,
#: xfce4-panel), 32..64 (large panels); each is also drawn at device pixel ratio 2.
TRAY_SIZES: Final = (16, 22, 24, 32, 48, 64)
TRAY_PIXEL_RATIOS: Final = (1.0, 2.0)
#: The sizes of the shipped app icon PNGs (resources/icons/tray-notifier-<size>.png).
APP_ICON_SIZES: Final = (16, 22, 24, 32, 48, 64, 128, 256)
APP_ICON_NAME: Final = "tray-notifier"
#: Counts above this show as "99+": a wider pill would hide the bell at 16 px.
MAX_BADGE_COUNT: Final = 99
#: Tray icons kept drawn (~175 KiB each): the count going back and forth, or the look
#: flipping between connected and offline, then costs no painting.
TRAY_ICON_CACHE_SIZE: Final = 4


class TrayLook(enum.Enum):
    """How the icon says what state the app is in.

    Attributes:
        CONNECTED: Live: the coloured tile.
        OFFLINE: Reconnecting or offline: the whole icon greyed, badge included, since
            the count may be stale.
        LOGIN_REQUIRED: Greyed, with an amber warning triangle.
        DND: Do not disturb: the coloured tile with a violet moon mark.
    """

    CONNECTED = "connected"
    OFFLINE = "offline"
    LOGIN_REQUIRED = "login_required"
    DND = "dnd"


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
    live = look in (TrayLook.CONNECTED, TrayLook.DND)
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


def _paint_tile(painter: QPainter, tile: QRectF, palette: _Palette, *, bell: bool) -> None:
    gradient = QLinearGradient(tile.topLeft(), tile.bottomLeft())
    gradient.setColorAt(0.0, palette.tile_top)
    gradient.setColorAt(1.0, palette.tile_bottom)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(gradient))
    radius = tile.width() * 0.23
    painter.drawRoundedRect(tile, radius, radius)
    if bell:
        # A touch below centre: the knob would otherwise crowd the tile's top edge.
        glyph_box = tile.translated(0, tile.height() * 0.02)
        painter.setBrush(palette.glyph)
        painter.drawPath(_bell_path(glyph_box))
        painter.drawEllipse(_knob_rect(glyph_box))
        painter.drawPath(_clapper_path(glyph_box))


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
    font: QFont
    digits: str
    digits_origin: QPointF
    plus: QRectF | None  # the square the "+" of "99+" is drawn in


def _font_candidates(largest: int) -> list[tuple[int, bool]]:
    """Badge fonts to try, best first: each size plain, then condensed; 6 px at least."""
    return [(size, condensed) for size in range(largest, 5, -1) for condensed in (False, True)]


def _layout_badge(text: str, size: float, height: float, grid: _Grid) -> _BadgeLayout:
    """Fit the text into a pill in the top-right corner.

    The "+" of "99+" is drawn as two bars rather than as a glyph: at 16 px a font's plus
    is a blur, while bars snapped to the pixel grid stay sharp and narrow.
    """
    ring = _ring_width(size, grid)
    digits = text.rstrip("+")
    has_plus = digits != text
    max_width = size - 2 * ring
    # A single digit sits in a circle; longer text gets side padding, which shrinks
    # before the font does when the corner is tight.
    comfortable_padding = height * 0.5 if len(text) > 1 else 0.0
    tight_padding = height * 0.1 if len(text) > 1 else 0.0
    font = _badge_font(6, condensed=True)
    ink = QRectF()
    plus_side = gap = 0.0
    for pixel_size, condensed in _font_candidates(max(6, round(height * 0.8))):
        font = _badge_font(pixel_size, condensed=condensed)
        ink = QFontMetricsF(font).tightBoundingRect(digits)
        plus_side = grid.snap(ink.height() * 0.6) if has_plus else 0.0
        gap = max(grid.snap(ink.height() * 0.12), 1 / grid.ratio) if has_plus else 0.0
        if ink.width() + gap + plus_side + tight_padding <= max_width:
            break
    content = ink.width() + gap + plus_side
    width = min(grid.snap(max(height, content + comfortable_padding)), max_width)
    pill = QRectF(size - ring - width, ring, width, height)
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
    return _BadgeLayout(outline, pill, font, digits, origin, plus)


def _paint_badge(painter: QPainter, layout: _BadgeLayout, palette: _Palette, grid: _Grid) -> None:
    outline = layout.outline
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(palette.ring)
    painter.drawRoundedRect(outline, outline.height() / 2, outline.height() / 2)
    painter.setBrush(palette.badge_fill)
    pill = layout.pill
    painter.drawRoundedRect(pill, pill.height() / 2, pill.height() / 2)

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
    """The bottom-right square of a state mark (warning, moon), and its ring width."""
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


def _paint_moon(painter: QPainter, box: QRectF, ring: float, ring_color: QColor) -> None:
    outline = box.adjusted(-ring, -ring, ring, ring)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(ring_color)
    painter.drawEllipse(outline)
    painter.setBrush(_DND_VIOLET)
    painter.drawEllipse(box)
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
    text = badge_text(unread)
    grid = _Grid(pixel_ratio)
    palette = _palette(look, dark_panel)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
    tile = _tile_rect(size, grid)
    has_mark = look in (TrayLook.LOGIN_REQUIRED, TrayLook.DND)
    badge = None
    if text:
        height = grid.snap(size * 0.56)
        badge = _layout_badge(text, size, height, grid)
    # A badge that spans most of the tile would leave only stray bits of bell below it.
    bell = badge is None or badge.outline.left() > tile.left() + tile.width() * 0.3
    _paint_tile(painter, tile, palette, bell=bell)
    if badge is not None:
        _paint_badge(painter, badge, palette, grid)
    if has_mark:
        diameter = grid.snap(size * 0.5)
        if badge is not None:
            # The count matters more than the mark: the mark shrinks into the space the
            # badge leaves (rings may overlap, the pill and the mark may not).
            diameter = min(diameter, size - badge.outline.bottom())
        box, ring = _mark_box(size, diameter, grid)
        if look is TrayLook.LOGIN_REQUIRED:
            _paint_warning(painter, box, ring, grid, palette.ring)
        else:
            _paint_moon(painter, box, ring, palette.ring)


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
    if size <= 0 or not math.isfinite(device_pixel_ratio) or device_pixel_ratio <= 0:
        raise ValueError(
            f"size and device_pixel_ratio must be positive, got {size} and {device_pixel_ratio}"
        )
    badge_text(unread)  # validates before any pixel is touched
    side = round(size * device_pixel_ratio)
    pixmap = QPixmap(side, side)
    pixmap.setDevicePixelRatio(device_pixel_ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
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
    """The tray icon with every size a tray host may ask for, each drawn on its own grid.

    Args:
        unread: The unread count (not negative).
        look: The state the icon shows.
        dark_panel: True when the panel behind the icon is dark.

    Returns:
        An icon holding :data:`TRAY_SIZES` at each of :data:`TRAY_PIXEL_RATIOS`.
    """
    icon = QIcon()
    for size in TRAY_SIZES:
        for ratio in TRAY_PIXEL_RATIOS:
            icon.addPixmap(
                render_tray_pixmap(
                    unread=unread,
                    look=look,
                    size=size,
                    device_pixel_ratio=ratio,
                    dark_panel=dark_panel,
                )
            )
    return icon


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
    """The plain app icon (no badge) for windows, dialogs and toasts.

    Loads ``tray-notifier-<size>.png`` from the first of :func:`icon_directories` that has
    them; an install without the files still gets the same icon, painted here.
    """
    icon = QIcon()
    for directory in icon_directories():
        files = [directory / f"{APP_ICON_NAME}-{size}.png" for size in APP_ICON_SIZES]
        for path in files:
            if path.is_file():
                icon.addFile(str(path), QSize())
        if not icon.isNull():
            return icon
    for size in APP_ICON_SIZES:
        icon.addPixmap(render_app_pixmap(size))
    return icon


def render_app_pixmap(size: int, device_pixel_ratio: float = 1.0) -> QPixmap:
    """The plain app icon at one size: the tile and bell, no badge, no state mark."""
    return render_tray_pixmap(
        unread=0, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=device_pixel_ratio
    )
