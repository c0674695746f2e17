"""Per-deployment names in Redis: which doorbell channel and presence keys are ours.

Two deployments may share one redis-server (a throwaway ``--demo`` server next to
production, staging next to live). Pub/sub ignores Redis database numbers, and
user ids of different databases collide, so every channel and key a deployment
uses carries its namespace: what identifies the deployment, hashed.

A deployment is its database plus its signing key. Every process of one
deployment shares both (they must, to read the same rows and accept the same
tokens), so they derive the same namespace without talking to each other; a
second deployment differs in at least one. The key is an HMAC key here, never
part of a name: the namespace shows in Redis to anyone who can list keys, and it
must tell them nothing about ``SECRET_KEY``.

Pure functions (no Django settings, no I/O): ``delivery.current_namespace``
feeds them the settings.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "tray-notifier:"
OVERRIDE_SETTING = "TRAY_REDIS_NAMESPACE"
# Hex digits of the HMAC kept: 64 bits, far past any chance of two deployments meeting.
DERIVED_LENGTH = 16
# Safe in a key name and in a log line; short enough to read.
_OVERRIDE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def override_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``TRAY_REDIS_NAMESPACE`` (None: it can, or it is empty)."""
    if value == "" or _OVERRIDE_PATTERN.fullmatch(value):
        return None
    return (
        f"{OVERRIDE_SETTING} must be 1 to 64 letters, digits, '_', '.' or '-' "
        f"(starting with a letter or digit), got {value!r}"
    )


def database_identity(database: Mapping[str, Any]) -> list[str]:
    """What names a database, from a Django ``DATABASES`` entry: engine, host, port and
    name (for SQLite the file's path). Not the user or password: another login to the
    same database is the same deployment."""
    return [
        str(database.get("ENGINE") or ""),
        str(database.get("HOST") or "").lower(),
        str(database.get("PORT") or ""),
        str(database.get("NAME") or ""),
    ]


def deployment_namespace(
    *, database: Mapping[str, Any], secret_key: str, override: str = ""
) -> str:
    """The deployment's namespace: ``override`` when given, else an HMAC-SHA256 of the
    database's identity keyed with the signing key, as 16 hex digits.

    Args:
        database: the deployment's ``DATABASES["default"]``.
        secret_key: its ``SECRET_KEY``; only ever an HMAC key.
        override: ``TRAY_REDIS_NAMESPACE``; wins when not empty (processes that spell
            one database differently, or a deliberate rename).

    Raises:
        ValueError: ``override`` is not a valid namespace (see ``override_problem``).
    """
    if override:
        problem = override_problem(override)
        if problem:
            raise ValueError(problem)
        return override
    return _derive(tuple(database_identity(database)), secret_key)


# Every doorbell asks (delivery.ring): remembering the few answers a process ever needs
# saves ~20 us of JSON and HMAC per publish.
@functools.lru_cache(maxsize=16)
def _derive(identity: tuple[str, ...], secret_key: str) -> str:
    message = json.dumps(identity, separators=(",", ":")).encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()
    return digest[:DERIVED_LENGTH]


def doorbell_channel(namespace: str) -> str:
    """The pub/sub channel every process of the deployment rings and listens on."""
    return f"{PREFIX}{namespace}:doorbell"


def presence_prefix(namespace: str) -> str:
    """The prefix of every presence key of the deployment (``presence.RedisPresence``)."""
    return f"{PREFIX}{namespace}:presence:"


def cache_prefix(namespace: str) -> str:
    """The key prefix of the deployment's Django cache (rate-limit counters)."""
    return f"{PREFIX}{namespace}:cache"
