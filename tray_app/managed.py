"""The configuration IT sets for every user of a computer, with keys the user cannot change.

One JSON file (``managed.json``) in the system-wide configuration directory:

- Linux and other XDG systems: ``tray-notifier/managed.json`` in the first
  directory of ``$XDG_CONFIG_DIRS`` that has one (``/etc/xdg`` by default);
- Windows: ``C:\\ProgramData\\tray-notifier\\managed.json``;
- macOS: ``/Library/Application Support/tray-notifier/managed.json``;
- anywhere: the file named by ``TRAY_NOTIFIER_MANAGED_FILE``.

Each key is given either as a plain value, which is managed AND locked, or as
``{"value": ..., "locked": false}``, which makes the value a default the user
may change. ``docs/managed-configuration.md`` documents every key.

A broken file never stops the app: a bad key is left out with a message naming
the file and line, and a file that cannot be read or parsed applies nothing.
:func:`parse_managed_config` is pure; :func:`load_managed_config` does the I/O.
No Qt here.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import stat
import sys
from collections.abc import Callable, Mapping
from datetime import time
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from msgspec.structs import replace

from tray_app import app_dirs, autostart
from tray_app.config import APP_NAME
from tray_app.net import Transport
from tray_app.net.transport_choice import Forced
from tray_app.preferences import PREFERENCE_NAMES, Preferences, SavedPreferences, parse_quiet_hours

logger = logging.getLogger(__name__)

__all__ = [
    "LIVE_TRANSPORTS",
    "MANAGED_FILE_ENV",
    "MANAGED_FILE_NAME",
    "MANAGED_KEYS",
    "MANAGED_NOTE",
    "MAX_FILE_BYTES",
    "PROXY_ENVIRONMENT",
    "WEBSOCKET_RETRY_ENVIRONMENT",
    "ManagedConfig",
    "ManagedSetting",
    "PreferenceKeeper",
    "display_value",
    "load_managed_config",
    "managed_config_locations",
    "managed_config_path",
    "parse_managed_config",
    "redact_url",
]

MANAGED_FILE_ENV = "TRAY_NOTIFIER_MANAGED_FILE"
# What the user is told wherever IT's allow_remember_me: false is why a login is not kept.
REMEMBER_ME_TURNED_OFF = "Your IT department turned off remembering logins."
MANAGED_FILE_NAME = "managed.json"
MANAGED_NOTE = "Set by your IT department"
# A policy file is a few hundred bytes; anything this big is a mistake, not a policy.
MAX_FILE_BYTES = 1024 * 1024
# The variables through which a user's environment names a proxy (either case is honoured).
PROXY_ENVIRONMENT = ("https_proxy", "http_proxy", "all_proxy")
# The values of ``live_transport``.
LIVE_TRANSPORTS = ("auto", "websocket", "http")
# Seconds between the fallback's retries of the WebSocket (the first; they double up to
# an hour). For trying a proxy change out without waiting five minutes; not a policy.
WEBSOCKET_RETRY_ENVIRONMENT = "TRAY_NOTIFIER_WEBSOCKET_RETRY"

_JSON_WHITESPACE = " \t\n\r"
_UNREADABLE = "it cannot be read (permission denied; every user must be able to read it)"
_DECODER = json.JSONDecoder()


# --- the keys ----------------------------------------------------------------------------


def _expect_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe_json(value)}")
    return value


def _expect_server_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f'expected an address such as "https://notify.example.com", got {_describe_json(value)}'
        )
    address = value.strip().rstrip("/")
    if not _is_http_url(address):
        raise ValueError(
            f"expected an address starting with https:// or http://, got {json.dumps(value)}"
        )
    return address


def _expect_quiet_hours(value: Any) -> tuple[time, time] | None:
    try:
        return parse_quiet_hours(value)
    except (TypeError, ValueError) as error:
        raise ValueError(str(error)) from None


def _expect_ca_bundle(value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected the path of a PEM file, got {_describe_json(value)}")
    # The path is used on this computer, so "absolute" is judged by its own rules.
    if not os.path.isabs(value):
        raise ValueError(f"expected an absolute path, got {json.dumps(value)}")
    return Path(value)


def _expect_proxy(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f'expected "system", "none" or a proxy address, got {_describe_json(value)}'
        )
    text = value.strip()
    if text.lower() in ("system", "none"):
        return text.lower()
    if not _is_http_url(text):
        # Never echo it: a proxy address can carry a password.
        raise ValueError(
            'expected "system", "none" or an address starting with http:// or https://, '
            f"got {json.dumps(redact_url(text))}"
        )
    return text.rstrip("/")


def _seconds(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 3600:
        logger.warning(
            "ignoring %s=%r: expected seconds from 1 to 3600", WEBSOCKET_RETRY_ENVIRONMENT, text
        )
        return None
    return seconds


def _expect_live_transport(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in LIVE_TRANSPORTS:
        raise ValueError(f'expected "auto", "websocket" or "http", got {_describe_json(value)}')
    return value.strip().lower()


# Every key IT may set, in the order the settings window lists them, with its parser.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "server_url": _expect_server_url,
    "start_at_login": _expect_bool,
    "toasts_enabled": _expect_bool,
    "sound": _expect_bool,
    "quiet_hours": _expect_quiet_hours,
    "allow_remember_me": _expect_bool,
    "ca_bundle": _expect_ca_bundle,
    "proxy": _expect_proxy,
    "live_transport": _expect_live_transport,
}
MANAGED_KEYS: tuple[str, ...] = tuple(_PARSERS)

# Managed keys that set one of the user's preferences of the same name. Quiet hours are
# part of the user's attention settings, kept on the server (``quiet_hours_lock``).
_PREFERENCE_KEYS = ("start_at_login", "toasts_enabled", "sound")
_LABELS = {
    "server_url": "Server address",
    "start_at_login": "Start when you log in",
    "toasts_enabled": "Pop-ups",
    "sound": "Sound with pop-ups",
    "quiet_hours": "Quiet hours",
    "allow_remember_me": "Remembering logins",
    "ca_bundle": "Extra certificate authorities",
    "proxy": "Proxy",
    "live_transport": "Live connection",
}


class ManagedSetting(msgspec.Struct, frozen=True):
    """One key IT set.

    Attributes:
        key: one of :data:`MANAGED_KEYS`.
        value: the parsed value (``str``, ``bool``, ``(time, time)`` or ``None``
            for quiet hours, :class:`~pathlib.Path` for ``ca_bundle``).
        locked: the user cannot change it.
        line: the line of the file where the key is (1-based).
    """

    key: str
    value: Any
    locked: bool
    line: int

    @property
    def label(self) -> str:
        """What the setting is called in the app's windows."""
        return _LABELS[self.key]


