"""Presence over the WebSocket (embedded store): snapshots, joins, leaves, status,
and who may watch. Scale-mode presence (Redis, several processes) is in
tests/e2e/test_scale.py."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from backend.projects.models import Membership, Project
from backend.users.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def team(*names: str) -> tuple[Project, list[User]]:
    users = [User.objects.create_user(username=name, password="pw") for name in names]
    project = Project.objects.create(title="Mobile App")
    for user in users:
        Membership.objects.create(project=project, user=user)
    return project, users


@database_sync_to_async
def outsider(name: str) -> User:
    return User.objects.create_user(username=name, password="pw")


def by_name(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {member["user"]["username"]: member for member in snapshot["payload"]["members"]}


async def test_snapshot_then_joins_status_and_leaves(connect):
    project, (alice, bob) = await team("alice", "bob")
    watcher = await connect(alice)
    await watcher.send("subscribe_presence", {"project_id": project.pk}, ref="s")
    snapshot = await watcher.receive()
    assert snapshot["type"] == "presence_snapshot"
    assert snapshot["ref"] == "s"
    members = by_name(snapshot)
    assert members["alice"]["online"] is True
    assert members["alice"]["status"] == "online"
    assert members["bob"] == {
        "user": {"id": bob.pk, "username": "bob", "first_name": "", "last_name": ""},
        "online": False,
        "status": "offline",
        "last_seen": None,
    }

    phone = await connect(bob)
    joined = await watcher.receive_until("presence_changed")
    assert joined["payload"] == {
        **joined["payload"],
        "project_id": project.pk,
        "user_id": bob.pk,
        "online": True,
        "status": "online",
    }

    await phone.send("set_status", {"status": "dnd"}, ref=1)
    assert (await phone.receive_until("ack"))["payload"]["status"] == "dnd"
    changed = await watcher.receive_until("presence_changed")
    assert changed["payload"]["status"] == "dnd"

    # A second socket keeps bob online when the first one closes.
    laptop = await connect(bob)
    await phone.ws.disconnect()
    assert await watcher.nothing_pending()
    await laptop.ws.disconnect()
    left = await watcher.receive_until("presence_changed")
    assert left["payload"]["online"] is False
    assert left["payload"]["status"] == "offline"
    assert left["payload"]["last_seen"] > 0


async def test_only_members_may_watch_a_project(connect):
    project, (alice,) = await team("alice")
    mallory = await outsider("mallory")
    spy = await connect(mallory)
    await spy.send("subscribe_presence", {"project_id": project.pk}, ref="spy")
    error = await spy.receive()
    assert error["type"] == "error"
    assert error["payload"]["code"] == "not_found"
    await spy.send("subscribe_presence", {"project_id": 987654}, ref="none")
    missing = await spy.receive()
    # A project that does not exist reads exactly like one you are not in.
    assert (
        missing["payload"]["message"].replace("987654", str(project.pk))
        == error["payload"]["message"]
    )
    await connect(alice)
    assert await spy.nothing_pending()


async def test_removing_a_member_ends_their_presence_subscription(connect):
    from backend.projects.services import membership_add, membership_remove, project_create

    @database_sync_to_async
    def setup() -> tuple[Project, User, User, Membership]:
        owner = User.objects.create_user(username="olga", password="pw", is_staff=True)
        member = User.objects.create_user(username="max", password="pw")
        project = project_create(actor=owner, title="Website")
        membership = membership_add(actor=owner, project=project, user=member)
        return project, owner, member, membership

    project, owner, member, membership = await setup()
    watcher = await connect(member)
    await watcher.send("subscribe_presence", {"project_id": project.pk})
    await watcher.receive_until("presence_snapshot")
    await database_sync_to_async(membership_remove)(actor=owner, membership=membership)
    dropped = await watcher.receive_until("presence_unsubscribed")
    assert dropped["payload"] == {"project_id": project.pk, "reason": "removed"}
    # The owner coming online is no longer shown to the removed member.
    await connect(owner)
    while not await watcher.nothing_pending():
        frame = await watcher.receive()
        assert frame["type"] != "presence_changed", frame


async def test_a_plain_user_cannot_make_someone_a_co_member_to_watch_them(connect):
    """The review's bob created a project, added the admin to it and so watched her
    presence. Watching needs a shared project, and a plain user can make none."""

    @database_sync_to_async
    def attack() -> tuple[User, User, list[int], list[int]]:
        from rest_framework.test import APIClient

        from backend.projects.services import project_create

        admin = User.objects.create_user(username="admin", password="pw", is_staff=True)
        it = project_create(actor=admin, title="IT")
        bob = User.objects.create_user(username="bob", password="pw")
        client = APIClient()
        client.force_authenticate(bob)
        statuses = [client.post("/api/projects/", {"title": "Bob's"}, format="json").status_code]
        for project_id in list(Project.objects.filter(created_by=bob).values_list("pk", flat=True)):
            added = client.post(
                f"/api/projects/{project_id}/members/", {"user_id": admin.pk}, format="json"
            )
            statuses.append(added.status_code)
        theirs = list(Project.objects.filter(memberships__user=bob).values_list("pk", flat=True))
        return admin, bob, statuses, [it.pk, *theirs]

    admin, bob, statuses, project_ids = await attack()
    await connect(admin)
    spy = await connect(bob)
    for project_id in project_ids:
        await spy.send("subscribe_presence", {"project_id": project_id}, ref=str(project_id))
        answer = await spy.receive()
        if answer["type"] == "presence_snapshot":
            assert "admin" not in by_name(answer), answer
        else:
            assert answer["payload"]["code"] == "not_found", answer
    assert statuses == [403]
    # Her status changes reach no one who shares no project with her.
    laptop = await connect(admin)
    await laptop.send("set_status", {"status": "dnd"}, ref="s")
    await laptop.receive_until("ack")
    assert await spy.nothing_pending()


async def test_a_chosen_status_and_last_seen_outlive_the_server_process(connect):
    """The embedded store lives in the process's memory: what a user chose and when they
    were last seen are kept in the database and seeded back into a new hub."""
    from backend.notifications.hub import Hub
    from backend.notifications.presence_selectors import presence_kept

    project, (alice, bob) = await team("alice", "bob")
    phone = await connect(bob)
    await phone.send("set_status", {"status": "away"}, ref="s")
    assert (await phone.receive_until("ack"))["payload"]["status"] == "away"
    kept = await database_sync_to_async(presence_kept)(user_ids=[bob.pk])
    assert kept[bob.pk].chosen_status == "away"  # written when chosen
    await phone.ws.disconnect()
    watcher = await connect(alice)
    await watcher.send("subscribe_presence", {"project_id": project.pk})
    before = by_name(await watcher.receive_until("presence_snapshot"))["bob"]
    assert before["online"] is False
    assert before["last_seen"] > 0

    await Hub.current().stop()  # the server stops: last seen is flushed, memory is gone
    kept = await database_sync_to_async(presence_kept)(user_ids=[bob.pk])
    assert kept[bob.pk].last_seen == pytest.approx(before["last_seen"], abs=1e-5)

    watcher = await connect(alice)  # a new hub, seeded from the database
    await watcher.send("subscribe_presence", {"project_id": project.pk})
    after = by_name(await watcher.receive_until("presence_snapshot"))["bob"]
    assert after["last_seen"] == pytest.approx(before["last_seen"], abs=1e-5)
    phone = await connect(bob)  # back online: with the status bob chose before
    changed = await watcher.receive_until("presence_changed")
    assert (changed["payload"]["online"], changed["payload"]["status"]) == (True, "away")
