"""The one answer to "which address is this client?".

uvicorn (backend/cli.py) replaces the connection's address with the client
that ``X-Forwarded-For`` names only when the connection comes from a proxy in
``TRAY_FORWARDED_ALLOW_IPS`` (or over the unix socket, whose permissions say
who may connect), and Django reads the result as ``REMOTE_ADDR``. Everything
keyed by client (the login rate limit of the API and of the admin) reads it
here, never the raw header, which anyone who reaches the port can write.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

UNKNOWN = "unknown"


def client_address(request: HttpRequest | Request) -> str:
    """The client's address as the trusted-proxy rule resolved it ("unknown" if none)."""
    return str(request.META.get("REMOTE_ADDR") or UNKNOWN)
