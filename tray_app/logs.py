"""Where the desktop app logs: the platform's log directory, rotated, tokens redacted.

Nothing in the app logs notification text (the code logs ids, seqs and error codes);
this module adds the second line of defence: every record passes through the same
redaction as the network errors, so a token that slipped into a message is masked.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from tray_app import app_dirs
from tray_app.config import APP_NAME
from tray_app.net.redaction import redact

LOG_FILE_BYTES = 1_000_000
LOG_BACKUPS = 5
# Libraries that log frames, requests or toast contents at DEBUG/INFO: even a debug run
# of the app must not write notification text or tokens, so they stay at WARNING.
CHATTY_LIBRARIES = ("websockets", "desktop_notifier", "httpx", "httpcore", "dbus_fast", "qasync")


def log_dir() -> Path:
    """``TRAY_NOTIFIER_LOG_DIR``, or the platform's log directory for the app."""
    return Path(os.environ.get("TRAY_NOTIFIER_LOG_DIR") or app_dirs.user_log_dir(APP_NAME))


class RedactingFilter(logging.Filter):
    """Masks tokens in the formatted message (arguments and tracebacks included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        return True


def configure_logging(level: str = "INFO", *, directory: Path | None = None) -> Path:
    """Log to a rotating file (and stderr for warnings); returns the file's path."""
    folder = directory or log_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "tray-notifier.log"
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("tray-notifier: %(levelname)s %(message)s"))
    root = logging.getLogger()
    for handler in (file_handler, console):
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return path
