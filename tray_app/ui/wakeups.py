"""Telling the session that the network came back or the machine woke up.

Two sources, both optional: Qt's QNetworkInformation (reachability, where the
platform has a backend) and, on Linux, logind's ``PrepareForSleep(false)`` signal on
the system bus. Either makes the app reconnect at once instead of waiting out a
backoff that grew while the laptop was asleep.
"""

from __future__ import annotations

import itertools
import logging
import sys

from PySide6.QtCore import SLOT, QObject, Signal, Slot
from PySide6.QtNetwork import QNetworkInformation

logger = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_MANAGER = "org.freedesktop.login1.Manager"
PREPARE_FOR_SLEEP = "PrepareForSleep"

# Each watcher's own named Qt D-Bus connection (Qt shares connections by name).
_connection_names = (f"tray-notifier-sleep-{n}" for n in itertools.count(1))


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
        self._bus_name: str | None = None
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

        Over Qt's D-Bus module (already loaded for the tray icon): Qt adds the match rule
        (sender, interface, member) to the bus, and the bus only routes the signal from the
        connection that owns logind's name, so a forged one never arrives. The signal is
        delivered by the Qt event loop (the app's qasync loop).

        Returns False, having logged why, where there is no such bus (not Linux, a
        container): the app then relies on its heartbeats alone."""
        if sys.platform != "linux" and bus_address is None:
            return False
        from PySide6.QtDBus import QDBusConnection

        self.stop()
        name = next(_connection_names)
        if bus_address is None:
            bus = QDBusConnection.connectToBus(QDBusConnection.BusType.SystemBus, name)
        else:
            bus = QDBusConnection.connectToBus(bus_address, name)
        if not bus.isConnected():
            logger.info("not watching for sleep (%s)", bus.lastError().name() or "no bus")
            QDBusConnection.disconnectFromBus(name)
            return False
        self._bus_name = name
        # PySide6 6.11 takes the slot as the str SLOT() returns (its stubs say bytes, which
        # it refuses at run time).
        if not bus.connect(  # type: ignore[call-overload]
            LOGIND,
            LOGIND_PATH,
            LOGIND_MANAGER,
            PREPARE_FOR_SLEEP,
            "b",
            self,
            SLOT("_on_prepare_for_sleep(bool)"),
        ):
            logger.info("not watching for sleep (%s)", bus.lastError().name() or "refused")
            self.stop()
            return False
        return True

    @Slot(bool)
    def _on_prepare_for_sleep(self, starting: bool) -> None:
        if not starting:
            logger.info("the machine woke up")
            self.woke_up.emit()

    def stop(self) -> None:
        name, self._bus_name = self._bus_name, None
        if name is not None:
            from PySide6.QtDBus import QDBusConnection

            QDBusConnection.disconnectFromBus(name)
