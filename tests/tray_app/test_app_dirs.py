"""The app's directories on the XDG desktops: the same answers as platformdirs'."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from platformdirs.unix import Unix

from tray_app import app_dirs

APP = "tray-notifier"
VARIABLES = ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CONFIG_DIRS")

# Unset, empty, relative (ignored by both), absolute with and without a trailing slash,
# and lists for XDG_CONFIG_DIRS with relative and empty entries among absolute ones.
_path = st.sampled_from(
    ["", "relative/dir", "./here", "/abs/dir", "/abs/dir/", "/", "/with space/d", "~/tilde"]
)
_value = st.one_of(st.none(), _path, st.lists(_path, max_size=4).map(os.pathsep.join))


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@given(st.fixed_dictionaries(dict.fromkeys(VARIABLES, _value)))
def test_every_directory_is_where_platformdirs_puts_it(values: dict[str, str | None]) -> None:
    with environment(values):
        theirs = Unix(APP)
        assert app_dirs.user_data_dir(APP) == theirs.user_data_dir
        assert app_dirs.user_config_dir(APP) == theirs.user_config_dir
        assert app_dirs.user_log_dir(APP) == theirs.user_log_dir
        assert app_dirs.site_config_dirs(APP) == Unix(APP, multipath=True).site_config_dir.split(
            os.pathsep
        )


def test_the_app_does_not_import_platformdirs_on_linux() -> None:
    """What the XDG desktops' answers are for (~0.7 MiB): checked in the modules the
    running app imports, in this process, where platformdirs is loaded by this test."""
    script = (
        "import sys, tray_app.__main__, tray_app.ui.app, tray_app.logs, tray_app.managed\n"
        "from tray_app import config, logs, managed\n"
        "config.data_dir(); config.config_dir(); logs.log_dir()\n"
        "managed.managed_config_locations()\n"
        "print(sorted(m for m in sys.modules if m.startswith('platformdirs')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert done.stdout.strip() == "[]"
