"""The installers as IT gets them: ``scripts/build-installers`` builds the PyInstaller
bundle and the .deb once per session (into a temporary directory); the tests run the
bundle, read the package, install it on this machine with apt, start the INSTALLED app on
a real (virtual) desktop against a real server that it finds only through the managed
configuration file, and purge it again.

The desktop is the end-to-end tests' (tests/e2e/desktop.py): Xvfb, a private D-Bus
session bus, gnome-keyring, xfconfd, xfce4-notifyd and xfce4-panel as the tray host. The
app's tray icon is found by the pixels of the panel, its login by its own history file
reaching the server's latest seq. Nothing is mocked.

Installing needs root (CI runs as root); without root, or without Debian's ``dpkg-dev``,
the tests are skipped, except under CI (``CI`` set), where that is a failure. The machine
is restored even when a test fails: the package is purged and the managed file that was
there before (if any) is put back.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.desktop import RestUser, TrayDesktop, read_store_cursor, user_session, wait_for
from tests.fixtures.services import ServerFactory
from tests.tray_app.conftest import client_env
from tray_app import __version__
from tray_app.store.db import account_database_path
from tray_app.store.secrets import TokenVault, keyring_entry_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-installers"
VERSION_HELPER = REPO_ROOT / "resources" / "packaging" / "version.py"
PACKAGE = "tray-notifier"
INSTALL_DIR = Path("/opt/tray-notifier")
LAUNCHER = Path("/usr/bin/tray-notifier")
MANAGED_FILE = Path("/etc/xdg/tray-notifier/managed.json")
#: Where the package puts files, and where anything it left behind would be.
WATCHED = ("/opt", "/usr/bin", "/usr/share/applications", "/usr/share/icons/hicolor", "/etc/xdg")
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
#: What the client never needs: the server, the build machine's tools and test kit, the
#: Qt pieces build.spec leaves out.
UNWANTED = re.compile(
    r"/(backend|django|rest_framework|channels|daphne|uvicorn|matplotlib|numpy|PIL|pygments"
    r"|tests?|_?pytest|pytestqt|hypothesis|tkinter|_tkinter|IPython|setuptools|bench)(/|\.|$)"
    r"|/translations/|wayland|eglfs|libqgtk3|libgtk-3|libX11\.so|libxcb[^/]*\.so"
    r"|libfontconfig|libglib-2\.0|libdbus-1\.so",
)
WAIT = 30.0
TOAST_TITLE = "Hello from the installed package"
APT_LOCK_WAIT = 300.0


def _version_helper() -> Any:
    """resources/packaging/version.py, loaded from its file (it is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tray_notifier_version", VERSION_HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _required(*, root: bool = False) -> None:
    """Skip without what the installers need; under CI the absence is a failure."""
    missing = [tool for tool in ("dpkg-deb", "dpkg-shlibdeps") if shutil.which(tool) is None]
    problems = [f"{', '.join(missing)} not installed (apt: dpkg-dev)"] if missing else []
    if root and os.geteuid() != 0:
        problems.append("installing a .deb needs root")
    if not problems:
        return
    if os.environ.get("CI"):
        pytest.fail("; ".join(problems))
    pytest.skip("; ".join(problems))


# --- the build, once -------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What one run of ``scripts/build-installers`` produced."""

    bundle: Path
    deb: Path
    seconds: float
    output: str

    @property
    def executable(self) -> Path:
        return self.bundle / "tray-notifier"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The bundle and the .deb, built by the documented command into a temporary dist.

    Once per run, also under pytest-xdist (scripts/test): the first worker to ask builds
    into the temporary directory its workers share while holding a lock there; the others
    wait on the lock and take what it recorded (a failed build records nothing: each
    worker then builds, and fails, on its own)."""
    _required()
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with (shared / "installers.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes, before the tests
        record = shared / "installers.json"
        if record.exists():
            fields = json.loads(record.read_text("utf-8"))
            made = Built(
                bundle=Path(fields["bundle"]),
                deb=Path(fields["deb"]),
                seconds=fields["seconds"],
                output=fields["output"],
            )
        else:
            made = _build(Path(tempfile.mkdtemp(prefix="installers-", dir=shared)))
            record.write_text(
                json.dumps(
                    {
                        "bundle": str(made.bundle),
                        "deb": str(made.deb),
                        "seconds": made.seconds,
                        "output": made.output,
                    }
                ),
                "utf-8",
            )
    return made


def _build(root: Path) -> Built:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--dist", str(root / "dist"), "--work", str(root / "build")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    debs = sorted((root / "dist").glob("*.deb"))
    assert len(debs) == 1, output
    return Built(
        bundle=root / "dist" / "tray-notifier",
        deb=debs[0],
        seconds=time.monotonic() - started,
        output=output,
    )


def _run(*argv: str | Path, timeout: float = 60) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result.stdout


# --- one version ------------------------------------------------------------------------


def test_the_version_has_one_source_and_each_installer_form_sorts_right() -> None:
    helper = _version_helper()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tray_app.__version__"}
    assert helper.app_version() == __version__

    # Debian must order pre-releases before their release and post-releases after it.
    ordered = ["1.2.0.dev1", "1.2.0rc1", "1.2.0", "1.2.0.post1", "1.2.1"]
    as_debian = [helper.debian_version(version) for version in ordered]
    assert as_debian[1] == "1.2.0~rc1"
    for lower, higher in itertools.pairwise(as_debian):
        assert (
            subprocess.run(
                ["dpkg", "--compare-versions", lower, "lt", higher], check=False
            ).returncode
            == 0
        ), (lower, higher)
    assert helper.windows_version("2.5") == (2, 5, 0, 0)
    with pytest.raises(helper.VersionError):
        helper.debian_version("1.0-beta")
    with pytest.raises(helper.VersionError):
        helper.windows_version("70000.1")


def test_the_windows_version_info_is_what_pyinstaller_reads() -> None:
    """PyInstaller reads the file with ``eval`` into its VSVersionInfo classes; its own
    loader imports Windows-only modules (pefile, win32api), so the same ``eval`` runs here
    with recording stand-ins for those classes."""
    helper = _version_helper()
    recorded: dict[str, Any] = {}

    def fixed_file_info(**fields: Any) -> dict[str, Any]:
        recorded["ffi"] = fields
        return fields

    def string_struct(name: str, value: str) -> tuple[str, str]:
        recorded.setdefault("strings", {})[name] = value
        return name, value

    namespace = {
        "VSVersionInfo": lambda ffi, kids: (ffi, kids),
        "FixedFileInfo": fixed_file_info,
        "StringFileInfo": lambda kids: kids,
        "StringTable": lambda name, kids: (name, kids),
        "StringStruct": string_struct,
        "VarFileInfo": lambda kids: kids,
        "VarStruct": lambda name, kids: (name, kids),
    }
    eval(helper.windows_version_info("3.4.5rc2"), namespace)
    assert recorded["ffi"]["filevers"] == (3, 4, 5, 0)
    assert recorded["ffi"]["prodvers"] == (3, 4, 5, 0)
    assert recorded["strings"]["FileVersion"] == "3.4.5rc2"
    assert recorded["strings"]["ProductVersion"] == "3.4.5rc2"
    assert recorded["strings"]["OriginalFilename"] == "tray-notifier.exe"


def test_the_desktop_entry_is_valid() -> None:
    if shutil.which("desktop-file-validate") is None:
        pytest.fail("desktop-file-validate is missing (apt: desktop-file-utils)")
    entry = REPO_ROOT / "resources" / "tray-notifier.desktop"
    result = subprocess.run(
        ["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
    assert not result.stdout.strip(), result.stdout  # no hints either
    text = entry.read_text("utf-8")
    # tray_app/autostart.py's conventions: the same file name and icon name.
    from tray_app.autostart import DEFAULT_ICON, DESKTOP_FILE_NAME

    assert entry.name == DESKTOP_FILE_NAME
    assert f"\nIcon={DEFAULT_ICON}\n" in text
    assert "\nExec=tray-notifier\n" in text


# --- the bundle -------------------------------------------------------------------------


def test_the_bundle_runs_and_holds_only_what_the_client_needs(built: Built) -> None:
    assert _run(built.executable, "--version").strip() == f"tray-notifier {__version__}"
    assert "--headless" in _run(built.executable, "--help")
    files = [path for path in built.bundle.rglob("*") if not path.is_dir()]
    unwanted = [
        str(path) for path in files if UNWANTED.search(f"/{path.relative_to(built.bundle)}")
    ]
    assert not unwanted, unwanted
    internal = built.bundle / "_internal"
    qt = internal / "PySide6" / "Qt"
    assert (qt / "plugins" / "platforms" / "libqxcb.so").is_file()
    assert (qt / "plugins" / "imageformats" / "libqsvg.so").is_file()
    assert (qt / "plugins" / "iconengines" / "libqsvgicon.so").is_file()
    assert sorted(p.name for p in (qt / "plugins" / "platforms").iterdir()) == ["libqxcb.so"]
    for size in ICON_SIZES:
        assert (internal / "resources" / "icons" / f"tray-notifier-{size}.png").is_file()
    assert (internal / "resources" / "tray-notifier.desktop").is_file()
    # Every link inside resolves (no link to a file that was left out).
    dangling = [str(path) for path in files if path.is_symlink() and not path.exists()]
    assert not dangling, dangling


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text("utf-8", "replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]


def test_the_bundle_runs_headless_against_a_real_server(
    built: Built, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """``--headless`` in the frozen app: login over REST, catch-up and a live frame over
    the socket, the SQLite store, one JSON line per notification on stdout."""
    server = server_factory(demo=True)
    stdout, stderr = tmp_path / "stdout.jsonl", tmp_path / "stderr.txt"
    alice = RestUser(server.url, "alice")
    _unread, latest = alice.state()
    alice.close()
    assert latest > 0, "the demo data gives alice notifications to catch up on"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                str(built.executable),
                *("--headless", "--session-only", "--server", server.url),
                *("--username", "alice"),
            ],
            env=client_env(tmp_path / "client"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        wait_for(
            lambda: len(_json_lines(stdout)) >= latest,
            what=f"{latest} catch-up lines",
            timeout=WAIT,
        )
        assert {line["arrival"] for line in _json_lines(stdout)} == {"catch_up"}
        admin = RestUser(server.url, "admin")
        try:
            admin.publish("Hello from the frozen app's test")
        finally:
            admin.close()
        wait_for(
            lambda: any(
                line["title"] == "Hello from the frozen app's test" and line["arrival"] == "live"
                for line in _json_lines(stdout)
            ),
            what="the live notification line",
            timeout=WAIT,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{stderr.read_text('utf-8', 'replace')}") from error
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0, stderr.read_text("utf-8", "replace")
    assert "Traceback" not in stderr.read_text("utf-8", "replace")


# --- the package ------------------------------------------------------------------------


def _control(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in _run("dpkg-deb", "--field", deb).splitlines():
        if line.startswith((" ", "\t")):
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _depends(fields: dict[str, str]) -> set[str]:
    """Every package name in Depends (alternatives included), without versions."""
    names = set()
    for clause in fields["Depends"].split(","):
        for alternative in clause.split("|"):
            names.add(alternative.strip().split(" ")[0].split(":")[0])
    return names


def test_the_deb_has_the_layout_the_metadata_and_nothing_else(built: Built, tmp_path: Path) -> None:
    helper = _version_helper()
    architecture = _run("dpkg", "--print-architecture").strip()
    version = helper.debian_version(__version__)
    assert built.deb.name == f"tray-notifier_{version}_{architecture}.deb"
    fields = _control(built.deb)
    assert fields["Package"] == PACKAGE
    assert fields["Version"] == version
    assert fields["Architecture"] == architecture
    depends = _depends(fields)
    for library in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxkbcommon-x11-0"):
        assert library in depends, fields["Depends"]
    assert "dbus" in depends
    info = _run("dpkg-deb", "--info", built.deb)
    for script in ("postinst", "postrm", "md5sums"):
        assert script in info, info

    listing = _run("dpkg-deb", "--contents", built.deb).splitlines()
    entries = {}
    for line in listing:
        # perms owner/group size date time path [-> target]
        parts = line.split(None, 5)
        path, _, target = parts[5].partition(" -> ")
        entries[path.rstrip("/")] = (parts[0], parts[1], target)
    assert {owner for _perms, owner, _target in entries.values()} == {"root/root"}
    assert entries["./usr/bin/tray-notifier"][2] == "/opt/tray-notifier/tray-notifier"
    expected = {
        "./opt/tray-notifier/tray-notifier",
        "./usr/share/applications/tray-notifier.desktop",
        "./etc/xdg/autostart/tray-notifier.desktop",
        "./usr/share/icons/hicolor/scalable/apps/tray-notifier.svg",
        "./usr/share/doc/tray-notifier/copyright",
        "./usr/share/doc/tray-notifier/managed.json.example",
        *(f"./usr/share/icons/hicolor/{n}x{n}/apps/tray-notifier.png" for n in ICON_SIZES),
    }
    assert expected <= set(entries), sorted(expected - set(entries))
    assert entries["./opt/tray-notifier/tray-notifier"][0] == "-rwxr-xr-x"
    # Only these trees; nothing under IT's managed configuration folder.
    allowed = ("./opt/tray-notifier", "./usr/bin", "./usr/share", "./etc/xdg/autostart")
    strays = [
        path
        for path in entries
        if path not in (".", "./opt", "./usr", "./etc", "./etc/xdg")
        and not path.startswith(allowed)
    ]
    assert not strays, strays
    unwanted = [path for path in entries if UNWANTED.search(path[1:])]
    assert not unwanted, unwanted

    extracted = tmp_path / "extracted"
    _run("dpkg-deb", "--extract", built.deb, extracted)
    for entry in ("usr/share/applications", "etc/xdg/autostart"):
        desktop_file = extracted / entry / "tray-notifier.desktop"
        result = subprocess.run(
            ["desktop-file-validate", str(desktop_file)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout
        assert not result.stdout.strip(), result.stdout
    example = json.loads(
        (extracted / "usr/share/doc/tray-notifier/managed.json.example").read_text("utf-8")
    )
    assert isinstance(example["server_url"], str)


def _needed(path: Path) -> list[str]:
    """The sonames an ELF file links directly (``readelf``'s NEEDED); [] for non-ELF."""
    result = subprocess.run(
        ["readelf", "--dynamic", str(path)], capture_output=True, text=True, check=False
    )
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout)


def test_depends_names_the_package_of_every_library_the_bundle_takes_from_the_system(
    built: Built,
) -> None:
    """Checked apart from dpkg-shlibdeps: each soname an ELF file of the bundle links and
    the bundle does not carry is found on this system (``ldconfig``) in a package that
    Depends names."""
    files = [path for path in built.bundle.rglob("*") if path.is_file()]
    carried = {path.name for path in built.bundle.rglob("*")}
    from_system = {soname for path in files for soname in _needed(path)} - carried
    assert "libxcb-icccm.so.4" in from_system  # the check sees what it should
    system = dict(
        re.findall(r"^\s+(\S+) \(libc6,x86-64[^)]*\) => (\S+)$", _run("ldconfig", "-p"), re.M)
        or re.findall(r"^\s+(\S+) \([^)]*\) => (\S+)$", _run("ldconfig", "-p"), re.M)
    )
    missing = sorted(from_system - set(system))
    assert not missing, f"not on this system: {missing}"
    depends = _depends(_control(built.deb))
    undeclared = []
    for soname in sorted(from_system):
        search = subprocess.run(
            ["dpkg-query", "--search", f"*/{soname}"], capture_output=True, text=True, check=False
        )
        owners = {
            line.split(":")[0]
            for line in search.stdout.splitlines()
            if line.rstrip().endswith(f"/{soname}")
        }
        if not owners & depends:
            undeclared.append(f"{soname} (from {sorted(owners) or 'no package'})")
    assert not undeclared, undeclared


# --- installed, run, purged -------------------------------------------------------------


def _listing() -> set[str]:
    found: set[str] = set()
    for top in WATCHED:
        for directory, subdirectories, files in os.walk(top):
            found.update(os.path.join(directory, name) for name in subdirectories + files)
    return found


def _installed() -> bool:
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Status}", PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() not in ("", "not-installed")


