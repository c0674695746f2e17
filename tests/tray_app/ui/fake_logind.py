"""A stand-in for logind on a private bus: owns org.freedesktop.login1 and announces a
sleep and a wake every 0.2 s until killed. (The real logind lives on the system bus,
which tests cannot drive; a signal must come from the name's owner to be believed.)"""

from __future__ import annotations

import asyncio

from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, signal


class Manager(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.login1.Manager")

    @signal()
    def PrepareForSleep(self, start: bool) -> b:  # type: ignore[name-defined]  # noqa: F821
        return start


async def main() -> None:
    bus = await MessageBus().connect()
    manager = Manager()
    bus.export("/org/freedesktop/login1", manager)
    await bus.request_name("org.freedesktop.login1")
    while True:
        manager.PrepareForSleep(True)
        manager.PrepareForSleep(False)
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
