"""The one exception base of ``tray_app.store``."""

from __future__ import annotations


class StoreError(Exception):
    """Something the local store cannot do. The message is plain words, fit to show a user.

    Messages never carry notification content (titles, messages), so they are safe to log.
    """
