"""B8: the desktop client on a real (virtual) desktop, beside a minimal PySide6 tray app.

Run from the repository root (pins itself to the client CPU)::

    .venv/bin/python -m bench.client_desktop --profile quick [--smoke] [--output PATH]

The desktop is the one the end-to-end tests use, reused from their helpers (imported
from ``tests.*``, and only these): ``tests.e2e.desktop.TrayDesktop`` (Xvfb, a private
``dbus-daemon`` session bus, gnome-keyring unlocked, xfconfd, xfce4-notifyd,
xfce4-panel holding only the system tray, built on ``tests.tray_app.desktop_session``
and ``tests.tray_app.ui.display``) and ``tests.tray_app.conftest.client_env`` (a
client whose every file lives under one directory). The server is a real
subprocess (``python -m backend.cli serve --demo --port 0``, the embedded default).
The programs under test are started as users start them, pinned to CPU 0 with the
server; this process, ``dbus-monitor`` and the desktop's daemons (started by the
helpers, so they inherit this process's pinning) stay on CPU 1:

- ``ours``: the ``tray-notifier`` console script (``--server URL --username alice``,
  logging in with ``TRAY_NOTIFIER_PASSWORD``, its refresh token then in the keyring),
  and the frozen one-folder bundle ``dist/tray-notifier/tray-notifier`` when it exists.
- ``minimal tray app``: ``bench/peers/minimal_tray.py``, a ``QSystemTrayIcon`` with the
  same icon and nothing else; for the toast figure the same app with a socket thread
  that shows every ``notification_created`` frame with ``showMessage``
  (``minimal tray app + socket``, logged in as bob).

What is measured, and where each instant is observed (nothing in the app is changed):

- Frame received to toast requested. The frame's instant is the kernel's receive
  timestamp (``SO_TIMESTAMPNS``) of the TCP segment that carries it, captured on the
  loopback interface with an ``AF_PACKET`` socket filtered to the server's port (the
  client runs uncompressed, so the segment is found by its WebSocket text frame holding
  ``notification_created`` and the sample's unique title). The toast's instant is the
  ``Notify`` method call as ``dbus-monitor`` receives it from the bus (its ``time=``
  field). Both are CLOCK_REALTIME on this machine. The span therefore covers the app
  being woken for the segment, reading and parsing the frame, storing the row, the
  engine event, the bridge, the toast policy and desktop-notifier's D-Bus call, plus the
  bus's routing to the monitor (dbus-daemon and dbus-monitor run on CPU 1: tens of
  microseconds when it is quiet, more when it is busy, the same for both programs).
  The app logs neither instant, so this is the closest observation from outside
  (docs/performance.md names the debug log line that would make it exact).
  Each program's publishes are at least ``PACE`` seconds apart (the two programs
  alternate, half a pace apart, and a late toast pushes the schedule back): the app's
  toast policy shows at most ``burst_size`` toasts one by one per ``burst_window`` and
  folds the rest into a summary, so publishing no faster than one per
  ``burst_window / (burst_size - 1)`` seconds keeps every sample a single toast
  (``raw["missed"]`` lists any that were not). One warm-up toast per program comes
  first (the app opens its D-Bus connection to the notification server on its first
  toast), then a whole burst window of quiet; the warm-up is kept in the raw data, not
  in the percentiles.
- Start to tray icon registered: from just before spawning the process to its
  ``RegisterStatusNotifierItem`` call to xfce4-panel's ``org.kde.StatusNotifierWatcher``
  (seen by ``dbus-monitor``; the caller is checked to be that process). The page cache
  is warm (the machine is shared; dropping caches would disturb other runs), so this is
  a warm start. Programs alternate, the order flipping every round.
- Idle: after the toast samples, once every toast window has closed, a fixed
  measurement window (``Profile.idle_window``, 60 s in the full profile) with the app
  connected (heartbeats on) and both minimal apps running at the same time. RSS is
  ``VmRSS`` at the end of the window; wakeups are context switches (voluntary plus
  involuntary, from ``/proc/PID/task/*/status``, summed over every thread) during the
  window, per second; CPU is utime+stime over the window.
"""

from __future__ import annotations

import argparse
import codecs
import compileall
import contextlib
import ctypes
import datetime as dt
import functools
import inspect
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from bench.common import (
    REPO_ROOT,
    BenchError,
    Outcome,
    ServerProcess,
    bench_env,
    cpu_seconds,
    machine,
    percentile,
    pin_to_client_cpu,
    pin_to_server_cpu,
    prepare_database,
    result,
    rss_kib,
    rss_parts_kib,
    start_server,
    stop_server,
)
from bench.peers import minimal_tray
from tests.e2e.desktop import TrayDesktop, read_store_cursor
from tests.tray_app.conftest import client_env
from tests.tray_app.desktop_session import DesktopSessionError
from tray_app.store.db import account_database_path
from tray_app.toast_policy import ToastPlanner

FROZEN_BUNDLE = REPO_ROOT / "dist" / "tray-notifier" / "tray-notifier"
CONSOLE_SCRIPT = Path(sys.executable).with_name("tray-notifier")
FROZEN_LABEL = " (ours: the frozen one-folder bundle)"
MINIMAL = "minimal tray app"
MINIMAL_SOCKET = "minimal tray app + socket"
APP_USER = "alice"
MINIMAL_USER = "bob"
PUBLISHER = "admin"
PASSWORD = "demo"
PACKAGES = ("PySide6_Essentials", "qasync", "desktop-notifier", "dbus-fast", "websockets")

_PLANNER_DEFAULTS = inspect.signature(ToastPlanner.__init__).parameters
BURST_SIZE = int(_PLANNER_DEFAULTS["burst_size"].default)
BURST_WINDOW = float(_PLANNER_DEFAULTS["burst_window"].default)
# Publishes this far apart put burst_size - 1 of them in a burst window; a sixth single
# in one window would need the window's first frame to arrive a whole PACE later than
# its own schedule relative to the sixth's, so every sample is a single toast.
PACE = BURST_WINDOW / (BURST_SIZE - 1)
WAIT = 30.0
MESSAGE = "Release 2.4 is on staging; all 312 checks passed. Open it to see the report."

