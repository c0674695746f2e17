"""Attention settings over the socket (embedded hub): ``hello`` carries them, a change
reaches every socket of the user as ``attention_changed``, and do-not-disturb is the
presence status teammates see, set from any device and ended by itself. Scale mode
(Redis, several processes) is in tests/e2e/test_scale.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from backend.attention import rules
from backend.attention.services import attention_update
from backend.projects.models import Project
from backend.users.models import User
from tests.backend.notifications.test_presence import team

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

change = database_sync_to_async(attention_update)


async def watching(connect: Any, user: User, project: Project) -> Any:
    watcher = await connect(user)
    await watcher.send("subscribe_presence", {"project_id": project.pk})
    snapshot = await watcher.receive_until("presence_snapshot")
    watcher.snapshot = {m["user"]["username"]: m for m in snapshot["payload"]["members"]}
    return watcher


async def test_hello_carries_the_settings(connect: Any) -> None:
    _, (alice,) = await team("alice")
    assert (await connect(alice)).hello["attention"] == {"version": 0, **rules.DEFAULT}
    await change(user_id=alice.pk, changes={"min_priority": "high"})
    attention = (await connect(alice)).hello["attention"]
    assert (attention["version"], attention["min_priority"]) == (1, "high")


async def test_a_change_reaches_every_socket_of_the_user_and_no_one_else(connect: Any) -> None:
    _, (alice, bob) = await team("alice", "bob")
    laptop, phone, other = await connect(alice), await connect(alice), await connect(bob)
    stored = await change(user_id=alice.pk, changes={"muted_event_types": ["task_created"]})
    for socket in (laptop, phone):
        frame = await socket.receive_until("attention_changed")
        assert frame["payload"] == stored
        assert frame["payload"]["muted_event_types"] == ["task_created"]
    assert await other.nothing_pending()
    # A change that changes nothing is not sent.
    await change(user_id=alice.pk, changes={"muted_event_types": ["task_created"]})
    assert await laptop.nothing_pending()


async def test_do_not_disturb_from_rest_is_the_presence_teammates_see(connect: Any) -> None:
    project, (alice, bob) = await team("alice", "bob")
    await connect(alice)
    watcher = await watching(connect, bob, project)
    assert watcher.snapshot["alice"]["status"] == "online"

    await change(user_id=alice.pk, changes={"dnd": True})
    changed = await watcher.receive_until("presence_changed")
    assert (changed["payload"]["user_id"], changed["payload"]["status"]) == (alice.pk, "dnd")
    assert await watcher.nothing_pending()  # told once

    await change(user_id=alice.pk, changes={"dnd": None})
    changed = await watcher.receive_until("presence_changed")
    assert changed["payload"]["status"] == "online"


async def test_set_status_dnd_is_do_not_disturb_on_every_device(connect: Any) -> None:
    project, (alice, bob) = await team("alice", "bob")
    laptop, phone = await connect(alice), await connect(alice)
    watcher = await watching(connect, bob, project)

    await phone.send("set_status", {"status": "dnd"}, ref=1)
    assert (await phone.receive_until("ack"))["payload"]["status"] == "dnd"
    assert (await laptop.receive_until("attention_changed"))["payload"]["dnd"] == {"until": None}
    assert (await watcher.receive_until("presence_changed"))["payload"]["status"] == "dnd"

    # "away" is what teammates see once do-not-disturb is off; it does not end it, so a
    # device re-sending its status on reconnect cannot undo it.
    await laptop.send("set_status", {"status": "away"}, ref=2)
    await laptop.receive_until("ack")
    assert (await watcher.receive_until("presence_changed"))["payload"]["status"] == "dnd"
    await change(user_id=alice.pk, changes={"dnd": None})
    assert (await phone.receive_until("attention_changed"))["payload"]["dnd"] is None
    assert (await watcher.receive_until("presence_changed"))["payload"]["status"] == "away"


async def test_set_status_dnd_may_end_by_itself_and_presence_follows(connect: Any) -> None:
    project, (alice, bob) = await team("alice", "bob")
    phone = await connect(alice)
    watcher = await watching(connect, bob, project)
    until = (timezone.now() + timedelta(seconds=2)).isoformat()

    await phone.send("set_status", {"status": "dnd", "until": until}, ref=1)
    ack = await phone.receive_until("ack")
    assert ack["payload"]["status"] == "dnd"
    assert (await watcher.receive_until("presence_changed"))["payload"]["status"] == "dnd"
    ended = await watcher.receive_until("presence_changed", timeout=10)
    assert ended["payload"]["status"] == "online"
    assert (await database_sync_to_async(_dnd_of)(alice))["dnd"] is None


async def test_a_bad_set_status_is_refused_and_changes_nothing(connect: Any) -> None:
    _, (alice,) = await team("alice")
    phone = await connect(alice)
    await phone.send("set_status", {"status": "dnd", "until": "yesterday"}, ref=1)
    error = await phone.receive_until("error")
    assert (error["payload"]["code"], error["ref"]) == ("invalid_attention", 1)
    assert "ISO 8601" in error["payload"]["message"]
    assert (await database_sync_to_async(_dnd_of)(alice))["version"] == 0


async def test_do_not_disturb_set_while_offline_shows_when_they_connect(connect: Any) -> None:
    project, (alice, bob) = await team("alice", "bob")
    await change(user_id=alice.pk, changes={"dnd": True})
    watcher = await watching(connect, bob, project)
    assert watcher.snapshot["alice"]["status"] == "offline"
    phone = await connect(alice)
    assert phone.hello["attention"]["dnd"] == {"until": None}
    joined = await watcher.receive_until("presence_changed")
    assert (joined["payload"]["online"], joined["payload"]["status"]) == (True, "dnd")


def _dnd_of(user: User) -> dict[str, Any]:
    from backend.attention.selectors import attention_of

    return attention_of(user_id=user.pk)