def _dpkg(*argv: str) -> str:
    """Run a package tool, waiting while another one (apt, another test) holds the lock."""
    deadline = time.monotonic() + APT_LOCK_WAIT
    while True:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=APT_LOCK_WAIT,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if result.returncode == 0:
            return result.stdout + result.stderr
        locked = "lock" in result.stderr.lower()
        if not locked or time.monotonic() > deadline:
            raise AssertionError(f"{argv} failed:\n{result.stdout}{result.stderr}")
        time.sleep(0.5)  # another package manager run holds the lock: ask again


@dataclass
class Machine:
    """This machine before the package came: its files, and IT's managed file if any."""

    before: set[str]
    managed_backup: bytes | None
    managed_folder_existed: bool


@pytest.fixture
def machine() -> Iterator[Machine]:
    """Restores the machine whatever the test did: purges the package, removes the
    managed file the test wrote and puts back one that was there before."""
    _required(root=True)
    if _installed():
        pytest.fail(
            f"{PACKAGE} is already installed on this machine; the test installs and purges "
            "it, so remove it first (dpkg --purge tray-notifier)"
        )
    state = Machine(
        before=_listing(),
        managed_backup=MANAGED_FILE.read_bytes() if MANAGED_FILE.exists() else None,
        managed_folder_existed=MANAGED_FILE.parent.exists(),
    )
    try:
        yield state
    finally:
        if _installed():
            _dpkg("dpkg", "--purge", PACKAGE)
        if state.managed_backup is not None:
            MANAGED_FILE.write_bytes(state.managed_backup)
        else:
            MANAGED_FILE.unlink(missing_ok=True)
            if not state.managed_folder_existed:
                with contextlib.suppress(OSError):
                    MANAGED_FILE.parent.rmdir()


