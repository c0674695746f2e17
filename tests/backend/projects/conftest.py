"""Fixtures of the projects tests: a team with every role, and a view of who was
notified of what since a test began."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from backend.notifications import delivery
from backend.notifications.models import Inbox, Message
from backend.notifications.selectors import latest_message_id
from backend.projects.models import Membership, Milestone, Project, Task
from backend.projects.services import membership_add, project_create
from backend.users.models import User


@dataclass
class Team:
    """ "Mobile App": alice owns it, mia manages it, bob and carol are members;
    otto is in no project of theirs (he owns "Secret" with his own task). Alice
    and otto may create projects; the others may not."""

    project: Project
    alice: User
    mia: User
    bob: User
    carol: User
    otto: User
    other: Project

    def membership(self, user: User) -> Membership:
        return Membership.objects.get(project=self.project, user=user)


@pytest.fixture
def team(make_user: Callable[..., User]) -> Team:
    alice, mia, bob, carol, otto = (
        make_user(name, can_create_projects=name in ("alice", "otto"))
        for name in ("alice", "mia", "bob", "carol", "otto")
    )
    project = project_create(actor=alice, title="Mobile App", description="Field app")
    membership_add(actor=alice, project=project, user=mia, role="manager")
    membership_add(actor=alice, project=project, user=bob)
    membership_add(actor=alice, project=project, user=carol, capacity=40)
    other = project_create(actor=otto, title="Secret")
    Task.objects.create(project=other, title="Hidden task")
    Milestone.objects.create(project=other, title="Hidden milestone")
    return Team(project, alice, mia, bob, carol, otto, other)


class News:
    """Notifications written since it was made: ``events()`` is a list of
    (event_type, sorted recipient usernames), in the order they were written."""

    def __init__(self) -> None:
        self.mark = latest_message_id()

    def messages(self) -> list[Message]:
        return list(Message.objects.filter(id__gt=self.mark).order_by("id"))

    def events(self) -> list[tuple[str, list[str]]]:
        return [
            (
                message.event_type,
                sorted(
                    Inbox.objects.filter(message=message).values_list("user__username", flat=True)
                ),
            )
            for message in self.messages()
        ]

    def one(self, event_type: str) -> Message:
        found = [m for m in self.messages() if m.event_type == event_type]
        assert len(found) == 1, [m.event_type for m in self.messages()]
        return found[0]


@pytest.fixture
def news(team: Team) -> News:
    return News()


@pytest.fixture
def rings(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Doorbell events rung (after commit) during the test, other than notifications."""
    rung: list[dict[str, Any]] = []

    def record(event: dict[str, Any]) -> None:
        if event.get("kind") != "notification":
            rung.append(event)

    monkeypatch.setattr(delivery, "ring", record)
    return rung


def snapshot() -> list[list[dict[str, Any]]]:
    """Every row the projects domain and the notification service write."""
    models: list[Any] = [Project, Membership, Milestone, Task, Message, Inbox]
    return [list(model.objects.order_by("pk").values()) for model in models]


@pytest.fixture
def client_for() -> Callable[[User | None], APIClient]:
    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return make
