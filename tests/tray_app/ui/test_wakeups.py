"""Waking up: logind's PrepareForSleep(false) from the name's owner reaches the app;
the same signal from anyone else does not.

The watcher listens over Qt's D-Bus module, whose signals the Qt event loop delivers: the
tests run on a qasync loop, as the app does (the ``run`` fixture)."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from tests.tray_app.desktop_session import DesktopSession
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
