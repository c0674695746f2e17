"""Start the app when the user logs in to the desktop, the way each platform expects.

- Linux (and other XDG desktops): a desktop entry in
  ``$XDG_CONFIG_HOME/autostart/tray-notifier.desktop`` (XDG Autostart spec).
- macOS: a launch agent ``~/Library/LaunchAgents/com.traynotifier.app.plist``
  with ``RunAtLoad``.
- Windows: a value in ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

Every function takes the platform and the places it writes to as arguments, so
tests write into temporary homes and a fake registry; by default they act on
the running system. No Qt here.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, Protocol

from tray_app.files import write_atomically

__all__ = [
    "DESKTOP_FILE_NAME",
    "LAUNCH_AGENT_LABEL",
    "RUN_KEY",
    "RUN_VALUE_NAME",
    "AutostartError",
    "RegistryRunKey",
    "desktop_entry",
    "disable",
    "enable",
    "exec_line",
    "hidden_entry",
    "is_enabled",
    "launch_agent",
    "launch_command",
    "location",
    "system_entries",
]

DESKTOP_FILE_NAME = "tray-notifier.desktop"
LAUNCH_AGENT_LABEL = "com.traynotifier.app"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE_NAME = "TrayNotifier"
APP_DISPLAY_NAME = "Tray Notifier"
DEFAULT_ICON = "tray-notifier"

# The Desktop Entry spec's reserved characters: an argument holding any of them is quoted.
_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
# Inside double quotes these four still need a backslash.
_QUOTED_ESCAPES = frozenset('"`$\\')


class AutostartError(OSError):
    """Start-at-login could not be changed (a file or registry value could not be written).

    Attributes:
        user_message: plain words a UI shows as they are.
    """

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or (
            "Couldn't change whether the app starts when you log in. " + message
        )


class RegistryRunKey(Protocol):
    """The values of the current user's ``Run`` key: what the Windows code writes through."""

    def get(self, name: str) -> str | None:
        """The value ``name``, or ``None`` when it does not exist."""

    def set(self, name: str, value: str) -> None:
        """Create or replace the string value ``name``."""

    def delete(self, name: str) -> None:
        """Remove the value ``name``; no error when it does not exist."""


if sys.platform == "win32":
    import winreg

    class _WinregRunKey:
        """The real ``HKCU\\...\\Run`` key through :mod:`winreg` (Windows only)."""

        def get(self, name: str) -> str | None:
            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                    value, _kind = winreg.QueryValueEx(key, name)
            except FileNotFoundError:
                return None
            return str(value)

        def set(self, name: str, value: str) -> None:
            with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

        def delete(self, name: str) -> None:
            try:
                with winreg.OpenKey(
                    winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE
                ) as key:
                    winreg.DeleteValue(key, name)
            except FileNotFoundError:
                pass


# --- pure builders -------------------------------------------------------------------


def launch_command() -> list[str]:
    """The command that starts this app as it is installed now.

    The bundle's own executable when frozen by PyInstaller, otherwise this
    interpreter running the ``tray_app`` package (which works in a virtualenv
    without the console script on ``PATH``).
    """
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "tray_app"]


def _quote_argument(argument: str) -> str:
    if "\0" in argument:
        raise ValueError("a command argument cannot contain a NUL character")
    if argument and not any(char in _RESERVED for char in argument):
        return argument.replace("%", "%%")
    inner = "".join("\\" + char if char in _QUOTED_ESCAPES else char for char in argument)
    return '"' + inner.replace("%", "%%") + '"'


def _escape_string_value(text: str) -> str:
    # The file-level escapes of a "string" value, applied after the Exec quoting
    # (the spec's reason why a literal backslash in a quoted argument takes four).
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def exec_line(command: Sequence[str]) -> str:
    """The ``Exec=`` value that runs ``command``, quoted per the Desktop Entry spec.

    Arguments with reserved characters are double-quoted with ``"``, `````,
    ``$`` and ``\\`` backslash-escaped inside; ``%`` becomes ``%%`` (it would
    start a field code); then the string-value escapes apply (``\\`` → ``\\\\``).

    Args:
        command: the program and its arguments; the program should be an
            absolute path.

    Raises:
        ValueError: ``command`` is empty or holds a NUL character.
    """
    if not command:
        raise ValueError("the command is empty")
    return _escape_string_value(" ".join(_quote_argument(argument) for argument in command))


def desktop_entry(command: Sequence[str], *, icon: str = DEFAULT_ICON) -> str:
    """The text of the XDG autostart desktop entry that runs ``command``.

    Args:
        command: the program and its arguments.
        icon: an icon theme name or an absolute path to an icon file.
    """
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        f"Name={APP_DISPLAY_NAME}",
        "Comment=Desktop notifications from your team's server",
        f"Exec={exec_line(command)}",
        f"Icon={_escape_string_value(icon)}",
        "Terminal=false",
        "Categories=Network;",
        "StartupNotify=false",
        "X-GNOME-Autostart-enabled=true",
        "",
    ]
    return "\n".join(lines)


