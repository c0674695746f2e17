"""The Qt runtime the app is pinned to: no refcount leak, and qasync survives a tight loop.

PySide6 6.12.0 on CPython 3.11 dropped a reference to None on every call of a Qt method
that returns nothing; a few thousand calls later the interpreter aborted with
"none_dealloc" (the crash shared/DESIGN.md once blamed on qasync). These tests fail on
such a build, so the pin in pyproject.toml cannot drift onto one unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QPainterPath
from PySide6.QtWidgets import QLabel

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
STRESS = Path(__file__).with_name("qasync_stress.py")


def test_void_qt_calls_do_not_leak_references_to_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    path = QPainterPath()
    before = sys.getrefcount(None)
    for n in range(5_000):
        path.lineTo(n, n)
        label.setObjectName("probe")
    # The leaking build loses 10,000 here; the interpreter itself may move it by a few.
    assert abs(sys.getrefcount(None) - before) < 100


def test_a_tight_send_receive_loop_on_qasync_completes():
    rounds = max(2_000, round(20_000 * SCALE))
    result = subprocess.run(
        [sys.executable, str(STRESS), str(rounds)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {rounds}"
