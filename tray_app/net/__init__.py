"""Talking to the server: pure protocol functions, the REST client and the socket session.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""

import sys

# httpx's package imports its command-line client (httpx._main: click, rich, pygments)
# whenever those happen to be installed, ~10 MB of an idle app's memory for a tool it
# never runs (encode/httpx#3547). A None entry makes that import raise ImportError,
# which httpx catches (it then defines a main() that explains the CLI is missing);
# typeshed types sys.modules without the None the import system documents.
# The frozen bundle leaves these packages out for the same reason (build.spec).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
