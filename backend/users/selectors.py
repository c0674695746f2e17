"""Reads of users, their roles and their projects. Writes are in services.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend.projects.models import Membership
from backend.projects.selectors import can_create_project
from backend.sql import rows_where_in
from backend.users.models import Role, User


@dataclass(frozen=True)
class ProjectRole:
    id: int
    title: str
    role: str


@dataclass(frozen=True)
class UserProfile:
    """What ``GET /api/me`` shows: the account, its global role and its projects."""

    id: int
    username: str
    first_name: str
    last_name: str
    email: str
    is_staff: bool
    role: str | None
    projects: list[ProjectRole]
    can_create_projects: bool


def user_projects(*, user_id: int) -> list[ProjectRole]:
    """The projects a user belongs to, with their role in each, in project order."""
    memberships = (
        Membership.objects.filter(user_id=user_id).select_related("project").order_by("project_id")
    )
    return [ProjectRole(id=m.project_id, title=m.project.title, role=m.role) for m in memberships]


def user_profile(*, user: User) -> UserProfile:
    return UserProfile(
        id=user.pk,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        is_staff=user.is_staff,
        role=user.role.name if user.role is not None else None,
        projects=user_projects(user_id=user.pk),
        # So clients offer "New project" only to those the server will let.
        can_create_projects=can_create_project(user=user),
    )


def user_ids_by_username(*, usernames: Iterable[str]) -> dict[str, int]:
    """The ids of the named users that exist (active or not); absent names are left out."""
    wanted = set(usernames)
    if not wanted:
        return {}
    return {
        str(name): int(user_id)
        for name, user_id in rows_where_in(User, ("username", "id"), "username", list(wanted))
    }


def user_ids_missing(*, ids: Iterable[int]) -> list[int]:
    """The ids among ``ids`` that name no user, in the order given."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = {int(row[0]) for row in rows_where_in(User, ("id",), "id", wanted)}
    return [user_id for user_id in wanted if user_id not in found]


def role_names_missing(*, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that name no role, in the order given."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    found = {str(row[0]) for row in rows_where_in(Role, ("name",), "name", wanted)}
    return [name for name in wanted if name not in found]
