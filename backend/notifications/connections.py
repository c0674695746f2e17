"""Who is connected now: one record per live client connection, for staff.

A connection (a WebSocket or an HTTP stream) notes how it arrived when it says hello:
its ``User-Agent``, whether the web companion's session cookie let it in, and when
(``Arrival``, the connection's ``arrival`` attribute). The hub adds the rest it knows:
the socket id, the user, the transport (from the connection's ``kind``) and its own
process id.

Two stores, as for presence (presence.py). ``MemoryConnections`` reads the hub's own
sockets (the embedded default: one process), so opening and closing cost nothing.
``RedisConnections`` keeps one hash under the deployment's presence prefix,
``<prefix>conninfo``, field ``"uid|socket_id"`` (the member presence's ``conns`` sorted
set uses) to a compact JSON object: one HSET when a socket opens, one HDEL when it
closes, one HSET for all the sockets a process re-asserts after Redis lost them. The
listing is presence's live ``conns`` members joined with their info: a live socket
without info (a process older than this module) is listed with an ``unknown`` client,
and info whose socket is no longer in ``conns`` (a crashed process's) is pruned.

The pure parts (``sanitize_user_agent``, ``classify``) turn a hostile header into
at most ``USER_AGENT_MAX`` printable characters and a client kind and version.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypedDict

from asgiref.sync import async_to_sync

from backend.errors import BackendError
from backend.notifications.events import ClientSocket
from backend.notifications.selectors import user_summary
from backend.users.models import User

ClientKind = Literal["desktop", "web", "other", "unknown"]
Transport = Literal["websocket", "http-stream"]
CLIENT_KINDS: Final[tuple[ClientKind, ...]] = ("desktop", "web", "other", "unknown")
TRANSPORTS: Final[tuple[Transport, ...]] = ("websocket", "http-stream")

# How much of a User-Agent is kept (characters, after control characters are removed).
USER_AGENT_MAX: Final = 200
# How much of the raw header is read at all: a megabyte header costs no more than this.
_RAW_MAX: Final = 4 * USER_AGENT_MAX
# The hash of connection info, under the deployment's presence prefix.
INFO_KEY: Final = "conninfo"

# What the tray app and its headless mode send (tray_app/net/api.py, live.py, stream.py).
_DESKTOP = re.compile(r"tray-notifier/([0-9A-Za-z][0-9A-Za-z.+_-]{0,39})(?![^\s;()])")
# Browsers, most specific first: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS: Final = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d{1,6})")),
    ("Opera", re.compile(r"\bOPR/(\d{1,6})")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d{1,6})")),
    ("Chromium", re.compile(r"\bChromium/(\d{1,6})")),
    ("Chrome", re.compile(r"\b(?:Headless)?Chrome/(\d{1,6})|\bCriOS/(\d{1,6})")),
    ("Safari", re.compile(r"\bVersion/(\d{1,6})[^ ]* (?:Mobile/\S+ )?Safari/")),
)


@dataclass(frozen=True, slots=True)
class Client:
    """What is at the other end, as far as its User-Agent and cookie tell."""

    kind: ClientKind
    version: str | None  # the app's version, or a browser's name and major version
    user_agent: str  # sanitized, at most USER_AGENT_MAX characters

    def as_payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "user_agent": self.user_agent}


UNKNOWN_CLIENT: Final = Client(kind="unknown", version=None, user_agent="")


@dataclass(frozen=True, slots=True)
class Arrival:
    """How and when a connection arrived (set when it says hello / its stream opens)."""

    user_agent: str  # sanitized
    web_session: bool  # let in by the web companion's session cookie
    at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Connection:
    """One live client connection, on any server process."""

    socket_id: str
    user_id: int
    client: Client
    transport: Transport | None  # None: unknown (a process older than this module)
    connected_at: float | None  # epoch seconds; None: unknown
    process: str  # the server process's id (``Hub.process_id``)


# -- the pure parts ----------------------------------------------------------------


def sanitize_user_agent(raw: bytes | str | None) -> str:
    """``raw`` as printable text: control and other non-printing characters removed,
    runs of whitespace made one space, at most ``USER_AGENT_MAX`` characters."""
    if not raw:
        return ""
    if isinstance(raw, bytes):
        text = raw[:_RAW_MAX].decode("utf-8", errors="replace")
    else:
        text = raw[:_RAW_MAX]
    if text.isprintable():  # the usual header: nothing to remove
        return " ".join(text.split())[:USER_AGENT_MAX]
    kept = "".join(" " if char.isspace() else char for char in text if _printable(char))
    return " ".join(kept.split())[:USER_AGENT_MAX]


def _printable(char: str) -> bool:
    """Whitespace (kept as a space), or not a control, format, private-use, surrogate or
    unassigned character."""
    return char.isspace() or unicodedata.category(char)[0] != "C"


def browser_version(user_agent: str) -> str | None:
    """A browser's name and major version ("Firefox 128"), or None."""
    for name, pattern in _BROWSERS:
        found = pattern.search(user_agent)
        if found is not None:
            major = next(group for group in found.groups() if group is not None)
            return f"{name} {int(major)}"
    return None