NOTIFY = "Notify"
REGISTER = "RegisterStatusNotifierItem"
_MONITOR_RULES = (
    "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
    "type='method_call',interface='org.kde.StatusNotifierWatcher',"
    "member='RegisterStatusNotifierItem'",
)


@dataclass(frozen=True)
class Profile:
    """How much one invocation measures."""

    name: str
    toast_samples: int
    idle_window: float
    start_rounds: int
    # Wait for every toast window to close before the idle window (off for smoke runs,
    # whose idle figures mean nothing anyway: it saves the daemon's ~10 s expiry).
    settle_toasts: bool = True
    # After the idle window: this many notifications, then this many history window
    # openings and closings, then the idle window again (issue 20's memory after use).
    after_use_notifications: int = 1000
    history_cycles: int = 10
    # What "ours" runs for the toasts, the idle window and the memory after use: the
    # console script, or (``--frozen``) the one-folder bundle.
    ours: Path = CONSOLE_SCRIPT


# After each half of the after-use notifications and its history cycle: time for the
# app's release of freed memory (queued as the window closes) and late toasts to pass.
AFTER_HALF_SETTLE = 3.0
# Growth per notification below this is allocator noise (RSS moves in pages, and 500
# notifications over a 1 MiB arena boundary show as 2 KiB each); a kept row, its text
# and its JSON would be several KiB each.
PER_NOTIFICATION_GROWTH_KIB = 2.0

PROFILES = {
    "quick": Profile(name="quick", toast_samples=30, idle_window=20.0, start_rounds=3),
    "full": Profile(name="full", toast_samples=200, idle_window=60.0, start_rounds=7),
}


def _rss_parts_mib(pid: int) -> dict[str, float]:
    """``rss_anon_mib``, ``rss_file_mib`` and ``rss_shmem_mib`` of ``pid``, for the raw
    results (the rows use the whole VmRSS)."""
    return {f"rss_{name}_mib": kib / 1024 for name, kib in rss_parts_kib(pid).items()}


def smoke_profile(profile: Profile) -> Profile:
    """A run that only proves the module works."""
    return replace(
        profile,
        toast_samples=4,
        idle_window=3.0,
        start_rounds=1,
        settle_toasts=False,
        after_use_notifications=20,
        history_cycles=2,
    )


# --- the frame's instant: loopback capture -----------------------------------------------

_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_SO_RCVBUFFORCE = 33
_ETH_P_ALL = 0x0003
_ETHERNET_HEADER = 14
_TEXT_FRAME = 0x81  # FIN + opcode 1: a whole, uncompressed text frame


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def tcp_source_port_filter(port: int) -> bytes:
    """A classic BPF program accepting IPv4 TCP packets from ``port`` (what
    ``tcpdump -dd 'ip and tcp src port PORT'`` prints for an Ethernet-framed link, which
    is how ``AF_PACKET`` presents the loopback device)."""
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 8, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),  # ldb [23]: IP protocol
        (0x15, 0, 6, 6),  # TCP, else drop
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 4, 0, 0x1FFF),  # a later fragment has no TCP header: drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 14),  # ldh [x+14]: TCP source port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 262144),  # accept the whole packet
        (0x06, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


@dataclass(frozen=True)
class Segment:
    """A TCP segment from the server that starts with a WebSocket text frame."""

    at: float
    destination_port: int
    payload: bytes


class LoopbackFrames:
    """Server-to-client WebSocket text frames on ``lo``, with the kernel's timestamps.

    Segments wait in the socket's buffer (8 MiB) until :meth:`drain` reads them, so
    when this process reads them does not change the instants. Needs CAP_NET_RAW
    (root here).
    """

    def __init__(self, server_port: int) -> None:
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        try:
            code = tcp_source_port_filter(server_port)
            buffer = ctypes.create_string_buffer(code)
            program = _SockFprog(len(code) // 8, ctypes.addressof(buffer))
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(program))
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 * 2**20)
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self._socket.bind(("lo", 0))
            self._socket.setblocking(False)
        except BaseException:
            self._socket.close()
            raise
        self.segments: list[Segment] = []

    def drain(self) -> None:
        """Read every captured packet so far; keep the text frames."""
        while True:
            try:
                data, ancillary, _flags, address = self._socket.recvmsg(
                    65536, socket.CMSG_SPACE(16)
                )
            except BlockingIOError:
                return
            # Loopback shows each packet twice: as sent and as received. The received
            # copy is the instant the client's socket gets it.
            if address[2] != socket.PACKET_HOST:
                continue
            stamp = next(
                (d for level, kind, d in ancillary if kind == _SO_TIMESTAMPNS and level == 1),
                None,
            )
            segment = _text_frame_segment(data, stamp)
            if segment is not None:
                self.segments.append(segment)

    def first(self, marker: bytes, *, after: float) -> Segment | None:
        """The first text frame after ``after`` (wall clock) holding ``marker``."""
        self.drain()
        for segment in self.segments:
            if segment.at >= after and marker in segment.payload:
                return segment
        return None

    def forget_before(self, moment: float) -> None:
        """Drop what is older than ``moment``: a long run must not keep every heartbeat."""
        self.segments = [s for s in self.segments if s.at >= moment]

    def close(self) -> None:
        self._socket.close()


def _text_frame_segment(data: bytes, stamp: bytes | None) -> Segment | None:
    if stamp is None or len(data) < _ETHERNET_HEADER + 40:
        return None
    ip = data[_ETHERNET_HEADER:]
    header = (ip[0] & 0x0F) * 4
    total = int.from_bytes(ip[2:4], "big")
    tcp = ip[header:total]
    if len(tcp) < 20:
        return None
    payload = tcp[(tcp[12] >> 4) * 4 :]
    if not payload or payload[0] != _TEXT_FRAME:
        return None
    seconds, nanoseconds = struct.unpack("qq", stamp[:16])
    return Segment(
        at=seconds + nanoseconds / 1e9,
        destination_port=int.from_bytes(tcp[2:4], "big"),
        payload=payload,
    )


