"""Files the app writes whole: settings, preferences, autostart entries.

One way to replace a file: a crash or a full disk leaves the old file or the new
one, never half of one (the new content is flushed to disk before the rename), and
the temporary file has a name of its own, so two processes writing the same file
(the tray app and a second start, headless mode) never write into one temporary.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path``'s content with ``data``; its folder is created (0o700) if missing.

    Args:
        path: The file to replace.
        data: Its new content.
        mode: The new file's permissions (autostart entries are read by the desktop:
            0o644).

    Raises:
        OSError: The folder or the file could not be written; the old file is intact
            and no temporary file is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
