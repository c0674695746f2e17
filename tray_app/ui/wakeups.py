"""Telling the session that the network came back or the machine woke up.

Two sources, both optional: Qt's QNetworkInformation (reachability, where the
platform has a backend) and, on Linux, logind's ``PrepareForSleep(false)`` signal on
the system bus. Either makes the app reconnect at once instead of waiting out a
backoff that grew while the laptop was asleep.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QNetworkInformation

logger = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
LOGIND_MATCH = (
    "type='signal',sender='org.freedesktop.login1',"
    "interface='org.freedesktop.login1.Manager',member='PrepareForSleep'"
)


class WakeWatcher(QObject):
    """Watches the network and sleep.

    Signals:
        network_changed(bool): the platform says the network is reachable (True) or not.
        woke_up(): the machine resumed from sleep.
    """

    network_changed = Signal(bool)
    woke_up = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bus: object | None = None
        self._information: QNetworkInformation | None = None

    def watch_network(self) -> bool:
        """Follow QNetworkInformation's reachability; False where no backend exists."""
        if not QNetworkInformation.loadBackendByFeatures(QNetworkInformation.Feature.Reachability):
            logger.info("no network information backend here; relying on heartbeats")
            return False
        information = QNetworkInformation.instance()
        if information is None:
            return False
        self._information = information
        information.reachabilityChanged.connect(self._on_reachability)
        return True

    def _on_reachability(self, reachability: QNetworkInformation.Reachability) -> None:
        online = reachability in (
            QNetworkInformation.Reachability.Online,
            QNetworkInformation.Reachability.Site,
            QNetworkInformation.Reachability.Local,
        )
        self.network_changed.emit(online)

    async def watch_sleep(self, *, bus_address: str | None = None) -> bool:
        """Subscribe to logind's PrepareForSleep on the system bus (or ``bus_address``).

        Returns False, having logged why, where there is no such bus (not Linux, a
        container): the app then relies on its heartbeats alone."""
        if sys.platform != "linux" and bus_address is None:
            return False
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        try:
            bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
            await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[LOGIND_MATCH],
                )
            )
        except (TimeoutError, OSError, ValueError, Exception) as error:
            # dbus-fast raises its own errors too; none of them may stop the app.
            logger.info("not watching for sleep (%s)", type(error).__name__)
            return False

        def on_message(message: Message) -> None:
            if (
                message.message_type is MessageType.SIGNAL
                and message.member == "PrepareForSleep"
                and message.body == [False]
            ):
                logger.info("the machine woke up")
                self.woke_up.emit()

        bus.add_message_handler(on_message)
        self._bus = bus
        return True

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()  # type: ignore[attr-defined]
