"""Waking up: logind's PrepareForSleep(false) from the name's owner reaches the app;
the same signal from anyone else does not. The network: the kernel's routing netlink, in a
network namespace of each test's own, tells the app when a way out appears or goes.

The watcher listens over Qt's D-Bus module, whose signals the Qt event loop delivers: the
tests run on a qasync loop, as the app does (the ``run`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from tests.tray_app.desktop_session import DesktopSession
from tray_app.ui import wakeups
from tray_app.ui.wakeups import WakeWatcher

T = TypeVar("T")
FAKE_LOGIND = Path(__file__).with_name("fake_logind.py")


@pytest.fixture
def run(qapp: QApplication) -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coro)``: run it to completion on a qasync loop, as the app does."""
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(qapp)) as runner:

        def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
            return runner.run(asyncio.wait_for(coroutine, 30))

        yield run_coroutine
    gc.collect()


def test_a_wake_from_logind_is_signalled(run, tmp_path):
    with DesktopSession(tmp_path / "desktop") as session:
        session.start_daemon([sys.executable, str(FAKE_LOGIND)], name="org.freedesktop.login1")
        watcher = WakeWatcher()

        async def watch() -> bool:
            woke = asyncio.Event()
            watcher.woke_up.connect(woke.set)
            subscribed = await watcher.watch_sleep(
                bus_address=session.env["DBUS_SESSION_BUS_ADDRESS"]
            )
            async with asyncio.timeout(10):
                await woke.wait()
            watcher.stop()
            return subscribed

        assert run(watch()) is True


def test_a_forged_signal_from_another_sender_is_ignored(run, tmp_path):
    with DesktopSession(tmp_path / "desktop") as session:
        watcher = WakeWatcher()
        woke: list[bool] = []
        watcher.woke_up.connect(lambda: woke.append(True))
        address = session.env["DBUS_SESSION_BUS_ADDRESS"]

        async def watch() -> None:
            assert await watcher.watch_sleep(bus_address=address)
            forged = await asyncio.create_subprocess_exec(
                "dbus-send",
                f"--bus={address}",
                "--type=signal",
                "/org/freedesktop/login1",
                "org.freedesktop.login1.Manager.PrepareForSleep",
                "boolean:false",
            )
            assert await forged.wait() == 0
            # A round trip through the bus after the forgery: had it been delivered to
            # us, it would have been delivered before this answer.
            ping = await asyncio.create_subprocess_exec(
                "dbus-send",
                f"--bus={address}",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetId",
                stdout=asyncio.subprocess.DEVNULL,
            )
            assert await ping.wait() == 0
            # Qt reads the bus in its own thread and posts what arrives to this one.
            await asyncio.sleep(0.5)
            watcher.stop()

        run(watch())
        assert woke == []


def test_no_bus_is_not_an_error(run, tmp_path):
    watcher = WakeWatcher()
    missing = f"unix:path={tmp_path / 'nobody-listens'}"
    assert run(watcher.watch_sleep(bus_address=missing)) is False


def test_stop_closes_the_connection(run, tmp_path):
    """The watcher's bus connection goes with stop() (at quit)."""
    with DesktopSession(tmp_path / "desktop") as session:
        session.start_daemon([sys.executable, str(FAKE_LOGIND)], name="org.freedesktop.login1")
        watcher = WakeWatcher()
        address = session.env["DBUS_SESSION_BUS_ADDRESS"]
        assert run(watcher.watch_sleep(bus_address=address))
        before = session.dbus_send(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"
        )
        watcher.stop()

        async def settle() -> None:
            await asyncio.sleep(0.5)

        run(settle())
        after = session.dbus_send(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"
        )
        assert before.count('":1.') == after.count('":1.') + 1, (before, after)


# --- the network, on Linux through the routing netlink --------------------------------

_namespaces = itertools.count(1)
CLONE_NEWNET = 0x40000000


