"""Linux's routing netlink (``NETLINK_ROUTE``): is there a way out, and did that change?

The pure part of the app's network watch on Linux (the Qt part, a socket read on the
event loop, is :class:`tray_app.ui.wakeups.WakeWatcher`). It replaces Qt's
QNetworkInformation there, which loads GLib, GIO and a thread of its own (issue 20).

"Online" is what GLib's netlink network monitor calls available: the main routing table
has a default route (IPv4 or IPv6) that can carry packets: a unicast route (not
``unreachable`` or ``blackhole``), not marked ``linkdown``, through an interface that is
up and has its carrier (``IFF_UP`` and ``IFF_LOWER_UP``) and is not the loopback. Such a
route does not prove the server is reachable; it proves that trying is not pointless.

The kernel announces changes to the multicast groups in :data:`GROUPS`; a notification
is only a cue to ask again (:func:`dump_request`), since some changes (a carrier lost
under an IPv4 route) come as a link message with no route message at all.

No Qt and no I/O here: bytes in, values out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping

import msgspec

__all__ = [
    "GROUPS",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_DUMP",
    "NLM_F_REQUEST",
    "RTM_GETLINK",
    "RTM_GETROUTE",
    "Link",
    "Message",
    "Route",
    "announces_change",
    "dump_error",
    "dump_request",
    "is_online",
    "messages",
    "parse_link",
    "parse_route",
]

# <linux/netlink.h>
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
# What a watcher binds to: links, addresses and routes of both families.
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTNH_F_LINKDOWN = 0x10
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
# <linux/if.h>, <linux/if_link.h>
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
IFLA_IFNAME = 3
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_RTGENMSG = struct.Struct("=Bxxx")  # family, padded to 4
_RTATTR = struct.Struct("=HH")  # length, type
_ANNOUNCEMENTS = frozenset(
    {RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE}
)


def _align(length: int) -> int:
    return (length + 3) & ~3


class Message(msgspec.Struct, frozen=True):
    """One netlink message: its header's fields and what follows the header."""

    type: int
    flags: int
    seq: int
    payload: bytes


class Route(msgspec.Struct, frozen=True):
    """What matters of a route (an ``rtmsg`` and its attributes)."""

    family: int
    dst_len: int
    table: int
    type: int
    flags: int
    oif: int | None = None
    gateway: bytes | None = None

    @property
    def is_default(self) -> bool:
        """A usable default route of the main table (see the module's docstring)."""
        return (
            self.family in (AF_INET, AF_INET6)
            and self.dst_len == 0
            and self.table == RT_TABLE_MAIN
            and self.type == RTN_UNICAST
            and not self.flags & RTNH_F_LINKDOWN
        )


class Link(msgspec.Struct, frozen=True):
    """An interface: its index, ``IFF_*`` flags and name."""

    index: int
    flags: int
    name: str = ""

    @property
    def carries(self) -> bool:
        """Up, with a carrier, and not the loopback."""
        return (
            self.flags & (IFF_UP | IFF_LOWER_UP) == (IFF_UP | IFF_LOWER_UP)
            and not self.flags & IFF_LOOPBACK
        )


def messages(data: bytes) -> Iterator[Message]:
    """The messages of one datagram read from a netlink socket; a truncated tail ends it."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return
        yield Message(kind, flags, seq, data[offset + _HEADER.size : offset + length])
        offset += _align(length)


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            return
        yield kind & 0x3FFF, data[offset + _RTATTR.size : offset + length]  # no NLA_F_* bits
        offset += _align(length)


def parse_route(payload: bytes) -> Route | None:
    """The route an ``RTM_NEWROUTE``/``RTM_DELROUTE`` message carries; None if malformed."""
    if len(payload) < _RTMSG.size:
        return None
    family, dst_len, _src, _tos, table, _proto, _scope, kind, flags = _RTMSG.unpack_from(payload)
    oif: int | None = None
    gateway: bytes | None = None
    for attribute, value in _attributes(payload, _RTMSG.size):
        if attribute == RTA_TABLE and len(value) >= 4:
            table = struct.unpack_from("=I", value)[0]  # tables above 255
        elif attribute == RTA_OIF and len(value) >= 4:
            oif = struct.unpack_from("=i", value)[0]
        elif attribute == RTA_GATEWAY:
            gateway = value
    return Route(family, dst_len, table, kind, flags, oif, gateway)


def parse_link(payload: bytes) -> Link | None:
    """The interface an ``RTM_NEWLINK``/``RTM_DELLINK`` message carries; None if malformed."""
    if len(payload) < _IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    name = ""
    for attribute, value in _attributes(payload, _IFINFOMSG.size):
        if attribute == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode(errors="replace")
    return Link(index, flags, name)


def announces_change(batch: Iterable[Message]) -> bool:
    """Whether any of these (multicast) messages announces a link, address or route change."""
    return any(message.type in _ANNOUNCEMENTS for message in batch)


def dump_request(kind: int, seq: int, family: int = AF_UNSPEC) -> bytes:
    """A request for every link (``RTM_GETLINK``) or route (``RTM_GETROUTE``) there is."""
    body = _RTGENMSG.pack(family)
    if kind == RTM_GETLINK:
        body = _IFINFOMSG.pack(family, 0, 0, 0, 0)
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def dump_error(message: Message) -> int | None:
    """The errno of an ``NLMSG_ERROR`` message (0 is an acknowledgement), else None."""
    if message.type != NLMSG_ERROR or len(message.payload) < 4:
        return None
    return -int(struct.unpack_from("=i", message.payload)[0])


def is_online(routes: Iterable[Route], links: Mapping[int, Link]) -> bool:
    """Whether a usable default route exists (see the module's docstring).

    A route with no single output interface (a multipath route) counts when it is
    otherwise usable; so does one whose interface is not in ``links``.
    """
    for route in routes:
        if not route.is_default:
            continue
        link = links.get(route.oif) if route.oif is not None else None
        if link is None or link.carries:
            return True
    return False
