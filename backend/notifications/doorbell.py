"""The doorbell: after a commit, tell every server process that something changed.

The database is the record; a doorbell only says "look" (or carries the event
the database already holds). One implementation is chosen per process, once, from
the settings (``current``):

- ``LocalDoorbell`` (the embedded default, no ``REDIS_URL``): an event rung in a
  server process goes straight to its hub. Other processes on the same machine
  (``tray-notifier-server notify``, ``manage shell``, a second server on the same
  data directory) cannot reach that hub, so each server process binds a Unix
  datagram socket in ``<data dir>/doorbell-<namespace>/`` (the data directory is
  owner-only, so only its owner can ring), and a process that commits a
  notification or ends sessions sends a 4-byte "look" to every socket there but
  its own. The server then runs its database look at once instead of at its next
  poll (``TRAY_DB_WATCH_INTERVAL``), which stays as the safety net (a ringing
  process killed between commit and ring, a platform without Unix datagrams such
  as Windows, a data directory whose path is too long for a socket address off
  Linux). A socket left by a killed server refuses the datagram and is unlinked.
- ``RedisDoorbell`` (``REDIS_URL``): one PUBLISH on the deployment's own channel
  (``namespace.doorbell_channel``) that every server process receives once,
  whatever the size of the audience; each carries the deployment's namespace and
  a process drops what another deployment sent (``events.decode``).
  While Redis cannot be reached, a process still hands what it rings itself to its
  own hub (its own sockets stay live), logs the loss once (``RedisLink``) and
  resubscribes with backoff; once it is back, every process's sockets catch up
  from the database (the rest of what was rung meanwhile). A process that starts
  while Redis is down starts the same way: lost from the outset, subscribed later.

The hub is the doorbell's ``Listener``; the doorbell never imports the hub, and
``delivery.ring`` (what services call) never imports either.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import secrets
import socket
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

from backend import metrics
from backend.notifications import events, namespace
from backend.notifications.events import Event

logger = logging.getLogger(__name__)

# The kinds another server process can find in the database by itself (the hub's
# database watch): only these ring the other processes' sockets.
LOOKABLE_KINDS = frozenset({"notification", "sessions_ended"})
LOOK = b"look"
# A server's socket file: its pid and a random part (a restarted pid gets a new name).
_SOCKET_NAME = re.compile(r"[0-9]+-[0-9a-f]{8}")
# sun_path holds 108 bytes on Linux, 104 on macOS and the BSDs, with the NUL.
_MAX_SOCKET_PATH = 103


class Listener(Protocol):
    """What a doorbell hands its events to: this process's hub. Called on its loop."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def dispatch(self, event: Event) -> None:
        """Hand an event to the local sockets it concerns. Never raises."""
        ...

    def rung(self, event: Event) -> None:
        """In the thread that rings, before ``dispatch`` is scheduled: this process's
        own event is on its way (the database watch must not look it up). Never raises."""
        ...

    def look(self) -> None:
        """Another process committed something: look in the database now."""
        ...

    def catch_up_all(self) -> None:
        """Doorbells may have been missed: every socket catches up from the database."""
        ...


class Doorbell(Protocol):
    """Carries events from the process that commits to every server process."""

    def ring(self, event: Event) -> None:
        """After a commit, from synchronous code in any thread. May raise."""
        ...

    async def publish(self, event: Event) -> None:
        """From the listener's loop (presence changes)."""
        ...

    async def open(self, listener: Listener) -> None:
        """Start hearing other processes; ``listener`` receives from now on."""
        ...

    async def close(self, listener: Listener) -> None:
        """Stop hearing, if ``listener`` is the one that opened."""
        ...

    def health(self) -> str:
        """A short "ok (...)" for /healthz. Raises if the doorbell cannot ring."""
        ...


def current_namespace() -> str:
    """This deployment's namespace, from the settings (see ``namespace``)."""
    return namespace.deployment_namespace(
        database=settings.DATABASES["default"],
        secret_key=settings.SECRET_KEY,
        override=settings.TRAY_REDIS_NAMESPACE,
    )


_current: Doorbell | None = None
_current_lock = threading.Lock()


