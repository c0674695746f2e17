"""The tray icon first (issue 20): on a real desktop, the app's icon is on the bus before
the app asks the keyring anything or opens a connection, and it shows (greyed, with the
last unread count its store knows) while the keyring never answers.

The desktop is tests/e2e/desktop.py's: Xvfb, a private session bus, gnome-keyring,
xfce4-notifyd and xfce4-panel as the tray host. What happens first is read where it
happens:

- on the bus, by one ``dbus-monitor`` whose output is in the bus's own order: the app's
  ``RegisterStatusNotifierItem`` call, and every call of the app's that concerns the
  keyring (``org.freedesktop.secrets``: asked after by name, or called);
- on the network, by a TCP relay in front of the server that notes when the app's
  first connection arrives;
- a keyring that never answers is the real gnome-keyring-daemon stopped with SIGSTOP:
  it keeps its name on the bus, and calls to it wait.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from tests.e2e.desktop import RestUser, TrayAppProcess, TrayDesktop, running_app, wait_for
from tests.e2e.sni import TrayItem, TrayItemError
from tests.fixtures.services import ServerFactory
from tests.tray_app.conftest import RestartableServer, stalled

pytestmark = pytest.mark.slow

WAIT = 20.0
SECRETS = "org.freedesktop.secrets"
REGISTER = "RegisterStatusNotifierItem"
_MONITOR_RULES = (
    "type='method_call',interface='org.kde.StatusNotifierWatcher',member='RegisterStatusNotifierItem'",
    f"type='method_call',destination='{SECRETS}'",
    # NameHasOwner, GetNameOwner, StartServiceByName... about the keyring's name.
    f"type='method_call',interface='org.freedesktop.DBus',arg0='{SECRETS}'",
)
_CALL = re.compile(
    r"^method call time=(?P<at>\d+\.\d+) sender=(?P<sender>\S+) -> "
    r"destination=(?P<destination>\S+) [^\n]*member=(?P<member>\w+)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class BusCall:
    at: float  # dbus-monitor's receive time (wall clock)
    sender: str
    destination: str
    member: str

    @property
    def keyring(self) -> bool:
        return self.member != REGISTER


class BusLog:
    """``dbus-monitor`` on the desktop's bus, for the calls above, in the bus's order."""

    def __init__(self, address: str, path: Path) -> None:
        self._path = path
        self._output = path.open("wb")
        self._process = subprocess.Popen(
            ["dbus-monitor", "--address", address, *_MONITOR_RULES],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        # It reports becoming a monitor (NameLost) before anything else.
        wait_for(lambda: b"member=NameLost" in path.read_bytes(), what="dbus-monitor to start")

    def calls(self) -> list[BusCall]:
        text = self._path.read_text("utf-8", "replace")
        return [
            BusCall(float(m["at"]), m["sender"], m["destination"], m["member"])
            for m in _CALL.finditer(text)
        ]

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._output.close()


class Relay:
    """A TCP relay to the server that notes when each connection arrived (wall clock)."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.arrivals: list[float] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.arrivals.append(time.time())
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with client, socket.create_connection(self._target) as upstream:
            ends = {client: upstream, upstream: client}
            while True:
                ready, _, _ = select.select(list(ends), [], [], 1.0)
                if self._stopped:
                    return
                for end in ready:
                    try:
                        data = end.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    ends[end].sendall(data)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()


def connection_pid(address: str, sender: str) -> int | None:
    """The process id behind a unique bus name (None once it left the bus)."""
    bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
    with contextlib.closing(open_dbus_connection(address)) as connection:
        reply = connection.send_and_get_reply(
            new_method_call(bus, "GetConnectionUnixProcessID", "s", (sender,)), timeout=WAIT
        )
    if reply.header.message_type.name == "error":
        return None
    return int(reply.body[0])


