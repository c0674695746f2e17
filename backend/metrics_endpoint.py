"""GET /metrics: this process's metrics (backend/metrics.py) in the Prometheus text format.

Off (404) unless ``TRAY_METRICS_TOKEN`` is set; then only a request with
``Authorization: Bearer <that token>`` is answered, the token compared in constant
time; any other gets 401 in the REST API's error shape. docs/deployment.md, "Metrics".
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from backend import metrics

_SCHEME = "bearer"


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message}},
        status=status,
        json_dumps_params={"separators": (",", ":")},
    )


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries exactly ``Bearer <token>`` (constant time)."""
    if not authorization or not token:
        return False
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return False
    return hmac.compare_digest(credential.strip().encode(), token.encode())


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token: str = settings.TRAY_METRICS_TOKEN
    if not token:
        return _error(404, "not_found", "Metrics are off: set TRAY_METRICS_TOKEN to turn them on.")
    if not bearer_matches(request.headers.get("Authorization"), token):
        response = _error(
            401,
            "not_authenticated",
            "Send Authorization: Bearer with the server's TRAY_METRICS_TOKEN.",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    exposition = HttpResponse(
        generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4
    )
    exposition["Cache-Control"] = "no-store"
    return exposition