class ManagedConfig(msgspec.Struct, frozen=True):
    """What IT set for this computer. Empty (nothing managed) by default.

    Attributes:
        source: the file it came from; ``None`` when there was none.
        problems: one plain-language message per thing in the file that was
            left out, each naming the file and (when it has one) the line.
        settings: the keys that apply, in the file's order.
    """

    source: Path | None = None
    problems: tuple[str, ...] = ()
    settings: tuple[ManagedSetting, ...] = ()

    def setting(self, key: str) -> ManagedSetting | None:
        """The setting of ``key``, or ``None`` when IT did not set it (or set it wrongly).

        Raises:
            KeyError: ``key`` is not one of :data:`MANAGED_KEYS`.
        """
        if key not in _PARSERS:
            raise KeyError(f"{key!r} is not a managed key")
        return next((s for s in self.settings if s.key == key), None)

    def is_managed(self, key: str) -> bool:
        """Whether IT set ``key`` (locked or as a default)."""
        return self.setting(key) is not None

    def is_locked(self, key: str) -> bool:
        """Whether IT set ``key`` and the user cannot change it.

        ``allow_remember_me`` is a policy, not a preference: it is locked exactly
        when it forbids remembering logins.
        """
        setting = self.setting(key)
        if setting is None:
            return False
        if key == "allow_remember_me":
            return setting.value is False
        return setting.locked

    def _value(self, key: str) -> Any:
        setting = self.setting(key)
        return None if setting is None else setting.value

    @property
    def server_url(self) -> str | None:
        """The server address IT set (no trailing slash), or ``None``."""
        value: str | None = self._value("server_url")
        return value

    @property
    def start_at_login(self) -> bool | None:
        """Whether IT wants the app to start at login, or ``None`` when not managed."""
        value: bool | None = self._value("start_at_login")
        return value

    @property
    def allow_remember_me(self) -> bool:
        """``False`` when IT forbids keeping logins in the keyring."""
        return self._value("allow_remember_me") is not False

    def remember_me_refusal(self, user: Preferences | SavedPreferences) -> str | None:
        """Why a login on this computer must not be kept in the keyring, or ``None``.

        The one rule for the tray and headless mode alike: IT's policy first, then the
        user's own "remember me" (their preferences, with IT's values laid over them).
        """
        if not self.allow_remember_me:
            return REMEMBER_ME_TURNED_OFF
        if not self.effective_preferences(user).remember_me:
            return "Remembering logins is off in your preferences."
        return None

    @property
    def ca_bundle(self) -> Path | None:
        """A PEM file of certificate authorities to trust besides the system's, or ``None``.

        Always applied when set: extra authorities add trust and the user has no
        setting of their own to replace them with.
        """
        value: Path | None = self._value("ca_bundle")
        return value

    @property
    def proxy(self) -> str | None:
        """``"system"``, ``"none"`` or a proxy URL; ``None`` when not managed.

        See :meth:`effective_proxy` for how an unlocked proxy yields to the
        user's environment.
        """
        value: str | None = self._value("proxy")
        return value

    def effective_proxy(self, environ: Mapping[str, str]) -> str | None:
        """The proxy setting that applies, given the user's environment.

        A locked proxy always applies. An unlocked one is a default: when the
        environment names a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``
        in either case) the environment wins and this returns ``None``.

        Args:
            environ: the process environment (``os.environ``).

        Returns:
            ``"system"``, ``"none"``, a proxy URL, or ``None`` when the managed
            configuration has no say (follow the environment, then the system).
        """
        setting = self.setting("proxy")
        if setting is None:
            return None
        if not setting.locked and any(
            environ.get(name) or environ.get(name.upper()) for name in PROXY_ENVIRONMENT
        ):
            return None
        value: str = setting.value
        return value

    def transport(self, environ: Mapping[str, str]) -> Transport:
        """Trust and proxy for the REST client and the socket, as IT set them.

        Args:
            environ: the process environment (``os.environ``); see :meth:`effective_proxy`.
        """
        proxy = self.effective_proxy(environ)
        return Transport(
            ca_bundle=self.ca_bundle,
            proxy=None if proxy == "system" else proxy,
            live=self.live_transport,
            websocket_retry=_seconds(environ.get(WEBSOCKET_RETRY_ENVIRONMENT)),
        )

    @property
    def live_transport(self) -> Forced:
        """IT's choice of transport for the live connection: ``"websocket"``, ``"http"``
        (the HTTP stream), or None (``"auto"`` or not set: the app chooses, falling back
        to the stream where WebSockets are blocked)."""
        value: str | None = self._value("live_transport")
        if value == "websocket":
            return "websocket"
        if value == "http":
            return "http"
        return None

    def effective_server_url(self, user_choice: str | None) -> str | None:
        """The server address to use.

        Args:
            user_choice: the address the user chose (command line, environment,
                or the last one they logged in to), or ``None`` when they chose none.

        Returns:
            A locked managed address; else the user's choice; else an unlocked
            managed address; else ``None``.
        """
        setting = self.setting("server_url")
        if setting is not None and setting.locked:
            value: str = setting.value
            return value
        if user_choice:
            return user_choice
        return self.server_url

    def quiet_hours_lock(self) -> tuple[time, time] | Literal[False] | None:
        """The quiet hours IT locked on this computer (None: locked to none), laid over
        the user's own (``Attention.locked``); False when IT does not lock them."""
        setting = self.setting("quiet_hours")
        if setting is None or not setting.locked:
            return False
        value: tuple[time, time] | None = setting.value
        return value

    def quiet_hours_default(self) -> tuple[time, time] | Literal[False] | None:
        """Quiet hours IT suggests (unlocked): handed to the server once, for a user who
        never set attention settings; False when IT suggests none."""
        setting = self.setting("quiet_hours")
        if setting is None or setting.locked:
            return False
        value: tuple[time, time] | None = setting.value
        return value

    def locked_preferences(self) -> frozenset[str]:
        """The names of the :class:`~tray_app.preferences.Preferences` fields IT locked."""
        locked = {key for key in _PREFERENCE_KEYS if self.is_locked(key)}
        if not self.allow_remember_me:
            locked.add("remember_me")
        return frozenset(locked)

    def effective_preferences(self, user: Preferences | SavedPreferences) -> Preferences:
        """The preferences in force: the user's own, with IT's values laid over them.

        A locked value always wins. An unlocked managed value is a default: it
        applies until the user chooses a value of their own.

        Args:
            user: the user's own layer; a plain :class:`Preferences` counts as
                chosen in every field (so only locked values change it).

        Returns:
            A new :class:`Preferences`; ``user`` is not modified.
        """
        saved = (
            user
            if isinstance(user, SavedPreferences)
            else SavedPreferences(user, frozenset(PREFERENCE_NAMES))
        )
        changes: dict[str, Any] = {}
        for key in _PREFERENCE_KEYS:
            setting = self.setting(key)
            if setting is not None and (setting.locked or key not in saved.chosen):
                changes[key] = setting.value
        if not self.allow_remember_me:
            changes["remember_me"] = False
        return replace(saved.values, **changes)

    def record_choices(self, saved: SavedPreferences, edited: Preferences) -> SavedPreferences:
        """The user's own layer after they edited the effective preferences.

        Only fields that differ from what was in force, and that IT did not
        lock, become the user's choices; locked fields keep the user's own
        earlier value, so nothing IT locked is written to the user's file and
        the user's choice is back in force the day IT unlocks the key.

        Args:
            saved: the user's layer before the edit.
            edited: the effective preferences as the user left them (e.g. what
                the settings window returned).
        """
        current = self.effective_preferences(saved)
        locked = self.locked_preferences()
        changes = {
            name: getattr(edited, name)
            for name in PREFERENCE_NAMES
            if name not in locked and getattr(edited, name) != getattr(current, name)
        }
        return saved.choose(**changes)