def the_apps_calls(log: BusLog, address: str, app: TrayAppProcess, since: float) -> list[BusCall]:
    """The calls made by the app since ``since``, in the bus's order.

    Its icon is registered by its lasting Qt connection, known by its process id; the
    keyring opens a connection per operation, gone before it could be asked whose it
    was, so every keyring call since the app started counts as the app's: nothing else
    on this private bus uses the keyring during the test.
    """
    pids: dict[str, int | None] = {}
    mine = []
    for call in log.calls():
        if call.at < since:
            continue
        if call.keyring:
            mine.append(call)
            continue
        if call.sender not in pids:
            pids[call.sender] = connection_pid(address, call.sender)
        if pids[call.sender] == app.process.pid:
            mine.append(call)
    return mine


def tooltip_says(address: str, text: str) -> bool:
    with TrayItem(address, timeout=1.0) as tray:
        try:
            return text in tray.tooltip()
        except TrayItemError:
            return False


@pytest.fixture
def server(server_factory: ServerFactory) -> RestartableServer:
    return RestartableServer(server_factory)


@pytest.fixture
def relay(server: RestartableServer) -> Iterator[Relay]:
    started = Relay(server.port)
    yield started
    started.close()


def test_the_icon_is_on_the_bus_before_the_keyring_or_the_network_and_shows_while_the_keyring_never_answers(  # noqa: E501
    desktop: TrayDesktop, server: RestartableServer, relay: Relay, tmp_path: Path
) -> None:
    address = desktop.bus_address
    admin = RestUser(server.url, "admin")
    with contextlib.closing(RestUser(server.url, "alice")) as alice:
        alice.mark_all_read()
    root = tmp_path / "app"
    # Asked before the monitor starts: under load, dbus-monitor may stamp this call of the
    # test's own after a later ``started``, where it would count as the app's.
    keyring_pid = connection_pid(address, SECRETS)
    assert keyring_pid is not None
    log = BusLog(address, tmp_path / "bus.log")
    try:
        # A first start: a fresh app logs in with the password and keeps its login in the
        # keyring; two notifications stay unread in its store.
        started = time.time()
        with running_app(desktop, relay.url, root) as app:
            area = desktop.wait_for_tray_icon()
            desktop.wait_for_icon(area, lambda c: c.live, what="the blue (connected) tile")
            calls = the_apps_calls(log, address, app, started)
            first_register = next(i for i, c in enumerate(calls) if c.member == REGISTER)
            first_keyring = next(i for i, c in enumerate(calls) if c.keyring)
            assert first_register < first_keyring, calls
            assert relay.arrivals, "the app never reached the server"
            assert calls[first_register].at < relay.arrivals[0], (calls, relay.arrivals)
            for title in ("Build 41 failed", "Build 42 passed"):
                admin.publish(title)
            wait_for(
                lambda: sum(not row.is_read for row in app.rows()) == 2,
                what="two unread notifications in the app's store",
            )
            assert app.stop() == 0, app.output()

        # A second start with the keyring stopped: every call to it waits.
        arrivals_before = len(relay.arrivals)
        started = time.time()
        with stalled(keyring_pid), running_app(desktop, relay.url, root) as app:
            area = desktop.wait_for_tray_icon()
            desktop.wait_for_icon(area, lambda c: c.greyed, what="the greyed (starting) icon")
            wait_for(
                lambda: tooltip_says(address, "2 unread — Starting…"),
                what="the last known count in the tooltip",
            )
            # The app asked the keyring (and waits for it), after its icon was on the bus.
            wait_for(
                lambda: any(c.keyring for c in the_apps_calls(log, address, app, started)),
                what="the app asking the stopped keyring",
            )
            calls = the_apps_calls(log, address, app, started)
            assert calls[0].member == REGISTER, calls
            # The tooltip is read from the app itself while the keyring holds it up: its
            # GUI thread answers. Nothing went to the server meanwhile.
            assert tooltip_says(address, "2 unread — Starting…")
            assert len(relay.arrivals) == arrivals_before

            # The keyring answers again: the saved login is used and the app connects.
            os.kill(keyring_pid, signal.SIGCONT)
            desktop.wait_for_icon(
                area, lambda c: c.live and c.badge, what="the blue tile with its badge"
            )
            wait_for(
                lambda: tooltip_says(address, "2 unread — Connected"),
                what="connected, 2 unread",
            )
            assert len(relay.arrivals) > arrivals_before
            assert app.stop() == 0, app.output()
    finally:
        log.close()
        admin.close()
