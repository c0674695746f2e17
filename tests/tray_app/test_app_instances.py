"""The tray app (``python -m tray_app``) as users start it, when starting goes wrong: a
second launch, a crashed instance's leftovers, and a keyring that is missing or locked.

Already covered elsewhere, and not repeated here: :class:`SingleInstance` on its own
(hand-over, a stale socket of a SIGKILLed holder, simultaneous launches:
tests/tray_app/ui/test_single_instance.py), the vault against a locked or vanished
keyring in process (tests/tray_app/store/test_secrets.py) and the headless client with
no D-Bus session (tests/tray_app/test_headless.py). These tests run the whole app: the
real demo server on port 0, the app on Qt's offscreen platform with its files under
``tmp_path``, observed through its exit code, its output, its log and its SQLite store.
The locked keyring is a real gnome-keyring-daemon whose login keyring exists but was
started without ``--unlock`` (as after a login that did not unlock it).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.desktop import read_store_cursor
from tests.fixtures.services import RunningServer
from tests.tray_app.conftest import client_env, require_programs
from tests.tray_app.desktop_session import DesktopSession
from tray_app.store.db import account_database_path

WAIT = 30.0
# A launch that finds the app running must be gone this fast (interpreter and Qt start
# included); SingleInstance itself waits at most two seconds for the answer.
HAND_OVER_BOUND = 10.0
# From launch to caught up, keyring probe included: a keyring that hangs would blow it.
START_BOUND = 20.0
SECRETS_NAME = "org.freedesktop.secrets"


class App:
    """One ``python -m tray_app`` process; output to a file, read when needed."""

    def __init__(self, env: dict[str, str], root: Path, *args: str) -> None:
        self.output_path = root / f"output-{time.monotonic_ns()}.log"
        self.log_path = Path(env["TRAY_NOTIFIER_LOG_DIR"]) / "tray-notifier.log"
        self.started_at = time.monotonic()
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tray_app", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running after {timeout:.0f} s:\n{self.output()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A short private runtime directory: the instance socket's path must fit sockaddr_un."""
    path = Path(tempfile.mkdtemp(prefix="g2-", dir="/tmp"))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def app_env(root: Path, runtime: Path, *, password: str | None = "demo") -> dict[str, str]:
    env = client_env(root, password=password)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        XDG_RUNTIME_DIR=str(runtime),
        TMPDIR=str(runtime),
        TRAY_NOTIFIER_LOG_DIR=str(root / "logs"),
    )
    return env


def latest_seq(server: RunningServer) -> int:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        token = client.post(
            "/api/auth/token/", json={"username": "alice", "password": "demo"}
        ).json()["access"]
        response = client.get(
            "/api/inbox/unread-count/", headers={"Authorization": f"Bearer {token}"}
        )
        return int(response.json()["latest_seq"])


def wait_caught_up(app: App, env: dict[str, str], server: RunningServer, timeout: float) -> float:
    """Seconds from the app's launch until its store holds the server's latest seq."""
    store = account_database_path(Path(env["TRAY_NOTIFIER_DATA_DIR"]), server.url, "alice")
    latest = latest_seq(server)
    deadline = time.monotonic() + timeout
    while read_store_cursor(store) < latest:
        assert app.process.poll() is None, f"the app exited:\n{app.output()}"
        assert time.monotonic() < deadline, f"not caught up in {timeout:.0f} s:\n{app.output()}"
        time.sleep(0.05)
    return time.monotonic() - app.started_at


def launch(apps: list[App], env: dict[str, str], root: Path, server: RunningServer) -> App:
    app = App(env, root, "--server", server.url, "--username", "alice")
    apps.append(app)
    return app


def assert_hands_over(
    apps: list[App], env: dict[str, str], root: Path, server: RunningServer
) -> None:
    """Another launch exits 0 within the bound, saying the app is already running."""
    second = launch(apps, env, root, server)
    code = second.wait(HAND_OVER_BOUND)
    took = time.monotonic() - second.started_at
    assert code == 0, second.output()
    assert "tray-notifier: already running; brought it forward" in second.output()
    assert "Traceback" not in second.output()
    assert took < HAND_OVER_BOUND


# --- two instances, and a crash's leftovers ------------------------------------------


