"""Shared pieces for the client tests: an engine on a real SQLite file, a publisher
that talks to the real server, a fixed-port server that can be killed and restarted, an
isolated client environment, and a private keyring."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import pytest_asyncio

from tests.fixtures.services import (
    REPO_ROOT,
    OutputPump,
    RunningServer,
    ServerFactory,
    free_port,
)
from tests.tray_app.desktop_session import DesktopSession
from tray_app.engine import (
    CatchUpFinished,
    ConnectionStateChanged,
    Engine,
    EngineEvent,
    NotificationAdded,
    UnreadCountChanged,
)
from tray_app.net.api import ApiClient
from tray_app.net.backoff import Backoff
from tray_app.net.connection_state import ConnectionState
from tray_app.net.live import Connector, websocket_connector
from tray_app.net.transport import Transport
from tray_app.net.transport_choice import TransportChoice
from tray_app.store.db import OpenedDatabase, account_database_path, open_database
from tray_app.store.inbox import Inbox, StoredNotification
from tray_app.store.outbox import Outbox
from tray_app.toast_policy import ToastRequest

WAIT = 20.0
_SCALE_SETTING = os.environ.get("TRAY_TEST_SCALE")
SCALE = float(_SCALE_SETTING or "1")


def scaled(count: int, *, minimum: int = 1, ci: int | None = None) -> int:
    """``count`` times ``TRAY_TEST_SCALE`` (at least ``minimum``). With the setting unset
    (the suite as ``scripts/test`` and CI run it), ``ci`` when given: the heaviest runs
    keep CI well under its time budget, and ``TRAY_TEST_SCALE=1`` runs the full count."""
    if _SCALE_SETTING is None and ci is not None:
        return ci
    return max(minimum, round(count * SCALE))


class RestartableServer:
    """A demo server on one fixed port, so clients find it again after a kill."""

    def __init__(self, factory: ServerFactory, env: dict[str, str] | None = None) -> None:
        self.factory = factory
        self.port = free_port()
        self.env = env or {}
        self.current: RunningServer = factory("--port", str(self.port), demo=True, env=self.env)
        self.url = self.current.url

    def kill(self) -> None:
        self.current.kill()

    def start(self) -> None:
        self.current = self.factory("--port", str(self.port), env=self.env)

    def restart(self) -> None:
        self.kill()
        self.start()


class Publisher:
    """Publishes as the demo admin over REST. Every call carries an idempotency key and
    is retried until the server answers, so a request lost to a killed server is sent
    again without ever creating a second notification."""

    def __init__(self, server: RunningServer | RestartableServer) -> None:
        self.server = server
        self._token: str | None = None
        self.sent: list[str] = []

    def _login(self, client: httpx.Client) -> str:
        response = client.post(
            f"{self.server.url}/api/auth/token/", json={"username": "admin", "password": "demo"}
        )
        response.raise_for_status()
        token: str = response.json()["access"]
        return token

    def publish(self, title: str, *, to: tuple[str, ...] = ("alice",)) -> None:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    if self._token is None:
                        self._token = self._login(client)
                    response = client.post(
                        f"{self.server.url}/api/notifications/",
                        json={
                            "audience": {"usernames": list(to)},
                            "title": title,
                            "idempotency_key": key,
                        },
                        headers={"Authorization": f"Bearer {self._token}"},
                    )
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is restarting: poll it again
                    continue
                if response.status_code == 401:
                    self._token = None
                    continue
                assert response.status_code in (200, 201), response.text
                self.sent.append(title)
                return
        raise AssertionError(f"could not publish {title!r} within 60 s")

    def publish_many(self, titles: list[str]) -> None:
        for title in titles:
            self.publish(title)


@dataclass
class Harness:
    """An engine for one account on a real SQLite file, with every event recorded."""

    engine: Engine
    database: OpenedDatabase
    api: ApiClient
    events: list[EngineEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def record(self, event: EngineEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.engine.run())

    async def stop(self) -> None:
        await self.engine.stop()
        if self.task is not None:
            async with asyncio.timeout(WAIT):
                await self.task
        self.database.connection.close()

    def added(self, *, live: bool | None = None) -> list[NotificationAdded]:
        return [
            e
            for e in self.events
            if isinstance(e, NotificationAdded) and (live is None or e.live is live)
        ]

    def states(self) -> list[ConnectionState]:
        return [e.change.state for e in self.events if isinstance(e, ConnectionStateChanged)]

    def state(self) -> ConnectionState:
        states = self.states()
        return states[-1] if states else ConnectionState.STOPPED

    def catch_ups(self) -> list[CatchUpFinished]:
        return [e for e in self.events if isinstance(e, CatchUpFinished)]

    def unread_counts(self) -> list[int]:
        return [e.unread_count for e in self.events if isinstance(e, UnreadCountChanged)]

    def stored_seqs(self) -> list[int]:
        rows = self.database.connection.execute("SELECT seq FROM notifications ORDER BY seq")
        return [seq for (seq,) in rows]


HarnessFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """``await harness(server_url, username)`` → a logged-in Harness (not yet running)."""
    made: list[Harness] = []

    async def make(
        server_url: str,
        username: str = "alice",
        *,
        data_dir: Path | None = None,
        api: ApiClient | None = None,
        backoff: Backoff | None = None,
        stream_connect: Connector | None = None,
        choice: TransportChoice | None = None,
    ) -> Harness:
        if api is None:
            api = ApiClient(server_url)
            await api.login(username, "demo")
        path = account_database_path(data_dir or tmp_path / "client", server_url, username)
        database = open_database(path)
        inbox = Inbox(database.connection)
        engine = Engine(
            api=api,
            inbox=inbox,
            outbox=Outbox(database.connection, inbox),
            connect=websocket_connector(Transport(proxy="none")),
            backoff=backoff or Backoff(base=0.2, cap=2.0),
            stream_connect=stream_connect,
            choice=choice,
        )
        result = Harness(engine=engine, database=database, api=api)
        engine.subscribe(result.record)
        made.append(result)
        return result

    yield make
    for made_harness in made:
        if made_harness.task is not None and not made_harness.task.done():
            await made_harness.engine.stop()
            await made_harness.task
        await made_harness.api.aclose()


# --- an isolated client environment and a private keyring ----------------------------


def require_programs(*programs: str) -> None:
    """Skip without the Debian packages a test needs; under CI their absence is a failure."""
    missing = [program for program in programs if shutil.which(program) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt: dbus-daemon dbus-bin gnome-keyring)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextlib.contextmanager
def stalled(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP): calls to it wait; continued (SIGCONT) at the latest
    on the way out."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def client_command() -> list[str]:
    """The console script ``pip install`` put next to this interpreter, as users run it."""
    script = Path(sys.executable).with_name("tray-notifier")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tray_app"]


class HeadlessProcess:
    """``tray-notifier --headless ARGS`` in a subprocess, its stdout and stderr each read
    live by a pipe reader of the caller's kind (``out_reader``, ``err_reader``)."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str],
        *,
        out_reader: Callable[[IO[bytes]], OutputPump],
        err_reader: Callable[[IO[bytes]], OutputPump],
    ) -> None:
        self.process = subprocess.Popen(
            [*client_command(), "--headless", *args],
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.out = out_reader(self.process.stdout)
        self.err = err_reader(self.process.stderr)

    def kill(self) -> None:
        """SIGKILL: a crash, the client gets no chance to clean up."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.out.close()
        self.err.close()


def client_env(root: Path, *, password: str | None = "demo") -> dict[str, str]:
    """Environment of a client whose every file goes under ``root``, with no D-Bus session
    and no managed file.

    Nothing of the test process's own TRAY_/XDG_/D-Bus/keyring configuration leaks in.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRAY_", "XDG_", "DBUS_", "PYTHON_KEYRING", "KEYRING_"))
    }
    dirs = {
        "HOME": root / "home",
        "XDG_DATA_HOME": root / "data",
        "XDG_CONFIG_HOME": root / "config",
        "XDG_CACHE_HOME": root / "cache",
        "XDG_STATE_HOME": root / "state",
        "XDG_RUNTIME_DIR": root / "runtime",
        "TRAY_NOTIFIER_DATA_DIR": root / "data" / "tray-notifier",
        "TRAY_NOTIFIER_CONFIG_DIR": root / "config" / "tray-notifier",
    }
    for key, directory in dirs.items():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[key] = str(directory)
    env["PYTHONUNBUFFERED"] = "1"
    # Not the machine's managed file: the installer's test writes one while it runs,
    # which would send a client started meanwhile (on another pytest worker) to that
    # test's server. A test of the managed file names its own.
    env["TRAY_NOTIFIER_MANAGED_FILE"] = str(root / "no-managed-settings.json")
    if password is not None:
        env["TRAY_NOTIFIER_PASSWORD"] = password
    return env