def current() -> Doorbell:
    """This process's doorbell, chosen from the settings at first use."""
    global _current
    bell = _current
    if bell is not None:
        return bell
    with _current_lock:
        if _current is None:
            if settings.REDIS_URL:
                _current = RedisDoorbell(settings.REDIS_URL)
            else:
                _current = LocalDoorbell(local_directory())
        return _current


def local_directory() -> Path | None:
    """Where the embedded default's server sockets live; None where Unix datagram
    sockets do not exist (Windows: the database watch's poll is all there is)."""
    if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):
        return None
    return Path(settings.DATA_DIR) / f"doorbell-{current_namespace()}"


# --- embedded default ---------------------------------------------------------------


class LocalDoorbell:
    """In-process delivery, plus a "look" datagram to the other server processes."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._listener: Listener | None = None
        self._server: socket.socket | None = None
        self._name = ""  # this process's socket file, while it listens
        self._sender: socket.socket | None = None
        self._directory_fd: int | None = None
        self._lock = threading.Lock()

    def ring(self, event: Event) -> None:
        listener = self._listener
        if listener is not None:
            loop = listener.loop
            if loop is not None and not loop.is_closed():
                listener.rung(event)
                # A fresh context: the caller's carries asgiref's "inside sync_to_async"
                # marker, which would make catch-up tasks started by this dispatch
                # refuse database calls.
                loop.call_soon_threadsafe(listener.dispatch, event, context=contextvars.Context())
        if event["kind"] in LOOKABLE_KINDS:
            self.ring_others()

    def ring_others(self) -> int:
        """Send "look" to every other server process's socket; how many took it."""
        directory = self.directory
        if directory is None:
            return 0
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return 0  # no server has ever listened here
        rung = 0
        for name in names:
            if name == self._name or not _SOCKET_NAME.fullmatch(name):
                continue
            try:
                self._sending_socket().sendto(LOOK, self._address(name))
                rung += 1
            except ConnectionRefusedError:
                # Its server was killed before it could unlink it.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / name)
            except (FileNotFoundError, BlockingIOError, InterruptedError):
                # Gone since the listing; or its queue is full, so a look is pending.
                continue
            except OSError as error:
                logger.warning("could not ring the server socket %s: %s", name, error)
        return rung

    async def publish(self, event: Event) -> None:
        listener = self._listener
        if listener is not None:
            # A fresh context, not the publisher's (a socket's, a request's): what the
            # delivery logs about other users' sockets must not carry its ids.
            contextvars.Context().run(listener.dispatch, event)

    async def open(self, listener: Listener) -> None:
        if self._listener is not None:
            await self.close(self._listener)
        self._listener = listener
        loop = asyncio.get_running_loop()
        if self.directory is None:
            logger.info(
                "no Unix datagram sockets here: notifications of other processes arrive "
                "with the database watch (TRAY_DB_WATCH_INTERVAL)"
            )
            return
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            server.setblocking(False)
            server.bind(self._address(name))
        except OSError as error:
            server.close()
            logger.warning(
                "no cross-process doorbell in %s (%s): notifications of other processes "
                "arrive with the database watch (TRAY_DB_WATCH_INTERVAL)",
                self.directory,
                error,
            )
            return
        self._server, self._name = server, name
        loop.add_reader(server.fileno(), self._heard, server, listener)

    @staticmethod
    def _heard(server: socket.socket, listener: Listener) -> None:
        # Every datagram says the same thing: one look answers all that are waiting.
        while True:
            try:
                server.recv(64)
            except OSError:  # BlockingIOError: none left
                break
        listener.look()

    async def close(self, listener: Listener) -> None:
        if self._listener is not listener:
            return
        self._listener = None
        server, name = self._server, self._name
        self._server, self._name = None, ""
        if server is None or self.directory is None:
            return
        loop = listener.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(server.fileno())
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / name)

    def health(self) -> str:
        return "ok (in-process)"

    def _sending_socket(self) -> socket.socket:
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._sender is None:
                    created = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    created.setblocking(False)  # a swamped server never blocks a commit
                    weakref.finalize(self, created.close)
                    self._sender = created
                sender = self._sender
        return sender

    def _address(self, name: str) -> str:
        """The socket address of ``name`` in the directory. A path too long for a
        socket address (deep data directories, test temporary directories) goes
        through an open descriptor of the directory on Linux."""
        assert self.directory is not None
        path = str(self.directory / name)
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        if not sys.platform.startswith("linux"):
            raise OSError(f"socket path too long ({len(path)} bytes): {path}")
        with self._lock:
            if self._directory_fd is None:
                self._directory_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                weakref.finalize(self, os.close, self._directory_fd)
            return f"/proc/self/fd/{self._directory_fd}/{name}"


