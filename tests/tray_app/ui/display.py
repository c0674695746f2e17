"""A real (virtual) desktop for toast tests: Xvfb, a private D-Bus bus, xfconfd and
xfce4-notifyd, plus the tools to watch and touch it.

Built on :class:`tests.tray_app.desktop_session.DesktopSession` (its bus, its isolated HOME
and its clean-up), so nothing reaches the real user's display or session bus::

    with NotificationDesktop(tmp_path / "desktop") as desktop:
        desktop.start_notifyd()
        with desktop.monitor_notify() as monitor:
            ...                                   # a client sends Notify on desktop.bus_address
            [call] = monitor.wait_for(lambda calls: len(calls) >= 1)
        window = desktop.wait_for_window()        # the toast xfce4-notifyd drew
        open_button, mark_read = desktop.buttons(window)
        desktop.click(*mark_read.center)
        desktop.screenshot(tmp_path / "toast.png", window)

Screenshots are taken by a short Python process with Qt's xcb platform
(``QScreen.grabWindow``), so no image tool beyond what the venv has is needed.

Needs Debian's ``xvfb``, ``xdotool``, ``xfce4-notifyd``, ``xfconf``, ``dbus-daemon``,
``dbus-bin`` (``dbus-monitor``, ``dbus-send``), and for Qt's xcb platform
``libxcb-icccm4 libxcb-keysyms1``.
"""

from __future__ import annotations

import codecs
import glob
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from PySide6.QtGui import QImage

from tests.tray_app.desktop_session import DesktopSession, DesktopSessionError

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
XFCONF_NAME = "org.xfce.Xfconf"
# Debian keeps both daemons out of PATH, under the multiarch library directory.
XFCONFD_GLOB = "/usr/lib/*/xfce4/xfconf/xfconfd"
NOTIFYD_GLOB = "/usr/lib/*/xfce4/notifyd/xfce4-notifyd"

# Runs in a child process on the virtual display: the test process itself draws offscreen.
_GRAB_SCRIPT = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
image = app.primaryScreen().grabWindow(int(sys.argv[2]))
sys.exit(0 if not image.isNull() and image.save(sys.argv[1]) else 1)
"""


@dataclass(frozen=True)
class Rect:
    """A rectangle in screen pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


@dataclass(frozen=True)
class NotifyCall:
    """One ``org.freedesktop.Notifications.Notify`` call as seen on the bus.

    Attributes:
        hints: Hint name -> dbus-monitor's text for the value, e.g. ``"byte 2"``.
    """

    app_name: str
    replaces_id: int
    icon: str
    summary: str
    body: str
    actions: tuple[tuple[str, str], ...]
    hints: dict[str, str]
    expire_timeout: int

    @property
    def urgency(self) -> int | None:
        """The ``urgency`` hint (0 low, 1 normal, 2 critical), if sent."""
        value = self.hints.get("urgency")
        return None if value is None else int(value.split()[-1])

    @property
    def action_labels(self) -> list[str]:
        return [label for _key, label in self.actions]


# dbus-monitor prints strings raw between quotes, so a value may span lines; each argument
# of Notify starts on its own line indented by three spaces, which is what anchors this.
_NOTIFY_CALL = re.compile(
    r"^method call [^\n]*member=Notify\n"
    r'   string "(?P<app>.*?)"\n'
    r"   uint32 (?P<replaces>\d+)\n"
    r'   string "(?P<icon>.*?)"\n'
    r'   string "(?P<summary>.*?)"\n'
    r'   string "(?P<body>.*?)"\n'
    r"   array \[\n(?P<actions>.*?)^   \]\n"
    r"   array \[\n(?P<hints>.*?)^   \]\n"
    r"   int32 (?P<timeout>-?\d+)$",
    re.DOTALL | re.MULTILINE,
)
_ACTION_STRING = re.compile(r'^      string "(.*?)"$', re.MULTILINE | re.DOTALL)
_HINT = re.compile(
    r'^         string "(?P<name>[^"]*)"\n         variant\s+(?P<value>.*?)\n      \)',
    re.MULTILINE | re.DOTALL,
)


def parse_notify_calls(text: str) -> list[NotifyCall]:
    """Every complete Notify call in ``dbus-monitor`` output, in order."""
    calls = []
    for match in _NOTIFY_CALL.finditer(text):
        strings = _ACTION_STRING.findall(match["actions"])
        actions = tuple(zip(strings[0::2], strings[1::2], strict=False))
        hints = {hint["name"]: hint["value"].strip() for hint in _HINT.finditer(match["hints"])}
        calls.append(
            NotifyCall(
                app_name=match["app"],
                replaces_id=int(match["replaces"]),
                icon=match["icon"],
                summary=match["summary"],
                body=match["body"],
                actions=actions,
                hints=hints,
                expire_timeout=int(match["timeout"]),
            )
        )
    return calls


