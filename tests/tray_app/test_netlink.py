"""Routing netlink messages, as the kernel writes them, read into "is there a way out".

The messages are built here byte by byte from <linux/netlink.h> and <linux/rtnetlink.h>
(independently of the module's own structs); the real kernel's are read by the network
namespace test in tests/tray_app/ui/test_wakeups.py.
"""

from __future__ import annotations

import errno
import socket
import struct

from tray_app import netlink
from tray_app.netlink import Link, Message, Route

MAIN, LOCAL = 254, 255
UNICAST, UNREACHABLE = 1, 7
UP_WITH_CARRIER = 0x1 | 0x40 | 0x10000  # IFF_UP | IFF_RUNNING | IFF_LOWER_UP


def attribute(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, payload: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 4242) + payload
    return raw + b"\0" * (-len(raw) % 4)


def route_payload(
    *,
    family: int = socket.AF_INET,
    dst_len: int = 0,
    table: int = MAIN,
    kind: int = UNICAST,
    flags: int = 0,
    oif: int | None = 2,
    gateway: bytes | None = bytes([192, 168, 1, 1]),
    table_attribute: int | None = None,
) -> bytes:
    body = bytes([family, dst_len, 0, 0, table, 3, 0, kind]) + struct.pack("=I", flags)
    if table_attribute is not None:
        body += attribute(15, struct.pack("=I", table_attribute))
    if dst_len:
        body += attribute(1, bytes(4 if family == socket.AF_INET else 16))
    if gateway is not None:
        body += attribute(5, gateway)
    if oif is not None:
        body += attribute(4, struct.pack("=i", oif))
    body += attribute(6, struct.pack("=I", 100))  # RTA_PRIORITY: ignored
    return body


def link_payload(index: int, flags: int, name: bytes) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, flags, 0)
    return body + attribute(3, name + b"\0") + attribute(13, struct.pack("=I", 1500))


def test_a_datagram_of_several_messages_is_split_at_aligned_boundaries() -> None:
    odd = b"\x01\x02\x03"  # a 19-byte message: padded to 20
    data = message(24, odd, seq=7) + message(3, struct.pack("=i", 0), seq=7, flags=2)
    assert list(netlink.messages(data)) == [
        Message(24, 0, 7, odd),
        Message(3, 2, 7, struct.pack("=i", 0)),
    ]


def test_a_truncated_or_nonsensical_tail_ends_the_datagram() -> None:
    whole = message(16, link_payload(1, 0, b"lo"))
    assert len(list(netlink.messages(whole + whole[:20]))) == 1
    bogus_length = struct.pack("=IHHII", 8, 16, 0, 0, 0)  # shorter than its own header
    assert list(netlink.messages(bogus_length + whole)) == []
    assert list(netlink.messages(b"")) == []


def test_a_default_route_of_the_main_table_is_read_with_its_interface() -> None:
    route = netlink.parse_route(route_payload(oif=3))
    assert route == Route(socket.AF_INET, 0, MAIN, UNICAST, 0, 3, bytes([192, 168, 1, 1]))
    assert route.is_default


def test_what_is_not_a_usable_default_route() -> None:
    def default(**fields: object) -> bool:
        route = netlink.parse_route(route_payload(**fields))  # type: ignore[arg-type]
        assert route is not None
        return route.is_default

    assert default(family=socket.AF_INET6, gateway=bytes(16))
    assert not default(dst_len=24)  # a subnet
    assert not default(table=LOCAL)
    assert not default(kind=UNREACHABLE)  # "unreachable default", IPv6's kernel fallback
    assert not default(flags=0x10)  # RTNH_F_LINKDOWN: its interface lost its carrier
    assert not default(family=socket.AF_PACKET)
    # A table above 255 is in RTA_TABLE, with 252 (RT_TABLE_COMPAT) in the header.
    assert not default(table=252, table_attribute=1000)
    assert default(table=252, table_attribute=MAIN)


def test_a_short_route_or_link_message_is_refused() -> None:
    assert netlink.parse_route(b"\x02\x00") is None
    assert netlink.parse_link(b"\x00" * 15) is None


def test_links_are_read_with_their_flags_and_name() -> None:
    assert netlink.parse_link(link_payload(2, UP_WITH_CARRIER, b"wlp3s0")) == Link(
        2, UP_WITH_CARRIER, "wlp3s0"
    )
    assert Link(2, UP_WITH_CARRIER).carries
    assert not Link(2, 0x1 | 0x1000).carries  # up, no carrier (cable out)
    assert not Link(2, 0x10000).carries  # administratively down
    assert not Link(1, UP_WITH_CARRIER | 0x8).carries  # the loopback


def test_online_needs_a_default_route_through_a_link_that_carries() -> None:
    wifi, lo = Link(2, UP_WITH_CARRIER, "wlan0"), Link(1, UP_WITH_CARRIER | 0x8, "lo")
    links = {2: wifi, 1: lo}
    default = Route(socket.AF_INET, 0, MAIN, UNICAST, 0, 2)
    subnet = Route(socket.AF_INET, 24, MAIN, UNICAST, 0, 2)
    assert netlink.is_online([subnet, default], links)
    assert not netlink.is_online([subnet], links)
    assert not netlink.is_online([], links)
    assert not netlink.is_online([default], {2: Link(2, 0x1, "wlan0")})
    assert not netlink.is_online([Route(socket.AF_INET, 0, MAIN, UNICAST, 0, 1)], links)
    # A multipath route names no single interface; an interface the dump missed is given
    # the benefit of the doubt.
    assert netlink.is_online([Route(socket.AF_INET6, 0, MAIN, UNICAST, 0, None)], links)
    assert netlink.is_online([Route(socket.AF_INET, 0, MAIN, UNICAST, 0, 9)], links)


def test_only_link_address_and_route_messages_announce_a_change() -> None:
    def batch(*kinds: int) -> list[Message]:
        return [Message(kind, 0, 0, b"") for kind in kinds]

    for kind in (16, 17, 20, 21, 24, 25):  # NEW/DEL LINK, ADDR, ROUTE
        assert netlink.announces_change(batch(kind))
    assert not netlink.announces_change(batch(28, 29, 3, 2))  # NEWNEIGH, DELNEIGH, DONE, ERROR
    assert not netlink.announces_change([])
    assert netlink.announces_change(batch(28, 24))


def test_dump_requests_are_well_formed() -> None:
    routes = netlink.dump_request(netlink.RTM_GETROUTE, seq=9)
    assert routes == struct.pack("=IHHII", 20, 26, 0x301, 9, 0) + bytes(4)
    links = netlink.dump_request(netlink.RTM_GETLINK, seq=10)
    assert links == struct.pack("=IHHII", 32, 18, 0x301, 10, 0) + bytes(16)


def test_error_messages_carry_a_negated_errno() -> None:
    refused = Message(2, 0, 5, struct.pack("=i", -errno.EPERM) + bytes(16))
    assert netlink.dump_error(refused) == errno.EPERM
    assert netlink.dump_error(Message(2, 0, 5, struct.pack("=i", 0))) == 0
    assert netlink.dump_error(Message(3, 0, 5, struct.pack("=i", 0))) is None
