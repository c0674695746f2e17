"""Fan-out stays cheap as audiences grow: one transaction with a fixed number of
statements and one doorbell per notification, whatever the audience size; and a
socket that stops reading is cut off without holding up anyone else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.notifications.consumers import NotificationConsumer
from backend.notifications.hub import Hub
from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.projects.models import Membership, Project
from backend.users.models import User


def _project_with(count: int, title: str) -> Project:
    users = User.objects.bulk_create(
        [User(username=f"{title}-{n}", password="!") for n in range(count)]
    )
    project = Project.objects.create(title=title)
    Membership.objects.bulk_create([Membership(project=project, user=user) for user in users])
    return project


def _statements_to_notify(
    project: Project, django_capture_on_commit_callbacks: Any
) -> tuple[int, int]:
    audience = Audience(projects=(project.pk,))
    notification_create(audience=audience, title="warm-up")  # first one creates seq rows
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks() as doorbells,
    ):
        result = notification_create(audience=audience, title="measured")
    assert result.recipient_count == project.memberships.count()
    return len(queries), len(doorbells)


@pytest.mark.django_db
def test_statements_do_not_grow_with_the_audience(django_capture_on_commit_callbacks):
    small = _project_with(10, "small")
    large = _project_with(1000, "large")
    small_statements, small_doorbells = _statements_to_notify(
        small, django_capture_on_commit_callbacks
    )
    large_statements, large_doorbells = _statements_to_notify(
        large, django_capture_on_commit_callbacks
    )
    assert large_statements == small_statements
    assert small_doorbells == large_doorbells == 1
    seqs = (
        Inbox.objects.filter(user__username="large-999")
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert list(seqs) == [1, 2]


@pytest.mark.django_db
def test_everyone_means_every_active_user(django_capture_on_commit_callbacks):
    User.objects.bulk_create([User(username=f"u{n}", password="!") for n in range(50)])
    User.objects.filter(username="u7").update(is_active=False)
    result = notification_create(audience=Audience(everyone=True), title="Hello all")
    assert result.recipient_count == 49
    assert not Inbox.objects.filter(user__username="u7").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_stalled_socket_is_closed_with_1013_and_others_keep_receiving(connect, settings):
    settings.TRAY = {**settings.TRAY, "WS_SEND_QUEUE": 5}
    alice = await database_sync_to_async(User.objects.create_user)(username="alice", password="pw")
    bob = await database_sync_to_async(User.objects.create_user)(username="bob", password="pw")
    stalled = await connect(alice)
    healthy = await connect(bob)
    (socket,) = Hub.current().sockets_by_user[alice.pk]
    assert isinstance(socket, NotificationConsumer)
    consumer = socket
    never = asyncio.Event()

    async def stuck_send(**frame: Any) -> None:
        # Fault injection: alice's transport stops draining, as when a client stops
        # reading and the kernel buffers are full. Filling real buffers takes megabytes
        # of frames; bench/ measures that case against a real server.
        await never.wait()

    consumer.send = stuck_send
    for n in range(8):
        await database_sync_to_async(notification_create)(
            audience=Audience(users=(alice.pk, bob.pk)), title=f"n{n}"
        )
    titles: list[str] = []
    counts: list[int] = []
    while len(titles) < 8 or counts[-1:] != [8]:
        frame = await healthy.receive()
        if frame["type"] == "notification_created":
            titles.append(frame["payload"]["title"])
        else:
            counts.append(frame["payload"]["unread_count"])
    assert titles == [f"n{n}" for n in range(8)]
    assert counts == sorted(counts)  # the bell only counts up here
    assert await stalled.closed_with() == 1013
    assert len(consumer._out) == 0  # the backlog is released, not kept for a dead reader
