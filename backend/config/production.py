"""Production mode (``TRAY_ENV=production``): what it demands of the environment.

The embedded default runs with no variable at all: it generates its signing key,
answers to any host name and trusts whatever it is told. A server that faces a
company network behind a reverse proxy must not guess those, so production mode
refuses to start until the administrator has said them. Each problem is one
sentence that names its variable and says how to fix it; the settings module
turns them into one ``ImproperlyConfigured`` line, which the command line prints
without a traceback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

# The variable that switches production mode on, and its values.
MODE_VARIABLE = "TRAY_ENV"
DEVELOPMENT = "development"
PRODUCTION = "production"
MODES = (DEVELOPMENT, PRODUCTION)

# Django's own deployment check (security.W009) asks for 50 characters, 5 of them distinct.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_DISTINCT = 5
MAKE_SECRET_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"

# Loopback in both families: the reverse proxy on the same machine, and what uvicorn
# trusts by default, so the embedded default keeps its behaviour.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"

_TRUE = {"1", "true", "yes", "on"}


def secret_key_problem(value: str | None) -> str | None:
    """Why ``value`` cannot sign tokens in production, or None if it can."""
    how = f"make one with: {MAKE_SECRET_KEY}"
    if not value or not value.strip():
        return (
            f"DJANGO_SECRET_KEY is not set; {MODE_VARIABLE}={PRODUCTION} needs a random key of "
            f"at least {MIN_SECRET_KEY_LENGTH} characters, the same on every process ({how})"
        )
    if len(value) < MIN_SECRET_KEY_LENGTH or len(set(value)) < MIN_SECRET_KEY_DISTINCT:
        return (
            f"DJANGO_SECRET_KEY is too short or too plain ({len(value)} characters); "
            f"{MODE_VARIABLE}={PRODUCTION} needs a random key of at least "
            f"{MIN_SECRET_KEY_LENGTH} characters ({how})"
        )
    return None


def allowed_hosts_problem(value: str | None) -> str | None:
    """Why ``TRAY_ALLOWED_HOSTS`` = ``value`` is unfit for production, or None."""
    hosts = [item.strip() for item in (value or "").split(",") if item.strip()]
    if not hosts:
        return (
            f"TRAY_ALLOWED_HOSTS is not set; {MODE_VARIABLE}={PRODUCTION} needs the host names "
            "clients use to reach the server, comma-separated (e.g. notify.example.com)"
        )
    if "*" in hosts:
        return (
            f"TRAY_ALLOWED_HOSTS must not be '*' with {MODE_VARIABLE}={PRODUCTION}; list the "
            "host names clients use to reach the server (e.g. notify.example.com)"
        )
    return None


def debug_problem(value: str | None) -> str | None:
    """Why ``TRAY_DEBUG`` = ``value`` is refused in production, or None."""
    if value is not None and value.strip().lower() in _TRUE:
        return (
            f"TRAY_DEBUG must be off with {MODE_VARIABLE}={PRODUCTION}: debug pages show "
            "settings and source code to anyone; unset it"
        )
    return None


def forwarded_allow_ips_problem(value: str | None) -> str | None:
    """Why ``TRAY_FORWARDED_ALLOW_IPS`` = ``value`` is not a list of addresses, or None.

    Checked in every mode: uvicorn would take a mistyped address for a literal that
    never matches, and the server would then silently ignore its proxy.
    """
    if value is None or not value.strip():
        return None
    for item in (part.strip() for part in value.split(",")):
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return (
                f"TRAY_FORWARDED_ALLOW_IPS must list IP addresses or networks of the reverse "
                f"proxy (e.g. 127.0.0.1,10.0.0.0/8), got {item!r}"
            )
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def metrics_allow_networks(value: str | None) -> tuple[Network, ...]:
    """The networks ``TRAY_METRICS_ALLOW`` lists (an address is a network of one); empty
    when unset. Raises ValueError naming the variable and the first bad entry."""
    networks: list[Network] = []
    for item in (part.strip() for part in (value or "").split(",")):
        if not item:
            continue
        try:
            # strict=False: 10.1.2.3/8 means the /8 it lies in (a typo'd host part).
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                "TRAY_METRICS_ALLOW must list the IP addresses or networks allowed to "
                f"scrape /metrics (e.g. 10.0.0.0/8,::1), got {item!r}"
            ) from None
    return tuple(networks)


def metrics_allow_problem(value: str | None) -> str | None:
    """Why ``TRAY_METRICS_ALLOW`` = ``value`` cannot be read, or None. Checked in every
    mode: a mistyped network would refuse every scrape, or allow one it should not."""
    try:
        metrics_allow_networks(value)
    except ValueError as error:
        return str(error)
    return None


def demo_problem(demo: bool) -> str | None:
    """Why ``serve --demo`` is refused in production, or None.

    The demo seeds a staff user ``admin`` whose password is ``demo``, printed on start:
    on a server others can reach, that is an open door to the admin.
    """
    if demo:
        return (
            f"--demo must not be used with {MODE_VARIABLE}={PRODUCTION}: it creates the staff "
            "user admin with the password demo; create accounts with `tray-notifier-server "
            f"manage createsuperuser`, or unset {MODE_VARIABLE} for a demo"
        )
    return None


MIN_METRICS_TOKEN_LENGTH = 32
MAKE_METRICS_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def metrics_token_problem(value: str | None) -> str | None:
    """Why ``TRAY_METRICS_TOKEN`` = ``value`` is too weak for production, or None (unset:
    the metrics are off)."""
    token = (value or "").strip()
    if token and (len(token) < MIN_METRICS_TOKEN_LENGTH or len(set(token)) < 5):
        return (
            f"TRAY_METRICS_TOKEN is too short or too plain ({len(token)} characters); "
            f"{MODE_VARIABLE}={PRODUCTION} needs a random token of at least "
            f"{MIN_METRICS_TOKEN_LENGTH} characters (make one with: {MAKE_METRICS_TOKEN}), "
            "or unset it to turn the metrics off"
        )
    return None


def production_problems(environ: Mapping[str, str]) -> list[str]:
    """Every reason the environment cannot run in production mode, in a stable order."""
    problems = [
        secret_key_problem(environ.get("DJANGO_SECRET_KEY")),
        allowed_hosts_problem(environ.get("TRAY_ALLOWED_HOSTS")),
        debug_problem(environ.get("TRAY_DEBUG")),
        metrics_token_problem(environ.get("TRAY_METRICS_TOKEN")),
    ]
    return [problem for problem in problems if problem is not None]