# --- the toast's and the icon's instants: the session bus --------------------------------


@dataclass(frozen=True)
class BusCall:
    """A method call ``dbus-monitor`` saw, with the time it saw it (wall clock)."""

    at: float
    sender: str
    member: str
    summary: str = ""


_CALL = re.compile(
    r"^method call time=(?P<at>\d+\.\d+) sender=(?P<sender>\S+) -> [^\n]*"
    r"member=(?P<member>RegisterStatusNotifierItem|Notify)\n"
    # Notify's arguments: app_name, replaces_id, app_icon, summary (one line here).
    r"(?:   string \"[^\n]*\"\n   uint32 \d+\n   string \"[^\n]*\"\n"
    r"   string \"(?P<summary>[^\n]*)\"\n)?",
    re.MULTILINE,
)


class BusWatch:
    """``dbus-monitor`` watching Notify and RegisterStatusNotifierItem calls.

    tests.tray_app.ui.display.NotifyMonitor watches Notify alone and keeps no times;
    this one keeps ``dbus-monitor``'s own receive time of each call, so when this
    process reads the pipe does not matter. Read in the calling thread while waiting.
    """

    def __init__(self, address: str, log_path: Path) -> None:
        self._log = log_path.open("w", encoding="utf-8")
        self._process = subprocess.Popen(
            ["dbus-monitor", "--address", address, *_MONITOR_RULES],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._parsed = 0
        self.calls: list[BusCall] = []
        # It reports becoming a monitor (NameLost) before anything else.
        self._wait(lambda: "member=NameLost" in self._text, WAIT, "dbus-monitor to start")

    def wait_for(
        self, condition: Callable[[BusCall], bool], *, timeout: float, what: str
    ) -> BusCall:
        """The first call seen so far, or within ``timeout``, that satisfies ``condition``.

        Raises:
            BenchError: None came in time.
        """
        found: list[BusCall] = []

        def seen() -> bool:
            found[:] = [call for call in self.calls if condition(call)]
            return bool(found)

        self._wait(seen, timeout, what)
        return found[0]

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        self._read(0.0)
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
            self._read(min(remaining, 0.5))

    def _read(self, wait: float) -> None:
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        while True:
            ready, _, _ = select.select([descriptor], [], [], wait)
            if not ready:
                break
            chunk = os.read(descriptor, 65536)
            if not chunk:
                break
            text = self._decoder.decode(chunk)
            self._text += text
            self._log.write(text)
            wait = 0.0
        for match in _CALL.finditer(self._text, self._parsed):
            if match["member"] == NOTIFY and match["summary"] is None:
                break  # its arguments are still on the way
            self.calls.append(
                BusCall(
                    at=float(match["at"]),
                    sender=match["sender"],
                    member=match["member"],
                    summary=match["summary"] or "",
                )
            )
            self._parsed = match.end()
        # Keep the unparsed tail only: a long run sees thousands of calls.
        self._text, self._parsed = self._text[self._parsed :], 0

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()

    def __enter__(self) -> BusWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- the programs under test --------------------------------------------------------------


@dataclass
class Program:
    """One started program: ours (unfrozen or frozen) or a minimal tray app."""

    name: str
    process: subprocess.Popen[bytes]
    root: Path
    env: dict[str, str]
    spawned_at: float
    output: IO[bytes]

    @property
    def output_path(self) -> Path:
        return self.root / "output.log"

    def printed(self) -> str:
        return self.output_path.read_text("utf-8", "replace")

    def alive(self) -> bool:
        """True while it runs; raises once it has exited (so waits on it fail early)."""
        if self.process.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.process.returncode}:\n{self.printed()[-3000:]}"
            )
        return True

    def stop(self) -> None:
        """SIGTERM, as a logout sends it; SIGKILL (the group) after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.output.close()


def launch(
    name: str,
    argv: Sequence[str],
    desktop: TrayDesktop,
    root: Path,
    extra_env: dict[str, str] | None = None,
) -> Program:
    """Start ``argv`` on ``desktop`` pinned to CPU 0, with every file under ``root``.

    The environment is the tests' ``client_env`` (nothing of this process's TRAY_, XDG_
    or D-Bus settings, and no managed settings file), the desktop's display and bus and
    Qt's xcb platform; the same for ours and the peers.
    """
    env = {
        **client_env(root, password=PASSWORD),
        **desktop.env,
        "QT_QPA_PLATFORM": "xcb",
        "NO_AT_BRIDGE": "1",
        "TMPDIR": str(root / "runtime"),
        "TRAY_NOTIFIER_LOG_DIR": str(root / "logs"),
        **(extra_env or {}),
    }
    output = (root / "output.log").open("ab")
    spawned_at = time.time()
    process = subprocess.Popen(
        list(argv),
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        preexec_fn=pin_to_server_cpu,
        # Its own group, so a stuck program can be killed with whatever it started.
        start_new_session=True,
    )
    return Program(
        name=name, process=process, root=root, env=env, spawned_at=spawned_at, output=output
    )


def ours_argv(executable: Path, server_url: str) -> list[str]:
    return [str(executable), "--server", server_url, "--username", APP_USER]


def minimal_argv(ws_url: str | None = None, *, list_window: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "bench.peers.minimal_tray"]
    if list_window:
        argv.append("--list-window")
    return [*argv, "--ws-url", ws_url] if ws_url else argv


def registered(desktop: TrayDesktop, watch: BusWatch, program: Program) -> BusCall:
    """Wait for ``program``'s RegisterStatusNotifierItem call (the first after its spawn
    made by one of its connections)."""
    checked: dict[str, bool] = {}

    def its_own(call: BusCall) -> bool:
        if call.member != REGISTER or call.at < program.spawned_at:
            return False
        if call.sender not in checked:
            checked[call.sender] = connection_pid(desktop, call.sender) == program.process.pid
        return checked[call.sender]

    deadline = time.monotonic() + WAIT
    while True:
        program.alive()
        with contextlib.suppress(BenchError):
            return watch.wait_for(its_own, timeout=1.0, what=f"{program.name}'s tray icon")
        if time.monotonic() > deadline:
            raise BenchError(f"{program.name} registered no tray icon within {WAIT:.0f} s")


def toast_titled(title: str) -> Callable[[BusCall], bool]:
    """Whether a bus call is the toast for ``title``."""
    return lambda call: call.member == NOTIFY and call.summary == title


def connection_pid(desktop: TrayDesktop, sender: str) -> int | None:
    """The process behind a unique bus name, or None once it has left the bus."""
    try:
        reply = desktop.session.dbus_send(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            f"string:{sender}",
        )
    except subprocess.CalledProcessError:
        return None
    found = re.search(r"uint32 (\d+)", reply)
    return int(found[1]) if found else None


# --- /proc ----------------------------------------------------------------------------


def context_switches(pid: int) -> dict[int, int]:
    """Voluntary plus involuntary context switches of each thread of ``pid``."""
    counts: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        total = 0
        with contextlib.suppress(FileNotFoundError):  # the thread ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
            counts[int(task.name)] = total
    return counts


def switches_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Switches in the window: threads that started in it count from zero; the few a
    thread that ended in it made are lost (none of these programs ends threads idle)."""
    return sum(count - before.get(tid, 0) for tid, count in after.items())


