"""A server-to-client text frame written to uvicorn's websockets-sansio protocol directly.

A frame sent through the ASGI layers costs a coroutine per layer: Channels'
``AsyncWebsocketConsumer.send`` and ``AsyncConsumer.send``, uvicorn's
``WebSocketsSansIOProtocol.send`` and its ``writable.wait()``, stepped by
``eager.step_eagerly``. A broadcast pays them once per recipient on the event loop,
and its last recipient waits for all of them (B3's tail, B4's ceiling).

``text_writer`` recognises the ASGI ``send`` uvicorn hands the application when it
is exactly ``WebSocketsSansIOProtocol.send`` bound to its protocol (nothing wrapped
around it, not overridden by a subclass), and returns a function doing what that
``send`` does for ``{"type": "websocket.send", "text": ...}`` once the handshake is
done: one ``transport.write`` of the frame (its header built here when the
connection is open with no extension and nothing queued, else ``conn.send_text`` and
``conn.data_to_send()``: permessage-deflate is applied by the websockets connection
object, so it stays).
Any other state (the transport paused, the client gone, before the handshake,
after a close, an HTTP rejection answer) is left to the ASGI send: the function
returns False and the caller sends that frame the ordinary way, which waits,
raises or refuses exactly as uvicorn does. Anything else (another server, another
uvicorn implementation, a wrapped send) gets no writer at all.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Protocol

from uvicorn.protocols.utils import ClientDisconnected
from websockets.exceptions import InvalidState
from websockets.protocol import State

from backend.notifications.protocol import unread_count_frame
from backend.uvicorn_release import internals_tested

logger = logging.getLogger(__name__)


class TextWriter(Protocol):
    """Writes a text frame, and with ``count`` an ``unread_count`` frame after it in the
    same transport write; False: nothing written, send them through the ASGI send."""

    def __call__(self, text: str, count: int | None = None, /) -> bool: ...


# Framed unread_count frames by count: one follows every notification sent at once, and
# the counts in play are few (each user's own), so each is built once.
_count_frames: dict[int, bytes] = {}
_COUNT_FRAMES_KEPT = 4096


def count_frame_bytes(count: int) -> bytes:
    """``protocol.unread_count_frame(count)`` as a final text frame, header included."""
    framed = _count_frames.get(count)
    if framed is None:
        data = unread_count_frame(count).encode()
        framed = text_frame_header(len(data)) + data
        if len(_count_frames) >= _COUNT_FRAMES_KEPT:
            _count_frames.clear()
        _count_frames[count] = framed
    return framed


try:  # uvicorn releases before 0.35 have no sans-I/O implementation
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol as _SansIO,
    )
except ImportError:  # pragma: no cover - the pinned uvicorn has it
    _SANSIO_SEND: Any = None
else:
    _SANSIO_SEND = _SansIO.send


def text_writer(send: Any) -> TextWriter | None:
    """A direct writer of text frames for ``send``, or None to use ``send`` itself.

    Args:
        send: The ASGI send callable the application was given.

    Returns:
        A function that writes a text frame as ``send`` would and returns True, or
        returns False (writing nothing) when ``send`` must handle that frame; None
        when ``send`` is not uvicorn's websockets-sansio ``send``, unwrapped.
    """
    if _SANSIO_SEND is None or getattr(send, "__func__", None) is not _SANSIO_SEND:
        return None
    if not internals_tested():  # another uvicorn release: its own send
        return None
    protocol = send.__self__
    conn = getattr(protocol, "conn", None)
    writable = getattr(protocol, "writable", None)
    if conn is None or writable is None or not hasattr(protocol, "transport"):
        return None

    def write_text(text: str, count: int | None = None) -> bool:
        # uvicorn's send: ``await self.writable.wait()`` (which suspends while the
        # transport is paused), ``disconnected`` raises, then the branch for a
        # handshake done with no HTTP answer and no close sent. Anything else: False.
        if (
            not writable.is_set()
            or protocol.disconnected
            or not protocol.handshake_complete
            or protocol.initial_response is not None
            or protocol.close_sent
        ):
            return False
        data = text.encode()
        if (
            conn.state is _OPEN
            and not conn.extensions
            and not conn.writes
            and not conn.expect_continuation_frame
            and not conn.debug
        ):
            # What conn.send_text would write (an unmasked final text frame; no
            # extension to apply, nothing queued before it), without its Frame object,
            # its checks and its buffer: a third of a delivery's Python. The header is
            # text_frame_header's, inline (a call less per delivery).
            length = len(data)
            if length < 126:
                framed = _SHORT_HEADERS[length] + data
            elif length < 65536:
                framed = _medium_header(_FIN_TEXT, 126, length) + data
            else:
                framed = text_frame_header(length) + data
            if count is not None:
                framed += count_frame_bytes(count)
            protocol.transport.write(framed)
            return True
        try:
            conn.send_text(data)
            if count is not None:
                conn.send_text(unread_count_frame(count).encode())
            output = conn.data_to_send()
            protocol.transport.write(b"".join(output))
        except InvalidState:
            raise ClientDisconnected() from None
        return True

    return write_text


def text_frame_header(length: int) -> bytes:
    """The header of a final, unmasked text frame of ``length`` payload bytes (RFC 6455
    5.2), as websockets' ``Frame.serialize`` writes it for a server."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 65536:
        return _medium_header(_FIN_TEXT, 126, length)
    return struct.pack("!BBQ", _FIN_TEXT, 127, length)


_FIN_TEXT = 0x81  # FIN, no RSV bits, opcode 1 (text)
_medium_header = struct.Struct("!BBH").pack
_OPEN = State.OPEN
_SHORT_HEADERS = [bytes((_FIN_TEXT, length)) for length in range(126)]
