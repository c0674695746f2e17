"""A private desktop session for tests: its own D-Bus session bus and the daemons on it.

Nothing touches the real user: the bus listens on a socket in a fresh directory, and every
daemon runs with HOME and the XDG directories inside the session's own root. The bus has
no service directories, so D-Bus never auto-starts anything: every daemon on it was started
here, and :meth:`DesktopSession.close` kills all of them (and anything they forked).

Usage::

    with DesktopSession(tmp_path / "desktop") as session:
        session.start_keyring()                    # gnome-keyring-daemon, login keyring unlocked
        env = {**os.environ, **session.env}        # DBUS_SESSION_BUS_ADDRESS for clients
        session.start_daemon(["xfce4-notifyd"], name="org.freedesktop.Notifications",
                             extra_env={"DISPLAY": ":99"})

Needs Debian's ``dbus-daemon`` and ``dbus-bin`` (``dbus-send``); ``start_keyring`` also
needs ``gnome-keyring``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

SECRETS_NAME = "org.freedesktop.secrets"
LOGIN_COLLECTION = "/org/freedesktop/secrets/collection/login"

# No <servicedir>: nothing is auto-activated, so a test sees only daemons it started.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class DesktopSessionError(RuntimeError):
    """A daemon of the test session did not start; the message carries its log."""


class DesktopSession:
    """A private D-Bus session bus plus the daemons started on it.

    Attributes:
        root: Directory holding the daemons' HOME, XDG directories and logs. Keep the
            app under test's own directories elsewhere.
        address: The bus address (``unix:path=...``), also in :attr:`env`.
        home: The daemons' HOME (their XDG directories are inside it).
        log_dir: One log file per daemon.
        timeout: Seconds to wait for each daemon to come up.
    """

    def __init__(self, root: Path, *, timeout: float = 10.0) -> None:
        """Start ``dbus-daemon`` and wait for its address.

        Args:
            root: An empty (or absent) directory for the session's files.
            timeout: Seconds to wait for each daemon to come up.
        """
        self.root = root
        self.timeout = timeout
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._closed = False
        self.home = root / "home"
        self.runtime_dir = root / "runtime"
        self.log_dir = root / "logs"
        for directory in (self.home, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A socket path must fit in 108 bytes; pytest's tmp_path may not, so the socket
        # lives in a short directory of its own.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="dbus-"))
        try:
            self.address = self._start_bus()
        except BaseException:
            self.close()
            raise

    # --- public ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to join this session (merge into its environment)."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    @property
    def daemon_env(self) -> dict[str, str]:
        """The environment daemons run with: the bus, and HOME/XDG inside ``root``."""
        return {**self._isolated_env(), **self.env}

    @property
    def pids(self) -> tuple[int, ...]:
        """Every process this session started, in start order (the bus first)."""
        return tuple(process.pid for process in self._processes)

    def start_daemon(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        stdin_data: bytes | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a daemon on the bus; with ``name``, wait until it owns that bus name.

        Its output goes to ``logs/<program>-<n>.log`` under ``root``; it stays in the session
        (and is killed by :meth:`close`) even when it fails to start.

        Raises:
            DesktopSessionError: It exited, or did not own ``name`` in time.
        """
        self._check_open()
        program = Path(argv[0]).name
        log = (self.log_dir / f"{program}-{len(self._processes)}.log").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            list(argv),
            env={**self.daemon_env, **(extra_env or {})},
            cwd=self.home,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so close() also reaches anything it forks.
            start_new_session=True,
        )
        self._processes.append(process)
        if stdin_data is not None:
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(stdin_data)
            process.stdin.close()
        if name is not None:
            self.wait_until(
                lambda: self.name_has_owner(name),
                what=f"{program} to own {name} on the bus",
                process=process,
                log=Path(log.name),
            )
        return process

    def start_keyring(self, password: str = "test-login") -> subprocess.Popen[bytes]:
        """Start ``gnome-keyring-daemon`` (secrets only) with its login keyring unlocked.

        With a fresh HOME, ``--unlock`` creates the "login" keyring with ``password`` and
        makes it the default collection. Returns once the collection is the default alias
        and unlocked, so the first client call cannot race the daemon's start-up.
        """
        binary = shutil.which("gnome-keyring-daemon")
        if binary is None:
            raise DesktopSessionError("gnome-keyring-daemon is not installed (apt: gnome-keyring)")
        process = self.start_daemon(
            [binary, "--foreground", "--unlock", "--components=secrets"],
            name=SECRETS_NAME,
            stdin_data=password.encode(),
        )
        self.wait_until(
            self._login_collection_ready,
            what="the unlocked login keyring",
            process=process,
        )
        return process

    def start_display(
        self, *, width: int = 1280, height: int = 800, depth: int = 24
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """Start ``Xvfb`` on a display number it picks itself; ``(":N", process)``.

        Xvfb's ``-displayfd`` chooses a free number and writes it once the server accepts
        connections, so two sessions never race for a number and the caller never polls.
        The server belongs to this session (:meth:`close` kills it). Pass the display to
        daemons and clients as ``DISPLAY``.

        Raises:
            DesktopSessionError: Xvfb is missing, exited, or printed no display in time.
        """
        self._check_open()
        binary = shutil.which("Xvfb")
        if binary is None:
            raise DesktopSessionError("Xvfb is not installed (apt: xvfb)")
        log = (self.log_dir / f"Xvfb-{len(self._processes)}.log").open("wb")
        self._logs.append(log)
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    binary,
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    f"{width}x{height}x{depth}",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                env=self._isolated_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                start_new_session=True,
            )
            self._processes.append(process)
            os.close(write_end)
            write_end = -1
            with os.fdopen(read_end, "rb", closefd=False) as reader:
                number = _read_line(reader, self.timeout)
        finally:
            os.close(read_end)
            if write_end != -1:
                os.close(write_end)
        if not number.isdigit():
            raise DesktopSessionError(
                f"Xvfb printed no display number{self._log_tail(Path(log.name))}"
            )
        return f":{number}", process

    def name_has_owner(self, name: str) -> bool:
        """Whether some connection owns ``name`` on this bus right now."""
        reply = self.dbus_send(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        )
        return "boolean true" in reply

    def dbus_send(self, destination: str, path: str, method: str, *args: str) -> str:
        """Call ``method`` with ``dbus-send --print-reply``; its reply as text.

        Raises:
            subprocess.CalledProcessError: The call failed (the error is in ``stderr``).
        """
        self._check_open()
        result = subprocess.run(
            [
                "dbus-send",
                f"--bus={self.address}",
                "--print-reply",
                f"--dest={destination}",
                path,
                method,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=True,
        )
        return result.stdout

    def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        what: str,
        process: subprocess.Popen[bytes] | None = None,
        log: Path | None = None,
        interval: float = 0.02,
    ) -> None:
        """Poll ``condition()`` until true; fail early if ``process`` exits.

        Raises:
            DesktopSessionError: Timed out, or ``process`` died first.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if condition():
                    return
            except subprocess.CalledProcessError:
                pass  # the daemon is not answering yet
            if process is not None and _has_exited(process):
                raise DesktopSessionError(
                    f"gave up waiting for {what}: the process exited{self._log_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise DesktopSessionError(
                    f"timed out after {self.timeout:.0f} s waiting for {what}{self._log_tail(log)}"
                )
            time.sleep(interval)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Kill one daemon of this session (and its process group) and reap it."""
        if process not in self._processes:
            raise ValueError(f"process {process.pid} was not started by this session")
        _terminate(process)

    def close(self) -> None:
        """Kill every process this session started, newest first. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for process in reversed(self._processes):
            _terminate(process)
            for stream in (process.stdout, process.stdin):
                if stream is not None:
                    stream.close()
        for log in self._logs:
            log.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> DesktopSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DesktopSessionError("the desktop session is closed")

    def _start_bus(self) -> str:
        config = self.root / "session-bus.conf"
        config.write_text(_BUS_CONFIG.format(socket_dir=self._socket_dir), encoding="utf-8")
        log = (self.log_dir / "dbus-daemon.log").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            [
                "dbus-daemon",
                f"--config-file={config}",
                "--nofork",
                "--nopidfile",
                "--print-address=1",
            ],
            env=self._isolated_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        self._processes.append(process)
        assert process.stdout is not None
        line = _read_line(process.stdout, self.timeout)
        if not line.startswith("unix:"):
            raise DesktopSessionError(
                f"dbus-daemon printed no address{self._log_tail(Path(log.name))}"
            )
        return line

    def _isolated_env(self) -> dict[str, str]:
        """PATH, and HOME/XDG directories inside ``root``: nothing of the real user."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
        }

    def _login_collection_ready(self) -> bool:
        alias = self.dbus_send(
            SECRETS_NAME,
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        )
        if LOGIN_COLLECTION not in alias:
            return False
        locked = self.dbus_send(
            SECRETS_NAME,
            LOGIN_COLLECTION,
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Collection",
            "string:Locked",
        )
        return "boolean false" in locked

    @staticmethod
    def _log_tail(log: Path | None) -> str:
        if log is None or not log.exists():
            return ""
        text = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        return f"; its log ({log}) ends:\n{text}" if text else f"; its log ({log}) is empty"


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a pipe, waiting at most ``timeout`` seconds (empty on EOF/timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has ended, without reaping it (its PID stays reserved)."""
    if process.returncode is not None:
        return True
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return True
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _terminate(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace``, reap the leader.

    Signals go to the group only while the leader is unreaped (running or a zombie), so
    its PID, which is the group's ID, cannot have been reused by an unrelated process.
    """
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _has_exited(process) and time.monotonic() < deadline:
        time.sleep(0.01)
    # Children the daemon forked share its group and may outlive it: no survivors.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
