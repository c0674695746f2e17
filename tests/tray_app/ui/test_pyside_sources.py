"""PySide6's import hook no longer keeps the source of every module imported after it.

Each check that needs a clean import state runs in a fresh interpreter: this test
process imported PySide6 and the app long ago.
"""

from __future__ import annotations

import json
import json.decoder
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, NoReturn

import PySide6
import pytest

from tray_app.ui import pyside_sources
from tray_app.ui.pyside_sources import mentions_pyside

# Imports PySide6 as run_gui does, maybe stops the caching, imports the rest of the app
# (what the tray app loads after its icon), then reports what linecache holds and how
# shiboken classified a few modules.
PROBE = """
import json, linecache, sys
from PySide6.QtWidgets import QApplication
from tray_app.ui.pyside_sources import stop_keeping_module_sources
replaced = stop_keeping_module_sources() if sys.argv[1] == "fix" else None
files_after_fix = len(linecache.cache)
import tray_app.ui.app, tray_app.ui.tray
feature = sys.modules["shibokensupport.feature"]
classified = {
    name: feature.pyside_feature_dict.get(name)
    for name in ("tray_app.ui.badge", "tray_app.store.db", "tray_app.attention")
}
lines = sum(len(entry[2]) for entry in linecache.cache.values() if len(entry) > 2)
print(json.dumps({"replaced": replaced, "files": len(linecache.cache), "lines": lines,
                  "classified": classified, "files_after_fix": files_after_fix}))
"""


def _probe(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        check=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_app_imported_after_pyside_leaves_no_sources_in_memory() -> None:
    kept = _probe("as shipped by PySide6")
    fixed = _probe("fix")

    # What the fix is for: without it, every module's lines stay (hundreds of files).
    assert kept["files"] > 100
    assert fixed["replaced"] is True
    # What shiboken's test read before the fix (PySide6's own imports, the fix's) is
    # dropped with it, and nothing is cached after.
    assert fixed["files_after_fix"] == 0
    assert fixed["files"] == 0
    assert fixed["lines"] < kept["lines"] / 10
    # Shiboken still tells the modules that use PySide6 from those that do not.
    assert (
        fixed["classified"]
        == kept["classified"]
        == {
            "tray_app.ui.badge": 0,
            "tray_app.store.db": -1,
            "tray_app.attention": -1,
        }
    )


def test_a_module_mentions_pyside_when_its_source_file_does(tmp_path: Path) -> None:
    def module_at(name: str, text: str | None) -> types.ModuleType:
        module = types.ModuleType(name)
        path = tmp_path / f"{name}.py"
        if text is not None:
            path.write_text(text)
        module.__file__ = str(path)
        return module

    assert mentions_pyside(module_at("uses", "from PySide6.QtCore import QObject\n"))
    assert not mentions_pyside(module_at("plain", "import json\n"))
    assert not mentions_pyside(module_at("gone", None))  # its file was removed
    assert not mentions_pyside(sys)  # built in: no file
    compiled = types.ModuleType("compiled")
    compiled.__file__ = str(tmp_path / "compiled.cpython-311-x86_64-linux-gnu.so")
    assert not mentions_pyside(compiled)


@pytest.mark.parametrize("value", [None, 42, b"/x.py"])
def test_a_module_with_an_odd_file_attribute_does_not_mention_pyside(value: object) -> None:
    module = types.ModuleType("odd")
    module.__file__ = value  # type: ignore[assignment]
    assert not mentions_pyside(module)


def test_the_standard_library_is_answered_without_reading_its_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[object] = []

    def refuse(file: object, *args: object, **kwargs: object) -> NoReturn:
        opened.append(file)
        raise OSError("not to be read")

    with monkeypatch.context() as patched:
        patched.setattr("builtins.open", refuse)
        assert not mentions_pyside(json)
        assert not mentions_pyside(json.decoder)
        assert opened == []
        # The same patch does stop any other module from being read.
        assert not mentions_pyside(pyside_sources)
        assert opened == [pyside_sources.__file__]
    # A package outside the standard library (the virtual environment's) is read as before.
    assert mentions_pyside(PySide6)


def test_packages_installed_under_the_standard_library_are_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a virtual environment site-packages sits in the standard library's
    directory (lib/python3.11/site-packages); Debian's dist-packages likewise."""
    stdlib = tmp_path / "lib" / "python3.11"
    monkeypatch.setattr(pyside_sources, "_STANDARD_LIBRARY", (os.path.join(stdlib, ""),))

    def module_at(relative: str, text: str) -> types.ModuleType:
        path = stdlib / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        module = types.ModuleType(path.stem)
        module.__file__ = str(path)
        return module

    uses = "from PySide6.QtCore import QObject\n"
    # Not read: a real standard-library module never says this, so the answer is the path's.
    assert not mentions_pyside(module_at("imagined.py", uses))
    assert mentions_pyside(module_at("site-packages/qtapp/__init__.py", uses))
    assert mentions_pyside(module_at("dist-packages/qtapp.py", uses))
    assert not mentions_pyside(module_at("site-packages/plain.py", "import json\n"))
    # A directory beside the standard library's, sharing its name's beginning, is read.
    beside = tmp_path / "lib" / "python3.11-extra" / "qtapp.py"
    beside.parent.mkdir()
    beside.write_text(uses)
    outside = types.ModuleType("qtapp")
    outside.__file__ = str(beside)
    assert mentions_pyside(outside)
