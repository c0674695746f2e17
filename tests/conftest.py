"""Fixtures shared by every test. Real-service fixtures (server subprocess, redis,
PostgreSQL) live in tests/fixtures/ and are registered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backend.users.models import User
from tests.fixtures.services import *  # noqa: F403
from tests.fixtures.tls import tls_ca  # noqa: F401 (a fixture for every test)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """Create a user: ``make_user("alice", role="developer", is_staff=True)``."""

    def make(username: str, password: str = "pw", **fields: Any) -> User:
        from backend.users.models import Role

        role_name = fields.pop("role", None)
        if role_name is not None:
            fields["role"], _ = Role.objects.get_or_create(name=role_name)
        return User.objects.create_user(username=username, password=password, **fields)

    return make
