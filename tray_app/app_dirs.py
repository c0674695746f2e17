"""Where the app's files go: platformdirs' answers, without importing platformdirs on
Linux and the other XDG desktops (issue 20).

platformdirs costs ~0.7 MiB of the idle app's memory (seven modules, and classes with a
property for every kind of directory of five platforms) for three paths read once at
start. On the XDG desktops the answers are a few lines of the XDG Base Directory rules,
written here the way platformdirs' ``Unix`` class applies them (an environment value is
used only when it is an absolute path; a relative ``HOME`` counts as unset and the
password database is asked instead), so a file is found where the earlier releases put
it. ``tests/tray_app/test_app_dirs.py`` compares every answer with platformdirs' under
generated environments. Windows, macOS, iOS and Android ask platformdirs itself.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys

__all__ = ["site_config_dirs", "user_config_dir", "user_data_dir", "user_log_dir"]


def _xdg_platform() -> bool:
    """Whether platformdirs would use its ``Unix`` (XDG) class here."""
    if sys.platform in ("win32", "darwin", "ios") or hasattr(sys, "getandroidapilevel"):
        return False
    return not (os.getenv("ANDROID_DATA") == "/data" and os.getenv("ANDROID_ROOT") == "/system")


def _xdg_dir(variable: str) -> str | None:
    value = os.environ.get(variable, "")
    return value if posixpath.isabs(value) else None


def _in_home(path: str) -> str:
    """``path`` (``~/...``) under the home directory, as platformdirs expands it.

    Raises:
        RuntimeError: No absolute home directory can be found.
    """
    home = os.environ.get("HOME")
    if home is not None and not posixpath.isabs(home):
        expanded = path
        with contextlib.suppress(ImportError, KeyError):
            import pwd

            expanded = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/") + path[1:] or "/"
    else:
        expanded = os.path.expanduser(path)
    if not posixpath.isabs(expanded):
        raise RuntimeError(
            f"could not determine the home directory for {path!r}, set an absolute HOME "
            "or XDG variable"
        )
    return expanded


def user_data_dir(app: str) -> str:
    """``$XDG_DATA_HOME/app``, by default ``~/.local/share/app``."""
    if not _xdg_platform():
        import platformdirs

        return platformdirs.user_data_dir(app)
    return os.path.join(_xdg_dir("XDG_DATA_HOME") or _in_home("~/.local/share"), app)


def user_config_dir(app: str) -> str:
    """``$XDG_CONFIG_HOME/app``, by default ``~/.config/app``."""
    if not _xdg_platform():
        import platformdirs

        return platformdirs.user_config_dir(app)
    return os.path.join(_xdg_dir("XDG_CONFIG_HOME") or _in_home("~/.config"), app)


def user_log_dir(app: str) -> str:
    """``$XDG_STATE_HOME/app/log``, by default ``~/.local/state/app/log``."""
    if not _xdg_platform():
        import platformdirs

        return platformdirs.user_log_dir(app)
    state = _xdg_dir("XDG_STATE_HOME") or _in_home("~/.local/state")
    return os.path.join(state, app, "log")


def site_config_dirs(app: str) -> list[str]:
    """Every absolute directory of ``$XDG_CONFIG_DIRS`` with ``app``, most important
    first; by default ``/etc/xdg/app`` (the XDG desktops only: see
    :func:`tray_app.managed.managed_config_locations` for the others)."""
    listed = [
        path
        for path in os.environ.get("XDG_CONFIG_DIRS", "").split(os.pathsep)
        if posixpath.isabs(path)
    ]
    return [os.path.join(path, app) for path in listed or ["/etc/xdg"]]
