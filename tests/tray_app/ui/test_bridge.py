"""The bridge: engine events arrive as Qt signals. Frames go in through the engine's
public SessionHandler side, on a real SQLite store, so the whole path is exercised."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tray_app.engine import Engine
from tray_app.net import protocol
from tray_app.net.api import ApiClient
from tray_app.net.connection_state import ConnectionState, StateChange
from tray_app.store.db import open_database
from tray_app.store.inbox import Inbox
from tray_app.store.outbox import Outbox
from tray_app.ui.bridge import EngineBridge


def created(seq: int, title: str = "Build is green") -> protocol.NotificationCreated:
    payload = {
        "id": 100 + seq,
        "seq": seq,
        "is_read": False,
        "title": title,
        "message": "",
        "event_type": "announcement",
        "priority": "high",
        "url": "/x",
        "created_at": "2026-11-23T10:00:00Z",
        "actor": None,
        "project": {"id": 1, "title": "Mobile App"},
        "data": {},
    }
    return protocol.NotificationCreated(protocol.parse_notification(payload))


@pytest.fixture
def engine(tmp_path: Path):
    database = open_database(tmp_path / "account.sqlite3")
    inbox = Inbox(database.connection)
    # Never contacted: these frames need no network.
    api = ApiClient("http://127.0.0.1:9")
    yield Engine(api=api, inbox=inbox, outbox=Outbox(database.connection, inbox))
    asyncio.run(api.aclose())
    database.connection.close()


def feed(engine: Engine, frame: protocol.ServerFrame, *, replaying: bool = False) -> None:
    asyncio.run(engine.handle_frame(frame, replaying=replaying))


def test_notifications_read_state_and_deletes_arrive_as_signals(qtbot, engine):
    bridge = EngineBridge(engine)
    with qtbot.waitSignal(bridge.notification_added) as added:
        feed(engine, created(1))
    row, live = added.args
    assert (row.seq, row.title, row.project_title, live) == (
        1,
        "Build is green",
        "Mobile App",
        True,
    )

    with qtbot.waitSignal(bridge.read_state_changed) as changed:
        feed(engine, protocol.NotificationUpdated(id=101, is_read=True))
    assert changed.args == [[101], True]

    with qtbot.waitSignal(bridge.notifications_removed) as removed:
        feed(engine, protocol.NotificationDeleted(id=101))
    assert removed.args == [[101]]

    with qtbot.waitSignal(bridge.unread_count_changed) as count:
        feed(engine, protocol.UnreadCount(unread_count=7))
    assert count.args == [7]


def test_a_replay_is_catch_up_not_live(qtbot, engine):
    bridge = EngineBridge(engine)
    seen: list[tuple[int, bool]] = []
    bridge.notification_added.connect(lambda row, live: seen.append((row.seq, live)))
    feed(engine, created(1), replaying=True)
    feed(engine, created(2), replaying=True)
    with qtbot.waitSignal(bridge.catch_up_finished) as finished:
        feed(engine, protocol.CaughtUp(through_seq=2, replayed=2, after_seq=0), replaying=True)
    assert seen == [(1, False), (2, False)]
    assert finished.args == [2]


def test_each_stored_batch_also_arrives_as_one_signal(qtbot, engine):
    bridge = EngineBridge(engine)
    batches: list[tuple[list[int], bool]] = []
    bridge.notifications_added.connect(
        lambda rows, live: batches.append(([row.seq for row in rows], live))
    )
    for seq in (1, 2, 3):
        feed(engine, created(seq), replaying=True)
    assert batches == []  # buffered until the batch is stored
    feed(engine, protocol.CaughtUp(through_seq=3, replayed=3, after_seq=0), replaying=True)
    feed(engine, created(4))
    feed(engine, created(4))  # a duplicate stores nothing and says nothing
    assert batches == [([1, 2, 3], False), ([4], True)]


def test_presence_and_connection_state(qtbot, engine):
    bridge = EngineBridge(engine)
    snapshot = protocol.PresenceSnapshot(project_id=1, members=())
    with qtbot.waitSignal(bridge.presence_snapshot_received) as got:
        feed(engine, snapshot)
    assert got.args == [snapshot]
    change = protocol.PresenceChanged(1, 4, True, "away", 1.0)
    with qtbot.waitSignal(bridge.presence_changed) as changed:
        feed(engine, change)
    assert changed.args == [change]
    state = StateChange(ConnectionState.RECONNECTING, next_attempt_at=5.0)
    with qtbot.waitSignal(bridge.connection_state_changed) as moved:
        engine.handle_state(state)
    assert moved.args == [state]


def test_detach_stops_the_relay(qtbot, engine):
    bridge = EngineBridge(engine)
    bridge.detach()
    with qtbot.assertNotEmitted(bridge.notification_added):
        feed(engine, created(1))
    assert engine.inbox.cursor() == 1  # the engine itself carried on
