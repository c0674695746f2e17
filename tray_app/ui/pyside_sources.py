"""Keep PySide6 from holding every imported module's source in memory (issue 20).

Once PySide6 is imported, shiboken's import hook asks, for each module imported after
it, whether that module uses PySide6 (``shibokensupport.feature._mod_uses_pyside``,
PYSIDE-2029: it decides whether ``from __feature__ import ...`` may switch that
module's view of Qt's types). It answers by ``inspect.getsource(module)`` and a search
for "PySide6", and ``inspect`` reads through ``linecache``, which keeps every line of
every such module for the life of the process. The tray app shows its icon first, so
nearly all of it, the network stack and the keyring are imported after PySide6: measured
on the B8 desktop, 355-387 files and ~140,000 line strings, 13.4 MiB by tracemalloc,
13.7 MiB of resident size (112.8 to 99.1 MiB idle). Clearing ``linecache`` afterwards
does not give it back (the freed strings are scattered among long-lived code objects):
it has to not be kept.

:func:`stop_keeping_module_sources` puts in an answer with the same meaning (the
module's source file mentions "PySide6"), read as bytes and not kept. Tracebacks still
read their lines through ``linecache`` as usual. Standard-library modules are answered
from their path alone, without opening the file: they are half of the ~290 modules the
app imports after PySide6, and half of the ~14 ms their reading took at start (issue 20).
"""

from __future__ import annotations

import linecache
import logging
import os
import sys
from types import ModuleType

__all__ = ["mentions_pyside", "stop_keeping_module_sources"]

logger = logging.getLogger(__name__)

_FEATURE_MODULES = ("shibokensupport.feature", "PySide6.support.feature")


def _standard_library() -> tuple[str, ...]:
    # os is imported by the interpreter before anything else, from the standard
    # library's own directory. sysconfig would name it too, but is not imported yet
    # when this module is (right after PySide6) and costs ~1 ms to import. Both the
    # path as sys.path spells it (what modules' __file__ start with) and the resolved
    # one, in case a symlink sits between them. A bundle (PyInstaller) has os.pyc
    # next to the app's own modules, not in a directory of the standard library's:
    # no shortcut there, and none is needed (nothing in it is a .py file).
    path = getattr(os, "__file__", None)
    if not isinstance(path, str) or os.path.basename(path) != "os.py":
        return ()
    directory = os.path.dirname(path)
    return tuple(
        dict.fromkeys([os.path.join(directory, ""), os.path.join(os.path.realpath(directory), "")])
    )


# No file of the standard library mentions PySide6 (checked with grep over CPython
# 3.11's lib/python3.11, site-packages left out), so its modules need not be read.
_STANDARD_LIBRARY = _standard_library()
# Outside a virtual environment, third-party packages are installed under the standard
# library's directory (lib/python3.11/site-packages; dist-packages on Debian): those
# are read like any other module.
_THIRD_PARTY = tuple(f"{os.sep}{name}{os.sep}" for name in ("site-packages", "dist-packages"))


def mentions_pyside(module: ModuleType) -> bool:
    """Whether ``module``'s source file mentions PySide6: shiboken's own test, without
    ``linecache``. Modules without a ``.py`` file (built in, compiled, frozen into a
    bundle without sources) do not, as ``inspect.getsource`` fails for them too; nor
    do the standard library's, answered without reading their files."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return False
    if path.startswith(_STANDARD_LIBRARY) and not any(part in path for part in _THIRD_PARTY):
        return False
    try:
        with open(path, "rb") as source:
            return b"PySide6" in source.read()
    except OSError:
        return False


def stop_keeping_module_sources() -> bool:
    """Replace shiboken's test with :func:`mentions_pyside`; whether it was found (a
    PySide6 without it, older or newer, is left as it is). Call it right after
    importing PySide6, before the rest of the app.

    What shiboken's own test cached until then (enum, logging, os, types: ~6,000 lines,
    ~0.55 MiB) is dropped at once: freed this early, the space is reused by the imports
    that follow instead of staying in the heap beside them."""
    for name in _FEATURE_MODULES:
        feature = sys.modules.get(name)
        if feature is not None and callable(getattr(feature, "_mod_uses_pyside", None)):
            feature._mod_uses_pyside = mentions_pyside  # type: ignore[attr-defined]
            linecache.clearcache()
            return True
    logger.debug("PySide6's import hook has no _mod_uses_pyside; nothing to replace")
    return False