def _ip(*args: str, input: str | None = None) -> None:
    done = subprocess.run(["ip", *args], input=input, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


@contextlib.contextmanager
def _inside(namespace: str) -> Iterator[None]:
    """This thread in ``namespace`` (a socket stays in the namespace it was made in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/ns/net", "rb") as home, open(f"/run/netns/{namespace}", "rb") as there:
        if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the test namespace")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh network namespace holding a veth pair, both ends up, v0 addressed; no route
    out. (Dummy links need a kernel module containers may not have; veth is built in.)"""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the network watch tests need root and iproute2's `ip` (scripts/test)")
    name = f"tnww{os.getpid() % 100000}x{next(_namespaces)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "link", "set", "v0", "up")
        _ip("-n", name, "link", "set", "v1", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", "10.77.0.2/24", "dev", "v0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _routes(namespace: str, *family: str) -> str:
    return subprocess.run(
        ["ip", "-n", namespace, *family, "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


class Changes:
    """``network_changed`` as it is emitted: all of it, and one at a time."""

    def __init__(self, watcher: WakeWatcher) -> None:
        self.seen: list[bool] = []
        self._queue: asyncio.Queue[bool] = asyncio.Queue()
        watcher.network_changed.connect(self._record)

    def _record(self, online: bool) -> None:
        self.seen.append(online)
        self._queue.put_nowait(online)

    async def next(self) -> bool:
        return await asyncio.wait_for(self._queue.get(), 10)


def test_the_network_watch_follows_default_routes_and_carriers(run, namespace):
    """Real kernel announcements in a namespace of the test's own: a default route makes
    the network "up"; its carrier lost, its removal, "down"; IPv6 counts as much as IPv4."""
    watcher = WakeWatcher()
    changes = Changes(watcher)
    with _inside(namespace):
        assert watcher.watch_network()
    assert watcher.online is False  # addresses but no way out
    assert changes.seen == []  # the state found at the start is not a change

    async def follow() -> None:
        _ip("-n", namespace, "route", "add", "default", "via", "10.77.0.1")
        assert await changes.next() is True
        # The peer going down takes v0's carrier. The kernel keeps the IPv4 route (marked
        # linkdown) and announces only the link: it is the link that says "down".
        _ip("-n", namespace, "link", "set", "v1", "down")
        assert await changes.next() is False
        assert "linkdown" in _routes(namespace)
        _ip("-n", namespace, "link", "set", "v1", "up")
        assert await changes.next() is True
        _ip("-n", namespace, "route", "del", "default")
        assert await changes.next() is False
        _ip("-n", namespace, "-6", "addr", "add", "fd77::2/64", "dev", "v0", "nodad")
        _ip("-n", namespace, "-6", "route", "add", "default", "via", "fd77::1")
        assert await changes.next() is True
        assert watcher.online is True

    run(follow())
    watcher.stop()
    assert changes.seen == [True, False, True, False, True]


def test_a_burst_of_changes_is_looked_at_once(run, namespace):
    """Routes that come and go within the settling time: one look, one change."""
    watcher = WakeWatcher()
    changes = Changes(watcher)
    with _inside(namespace):
        assert watcher.watch_network()
    batch = "\n".join(
        ["route add default via 10.77.0.1", "route del default"] * 5
        + ["route add default via 10.77.0.1"]
    )

    async def burst() -> None:
        _ip("-n", namespace, "-batch", "-", input=batch)
        assert await changes.next() is True
        # A change after the burst, seen on its own: had the burst been looked at more
        # than once, a second True (or a False) would have come before it.
        _ip("-n", namespace, "route", "del", "default")
        assert await changes.next() is False

    run(burst())
    watcher.stop()
    assert changes.seen == [True, False]


def test_without_netlink_the_network_is_not_watched(run, monkeypatch):
    """Where the kernel refuses the socket (a seccomp sandbox), the app relies on its
    heartbeats, and no Qt network module is loaded for it."""

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "netlink refused")

    monkeypatch.setattr(wakeups, "_netlink_socket", refused)
    watcher = WakeWatcher()
    assert watcher.watch_network() is False
    assert watcher.online is None
    watcher.stop()


def test_stop_closes_the_network_sockets(namespace):
    watcher = WakeWatcher()
    before = set(os.listdir("/proc/self/fd"))
    with _inside(namespace):
        assert watcher.watch_network()
    assert len(set(os.listdir("/proc/self/fd")) - before) == 2
    watcher.stop()
    assert set(os.listdir("/proc/self/fd")) - before == set()