def classify(user_agent: str, *, web_session: bool) -> Client:
    """The client behind a (sanitized) User-Agent: the desktop app (and its headless
    mode) by its ``tray-notifier/<version>``, the web companion by its session cookie,
    anything else ``other``."""
    desktop = _DESKTOP.match(user_agent)
    if desktop is not None:
        return Client(kind="desktop", version=desktop.group(1), user_agent=user_agent)
    if web_session:
        return Client(kind="web", version=browser_version(user_agent), user_agent=user_agent)
    return Client(kind="other", version=None, user_agent=user_agent)


def user_agent_of(scope: Mapping[str, Any]) -> bytes | None:
    """The first ``User-Agent`` header of an ASGI scope, raw."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"user-agent":
            return bytes(value)
    return None


def arrival(scope: Mapping[str, Any], *, web_session: bool) -> Arrival:
    """A connection arriving now, from its ASGI scope."""
    return Arrival(
        user_agent=sanitize_user_agent(user_agent_of(scope)),
        web_session=web_session,
        at=time.time(),
    )


def transport_of(socket: object) -> Transport:
    """The transport of a hub socket, by its ``kind`` ("stream": the HTTP stream)."""
    return "http-stream" if getattr(socket, "kind", "socket") == "stream" else "websocket"


def connection_of(socket: ClientSocket, process: str) -> Connection | None:
    """The record of one of the hub's sockets, or None before it said hello."""
    came = getattr(socket, "arrival", None)
    if not isinstance(came, Arrival):
        return None
    return Connection(
        socket_id=socket.socket_id,
        user_id=socket.user_id,
        client=classify(came.user_agent, web_session=came.web_session),
        transport=transport_of(socket),
        connected_at=came.at,
        process=process,
    )


def encode_info(socket: ClientSocket, process: str) -> str | None:
    """A socket's info as stored in Redis (compact JSON), or None before its hello."""
    came = getattr(socket, "arrival", None)
    if not isinstance(came, Arrival):
        return None
    info = {
        "ua": came.user_agent,
        "web": came.web_session,
        "t": transport_of(socket),
        "at": came.at,
        "p": process,
    }
    return json.dumps(info, separators=(",", ":"))


def decode_info(user_id: int, socket_id: str, raw: bytes | str | None) -> Connection:
    """The record of a live socket from its stored info; missing or unreadable info (an
    older process's socket, a hand-edited hash) is an ``unknown`` client."""
    process = socket_id.partition(":")[0]
    info: object = None
    if raw is not None:
        try:
            info = json.loads(raw)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            info = None
    if not isinstance(info, dict):
        return Connection(socket_id, user_id, UNKNOWN_CLIENT, None, None, process)
    user_agent = sanitize_user_agent(info.get("ua") if isinstance(info.get("ua"), str) else "")
    at = info.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool) or not 0 <= at < 1e11:
        at = None  # also NaN and the infinities JSON may spell
    transport = info.get("t")
    stored_process = info.get("p")
    return Connection(
        socket_id=socket_id,
        user_id=user_id,
        client=classify(user_agent, web_session=info.get("web") is True),
        transport=transport if transport in TRANSPORTS else None,
        connected_at=None if at is None else float(at),
        process=stored_process[:64] if isinstance(stored_process, str) else process,
    )


def _member(user_id: int, socket_id: str) -> str:
    return f"{user_id}|{socket_id}"


def _parse_member(raw: bytes | str) -> tuple[int, str] | None:
    member = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    user_part, bar, socket_id = member.partition("|")
    if not bar or not user_part.isdecimal() or len(user_part) > 18:
        return None
    return int(user_part), socket_id


# -- the stores ----------------------------------------------------------------------


class ConnectionStore(Protocol):
    async def opened(self, socket: ClientSocket) -> None:
        """A socket said hello (after presence recorded it)."""
        ...

    async def closed(self, socket: ClientSocket) -> None:
        """A socket closed."""
        ...

    async def reasserted(self, sockets: list[ClientSocket]) -> None:
        """Sockets put back in presence (Redis had lost them): their info too."""
        ...

    async def live(self) -> list[Connection]:
        """Every live connection of the deployment, in no particular order."""
        ...


class MemoryConnections:
    """This process's sockets, read from its hub (the embedded default)."""

    def __init__(self, sockets_by_user: Mapping[int, Iterable[ClientSocket]], process: str):
        self._sockets_by_user = sockets_by_user
        self._process = process

    async def opened(self, socket: ClientSocket) -> None:
        return None

    async def closed(self, socket: ClientSocket) -> None:
        return None

    async def reasserted(self, sockets: list[ClientSocket]) -> None:
        return None

    async def live(self) -> list[Connection]:
        found = (
            connection_of(socket, self._process)
            for group in list(self._sockets_by_user.values())
            for socket in list(group)
        )
        return [connection for connection in found if connection is not None]


