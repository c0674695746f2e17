"""Waking up: logind's PrepareForSleep(false) from the name's owner reaches the app;
the same signal from anyone else does not."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.tray_app.desktop_session import DesktopSession
from tray_app.ui.wakeups import WakeWatcher

FAKE_LOGIND = Path(__file__).with_name("fake_logind.py")


def test_a_wake_from_logind_is_signalled(qtbot, tmp_path):
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

        assert asyncio.run(watch()) is True


def test_a_forged_signal_from_another_sender_is_ignored(qtbot, tmp_path):
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
            for _ in range(20):
                await asyncio.sleep(0)
            watcher.stop()

        asyncio.run(watch())
        assert woke == []


def test_no_bus_is_not_an_error(qtbot, tmp_path):
    watcher = WakeWatcher()
    missing = f"unix:path={tmp_path / 'nobody-listens'}"
    assert asyncio.run(watcher.watch_sleep(bus_address=missing)) is False
