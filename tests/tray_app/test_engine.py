"""The sync engine against the real server in a subprocess, as a user's machine sees it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.http import CountingTransport
from tests.fixtures.services import RunningServer, ServerFactory, free_port
from tests.tray_app.conftest import (
    Harness,
    HarnessFactory,
    Publisher,
    RestartableServer,
    scaled,
)
from tray_app.attention import Attention, dnd_choice_change, parse_attention
from tray_app.engine import (
    REPLAY_FLUSH_ROWS,
    AttentionChanged,
    AttentionChangeRefused,
    HistoryReset,
    NotificationBatchAdded,
    NotificationsRemoved,
    ReadStateChanged,
)
from tray_app.net.api import ApiClient
from tray_app.net.connection_state import ConnectionState
from tray_app.net.live import Connection
from tray_app.net.stream import stream_connector
from tray_app.net.transport import Transport
from tray_app.net.transport_choice import TransportChoice

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
    at random moments (400 and 4 in the CI variant, ``TRAY_TEST_SCALE`` unset): the store
    ends with exactly those, each once, cursor at the server's."""
    server = RestartableServer(server_factory)
    client = await harness(server.url)
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    before = client.engine.inbox.cursor()

    total, kills = scaled(1000, minimum=50, ci=400), scaled(10, minimum=2, ci=4)
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


# --- attention settings: one state per user, on every device --------------------------------


