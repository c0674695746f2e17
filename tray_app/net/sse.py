"""Server-Sent Events, decoded incrementally: pure, no I/O.

Follows the WHATWG HTML standard's "Interpreting an event stream" (section 9.2.6):

- a leading U+FEFF (byte order mark) is dropped, once, at the start of the stream;
- lines end in CRLF, LF or CR, and a CRLF split across two chunks is one line end;
- ``data:`` lines are joined with "\\n"; ``id:`` sets the last event id unless its
  value holds NUL; ``retry:`` is taken only when it is ASCII digits; ``event:`` names
  the type; other fields are ignored;
- a line with no ":" is a field name with an empty value; one space after the ":"
  is dropped;
- an event is dispatched at a blank line, and only when it has data;
- a line starting with ":" is a comment. The standard ignores comments; here each one
  is reported as a :class:`Heartbeat`, since servers send them to show the link lives.

The stream at ``/api/stream/`` (docs/protocol.md, "HTTP fallback (Server-Sent
Events)") carries one socket frame per event; :mod:`tray_app.net.stream` reads it.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = ["DEFAULT_MAX_EVENT_CHARS", "Heartbeat", "SseDecoder", "SseEvent", "SseTooLarge"]

_BYTE_ORDER_MARK: Final = "\ufeff"
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
# A line or an event's data longer than this is an error, not a reason to buffer
# without end: the server's frames are at most 64 KiB (hello's max_frame_bytes), and
# the socket side accepts at most 1 MiB.
DEFAULT_MAX_EVENT_CHARS: Final = 2**20
# Python refuses to convert strings of over 4300 digits (int_max_str_digits); a delay
# of 10^18 ms is already forever, so longer values are ignored like other bad ones.
_MAX_RETRY_DIGITS: Final = 18


class SseTooLarge(ValueError):
    """A line or an event's data grew past the decoder's limit."""


class SseEvent(msgspec.Struct, frozen=True):
    """One dispatched event.

    Attributes:
        data: the ``data:`` lines, joined with "\\n".
        event_type: the ``event:`` field, ``"message"`` when there was none.
        last_event_id: the stream's last event id when this event was dispatched
            (the latest ``id:`` so far, in this event or an earlier one).
    """

    data: str
    event_type: str = "message"
    last_event_id: str = ""


class Heartbeat(msgspec.Struct, frozen=True):
    """A comment line (``: ping``): the server is there, though it has nothing to say.

    Attributes:
        comment: the text after the ":".
    """

    comment: str = ""


class SseDecoder:
    """Turns the text of an event stream, in chunks of any size, into events.

    Feed it text (the stream is UTF-8: decode bytes with an incremental decoder so a
    character split between chunks stays whole). Any chunking of the same text gives
    the same events and heartbeats, in the same order.

    Args:
        max_event_chars: the longest line, and the most data one event may gather.

    Attributes:
        last_event_id: the last ``id:`` seen (empty before any).
        retry_ms: the last valid ``retry:`` (milliseconds), or None before any.
    """

    def __init__(self, *, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self._max_chars = max_event_chars
        self._started = False
        self._skip_line_feed = False  # the last chunk ended in CR: a LF next ends no line
        self._pending = ""  # the start of a line whose end has not come yet
        self._data: list[str] = []
        self._data_chars = 0
        self._event_type = ""

    def feed(self, chunk: str) -> list[SseEvent | Heartbeat]:
        """Decode the next piece of the stream.

        Returns:
            The events dispatched and the comments met in ``chunk``, in stream order.

        Raises:
            SseTooLarge: a line or an event's data is longer than ``max_event_chars``.
        """
        if not chunk:
            return []
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(_BYTE_ORDER_MARK)
        if self._skip_line_feed:
            self._skip_line_feed = False
            chunk = chunk.removeprefix("\n")
        text = self._pending + chunk if self._pending else chunk
        found: list[SseEvent | Heartbeat] = []
        start = 0
        for line_end in _LINE_END.finditer(text):
            self._line(text[start : line_end.start()], found)
            start = line_end.end()
        if text.endswith("\r"):
            # A CR closes its line at once; a LF opening the next chunk belongs to it.
            self._skip_line_feed = True
        self._pending = text[start:]
        if len(self._pending) > self._max_chars:
            raise SseTooLarge(f"an event stream line passed {self._max_chars} characters")
        return found

    def _line(self, line: str, found: list[SseEvent | Heartbeat]) -> None:
        if not line:
            self._dispatch(found)
            return
        if line.startswith(":"):
            found.append(Heartbeat(line[1:].removeprefix(" ")))
            return
        field, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        match field:
            case "data":
                self._data_chars += len(value) + 1
                if self._data_chars > self._max_chars:
                    raise SseTooLarge(f"an event's data passed {self._max_chars} characters")
                self._data.append(value)
            case "id" if "\0" not in value:
                self.last_event_id = value
            case "retry" if value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                self.retry_ms = int(value)
            case "event":
                self._event_type = value
            case _:
                pass  # unknown fields are ignored, as the standard says

    def _dispatch(self, found: list[SseEvent | Heartbeat]) -> None:
        data, event_type = self._data, self._event_type
        self._data, self._data_chars, self._event_type = [], 0, ""
        if data:
            found.append(SseEvent("\n".join(data), event_type or "message", self.last_event_id))
