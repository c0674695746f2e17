"""Modules imported on first use instead of when a library names them (issue 20)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tray_app.deferred import RARELY_USED, DeferredModule, defer_import

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``deferred_probe`` whose modules note in ``RUNS`` each time they run."""
    root = tmp_path / "deferred_probe"
    (root / "inner").mkdir(parents=True)
    (root / "__init__.py").write_text("RUNS = []\n")
    (root / "leaf.py").write_text(
        "import deferred_probe\ndeferred_probe.RUNS.append('leaf')\nANSWER = 42\n"
    )
    (root / "inner" / "__init__.py").write_text(
        "import deferred_probe\ndeferred_probe.RUNS.append('inner')\n"
    )
    (root / "inner" / "part.py").write_text("VALUE = 'part'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "deferred_probe"
    for name in [name for name in sys.modules if name.split(".")[0] == "deferred_probe"]:
        del sys.modules[name]


def imported(statement: str) -> Any:
    """What ``statement`` (an import statement, run as written: the package is made at
    run time, so mypy could not follow it) binds."""
    namespace: dict[str, Any] = {}
    exec(statement, namespace)
    names = [name for name in namespace if name != "__builtins__"]
    return namespace[names[0]]


def test_an_import_statement_binds_the_stand_in_without_running_the_module(
    package: str,
) -> None:
    assert defer_import(f"{package}.leaf") is True
    deferred_probe = imported("import deferred_probe.leaf")

    assert deferred_probe.RUNS == []
    assert isinstance(sys.modules["deferred_probe.leaf"], DeferredModule)
    # Probes for a module's bookkeeping (what inspect, warnings and PySide6's import
    # hook ask) do not import it either.
    assert getattr(deferred_probe.leaf, "__file__", None) is None
    assert deferred_probe.RUNS == []

    assert deferred_probe.leaf.ANSWER == 42  # the first real question imports it
    assert deferred_probe.RUNS == ["leaf"]
    real = sys.modules["deferred_probe.leaf"]
    assert not isinstance(real, DeferredModule)
    assert deferred_probe.leaf is real  # the package's attribute is the real one too
    assert imported("from deferred_probe.leaf import ANSWER") == 42
    assert deferred_probe.RUNS == ["leaf"]  # once


def test_a_stand_in_captured_before_the_import_still_answers(package: str) -> None:
    defer_import(f"{package}.leaf")
    captured = imported("import deferred_probe.leaf").leaf
    assert captured.ANSWER == 42
    assert captured.__file__ == sys.modules["deferred_probe.leaf"].__file__


def test_a_deferred_package_is_imported_when_a_submodule_is(package: str) -> None:
    defer_import(f"{package}.inner")
    deferred_probe = imported("import deferred_probe.inner.part")

    assert deferred_probe.inner.part.VALUE == "part"
    assert sys.modules["deferred_probe"].RUNS == ["inner"]


def test_a_module_imported_already_is_left_alone(package: str) -> None:
    leaf = imported("import deferred_probe.leaf").leaf

    assert defer_import(f"{package}.leaf") is False
    assert sys.modules["deferred_probe.leaf"] is leaf


# The app's modules in a fresh interpreter, after what the app does first: the rarely
# used modules stay stand-ins while the app imports everything it runs, and each
# answers when something uses it.
_APP_SCRIPT = """
import json, sys
from tray_app.deferred import DeferredModule, defer_rarely_used_modules
deferred = defer_rarely_used_modules()
import tray_app.__main__, tray_app.logs, logging.handlers, httpx, httpcore, ssl
httpx.AsyncClient(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # as the app makes it
import tray_app.ui.app, tray_app.net.api, tray_app.net.live, websockets.asyncio.client
stand_ins = sorted(n for n in deferred if isinstance(sys.modules[n], DeferredModule))
import importlib.metadata, mimetypes, pickle, certifi, os
import websockets
answers = [
    importlib.metadata.version("websockets") == websockets.__version__,
    pickle.loads(pickle.dumps({"a": 1})) == {"a": 1},
    mimetypes.guess_type("x.png")[0] == "image/png",
    os.path.exists(certifi.where()),
]
from importlib.metadata import version
real = [not isinstance(sys.modules[n], DeferredModule) for n in deferred]
print(json.dumps({"deferred": deferred, "stand_ins": stand_ins, "answers": answers,
                  "httpx": version("httpx"), "real": real}))
"""


def test_the_app_loads_the_rarely_used_modules_only_if_something_uses_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _APP_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(done.stdout)
    assert set(report["deferred"]) == set(RARELY_USED)
    assert set(report["stand_ins"]) == set(RARELY_USED)
    assert report["answers"] == [True] * 4
    assert report["real"] == [True] * len(RARELY_USED)
    assert report["httpx"]
