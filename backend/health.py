"""GET /healthz: is the database answering, and is the doorbell (hub / Redis) up."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from backend.notifications import doorbell


def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {type(error).__name__}"
    try:
        checks["channel_layer"] = doorbell.current().health()
    except Exception as error:
        checks["channel_layer"] = f"error: {type(error).__name__}"
    healthy = all(value.startswith("ok") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