# --- the server side ---------------------------------------------------------------------


class Server:
    """The demo server over REST: logins, readiness checks and publishing."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.url = process.base_url
        self._client = httpx.Client(base_url=self.url, timeout=30)
        self._tokens: dict[str, str] = {}

    def token(self, username: str, *, fresh: bool = False) -> str:
        if fresh or username not in self._tokens:
            response = self._client.post(
                "/api/auth/token/", json={"username": username, "password": PASSWORD}
            )
            if response.status_code != 200:
                raise BenchError(f"login as {username}: HTTP {response.status_code}")
            self._tokens[username] = str(response.json()["access"])
        return self._tokens[username]

    def request(self, username: str, method: str, path: str, body: object = None) -> Any:
        """A request as ``username``, logging in again once if the token expired."""
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self.token(username, fresh=fresh)}"}
            response = self._client.request(method, path, headers=headers, json=body)
            if response.status_code != 401:
                break
        if response.status_code >= 300:
            raise BenchError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def publish(self, to: str, title: str) -> None:
        self.request(
            PUBLISHER,
            "POST",
            "/api/notifications/",
            {"audience": {"usernames": [to]}, "title": title, "message": MESSAGE},
        )

    def latest_seq(self, username: str) -> int:
        return int(self.request(username, "GET", "/api/inbox/unread-count/")["latest_seq"])

    def mark_all_read(self, username: str) -> None:
        self.request(username, "POST", "/api/inbox/mark-all-read/", {})

    def close(self) -> None:
        self._client.close()


def store_cursor(program: Program, server_url: str) -> int:
    """The app's store cursor (0 until its store exists)."""
    data_dir = Path(program.env["TRAY_NOTIFIER_DATA_DIR"])
    return read_store_cursor(account_database_path(data_dir, server_url, APP_USER))


def wait_for_segment(frames: LoopbackFrames, marker: bytes, program: Program) -> Segment:
    """The first text frame holding ``marker`` sent since ``program`` was spawned."""
    found: list[Segment] = []

    def captured() -> bool:
        segment = frames.first(marker, after=program.spawned_at)
        if segment is not None:
            found.append(segment)
        return bool(found) or not program.alive()

    wait_until(captured, what=f"a frame holding {marker!r} for {program.name}")
    return found[0]


def no_toast_windows(desktop: TrayDesktop) -> bool:
    """Whether xfce4-notifyd shows no toast; False while a window closes under the look
    (xdotool then fails on a window that has just gone)."""
    try:
        return not desktop.windows()
    except DesktopSessionError:
        return False


def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# --- the measurements --------------------------------------------------------------------


@dataclass
class Measured:
    """Every sample behind B8's rows."""

    starts: dict[str, list[float]] = field(default_factory=dict)
    start_to_live: list[float] = field(default_factory=list)
    frozen_to_live: list[float] = field(default_factory=list)  # the bundle's, when built
    toast_ms: dict[str, list[float]] = field(default_factory=dict)
    publish_to_toast_ms: dict[str, list[float]] = field(default_factory=dict)
    warm_up_ms: dict[str, float | None] = field(default_factory=dict)
    missed: dict[str, list[str]] = field(default_factory=dict)
    idle: dict[str, dict[str, float]] = field(default_factory=dict)
    # Ours after the notifications and history cycles: rss_mib, notifications, cycles.
    after_use: dict[str, float] = field(default_factory=dict)
    after_use_minimal: dict[str, float] = field(default_factory=dict)
    # Per toast sample: program, title, and seconds since the first publish of the
    # publish, the frame's arrival and the Notify call.
    timeline: list[dict[str, Any]] = field(default_factory=list)


