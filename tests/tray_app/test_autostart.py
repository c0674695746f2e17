"""Start-at-login entries for Linux (XDG), macOS (launchd) and Windows (Run key).

Linux entries are checked by desktop-file-validate and launched by GLib's own
Exec parser (``gio launch``), so the quoting is proven by the real consumer.
The Windows registry cannot exist here, so its writer is a dict-backed stand-in
implementing :class:`tray_app.autostart.RegistryRunKey`.
"""

from __future__ import annotations

import configparser
import json
import plistlib
import shutil
import subprocess
import sys
import time
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest

from tray_app import autostart

ODD_ARGUMENTS = [
    "plain",
    "with space",
    'a "quoted" word',
    "back\\slash",
    "$HOME",
    "`uname`",
    "100%",
    "%f",
    "key=value",
    "it's",
    "",
    "tab\there",
    "~",
    "a;b|c&d",
    "(x)<y>*?#",
    "ünïcödé",
]


class DictRunKey:
    """The Run key as a dict: the registry does not exist on this machine."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def _read_desktop(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


# --- Linux ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_system_entries(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the machine's /etc/xdg (an installed .deb puts an entry there) out of these tests."""
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path_factory.mktemp("no-system-config")))


def test_linux_entry_is_written_under_the_home_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    command = ["/opt/tray-notifier/tray-notifier", "--minimized"]
    assert not autostart.is_enabled(platform="linux", home=home)
    path = autostart.enable(command, platform="linux", home=home)
    assert path == home / ".config" / "autostart" / "tray-notifier.desktop"
    entry = _read_desktop(Path(path))
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "/opt/tray-notifier/tray-notifier --minimized"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    assert entry["Name"] == "Tray Notifier"
    assert entry["Icon"] == "tray-notifier"
    assert autostart.is_enabled(platform="linux", home=home)


def test_linux_honours_xdg_config_home_without_an_explicit_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = autostart.enable(["/usr/bin/tray-notifier"], platform="linux")
    assert path == tmp_path / "xdg" / "autostart" / "tray-notifier.desktop"
    assert Path(path).is_file()
    autostart.disable(platform="linux")
    assert not Path(path).exists()


def test_linux_disable_is_idempotent(tmp_path: Path) -> None:
    autostart.enable(["/usr/bin/tray-notifier"], platform="linux", home=tmp_path)
    autostart.disable(platform="linux", home=tmp_path)
    autostart.disable(platform="linux", home=tmp_path)
    assert not autostart.is_enabled(platform="linux", home=tmp_path)
    assert not Path(autostart.location(platform="linux", home=tmp_path)).exists()


def _system_entry(directory: Path, *extra: str) -> Path:
    path = directory / "autostart" / autostart.DESKTOP_FILE_NAME
    path.parent.mkdir(parents=True)
    text = autostart.desktop_entry(["/usr/bin/tray-notifier"]) + "".join(f"{x}\n" for x in extra)
    path.write_text(text)
    return path


def test_linux_a_packaged_system_entry_counts_until_the_user_switches_it_off(
    tmp_path: Path,
) -> None:
    home, system = tmp_path / "home", tmp_path / "etc-xdg"
    assert not autostart.is_enabled(platform="linux", home=home, system_dirs=[system])
    _system_entry(system)
    assert autostart.system_entries(system_dirs=[tmp_path / "elsewhere", system]) == [
        system / "autostart" / autostart.DESKTOP_FILE_NAME
    ]
    assert autostart.is_enabled(platform="linux", home=home, system_dirs=[system])

    # Switching off writes a Hidden=true entry of the same name: the system file stays
    # (it is the package's), and for this user the app no longer starts.
    target = Path(autostart.disable(platform="linux", home=home, system_dirs=[system]))
    assert "Hidden=true" in target.read_text()
    assert (system / "autostart" / autostart.DESKTOP_FILE_NAME).is_file()
    assert not autostart.is_enabled(platform="linux", home=home, system_dirs=[system])

    # Switching back on replaces the hidden entry with a real one.
    autostart.enable(["/usr/bin/tray-notifier"], platform="linux", home=home)
    assert autostart.is_enabled(platform="linux", home=home, system_dirs=[system])