async def attention_on_server(
    server_url: str, username: str = "alice", *, change: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``GET`` (or ``PATCH`` with ``change``) /api/attention/ from another login of the user,
    as their phone or browser would."""
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        login = await http.post("/api/auth/token/", json={"username": username, "password": "demo"})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        if change is None:
            answer = await http.get("/api/attention/", headers=headers)
        else:
            answer = await http.patch("/api/attention/", json=change, headers=headers)
        answer.raise_for_status()
        payload: dict[str, Any] = answer.json()
        return payload


async def project_id(server_url: str, title: str) -> int:
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        login = await http.post("/api/auth/token/", json={"username": "alice", "password": "demo"})
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        answer = await http.get("/api/projects/", headers=headers)
        answer.raise_for_status()
        body = answer.json()
    rows = body["results"] if isinstance(body, dict) else body
    return next(int(row["id"]) for row in rows if row["title"] == title)


class CountedAnswers(ApiClient):
    """The real REST client, counting the server's answers to attention changes.

    No engine event marks a change as taken when the server's push of it came before
    the answer to the PATCH (the settings in force did not change then): a test waits
    for the answer here instead. The engine handles an answer in the same turn of the
    loop as it arrives, so once counted it has been handled."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.answers = 0
        self._answered = asyncio.Event()

    async def change_attention(self, changes: Mapping[str, Any]) -> Attention:
        answer = await super().change_attention(changes)
        await self.before_answering()
        self.answers += 1
        self._answered.set()
        return answer

    async def before_answering(self) -> None:
        """The server applied the change; its answer is about to reach the engine."""

    async def until_answers(self, count: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while self.answers < count:
                self._answered.clear()
                await self._answered.wait()


async def attention_harness(
    harness: HarnessFactory, server_url: str, username: str = "alice", **options: Any
) -> Harness:
    """A logged-in harness whose engine talks REST through :class:`CountedAnswers`."""
    api = CountedAnswers(server_url)
    await api.login(username, "demo")
    made: Harness = await harness(server_url, username, api=api, **options)
    return made


async def confirmed(client: Harness, answers: int) -> None:
    """Until the server has answered ``answers`` attention changes of this engine; then
    nothing made here is waiting for it."""
    assert isinstance(client.api, CountedAnswers)
    await client.api.until_answers(answers)
    assert client.engine.attention_store.pending() is None


def attention_told(client: Harness) -> list[Attention]:
    return [e.attention for e in client.events if isinstance(e, AttentionChanged)]


def refusals(client: Harness) -> list[AttentionChangeRefused]:
    return [e for e in client.events if isinstance(e, AttentionChangeRefused)]


async def test_hellos_attention_is_in_force_and_told(
    demo_server: RunningServer, harness: HarnessFactory
):
    """Settings changed on another device before this one ever connected arrive in hello."""
    on_server = await attention_on_server(
        demo_server.url,
        change={"min_priority": "high", "muted_event_types": ["ci"], "dnd": {"until": None}},
    )
    client = await harness(demo_server.url)
    assert client.engine.attention == Attention()  # the defaults before the server spoke
    assert not client.engine.heard_attention()

    client.start()
    await client.until(lambda: bool(attention_told(client)))
    expected = parse_attention(on_server)
    assert expected.version >= 1
    assert attention_told(client) == [expected]
    assert client.engine.attention == expected
    assert client.engine.heard_attention()
    assert not client.engine.attention.may_interrupt(
        priority="normal", project_id=None, event_type="deploy", now=datetime.now(UTC)
    )
    # Kept in the account's store: the next start shows it before any network.
    assert client.engine.attention_store.known() == expected.payload()
    await client.stop()


async def test_hello_is_the_servers_word_even_when_its_versions_start_over(
    demo_server: RunningServer, harness: HarnessFactory
):
    """A device that kept version 40 from a server since reinstalled takes the new
    server's version 1 from hello (an attention_changed frame is ordered by version;
    what a connection opens with is the server's current word)."""
    on_server = await attention_on_server(demo_server.url, change={"min_priority": "high"})
    client = await harness(demo_server.url)
    stale = Attention(version=40, dnd=True, muted_event_types=frozenset({"old"}))
    assert client.engine.attention_store.remember(stale.payload())
    assert client.engine.attention == stale
    client.start()
    await client.until(lambda: bool(attention_told(client)))
    assert client.engine.attention == parse_attention(on_server)
    assert client.engine.attention.version < 40
    await client.stop()


async def test_a_change_on_another_device_reaches_the_engine(
    demo_server: RunningServer, harness: HarnessFactory
):
    client = await harness(demo_server.url)
    client.start()
    await client.until(lambda: bool(attention_told(client)))
    version = client.engine.attention.version

    on_server = await attention_on_server(
        demo_server.url,
        change={"quiet_hours": {"start": "22:00", "end": "07:00"}, "time_zone": "Pacific/Auckland"},
    )
    assert on_server["version"] == version + 1
    await client.until(lambda: attention_told(client)[-1].version == version + 1)
    told = attention_told(client)[-1]
    assert told == parse_attention(on_server)
    assert told.quiet_hours is not None
    assert told.time_zone == "Pacific/Auckland"
    assert client.engine.attention == told

    # And the next one, on top.
    again = await attention_on_server(demo_server.url, change={"muted_event_types": ["ci"]})
    await client.until(lambda: attention_told(client)[-1].version == version + 2)
    assert client.engine.attention == parse_attention(again)
    assert client.engine.attention.quiet_hours == told.quiet_hours  # left as it was
    await client.stop()


async def test_an_offline_change_is_in_force_at_once_survives_a_restart_and_is_sent_on_hello(
    server_factory: ServerFactory, harness: HarnessFactory, tmp_path
):
    server = RestartableServer(server_factory)
    laptop = await harness(server.url, data_dir=tmp_path / "laptop")
    laptop.start()
    await laptop.until(lambda: bool(attention_told(laptop)))
    heard_version = laptop.engine.attention.version

    server.kill()
    await laptop.until(lambda: laptop.state() is not ConnectionState.CONNECTED)
    now = datetime.now(UTC).replace(microsecond=0)
    change = dnd_choice_change("1h", now)
    told_before = len(attention_told(laptop))
    laptop.engine.change_attention(change)
    # In force here at once, and told at once, though the server cannot hear it.
    assert laptop.engine.attention.dnd_active(now)
    assert laptop.engine.attention.dnd_until == now + timedelta(hours=1)
    assert len(attention_told(laptop)) == told_before + 1
    assert attention_told(laptop)[-1] == laptop.engine.attention
    assert laptop.engine.attention_store.pending() == change
    assert laptop.api.tokens is not None
    refresh = laptop.api.tokens.refresh
    await laptop.stop()

    # The app starts again, still offline: the change is still in force.
    api = CountedAnswers(server.url)
    api.restore(refresh)
    again = await harness(server.url, data_dir=tmp_path / "laptop", api=api)
    assert again.engine.attention.dnd_active(now)
    assert again.engine.attention.dnd_until == now + timedelta(hours=1)
    assert again.engine.attention.version == heard_version  # not confirmed yet
    assert (await attention_on_server_when_up(server))["dnd"] is None  # the server never heard

    again.start()
    await confirmed(again, 1)
    await again.until(lambda: any(a.version > heard_version for a in attention_told(again)))
    on_server = await attention_on_server(server.url)
    assert on_server["dnd"] == change["dnd"]
    assert on_server["version"] == heard_version + 1
    assert again.engine.attention == parse_attention(on_server)
    assert again.engine.attention.dnd_active(now)
    # Told on hello (with the change still pending), then the server's confirmation.
    told = attention_told(again)
    assert told[0].dnd_active(now)
    assert told[-1] == parse_attention(on_server)
    await again.stop()


async def attention_on_server_when_up(server: RestartableServer) -> dict[str, Any]:
    """The server's settings, starting it for the look (the client has not connected)."""
    server.start()
    return await attention_on_server(server.url)


async def test_a_refused_change_is_dropped_and_told(
    demo_server: RunningServer, harness: HarnessFactory
):
    """bob is not in Website Redesign: muting it is a 400 the engine must not retry."""
    website = await project_id(demo_server.url, "Website Redesign")
    client = await attention_harness(harness, demo_server.url, "bob")
    client.start()
    await client.until(lambda: bool(attention_told(client)))
    before = await attention_on_server(demo_server.url, "bob")

    told_before = len(client.events)
    client.engine.change_attention({"muted_projects": [website]})
    assert client.engine.attention.muted_projects == frozenset({website})  # at once
    await client.until(lambda: bool(refusals(client)))
    (refused,) = refusals(client)
    assert "not among your projects" in refused.message
    assert client.engine.attention_store.pending() is None
    assert client.engine.attention.muted_projects == frozenset()
    # Told: the change in force, then the refusal, then the settings back as they were.
    after = client.events[told_before:]
    kinds = [type(e) for e in after if isinstance(e, AttentionChanged | AttentionChangeRefused)]
    assert kinds == [AttentionChanged, AttentionChangeRefused, AttentionChanged]
    assert attention_told(client)[-1] == parse_attention(before)
    assert await attention_on_server(demo_server.url, "bob") == before

    # The engine goes on: the next change is sent and taken.
    client.engine.change_attention({"min_priority": "urgent"})
    await confirmed(client, 1)
    assert attention_told(client)[-1].version == before["version"] + 1
    assert client.engine.attention.min_priority == "urgent"
    assert len(refusals(client)) == 1
    await client.stop()


async def test_set_status_dnd_is_do_not_disturb_on_every_device(
    demo_server: RunningServer, harness: HarnessFactory
):
    client = await attention_harness(harness, demo_server.url)
    client.start()
    await client.until(lambda: bool(attention_told(client)))
    version = client.engine.attention.version

    await client.engine.set_status("dnd")
    assert client.engine.attention.dnd_active(datetime.now(UTC))
    assert client.engine.attention.dnd_until is None  # until turned off
    await confirmed(client, 1)
    assert attention_told(client)[-1].version == version + 1
    on_server = await attention_on_server(demo_server.url)
    assert on_server["dnd"] == {"until": None}
    assert on_server["version"] == version + 1

    # "online" ends it, here and on the server.
    await client.engine.set_status("online")
    assert not client.engine.attention.dnd
    await confirmed(client, 2)
    assert attention_told(client)[-1].version == version + 2
    assert not client.engine.attention.dnd
    assert (await attention_on_server(demo_server.url))["dnd"] is None
    await client.stop()


class HeldAnswers(CountedAnswers):
    """Answers to attention changes held back (after the server applied them) until the
    test lets them through: a slow network's order of events."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def before_answering(self) -> None:
        self.held.set()
        await self.release.wait()


async def test_what_listeners_were_told_is_in_force_when_a_newer_change_overtakes_the_answer(
    demo_server: RunningServer, harness: HarnessFactory
):
    api = HeldAnswers(demo_server.url)
    await api.login("alice", "demo")
    client = await harness(demo_server.url, api=api)
    client.start()
    await client.until(lambda: bool(attention_told(client)))
    version = client.engine.attention.version

    client.engine.change_attention({"min_priority": "urgent"})
    async with asyncio.timeout(20):
        await api.held.wait()  # the server took it (version + 1)
    # The phone sets it back before this computer has read the answer.
    await attention_on_server(demo_server.url, change={"min_priority": "low"})
    await client.until(lambda: any(a.version == version + 2 for a in attention_told(client)))
    api.release.set()
    await confirmed(client, 1)

    assert client.engine.attention.min_priority == "low"  # the server's newest word
    assert client.engine.attention.version == version + 2
    assert attention_told(client)[-1] == client.engine.attention
    await client.stop()


async def test_a_stop_before_the_run_task_gets_going_still_ends_it(
    demo_server: RunningServer, harness: HarnessFactory
):
    """An app that quits (or logs out) in the same turn of the loop as it started."""
    client = await harness(demo_server.url)
    client.start()
    await client.engine.stop()
    assert client.task is not None
    async with asyncio.timeout(10):
        await asyncio.shield(client.task)  # the fixture stops it again if this times out


async def test_what_arrives_while_the_stream_reopens_is_live_not_while_you_were_away(
    demo_server: RunningServer, harness: HarnessFactory
) -> None:
    """On the HTTP stream the session reopens it on purpose (a presence watch, a token
    renewal, a retry of the socket) without the user seeing a break: a notification
    committed in that gap comes in the reopened stream's replay, and is live (its own
    toast), not a "1 new while you were away"."""
    stream = stream_connector(Transport(proxy="none"))
    opened = 0

    @contextlib.asynccontextmanager
    async def stream_with_a_gap(url: str, headers: dict[str, str]) -> AsyncIterator[Connection]:
        nonlocal opened
        opened += 1
        if opened == 2:  # the reopen: published while no stream is open
            await asyncio.to_thread(Publisher(demo_server).publish, "in the gap")
        async with stream(url, headers) as connection:
            yield connection

    client = await harness(
        demo_server.url, stream_connect=stream_with_a_gap, choice=TransportChoice.create("http")
    )
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    latest = client.stored_seqs()[-1]
    projects = client.engine.projects()
    assert projects
    await client.engine.watch_presence(projects[0][0])  # reopens with ?watch=
    await client.until(lambda: latest + 1 in client.stored_seqs())
    (gap,) = [event for event in client.added() if event.notification.seq == latest + 1]
    assert gap.live
    assert opened == 2
    # No "N new while you were away" for it: the catch-ups after the first say 0.
    assert [event.added for event in client.catch_ups()[1:]] in ([], [0])
    assert client.state() is ConnectionState.CONNECTED
    assert ConnectionState.RECONNECTING not in client.states()
    await client.stop()


REPO_ROOT = Path(__file__).resolve().parents[2]
# The HTTP stream's modules, in a fresh interpreter: not imported with the engine, only by
# the first connection over the stream (issue 20: most sessions never fall back).
_LAZY_STREAM_SCRIPT = """
import json, sys
from tray_app.engine import lazy_stream_connector
from tray_app.net import Transport
connect = lazy_stream_connector(Transport(proxy="none"))
before = sorted(name for name in ("tray_app.net.stream", "tray_app.net.sse") if name in sys.modules)
opening = connect("ws://127.0.0.1:9/ws/notifications/?after_seq=0", {})
after = sorted(name for name in ("tray_app.net.stream", "tray_app.net.sse") if name in sys.modules)
print(json.dumps({"before": before, "after": after, "opens": hasattr(opening, "__aenter__")}))
"""


async def test_the_http_streams_modules_load_only_when_a_session_falls_back_to_it() -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _LAZY_STREAM_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report == {
        "before": [],
        "after": ["tray_app.net.sse", "tray_app.net.stream"],
        "opens": True,
    }


async def test_a_users_actions_go_over_the_open_socket_not_rest(
    demo_server: RunningServer, harness: HarnessFactory, tmp_path
):
    """Mark read, mark unread, delete and mark all read, queued and sent while connected:
    each is answered on the socket, and the REST client makes no request (a session that
    only reads and marks never loads its stack)."""
    publisher = Publisher(demo_server)
    await asyncio.to_thread(publisher.publish_many, [f"act {n}" for n in range(4)])
    async with ApiClient(demo_server.url) as seed:
        await seed.login("alice", "demo")
        assert seed.tokens is not None
        refresh = seed.tokens.refresh
    rest = CountingTransport()
    api = ApiClient(demo_server.url, http_transport=rest)
    api.restore(refresh)  # a returning start: the socket trades the refresh token
    client = await harness(demo_server.url, data_dir=tmp_path / "desktop", api=api)
    client.start()
    await client.until(lambda: bool(client.catch_ups()))
    rows = client.engine.search(limit=4)
    first, second, third = rows[0].id, rows[1].id, rows[2].id
    client.engine.mark_read([first, second])
    client.engine.mark_unread([second])
    client.engine.delete([third])
    client.engine.mark_all_read()
    await client.until(lambda: not client.engine.outbox.pending())
    async with ApiClient(demo_server.url) as check:
        await check.login("alice", "demo")
        assert (await check.unread_count())[0] == 0
        remaining = {row.id for row in (await check.inbox_page(limit=200)).results}
    assert third not in remaining
    assert first in remaining
    assert rest.paths == []
    await client.stop()