def measure_starts(
    profile: Profile,
    desktop: TrayDesktop,
    watch: BusWatch,
    frames: LoopbackFrames,
    server: Server,
    scratch: Path,
    measured: Measured,
) -> None:
    """Start each program ``start_rounds`` times; seconds from spawn to its icon."""
    argvs = {"ours": ours_argv(CONSOLE_SCRIPT, server.url), MINIMAL: minimal_argv()}
    if FROZEN_BUNDLE.exists():
        argvs["ours (frozen)"] = ours_argv(FROZEN_BUNDLE, server.url)
    for name in argvs:
        measured.starts[name] = []
    for round_number in range(profile.start_rounds):
        order = list(argvs) if round_number % 2 == 0 else list(reversed(argvs))
        for name in order:
            # One directory per program for every round: later rounds are the returning
            # user's start (store and keyring entry in place), the first one a first start.
            root = scratch / f"start-{name.split()[0]}{'-frozen' if 'frozen' in name else ''}"
            program = launch(name, argvs[name], desktop, root)
            try:
                call = registered(desktop, watch, program)
                measured.starts[name].append(call.at - program.spawned_at)
                if name != MINIMAL:
                    # Also when it is live (informational): the server's hello reached it.
                    hello = wait_for_segment(frames, b'"hello"', program)
                    lives = measured.start_to_live if name == "ours" else measured.frozen_to_live
                    lives.append(hello.at - program.spawned_at)
            finally:
                program.stop()
            frames.forget_before(time.time())


def measure_toasts_and_idle(
    profile: Profile,
    desktop: TrayDesktop,
    watch: BusWatch,
    frames: LoopbackFrames,
    server: Server,
    scratch: Path,
    measured: Measured,
) -> None:
    """Toast samples for ours and the minimal app with a socket, then the idle window."""
    # Everything already read: the app's first catch-up shows no "new while away" toast.
    server.mark_all_read(APP_USER)
    ws_url = server.process.ws_url
    programs: list[Program] = []
    try:
        ours = launch("ours", ours_argv(profile.ours, server.url), desktop, scratch / "ours")
        programs.append(ours)
        registered(desktop, watch, ours)
        latest = server.latest_seq(APP_USER)
        wait_until(
            lambda: ours.alive() and store_cursor(ours, server.url) >= latest,
            what=f"the app's store to reach seq {latest}",
        )
        token = server.token(MINIMAL_USER, fresh=True)
        socket_peer = launch(
            MINIMAL_SOCKET,
            minimal_argv(ws_url),
            desktop,
            scratch / "minimal-socket",
            {"MINIMAL_TRAY_TOKEN": token},
        )
        programs.append(socket_peer)
        registered(desktop, watch, socket_peer)
        wait_until(
            lambda: socket_peer.alive() and "live" in socket_peer.printed().split(),
            what="the minimal app's socket",
        )
        icon_peer = launch(MINIMAL, minimal_argv(list_window=True), desktop, scratch / "minimal")
        programs.append(icon_peer)
        registered(desktop, watch, icon_peer)

        toast_samples(profile, watch, frames, server, measured, ours, socket_peer)

        # Only once the daemon has closed every toast: its NotificationClosed signals
        # would otherwise wake the app during the window.
        if profile.settle_toasts:
            wait_until(
                lambda: no_toast_windows(desktop), what="every toast window to close", timeout=120
            )
        idle_window(
            profile, {"ours": ours, MINIMAL: icon_peer, MINIMAL_SOCKET: socket_peer}, measured
        )
        after_use(profile, desktop, server, ours, icon_peer, measured)
    finally:
        for program in reversed(programs):
            program.stop()


HISTORY_TITLE = "^Notification history"
LIST_TITLE = f"^{minimal_tray.LIST_TITLE}"


def visible_windows(desktop: TrayDesktop, title: str) -> list[str] | None:
    """The X ids of the visible windows whose name matches ``title``; None while one is
    mapped or unmapped under the look (xdotool fails on a window that just changed)."""
    try:
        return desktop.xdotool("search", "--onlyvisible", "--name", title).split()
    except DesktopSessionError:
        return None


def list_windows(desktop: TrayDesktop) -> list[str] | None:
    """The X ids of the minimal tray app's visible list windows (see visible_windows)."""
    return visible_windows(desktop, LIST_TITLE)


def history_windows(desktop: TrayDesktop) -> list[str] | None:
    """The X ids of the app's visible history windows (see visible_windows)."""
    return visible_windows(desktop, HISTORY_TITLE)


def shown_window(desktop: TrayDesktop, title: str, what: str) -> str:
    """The X id of the window named ``title``, once it shows."""
    shown: list[str] = []

    def appeared() -> bool:
        shown[:] = visible_windows(desktop, title) or []
        return bool(shown)

    wait_until(appeared, what=what)
    return shown[-1]


def shown_list_window(desktop: TrayDesktop) -> str:
    """The X id of the minimal tray app's list window, once it shows."""
    return shown_window(desktop, LIST_TITLE, "the minimal app's list window")


