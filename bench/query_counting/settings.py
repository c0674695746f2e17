"""The product's settings, counting every database statement (see the package docstring)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from django.db.backends.signals import connection_created

from backend.config.settings import *  # noqa: F403 - the product's settings, unchanged

ROOT_URLCONF = "bench.query_counting.urls"

# next() on itertools.count is atomic under the GIL, and database work runs in threads.
_statements = itertools.count()
_counted = [0]


def statements() -> int:
    """How many statements every connection of this process has run."""
    return _counted[0]


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    _counted[0] = next(_statements) + 1
    return execute(sql, params, many, context)


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    # The wrapper list belongs to the thread's connection handler, which outlives
    # the database connections it opens: install once.
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_install, weak=False)
