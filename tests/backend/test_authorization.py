"""No path gives a user a notification or presence of a project they do not belong
to: live frames, replay, REST and presence; and removal takes effect from its commit."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from backend.projects.services import membership_add, membership_remove, project_create, task_create
from backend.users.models import User
from tests.conftest import grant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def setup() -> dict[str, Any]:
    users = {
        name: User.objects.create_user(username=name, password="pw")
        for name in ("olga", "bob", "mallory")
    }
    grant(users["olga"], "projects.add_project")
    project = project_create(actor=users["olga"], title="Secret plans")
    membership = membership_add(actor=users["olga"], project=project, user=users["bob"])
    return {**users, "project": project, "membership": membership}


@database_sync_to_async
def rest_inbox(user: User, **params: Any) -> list[dict[str, Any]]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/inbox/", params)
    assert response.status_code == 200, response.content
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def replay(client: Any) -> list[dict[str, Any]]:
    await client.send("resume", {"after_seq": 0})
    rows: list[dict[str, Any]] = []
    while True:
        frame = await client.receive()
        if frame["type"] == "caught_up":
            return rows
        rows.append(frame["payload"])


async def test_an_outsider_gets_nothing_of_the_project_on_any_path(connect):
    world = await setup()
    bob = await connect(world["bob"])
    mallory = await connect(world["mallory"])
    await database_sync_to_async(task_create)(
        actor=world["olga"], project=world["project"], title="Plan A"
    )
    live = await bob.receive_until("notification_created")
    assert live["payload"]["project"]["title"] == "Secret plans"
    assert await mallory.nothing_pending()
    assert await replay(mallory) == []
    assert await rest_inbox(world["mallory"]) == []
    assert await rest_inbox(world["mallory"], project=world["project"].pk) == []
    await mallory.send("subscribe_presence", {"project_id": world["project"].pk})
    assert (await mallory.receive())["payload"]["code"] == "not_found"


async def test_removal_stops_deliveries_from_its_commit_on(connect):
    world = await setup()
    bob = await connect(world["bob"])
    await database_sync_to_async(task_create)(
        actor=world["olga"], project=world["project"], title="Before"
    )
    assert (await bob.receive_until("notification_created"))["payload"]["title"] == "New task"
    assert (await bob.receive())["type"] == "unread_count"  # it follows every notification
    await database_sync_to_async(membership_remove)(
        actor=world["olga"], membership=world["membership"]
    )
    await database_sync_to_async(task_create)(
        actor=world["olga"], project=world["project"], title="After"
    )
    assert await bob.nothing_pending()
    replayed = await replay(await connect(world["bob"]))
    assert [
        row["data"].get("task_id") is not None
        for row in replayed
        if row["event_type"] == "task_created"
    ] == [True]
    assert all("After" not in row["message"] for row in replayed)
    assert all("After" not in row["message"] for row in await rest_inbox(world["bob"]))