@dataclass
class KeyringDesktop:
    session: DesktopSession
    daemon: subprocess.Popen[bytes]


@pytest.fixture
def keyring_desktop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyringDesktop]:
    """A private session bus with an unlocked gnome-keyring-daemon, joined by this process.

    The daemon's own files live under ``tmp_path/desktop``, apart from the app's.
    """
    require_programs("dbus-daemon", "dbus-send", "gnome-keyring-daemon")
    session = DesktopSession(tmp_path / "desktop")
    try:
        daemon = session.start_keyring()
        # secretstorage reads the address on every call, so in-process backends use this bus.
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)
        yield KeyringDesktop(session, daemon)
    finally:
        pids = session.pids
        session.close()
        # keyring's Secret Service backend leaves its D-Bus socket open when the collection
        # is locked or the daemon is gone (jaraco/keyring#380): collect those sockets here,
        # so their ResourceWarning does not surface in whichever test runs the next gc.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    assert len(pids) == 2
    assert all(process_gone(pid) for pid in pids), "a daemon of the test session survived close()"


@dataclass
class WaitingKeyring:
    """A locked login keyring whose unlock prompt is up and nobody answers it.

    gnome-keyring-daemon and gcr's real prompter on a private bus (this process's
    session bus for the test); the prompter draws "Unlock Login Keyring" on a virtual
    display of its own. A read of the collection (the vault's own probe) brought the
    prompt up and waits for it for good, as an app start did before the keyring was
    opened off the GUI thread (75 s without a tray icon); further calls that need the
    collection wait behind it.

    Attributes:
        session: the private desktop session.
        display: the prompter's display, for ``xdotool``.
    """

    session: DesktopSession
    display: str
    readers: list[threading.Thread] = field(default_factory=list)

    def prompt_is_up(self, *, wait: float = 0) -> bool:
        """Whether the unlock prompt's window is on the display; with ``wait``, waits up
        to that many seconds for it to appear."""
        command = ["xdotool", "search", "--onlyvisible", "--name", "Unlock Login Keyring"]
        if wait:
            command.insert(2, "--sync")
        try:
            found = subprocess.run(
                command,
                env={**os.environ, "DISPLAY": self.display},
                capture_output=True,
                text=True,
                timeout=wait or 10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return found.returncode == 0 and bool(found.stdout.split())

    def start_waiting_read(self) -> threading.Thread:
        """The vault's own probe (a read of the collection) on a thread: with no prompt
        up, it brings one up and waits for it."""
        from tray_app.store.secrets import keyring_status

        reader = threading.Thread(target=lambda: _quietly(keyring_status), daemon=True)
        reader.start()
        self.readers.append(reader)
        return reader


@pytest.fixture
def waiting_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WaitingKeyring]:
    """A keyring that is locked and would wait for a person (see ``WaitingKeyring``)."""
    # gcr-prompter comes with gnome-keyring (Debian's gcr package, a dependency).
    prompter = "/usr/libexec/gcr-prompter"
    require_programs(
        "dbus-daemon", "dbus-send", "gnome-keyring-daemon", "Xvfb", "xdotool", prompter
    )
    from tests.tray_app.desktop_session import LOGIN_COLLECTION, SECRETS_NAME

    session = DesktopSession(tmp_path / "desktop")
    keyring: WaitingKeyring | None = None
    try:
        session.start_keyring()
        display, _ = session.start_display()
        session.start_daemon(
            [prompter], name="org.gnome.keyring.SystemPrompter", extra_env={"DISPLAY": display}
        )
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.address)
        session.dbus_send(
            SECRETS_NAME,
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            f"array:objpath:{LOGIN_COLLECTION}",
        )
        keyring = WaitingKeyring(session, display)
        # The prompter may refuse a prompt asked for as it starts (the read then ends at
        # once, refused): ask again until one is up and waiting.
        for _attempt in range(5):
            reader = keyring.start_waiting_read()
            if keyring.prompt_is_up(wait=10):
                break
        assert reader.is_alive(), "no unlock prompt came up and waited"
        yield keyring
        assert reader.is_alive(), "the unlock prompt was answered"
    finally:
        session.close()  # the daemons go: a waiting read fails and its thread ends
        for reader in keyring.readers if keyring else []:
            reader.join(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _quietly(call: Callable[[], object]) -> None:
    """Run ``call`` on a thread whose failure (the session closed under it) is expected."""
    with contextlib.suppress(Exception):
        call()


def stored_notification(notification_id: int = 1, **fields: Any) -> StoredNotification:
    """An unread notification as the store hands it out; ``fields`` override."""
    values: dict[str, Any] = {
        "id": notification_id,
        "seq": notification_id,
        "title": f"Build {notification_id} failed",
        "message": "main is red",
        "event_type": "ci",
        "priority": "normal",
        "url": "/projects/2/",
        "created_at": datetime(2025, 3, 14, 15, 0, tzinfo=UTC),
        "is_read": False,
        "actor_json": None,
        "project_id": 2,
        "project_title": "Mobile App",
        "data_json": "{}",
    }
    values.update(fields)
    return StoredNotification(**values)


def toast_request(notification_id: int = 1, **fields: Any) -> ToastRequest:
    """A live, unread notification as the toast planner is offered it; ``fields`` override."""
    values: dict[str, Any] = {
        "id": notification_id,
        "seq": notification_id,
        "title": f"Task {notification_id} moved to Done",
        "message": "Reviewed by bob",
        "priority": "normal",
        "project_id": 7,
        "project_title": "Mobile App",
        "url": f"/projects/7/tasks/{notification_id}",
        "is_read": False,
        "live": True,
        "arrived_at": 1000.0,
    }
    values.update(fields)
    return ToastRequest(**values)


# --- the headless client in a subprocess (tests/tray_app/test_headless*.py) ----------

# How long a headless client's wait lasts by default (a subprocess starts Python first).
HEADLESS_WAIT = 30.0


class LineReader(OutputPump):
    """One pipe of the client, its lines without their line ends, with waits that fail
    the test at their deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(stream, name="line-reader")

    def _decode(self, raw: bytes) -> str:
        return raw.decode("utf-8", "replace").rstrip("\n")

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_until(
        self, condition: Callable[[list[str]], bool], *, timeout: float = HEADLESS_WAIT, what: str
    ) -> list[str]:
        """Every line so far, once ``condition(lines)`` holds; AssertionError at the deadline."""
        lines = self.wait_lines(condition, timeout)
        if lines is None:
            raise AssertionError(
                f"gave up waiting for {what} after {timeout:.0f} s "
                f"(pipe {'closed' if self.closed else 'open'}); lines:\n"
                + "\n".join(self.lines[-30:])
            )
        return lines

    def wait_for_count(self, count: int, *, timeout: float = HEADLESS_WAIT, what: str) -> list[str]:
        """Wait until at least ``count`` lines were read; every line so far."""
        return self.wait_until(lambda lines: len(lines) >= count, timeout=timeout, what=what)

    def wait_for_line(
        self,
        predicate: Callable[[str], bool],
        *,
        count: int = 1,
        timeout: float = HEADLESS_WAIT,
        what: str,
    ) -> list[str]:
        """Wait until ``count`` lines satisfy ``predicate``; those lines."""
        self.wait_until(
            lambda lines: sum(1 for line in lines if predicate(line)) >= count,
            timeout=timeout,
            what=what,
        )
        return [line for line in self.lines if predicate(line)]

    def close(self, timeout: float = 10) -> None:
        super().close(timeout)


class HeadlessClient(HeadlessProcess):
    """``tray-notifier --headless ARGS`` in a subprocess, its stdout and stderr read live."""

    out: LineReader
    err: LineReader

    def __init__(self, env: Mapping[str, str], *args: str) -> None:
        self.started_at = time.monotonic()
        super().__init__(env, args, out_reader=LineReader, err_reader=LineReader)

    def notifications(self) -> list[dict[str, Any]]:
        """The JSON lines printed so far (every stdout line must be one)."""
        return [json.loads(line) for line in self.out.lines]

    def wait_for_notifications(
        self,
        condition: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = HEADLESS_WAIT,
        what: str,
    ) -> list[dict[str, Any]]:
        self.out.wait_until(
            lambda lines: condition([json.loads(line) for line in lines]),
            timeout=timeout,
            what=what + f"\nstderr:\n{self.err.text()}",
        )
        return self.notifications()

    def wait_for_stderr(
        self, text: str, *, count: int = 1, timeout: float = HEADLESS_WAIT
    ) -> list[str]:
        return self.err.wait_for_line(
            lambda line: text in line,
            count=count,
            timeout=timeout,
            what=f"{count} stderr line(s) with {text!r}",
        )

    def wait_for_state(self, word: str, *, count: int = 1, timeout: float = HEADLESS_WAIT) -> None:
        """Wait for a stderr line that is exactly the state word (``connected``, ...)."""
        self.err.wait_for_line(
            lambda line: line == f"tray-notifier: {word}",
            count=count,
            timeout=timeout,
            what=f"{count} stderr line(s) saying {word!r}",
        )

    def state_count(self, word: str) -> int:
        return self.err.lines.count(f"tray-notifier: {word}")

    def wait(self, timeout: float = HEADLESS_WAIT) -> int:
        """The exit code once the process has ended (and both pipes are read to the end)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the client did not exit within {timeout:.0f} s; stderr:\n{self.err.text()}"
            ) from None
        self.out.close()
        self.err.close()
        return code

    def terminate(self, timeout: float = HEADLESS_WAIT) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)


Launcher = Callable[..., HeadlessClient]


@pytest.fixture
def launch() -> Iterator[Launcher]:
    """``launch(env, "--server", url, ...)`` starts a client; every one is killed at the end."""
    started: list[HeadlessClient] = []

    def start(env: Mapping[str, str], *args: str) -> HeadlessClient:
        client = HeadlessClient(env, *args)
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()