# --- parsing (pure) ------------------------------------------------------------------------


def parse_managed_config(text: str, source: Path) -> ManagedConfig:
    """Parse the text of a managed configuration file.

    Args:
        text: the file's text.
        source: the file's path, for messages.

    Returns:
        The settings that are valid, and a message for every problem: a JSON
        syntax error (line and column) or a top level that is not an object
        applies nothing; an unknown key, a wrong type or value, or a bad lock
        leaves that key out and keeps the rest.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return ManagedConfig(
            source,
            (
                f"{source}, line {error.lineno}, column {error.colno}: not valid JSON "
                f"({error.msg}); nothing in the file applies.",
            ),
        )
    if not isinstance(data, dict):
        where = _line_of(text, _skip_whitespace(text, 0))
        return ManagedConfig(
            source,
            (
                f"{source}, line {where}: expected a JSON object ({{...}}) holding the "
                f"settings, found {_describe_json(data)}; nothing in the file applies.",
            ),
        )
    positions = _key_positions(text)
    problems: list[str] = []
    settings: list[ManagedSetting] = []
    for key, raw in data.items():
        offsets = positions.get((key,), [0])
        line = _line_of(text, offsets[-1])
        if len(offsets) > 1:
            problems.append(
                f"{source}, line {line}: {json.dumps(key)} is given more than once (also on "
                f"line {_line_of(text, offsets[0])}); the last one applies."
            )
        if key.startswith("_"):
            continue  # a comment: JSON has none of its own
        if key not in _PARSERS:
            problems.append(f"{source}, line {line}: {_unknown_key(key)}; ignored.")
            continue
        setting, problem = _parse_setting(key, raw, line, positions, text)
        if problem is not None:
            problems.append(f"{source}, {problem}; ignored.")
        if setting is not None:
            settings.append(setting)
    return ManagedConfig(source, tuple(problems), tuple(settings))


def _parse_setting(
    key: str, raw: Any, line: int, positions: dict[tuple[str, ...], list[int]], text: str
) -> tuple[ManagedSetting | None, str | None]:
    locked = True
    value_line = line
    if isinstance(raw, dict):
        inner = {name: _line_of(text, positions[(key, name)][-1]) for name in raw}
        for name in raw:
            if name not in ("value", "locked"):
                return None, (
                    f"line {inner[name]}: {json.dumps(key)} has an unknown field "
                    f'{json.dumps(name)} (only "value" and "locked")'
                )
        if "value" not in raw:
            return None, f'line {line}: {json.dumps(key)} has no "value"'
        if "locked" in raw:
            if not isinstance(raw["locked"], bool):
                return None, (
                    f'line {inner["locked"]}: "locked" of {json.dumps(key)} must be true or '
                    f"false, got {_describe_json(raw['locked'])}"
                )
            locked = raw["locked"]
        raw = raw["value"]
        value_line = inner["value"]
    try:
        value = _PARSERS[key](raw)
    except ValueError as error:
        return None, f"line {value_line}: {json.dumps(key)}: {error}"
    # A policy, not a preference: there is no user value for a lock to give way to.
    return ManagedSetting(key, value, locked or key == "allow_remember_me", line), None


def _unknown_key(key: str) -> str:
    import difflib  # only for a mistyped key: not loaded by every start

    close = difflib.get_close_matches(key, MANAGED_KEYS, n=1)
    hint = (
        f"did you mean {json.dumps(close[0])}?"
        if close
        else "known keys: " + ", ".join(MANAGED_KEYS)
    )
    return f"unknown key {json.dumps(key)} ({hint})"


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _key_positions(text: str) -> dict[tuple[str, ...], list[int]]:
    """Where each key of the top-level object, and of the objects directly in it, starts.

    The json module reports no positions for valid documents, so this walks the
    (already validated) text with its decoder, one key and value at a time.
    """
    positions: dict[tuple[str, ...], list[int]] = {}

    def walk(index: int, path: tuple[str, ...]) -> int:
        index = _skip_whitespace(text, index + 1)  # past "{"
        if text[index] == "}":
            return index + 1
        while True:
            key, after = _DECODER.raw_decode(text, index)
            positions.setdefault((*path, key), []).append(index)
            index = _skip_whitespace(text, _skip_whitespace(text, after) + 1)  # past ":"
            if text[index] == "{" and not path:
                index = walk(index, (key,))
            else:
                _value, index = _DECODER.raw_decode(text, index)
            index = _skip_whitespace(text, index)
            if text[index] == "}":
                return index + 1
            index = _skip_whitespace(text, index + 1)  # past ","

    walk(_skip_whitespace(text, 0), ())
    return positions


def _describe_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {json.dumps(value)}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def redact_url(text: str) -> str:
    """``text`` with any password in it replaced by ``***`` (for messages and windows)."""
    try:
        parts = urlsplit(text)
        if parts.password is None:
            return text
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{parts.username}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(not shown)"


def display_value(setting: ManagedSetting) -> str:
    """The setting's value in plain words, as the settings window lists it (no passwords)."""
    value = setting.value
    if setting.key == "quiet_hours":
        if value is None:
            return "none"
        start, end = value
        return f"{start:%H:%M} to {end:%H:%M}"
    if setting.key == "allow_remember_me":
        return "allowed" if value else "not allowed"
    if setting.key == "proxy":
        return {"system": "the system's setting", "none": "no proxy"}.get(value, redact_url(value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# --- the file (I/O) ------------------------------------------------------------------------


def managed_config_locations(platform: str = sys.platform) -> tuple[PurePath, ...]:
    """Where the managed file is looked for on ``platform``, most important first.

    Uses platformdirs' site configuration directory (the XDG desktops' through
    :mod:`tray_app.app_dirs`): every directory of
    ``$XDG_CONFIG_DIRS`` (default ``/etc/xdg``) on Linux and other XDG systems,
    ``/Library/Application Support`` on macOS and ``%ProgramData%`` on Windows.
    ``TRAY_NOTIFIER_MANAGED_FILE`` is not consulted here (see
    :func:`managed_config_path`).

    Args:
        platform: a ``sys.platform`` value.
    """
    # Each platform's module only where it is used (they are tested on every platform).
    if platform == "win32":
        from platformdirs.windows import Windows

        # appauthor=False: C:\\ProgramData\\tray-notifier, not ...\\tray-notifier\\tray-notifier.
        folder = Windows(APP_NAME, appauthor=False).site_config_dir
        return (PureWindowsPath(folder) / MANAGED_FILE_NAME,)
    if platform == "darwin":
        from platformdirs.macos import MacOS

        return (PurePosixPath(MacOS(APP_NAME).site_config_dir) / MANAGED_FILE_NAME,)
    directories = app_dirs.site_config_dirs(APP_NAME)
    return tuple(
        PurePosixPath(directory) / MANAGED_FILE_NAME
        for directory in directories
        if os.path.isabs(directory)
    )


def managed_config_path() -> Path:
    """The managed file this computer uses (it may not exist).

    ``TRAY_NOTIFIER_MANAGED_FILE`` when set; otherwise the first of
    :func:`managed_config_locations` that exists (a broken entry counts, so its
    problem is reported), or the first location when none does.
    """
    override = os.environ.get(MANAGED_FILE_ENV)
    if override:
        return Path(override)
    candidates = [Path(location) for location in managed_config_locations()]
    for candidate in candidates:
        if os.path.lexists(candidate):
            return candidate
    return candidates[0]


def load_managed_config(path: Path | None = None) -> ManagedConfig:
    """Read the managed configuration. Never raises: problems are reported, not thrown.

    A missing file means nothing is managed. A file that exists but cannot be
    used (unreadable, a directory, too big, not UTF-8, not JSON) applies
    nothing; a bad key is left out and the rest applies. Each problem is logged
    as a warning and kept in :attr:`ManagedConfig.problems` for the app to show.

    Args:
        path: the file; :func:`managed_config_path` when ``None``.
    """
    path = path or managed_config_path()
    text, problem = _read_text(path)
    if problem is not None:
        where = f"{path}, " if problem.startswith("line ") else f"{path}: "
        config = ManagedConfig(path, (f"{where}{problem}; nothing in the file applies.",))
    elif text is None:
        return ManagedConfig()
    else:
        config = _check_ca_bundle(parse_managed_config(text, path))
    for message in config.problems:
        logger.warning("managed configuration: %s", message)
    return config


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """``(text, None)``, ``(None, problem)``, or ``(None, None)`` when there is no file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        # A dangling symbolic link is a broken file, not a missing one.
        return None, ("it is a broken link" if os.path.lexists(path) else None)
    except PermissionError:
        return None, _UNREADABLE
    except OSError as error:
        return None, f"it cannot be read ({error.strerror or error})"
    try:
        if stat.S_ISDIR(mode):
            return None, "it is a directory, not a file"
        if not stat.S_ISREG(mode):
            # Reading a FIFO or a device could block the app's start for ever.
            return None, "it is not a regular file"
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        return None, _UNREADABLE
    except OSError as error:
        return None, f"it cannot be read ({error.strerror or error})"
    if len(data) > MAX_FILE_BYTES:
        return None, f"it is larger than {MAX_FILE_BYTES // 1024} KiB"
    try:
        # utf-8-sig: Windows editors like to start a file with a byte order mark.
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return None, f"line {line}: it is not UTF-8 text (byte {error.start + 1})"


def _check_ca_bundle(config: ManagedConfig) -> ManagedConfig:
    setting = config.setting("ca_bundle")
    if setting is None:
        return config
    try:
        ssl.create_default_context().load_verify_locations(cafile=setting.value)
    except ssl.SSLError:
        reason = "holds no PEM certificate"
    except OSError as error:
        reason = f"cannot be read ({error.strerror or error})"
    else:
        return config
    problem = (
        f'{config.source}, line {setting.line}: "ca_bundle": {setting.value} {reason}; ignored '
        "(only the system's certificate authorities are trusted)."
    )
    return replace(
        config,
        problems=(*config.problems, problem),
        settings=tuple(s for s in config.settings if s.key != "ca_bundle"),
    )


class PreferenceKeeper:
    """The preferences in force on this computer: the user's own (``preferences.json``
    in ``config_dir``) with IT's managed values laid over them. Qt-free; the tray app
    holds one.

    Attributes:
        current: the preferences in force.
        saved: the user's own layer, as their file holds it.
    """

    def __init__(self, config_dir: Path, managed: ManagedConfig) -> None:
        self._config_dir = config_dir
        self._managed = managed
        self.saved = SavedPreferences.load(config_dir)
        self.current = managed.effective_preferences(self.saved)

    def update(self, edited: Preferences) -> Preferences:
        """Keep what the user changed as their own choice; IT's locked values stay in
        force and never reach the user's file. A start-at-login that changed is applied
        to the login entry. Returns the preferences now in force.

        Raises:
            AutostartError: the login entry could not be changed (the choice is kept).
            OSError: the user's file could not be written (nothing changed).
        """
        before = self.current
        saved = self._managed.record_choices(self.saved, edited)
        saved.save(self._config_dir)
        self.saved = saved
        self.current = self._managed.effective_preferences(saved)
        if self.current.start_at_login != before.start_at_login:
            autostart.set_enabled(self.current.start_at_login)
        return self.current

    def settle_start_at_login(self) -> None:
        """Match the login entry and the preference as the app starts
        (``autostart.reconcile``: IT's value is applied, else the entry is the truth).

        Raises:
            AutostartError: IT's value could not be applied.
        """
        wanted = self.current.start_at_login
        actual = autostart.reconcile(wanted, managed=self._managed.is_managed("start_at_login"))
        if actual != wanted:
            self.current = replace(self.current, start_at_login=actual)
