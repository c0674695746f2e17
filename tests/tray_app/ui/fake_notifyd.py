"""A scripted notification server on a private bus, for what a real one will not do on cue.

Owns ``org.freedesktop.Notifications`` (on ``DBUS_SESSION_BUS_ADDRESS``) and answers as
the spec says, under the server name ``Fake Notify`` (not xfce4-notifyd: it supports a
click on the body). What it does with each ``Notify`` depends on its mode (the first
argument):

- ``hang``: never answers ``Notify`` (a server that hangs); answers everything else;
- ``click``: answers, then signals ``ActionInvoked(id, "default")`` (the body clicked)
  and ``NotificationClosed(id, 2)``;
- ``dismiss``: answers, then signals ``NotificationClosed(id, 2)`` (dismissed);
- ``quiet``: answers and does nothing more.

Every call it gets is appended to the record file (the second argument) as a JSON line
``{"member": ..., "signature": ..., "args": [...]}``, each hint as ``[signature, value]``.
Written with jeepney's blocking API: every type on the wire is spelled out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from jeepney import (
    DBusAddress,
    HeaderFields,
    Message,
    MessageType,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
EMITTER = DBusAddress(PATH, interface=NAME)
DELAY = 0.2  # seconds between answering Notify and the signals that follow
INTROSPECTION = """<node>
 <interface name="org.freedesktop.Notifications">
  <method name="Notify">
   <arg type="s" direction="in"/><arg type="u" direction="in"/><arg type="s" direction="in"/>
   <arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="as" direction="in"/>
   <arg type="a{sv}" direction="in"/><arg type="i" direction="in"/>
   <arg type="u" direction="out"/>
  </method>
  <method name="CloseNotification"><arg type="u" direction="in"/></method>
  <method name="GetCapabilities"><arg type="as" direction="out"/></method>
  <method name="GetServerInformation">
   <arg type="s" direction="out"/><arg type="s" direction="out"/>
   <arg type="s" direction="out"/><arg type="s" direction="out"/>
  </method>
  <signal name="NotificationClosed"><arg type="u"/><arg type="u"/></signal>
  <signal name="ActionInvoked"><arg type="u"/><arg type="s"/></signal>
 </interface>
</node>
"""


def record(path: Path, message: Message) -> None:
    fields = message.header.fields
    args: list[Any] = list(message.body)
    if fields.get(HeaderFields.member) == "Notify":
        args[6] = {key: [signature, value] for key, (signature, value) in args[6].items()}
    line = {
        "member": fields.get(HeaderFields.member),
        "signature": fields.get(HeaderFields.signature, ""),
        "args": args,
    }
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


def serve(connection: DBusConnection, mode: str, record_path: Path) -> None:
    last_id = 0
    while True:
        message = connection.receive()
        fields = message.header.fields
        if message.header.message_type is not MessageType.method_call:
            continue
        if fields.get(HeaderFields.member) == "Introspect":
            connection.send(new_method_return(message, "s", (INTROSPECTION,)))
            continue
        if fields.get(HeaderFields.interface) != NAME:
            connection.send(new_error(message, "org.freedesktop.DBus.Error.UnknownInterface"))
            continue
        record(record_path, message)
        member = fields.get(HeaderFields.member)
        if member == "GetCapabilities":
            connection.send(new_method_return(message, "as", (["actions", "body", "body-markup"],)))
        elif member == "GetServerInformation":
            connection.send(
                new_method_return(message, "ssss", ("Fake Notify", "tests", "1.0", "1.2"))
            )
        elif member == "CloseNotification":
            connection.send(new_method_return(message))
            connection.send(new_signal(EMITTER, "NotificationClosed", "uu", (message.body[0], 3)))
        elif member == "Notify" and mode != "hang":
            last_id += 1
            connection.send(new_method_return(message, "u", (last_id,)))
            if mode in ("click", "dismiss"):
                time.sleep(DELAY)
                if mode == "click":
                    clicked = new_signal(EMITTER, "ActionInvoked", "us", (last_id, "default"))
                    connection.send(clicked)
                connection.send(new_signal(EMITTER, "NotificationClosed", "uu", (last_id, 2)))
        elif member != "Notify":
            connection.send(new_error(message, "org.freedesktop.DBus.Error.UnknownMethod"))


def main(mode: str, record_path: Path) -> None:
    with open_dbus_connection(bus="SESSION") as connection:
        connection.send_and_get_reply(message_bus.RequestName(NAME))
        serve(connection, mode, record_path)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
