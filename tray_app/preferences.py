"""What the user chose about being disturbed, and what IT pre-set.

:class:`Preferences` is persisted as ``preferences.json`` in the config
directory (:func:`tray_app.config.config_dir`). A damaged file, or a field of
the wrong type, is logged and replaced by the default: the app always starts.

:func:`managed_settings` reads the read-only file IT ships with the package
(``/etc/xdg/tray-notifier/managed.json`` on Linux); it can fix the server
address, which the login dialog then shows locked.

No Qt here: the settings dialog edits a copy and the app saves it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from tray_app.config import APP_NAME

logger = logging.getLogger(__name__)

__all__ = [
    "MANAGED_FILE_ENV",
    "PREFERENCES_FILE",
    "ManagedSettings",
    "Preferences",
    "managed_settings",
    "managed_settings_path",
]

PREFERENCES_FILE = "preferences.json"
MANAGED_FILE_ENV = "TRAY_NOTIFIER_MANAGED_FILE"
_TIME_FORMAT = "%H:%M"


@dataclass
class Preferences:
    """The user's notification preferences. Every field has a safe default.

    Attributes:
        toasts_enabled: show a pop-up for new notifications.
        sound: play the system's sound with a pop-up.
        quiet_hours: ``(start, end)`` local wall-clock times without pop-ups;
            may wrap midnight (``22:00`` to ``07:00``). ``None``: no quiet hours.
        muted_projects: project ids whose notifications never pop up (they are
            still counted and stored).
        dnd_until: do not disturb until this aware UTC instant; ``None``: off.
        start_at_login: start the app when the user logs in to the desktop.
        remember_me: keep the login in the OS keyring.
    """

    toasts_enabled: bool = True
    sound: bool = True
    quiet_hours: tuple[time, time] | None = None
    muted_projects: frozenset[int] = field(default_factory=frozenset)
    dnd_until: datetime | None = None
    start_at_login: bool = False
    remember_me: bool = True

    def __post_init__(self) -> None:
        if self.dnd_until is not None:
            if self.dnd_until.utcoffset() is None:
                raise ValueError("dnd_until must be timezone-aware")
            self.dnd_until = self.dnd_until.astimezone(UTC)
        self.muted_projects = frozenset(self.muted_projects)

    @classmethod
    def load(cls, directory: Path) -> Preferences:
        """The preferences saved in ``directory``, or the defaults.

        A missing file gives the defaults silently; an unreadable or damaged one
        gives the defaults and a warning; a field of the wrong type falls back to
        its default (with a warning) and keeps the others.

        Args:
            directory: the config directory holding ``preferences.json``.

        Returns:
            The loaded preferences; never raises for bad content.
        """
        path = directory / PREFERENCES_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable preferences in %s (%s)", path, type(error).__name__)
            return cls()
        if not isinstance(raw, dict):
            logger.warning("ignoring preferences in %s: not a JSON object", path)
            return cls()
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in raw:
                continue
            try:
                values[spec.name] = _DECODERS[spec.name](raw[spec.name])
            except (TypeError, ValueError) as error:
                logger.warning("ignoring preference %s in %s: %s", spec.name, path, error)
        return cls(**values)

    def save(self, directory: Path) -> None:
        """Write ``preferences.json`` into ``directory`` atomically.

        A crash mid-write leaves either the old file or the new one, never half of
        one.

        Args:
            directory: the config directory; created (mode 0700) if missing.

        Raises:
            OSError: the directory or file could not be written.
        """
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps(self.as_json(), indent=2) + "\n"
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=".preferences-", suffix=".tmp", text=True
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, directory / PREFERENCES_FILE)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def as_json(self) -> dict[str, Any]:
        """The preferences as JSON-ready values (times as ``"HH:MM"``, instants as ISO 8601)."""
        return {
            "toasts_enabled": self.toasts_enabled,
            "sound": self.sound,
            "quiet_hours": (
                None
                if self.quiet_hours is None
                else [moment.strftime(_TIME_FORMAT) for moment in self.quiet_hours]
            ),
            "muted_projects": sorted(self.muted_projects),
            "dnd_until": None if self.dnd_until is None else self.dnd_until.isoformat(),
            "start_at_login": self.start_at_login,
            "remember_me": self.remember_me,
        }

    def dnd_active(self, now: datetime) -> bool:
        """Whether do-not-disturb is on at ``now``.

        Args:
            now: an aware instant (any time zone).

        Raises:
            ValueError: ``now`` is naive.
        """
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        return self.dnd_until is not None and now < self.dnd_until

    def in_quiet_hours(self, now: datetime) -> bool:
        """Whether ``now``'s wall-clock time falls in the quiet hours.

        The interval includes its start and excludes its end; when the start is
        later than the end it wraps midnight. Equal start and end mean an empty
        interval (never quiet).

        Args:
            now: the current time. A naive value is taken as local wall-clock
                time; an aware one is first converted to the computer's local
                time zone, so passing a UTC instant is not a mistake.
        """
        if self.quiet_hours is None:
            return False
        start, end = self.quiet_hours
        if now.utcoffset() is not None:
            now = now.astimezone()
        moment = now.time()
        if start <= end:
            return start <= moment < end
        return moment >= start or moment < end

    def is_muted(self, project_id: int | None) -> bool:
        """Whether notifications of ``project_id`` stay silent (``None``: no project, never)."""
        return project_id is not None and project_id in self.muted_projects


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _decode_quiet_hours(value: Any) -> tuple[time, time] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise TypeError('expected ["HH:MM", "HH:MM"] or null')
    start, end = (datetime.strptime(v, _TIME_FORMAT).time() for v in value)
    return start, end


def _decode_projects(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise TypeError("expected a list of project ids")
    return frozenset(value)


def _decode_instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected an ISO 8601 time or null")
    instant = datetime.fromisoformat(value)
    if instant.utcoffset() is None:
        raise ValueError("the time has no time zone")
    return instant.astimezone(UTC)


_DECODERS: dict[str, Any] = {
    "toasts_enabled": _decode_bool,
    "sound": _decode_bool,
    "quiet_hours": _decode_quiet_hours,
    "muted_projects": _decode_projects,
    "dnd_until": _decode_instant,
    "start_at_login": _decode_bool,
    "remember_me": _decode_bool,
}


@dataclass(frozen=True)
class ManagedSettings:
    """What IT pre-set for every user of this computer. Empty when nothing is managed.

    Attributes:
        server_url: the server address; when set the user cannot change it.
        allow_remember_me: ``False`` forbids keeping the login in the keyring.
        start_at_login: ``True``/``False`` forces the setting; ``None`` leaves it
            to the user.
        source: the file these came from, ``None`` when there was none.
    """

    server_url: str | None = None
    allow_remember_me: bool = True
    start_at_login: bool | None = None
    source: Path | None = None

    @property
    def server_locked(self) -> bool:
        """Whether the server address is fixed by IT."""
        return self.server_url is not None


def managed_settings_path() -> Path:
    """Where IT's file is looked for.

    ``TRAY_NOTIFIER_MANAGED_FILE`` if set; otherwise ``managed.json`` in the
    system-wide config directory (``/etc/xdg/tray-notifier`` on Linux,
    ``/Library/Application Support/tray-notifier`` on macOS,
    ``C:\\ProgramData\\tray-notifier`` on Windows).
    """
    override = os.environ.get(MANAGED_FILE_ENV)
    if override:
        return Path(override)
    return platformdirs.site_config_path(APP_NAME) / "managed.json"


def managed_settings(path: Path | None = None) -> ManagedSettings:
    """Read what IT pre-set.

    A missing file means nothing is managed. A damaged file, or a field with a
    wrong value, is logged and ignored (that field or the whole file): a broken
    policy file must not keep the app from starting.

    Args:
        path: the file to read; :func:`managed_settings_path` when ``None``.

    Returns:
        The managed settings (empty when there are none).
    """
    path = path or managed_settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ManagedSettings()
    except (OSError, ValueError) as error:
        logger.warning(
            "ignoring unreadable managed settings in %s (%s)", path, type(error).__name__
        )
        return ManagedSettings()
    if not isinstance(raw, dict):
        logger.warning("ignoring managed settings in %s: not a JSON object", path)
        return ManagedSettings()

    server_url: str | None = None
    value = raw.get("server_url")
    if value is not None:
        if isinstance(value, str) and _is_server_url(value.strip()):
            server_url = value.strip().rstrip("/")
        else:
            logger.warning("ignoring managed server_url in %s: not an http(s) address", path)
    allow_remember_me = True
    value = raw.get("allow_remember_me")
    if isinstance(value, bool):
        allow_remember_me = value
    elif value is not None:
        logger.warning("ignoring managed allow_remember_me in %s: not true or false", path)
    start_at_login: bool | None = None
    value = raw.get("start_at_login")
    if isinstance(value, bool):
        start_at_login = value
    elif value is not None:
        logger.warning("ignoring managed start_at_login in %s: not true or false", path)
    return ManagedSettings(
        server_url=server_url,
        allow_remember_me=allow_remember_me,
        start_at_login=start_at_login,
        source=path,
    )


def _is_server_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False
