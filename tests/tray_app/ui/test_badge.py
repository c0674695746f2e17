"""The tray icon's painting: badge words, pixels per state, sizes, and the shipped app icon."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap, QPixmapCache
from PySide6.QtWidgets import QApplication

from tray_app.ui import badge
from tray_app.ui.badge import (
    APP_ICON_NAME,
    APP_ICON_SIZES,
    MARKED_APP_ICON_SIZES,
    TRAY_PIXEL_RATIOS,
    TRAY_SIZES,
    WINDOW_ICON_SIZES,
    AppMark,
    TrayIconCache,
    TrayIconKey,
    TrayLook,
    app_icon,
    app_icon_file_name,
    badge_text,
    render_app_pixmap,
    render_mark_pixmap,
    render_tray_pixmap,
    tray_icon,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _app(qapp: QApplication) -> QApplication:
    return qapp


def _image(pixmap: QPixmap) -> QImage:
    return pixmap.toImage().convertToFormat(QImage.Format.Format_ARGB32)


def _pixels(image: QImage, *, left: float = 0, top: float = 0, right: float = 1, bottom: float = 1):
    """The colours of the part of ``image`` between the given fractions of its sides."""
    for y in range(int(top * image.height()), int(bottom * image.height())):
        for x in range(int(left * image.width()), int(right * image.width())):
            yield image.pixelColor(x, y)


def _is_red(colour: QColor) -> bool:
    return (
        colour.alpha() > 200 and colour.red() > 170 and colour.green() < 90 and colour.blue() < 90
    )


def _is_saturated(colour: QColor) -> bool:
    # Antialiased edges of greys stay grey; a coloured pixel has hue and some strength.
    return colour.alpha() > 40 and colour.hsvSaturation() > 40 and colour.value() > 40


def _differing_pixels(first: QImage, second: QImage) -> int:
    assert first.size() == second.size()
    return sum(
        first.pixel(x, y) != second.pixel(x, y)
        for y in range(first.height())
        for x in range(first.width())
    )


@pytest.mark.parametrize(
    ("unread", "text"),
    [(0, ""), (1, "1"), (7, "7"), (10, "10"), (42, "42"), (99, "99"), (100, "99+"), (10**9, "99+")],
)
def test_badge_text_shows_the_count_up_to_99(unread: int, text: str) -> None:
    assert badge_text(unread) == text


def test_a_negative_count_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        badge_text(-1)
    with pytest.raises(ValueError, match="negative"):
        render_tray_pixmap(unread=-3, look=TrayLook.CONNECTED, size=22)


@pytest.mark.parametrize(("size", "ratio"), [(0, 1.0), (-4, 1.0), (22, 0.0), (22, float("nan"))])
def test_a_bad_size_or_ratio_is_refused(size: int, ratio: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        render_tray_pixmap(unread=1, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=ratio)


@pytest.mark.parametrize(("size", "ratio"), list(itertools.product(TRAY_SIZES, TRAY_PIXEL_RATIOS)))
def test_unread_shows_a_red_badge_top_right_and_none_without_unread(
    size: int, ratio: float
) -> None:
    with_unread = _image(
        render_tray_pixmap(unread=3, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=ratio)
    )
    without = _image(
        render_tray_pixmap(unread=0, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=ratio)
    )
    red_top_right = sum(map(_is_red, _pixels(with_unread, left=0.5, bottom=0.5)))
    assert red_top_right > 0.15 * (with_unread.width() * with_unread.height() / 4)
    # The badge stays in its corner: far from it, bottom-left, there is no red.
    assert not any(map(_is_red, _pixels(with_unread, right=0.35, top=0.65)))
    assert not any(map(_is_red, _pixels(without)))


@pytest.mark.parametrize("unread", [3, 42, 150])
def test_the_digits_are_drawn_white_on_the_pill(unread: int) -> None:
    image = _image(render_tray_pixmap(unread=unread, look=TrayLook.CONNECTED, size=32))
    other = _image(render_tray_pixmap(unread=8, look=TrayLook.CONNECTED, size=32))
    white = sum(
        c.alpha() > 200 and min(c.red(), c.green(), c.blue()) > 220
        for c in _pixels(image, left=0.3, bottom=0.5)
    )
    assert white >= 12
    assert _differing_pixels(image, other) > 10  # the number itself is painted


def _is_white(colour: QColor) -> bool:
    return colour.alpha() > 200 and min(colour.red(), colour.green(), colour.blue()) > 200


def _longest_run(image: QImage, y: int, accept) -> int:
    best = run = 0
    for x in range(image.width()):
        run = run + 1 if accept(image.pixelColor(x, y)) else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("unread", [1, 42, 100, 5000])
@pytest.mark.parametrize(("size", "ratio"), list(itertools.product(TRAY_SIZES, TRAY_PIXEL_RATIOS)))
def test_the_bell_stays_in_view_below_the_badge_at_every_count(
    unread: int, size: int, ratio: float
) -> None:
    """Below the badge's lowest red pixel, the bell is still there: most of its white (on a
    dark panel, where the badge's ring is dark too), a rim as wide as a bell's, and a
    dome above the rim that narrows towards the top."""

    def render(count: int) -> QImage:
        return _image(
            render_tray_pixmap(
                unread=count,
                look=TrayLook.CONNECTED,
                size=size,
                device_pixel_ratio=ratio,
                dark_panel=True,
            )
        )

    plain = render(0)
    bell_alone = sum(map(_is_white, _pixels(plain)))
    image = render(unread)
    side = image.width()
    badge_bottom = max(
        y for y in range(side) for x in range(side) if _is_red(image.pixelColor(x, y))
    )
    below = range(badge_bottom + 1, side)
    in_view = sum(_is_white(image.pixelColor(x, y)) for y in below for x in range(side))
    assert in_view >= 0.55 * bell_alone, (in_view, bell_alone)
    runs = {y: _longest_run(image, y, _is_white) for y in below}
    rim_row = max(runs, key=lambda y: runs[y])
    assert runs[rim_row] >= 0.33 * side  # the rim
    dome = [y for y in below if y < rim_row and 0 < runs[y] < runs[rim_row]]
    assert len(dome) >= 0.2 * side  # the dome above it, narrower
    assert max(runs[y] for y in dome) > min(runs[y] for y in dome)  # and rounded


@pytest.mark.parametrize("size", TRAY_SIZES)
def test_counts_above_99_read_99_plus_and_below_it_their_number(size: int) -> None:
    def render(count: int) -> QImage:
        return _image(render_tray_pixmap(unread=count, look=TrayLook.CONNECTED, size=size))

    assert render(100) == render(5000)
    assert _differing_pixels(render(100), render(99)) > 2  # the plus
    assert _differing_pixels(render(42), render(1)) > size  # the second digit


@pytest.mark.parametrize("dark_panel", [False, True])
@pytest.mark.parametrize("unread", [0, 3, 150])
def test_offline_has_no_saturated_colour(unread: int, dark_panel: bool) -> None:
    for size in TRAY_SIZES:
        image = _image(
            render_tray_pixmap(
                unread=unread, look=TrayLook.OFFLINE, size=size, dark_panel=dark_panel
            )
        )
        assert not any(map(_is_saturated, _pixels(image))), size


def test_connected_is_in_colour() -> None:
    image = _image(render_tray_pixmap(unread=0, look=TrayLook.CONNECTED, size=22))
    assert sum(map(_is_saturated, _pixels(image))) > 0.5 * 22 * 22


def test_login_required_shows_an_amber_mark_bottom_right() -> None:
    image = _image(render_tray_pixmap(unread=0, look=TrayLook.LOGIN_REQUIRED, size=24))

    def amber(colour: QColor) -> bool:
        return colour.alpha() > 200 and 30 <= colour.hsvHue() <= 45 and colour.hsvSaturation() > 150

    assert sum(map(amber, _pixels(image, left=0.5, top=0.5))) > 20
    assert not any(map(amber, _pixels(image, bottom=0.4)))


def _is_violet(colour: QColor) -> bool:
    return colour.alpha() > 200 and 240 <= colour.hsvHue() <= 260 and colour.hsvSaturation() > 120


def _is_teal(colour: QColor) -> bool:
    return colour.alpha() > 200 and 165 <= colour.hsvHue() <= 190 and colour.hsvSaturation() > 150


@pytest.mark.parametrize("unread", [0, 5, 150])
@pytest.mark.parametrize("size", TRAY_SIZES)
def test_silence_shows_a_moon_for_dnd_and_a_clock_for_quiet_hours(unread: int, size: int) -> None:
    dnd = _image(render_tray_pixmap(unread=unread, look=TrayLook.DND, size=size))
    quiet = _image(render_tray_pixmap(unread=unread, look=TrayLook.QUIET_HOURS, size=size))
    corner = {"left": 0.5, "top": 0.5}
    assert sum(map(_is_violet, _pixels(dnd, **corner))) > 0.04 * size * size
    assert sum(map(_is_teal, _pixels(quiet, **corner))) > 0.04 * size * size
    assert not any(map(_is_teal, _pixels(dnd)))
    assert not any(map(_is_violet, _pixels(quiet)))
    # The clock's face is white with teal hands on it: white inside the teal disc.
    assert any(map(_is_white, _pixels(quiet, left=0.7, top=0.7, right=0.85, bottom=0.85)))


def test_a_silence_mark_alone_for_the_menu() -> None:
    moon = _image(render_mark_pixmap(TrayLook.DND, 16, 2.0))
    clock = _image(render_mark_pixmap(TrayLook.QUIET_HOURS, 16, 2.0))
    assert moon.size() == clock.size() == QSize(32, 32)
    assert sum(map(_is_violet, _pixels(moon))) > 0.4 * 32 * 32
    assert sum(map(_is_teal, _pixels(clock))) > 0.2 * 32 * 32
    assert moon.pixelColor(0, 0).alpha() == 0  # a disc, no ring: nothing in the corners
    with pytest.raises(ValueError, match="no mark"):
        render_mark_pixmap(TrayLook.CONNECTED, 16)


@pytest.mark.parametrize("unread", [0, 5, 150])
@pytest.mark.parametrize("dark_panel", [False, True])
def test_every_look_differs_from_every_other(unread: int, dark_panel: bool) -> None:
    for size in (16, 22):
        images = {
            look: _image(
                render_tray_pixmap(unread=unread, look=look, size=size, dark_panel=dark_panel)
            )
            for look in TrayLook
        }
        for first, second in itertools.combinations(TrayLook, 2):
            different = _differing_pixels(images[first], images[second])
            assert different > size, (first, second, size)


def test_the_badge_ring_follows_the_panel() -> None:
    light = _image(render_tray_pixmap(unread=5, look=TrayLook.CONNECTED, size=22))
    dark = _image(render_tray_pixmap(unread=5, look=TrayLook.CONNECTED, size=22, dark_panel=True))
    assert _differing_pixels(light, dark) > 10


@pytest.mark.parametrize(
    ("size", "ratio", "device"), [(16, 1.0, 16), (16, 2.0, 32), (22, 1.5, 33), (64, 2.0, 128)]
)
def test_sizes_and_ratios_give_the_device_pixel_size(size: int, ratio: float, device: int) -> None:
    pixmap = render_tray_pixmap(
        unread=7, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=ratio
    )
    assert (pixmap.width(), pixmap.height()) == (device, device)
    assert pixmap.devicePixelRatio() == ratio
    # Transparent corners: the tile is rounded, the host's panel shows through.
    assert pixmap.toImage().pixelColor(0, device - 1).alpha() == 0


def test_tray_icon_holds_each_size_drawn_on_its_own_grid() -> None:
    icon = tray_icon(unread=12, look=TrayLook.DND)
    for size, ratio in itertools.product(TRAY_SIZES, TRAY_PIXEL_RATIOS):
        pixmap = icon.pixmap(QSize(size, size), ratio)
        drawn = render_tray_pixmap(
            unread=12, look=TrayLook.DND, size=size, device_pixel_ratio=ratio
        )
        assert pixmap.size() == drawn.size(), (size, ratio)
        # Exactly the pixmap painted for that size: nothing was scaled.
        assert _image(pixmap) == _image(drawn), (size, ratio)
    # 16 px at ratio 2 is not the 32 px icon scaled: it is laid out for 16 logical pixels.
    assert _image(icon.pixmap(QSize(16, 16), 2.0)) != _image(icon.pixmap(QSize(32, 32), 1.0))


@pytest.mark.parametrize(("size", "ratio"), [(20, 1.25), (18, 1.5), (30, 1.0), (22, 3.0)])
def test_other_sizes_and_ratios_are_drawn_on_their_own_grid(size: int, ratio: float) -> None:
    # A "125 %" screen or a panel of its own size gets its exact pixels, not a scaled pair.
    icon = tray_icon(unread=5, look=TrayLook.CONNECTED)
    pixmap = icon.pixmap(QSize(size, size), ratio)
    drawn = render_tray_pixmap(
        unread=5, look=TrayLook.CONNECTED, size=size, device_pixel_ratio=ratio
    )
    assert pixmap.size() == drawn.size()
    assert _image(pixmap) == _image(drawn)


def test_tray_icon_offers_the_tray_sizes() -> None:
    # What a StatusNotifierItem host is sent (Qt's D-Bus tray reads the available sizes).
    icon = tray_icon(unread=2, look=TrayLook.OFFLINE)
    assert icon.availableSizes() == [QSize(size, size) for size in TRAY_SIZES]
    assert not icon.isNull()
    assert icon.actualSize(QSize(40, 30)) == QSize(30, 30)


def test_tray_icon_paints_the_pixmap_for_its_rectangle() -> None:
    icon = tray_icon(unread=3, look=TrayLook.CONNECTED)
    # Premultiplied, as a pixmap is: drawn over transparency, its pixels come out as is.
    image = QImage(40, 40, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    try:
        icon.paint(painter, QRect(4, 4, 32, 32))
    finally:
        painter.end()
    drawn = _image(render_tray_pixmap(unread=3, look=TrayLook.CONNECTED, size=32))
    painted = image.copy(4, 4, 32, 32).convertToFormat(QImage.Format.Format_ARGB32)
    assert painted == drawn


@pytest.fixture
def small_pixmap_cache() -> Iterator[int]:
    """QPixmapCache limited to 64 KiB for the test (restored after)."""
    limit = QPixmapCache.cacheLimit()
    QPixmapCache.clear()
    QPixmapCache.setCacheLimit(64)
    yield 64
    QPixmapCache.clear()
    QPixmapCache.setCacheLimit(limit)


def test_reading_tray_icons_leaves_nothing_in_the_pixmap_cache(small_pixmap_cache: int) -> None:
    # Qt's own icon engine puts every pixmap read from an icon into the process-wide
    # QPixmapCache, where it outlives the icon: the tray host reads each new count's icon,
    # so every count shown stayed in memory (issue 20). A marker put in a small cache
    # survives only if reading many icons, as a host does, inserts nothing.
    marker = QPixmap(8, 8)
    marker.fill(Qt.GlobalColor.blue)
    assert QPixmapCache.insert("test-marker", marker)
    for unread in range(1, 21):
        icon = tray_icon(unread=unread, look=TrayLook.CONNECTED)
        for size in icon.availableSizes():
            assert not icon.pixmap(size).isNull()
        del icon
    gc.collect()
    assert QPixmapCache.find("test-marker", QPixmap())


def test_the_small_cache_does_evict_what_qts_own_engine_reads(small_pixmap_cache: int) -> None:
    # The test above would pass on a cache that never evicts: with Qt's engine, the same
    # reads push the marker out.
    marker = QPixmap(8, 8)
    marker.fill(Qt.GlobalColor.blue)
    assert QPixmapCache.insert("test-marker", marker)
    for unread in range(1, 21):
        icon = QIcon()
        for size in TRAY_SIZES:
            icon.addPixmap(render_tray_pixmap(unread=unread, look=TrayLook.CONNECTED, size=size))
        for wanted in icon.availableSizes():
            icon.pixmap(wanted)
    assert not QPixmapCache.find("test-marker", QPixmap())


def test_a_copy_of_the_tray_icon_that_qt_detaches_keeps_drawing() -> None:
    # Changing a copy makes Qt clone the engine; the clone must outlive Python's
    # collection while Qt holds it (a dropped clone would crash here).
    icon = tray_icon(unread=4, look=TrayLook.DND)
    copy = QIcon(icon)
    copy.addPixmap(QPixmap(8, 8))
    del icon
    gc.collect()
    drawn = render_tray_pixmap(unread=4, look=TrayLook.DND, size=22)
    assert _image(copy.pixmap(QSize(22, 22))) == _image(drawn)


def test_the_shipped_app_icons_match_the_painting() -> None:
    """Regenerate with ``python resources/icons/generate.py`` when this fails."""
    directory = REPO / "resources" / "icons"
    for size in APP_ICON_SIZES:
        shipped = QImage(str(directory / f"{APP_ICON_NAME}-{size}.png"))
        assert not shipped.isNull(), size
        painted = _image(render_app_pixmap(size))
        shipped = shipped.convertToFormat(QImage.Format.Format_ARGB32)
        assert shipped.size() == painted.size()
        worst = max(
            abs(a.red() - b.red()) + abs(a.alpha() - b.alpha())
            for a, b in zip(_pixels(shipped), _pixels(painted), strict=True)
        )
        assert worst <= 24, size
    assert (directory / f"{APP_ICON_NAME}.svg").read_text().lstrip().startswith("<?xml")


def _is_orange(colour: QColor) -> bool:
    return colour.alpha() > 200 and 25 <= colour.hsvHue() <= 40 and colour.hsvSaturation() > 200


@pytest.mark.parametrize(
    ("mark", "colour"), [(AppMark.URGENT, _is_red), (AppMark.HIGH, _is_orange)]
)
def test_marked_app_icons_carry_their_colour_bottom_right(mark: AppMark, colour) -> None:
    marked = _image(render_app_pixmap(64, mark=mark))
    plain = _image(render_app_pixmap(64))
    assert sum(map(colour, _pixels(marked, left=0.5, top=0.5))) > 0.1 * 64 * 64
    assert not any(map(colour, _pixels(marked, bottom=0.45)))
    assert not any(map(colour, _pixels(plain)))
    # A white sign ("!" or an arrow) on the disc, and the bell still in view.
    assert any(map(_is_white, _pixels(marked, left=0.7, top=0.6, right=0.8, bottom=0.9)))
    assert sum(map(_is_white, _pixels(marked, right=0.5, bottom=0.6))) > 0.05 * 64 * 64


def test_the_shipped_marked_icons_match_the_painting() -> None:
    """Regenerate with ``python resources/icons/generate.py`` when this fails."""
    directory = REPO / "resources" / "icons"
    for mark in AppMark:
        for size in MARKED_APP_ICON_SIZES:
            name = app_icon_file_name(size, mark)
            # Not tray-notifier-<x>-<size>.png: the Debian package would install it as
            # the launcher icon of that size (scripts/build-installers).
            assert not name.startswith(f"{APP_ICON_NAME}-"), name
            shipped = QImage(str(directory / name))
            assert not shipped.isNull(), name
            shipped = shipped.convertToFormat(QImage.Format.Format_ARGB32)
            painted = _image(render_app_pixmap(size, mark=mark))
            assert shipped.size() == painted.size()
            worst = max(
                abs(a.red() - b.red()) + abs(a.alpha() - b.alpha())
                for a, b in zip(_pixels(shipped), _pixels(painted), strict=True)
            )
            assert worst <= 24, name


def test_the_shipped_ico_and_icns_hold_every_size() -> None:
    from PySide6.QtGui import QImageReader

    directory = REPO / "resources" / "icons"
    for name, expected in (
        (f"{APP_ICON_NAME}.ico", {16, 24, 32, 48, 64, 128, 256}),
        (f"{APP_ICON_NAME}.icns", {16, 32, 64, 128, 256, 512}),
    ):
        reader = QImageReader(str(directory / name))
        sizes = set()
        for index in range(reader.imageCount()):
            assert reader.jumpToImage(index)
            image = reader.read()
            assert not image.isNull(), (name, index)
            sizes.add(image.width())
        assert expected <= sizes, name


def test_app_icon_loads_the_shipped_pngs() -> None:
    icon = app_icon()
    assert not icon.isNull()
    sizes = {size.width() for size in icon.availableSizes()}
    assert sizes == set(WINDOW_ICON_SIZES)
    assert set(WINDOW_ICON_SIZES) < set(APP_ICON_SIZES)  # files for all, windows load some
    shipped = QImage(str(REPO / "resources" / "icons" / f"{APP_ICON_NAME}-48.png"))
    assert _image(icon.pixmap(48)) == shipped.convertToFormat(QImage.Format.Format_ARGB32)


def test_app_icon_is_found_in_a_pyinstaller_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle is faked by a real directory laid out as PyInstaller unpacks it and
    ``sys._MEIPASS`` pointing at it (the attribute PyInstaller's bootloader sets)."""
    icons = tmp_path / "resources" / "icons"
    icons.mkdir(parents=True)
    green = QImage(32, 32, QImage.Format.Format_ARGB32)
    green.fill(QColor("#00ff00"))
    assert green.save(str(icons / f"{APP_ICON_NAME}-32.png"))
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)

    assert badge.icon_directories()[0] == icons
    pixmap = app_icon().pixmap(32)
    assert pixmap.toImage().pixelColor(16, 16) == QColor("#00ff00")