def test_linux_a_system_entry_switched_off_by_it_counts_as_off(tmp_path: Path) -> None:
    _system_entry(tmp_path, "Hidden=true")
    assert not autostart.is_enabled(platform="linux", home=tmp_path / "h", system_dirs=[tmp_path])


def test_desktop_file_validate_accepts_the_hidden_entry(tmp_path: Path) -> None:
    validator = shutil.which("desktop-file-validate")
    assert validator, "desktop-file-validate is missing: apt-get install desktop-file-utils"
    path = tmp_path / autostart.DESKTOP_FILE_NAME
    path.write_text(autostart.hidden_entry())
    done = subprocess.run(
        [validator, str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "override", ["Hidden=true", "X-GNOME-Autostart-enabled=false", "garbage without section"]
)
def test_linux_entry_switched_off_by_the_desktop_counts_as_off(
    tmp_path: Path, override: str
) -> None:
    path = Path(autostart.enable(["/usr/bin/tray-notifier"], platform="linux", home=tmp_path))
    text = path.read_text().replace("X-GNOME-Autostart-enabled=true\n", "")
    if override.startswith("garbage"):
        path.write_text(override)
    else:
        path.write_text(text + override + "\n")
    assert not autostart.is_enabled(platform="linux", home=tmp_path)


def test_desktop_file_validate_accepts_the_entry(tmp_path: Path) -> None:
    validator = shutil.which("desktop-file-validate")
    assert validator, "desktop-file-validate is missing: apt-get install desktop-file-utils"
    path = autostart.enable(
        [sys.executable, "-m", "tray_app", *ODD_ARGUMENTS], platform="linux", home=tmp_path
    )
    result = subprocess.run(
        [validator, str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""  # not even a hint


def test_glib_runs_exactly_the_command_we_wrote(tmp_path: Path) -> None:
    """GLib's own Exec parser (``gio launch``) must hand every odd argument back unchanged."""
    gio = shutil.which("gio")
    assert gio, "gio is missing: apt-get install libglib2.0-bin"
    script = tmp_path / "dump argv.py"  # a space in the program's own path, too
    script.write_text("import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n")
    output = tmp_path / "argv.json"
    path = autostart.enable(
        [sys.executable, str(script), str(output), *ODD_ARGUMENTS],
        platform="linux",
        home=tmp_path / "home",
    )
    subprocess.run([gio, "launch", str(path)], check=True, timeout=30)
    deadline = time.monotonic() + 20
    while not output.exists() or not output.read_text():
        assert time.monotonic() < deadline, "the launched command never ran"
        time.sleep(0.05)  # polling a file another process writes
    assert json.loads(output.read_text()) == ODD_ARGUMENTS


def test_exec_line_quoting_per_spec() -> None:
    assert autostart.exec_line(["/usr/bin/app", "simple"]) == "/usr/bin/app simple"
    assert autostart.exec_line(["/usr/bin/app", "two words"]) == '/usr/bin/app "two words"'
    assert autostart.exec_line(["/usr/bin/app", "50%"]) == "/usr/bin/app 50%%"
    # Quoting escapes \ to \\, then the string-value rule doubles both: four in the file.
    assert autostart.exec_line(["/usr/bin/app", "a\\b"]) == '/usr/bin/app "a\\\\\\\\b"'
    assert autostart.exec_line(["/usr/bin/app", "$x"]) == '/usr/bin/app "\\\\$x"'
    assert autostart.exec_line(["/usr/bin/app", ""]) == '/usr/bin/app ""'
    with pytest.raises(ValueError, match="empty"):
        autostart.exec_line([])
    with pytest.raises(ValueError, match="NUL"):
        autostart.exec_line(["/usr/bin/app", "a\0b"])


def test_unwritable_location_raises_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "autostart").write_text("a file where a directory belongs")
    with pytest.raises(autostart.AutostartError) as caught:
        autostart.enable(["/usr/bin/tray-notifier"], platform="linux", home=home)
    assert "autostart" in str(caught.value)
    assert caught.value.user_message.startswith("Couldn't change whether the app starts")


def test_launch_command_starts_this_app(tmp_path: Path) -> None:
    command = autostart.launch_command()
    assert command[0] == sys.executable
    result = subprocess.run(
        [*command, "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed package must be found
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tray-notifier ")


def test_launch_command_when_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert autostart.launch_command() == [sys.executable]


def test_autostart_error_is_an_os_error() -> None:
    assert issubclass(autostart.AutostartError, OSError)


# --- macOS ---------------------------------------------------------------------------


def test_macos_launch_agent(tmp_path: Path) -> None:
    command = ["/Applications/Tray Notifier.app/Contents/MacOS/tray-notifier", "--minimized"]
    assert not autostart.is_enabled(platform="darwin", home=tmp_path)
    path = autostart.enable(command, platform="darwin", home=tmp_path)
    assert path == tmp_path / "Library" / "LaunchAgents" / "com.traynotifier.app.plist"
    agent = plistlib.loads(Path(path).read_bytes())
    assert agent["Label"] == "com.traynotifier.app"
    assert agent["ProgramArguments"] == command
    assert agent["RunAtLoad"] is True
    assert autostart.is_enabled(platform="darwin", home=tmp_path)
    autostart.disable(platform="darwin", home=tmp_path)
    assert not Path(path).exists()
    assert not autostart.is_enabled(platform="darwin", home=tmp_path)


def test_macos_plist_is_well_formed_for_plutil_readers(tmp_path: Path) -> None:
    path = autostart.enable(["/usr/local/bin/tray-notifier"], platform="darwin", home=tmp_path)
    text = Path(path).read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "<!DOCTYPE plist" in text
    assert "<key>RunAtLoad</key>" in text


# --- Windows -------------------------------------------------------------------------


def test_windows_run_value(tmp_path: Path) -> None:
    registry = DictRunKey()
    command = [r"C:\Program Files\Tray Notifier\tray-notifier.exe", "--minimized"]
    assert not autostart.is_enabled(platform="win32", registry=registry)
    where = autostart.enable(command, platform="win32", registry=registry)
    assert where == PureWindowsPath(
        r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\TrayNotifier"
    )
    assert registry.values == {
        "TrayNotifier": '"C:\\Program Files\\Tray Notifier\\tray-notifier.exe" --minimized'
    }
    assert autostart.is_enabled(platform="win32", registry=registry)
    autostart.disable(platform="win32", registry=registry)
    autostart.disable(platform="win32", registry=registry)
    assert registry.values == {}
    assert not autostart.is_enabled(platform="win32", registry=registry)


@pytest.mark.skipif(sys.platform == "win32", reason="only where winreg does not exist")
def test_windows_without_a_registry_writer_is_a_clear_error() -> None:
    with pytest.raises(autostart.AutostartError, match="registry"):
        autostart.enable(["tray-notifier.exe"], platform="win32")


def test_at_start_an_unmanaged_entry_is_the_truth(tmp_path: Path) -> None:
    # The desktop (or the package's system-wide entry) may have changed it since the
    # user chose: the preference follows the entry and the entry is left alone.
    where: dict[str, Any] = {"platform": "linux", "home": tmp_path, "system_dirs": []}
    assert autostart.reconcile(True, managed=False, **where) is False
    assert not autostart.is_enabled(**where)
    autostart.set_enabled(True, **where)
    assert autostart.reconcile(False, managed=False, **where) is True
    assert autostart.is_enabled(**where)


def test_at_start_a_managed_entry_is_made_to_match_it(tmp_path: Path) -> None:
    where: dict[str, Any] = {"platform": "linux", "home": tmp_path, "system_dirs": []}
    assert autostart.reconcile(True, managed=True, **where) is True
    assert autostart.is_enabled(**where)
    assert autostart.reconcile(False, managed=True, **where) is False
    assert not autostart.is_enabled(**where)