def after_use(
    profile: Profile,
    desktop: TrayDesktop,
    server: Server,
    ours: Program,
    minimal: Program,
    measured: Measured,
) -> None:
    """Ours' RSS after ``after_use_notifications`` notifications and ``history_cycles``
    openings and closings of its history window, then an idle window as long as the
    first: what a day of use leaves behind (growth per message or per window shows).

    The notifications come in two halves, each followed by one history cycle (the app
    gives freed memory back as the window closes) and a short settle; what the second
    half adds over the first, per notification, is the growth per message: one-time
    costs (the history module, Qt's first use of its widgets, caches reaching their
    size) are all paid by the end of the first half.

    The history is opened as a user does from a launcher: a second ``tray-notifier``
    brings the running one forward (``TrayApp.activate``), which shows the history; it
    is closed with the platform's close keys (Ctrl+W) in the focused window.

    Beside it, the minimal tray app opens and closes its list window (a search line
    over a list, ``--list-window``) as many times: what Qt itself keeps after showing
    such a window.
    """
    run_id = uuid.uuid4().hex[:6]
    first_half = profile.after_use_notifications // 2
    halves = (first_half, profile.after_use_notifications - first_half)
    after_half: list[float] = []
    sent = 0
    for half in halves:
        before = server.latest_seq(APP_USER)
        for _ in range(half):
            server.publish(APP_USER, f"After use {run_id} {sent}")
            sent += 1
        latest = before + half
        wait_until(
            functools.partial(_store_reached, ours, server.url, latest),
            what=f"the app's store to reach seq {latest}",
            timeout=300,
        )
        _history_cycle(profile, desktop, ours, server)
        time.sleep(AFTER_HALF_SETTLE)
        after_half.append(rss_kib(ours.process.pid) / 1024)
    for _cycle in range(max(profile.history_cycles - len(halves), 0)):
        _history_cycle(profile, desktop, ours, server)
    for _cycle in range(profile.history_cycles):
        minimal.alive()
        minimal.process.send_signal(signal.SIGUSR1)
        desktop.xdotool("windowfocus", "--sync", shown_list_window(desktop))
        desktop.xdotool("key", "--clearmodifiers", "ctrl+w")
        wait_until(lambda: list_windows(desktop) == [], what="the list window to close")
    if profile.settle_toasts:
        wait_until(
            lambda: no_toast_windows(desktop), what="every toast window to close", timeout=120
        )
    # The same fixed window as the idle one (named: Profile.idle_window).
    time.sleep(profile.idle_window)
    ours.alive()
    minimal.alive()
    measured.after_use_minimal = {
        "rss_mib": rss_kib(minimal.process.pid) / 1024,
        **_rss_parts_mib(minimal.process.pid),
        "list_window_cycles": profile.history_cycles,
    }
    measured.after_use = {
        "rss_mib": rss_kib(ours.process.pid) / 1024,
        **_rss_parts_mib(ours.process.pid),
        "notifications": profile.after_use_notifications,
        "history_cycles": max(profile.history_cycles, len(halves)),
        "rss_after_first_half_mib": after_half[0],
        "rss_after_second_half_mib": after_half[1],
        "second_half_notifications": halves[1],
    }


def _store_reached(ours: Program, server_url: str, seq: int) -> bool:
    return ours.alive() and store_cursor(ours, server_url) >= seq


def _history_cycle(profile: Profile, desktop: TrayDesktop, ours: Program, server: Server) -> None:
    """Open ours' history as a launcher does, then close it with Ctrl+W."""
    subprocess.run(
        ours_argv(profile.ours, server.url),
        env=ours.env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT,
        check=True,
    )
    window = shown_window(desktop, HISTORY_TITLE, "the history window")
    desktop.xdotool("windowfocus", "--sync", window)
    desktop.xdotool("key", "--clearmodifiers", "ctrl+w")
    wait_until(lambda: history_windows(desktop) == [], what="the history window to close")


def toast_samples(
    profile: Profile,
    watch: BusWatch,
    frames: LoopbackFrames,
    server: Server,
    measured: Measured,
    ours: Program,
    socket_peer: Program,
) -> None:
    """Alternate one publish to alice (ours) and one to bob (the minimal app).

    Publishes are at least PACE / 2 apart, so each program's are at least PACE apart;
    each waits for its toast (or 10 s), and a late toast pushes the schedule back rather
    than being caught up on (catching up would bunch publishes into one burst window).
    The first toast of each program is the warm-up, followed by a whole burst window of
    quiet so that the samples start in a fresh window.
    """
    targets = (("ours", APP_USER, ours), (MINIMAL_SOCKET, MINIMAL_USER, socket_peer))
    for name, _user, _program in targets:
        measured.toast_ms[name] = []
        measured.publish_to_toast_ms[name] = []
        measured.missed[name] = []
    run_id = uuid.uuid4().hex[:6]
    origin = time.time()
    next_at = time.monotonic()
    for index in range(profile.toast_samples + 1):
        if index == 1:
            next_at += BURST_WINDOW
        for name, user, program in targets:
            # Pacing, not waiting for a condition: the toast policy's burst quota.
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = time.monotonic() + PACE / 2
            program.alive()
            title = f"b8-{run_id}-{name.split()[0]}-{index:04d}"
            published_at = time.time()
            server.publish(user, title)
            sample: dict[str, Any] = {
                "program": name,
                "title": title,
                "published_s": published_at - origin,
            }
            measured.timeline.append(sample)
            try:
                call = watch.wait_for(toast_titled(title), timeout=10.0, what=f"toast {title!r}")
            except BenchError:
                measured.missed[name].append(title)
                continue
            segment = frames.first(title.encode(), after=published_at)
            if segment is None or b"notification_created" not in segment.payload:
                raise BenchError(f"no frame holding {title!r} was captured on lo")
            sample.update(frame_s=segment.at - origin, toast_s=call.at - origin)
            latency = (call.at - segment.at) * 1000
            if index == 0:
                measured.warm_up_ms[name] = latency
            else:
                measured.toast_ms[name].append(latency)
                measured.publish_to_toast_ms[name].append((call.at - published_at) * 1000)
        frames.forget_before(time.time() - 60)


