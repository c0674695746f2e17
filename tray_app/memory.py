"""Giving memory back: what a closed window or a finished catch-up freed goes back to the
operating system, so the app's resident size returns to its idle figure (issue 20).

CPython frees objects into its own arenas and the C allocator's heap; glibc keeps freed
pages mapped until ``malloc_trim`` asks it to return them. Elsewhere (macOS, Windows,
musl) the allocator returns memory on its own terms and this only collects garbage.
"""

from __future__ import annotations

import gc
import logging
import sys

logger = logging.getLogger(__name__)


def release_freed_memory() -> None:
    """Collect garbage, then hand freed heap pages back to the OS where glibc holds them.

    Cheap enough to call after a window closes or a catch-up ends (a few milliseconds);
    not meant for a hot path.
    """
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    # Imported here: ctypes is not otherwise needed by a running app.
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