# --- scale mode ---------------------------------------------------------------------

# The first wait before resubscribing after Redis is lost, and the longest: doubled
# after every failed attempt, reset once subscribed.
RETRY_FIRST = 1.0
RETRY_MAX = 5.0


def redis_fault(error: BaseException) -> bool:
    """Whether ``error`` says Redis cannot be reached now (down, restarting, loading,
    timing out), as opposed to a bug: only these are survived quietly."""
    import redis.exceptions

    return isinstance(
        error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
    )


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class RedisLink:
    """Whether this process reaches Redis, as its log tells it: one WARNING when it is
    lost (with the reason) and one INFO when it is back, whoever noticed (the doorbell's
    subscription, a ring, the presence refresh), from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = False
        self.since = 0.0
        # When it was last lost (epoch seconds; 0: never): what to look back to after.
        self.lost_at = 0.0

    def lost(self, error: BaseException) -> bool:
        """Redis failed; True (and logged) when that is news."""
        with self._lock:
            if self.down:
                return False
            self.down, self.since, self.lost_at = True, time.monotonic(), time.time()
        logger.warning(
            "lost the Redis doorbell (%s): until it returns this process delivers only "
            "to its own sockets; retrying with backoff",
            _reason(error),
        )
        return True

    def back(self) -> bool:
        """Redis answers again; True (and logged) when it had been lost."""
        with self._lock:
            if not self.down:
                return False
            self.down = False
            away = time.monotonic() - self.since
        logger.info(
            "Redis is back after %.1f s: sockets catch up from the database, presence is "
            "re-asserted",
            away,
        )
        return True


class RedisDoorbell:
    """One PUBLISH per event on the deployment's channel; one subscription per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        # The asynchronous client of the open listener's loop (presence uses it too).
        self.client: Any = None
        self._sync_client: Any = None
        self._lock = threading.Lock()
        self._namespace = ""
        self._task: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        # Foreign deployments already logged, so a neighbour's traffic logs once.
        self._foreign_logged: set[str] = set()
        self.link = RedisLink()
        # Whether the subscription is up: what this process rings comes back to it.
        self._subscribed = False

    def _sync(self) -> Any:
        with self._lock:
            if self._sync_client is None:
                import redis

                self._sync_client = redis.Redis.from_url(
                    self.url, socket_timeout=5, socket_connect_timeout=5
                )
            return self._sync_client

    def ring(self, event: Event) -> None:
        """PUBLISH; while Redis cannot be reached, to this process's own hub instead
        (the other processes catch up from the database once it is back)."""
        deployment = current_namespace()
        try:
            self._sync().publish(
                namespace.doorbell_channel(deployment),
                events.encode(event, deployment, rung_at=time.time()),
            )
        except Exception as error:
            if not redis_fault(error):
                raise
            self.link.lost(error)
            self._ring_here(event)
            return
        if not self._subscribed:
            # Redis is back but this process's subscription is not yet (it retries with
            # backoff): its own sockets get it now too (they drop a seq seen twice).
            self._ring_here(event)
        elif self.link.down:
            self.link.back()

    def _ring_here(self, event: Event) -> None:
        """Hand ``event`` to this process's hub (any thread), as LocalDoorbell does."""
        listener = self._listener
        if listener is None:
            return  # not a server process (the notify command): nobody here to tell
        loop = listener.loop
        if loop is None or loop.is_closed():
            return
        listener.rung(event)
        # A fresh context: see LocalDoorbell.ring.
        loop.call_soon_threadsafe(listener.dispatch, event, context=contextvars.Context())

    async def publish(self, event: Event) -> None:
        try:
            await self.client.publish(
                namespace.doorbell_channel(self._namespace),
                events.encode(event, self._namespace, rung_at=time.time()),
            )
        except Exception as error:
            if not redis_fault(error):
                raise
            self.link.lost(error)
            subscribed = False
        else:
            subscribed = self._subscribed
        listener = self._listener
        if not subscribed and listener is not None:
            # Not heard back through Redis (see ``ring``): to this process's sockets, in
            # a fresh context (see LocalDoorbell.publish).
            contextvars.Context().run(listener.dispatch, event)

    async def open(self, listener: Listener) -> None:
        import redis.asyncio

        previous = self._listener
        if previous is not None:
            if previous.loop is asyncio.get_running_loop():
                await self.close(previous)
            else:
                # A hub of a loop that is gone (tests run a loop each): nothing of its
                # state can be awaited from this loop, so it is dropped.
                self._listener, self._task, self.client = None, None, None
        self._namespace = current_namespace()
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            await client.ping()
        except Exception as error:
            if not redis_fault(error):
                await client.aclose()
                raise
            # Redis down while this process starts: it serves anyway, as it does when
            # Redis is lost later (what it rings goes to its own sockets), and the
            # subscription below retries with backoff; once it is up, every socket
            # catches up from the database and presence is re-asserted.
            self.link.lost(error)
        except BaseException:
            await client.aclose()
            raise
        self.client = client
        self._listener = listener
        logger.info("doorbell on Redis channel %s", namespace.doorbell_channel(self._namespace))
        # In a fresh context: whoever opened first (a socket, a stream's request) must
        # not tag every delivery this process hears with its ids.
        self._task = asyncio.get_running_loop().create_task(
            self._listen(listener, missed=self.link.down), context=contextvars.Context()
        )

    async def close(self, listener: Listener) -> None:
        if self._listener is not listener:
            return
        self._listener, self._subscribed = None, False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    def health(self) -> str:
        self._sync().ping()
        return "ok (redis)"

    async def _listen(self, listener: Listener, *, missed: bool = False) -> None:
        """One subscription per process; resubscribes with backoff if Redis goes away
        (``RedisLink`` logs the loss and the return once each). ``missed``: Redis was
        already away at ``open``, so the first subscription catches up too."""
        wait = RETRY_FIRST
        channel = namespace.doorbell_channel(self._namespace)
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "subscribe":
                            wait = RETRY_FIRST
                            # A second one on the same pubsub: redis-py reconnected and
                            # resubscribed by itself, so doorbells may have been missed.
                            missed = missed or self._subscribed
                            self._subscribed = True
                            self.link.back()
                            if missed:
                                # Only now are new doorbells heard again: whatever was
                                # rung while away (up to this moment) is in the database,
                                # so every socket catches up from there.
                                missed = False
                                listener.catch_up_all()
                        if message.get("type") != "message":
                            continue
                        event = self._decode(message["data"])
                        if event is not None:
                            listener.dispatch(event)
            except asyncio.CancelledError:
                self._subscribed = False
                raise
            except Exception as error:
                self._subscribed = False
                if redis_fault(error):
                    self.link.lost(error)
                else:
                    logger.exception("the Redis doorbell failed; resubscribing in %.0f s", wait)
                # Sockets may miss doorbells until the subscription is back; they catch
                # up once it is (above), not before, or a doorbell rung in between is lost.
                missed = True
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX)

    def _decode(self, raw: bytes) -> Event | None:
        """The event in a doorbell message, or None (logged) when it is not ours."""
        try:
            event, rung_at = events.decode_timed(raw, self._namespace)
            if rung_at is not None:
                metrics.doorbell_heard(rung_at)
            return event
        except events.ForeignDoorbell as foreign:
            # Only reachable if the channels meet (a shared TRAY_REDIS_NAMESPACE, a hand
            # typed PUBLISH): whatever it names, it is not this database's rows.
            sender = str(foreign.deployment)[:80]
            if sender not in self._foreign_logged and len(self._foreign_logged) < 100:
                self._foreign_logged.add(sender)
                logger.warning(
                    "dropped a doorbell message from another deployment (%r); this is %r",
                    sender,
                    self._namespace,
                )
        except ValueError:
            logger.warning("ignored a doorbell message that is not a JSON object")
        return None
