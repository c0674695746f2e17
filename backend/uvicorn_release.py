"""Which uvicorn releases our two shortcuts below ASGI were written and tested against.

``backend/config/publish_protocol.py`` (a fast publish answered by the HTTP
protocol) and ``backend/notifications/wire.py`` (a frame written to the websocket
protocol directly) replicate what uvicorn's own code does with its internals, which
a minor release may change. On any other release the server uses uvicorn's own
paths, so an upgrade can make the server slower, never wrong. Add a release here
once the suite passes on it (tests/backend/notifications/test_publish_route.py and
test_wire.py compare both shortcuts with uvicorn's own paths).
"""

from __future__ import annotations

import uvicorn

TESTED_UVICORN = frozenset({"0.55"})


def internals_tested() -> bool:
    """Whether the installed uvicorn is a release the shortcuts were tested on."""
    return uvicorn.__version__.rsplit(".", 1)[0] in TESTED_UVICORN
