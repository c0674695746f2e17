"""The sync engine against the real server in a subprocess, as a user's machine sees it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import pytest

from tests.fixtures.services import RunningServer, ServerFactory, free_port
from tests.tray_app.conftest import (
    HarnessFactory,
    Publisher,
    RestartableServer,
    scaled,
)
from tray_app.engine import (
    REPLAY_FLUSH_ROWS,
    HistoryReset,
    NotificationBatchAdded,
    NotificationsRemoved,
    ReadStateChanged,
)
from tray_app.net.api import ApiClient
from tray_app.net.live import ConnectionState

pytestmark = pytest.mark.asyncio


async def latest_seq(server_url: str, username: str = "alice") -> int:
    async with ApiClient(server_url) as api:
        await api.login(username, "demo")
        _, latest = await api.unread_count()
        return latest


@pytest.mark.slow
async def test_zero_loss_zero_duplicates_while_the_server_is_killed_and_restarted(
    server_factory: ServerFactory, harness: HarnessFactory
):
    """1,000 notifications published while the server is SIGKILLed and restarted 10 times
    at random moments: the store ends with exactly those, each once, cursor at the server's."""
    server = RestartableServer(server_factory)
    client = await harness(server.url)
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    before = client.engine.inbox.cursor()

    total, kills = scaled(1000, minimum=50), scaled(10, minimum=2)
    rng = random.Random(20261123)
    kill_after = set(rng.sample(range(1, total - 1), kills))
    publisher = Publisher(server)

    def publish_all() -> None:
        for n in range(total):
            publisher.publish(f"n-{n}")
            if n in kill_after:
                server.restart()

    await asyncio.to_thread(publish_all)
    latest = await latest_seq(server.url)
    assert latest == before + total
    await client.until(lambda: client.engine.inbox.cursor() == latest, timeout=60)

    seqs = client.stored_seqs()
    assert seqs == list(range(1, latest + 1))  # each once, no gap
    titles = [row.title for row in client.engine.inbox.search(limit=10 * total) if row.seq > before]
    assert sorted(titles) == sorted(f"n-{n}" for n in range(total))
    added = [event.notification.seq for event in client.added() if event.notification.seq > before]
    assert sorted(added) == list(range(before + 1, latest + 1))  # told once each
    assert client.states().count(ConnectionState.CONNECTED) >= 2  # it really reconnected
    await client.stop()


