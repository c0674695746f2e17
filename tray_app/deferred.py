"""Modules a library imports at import time and only uses on some rare path, imported
when first used instead (issue 20: what the idle tray app holds).

:data:`RARELY_USED` names them, each with the library that imports it and why the app
never needs it: ~1.3 MiB of the idle app's memory and a few ms of its start together.
:func:`defer_import` puts a stand-in module in ``sys.modules`` that such an ``import``
statement binds without running the module; the first attribute anyone asks of it
imports the real one, which then takes its place (later importers get the real module).
So nothing breaks if some path does use one: it pays the import then.

The standard library's ``importlib.util.LazyLoader`` cannot do this: its lazy module
loads itself on any attribute read, and every ``import`` statement reads ``__spec__``
of a module it finds in ``sys.modules`` (to tell one still initialising).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Final

__all__ = ["RARELY_USED", "DeferredModule", "defer_import", "defer_rarely_used_modules"]

RARELY_USED: Final = {
    # websockets/version.py, for the version string of a development checkout, which a
    # released websockets never computes (~0.8 MiB: importlib.metadata, zipfile, csv).
    "importlib.metadata": "websockets",
    # logging.handlers, for SocketHandler's wire format; the app logs to a file (~0.25 MiB).
    "pickle": "logging.handlers",
    # httpx, to name the type of an uploaded file; the app uploads none (~0.08 MiB).
    "mimetypes": "httpx",
    # httpcore, for the CA file of its default TLS context; the app always hands in its
    # own (the system's trust store through truststore), ~0.18 MiB with
    # importlib.resources.
    "certifi": "httpcore",
}


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


def defer_rarely_used_modules() -> list[str]:
    """:func:`defer_import` each of :data:`RARELY_USED` not imported yet; which were.
    The app's processes call it first thing (tests and tools importing the app's
    modules are left as they are)."""
    return [name for name in RARELY_USED if defer_import(name)]
