"""Demo data for ``tray-notifier-server --demo``: a small team with two projects.

Everything is created through the project services, as the REST API would, so
the demo inboxes start with the notifications those events produce. Creating a
project is a right IT grants: alice and carol are in the "Project managers"
group, which holds it; bob is a plain member and admin is staff.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from backend.users.models import Role, User

DEMO_PASSWORD = "demo"


@dataclass(frozen=True)
class _DemoUser:
    username: str
    first_name: str
    last_name: str
    role: str | None
    staff: bool = False
    project_manager: bool = False


_USERS = (
    _DemoUser("alice", "Alice", "Anders", "developer", project_manager=True),
    _DemoUser("bob", "Bob", "Brandt", "developer"),
    _DemoUser("carol", "Carol", "Castillo", "designer", project_manager=True),
    _DemoUser("admin", "Ada", "Admin", None, staff=True),
)
# The group an administrator would make in the admin to let people create projects.
PROJECT_MANAGERS = "Project managers"
_ROLES = {
    "developer": "Writes and reviews code",
    "designer": "Owns the look and the user experience",
}


@dataclass(frozen=True)
class DemoSummary:
    """What ``seed_demo`` did. ``created`` is False when the demo data was already there."""

    created: bool
    logins: tuple[tuple[str, str], ...] = field(
        default=tuple((user.username, DEMO_PASSWORD) for user in _USERS)
    )
    projects: tuple[str, ...] = ("Mobile App", "Website Redesign")


def seed_demo() -> DemoSummary:
    """Create the demo team and projects, once.

    Idempotent: when ``alice`` exists the database is left as it is, so running
    the server with ``--demo`` again (or on a database a user already changed)
    creates nothing twice.
    """
    if User.objects.filter(username="alice").exists():
        return DemoSummary(created=False)
    with transaction.atomic():
        users = _create_users()
        _create_projects(users)
    return DemoSummary(created=True)


def _create_users() -> dict[str, User]:
    # Imported here, as the project services below are.
    from backend.users import services as users_services

    for name, description in _ROLES.items():
        if not Role.objects.filter(name=name).exists():  # an administrator may have made it
            users_services.role_create(name=name, description=description)
    # One hash for all four: the password hasher is deliberately slow, and the demo
    # accounts share their password, which the password validators would refuse.
    password_hash = make_password(DEMO_PASSWORD)
    managers = _project_managers_group()
    users: dict[str, User] = {}
    for spec in _USERS:
        user = users_services.user_create(
            username=spec.username,
            password_hash=password_hash,
            first_name=spec.first_name,
            last_name=spec.last_name,
            email=f"{spec.username}@example.com",
            role=spec.role,
            is_staff=spec.staff,
            is_superuser=spec.staff,
        )
        if spec.project_manager:
            user.groups.add(managers)
        users[spec.username] = user
    return users


def _project_managers_group() -> Group:
    # Django's own "add project" permission, which can_create_project looks for
    # (backend/projects/selectors.py); migrate created it.
    add_project = Permission.objects.get(content_type__app_label="projects", codename="add_project")
    group, _ = Group.objects.get_or_create(name=PROJECT_MANAGERS)
    group.permissions.add(add_project)
    return group


def _create_projects(users: dict[str, User]) -> None:
    # Imported here: the project services are a sibling app's public API, and
    # importing them lazily keeps ``backend.demo`` importable by the CLI early.
    from backend.projects import services as projects

    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    today = timezone.localdate()

    mobile = projects.project_create(
        actor=alice,
        title="Mobile App",
        description="The iOS and Android app for field teams.",
    )
    projects.membership_add(actor=alice, project=mobile, user=bob, role="member", capacity=80)
    projects.membership_add(actor=alice, project=mobile, user=carol, role="member", capacity=40)
    beta = projects.milestone_create(
        actor=alice,
        project=mobile,
        title="Public beta",
        due_date=today + dt.timedelta(days=21),
        progress=40,
    )
    store = projects.milestone_create(
        actor=alice, project=mobile, title="Store release", due_date=today + dt.timedelta(days=60)
    )
    login = projects.task_create(
        actor=alice, project=mobile, title="Sign-in screen", assignee=bob, milestone=beta
    )
    projects.task_update(actor=bob, task=login, status="in_progress")
    push = projects.task_create(
        actor=alice, project=mobile, title="Push notifications", assignee=alice, milestone=beta
    )
    projects.task_update(actor=alice, task=push, status="review")
    projects.task_create(
        actor=alice, project=mobile, title="App icon and splash screen", assignee=carol
    )
    projects.task_create(actor=alice, project=mobile, title="Store listing", milestone=store)

    website = projects.project_create(
        actor=carol,
        title="Website Redesign",
        description="New look and content structure for the public website.",
    )
    projects.membership_add(actor=carol, project=website, user=alice, role="manager", capacity=20)
    launch = projects.milestone_create(
        actor=carol,
        project=website,
        title="Launch",
        due_date=today + dt.timedelta(days=30),
        progress=65,
    )
    wireframes = projects.task_create(
        actor=carol, project=website, title="Wireframes", assignee=carol, milestone=launch
    )
    projects.task_update(actor=carol, task=wireframes, status="done")
    projects.task_create(
        actor=carol, project=website, title="Migrate blog posts", assignee=alice, milestone=launch
    )