@dataclass
class InstalledApp:
    process: subprocess.Popen[bytes]
    root: Path
    data_dir: Path
    config_dir: Path
    log_dir: Path
    output: Path

    def text(self) -> str:
        logs = "".join(
            path.read_text("utf-8", "replace") for path in sorted(self.log_dir.glob("*.log"))
        )
        return f"{self.output.read_text('utf-8', 'replace')}\n--- log ---\n{logs}"


@contextlib.contextmanager
def installed_app(desktop: TrayDesktop, root: Path) -> Iterator[InstalledApp]:
    """``/usr/bin/tray-notifier --username alice`` as a user's session starts it: no
    server address anywhere but the managed file, its files in private folders, the
    password for the first login from ``TRAY_NOTIFIER_PASSWORD``."""
    session = user_session(desktop, root, password="demo")
    del session.env["TRAY_NOTIFIER_MANAGED_FILE"]  # the machine's, which the test wrote
    output = root / "output.log"
    with output.open("wb") as sink:
        process = session.start([str(LAUNCHER), "--username", "alice"], sink)
    app = InstalledApp(process, root, session.data, session.config, session.logs, output)
    try:
        yield app
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(session.runtime_dir, ignore_errors=True)


def test_the_installed_app_finds_its_server_in_the_managed_file_and_purge_leaves_nothing(
    built: Built, machine: Machine, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(demo=True)

    # apt resolves the Depends (all present on CI); dpkg does the install.
    _dpkg(
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        f"DPkg::Lock::Timeout={APT_LOCK_WAIT:.0f}",
        str(built.deb),
    )
    assert _installed()
    assert LAUNCHER.resolve() == INSTALL_DIR / "tray-notifier"
    assert _run(LAUNCHER, "--version").strip() == f"tray-notifier {__version__}"
    # Every library of the installed bundle resolves, against itself and the system.
    unresolved = []
    for path in INSTALL_DIR.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
            unresolved += [
                f"{path}: {line.strip()}" for line in ldd.stdout.splitlines() if "not found" in line
            ]
    assert not unresolved, unresolved

    MANAGED_FILE.parent.mkdir(parents=True, exist_ok=True)
    MANAGED_FILE.write_text(json.dumps({"server_url": server.url}) + "\n", encoding="utf-8")

    alice = RestUser(server.url, "alice")
    try:
        _unread, latest = alice.state()
        assert latest > 0, "the demo data gives alice notifications"
        with TrayDesktop(tmp_path / "desktop", timeout=WAIT) as desktop:
            desktop.start()
            with installed_app(desktop, tmp_path / "app") as app:
                store = account_database_path(app.data_dir, server.url, "alice")
                try:
                    area = desktop.wait_for_tray_icon()
                    desktop.wait_for_icon(area, lambda c: c.live, what="the blue (connected) tile")
                    # Logged in to THIS server (named only in the managed file), caught up.
                    wait_for(
                        lambda: read_store_cursor(store) == latest,
                        what=f"the app's history for alice on {server.url} to reach {latest}",
                        timeout=WAIT,
                    )
                    # The frozen toast path (jeepney over the session bus) reaches the
                    # notification daemon.
                    with (
                        closing(RestUser(server.url, "admin")) as admin,
                        desktop.monitor_notify() as monitor,
                    ):
                        admin.publish(TOAST_TITLE, message="Installed from the .deb")
                        monitor.wait_for(lambda calls: any(c.summary == TOAST_TITLE for c in calls))
                except Exception as error:
                    raise AssertionError(f"{error}\n{app.text()}") from error
                settings = json.loads((app.config_dir / "settings.json").read_text("utf-8"))
                assert settings["server_url"] == server.url
                # The frozen keyring stack (SecretService, secretstorage) kept the login.
                assert "keyring unusable" not in app.text(), app.text()
                assert desktop.keyring_holds(
                    TokenVault.SERVICE, keyring_entry_name(server.url, "alice")
                )
                app.process.send_signal(signal.SIGTERM)
                assert app.process.wait(timeout=20) == 0, app.text()
                assert "Traceback" not in app.text(), app.text()
                # Qt says so when a plugin it wants is missing from the bundle.
                printed = app.output.read_text("utf-8", "replace")
                assert not re.search(r"^qt\.|QPA|[Pp]lugin", printed, re.MULTILINE), printed
    finally:
        alice.close()

    _dpkg("dpkg", "--purge", PACKAGE)
    assert not _installed()
    # The managed file is IT's, not the package's: the purge leaves it; put back what was.
    assert MANAGED_FILE.exists()
    if machine.managed_backup is not None:
        MANAGED_FILE.write_bytes(machine.managed_backup)
    else:
        MANAGED_FILE.unlink()
        if not machine.managed_folder_existed:
            MANAGED_FILE.parent.rmdir()
    after = _listing()
    assert after - machine.before == set(), sorted(after - machine.before)
    assert machine.before - after == set(), sorted(machine.before - after)
