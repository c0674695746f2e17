"""Telling the session that the network came back or the machine woke up.

Two sources, both optional: the network (on Linux the kernel's routing netlink, see
:mod:`tray_app.netlink`; elsewhere Qt's QNetworkInformation, where the platform has a
backend) and, on Linux, logind's ``PrepareForSleep(false)`` signal on the system bus.
Either makes the app reconnect at once instead of waiting out a backoff that grew while
the laptop was asleep.
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import SLOT, QObject, QSocketNotifier, QTimer, Signal, Slot

from tray_app import netlink

if TYPE_CHECKING:
    from PySide6.QtNetwork import QNetworkInformation

logger = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_MANAGER = "org.freedesktop.login1.Manager"
PREPARE_FOR_SLEEP = "PrepareForSleep"
# A link coming up brings its addresses and routes within a few milliseconds of each
# other: the state is looked at once, this long after the first of them.
NETWORK_SETTLE_MS = 200
_QUERY_TIMEOUT_S = 2.0
_RECEIVE_BUFFER = 65536

# Each watcher's own named Qt D-Bus connection (Qt shares connections by name).
_connection_names = (f"tray-notifier-sleep-{n}" for n in itertools.count(1))


class RouteQueryError(OSError):
    """The kernel did not answer a routing netlink dump."""


def _netlink_socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def _dump(sock: socket.socket, kind: int, seq: int) -> list[netlink.Message]:
    """Every message of one dump (``RTM_GETLINK`` or ``RTM_GETROUTE``) on ``sock``."""
    sock.send(netlink.dump_request(kind, seq))
    answer: list[netlink.Message] = []
    while True:
        data = sock.recv(_RECEIVE_BUFFER)
        for message in netlink.messages(data):
            if message.seq != seq:
                continue  # the tail of an earlier, abandoned dump
            if message.type == netlink.NLMSG_DONE:
                return answer
            failure = netlink.dump_error(message)
            if failure:
                raise RouteQueryError(failure, f"netlink dump refused: errno {failure}")
            if failure is None:
                answer.append(message)


def _query_online(sock: socket.socket, seq: int) -> bool:
    links = {}
    for message in _dump(sock, netlink.RTM_GETLINK, seq):
        link = netlink.parse_link(message.payload)
        if link is not None:
            links[link.index] = link
    routes = (netlink.parse_route(m.payload) for m in _dump(sock, netlink.RTM_GETROUTE, seq + 1))
    return netlink.is_online((r for r in routes if r is not None), links)


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
        self._events: socket.socket | None = None  # the kernel's announcements
        self._queries: socket.socket | None = None  # our dumps of links and routes
        self._notifier: QSocketNotifier | None = None
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(NETWORK_SETTLE_MS)
        self._settle.timeout.connect(self._recheck)
        self._seq = itertools.count(1)
        self._online: bool | None = None

    @property
    def online(self) -> bool | None:
        """The network's state as last seen (None until :meth:`watch_network` succeeds)."""
        return self._online

    def watch_network(self) -> bool:
        """Follow the network: on Linux the routing netlink, elsewhere QNetworkInformation.

        ``network_changed`` is emitted when the state changes (never for the state found
        at the start). False, having logged why, when the network cannot be watched: the
        app then relies on its heartbeats."""
        if sys.platform == "linux":
            return self._watch_netlink()
        return self._watch_network_information()

    def _watch_netlink(self) -> bool:
        self._stop_network()
        events: socket.socket | None = None
        queries: socket.socket | None = None
        try:
            events = _netlink_socket(netlink.GROUPS)
            events.setblocking(False)
            queries = _netlink_socket()
            queries.settimeout(_QUERY_TIMEOUT_S)
            # Both sockets first, then the state: a change in between is announced.
            online = _query_online(queries, self._next_seq())
        except OSError as error:
            for sock in (events, queries):
                if sock is not None:
                    sock.close()
            logger.info("not watching the network (netlink: %s); relying on heartbeats", error)
            return False
        self._events, self._queries, self._online = events, queries, online
        self._notifier = QSocketNotifier(events.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._read_events)
        logger.info("watching the network: %s", "online" if online else "offline")
        return True

    def _next_seq(self) -> int:
        return next(self._seq) * 2  # a dump of links and routes takes two

    def _read_events(self) -> None:
        events = self._events
        if events is None:
            return
        changed = False
        while True:
            try:
                data = events.recv(_RECEIVE_BUFFER)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    logger.warning("network watch failed (%s); relying on heartbeats", error)
                    self._stop_network()
                    return
                changed = True  # announcements were lost: look again
                continue
            changed = changed or netlink.announces_change(netlink.messages(data))
        if changed and not self._settle.isActive():
            self._settle.start()

    def _recheck(self) -> None:
        queries = self._queries
        if queries is None:
            return
        try:
            online = _query_online(queries, self._next_seq())
        except OSError as error:
            logger.warning("could not read the routes (%s); keeping the last state", error)
            return
        if online != self._online:
            self._online = online
            logger.info("the network is %s", "up" if online else "down")
            self.network_changed.emit(online)

    def _watch_network_information(self) -> bool:
        from PySide6.QtNetwork import QNetworkInformation  # not on Linux (GLib, a thread)

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
        from PySide6.QtNetwork import QNetworkInformation

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

        self._stop_sleep()
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
            self._stop_sleep()
            return False
        return True

    @Slot(bool)
    def _on_prepare_for_sleep(self, starting: bool) -> None:
        if not starting:
            logger.info("the machine woke up")
            self.woke_up.emit()

    def stop(self) -> None:
        """Stop watching the network and sleep (at quit)."""
        self._stop_network()
        self._stop_sleep()

    def _stop_network(self) -> None:
        self._settle.stop()
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.deleteLater()
            self._notifier = None
        for sock in (self._events, self._queries):
            if sock is not None:
                sock.close()
        self._events = self._queries = None

    def _stop_sleep(self) -> None:
        name, self._bus_name = self._bus_name, None
        if name is not None:
            from PySide6.QtDBus import QDBusConnection

            QDBusConnection.disconnectFromBus(name)
