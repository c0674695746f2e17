"""The product's settings, counting every database statement (see the package docstring)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from django.db.backends.signals import connection_created

from backend.config.settings import *  # noqa: F403 - the product's settings, unchanged
from bench.query_counting.settle import settle_share

ROOT_URLCONF = "bench.query_counting.urls"

# next() on itertools.count is atomic under the GIL, and database work runs in threads.
_statements = itertools.count()
_counted = [0]
# Of those, the ones that wrote pending Inbox rows (backend/notifications/inbox_log.py's
# settle: its BEGIN, INSERT ... SELECT from the records and DELETE of the records). Only
# the thread that holds a connection runs its statements, so "the previous statement"
# is per thread.
_settle = [0]
_previous = threading.local()


def statements() -> int:
    """How many statements every connection of this process has run."""
    return _counted[0]


def settle_statements() -> int:
    """How many of them wrote rows that publishes left pending (inbox_log's settle)."""
    return _settle[0]


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    _counted[0] = next(_statements) + 1
    _settle[0] += settle_share(sql, getattr(_previous, "sql", ""))
    _previous.sql = sql
    return execute(sql, params, many, context)


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    # The wrapper list belongs to the thread's connection handler, which outlives
    # the database connections it opens: install once.
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_install, weak=False)
