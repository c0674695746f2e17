"""Where the app keeps its files, and the few settings that are not secrets.

Secrets never come here: the refresh token lives in the OS keyring
(:mod:`tray_app.store.secrets`). This file holds the server address, the last
username and retention; a damaged file is reported and replaced by defaults,
never a crash.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import msgspec

from tray_app import app_dirs
from tray_app.files import write_atomically

logger = logging.getLogger(__name__)

APP_NAME = "tray-notifier"
DEFAULT_SERVER_URL = "http://127.0.0.1:8000"


def data_dir() -> Path:
    """Per-user data: one SQLite file per account. ``TRAY_NOTIFIER_DATA_DIR`` overrides."""
    return Path(os.environ.get("TRAY_NOTIFIER_DATA_DIR") or app_dirs.user_data_dir(APP_NAME))


def config_dir() -> Path:
    """Per-user settings. ``TRAY_NOTIFIER_CONFIG_DIR`` overrides."""
    return Path(os.environ.get("TRAY_NOTIFIER_CONFIG_DIR") or app_dirs.user_config_dir(APP_NAME))


class Settings(msgspec.Struct):
    """What the user (or IT) chose. Every field has a safe default."""

    server_url: str = DEFAULT_SERVER_URL
    username: str = ""
    retention_days: int = 365
    retention_rows: int = 100_000

    @classmethod
    def load(cls, directory: Path | None = None) -> Settings:
        path = (directory or config_dir()) / "settings.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable settings in %s (%s)", path, type(error).__name__)
            return cls()
        if not isinstance(raw, dict):
            logger.warning("ignoring settings in %s: not a JSON object", path)
            return cls()
        settings = cls()
        for name in cls.__struct_fields__:
            value = raw.get(name)
            default = getattr(settings, name)
            if isinstance(value, type(default)) and not isinstance(value, bool):
                setattr(settings, name, value)
            elif value is not None:
                logger.warning("ignoring setting %s in %s: wrong type", name, path)
        return settings

    def save(self, directory: Path | None = None) -> None:
        folder = directory or config_dir()
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        write_atomically(folder / "settings.json", text.encode("utf-8"))

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