class NotifyMonitor:
    """``dbus-monitor`` watching Notify calls on a bus.

    Its output is read in the calling thread while waiting (no reader thread: a Python
    thread in a Qt test process can end up running the garbage collector on Qt objects,
    which Qt reports as a warning). Use as a context manager: it is monitoring when
    ``__enter__`` returns.
    """

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NotifyMonitor:
        self._process = subprocess.Popen(
            [
                "dbus-monitor",
                "--address",
                self.address,
                f"type='method_call',interface='{NOTIFICATIONS_NAME}',member='Notify'",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # dbus-monitor reports becoming a monitor (NameAcquired/NameLost) before anything.
        self._wait(
            lambda: "member=NameLost" in self._text, what="dbus-monitor to start", timeout=None
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()

    @property
    def text(self) -> str:
        """Everything dbus-monitor printed so far."""
        self._read_available(0.0)
        return self._text

    def calls(self) -> list[NotifyCall]:
        """The Notify calls seen so far."""
        return parse_notify_calls(self.text)

    def wait_for(
        self, condition: Callable[[list[NotifyCall]], bool], timeout: float | None = None
    ) -> list[NotifyCall]:
        """Block until ``condition(calls)`` holds; the calls then.

        Raises:
            AssertionError: Not within the timeout (the monitor's output is in the message).
        """
        result: list[NotifyCall] = []

        def check() -> bool:
            nonlocal result
            result = parse_notify_calls(self._text)
            return condition(result)

        self._wait(check, what="the expected Notify calls", timeout=timeout)
        return result

    def _read_available(self, wait: float) -> None:
        """Append what the pipe holds, waiting up to ``wait`` seconds for something."""
        assert self._process is not None
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            self._text += self._decoder.decode(chunk)
            wait = 0.0

    def _wait(self, condition: Callable[[], bool], *, what: str, timeout: float | None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._read_available(0.0)
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting for {what}; dbus-monitor said:\n{self._text[-3000:]}"
                )
            self._read_available(min(remaining, 0.5))


def bus_connections_of(session: DesktopSession, pid: int) -> list[str]:
    """The unique bus names of every connection process ``pid`` has on ``session``'s bus."""
    names = re.findall(
        r'string "(:[^"]+)"',
        session.dbus_send(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"
        ),
    )
    owned = []
    for name in names:
        try:
            reply = session.dbus_send(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
                f"string:{name}",
            )
        except subprocess.CalledProcessError:
            continue  # it left between the two calls
        if re.search(rf"uint32 {pid}\b", reply):
            owned.append(name)
    return owned


class NotificationDesktop:
    """Xvfb and a private session bus with xfce4-notifyd on it (see the module docstring).

    Attributes:
        session: The underlying :class:`DesktopSession` (its bus and daemons).
        display: The X display, e.g. ``":3"``.
        env: What a client process needs: ``DISPLAY`` and ``DBUS_SESSION_BUS_ADDRESS``.
    """

    def __init__(
        self, root: Path, *, width: int = 1280, height: int = 800, timeout: float = 10.0
    ) -> None:
        self.timeout = timeout
        self.session = DesktopSession(root, timeout=timeout)
        try:
            self.display, self._xvfb = self.session.start_display(width=width, height=height)
        except BaseException:
            self.session.close()
            raise
        self.notifyd: subprocess.Popen[bytes] | None = None

    @property
    def bus_address(self) -> str:
        return self.session.address

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display, **self.session.env}

    def start_notifyd(self) -> subprocess.Popen[bytes]:
        """Start xfconfd, then xfce4-notifyd; return once it owns the Notifications name."""
        self.notifyd = start_notifyd(self.session, self.display)
        return self.notifyd

    def connections_of(self, pid: int) -> list[str]:
        """The unique bus names of every connection process ``pid`` has on the bus."""
        return bus_connections_of(self.session, pid)

    def monitor_notify(self) -> NotifyMonitor:
        """A :class:`NotifyMonitor` on this desktop's bus (enter it to start)."""
        return NotifyMonitor(self.bus_address, timeout=self.timeout)

    def xdotool(self, *args: str) -> str:
        """Run ``xdotool`` on this display; its output."""
        result = subprocess.run(
            ["xdotool", *args],
            env={"PATH": "/usr/bin:/bin", "DISPLAY": self.display},
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        # xdotool search exits 1 when nothing matches: that is an answer, not an error.
        if result.returncode not in (0, 1) or (result.returncode == 1 and result.stderr):
            raise DesktopSessionError(f"xdotool {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def windows(self, class_name: str = "xfce4-notifyd") -> list[int]:
        """Visible top-level windows of ``class_name``, bigger than xfce4-notifyd's 10x10
        helper window."""
        found = [
            int(w) for w in self.xdotool("search", "--onlyvisible", "--class", class_name).split()
        ]
        shown = []
        for window in found:
            try:
                geometry = self.geometry(window)
            except DesktopSessionError:
                continue  # closed between the search and this look
            if geometry.width > 20:
                shown.append(window)
        return shown

    def geometry(self, window: int) -> Rect:
        """Where ``window`` is on the screen."""
        values = dict(
            line.split("=", 1)
            for line in self.xdotool("getwindowgeometry", "--shell", str(window)).split()
        )
        return Rect(int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"]))

    def wait_for_window(
        self, class_name: str = "xfce4-notifyd", *, count: int = 1, exclude: set[int] | None = None
    ) -> int:
        """Wait until ``count`` windows of ``class_name`` (not in ``exclude``) are shown; the
        newest one."""
        found: list[int] = []

        def shown() -> bool:
            nonlocal found
            found = [w for w in self.windows(class_name) if w not in (exclude or set())]
            return len(found) >= count

        self.session.wait_until(shown, what=f"{count} visible {class_name} window(s)")
        return max(found)

    def wait_until_gone(self, window: int) -> None:
        """Wait until ``window`` is no longer shown."""
        self.session.wait_until(
            lambda: window not in self.windows(), what=f"window {window} to close"
        )

    def click(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` on the screen and click the left button."""
        self.xdotool("mousemove", "--sync", str(x), str(y), "click", "1")

    def screenshot(self, path: Path, window: int = 0) -> Path:
        """Save ``window`` (0: the whole screen) as a PNG at ``path``."""
        result = subprocess.run(
            [sys.executable, "-c", _GRAB_SCRIPT, str(path), str(window)],
            env={
                "PATH": "/usr/bin:/bin",
                "DISPLAY": self.display,
                "QT_QPA_PLATFORM": "xcb",
                "HOME": str(self.session.home),
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 or not path.exists():
            raise DesktopSessionError(f"screenshot failed: {result.stdout}{result.stderr}")
        return path

    def buttons(self, window: int, *, min_width: int = 30) -> list[Rect]:
        """The action buttons of a notification window, left to right, in screen pixels.

        xfce4-notifyd draws its buttons in one row at the bottom, in the order of the
        Notify call's actions, each a filled box that differs from the window's
        background; this finds the lowest band of such boxes in a screenshot.
        """
        shot = self.screenshot(self.session.root / f"window-{window}.png", window)
        image = QImage(str(shot))
        origin = self.geometry(window)
        band: list[tuple[int, list[tuple[int, int]]]] = []
        for y in range(image.height() - 3, image.height() // 3, -1):
            runs = _runs(image, y, min_width)
            if runs:
                band.append((y, runs))
            elif band:
                break
        if not band:
            raise DesktopSessionError(f"no buttons found in window {window} ({shot})")
        _, runs = band[len(band) // 2]
        top, bottom = band[-1][0], band[0][0]
        return [
            Rect(origin.x + start, origin.y + top, end - start + 1, bottom - top + 1)
            for start, end in runs
        ]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> NotificationDesktop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def start_notifyd(session: DesktopSession, display: str) -> subprocess.Popen[bytes]:
    """Start xfconfd and xfce4-notifyd (drawing on ``display``) on ``session``'s bus;
    return once xfce4-notifyd owns the Notifications name. xfce4-notifyd reads its
    settings through xfconfd, so that one comes first."""
    session.start_daemon([_program("xfconfd", XFCONFD_GLOB, "xfconf")], name=XFCONF_NAME)
    return session.start_daemon(
        [_program("xfce4-notifyd", NOTIFYD_GLOB, "xfce4-notifyd")],
        name=NOTIFICATIONS_NAME,
        extra_env={"DISPLAY": display},
    )


def _runs(image: QImage, y: int, min_width: int) -> list[tuple[int, int]]:
    """Horizontal runs of at least ``min_width`` pixels that differ from the row's
    background (its colour just inside the window's left border)."""
    width = image.width()
    background = image.pixel(2, y)
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for x in range(2, width - 2):
        differs = image.pixel(x, y) != background
        if differs and start is None:
            start = x
        elif not differs and start is not None:
            if x - start >= min_width:
                runs.append((start, x - 1))
            start = None
    if start is not None and width - 2 - start >= min_width:
        runs.append((start, width - 3))
    return runs


def _program(name: str, pattern: str, package: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(pattern))), None)
    if found is None:
        raise DesktopSessionError(f"{name} is not installed (apt: {package})")
    return found
