"""``TRAY_LOG_FORMAT=json``: one JSON object per line, for log collectors.

Each line has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and
``message``, then ``request_id`` or ``socket_id``, ``user_id`` and ``api_key`` where
known (backend/log_context.py; a line about another socket carries that socket's,
``log_context.about_socket``), and ``exc_info`` (the traceback as one string) when there
is one. The handler's ``RedactSecrets`` filter (backend/logging_filters.py) runs
before this formatter, exactly as for the human format, so the message, its
arguments and the traceback are already redacted here.

Written on the standard library: the fields come from context variables and the
record, and python-json-logger would have needed the same code around it for
those and the redaction, plus one more dependency in the frozen server.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from backend import log_context
from backend.logging_filters import redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        about: dict[str, object] | None = getattr(record, log_context.RECORD_IDS, None)
        entry.update(log_context.current() if about is None else about)
        if record.exc_info and not record.exc_text:
            # Only without the handler's filter, which sets exc_text itself.
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        # ensure_ascii: one line whatever the message holds (no raw U+2028 and the like).
        return json.dumps(entry, default=str)
