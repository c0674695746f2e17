"""What the user chose for this computer: pop-ups, sound, start at login, remember me.

When and why a notification may interrupt (do-not-disturb, quiet hours, mutes) is no
longer here: it is the user's attention settings, kept on the server and shared by every
device (:mod:`tray_app.attention`). Files from before keep those keys;
:func:`legacy_attention_change` reads them once so the app can hand them to the server.

:class:`Preferences` is persisted as ``preferences.json`` in the config
directory (:func:`tray_app.config.config_dir`). A damaged file, or a field of
the wrong type, is logged and replaced by the default: the app always starts.

:class:`SavedPreferences` is the same file seen as the user's own layer: the
values and which of them the user actually chose. IT's managed configuration
(:mod:`tray_app.managed`) lays its values over it: a key the user never chose
follows IT's default, a locked key follows IT always, and saving writes only
the user's own choices, so nothing IT locked sticks in the user's file.

No Qt here: the settings dialog edits a copy and the app saves it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace

from tray_app.files import write_atomically

logger = logging.getLogger(__name__)

__all__ = [
    "PREFERENCES_FILE",
    "PREFERENCE_NAMES",
    "Preferences",
    "SavedPreferences",
    "legacy_attention_change",
    "parse_quiet_hours",
]

PREFERENCES_FILE = "preferences.json"
_TIME_FORMAT = "%H:%M"


class Preferences(msgspec.Struct):
    """The user's notification preferences. Every field has a safe default.

    Attributes:
        toasts_enabled: show a pop-up for new notifications on this computer.
        sound: play the system's sound with a pop-up.
        start_at_login: start the app when the user logs in to the desktop.
        remember_me: keep the login in the OS keyring.
    """

    toasts_enabled: bool = True
    sound: bool = True
    start_at_login: bool = False
    remember_me: bool = True

    def as_json(self) -> dict[str, Any]:
        """The preferences as JSON-ready values."""
        return {
            "toasts_enabled": self.toasts_enabled,
            "sound": self.sound,
            "start_at_login": self.start_at_login,
            "remember_me": self.remember_me,
        }


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def parse_quiet_hours(value: Any) -> tuple[time, time] | None:
    """Quiet hours as JSON holds them: ``["HH:MM", "HH:MM"]`` (start, end) or ``null``.

    Args:
        value: the decoded JSON value.

    Returns:
        ``(start, end)``, or ``None`` for ``null`` (no quiet hours).

    Raises:
        TypeError: not a pair of strings and not ``null``.
        ValueError: a string is not a 24-hour ``HH:MM`` time.
    """
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise TypeError('expected ["HH:MM", "HH:MM"] (start, end) or null')
    try:
        start, end = (datetime.strptime(v, _TIME_FORMAT).time() for v in value)
    except ValueError:
        raise ValueError(
            f'expected 24-hour times such as "22:00", got {value[0]!r} and {value[1]!r}'
        ) from None
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
    "start_at_login": _decode_bool,
    "remember_me": _decode_bool,
}


PREFERENCE_NAMES: tuple[str, ...] = Preferences.__struct_fields__


def legacy_attention_change(directory: Path, *, now: datetime) -> dict[str, Any]:
    """The attention settings a ``preferences.json`` from before they moved to the
    server holds (quiet hours, muted projects, a do-not-disturb still in force), as a
    change for the server (docs/protocol.md, "Attention"); empty when it holds none.
    Never raises: an unreadable file or value holds nothing."""
    try:
        raw = json.loads((directory / PREFERENCES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    change: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError):
        quiet = parse_quiet_hours(raw["quiet_hours"]) if "quiet_hours" in raw else None
        if quiet is not None:
            start, end = (moment.strftime(_TIME_FORMAT) for moment in quiet)
            change["quiet_hours"] = {"start": start, "end": end}
    with contextlib.suppress(TypeError, ValueError):
        if raw.get("muted_projects"):
            change["muted_projects"] = sorted(_decode_projects(raw["muted_projects"]))
    with contextlib.suppress(TypeError, ValueError):
        until = _decode_instant(raw.get("dnd_until"))
        if until is not None and until > now:
            change["dnd"] = {"until": until.isoformat().replace("+00:00", "Z")}
    return change


class SavedPreferences(msgspec.Struct, frozen=True):
    """The user's own layer: what their ``preferences.json`` holds.

    Attributes:
        values: the preferences; a field the user never chose has its built-in
            default.
        chosen: the names of the fields the user chose (those present in the
            file). Only these are written back, so a default, or a value IT
            locked, never becomes the user's own choice by being saved.
    """

    values: Preferences = msgspec.field(default_factory=Preferences)
    chosen: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.chosen) - set(PREFERENCE_NAMES)
        if unknown:
            raise ValueError(f"not preferences: {', '.join(sorted(unknown))}")
        msgspec.structs.force_setattr(self, "chosen", frozenset(self.chosen))

    @classmethod
    def load(cls, directory: Path) -> SavedPreferences:
        """The user's own preferences saved in ``directory``; never raises for bad content.

        A missing file gives the defaults silently; an unreadable or damaged one gives
        the defaults and a warning; a field of the wrong type falls back to its
        default (with a warning), keeps the others, and does not count as chosen.

        Args:
            directory: the config directory holding ``preferences.json``.
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
        for name in PREFERENCE_NAMES:
            if name not in raw:
                continue
            try:
                values[name] = _DECODERS[name](raw[name])
            except (TypeError, ValueError) as error:
                logger.warning("ignoring preference %s in %s: %s", name, path, error)
        return cls(Preferences(**values), frozenset(values))

    def save(self, directory: Path) -> None:
        """Write the chosen fields to ``preferences.json`` in ``directory`` atomically: a
        crash mid-write leaves either the old file or the new one, never half of one.

        Args:
            directory: the config directory; created (mode 0700) if missing.

        Raises:
            OSError: the directory or file could not be written.
        """
        everything = self.values.as_json()
        _write_atomically(directory, {name: everything[name] for name in sorted(self.chosen)})

    def choose(self, **changes: Any) -> SavedPreferences:
        """These preferences with ``changes`` applied and counted as the user's choices.

        Args:
            **changes: field names of :class:`Preferences` and their new values.

        Raises:
            TypeError: a name is not a field of :class:`Preferences`.
        """
        return SavedPreferences(replace(self.values, **changes), self.chosen | changes.keys())


def _write_atomically(directory: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=2) + "\n"
    write_atomically(directory / PREFERENCES_FILE, text.encode("utf-8"))