async def test_cold_start_shows_the_cache_at_once_then_exactly_the_new_ones(
    demo_server: RunningServer, harness: HarnessFactory, tmp_path
):
    first = await harness(demo_server.url, data_dir=tmp_path / "laptop")
    first.start()
    await first.until(lambda: bool(first.catch_ups()))
    cached = first.stored_seqs()
    await first.stop()

    publisher = Publisher(demo_server)
    missed = scaled(300, minimum=20)
    await asyncio.to_thread(publisher.publish_many, [f"away {n}" for n in range(missed)])

    # The app starts again: the history is there before any network.
    again = await harness(demo_server.url, data_dir=tmp_path / "laptop")
    assert [row.seq for row in reversed(again.engine.search(limit=1000))] == cached
    assert again.engine.unread_count() == again.engine.inbox.unread_count()
    # What the history window reads, through the engine as the tray app hands it over.
    assert again.engine.count() == len(cached)
    assert again.engine.projects() == again.engine.inbox.projects()
    newest = again.engine.search(limit=1)[0]
    assert again.engine.get(newest.id) == newest
    assert again.engine.get(-1) is None
    again.start()
    await again.until(lambda: bool(again.catch_ups()))
    new = again.added()
    assert [event.notification.title for event in new] == [f"away {n}" for n in range(missed)]
    assert not any(event.live for event in new)  # catch-up, not a flood of live toasts
    assert again.catch_ups()[0].added == missed
    # The same rows once more, one event per stored batch (what a UI refreshes on).
    batches = [e for e in again.events if isinstance(e, NotificationBatchAdded)]
    assert [row for batch in batches for row in batch.notifications] == [
        event.notification for event in new
    ]
    assert len(batches) == -(-missed // REPLAY_FLUSH_ROWS)
    assert not any(batch.live for batch in batches)
    assert again.stored_seqs() == list(range(1, cached[-1] + missed + 1))
    await again.stop()


async def test_token_expiry_mid_stream_loses_nothing_and_needs_no_login(
    server_factory: ServerFactory, harness: HarnessFactory
):
    """Access tokens of three seconds, notifications flowing for longer than several of
    them: all arrive, the user is never asked to log in; revoking the refresh token then
    ends in LOGIN_REQUIRED with no more attempts."""
    server = server_factory(
        demo=True,
        env={"TRAY_ACCESS_TOKEN_MINUTES": "0.05", "TRAY_TOKEN_SWEEP_INTERVAL": "0.2"},
    )
    client = await harness(server.url)
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    start = client.engine.inbox.cursor()
    publisher = Publisher(server)
    began = time.monotonic()
    count = 0
    while time.monotonic() - began < 10:  # > 3 token lifetimes
        await asyncio.to_thread(publisher.publish, f"tick {count}")
        count += 1
    await client.until(lambda: client.engine.inbox.cursor() == start + count)
    assert ConnectionState.LOGIN_REQUIRED not in client.states()
    live_titles = [event.notification.title for event in client.added(live=True)]
    assert live_titles == [f"tick {n}" for n in range(count)]

    async with asyncio.timeout(20), ApiClient(server.url) as other:
        while client.state() is not ConnectionState.LOGIN_REQUIRED:
            if client.api.tokens is not None:
                other.restore(client.api.tokens.refresh)
                await other.logout()
            with contextlib.suppress(TimeoutError):
                await client.until(
                    lambda: client.state() is ConnectionState.LOGIN_REQUIRED, timeout=0.5
                )
    assert client.task is not None
    async with asyncio.timeout(20):
        await client.task
    attempts = client.engine.session.attempts
    await asyncio.sleep(2)  # the window in which a retry would show
    assert client.engine.session.attempts == attempts
    client.database.connection.close()


async def test_offline_mark_read_syncs_and_reaches_the_other_desktop(
    server_factory: ServerFactory, harness: HarnessFactory, tmp_path
):
    server = RestartableServer(server_factory)
    publisher = Publisher(server)
    await asyncio.to_thread(publisher.publish_many, [f"todo {n}" for n in range(5)])
    desktop = await harness(server.url, data_dir=tmp_path / "desktop")
    laptop = await harness(server.url, data_dir=tmp_path / "laptop")
    desktop.start()
    laptop.start()
    await desktop.until(lambda: bool(desktop.catch_ups()))
    await laptop.until(lambda: bool(laptop.catch_ups()))
    unread_before = laptop.engine.unread_count()
    assert unread_before >= 5

    server.kill()
    await desktop.until(lambda: desktop.state() is not ConnectionState.CONNECTED)
    todo = [row.id for row in desktop.engine.search(limit=5)]
    desktop.engine.mark_read(todo)
    # Applied locally at once, offline.
    assert all(row.is_read for row in desktop.engine.search(limit=5))
    assert desktop.engine.unread_count() == unread_before - 5
    assert len(desktop.engine.outbox.pending()) == 1

    server.start()
    await desktop.until(lambda: not desktop.engine.outbox.pending(), timeout=30)
    # The server applied it: its count agrees, and the other desktop follows.
    async with ApiClient(server.url) as check:
        await check.login("alice", "demo")
        assert (await check.unread_count())[0] == unread_before - 5
    await laptop.until(lambda: laptop.engine.unread_count() == unread_before - 5, timeout=30)
    assert desktop.engine.unread_count() == unread_before - 5
    await desktop.stop()
    await laptop.stop()


async def test_a_second_desktop_sees_the_count_drop_within_a_second_of_the_sync(
    demo_server: RunningServer, harness: HarnessFactory, tmp_path
):
    """The timing half of the offline mark-read story, with both desktops connected when
    the queued action is sent."""
    publisher = Publisher(demo_server)
    await asyncio.to_thread(publisher.publish_many, [f"todo {n}" for n in range(3)])
    desktop = await harness(demo_server.url, data_dir=tmp_path / "desktop")
    laptop = await harness(demo_server.url, data_dir=tmp_path / "laptop")
    laptop.start()
    await laptop.until(lambda: bool(laptop.catch_ups()))
    unread = laptop.engine.unread_count()
    # The desktop acts before it ever connects: the action waits in its outbox.
    ids = [row.id for row in (await _fetch_rows(desktop.api))[:3]]
    desktop.engine.mark_read(ids)
    assert len(desktop.engine.outbox.pending()) == 1
    desktop.start()
    await desktop.until(lambda: not desktop.engine.outbox.pending())
    synced_at = time.monotonic()
    await laptop.until(lambda: laptop.engine.unread_count() == unread - 3, timeout=5)
    assert time.monotonic() - synced_at < 1.0
    read_events = [e for e in laptop.events if isinstance(e, ReadStateChanged) and e.is_read]
    assert sorted(i for e in read_events for i in e.ids) == sorted(ids)
    await desktop.stop()
    await laptop.stop()


async def _fetch_rows(api: ApiClient) -> list[_Row]:
    page = await api.inbox_page(limit=200)
    return [_Row(row.id, row.seq) for row in page.results]


class _Row:
    def __init__(self, id: int, seq: int) -> None:
        self.id, self.seq = id, seq


async def test_deletes_and_mark_all_read_from_another_device_reach_the_store(
    demo_server: RunningServer, harness: HarnessFactory
):
    client = await harness(demo_server.url)
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    newest = client.engine.search(limit=2)
    async with ApiClient(demo_server.url) as phone:
        await phone.login("alice", "demo")
        await phone.delete([newest[0].id])
        await client.until(lambda: client.engine.inbox.get(newest[0].id) is None)
        await phone.mark_all_read()
        await client.until(lambda: client.engine.inbox.unread_count() == 0)
        await client.until(lambda: client.engine.unread_count() == 0)
    removed = [e for e in client.events if isinstance(e, NotificationsRemoved)]
    assert removed[0].ids == (newest[0].id,)
    await client.stop()


async def test_a_reset_server_makes_the_client_drop_its_history_and_refill(
    server_factory: ServerFactory, harness: HarnessFactory, tmp_path
):
    """cursor_ahead: the server at the same address was reinstalled with a new database,
    so the client's cursor is beyond its latest seq. The client drops its cache and
    replays from zero instead of waiting forever for seqs that will never come."""
    port = str(free_port())
    old = server_factory("--port", port, demo=True, data_dir=tmp_path / "old-server")
    client = await harness(old.url, data_dir=tmp_path / "client")
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    publisher = Publisher(old)
    await asyncio.to_thread(publisher.publish_many, [f"old {n}" for n in range(5)])
    old_latest = await latest_seq(old.url)
    await client.until(lambda: client.engine.inbox.cursor() == old_latest)
    await client.stop()
    old.stop()

    fresh = server_factory("--port", port, demo=True, data_dir=tmp_path / "fresh-server")
    fresh_latest = await latest_seq(fresh.url)
    assert fresh_latest < old_latest
    again = await harness(fresh.url, data_dir=tmp_path / "client")
    assert again.engine.inbox.cursor() == old_latest  # the same account file
    again.start()
    await again.until(
        lambda: (
            any(isinstance(e, HistoryReset) for e in again.events)
            and again.engine.inbox.cursor() == fresh_latest
        )
    )
    titles = {row.title for row in again.engine.search(limit=1000)}
    assert not any(title.startswith("old ") for title in titles)
    assert again.stored_seqs() == list(range(1, fresh_latest + 1))
    await again.stop()