@pytest.mark.slow
def test_a_second_launch_hands_over_and_a_crashed_instance_does_not_block_the_next(
    demo_server: RunningServer, tmp_path: Path, runtime: Path, apps: list[App]
) -> None:
    """A second launch exits 0 at once with a clear message and leaves the first running.
    After SIGKILL of the first (its instance socket left behind), a new launch starts,
    catches up, and is itself the one a further launch hands over to."""
    env = app_env(tmp_path, runtime)
    first = launch(apps, env, tmp_path, demo_server)
    wait_caught_up(first, env, demo_server, START_BOUND)

    assert_hands_over(apps, env, tmp_path, demo_server)
    assert first.process.poll() is None, "the first instance keeps running"

    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(timeout=WAIT) == -signal.SIGKILL
    leftovers = [path for path in runtime.iterdir() if path.is_socket()]
    assert leftovers, "SIGKILL leaves the instance socket behind"

    published = demo_server.cli("notify", "--user", "alice", "--title", "after the crash")
    assert published.returncode == 0, published.stderr
    heir = launch(apps, env, tmp_path, demo_server)
    took = wait_caught_up(heir, env, demo_server, START_BOUND)
    assert took < START_BOUND
    assert_hands_over(apps, env, tmp_path, demo_server)
    assert heir.process.poll() is None


STALE_LOCK_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from PySide6.QtCore import QLockFile
    from tray_app.ui.single_instance import SingleInstance, server_name

    path = SingleInstance._lock_path(server_name(sys.argv[1]))
    lock = QLockFile(path)
    assert lock.tryLock(0), lock.error()
    print(path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash in the middle of a claim
    """
)


@pytest.mark.slow
def test_a_claim_lock_left_by_a_crash_mid_claim_does_not_hang_the_next_start(
    demo_server: RunningServer, tmp_path: Path, runtime: Path, apps: list[App]
) -> None:
    """An instance SIGKILLed while it held the claim lock leaves the lock file behind; Qt
    sees its process is gone, so the next launch starts normally instead of waiting or
    giving up as if another instance were starting."""
    env = app_env(tmp_path, runtime)
    import getpass

    crashed = subprocess.run(
        [sys.executable, "-c", STALE_LOCK_SCRIPT, f"tray-notifier-{getpass.getuser()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    lock_file = Path(crashed.stdout.strip())
    assert lock_file.exists(), "the crash left its lock file"

    app = launch(apps, env, tmp_path, demo_server)
    took = wait_caught_up(app, env, demo_server, START_BOUND)
    assert took < START_BOUND
    assert "already running" not in app.output()
    assert_hands_over(apps, env, tmp_path, demo_server)


# --- a missing or locked keyring -------------------------------------------------------


@pytest.fixture
def locked_keyring(tmp_path: Path) -> Iterator[DesktopSession]:
    """A session bus whose gnome-keyring-daemon has a login keyring that is locked."""
    require_programs("dbus-daemon", "dbus-send", "gnome-keyring-daemon")
    session = DesktopSession(tmp_path / "desktop")
    try:
        session.stop(session.start_keyring())  # creates the login keyring, unlocked
        binary = shutil.which("gnome-keyring-daemon")
        assert binary is not None
        session.start_daemon([binary, "--foreground", "--components=secrets"], name=SECRETS_NAME)
        yield session
    finally:
        session.close()


@pytest.mark.slow
@pytest.mark.parametrize("keyring", ["missing", "locked"])
def test_the_app_starts_without_a_usable_keyring_and_says_why(
    demo_server: RunningServer,
    tmp_path: Path,
    runtime: Path,
    apps: list[App],
    request: pytest.FixtureRequest,
    keyring: str,
) -> None:
    """No D-Bus session (no keyring service) or a locked login keyring: the app does not
    hang on the keyring, logs in for this session with the password it was given, catches
    up within the bound, logs a plain reason, and a second launch still hands over."""
    env = app_env(tmp_path / "app", runtime)
    if keyring == "locked":
        session: DesktopSession = request.getfixturevalue("locked_keyring")
        env.update(session.env)
        expected = "Your keyring is locked and was not unlocked"
    else:
        assert "DBUS_SESSION_BUS_ADDRESS" not in env
        expected = "No keyring service is running"
    app = launch(apps, env, tmp_path, demo_server)
    took = wait_caught_up(app, env, demo_server, START_BOUND)

    assert took < START_BOUND
    assert f"keyring unusable: {expected}" in app.log(), app.log()
    assert "log in for this session" in app.log()
    assert "Traceback" not in app.output() + app.log()
    assert_hands_over(apps, env, tmp_path, demo_server)
    print(f"{keyring} keyring: caught up {took:.2f} s after launch")
