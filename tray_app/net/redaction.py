"""Masking tokens and passwords in text bound for a log or the user's eyes.

Its own module, importing nothing else, so that logging can be set up before the
network stack is loaded (issue 20: the tray icon first).
"""

from __future__ import annotations

import re

# A JWT is three base64url segments; its header always starts with "eyJ" ('{"').
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
_BEARER = re.compile(r"(?i)\b(bearer|authorization:\s*refresh)\s+\S+")
_SECRET_PARAM = re.compile(r"(?i)\b(token|access|refresh|password)=[^&\s\"']*")


def redact(text: str) -> str:
    """``text`` with anything that looks like a token or a password replaced by ``***``."""
    text = _JWT.sub("***", text)
    text = _BEARER.sub(r"\1 ***", text)
    return _SECRET_PARAM.sub(r"\1=***", text)
