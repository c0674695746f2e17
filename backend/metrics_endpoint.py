"""GET /metrics: this process's metrics (backend/metrics.py) in the Prometheus text format.

Off (404) unless ``TRAY_METRICS_TOKEN`` is set; then only a request with
``Authorization: Bearer <that token>`` is answered, the token compared in constant
time; any other gets 401 in the REST API's error shape. With ``TRAY_METRICS_ALLOW``
the client's address (backend/client_address.py, so a trusted proxy's
``X-Forwarded-For`` counts and nobody else's) must be in one of its networks too, or
the answer is 403, whatever the token. docs/deployment.md, "Metrics".
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from backend import metrics
from backend.client_address import client_address
from backend.config.production import Network

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


def address_allowed(address: str, networks: Sequence[Network]) -> bool:
    """Whether ``address`` lies in one of ``networks``; any address when there are none.

    An IPv4 client seen on a dual-stack socket (``::ffff:10.1.2.3``) is matched as the
    IPv4 address it is. Anything that is not an address (``unknown``: a unix socket with
    no proxy header) is refused when there are networks.
    """
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in network or (mapped is not None and mapped in network) for network in networks)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token: str = settings.TRAY_METRICS_TOKEN
    if not token:
        return _error(404, "not_found", "Metrics are off: set TRAY_METRICS_TOKEN to turn them on.")
    address = client_address(request)
    if not address_allowed(address, settings.TRAY_METRICS_ALLOW):
        # Before the token: from elsewhere a guess is not even compared.
        return _error(
            403,
            "address_not_allowed",
            f"Scrapes from {address} are refused: the address is not in TRAY_METRICS_ALLOW.",
        )
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
