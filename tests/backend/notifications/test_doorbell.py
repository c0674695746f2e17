"""The local doorbell's datagram sockets, with real Unix sockets in real directories.

Two ``LocalDoorbell`` objects stand for two processes (each has its own socket and
sender). The listener here records what the doorbell hands it, standing in for the
hub; the real hub behind a real server, rung by the real ``notify`` command, is in
test_hub.py.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.notifications.doorbell import LocalDoorbell
from backend.notifications.events import Event, NotificationEvent

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="no Unix datagram sockets on Windows"
)

NOTIFICATION: NotificationEvent = {
    "kind": "notification",
    "message_id": 1,
    "shared": {"title": "t"},
    "recipients": [[1, 1, 1]],
}


class Recorder:
    """A doorbell listener that remembers what it was handed."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        self.events: list[Event] = []
        self.rung_events: list[Event] = []
        self.looked = asyncio.Event()
        self.looks = 0

    def dispatch(self, event: Event) -> None:
        self.events.append(event)

    def rung(self, event: Event) -> None:
        self.rung_events.append(event)

    def look(self) -> None:
        self.looks += 1
        self.looked.set()

    def catch_up_all(self) -> None:
        raise AssertionError("a local doorbell never loses events")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _entries(path: Path) -> list[Path]:
    return list(path.iterdir())


@pytest.fixture(params=["short", "long"])
def directory(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A doorbell directory whose socket paths fit a socket address, or do not (the
    longest data directories, as under pytest's tmp_path)."""
    with tempfile.TemporaryDirectory(prefix="bell-") as base:
        path = Path(base) / ("d" * 120 if request.param == "long" else "d") / "doorbell-ns"
        path.parent.mkdir()
        yield path


@pytest.mark.asyncio
async def test_a_ring_makes_the_other_process_look(directory: Path) -> None:
    server, ringer = LocalDoorbell(directory), LocalDoorbell(directory)
    heard = Recorder()
    await server.open(heard)
    try:
        assert _mode(directory) == 0o700
        ringer.ring(NOTIFICATION)
        await asyncio.wait_for(heard.looked.wait(), 5)
        # The record is the database: another process's event itself is not handed over.
        assert heard.events == []
    finally:
        await server.close(heard)
    assert _entries(directory) == []


@pytest.mark.parametrize(
    ("event", "rings"),
    [
        (NOTIFICATION, True),
        ({"kind": "sessions_ended", "user_id": 1, "session_ids": ["s"], "reason": "logout"}, True),
        ({"kind": "user_disabled", "user_id": 1}, False),
        ({"kind": "membership_removed", "user_id": 1, "project_id": 1}, False),
    ],
)
def test_only_what_the_database_watch_can_find_rings_other_processes(
    directory: Path, event: Event, rings: bool
) -> None:
    directory.mkdir(mode=0o700)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other.setblocking(False)
    ringer = LocalDoorbell(directory)
    with other:
        other.bind(ringer._address("1-0000abcd"))
        ringer.ring(event)
        # A Unix datagram is queued at the receiver when sendto returns.
        if rings:
            assert other.recv(64) == b"look"
        else:
            with pytest.raises(BlockingIOError):
                other.recv(64)


@pytest.mark.asyncio
async def test_a_ring_in_the_server_process_goes_to_its_hub_not_to_its_socket(
    directory: Path,
) -> None:
    bell = LocalDoorbell(directory)
    heard = Recorder()
    await bell.open(heard)
    try:
        bell.ring(NOTIFICATION)
        assert heard.rung_events == [NOTIFICATION]  # noted by the ringing thread, at once
        assert bell.ring_others() == 0  # its own socket is skipped
        for _ in range(100):
            if heard.events:
                break
            await asyncio.sleep(0.01)
        assert heard.events == [NOTIFICATION]
        assert heard.looks == 0
    finally:
        await bell.close(heard)


def test_a_socket_left_by_a_killed_server_is_removed(directory: Path) -> None:
    directory.mkdir(mode=0o700)
    stale = directory / "4242-0123abcd"
    ringer = LocalDoorbell(directory)
    left = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.bind(ringer._address(stale.name))
    left.close()  # the file stays, as after SIGKILL
    unrelated = directory / "notes.txt"
    unrelated.write_text("not a socket of ours")
    assert ringer.ring_others() == 0
    assert not stale.exists()
    assert unrelated.exists()


@pytest.mark.asyncio
async def test_without_a_directory_only_the_local_hub_is_rung() -> None:
    bell = LocalDoorbell(None)
    heard = Recorder()
    await bell.open(heard)
    bell.ring(NOTIFICATION)
    assert bell.ring_others() == 0
    await bell.publish(NOTIFICATION)
    assert heard.events[-1] == NOTIFICATION
    await bell.close(heard)


@pytest.mark.asyncio
async def test_no_directory_yet_rings_nobody(tmp_path: Path) -> None:
    assert LocalDoorbell(tmp_path / "never-made").ring_others() == 0


class CatchingUp(Recorder):
    """A listener that expects to be told to catch up (a Redis doorbell's)."""

    def __init__(self) -> None:
        super().__init__()
        self.caught_up = asyncio.Event()

    def catch_up_all(self) -> None:
        self.caught_up.set()


@pytest.mark.asyncio
async def test_a_redis_doorbell_opened_while_redis_is_down_subscribes_once_it_is_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server process that starts while Redis is down: ``open`` does not fail, what it
    publishes goes to its own hub, and once Redis answers (on the same port) it
    subscribes, logs "back" and has every socket catch up."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    from backend.notifications.doorbell import RedisDoorbell
    from tests.e2e.crash_harness import RestartableRedis

    redis_server = RestartableRedis(tmp_path)
    try:
        redis_server._process.kill()
        redis_server._process.wait(timeout=10)
        bell = RedisDoorbell(redis_server.url)
        listener = CatchingUp()
        with caplog.at_level(logging.INFO, logger="backend.notifications.doorbell"):
            await bell.open(listener)
            assert bell.link.down
            await bell.publish(NOTIFICATION)
            assert listener.events == [NOTIFICATION]  # to its own hub, at once
            redis_server._process = redis_server._start()
            async with asyncio.timeout(15):
                await listener.caught_up.wait()
            assert not bell.link.down
            await bell.close(listener)
        lost = [r for r in caplog.records if "lost the Redis doorbell" in r.getMessage()]
        back = [r for r in caplog.records if "Redis is back" in r.getMessage()]
        assert (len(lost), len(back)) == (1, 1)
    finally:
        redis_server.close()
