"""Write the app icon files from the painting in ``tray_app/ui/badge.py``.

    QT_QPA_PLATFORM=offscreen python resources/icons/generate.py

The painting is the single source: this writes ``tray-notifier.svg`` (vector, through
QSvgGenerator), ``tray-notifier-<size>.png``, the marked icons of high-priority and urgent
toasts (``tray-notifier_high-64.png``, ``tray-notifier_urgent-64.png``), and the Windows
``.ico`` and macOS ``.icns``. Qt's own ICO and ICNS writers store one image per file,
and a Windows icon needs several sizes (16 px drawn for 16 px, not shrunk from 256), so
both containers are assembled here from Qt-encoded PNGs: each format is a small header
and a table of PNG payloads (PNG entries are valid in ICO since Windows Vista and in ICNS
since OS X 10.7).
tests/tray_app/ui/test_badge.py checks that the files match the painting.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRect, QSize
from PySide6.QtGui import QGuiApplication, QPainter
from PySide6.QtSvg import QSvgGenerator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tray_app.ui.badge import (  # noqa: E402
    APP_ICON_NAME,
    APP_ICON_SIZES,
    MARKED_APP_ICON_SIZES,
    AppMark,
    app_icon_file_name,
    paint_icon,
    render_app_pixmap,
)

ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# (type, pixels): ICNS names each slot by a four-letter type; the @2x slots hold the
# double-density image of the size before them.
ICNS_SLOTS = (
    (b"icp4", 16),
    (b"ic11", 32),
    (b"icp5", 32),
    (b"ic12", 64),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic13", 256),
    (b"ic08", 256),
    (b"ic14", 512),
    (b"ic09", 512),
    (b"ic10", 1024),
)


def png_bytes(size: int, mark: AppMark | None = None) -> bytes:
    """The app icon (with ``mark``, if given) at ``size`` pixels, PNG-encoded by Qt."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not render_app_pixmap(size, mark=mark).save(buffer, "PNG"):
        raise RuntimeError(f"Qt could not encode the {size} px icon as PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(sizes: tuple[int, ...]) -> bytes:
    """An ICO file: ICONDIR, one 16-byte ICONDIRENTRY per image, then the PNGs."""
    images = [png_bytes(size) for size in sizes]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    entries = b""
    for size, image in zip(sizes, images, strict=True):
        side = 0 if size >= 256 else size  # 0 means 256 in a one-byte field
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(image), offset)
        offset += len(image)
    return header + entries + b"".join(images)


def icns_bytes(slots: tuple[tuple[bytes, int], ...]) -> bytes:
    """An ICNS file: "icns" and the total length, then (type, length, PNG) per slot."""
    body = b""
    for kind, size in slots:
        image = png_bytes(size)
        body += kind + struct.pack(">I", 8 + len(image)) + image
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write_svg(path: Path, size: int = 256) -> None:
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(QSize(size, size))
    generator.setViewBox(QRect(0, 0, size, size))
    generator.setTitle("Tray Notifier")
    generator.setDescription("The Tray Notifier app icon: a bell on a blue tile.")
    painter = QPainter(generator)
    try:
        paint_icon(painter, size=size)
    finally:
        painter.end()


def write_marked_pngs() -> None:
    """The marked app icons of high-priority and urgent toasts."""
    for mark in AppMark:
        for size in MARKED_APP_ICON_SIZES:
            (HERE / app_icon_file_name(size, mark)).write_bytes(png_bytes(size, mark))


def main() -> None:
    """Write every icon file next to this script."""
    application = QGuiApplication.instance() or QGuiApplication(sys.argv)
    for size in APP_ICON_SIZES:
        path = HERE / f"{APP_ICON_NAME}-{size}.png"
        path.write_bytes(png_bytes(size))
    write_marked_pngs()
    write_svg(HERE / f"{APP_ICON_NAME}.svg")
    (HERE / f"{APP_ICON_NAME}.ico").write_bytes(ico_bytes(ICO_SIZES))
    (HERE / f"{APP_ICON_NAME}.icns").write_bytes(icns_bytes(ICNS_SLOTS))
    del application


if __name__ == "__main__":
    main()