def test_app_icon_is_painted_when_no_files_ship(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(badge, "icon_directories", lambda: [tmp_path / "missing"])
    icon = app_icon()
    assert not icon.isNull()
    assert _image(icon.pixmap(64)) == _image(render_app_pixmap(64))


def test_a_strip_of_every_state_renders(tmp_path: Path) -> None:
    counts = (0, 3, 42, 150)
    side = 48
    strip = QImage(side * len(counts) + 8, side * len(TrayLook) + 8, QImage.Format.Format_ARGB32)
    strip.fill(QColor("#f4f5f7"))
    painter = QPainter(strip)
    try:
        for row, look in enumerate(TrayLook):
            for column, unread in enumerate(counts):
                pixmap = render_tray_pixmap(unread=unread, look=look, size=side - 8)
                painter.drawPixmap(8 + column * side, 8 + row * side, pixmap)
    finally:
        painter.end()
    path = tmp_path / "tray-icon-states.png"
    assert strip.save(str(path))
    colours = {strip.pixel(x, y) for y in range(strip.height()) for x in range(strip.width())}
    assert len(colours) > 200


def test_counts_with_the_same_badge_share_an_icon_key() -> None:
    assert TrayIconKey.of(100, TrayLook.CONNECTED) == TrayIconKey.of(10**6, TrayLook.CONNECTED)
    assert TrayIconKey.of(100, TrayLook.CONNECTED).unread == 100
    assert TrayIconKey.of(7, TrayLook.CONNECTED).unread == 7
    assert TrayIconKey.of(0, TrayLook.OFFLINE, dark_panel=True).unread == 0
    assert TrayIconKey.of(7, TrayLook.CONNECTED) != TrayIconKey.of(7, TrayLook.OFFLINE)
    with pytest.raises(ValueError, match="negative"):
        TrayIconKey.of(-1, TrayLook.CONNECTED)


def test_the_icon_cache_draws_each_icon_once_and_keeps_the_latest() -> None:
    cache = TrayIconCache(size=2)
    three = TrayIconKey.of(3, TrayLook.CONNECTED)
    first = cache.icon(three)
    # The same pixels as drawing it afresh.
    drawn = tray_icon(unread=3, look=TrayLook.CONNECTED)
    assert _image(first.pixmap(QSize(22, 22))) == _image(drawn.pixmap(QSize(22, 22)))
    assert cache.icon(three).cacheKey() == first.cacheKey()  # not drawn again
    four = cache.icon(TrayIconKey.of(4, TrayLook.CONNECTED))
    cache.icon(three)  # used last: the one kept when a third comes
    cache.icon(TrayIconKey.of(3, TrayLook.OFFLINE))
    assert len(cache) == 2
    assert cache.icon(three).cacheKey() == first.cacheKey()
    assert cache.icon(TrayIconKey.of(4, TrayLook.CONNECTED)).cacheKey() != four.cacheKey()


def test_an_empty_icon_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TrayIconCache(size=0)
