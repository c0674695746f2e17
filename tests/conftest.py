"""Fixtures shared by every test. Real-service fixtures (server subprocess, redis,
PostgreSQL) live in tests/fixtures/ and are registered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backend.users.models import User
from tests.fixtures.services import *  # noqa: F403
from tests.fixtures.tls import tls_ca  # noqa: F401 (a fixture for every test)


def grant(user: User, *permissions: str) -> None:
    """Give ``user`` Django permissions named "app_label.codename", as IT would in the
    admin, e.g. ``grant(bob, "projects.add_project")`` to let bob create projects."""
    from django.contrib.auth.models import Permission

    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    # has_perm caches what it found on the instance; forget it so the grant shows.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """Create a user: ``make_user("alice", role="developer", is_staff=True)``;
    ``can_create_projects=True`` grants ``projects.add_project``."""

    def make(
        username: str, password: str = "pw", *, can_create_projects: bool = False, **fields: Any
    ) -> User:
        from backend.users.models import Role

        role_name = fields.pop("role", None)
        if role_name is not None:
            fields["role"], _ = Role.objects.get_or_create(name=role_name)
        user = User.objects.create_user(username=username, password=password, **fields)
        if can_create_projects:
            grant(user, "projects.add_project")
        return user

    return make


@pytest.fixture(autouse=True, scope="session")
def _inbox_records_are_ours() -> None:
    """The test process is the only one that leaves Inbox rows pending in its test
    database (servers under test have files of their own), as the server is in its
    own: readers rely on the in-memory flag, and the statement counts pinned by tests
    are the server's (backend/notifications/inbox_log.py)."""
    from backend.notifications import inbox_log

    inbox_log.trust_own_records()
