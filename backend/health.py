"""GET /healthz: is the database answering, and is the doorbell (hub / Redis) up."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {type(error).__name__}"
    if settings.REDIS_URL:
        try:
            from backend.notifications.delivery import _redis

            _redis().ping()
            checks["channel_layer"] = "ok (redis)"
        except Exception as error:
            checks["channel_layer"] = f"error: {type(error).__name__}"
    else:
        checks["channel_layer"] = "ok (in-process)"
    healthy = all(value.startswith("ok") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
