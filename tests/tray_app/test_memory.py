"""``release_freed_memory``: freed heap pages go back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tray_app.memory import release_freed_memory

# In a child process, so that the test's own heap does not blur the figures: 64 MiB of
# 4 KiB blocks (each a malloc below the mmap threshold, so on glibc's heap), then one
# block kept above them, so glibc cannot trim the freed ones from the heap's top by
# itself; then all but that block freed.
_CHILD = """
import sys
from tray_app.memory import release_freed_memory

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

blocks = [bytearray(4096) for _ in range(16384)]
keeper = bytearray(4096)
del blocks
freed = rss_kib()
release_freed_memory()
print(freed, rss_kib(), len(keeper))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_os() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=60
    )
    freed, released, _ = (int(word) for word in result.stdout.split())
    assert freed - released > 32 * 1024, (freed, released)


def test_it_can_be_called_any_time() -> None:
    release_freed_memory()
    release_freed_memory()
