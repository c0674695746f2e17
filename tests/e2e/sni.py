"""The tray icon as the panel sees it on the session bus: the StatusNotifierItem the app
registered (its tooltip) and its DBusMenu, whose entries are clicked with the same
``com.canonical.dbusmenu.Event`` call the panel sends when a user clicks one.

Clicking through the bus rather than by screen coordinates finds an entry by its label,
so a test does not depend on where the panel draws it; what happens next (the app's
slot, the server, the other devices) is the real thing. jeepney (a dependency of the
keyring stack) speaks D-Bus here; it blocks, which suits tests.

::

    with TrayItem(desktop.bus_address) as tray:
        tray.click("Who's online…")
        assert "Do not disturb" in tray.tooltip()
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from jeepney import DBusAddress, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

WATCHER = DBusAddress(
    "/StatusNotifierWatcher",
    bus_name="org.kde.StatusNotifierWatcher",
    interface="org.kde.StatusNotifierWatcher",
)
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
MENU_INTERFACE = "com.canonical.dbusmenu"
WAIT = 20.0


class TrayItemError(AssertionError):
    """The item or a menu entry is not there (within the wait)."""


class TrayItem:
    """The one StatusNotifierItem registered on the bus at ``bus_address``."""

    def __init__(self, bus_address: str, *, timeout: float = WAIT) -> None:
        self._connection: DBusConnection = open_dbus_connection(bus_address)
        self._timeout = timeout

    def __enter__(self) -> TrayItem:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._connection.close()

    # --- the item ------------------------------------------------------------------

    def _item(self) -> DBusAddress:
        reply = self._call(Properties(WATCHER).get("RegisteredStatusNotifierItems"))
        items: list[str] = reply[0][1]
        if len(items) != 1:
            raise TrayItemError(f"expected one tray item, found {items}")
        service, _, path = items[0].partition("/")
        return DBusAddress("/" + path, bus_name=service, interface=ITEM_INTERFACE)

    def tooltip(self) -> str:
        """The item's tooltip: its title and text, one line each."""
        reply = self._call(Properties(self._item()).get("ToolTip"))
        _icon, _pixmaps, title, text = reply[0][1]
        return "\n".join(part for part in (title, text) if part)

    # --- its menu ------------------------------------------------------------------

    def _menu(self) -> DBusAddress:
        item = self._item()
        path = self._call(Properties(item).get("Menu"))[0][1]
        return DBusAddress(path, bus_name=item.bus_name, interface=MENU_INTERFACE)

    def labels(self) -> list[str]:
        """Every entry's label, depth first (submenus included once shown)."""
        return [label for _id, label in self._entries(self._menu())]

    def click(self, *path: str) -> None:
        """Click the entry reached through these labels (submenus first), as the panel
        does: the submenu is told it is about to show, then the entry gets "clicked".
        A label matches itself or itself with a state in brackets ("Do not disturb"
        matches "Do not disturb (on)"). Waits for each entry to appear.

        Raises:
            TrayItemError: an entry never appeared.
        """
        menu = self._menu()
        parent = 0
        for depth, label in enumerate(path):
            entry = self._wait_for_entry(menu, label, parent)
            if depth < len(path) - 1:
                self._call(new_method_call(menu, "AboutToShow", "i", (entry,)))
                parent = entry
                continue
            stamp = int(time.time()) & 0xFFFFFFFF
            self._call(new_method_call(menu, "Event", "isvu", (entry, "clicked", ("i", 0), stamp)))

    def _wait_for_entry(self, menu: DBusAddress, label: str, parent: int) -> int:
        deadline = time.monotonic() + self._timeout
        while True:
            for entry, shown in self._entries(menu, parent):
                plain = _plain(shown)
                if plain == label or plain.startswith(f"{label} ("):
                    return entry
            if time.monotonic() > deadline:
                seen = [_plain(shown) for _id, shown in self._entries(menu, parent)]
                raise TrayItemError(f"no menu entry {label!r}; the menu holds {seen}")
            time.sleep(0.05)

    def _entries(self, menu: DBusAddress, parent: int = 0) -> Iterator[tuple[int, str]]:
        reply = self._call(new_method_call(menu, "GetLayout", "iias", (parent, -1, ["label"])))
        _revision, layout = reply
        yield from _walk(layout)

    def _call(self, message: Any) -> Any:
        reply = self._connection.send_and_get_reply(message, timeout=self._timeout)
        if reply.header.message_type.name == "error":
            raise TrayItemError(f"D-Bus error: {reply.body}")
        return reply.body


def _walk(node: Any) -> Iterator[tuple[int, str]]:
    entry, properties, children = node
    label = properties.get("label")
    if label is not None:
        yield entry, str(label[1])
    for child in children:
        yield from _walk(child[1])


def _plain(label: str) -> str:
    """A DBusMenu label as a user reads it: "_" marks a mnemonic, "__" is one "_"."""
    return label.replace("__", "\0").replace("_", "").replace("\0", "_")
