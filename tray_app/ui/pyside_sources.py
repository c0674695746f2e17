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
read their lines through ``linecache`` as usual.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType

__all__ = ["mentions_pyside", "stop_keeping_module_sources"]

logger = logging.getLogger(__name__)

_FEATURE_MODULES = ("shibokensupport.feature", "PySide6.support.feature")


def mentions_pyside(module: ModuleType) -> bool:
    """Whether ``module``'s source file mentions PySide6: shiboken's own test, without
    ``linecache``. Modules without a ``.py`` file (built in, compiled, frozen into a
    bundle without sources) do not, as ``inspect.getsource`` fails for them too."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return False
    try:
        with open(path, "rb") as source:
            return b"PySide6" in source.read()
    except OSError:
        return False


def stop_keeping_module_sources() -> bool:
    """Replace shiboken's test with :func:`mentions_pyside`; whether it was found (a
    PySide6 without it, older or newer, is left as it is). Call it right after
    importing PySide6, before the rest of the app."""
    for name in _FEATURE_MODULES:
        feature = sys.modules.get(name)
        if feature is not None and callable(getattr(feature, "_mod_uses_pyside", None)):
            feature._mod_uses_pyside = mentions_pyside  # type: ignore[attr-defined]
            return True
    logger.debug("PySide6's import hook has no _mod_uses_pyside; nothing to replace")
    return False
