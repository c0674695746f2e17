"""The tray app on a real (virtual) desktop: xfce4-panel as the tray host, xfce4-notifyd
for toasts, gnome-keyring for the login, all on a private bus and display, plus the app
itself started as a user starts it.

Built on :class:`tests.tray_app.ui.display.NotificationDesktop` (Xvfb, the bus, xfconfd,
xfce4-notifyd, screenshots, clicks)::

    with TrayDesktop(tmp_path / "desktop") as desktop:
        desktop.start()                                   # keyring, notifyd, panel
        app = TrayAppProcess.start(desktop, server_url, tmp_path / "app")
        area = desktop.wait_for_tray_icon()               # found by its pixels
        desktop.wait_for_icon(area, lambda c: c.live and not c.badge, what="blue, no badge")
        menu = desktop.open_tray_menu(area)               # the panel draws the SNI menu
        assert app.stop() == 0                            # SIGTERM

What the panel shows is read from screenshots only: with xfce4-panel, Qt's tray icon is a
StatusNotifierItem whose geometry reads 0,0,0,0, so the icon is the one blob of pixels in
the panel (which holds nothing but the system tray) that differs from the panel's
background. Its colours tell the app's state: the live tile is saturated blue, the unread
badge saturated red, and the offline look greys everything, badge included
(tray_app/ui/badge.py).

Needs, beyond display.py's packages, Debian's ``xfce4-panel`` and ``gnome-keyring``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from PySide6.QtGui import QColor, QImage

from tests.tray_app.desktop_session import DesktopSessionError
from tests.tray_app.ui.display import NotificationDesktop, Rect
from tray_app.store.db import account_database_path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: One bottom panel holding only the system tray (a copy of the team's shared layout, kept
#: in the repository so that a clone alone can run the tests).
PANEL_LAYOUT = Path(__file__).with_name("xfce4-panel.xml")
STATUS_NOTIFIER_WATCHER = "org.kde.StatusNotifierWatcher"
#: The class of xfce4-panel's plugin wrapper: the systray plugin and the menus it draws.
PLUGIN_WRAPPER_CLASS = "wrapper-2.0"

# A pixel is "saturated" (part of the live look) above this HSV saturation (0..255); the
# live tile (#4f86f7..#2450d0) is ~170-210 and the badge red (#e02424) ~214, while the
# greyed tile (#a3a8b0..#767c85) stays under 40.
_SATURATED = 100
_MIN_VALUE = 60
# Channel difference from the panel's background that counts as drawn by the icon.
_BACKGROUND_TOLERANCE = 12
# Enough red pixels to be a badge and not a stray anti-aliased edge.
_BADGE_PIXELS = 12
_LIVE_PIXELS = 40


def read_store_cursor(path: Path) -> int:
    """A running app's store cursor, read without disturbing it (read-only); 0 before
    the store or its schema exists."""
    if not path.exists():
        return 0
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = connection.execute("SELECT cursor FROM sync_state").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0  # the schema is being created right now
    finally:
        connection.close()


@dataclass(frozen=True)
class IconColours:
    """A census of the tray icon's pixels in one screenshot.

    Attributes:
        blue: Saturated blue pixels (the live tile).
        red: Saturated red pixels (the unread badge).
        violet: Saturated violet pixels (the do-not-disturb mark).
        saturated: Every saturated pixel, whatever its hue.
        total: Pixels in the icon's area.
    """

    blue: int
    red: int
    saturated: int
    total: int
    violet: int = 0

    @property
    def live(self) -> bool:
        """The coloured (connected) tile is showing."""
        return self.blue >= _LIVE_PIXELS

    @property
    def badge(self) -> bool:
        """A red unread badge is showing."""
        return self.red >= _BADGE_PIXELS

    @property
    def greyed(self) -> bool:
        """Nothing saturated at all: the offline look (tile and badge grey)."""
        return self.saturated == 0


def icon_colours(image: QImage, area: Rect) -> IconColours:
    """Count the saturated blue, red and violet pixels of ``area`` in ``image``."""
    blue = red = violet = saturated = 0
    for y in range(area.y, area.y + area.height):
        for x in range(area.x, area.x + area.width):
            colour = QColor(image.pixel(x, y))
            if colour.hsvSaturation() < _SATURATED or colour.value() < _MIN_VALUE:
                continue
            saturated += 1
            hue = colour.hsvHue()
            if 195 <= hue <= 245:
                blue += 1
            elif 246 <= hue <= 300:
                violet += 1
            elif hue <= 15 or hue >= 345:
                red += 1
    return IconColours(
        blue=blue, red=red, violet=violet, saturated=saturated, total=area.width * area.height
    )


def icon_pixels(image: QImage, area: Rect) -> tuple[int, ...]:
    """Every pixel of ``area`` in ``image``: two looks of the icon differ in some."""
    return tuple(
        image.pixel(x, y)
        for y in range(area.y, area.y + area.height)
        for x in range(area.x, area.x + area.width)
    )


def _differs(colour: int, background: int) -> bool:
    return any(
        abs(((colour >> shift) & 0xFF) - ((background >> shift) & 0xFF)) > _BACKGROUND_TOLERANCE
        for shift in (0, 8, 16)
    )


def foreground_blobs(image: QImage, panel: Rect) -> list[Rect]:
    """Bounding boxes of the groups of columns in ``panel`` that differ from its background.

    The panel's border rows are left out; columns with drawn pixels that touch form one
    group, which is enough to tell tray icons apart (they sit side by side).
    """
    top, bottom = panel.y + 2, panel.y + panel.height - 2
    background = image.pixel(panel.x + 4, panel.y + panel.height // 2)
    columns: dict[int, tuple[int, int]] = {}
    for x in range(panel.x, panel.x + panel.width):
        rows = [y for y in range(top, bottom) if _differs(image.pixel(x, y), background)]
        if rows:
            columns[x] = (min(rows), max(rows))
    blobs: list[Rect] = []
    start: int | None = None
    low = high = 0
    for x in range(panel.x, panel.x + panel.width + 1):
        if x in columns:
            if start is None:
                start, low, high = x, *columns[x]
            else:
                low, high = min(low, columns[x][0]), max(high, columns[x][1])
        elif start is not None:
            blobs.append(Rect(start, low, x - start, high - low + 1))
            start = None
    return blobs


def separators(image: QImage) -> list[int]:
    """The rows of a (GTK) menu screenshot that are separators: one uniform colour across
    the menu, other than its background and its border."""
    width, height = image.width(), image.height()
    background = image.pixel(width // 2, 3)
    border = image.pixel(width // 2, 0)
    found = []
    for y in range(1, height - 1):
        row = {image.pixel(x, y) for x in range(2, width - 2)}
        if len(row) == 1 and row.isdisjoint({background, border}):
            found.append(y)
    return found


class TrayDesktop(NotificationDesktop):
    """Xvfb, a private bus, gnome-keyring, xfconfd, xfce4-notifyd and xfce4-panel.

    Attributes:
        panel: The panel's window, once :meth:`start` has run.
        shots: Where screenshots taken for waiting go (overwritten each time).
    """

    def __init__(self, root: Path, *, timeout: float = 20.0) -> None:
        super().__init__(root, width=1280, height=800, timeout=timeout)
        self.panel: int | None = None
        self.shots = self.session.root / "shots"
        self.shots.mkdir(exist_ok=True)
        self._shot_count = 0

    def __enter__(self) -> TrayDesktop:
        return self

    def start(self, layout: Path = PANEL_LAYOUT) -> None:
        """Start the keyring, xfconfd and xfce4-notifyd, then the panel with ``layout``.

        The panel reads its layout through xfconfd, which must be running first; it owns
        the StatusNotifierWatcher name once its systray plugin is up, which is when a tray
        icon can register.
        """
        self.session.start_keyring()
        channels = self.session.home / ".config" / "xfce4" / "xfconf" / "xfce-perchannel-xml"
        channels.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout, channels / "xfce4-panel.xml")
        self.start_notifyd()
        binary = shutil.which("xfce4-panel")
        if binary is None:
            raise DesktopSessionError("xfce4-panel is not installed (apt: xfce4-panel)")
        # No window manager runs here; without the flag the panel waits 5 s for one.
        self.session.start_daemon(
            [binary, "--disable-wm-check"],
            name=STATUS_NOTIFIER_WATCHER,
            extra_env={"DISPLAY": self.display, "NO_AT_BRIDGE": "1"},
        )
        self.panel = self.wait_for_window("xfce4-panel")

    # --- looking -------------------------------------------------------------------

    def panel_rect(self) -> Rect:
        if self.panel is None:
            raise DesktopSessionError("the panel is not started")
        return self.geometry(self.panel)

    def grab(self, path: Path | None = None) -> QImage:
        """A screenshot of the whole screen (saved at ``path``, or a scratch file)."""
        if path is None:
            self._shot_count += 1
            path = self.shots / f"screen-{self._shot_count % 4}.png"
        self.screenshot(path)
        image = QImage(str(path))
        if image.isNull():
            raise DesktopSessionError(f"unreadable screenshot {path}")
        return image

    def tray_icons(self, image: QImage | None = None) -> list[Rect]:
        """Every icon in the panel, left to right (the panel holds only the tray)."""
        return foreground_blobs(image if image is not None else self.grab(), self.panel_rect())

    def wait_for_tray_icon(self) -> Rect:
        """Wait until exactly one icon is in the tray; its area."""
        found: list[Rect] = []

        def one() -> bool:
            nonlocal found
            found = self.tray_icons()
            return len(found) == 1

        self.session.wait_until(one, what="one icon in the tray", interval=0.1)
        # A margin: the icon's drawn pixels depend on its look, its slot does not.
        icon, panel = found[0], self.panel_rect()
        left, top = max(panel.x, icon.x - 2), max(panel.y + 2, icon.y - 2)
        right = min(panel.x + panel.width, icon.x + icon.width + 2)
        bottom = min(panel.y + panel.height - 2, icon.y + icon.height + 2)
        return Rect(left, top, right - left, bottom - top)

    def wait_for_empty_tray(self) -> None:
        """Wait until no icon is left in the tray (an earlier app has gone)."""
        self.session.wait_until(lambda: not self.tray_icons(), what="an empty tray", interval=0.1)

    def wait_for_icon(
        self,
        area: Rect,
        condition: Callable[[IconColours], bool],
        *,
        what: str,
        timeout: float | None = None,
    ) -> tuple[QImage, IconColours]:
        """Take screenshots until the icon's colours satisfy ``condition``; the last one.

        Raises:
            AssertionError: Not within the timeout (the last census is in the message).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            image = self.grab()
            colours = icon_colours(image, area)
            if condition(colours):
                return image, colours
            if time.monotonic() > deadline:
                raise AssertionError(f"the tray icon never showed {what}: last saw {colours}")
            time.sleep(0.05)  # between screenshots; each takes a few hundred ms anyway

    # --- touching ------------------------------------------------------------------

    def open_tray_menu(self, area: Rect) -> int:
        """Right-click the tray icon and wait for the menu the panel draws; its window."""
        before = set(self._menus())
        x, y = area.center
        self.xdotool("mousemove", "--sync", str(x), str(y), "click", "3")
        found: list[int] = []

        def shown() -> bool:
            nonlocal found
            found = [w for w in self._menus() if w not in before]
            return bool(found)

        self.session.wait_until(shown, what="the tray menu", interval=0.05)
        return found[-1]

    def menu_separators(self, menu: int) -> list[int]:
        """Wait until the menu is drawn; the screen rows of its separators, top to bottom."""
        origin = self.geometry(menu)
        rows: list[int] = []

        def drawn() -> bool:
            nonlocal rows
            self._shot_count += 1
            shot = self.screenshot(self.shots / f"menu-{self._shot_count % 4}.png", menu)
            rows = [origin.y + y for y in separators(QImage(str(shot)))]
            return len(rows) >= 2

        self.session.wait_until(drawn, what=f"menu {menu} drawn with separators", interval=0.05)
        return rows

    def toast_buttons(self, window: int, count: int = 2) -> list[Rect]:
        """The action buttons of toast ``window``, once the daemon has drawn ``count``."""
        found: list[Rect] = []

        def drawn() -> bool:
            nonlocal found
            try:
                found = self.buttons(window)
            except DesktopSessionError:
                return False  # mapped but not painted yet
            return len(found) == count

        self.session.wait_until(drawn, what=f"{count} buttons on toast {window}", interval=0.05)
        return found

    def keyring_holds(self, service: str, username: str) -> bool:
        """Whether gnome-keyring on this desktop's bus holds a secret for ``service`` and
        ``username``, asked through keyring's Secret Service backend from another process
        (the secret itself never reaches this process)."""
        script = (
            "import sys\n"
            "from keyring.backends.SecretService import Keyring\n"
            "sys.exit(0 if Keyring().get_password(sys.argv[1], sys.argv[2]) else 3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, service, username],
            env=self.session.daemon_env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if result.returncode not in (0, 3):
            raise DesktopSessionError(f"reading the keyring failed: {result.stderr}")
        return result.returncode == 0

    def dismiss_menus(self) -> None:
        """Close any menu left open (it holds the pointer and keyboard grab); Escape
        closes one level of submenus at a time."""
        for _level in range(4):
            if not self._menus():
                return
            self.xdotool("key", "Escape")

    def _menus(self) -> list[int]:
        """The panel's popup menus: wrapper windows above the panel, not the tray itself."""
        panel = self.panel_rect()
        menus = []
        for window in self.windows(PLUGIN_WRAPPER_CLASS):
            with contextlib.suppress(DesktopSessionError):
                geometry = self.geometry(window)
                if geometry.y + geometry.height <= panel.y + 1 and geometry.height > 40:
                    menus.append(window)
        return menus


@dataclass
class UserSession:
    """The environment of one desktop user's session for the client, in private folders.

    Attributes:
        env: the client's environment (the desktop's display and D-Bus included).
        home: the user's home folder (the client's working directory).
        runtime_dir: ``XDG_RUNTIME_DIR``, short: the single-instance socket lives there.
        data, config, logs: the client's own folders (``TRAY_NOTIFIER_*_DIR``).
    """

    env: dict[str, str]
    home: Path
    runtime_dir: Path
    data: Path
    config: Path
    logs: Path

    def start(self, command: list[str], output: IO[bytes]) -> subprocess.Popen[bytes]:
        """``command`` in this session, in a process group of its own (killed whole),
        its standard output and error into ``output``."""
        return subprocess.Popen(
            command,
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def user_session(desktop: NotificationDesktop, root: Path, *, password: str) -> UserSession:
    """A fresh session below ``root`` whose first login takes ``password`` from
    ``TRAY_NOTIFIER_PASSWORD``, and no managed file; the caller adds what differs."""
    home = root / "home"
    data, config, logs = root / "data", root / "config", root / "logs"
    for directory in (home, data, config, logs):
        directory.mkdir(parents=True, exist_ok=True)
    # The single-instance socket lives in XDG_RUNTIME_DIR and must fit 100 bytes.
    runtime_dir = Path(tempfile.mkdtemp(prefix="tn-run-"))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        # The session's clock is UTC whatever the machine or an earlier test says, so a
        # test can word the times the app shows (quiet hours' end, do-not-disturb's).
        "TZ": "UTC",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "TMPDIR": str(runtime_dir),
        "TRAY_NOTIFIER_DATA_DIR": str(data),
        "TRAY_NOTIFIER_CONFIG_DIR": str(config),
        "TRAY_NOTIFIER_LOG_DIR": str(logs),
        "TRAY_NOTIFIER_PASSWORD": password,
        # Not the machine's managed file (/etc/xdg/tray-notifier/managed.json): the
        # installer's test writes one while it runs, which would send an app started
        # meanwhile (on another pytest worker) to that test's server. A test of the
        # managed file names its own, or removes this to use the machine's.
        "TRAY_NOTIFIER_MANAGED_FILE": str(root / "no-managed-settings.json"),
        "QT_QPA_PLATFORM": "xcb",
        "NO_AT_BRIDGE": "1",
        **desktop.env,
    }
    return UserSession(env, home, runtime_dir, data, config, logs)


@dataclass(frozen=True)
class StoredRow:
    seq: int
    id: int
    title: str
    is_read: bool


class TrayAppProcess:
    """``tray-notifier`` as a user starts it: the console script, a display, a session bus.

    Everything it keeps goes to private directories under ``root`` (data, config, logs,
    HOME and XDG), and nothing of the test process's environment reaches it: in particular
    not ``QT_QPA_PLATFORM=offscreen`` and not a real user's session bus.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        root: Path,
        runtime_dir: Path,
        server_url: str,
        username: str,
        output: IO[bytes],
    ) -> None:
        self.process = process
        self.root = root
        self.server_url = server_url
        self.username = username
        self.data_dir = root / "data"
        self.log_file = root / "logs" / "tray-notifier.log"
        self.output_file = Path(output.name)
        self._runtime_dir = runtime_dir
        self._output = output

    @classmethod
    def start(
        cls,
        desktop: NotificationDesktop,
        server_url: str,
        root: Path,
        *,
        username: str = "alice",
        password: str = "demo",
    ) -> TrayAppProcess:
        """Start ``tray-notifier --server URL --username NAME`` logging in with ``password``."""
        script = Path(sys.executable).with_name("tray-notifier")
        if not script.exists():
            raise DesktopSessionError(f"the console script is not installed at {script}")
        session = user_session(desktop, root, password=password)
        session.env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        runtime_dir = session.runtime_dir
        output = (root / "output.log").open("ab")
        process = session.start(
            [str(script), "--server", server_url, "--username", username], output
        )
        return cls(
            process,
            root=root,
            runtime_dir=runtime_dir,
            server_url=server_url,
            username=username,
            output=output,
        )

    @property
    def database_path(self) -> Path:
        return account_database_path(self.data_dir, self.server_url, self.username)

    def rows(self) -> list[StoredRow]:
        """The app's stored notifications, by seq (empty until its store exists)."""
        if not self.database_path.exists():
            return []
        connection = sqlite3.connect(f"file:{self.database_path}?mode=ro", uri=True, timeout=5)
        try:
            return [
                StoredRow(seq, id_, title, bool(is_read))
                for seq, id_, title, is_read in connection.execute(
                    "SELECT seq, id, title, is_read FROM notifications ORDER BY seq"
                )
            ]
        finally:
            connection.close()

    def cursor(self) -> int:
        """The store's cursor (highest seq with no gap below); 0 before the store exists."""
        return read_store_cursor(self.database_path)

    def log(self) -> str:
        """The app's log file so far."""
        return self.log_file.read_text("utf-8", "replace") if self.log_file.exists() else ""

    def output(self) -> str:
        """What the app printed on stdout/stderr."""
        return self.output_file.read_text("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a session logout sends it; the exit code.

        Raises:
            AssertionError: It did not exit in time (it is killed then).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"tray-notifier ignored SIGTERM for {timeout:.0f} s:\n{self.output()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the app and anything it started; safe to call twice."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.close()

    def close(self) -> None:
        self._output.close()
        shutil.rmtree(self._runtime_dir, ignore_errors=True)


class RestUser:
    """One user of the server over REST: what the server says is the tests' ground truth."""

    def __init__(self, server_url: str, username: str = "alice", password: str = "demo") -> None:
        self._client = httpx.Client(base_url=server_url, timeout=10)
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _request(self, method: str, path: str, body: object = None) -> httpx.Response:
        for _attempt in range(2):
            if self._token is None:
                response = self._client.post("/api/auth/token/", json=self._credentials)
                response.raise_for_status()
                self._token = str(response.json()["access"])
            response = self._client.request(
                method, path, headers={"Authorization": f"Bearer {self._token}"}, json=body
            )
            if response.status_code != 401:
                response.raise_for_status()
                return response
            self._token = None  # expired: log in again
        response.raise_for_status()
        return response

    def state(self) -> tuple[int, int]:
        """``(unread_count, latest_seq)``."""
        body = self._request("GET", "/api/inbox/unread-count/").json()
        return int(body["unread_count"]), int(body["latest_seq"])

    def unread_count(self) -> int:
        return self.state()[0]

    def mark_all_read(self) -> None:
        self._request("POST", "/api/inbox/mark-all-read/", {})

    def publish(
        self, title: str, *, message: str = "", to: str = "alice", priority: str = "normal"
    ) -> None:
        """Publish a notification (the user must be staff, like the demo admin)."""
        self._request(
            "POST",
            "/api/notifications/",
            {
                "audience": {"usernames": [to]},
                "title": title,
                "message": message,
                "priority": priority,
            },
        )

    def attention(self) -> dict[str, Any]:
        """The user's attention settings (docs/protocol.md, "Attention")."""
        body: dict[str, Any] = self._request("GET", "/api/attention/").json()
        return body

    def change_attention(self, change: dict[str, Any]) -> dict[str, Any]:
        """Change them as another device of the user would."""
        body: dict[str, Any] = self._request("PATCH", "/api/attention/", change).json()
        return body

    def close(self) -> None:
        self._client.close()


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` (REST, SQLite, files) until true.

    Raises:
        AssertionError: Not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_app(desktop: TrayDesktop, server_url: str, root: Path) -> Iterator[TrayAppProcess]:
    """Start the app once the tray is empty; SIGKILL it at exit if the test did not stop it."""
    desktop.wait_for_empty_tray()
    app = TrayAppProcess.start(desktop, server_url, root)
    try:
        yield app
    finally:
        desktop.dismiss_menus()
        app.kill()
