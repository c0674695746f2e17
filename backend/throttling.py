"""Rate-limit counters: one count per deployment, and still counting when Redis is away.

In scale mode Django's cache is Redis (settings.CACHES, under the deployment's
namespace), so a guesser spread over every process of a deployment spends one
budget, not one per process. If Redis cannot be reached, a throttle counts in
this process's memory until it can: limits keep holding, per process, and a
Redis outage never turns logins into server errors.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

_local = LocMemCache("tray-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
# Whether the shared cache failed last time: the log says so once per outage, not once
# per request (a benign race may say it twice).
_failing = False


class SharedCounterThrottle(SimpleRateThrottle):
    """A DRF throttle whose counts fall back to process memory when the cache fails."""

    def allow_request(self, request: Request, view: Any) -> bool:
        global _failing
        try:
            allowed = super().allow_request(request, view)
        except Exception as error:  # the shared cache's client raises its own errors
            if self.cache is _local:
                raise
            if not _failing:
                _failing = True
                logger.warning("rate-limit counts are per process while the cache fails: %s", error)
            self.cache = _local
            return super().allow_request(request, view)
        if _failing and self.cache is not _local:
            _failing = False
            logger.info("rate-limit counts are shared again")
        return allowed
