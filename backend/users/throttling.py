"""The login rate limit: one budget per client address for every way a password is checked.

The API's login (``POST /api/auth/token/``) and the admin's login form spend
the same budget (REST_FRAMEWORK's ``login`` rate, ``TRAY_LOGIN_RATE``), keyed
by ``client_address``, and both check it before any password is hashed.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request

from backend.client_address import client_address
from backend.throttling import SharedCounterThrottle


class LoginRateThrottle(SharedCounterThrottle):
    scope = "login"

    def get_cache_key(self, request: Request | HttpRequest, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


def login_attempt_allowed(request: HttpRequest) -> float | None:
    """Spend one login attempt of ``request``'s client: None when allowed, else the
    seconds to wait before the next one."""
    throttle = LoginRateThrottle()
    if throttle.allow_request(request, None):  # type: ignore[arg-type]
        return None
    return throttle.wait() or 1.0
