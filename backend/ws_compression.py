"""permessage-deflate (RFC 7692) on the server's WebSockets: off, the library's defaults, or tuned.

``TRAY_WS_COMPRESSION`` (``settings.TRAY["WS_COMPRESSION"]``) picks one of
``COMPRESSION_CHOICES``; ``backend/cli.py`` hands uvicorn what
``uvicorn_ws_options`` returns. Only clients that offer the extension get it:
the tray app does not (``tray_app/net/live.py``), browsers always do.

- ``off``: no extension; every frame goes out as it is.
- ``default``: what uvicorn enables with ``ws_per_message_deflate=True``, which
  is websockets' own default (``enable_server_permessage_deflate``: 12-bit
  windows both ways, ``memLevel`` 5, context kept between messages). Each socket
  keeps a compressor and a decompressor alive for its whole life.
- ``tuned``: ``TUNED_EXTENSION``: no context takeover either way, so zlib's
  state exists only while a message is being compressed or decompressed and an
  idle socket holds none; 11-bit windows and ``memLevel`` 4 keep that
  transient state small. Each message is compressed on its own, so repeated
  JSON keys across messages are not shared: fewer bytes saved than ``default``
  (bench/compression.py, B7, measures all three; docs/performance.md has the
  numbers behind the choice of ``SHIPPED_COMPRESSION``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container
from typing import Any, Final

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

COMPRESSION_CHOICES: Final = ("off", "default", "tuned")
# The value used when TRAY_WS_COMPRESSION is unset; B7 chose it (docs/performance.md).
SHIPPED_COMPRESSION: Final = "off"
# uvicorn's implementation whose protocol class takes a websockets extension list.
SANSIO: Final = "websockets-sansio"
LEGACY: Final = "websockets"

TUNED_PARAMETERS: Final[dict[str, Any]] = {
    "server_no_context_takeover": True,
    "client_no_context_takeover": True,
    "server_max_window_bits": 11,
    "client_max_window_bits": 11,
    "compress_settings": {"memLevel": 4},
}
# Stateless (each socket's negotiation builds its own PerMessageDeflate), so one is shared.
TUNED_EXTENSION: Final = ServerPerMessageDeflateFactory(**TUNED_PARAMETERS)

_logger = logging.getLogger(__name__)


def uvicorn_ws_options(
    compression: str, available: Container[str]
) -> tuple[str | type[asyncio.Protocol], bool]:
    """The ``ws`` and ``ws_per_message_deflate`` arguments of ``uvicorn.Config``.

    Args:
        compression: One of ``COMPRESSION_CHOICES``.
        available: The names of uvicorn's WebSocket implementations
            (``uvicorn.config.WS_PROTOCOLS``).

    Returns:
        The implementation (a name, or for ``tuned`` a protocol class) and
        whether uvicorn should enable its own permessage-deflate.

    Raises:
        ValueError: ``compression`` is not one of ``COMPRESSION_CHOICES``.
    """
    if compression not in COMPRESSION_CHOICES:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSION_CHOICES)}, not {compression!r}"
        )
    if SANSIO not in available:
        # Older uvicorn releases only have the legacy implementation, which takes no
        # extension list: it can do off or the defaults, not the tuned parameters.
        if compression == "tuned":
            _logger.warning(
                "TRAY_WS_COMPRESSION=tuned needs uvicorn's %s implementation; "
                "using the library's default compression",
                SANSIO,
            )
        return LEGACY, compression != "off"
    if compression == "tuned":
        return tuned_protocol_class(), False
    return SANSIO, compression == "default"


def tuned_protocol_class() -> type[asyncio.Protocol]:
    """uvicorn's websockets-sansio protocol offering ``TUNED_EXTENSION`` instead of none."""
    # Imported here: older uvicorn releases have no such module (see uvicorn_ws_options).
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class TunedCompressionProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # uvicorn built its websockets ServerProtocol with no extension
            # (ws_per_message_deflate=False); the handshake has not started yet, so
            # the extensions it may negotiate can still be set.
            self.conn.available_extensions = [TUNED_EXTENSION]

    return TunedCompressionProtocol