def launch_agent(command: Sequence[str]) -> bytes:
    """The launchd property list (XML) that runs ``command`` at login on macOS."""
    if not command:
        raise ValueError("the command is empty")
    agent = {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }
    import plistlib  # macOS only: it loads expat, which Linux and Windows never need

    return plistlib.dumps(agent, fmt=plistlib.FMT_XML)


# --- where things go -----------------------------------------------------------------


def _kind(platform: str) -> str:
    if platform == "win32":
        return "windows"
    if platform == "darwin":
        return "macos"
    return "xdg"


def _xdg_config_home(home: Path | None) -> Path:
    # An explicit home wins over the environment: the variable describes the real
    # user's home, not the one the caller asked about.
    if home is not None:
        return home / ".config"
    configured = os.environ.get("XDG_CONFIG_HOME", "")
    if configured and Path(configured).is_absolute():
        return Path(configured)
    return Path.home() / ".config"


def location(*, platform: str = sys.platform, home: Path | None = None) -> PurePath:
    """Where start-at-login is recorded on ``platform``.

    Args:
        platform: a ``sys.platform`` value.
        home: the user's home directory; the real one when ``None`` (on XDG
            desktops, then ``$XDG_CONFIG_HOME`` is honoured).

    Returns:
        The file path, or on Windows a :class:`PureWindowsPath` naming the
        registry value (``HKEY_CURRENT_USER\\...\\Run\\TrayNotifier``).
    """
    kind = _kind(platform)
    if kind == "windows":
        return PureWindowsPath("HKEY_CURRENT_USER", RUN_KEY, RUN_VALUE_NAME)
    if kind == "macos":
        return (home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    return _xdg_config_home(home) / "autostart" / DESKTOP_FILE_NAME


def system_entries(*, system_dirs: Sequence[Path] | None = None) -> list[Path]:
    """The system-wide autostart entries of this app (a package's), most important first.

    Args:
        system_dirs: the XDG system config directories; ``$XDG_CONFIG_DIRS``
            (default ``/etc/xdg``) when ``None``.
    """
    if system_dirs is None:
        configured = os.environ.get("XDG_CONFIG_DIRS", "") or "/etc/xdg"
        system_dirs = [Path(d) for d in configured.split(":") if d and Path(d).is_absolute()]
    return [
        directory / "autostart" / DESKTOP_FILE_NAME
        for directory in system_dirs
        if (directory / "autostart" / DESKTOP_FILE_NAME).is_file()
    ]


def _entry_is_on(path: Path) -> bool | None:
    """Whether the desktop entry at ``path`` starts the app; ``None`` when there is none.

    An entry switched off (``Hidden=true`` or ``X-GNOME-Autostart-enabled=false``)
    counts as off; an unreadable one too.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        if not parser.read(path, encoding="utf-8"):
            return None
    except (configparser.Error, UnicodeDecodeError):
        return False
    if not parser.has_section("Desktop Entry"):
        return False
    entry = parser["Desktop Entry"]
    return (
        entry.get("Hidden", "false").strip() != "true"
        and entry.get("X-GNOME-Autostart-enabled", "true").strip() != "false"
    )


def hidden_entry() -> str:
    """A user entry that switches off a system-wide one of the same name (XDG Autostart spec)."""
    return f"[Desktop Entry]\nType=Application\nName={APP_DISPLAY_NAME}\nHidden=true\n"


def _registry(registry: RegistryRunKey | None) -> RegistryRunKey:
    if registry is not None:
        return registry
    if sys.platform == "win32":
        return _WinregRunKey()
    raise AutostartError(f"no Windows registry on {sys.platform}; pass a registry writer")


def _write_atomically(path: Path, data: bytes) -> None:
    # The desktop's autostart folder is the desktop's: made as it would make it.
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data, mode=0o644)


# --- the three operations ------------------------------------------------------------


def enable(
    command: list[str],
    *,
    platform: str = sys.platform,
    home: Path | None = None,
    registry: RegistryRunKey | None = None,
    icon: str = DEFAULT_ICON,
) -> PurePath:
    """Make ``command`` run when the user logs in. Replaces an earlier entry.

    Args:
        command: the program and its arguments, e.g. ``[sys.executable, "-m", "tray_app"]``.
        platform: a ``sys.platform`` value.
        home: the user's home directory (see :func:`location`).
        registry: the ``Run`` key to write on Windows; the real one via
            :mod:`winreg` when ``None`` (only on Windows itself).
        icon: the desktop entry's icon (theme name or absolute path); XDG only.

    Returns:
        Where it was recorded (see :func:`location`).

    Raises:
        AutostartError: the entry could not be written.
        ValueError: ``command`` is empty.
    """
    target = location(platform=platform, home=home)
    kind = _kind(platform)
    try:
        if kind == "windows":
            _registry(registry).set(RUN_VALUE_NAME, subprocess.list2cmdline(command))
        elif kind == "macos":
            _write_atomically(Path(target), launch_agent(command))
        else:
            _write_atomically(Path(target), desktop_entry(command, icon=icon).encode("utf-8"))
    except OSError as error:
        raise AutostartError(f"could not write {target}: {error.strerror or error}") from error
    return target


def disable(
    *,
    platform: str = sys.platform,
    home: Path | None = None,
    registry: RegistryRunKey | None = None,
    system_dirs: Sequence[Path] | None = None,
) -> PurePath:
    """Stop starting the app at login. Doing it twice is harmless.

    On XDG desktops where a package installed a system-wide entry (the .deb puts one
    in ``/etc/xdg/autostart``), the user's entry becomes a ``Hidden=true`` one of the
    same name, which the spec says switches the system one off for this user only;
    otherwise the user's entry is removed.

    Args:
        platform: a ``sys.platform`` value.
        home: the user's home directory (see :func:`location`).
        registry: the ``Run`` key on Windows (see :func:`enable`).
        system_dirs: the XDG system config directories (see :func:`system_entries`).

    Returns:
        Where the entry was (see :func:`location`).

    Raises:
        AutostartError: the entry exists but could not be removed.
    """
    target = location(platform=platform, home=home)
    try:
        kind = _kind(platform)
        if kind == "windows":
            _registry(registry).delete(RUN_VALUE_NAME)
        elif kind == "xdg" and system_entries(system_dirs=system_dirs):
            _write_atomically(Path(target), hidden_entry().encode("utf-8"))
        else:
            Path(target).unlink(missing_ok=True)
    except OSError as error:
        raise AutostartError(f"could not remove {target}: {error.strerror or error}") from error
    return target


def is_enabled(
    *,
    platform: str = sys.platform,
    home: Path | None = None,
    registry: RegistryRunKey | None = None,
    system_dirs: Sequence[Path] | None = None,
) -> bool:
    """Whether the app is set to start at login.

    On XDG desktops the user's entry decides when there is one (an entry switched off
    with ``Hidden=true`` or ``X-GNOME-Autostart-enabled=false`` counts as off; an
    unreadable one too); otherwise a system-wide entry a package installed does.

    Args:
        platform: a ``sys.platform`` value.
        home: the user's home directory (see :func:`location`).
        registry: the ``Run`` key on Windows (see :func:`enable`).
        system_dirs: the XDG system config directories (see :func:`system_entries`).
    """
    target = location(platform=platform, home=home)
    kind = _kind(platform)
    if kind == "windows":
        return bool(_registry(registry).get(RUN_VALUE_NAME))
    if kind == "macos":
        return Path(target).is_file()
    own = _entry_is_on(Path(target))
    if own is not None:
        return own
    return any(_entry_is_on(path) for path in system_entries(system_dirs=system_dirs))


# --- the app's start -----------------------------------------------------------------


def set_enabled(enabled: bool, **where: Any) -> None:
    """Start the app at login (with :func:`launch_command`) or stop doing so.

    Args:
        enabled: the user's (or IT's) choice.
        **where: ``platform``, ``home``, ``registry``, ``system_dirs`` as for
            :func:`enable` and :func:`disable` (tests); the real ones by default.

    Raises:
        AutostartError: the entry could not be written or removed.
    """
    if enabled:
        # Where a system-wide entry is matters only to switching it off.
        enable(launch_command(), **{k: v for k, v in where.items() if k != "system_dirs"})
    else:
        disable(**where)


def reconcile(wanted: bool, *, managed: bool, **where: Any) -> bool:
    """Whether the app starts at login, settled as the app starts.

    Managed by IT: the entry is made to match ``wanted`` (a locked value, or IT's
    default while the user has not chosen; a user's own choice was applied when they
    made it), which is returned. Unmanaged: the entry is the truth and its state is
    returned, since the package's system-wide entry or the desktop's own session
    settings may have changed it since the user last chose.

    Args:
        wanted: the start-at-login preference in force.
        managed: whether IT's configuration sets it.
        **where: as for :func:`set_enabled`.

    Raises:
        AutostartError: IT's value could not be applied.
    """
    actual = is_enabled(**where)
    if not managed:
        return actual
    if actual != wanted:
        set_enabled(wanted, **where)
    return wanted
