"""Keep credentials out of every log line.

Browser clients put the access token in the WebSocket URL (``?token=...``), and
uvicorn logs every request path with its query string. ``RedactSecrets`` sits on
every handler (settings.LOGGING, also handed to uvicorn), so whatever logger a
line comes from, the token is replaced before the line is formatted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

# Query parameters that carry credentials: ours (``token``, ``access``, ``refresh``)
# and the OAuth-style names other clients send; also URL-encoded (``%3D``).
_QUERY = re.compile(
    r"(?i)(?:(?<![A-Za-z0-9_])|(?<=%[0-9A-F]{2}))"
    r"(token|access|refresh|access_token|refresh_token|api_key)"
    r"(=|%3D)([^&\s\"'<>]+)"
)
_SECRET_NAMES = frozenset(
    {"token", "access", "refresh", "access_token", "refresh_token", "api_key", "password"}
)
# A parameter whose name is percent-encoded (``tok%65n=``), which the pattern above
# cannot see but a query parser decodes into a credential's name.
_ENCODED_NAME = re.compile(
    r"(?<![A-Za-z0-9_%])((?:[A-Za-z0-9_.+~-]|%[0-9A-Fa-f]{2})*%[0-9A-Fa-f]{2}"
    r"(?:[A-Za-z0-9_.+~-]|%[0-9A-Fa-f]{2})*)(=|%3D)([^&\s\"'<>]+)",
    re.IGNORECASE,
)
# A JWT wherever it appears, under any name and any encoding (base64url survives
# percent-encoding unchanged; a JWT's header and payload are JSON objects, '{"' being
# "eyJ"). No word boundary before it: an encoded "=" ("%3D") runs straight into it.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# An Authorization header value quoted in a message (JWTs, and publish API keys).
_BEARER = re.compile(r"(?i)\b(Bearer|Api-Key|Authorization:\s*Refresh)(\s+)[A-Za-z0-9._~+/=-]+")
# A raw publish API key wherever it appears (backend.notifications.services makes them).
_API_KEY = re.compile(r"\btnk_[A-Za-z0-9_-]{8,}")
# The same names as JSON keys, e.g. a logged request body {"refresh": "..."}.
_JSON = re.compile(
    r"(?i)(\"(?:access|refresh|token|access_token|refresh_token|password)\"\s*:\s*\")[^\"]*(\")"
)


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[redacted]``."""
    if not text:
        return text
    text = _QUERY.sub(rf"\1\2{REDACTED}", text)
    text = _ENCODED_NAME.sub(_redact_encoded_name, text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(rf"\1\2{REDACTED}", text)
    text = _API_KEY.sub(f"tnk_{REDACTED}", text)
    return _JSON.sub(rf"\1{REDACTED}\2", text)


def _redact_encoded_name(match: re.Match[str]) -> str:
    name = match.group(1)
    for _ in range(3):  # double- and triple-encoded names decode to the same
        name = unquote_plus(name)
    if name.strip().lower() in _SECRET_NAMES:
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return match.group(0)


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        # Query strings reach some log calls as raw ASGI bytes.
        return redact(bytes(value).decode("latin-1")).encode("latin-1")
    if value is None or isinstance(value, int | float):
        return value
    # Anything else is formatted by its str(): a WebSocket frame (the library logs the
    # frame objects at DEBUG, credentials inside, ``{"token": "eyJ...c2ln"}`` cut in the
    # middle). Kept as it is unless that text holds a secret.
    text = str(value)
    redacted = redact(text)
    return redacted if redacted != text else value


class RedactSecrets(logging.Filter):
    """A filter that rewrites a record's message, arguments and traceback in place.

    The arguments are redacted one by one rather than merged into the message,
    because formatters such as uvicorn's access formatter unpack ``record.args``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args: Any = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_value(arg) for arg in args)
        elif isinstance(args, Mapping):
            record.args = {key: _redact_value(value) for key, value in args.items()}
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the redacted copy is what is printed.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
