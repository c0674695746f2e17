"""Modules a library imports at import time and only uses on some rare path, imported
when first used instead (issue 20: what the idle tray app holds).

``websockets/version.py`` runs ``import importlib.metadata`` unconditionally, for a
development checkout's version string, which a released websockets never computes:
~0.8 MiB of the idle app's memory and ~5 ms of its start. :func:`defer_import` puts a
stand-in module in ``sys.modules`` that such an ``import`` statement binds without
running the module; the first attribute anyone asks of it imports the real one, which
then takes its place (later importers get the real module).

The standard library's ``importlib.util.LazyLoader`` cannot do this: its lazy module
loads itself on any attribute read, and every ``import`` statement reads ``__spec__``
of a module it finds in ``sys.modules`` (to tell one still initialising).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["DeferredModule", "defer_import"]


class DeferredModule(types.ModuleType):
    """Stands for a module not imported yet; any attribute but a module's own bookkeeping
    imports it (see the module's docstring)."""

    def __getattr__(self, name: str) -> Any:
        # The import system and tools probe modules for dunders (__file__, __loader__):
        # a stand-in has none of those to offer, and must not import for them. __path__
        # is the exception: a submodule's import asks for it, and needs the real one.
        if name.startswith("__") and name.endswith("__") and name != "__path__":
            raise AttributeError(name)
        real = self.load()
        return getattr(real, name)

    def load(self) -> types.ModuleType:
        """The real module, imported now if it is not yet; it replaces the stand-in in
        ``sys.modules`` and on its package, and the stand-in forwards to it."""
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)  # what was read through the stand-in stays valid
        return real


def defer_import(name: str) -> bool:
    """Put a :class:`DeferredModule` for ``name`` in ``sys.modules`` (and on its package);
    whether it did (False when ``name`` is imported already)."""
    if name in sys.modules:
        return False
    package, _, child = name.rpartition(".")
    stand_in = DeferredModule(name)
    sys.modules[name] = stand_in
    if package:
        setattr(importlib.import_module(package), child, stand_in)
    return True