# Deletes the info of sockets presence no longer holds at all. A socket that is only
# expired (its process stalled) keeps its info: the process's refresh revives it.
_PRUNE: Final = """
local pruned = 0
for i = 1, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    pruned = pruned + redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return pruned
"""
_PRUNE_BATCH: Final = 500


class RedisConnections:
    """Connection info in Redis, next to presence's keys (``prefix``: the deployment's
    ``namespace.presence_prefix``), shared by every server process."""

    def __init__(self, redis: Any, *, prefix: str, process: str) -> None:
        self._redis = redis
        self._conns = prefix + "conns"
        self._info = prefix + INFO_KEY
        self._process = process

    async def opened(self, socket: ClientSocket) -> None:
        info = encode_info(socket, self._process)
        if info is not None:
            await self._redis.hset(self._info, _member(socket.user_id, socket.socket_id), info)

    async def closed(self, socket: ClientSocket) -> None:
        await self._redis.hdel(self._info, _member(socket.user_id, socket.socket_id))

    async def reasserted(self, sockets: list[ClientSocket]) -> None:
        mapping: dict[str, str] = {}
        for socket in sockets:
            info = encode_info(socket, self._process)
            if info is not None:
                mapping[_member(socket.user_id, socket.socket_id)] = info
        if mapping:
            await self._redis.hset(self._info, mapping=mapping)

    async def live(self) -> list[Connection]:
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(self._conns, f"({now}", "+inf")
            pipe.hgetall(self._info)
            members, infos = await pipe.execute()
        info_of: dict[str, bytes] = {
            (key.decode(errors="replace") if isinstance(key, bytes) else key): value
            for key, value in infos.items()
        }
        live: list[Connection] = []
        seen: set[str] = set()
        for raw in members:
            parsed = _parse_member(raw)
            if parsed is None:
                continue
            member = _member(*parsed)
            seen.add(member)
            live.append(decode_info(parsed[0], parsed[1], info_of.get(member)))
        stale = [member for member in info_of if member not in seen]
        for start in range(0, len(stale), _PRUNE_BATCH):
            batch = stale[start : start + _PRUNE_BATCH]
            await self._redis.eval(_PRUNE, 2, self._conns, self._info, *batch)
        return live


# -- reading it ----------------------------------------------------------------------


class ConnectionsUnavailable(BackendError):
    """Scale mode: Redis, where the deployment's connections are listed, cannot be
    reached now."""

    code = "connections_unavailable"
    status = 503
    retry_after = 5


class HubLike(Protocol):
    """What listing needs of the hub (backend/notifications/hub.py)."""

    connections: ConnectionStore

    def redis_lost(self, error: Exception) -> bool: ...


async def live_connections(hub: HubLike, *, user_id: int | None = None) -> list[Connection]:
    """The live connections of every process (of ``user_id`` only, when given), oldest
    first.

    Raises:
        ConnectionsUnavailable: Redis cannot be reached (scale mode).
    """
    try:
        found = await hub.connections.live()
    except Exception as error:
        if not hub.redis_lost(error):
            raise
        raise ConnectionsUnavailable(
            "Who is connected is unknown right now (the server cannot reach Redis). "
            "Try again in a few seconds."
        ) from None
    if user_id is not None:
        found = [connection for connection in found if connection.user_id == user_id]
    found.sort(
        key=lambda c: (c.connected_at is None, c.connected_at or 0.0, c.process, c.socket_id)
    )
    return found


_live_connections = async_to_sync(live_connections)


class ConnectionRow(TypedDict):
    user: dict[str, Any] | None  # selectors.user_summary; None: the account is gone
    client: dict[str, Any]  # Client.as_payload
    transport: Transport | None
    connected_at: str | None  # ISO 8601, UTC
    process: str


class ConnectedNow(TypedDict):
    count: int  # connections
    users: int  # distinct users among them
    connections: list[ConnectionRow]


def iso_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connected_now(*, hub: HubLike, user_id: int | None = None) -> ConnectedNow:
    """Who is connected now, on every process, oldest connection first (staff's
    ``GET /api/connections/`` and the admin's "Connected now" page). Synchronous: the
    hub's part runs on its event loop.

    Raises:
        ConnectionsUnavailable: Redis cannot be reached (scale mode).
    """
    found = _live_connections(hub, user_id=user_id)
    user_ids = sorted({connection.user_id for connection in found})
    users: dict[int, dict[str, Any]] = {}
    for start in range(0, len(user_ids), 500):
        for user in User.objects.filter(pk__in=user_ids[start : start + 500]):
            users[user.pk] = user_summary(user)
    rows: list[ConnectionRow] = [
        {
            "user": users.get(connection.user_id),
            "client": connection.client.as_payload(),
            "transport": connection.transport,
            "connected_at": iso_utc(connection.connected_at),
            "process": connection.process,
        }
        for connection in found
    ]
    return {"count": len(rows), "users": len(user_ids), "connections": rows}