def idle_window(profile: Profile, programs: dict[str, Program], measured: Measured) -> None:
    """RSS, wakeups and CPU of every program over one fixed window, side by side."""
    before = {name: context_switches(p.process.pid) for name, p in programs.items()}
    cpu_before = {name: cpu_seconds(p.process.pid) for name, p in programs.items()}
    started = time.monotonic()
    # The fixed measurement window (named: Profile.idle_window).
    time.sleep(profile.idle_window)
    elapsed = time.monotonic() - started
    for name, program in programs.items():
        program.alive()
        pid = program.process.pid
        switches = switches_between(before[name], context_switches(pid))
        measured.idle[name] = {
            "window_seconds": elapsed,
            "rss_mib": rss_kib(pid) / 1024,
            **_rss_parts_mib(pid),
            "wakeups_per_second": switches / elapsed,
            "cpu_percent": (cpu_seconds(pid) - cpu_before[name]) / elapsed * 100,
            "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        }


# --- the rows ------------------------------------------------------------------------------


def rows(profile: Profile, measured: Measured) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ours_toasts = measured.toast_ms.get("ours", [])
    peer_toasts = measured.toast_ms.get(MINIMAL_SOCKET, [])
    method = (
        f"{len(ours_toasts)} toasts, at least {PACE:g} s apart; frame = kernel receive time of its "
        "TCP segment on lo, toast = the Notify call seen on the session bus "
        "(xfce4-notifyd under Xvfb)"
    )
    for q, limit in ((50, 10.0), (99, 50.0)):
        ours = percentile(ours_toasts, q) if ours_toasts else None
        peer = percentile(peer_toasts, q) if peer_toasts else None
        out.append(
            result(
                id="B8",
                metric=f"frame received to toast requested, p{q} ({method})",
                unit="ms",
                ours=ours,
                peers={MINIMAL_SOCKET: peer},
                target=f"p{q} under {limit:g} ms",
                met=ours is not None and ours < limit,
            )
        )
    ours_start = _median(measured.starts.get("ours", []))
    minimal_start = _median(measured.starts.get(MINIMAL, []))
    rounds = len(measured.starts.get("ours", []))
    out.append(
        result(
            id="B8",
            metric=(
                f"start to tray icon registered (RegisterStatusNotifierItem on the bus), "
                f"unfrozen console script, median of {rounds}, page cache warm"
            ),
            unit="s",
            ours=ours_start,
            peers={MINIMAL: minimal_start},
            target="at most 1.5x the minimal tray app's (issue 20)",
            met=_within(ours_start, minimal_start, 1.5),
        )
    )
    ours_live = _median(measured.start_to_live)
    out.append(
        result(
            id="B8",
            metric=(
                "start to connected (the server's hello frame on lo), unfrozen console "
                f"script, median of {rounds} (the first a first login, then returning ones); "
                "beside the minimal tray app's start to its icon"
            ),
            unit="s",
            ours=ours_live,
            peers={MINIMAL: minimal_start},
            target="at most 2x the minimal tray app's start (issue 20)",
            met=_within(ours_live, minimal_start, 2.0),
        )
    )
    frozen = measured.starts.get("ours (frozen)")
    frozen_start = _median(frozen) if frozen else None
    out.append(
        result(
            id="B8",
            metric=(
                f"start to tray icon registered, frozen one-folder bundle, median of "
                f"{len(frozen)}, page cache warm"
                if frozen
                else "start to tray icon registered, frozen one-folder bundle: not measured, "
                "dist/tray-notifier/tray-notifier is not built yet (issue 6 builds it)"
            ),
            unit="s",
            ours=frozen_start,
            peers={MINIMAL: minimal_start},
            target="at most 1.5x the minimal tray app's (issue 20)",
            met=_within(frozen_start, minimal_start, 1.5),
        )
    )
    frozen_live = _median(measured.frozen_to_live) if measured.frozen_to_live else None
    out.append(
        result(
            id="B8",
            metric=(
                "start to connected (the server's hello frame on lo), frozen one-folder "
                f"bundle, median of {len(measured.frozen_to_live)}"
                if frozen_live is not None
                else "start to connected, frozen one-folder bundle: not measured, "
                "dist/tray-notifier/tray-notifier is not built yet (issue 6 builds it)"
            ),
            unit="s",
            ours=frozen_live,
            peers={MINIMAL: minimal_start},
            target="at most 2x the minimal tray app's start (issue 20)",
            met=_within(frozen_live, minimal_start, 2.0),
        )
    )
    window = f"{profile.idle_window:g} s idle window"
    idle = measured.idle

    def idle_value(name: str, key: str) -> float | None:
        return idle[name][key] if name in idle else None

    ours_rss, minimal_rss = idle_value("ours", "rss_mib"), idle_value(MINIMAL, "rss_mib")
    out.append(
        result(
            id="B8",
            metric=(
                f"idle RSS at the end of a {window}, connected, after the toast samples"
                f"{FROZEN_LABEL if profile.ours == FROZEN_BUNDLE else ''}"
            ),
            unit="MiB",
            ours=ours_rss,
            peers={MINIMAL: minimal_rss, MINIMAL_SOCKET: idle_value(MINIMAL_SOCKET, "rss_mib")},
            target="at most 1.5x the minimal tray app's (issue 20)",
            met=_within(ours_rss, minimal_rss, 1.5),
        )
    )
    used = measured.after_use
    growth = used["rss_mib"] - ours_rss if used and ours_rss is not None else None
    minimal_used = measured.after_use_minimal
    minimal_growth = (
        minimal_used["rss_mib"] - minimal_rss if minimal_used and minimal_rss is not None else None
    )
    out.append(
        result(
            id="B8",
            metric=(
                f"RSS growth after use: after {used.get('notifications', 0):.0f} "
                f"notifications and {used.get('history_cycles', 0):.0f} history window "
                f"openings and closings, then a {window}, minus the idle RSS above"
                f"{FROZEN_LABEL if profile.ours == FROZEN_BUNDLE else ''}"
            ),
            unit="MiB",
            ours=growth,
            peers={f"{MINIMAL}, its list window as often": minimal_growth},
            target="at most 5 MiB (issue 20: no growth per message)",
            met=growth is not None and growth <= 5.0,
        )
    )
    # The same growth, anonymous memory only: what the app itself allocated. The rest is
    # file-backed (library code and fonts, shared with every other Qt program and
    # droppable by the kernel), which the minimal app's list window grows by as much.
    ours_anon = idle_value("ours", "rss_anon_mib")
    anon_growth = used["rss_anon_mib"] - ours_anon if used and ours_anon is not None else None
    minimal_anon = idle_value(MINIMAL, "rss_anon_mib")
    minimal_anon_growth = (
        minimal_used["rss_anon_mib"] - minimal_anon
        if minimal_used and minimal_anon is not None
        else None
    )
    out.append(
        result(
            id="B8",
            metric=(
                "RSS growth after use, anonymous memory only (the row above without "
                "file-backed pages: library code and fonts)"
                f"{FROZEN_LABEL if profile.ours == FROZEN_BUNDLE else ''}"
            ),
            unit="MiB",
            ours=anon_growth,
            peers={f"{MINIMAL}, its list window as often": minimal_anon_growth},
            target="none set by the issue (the row above, taken apart)",
            met=anon_growth is not None,
        )
    )
    second_half = used.get("second_half_notifications", 0)
    per_message = (
        (used["rss_after_second_half_mib"] - used["rss_after_first_half_mib"]) * 1024 / second_half
        if second_half
        else None
    )
    out.append(
        result(
            id="B8",
            metric=(
                f"RSS growth per notification: what the second {second_half:.0f} of those "
                "notifications added over the first, each half followed by one history "
                f"window opening and closing{FROZEN_LABEL if profile.ours == FROZEN_BUNDLE else ''}"
            ),
            unit="KiB",
            ours=per_message,
            peers={},
            target=(
                f"under {PER_NOTIFICATION_GROWTH_KIB:g} KiB (issue 20: no growth per message; "
                "the threshold is ours)"
            ),
            met=per_message is not None and per_message < PER_NOTIFICATION_GROWTH_KIB,
        )
    )
    out.append(
        result(
            id="B8",
            metric=(
                f"idle wakeups over a {window}: voluntary + involuntary context switches "
                "of every thread (/proc/PID/task/*/status) per second"
            ),
            unit="per s",
            ours=idle_value("ours", "wakeups_per_second"),
            peers={
                MINIMAL: idle_value(MINIMAL, "wakeups_per_second"),
                MINIMAL_SOCKET: idle_value(MINIMAL_SOCKET, "wakeups_per_second"),
            },
            target="none set by the issue (reported beside the minimal tray app)",
            met=True,
        )
    )
    return out


def _within(ours: float | None, peer: float | None, ratio: float) -> bool:
    """Whether ``ours`` is at most ``ratio`` times ``peer`` (False when either is missing)."""
    return ours is not None and peer is not None and ours <= ratio * peer


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --- run -----------------------------------------------------------------------------------


def run(profile: str, *, smoke: bool, scratch: Path, frozen: bool = False) -> Outcome:
    """B8 in one invocation: ours and the minimal tray app on one desktop and server.

    Args:
        profile: ``quick`` (30 toasts, a 20 s idle window, 3 start rounds) or ``full``
            (200 toasts, 60 s, 7 rounds).
        smoke: Shrink everything (4 toasts, 3 s, 1 round): proves it runs, no more.
        scratch: An empty directory for the server's data, the desktop and the apps.
        frozen: Ours is the frozen bundle for the toasts, idle and after-use rows.
    """
    settings = PROFILES[profile]
    if smoke:
        settings = smoke_profile(settings)
    if frozen:
        if not FROZEN_BUNDLE.exists():
            raise BenchError(f"{FROZEN_BUNDLE} is not built (bash scripts/build-installers)")
        settings = replace(settings, ours=FROZEN_BUNDLE)
    data_dir = scratch / "server"
    data_dir.mkdir()
    env = bench_env(data_dir)
    prepare_database(env)
    # Both programs start from compiled bytecode, as installed ones do (pip and the
    # .deb compile it): a checkout run with PYTHONDONTWRITEBYTECODE (CI, some shells)
    # would otherwise compile ours' ~100 modules from source at every start.
    for package in (REPO_ROOT / "tray_app", REPO_ROOT / "bench" / "peers"):
        compileall.compile_dir(package, quiet=1)
    measured = Measured()
    server_process = start_server(
        "ours",
        [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"],
        env,
        scratch / "server.log",
    )
    server = Server(server_process)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        with contextlib.ExitStack() as stack:
            desktop = stack.enter_context(TrayDesktop(scratch / "desktop", timeout=WAIT))
            desktop.start()
            watch = stack.enter_context(BusWatch(desktop.bus_address, scratch / "bus.log"))
            frames = LoopbackFrames(port)
            stack.callback(frames.close)
            measure_starts(settings, desktop, watch, frames, server, scratch, measured)
            measure_toasts_and_idle(settings, desktop, watch, frames, server, scratch, measured)
    finally:
        server.close()
        stop_server(server_process)
    raw = {
        "settings": {
            **asdict(settings),
            "ours": str(settings.ours),
            "pace_seconds": PACE,
            "frozen_bundle": str(FROZEN_BUNDLE),
        },
        "frozen_bundle_exists": FROZEN_BUNDLE.exists(),
        **asdict(measured),
    }
    cdfs = {
        "B8 frame received to toast requested": {
            "ours": measured.toast_ms.get("ours", []),
            MINIMAL_SOCKET: measured.toast_ms.get(MINIMAL_SOCKET, []),
        }
    }
    return Outcome(results=rows(settings, measured), raw=raw, cdfs=cdfs)


def main(argv: Sequence[str] | None = None) -> int:
    """Until ``python -m bench --only B8`` runs it: this module alone."""
    parser = argparse.ArgumentParser(prog="python -m bench.client_desktop")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--frozen",
        action="store_true",
        help=f"ours is {FROZEN_BUNDLE} for the toasts, idle and after-use rows (build it "
        "first: bash scripts/build-installers --skip-deb)",
    )
    parser.add_argument("--output", type=Path, help="write the rows and raw samples here")
    options = parser.parse_args(argv)
    pin_to_client_cpu()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-b8-") as scratch:
        outcome = run(
            options.profile, smoke=options.smoke, scratch=Path(scratch), frozen=options.frozen
        )
    for row in outcome.results:
        peers = ", ".join(f"{name} {value}" for name, value in row["peers"].items())
        verdict = "met" if row["met"] else "MISSED"
        print(
            f"{row['id']} {row['metric']}: ours {row['ours']} {row['unit']} ({peers}) "
            f"target {row['target']}: {verdict}"
        )
    print(f"took {time.monotonic() - started:.0f} s")
    if options.output is not None:
        report = {
            "machine": machine(PACKAGES),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "profile": options.profile,
            "smoke": options.smoke,
            "results": outcome.results,
            "raw": outcome.raw,
            "cdfs": outcome.cdfs,
        }
        options.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
