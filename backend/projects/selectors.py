"""Reads of projects, their team, milestones and tasks. Writes are in services.py.

Every read is scoped to a user: only members see a project or anything in it,
and anything else is NotFound, exactly like an id that does not exist, so ids
of other teams' projects don't leak.

The two rules of who may bring people together live here, so the services, the
REST views and ``GET /api/me`` share them: creating a project is a right IT
grants (``can_create_project``), and only a project's owners and managers add
people to it (``manager_role_required``). Since owners appoint managers, every
team traces back to someone staff trusted.
"""

from __future__ import annotations

from typing import Final

from django.db.models import OuterRef, QuerySet, Subquery

from backend.errors import Forbidden, InvalidInput, NotFound
from backend.numbers import positive_id
from backend.projects.models import Membership, MembershipRole, Milestone, Project, Task
from backend.users.models import User

MANAGING_ROLES: Final = frozenset({MembershipRole.OWNER.value, MembershipRole.MANAGER.value})
# Django's own "add project" permission: IT grants it in the admin to a user or to
# a group (say "Project managers"), with no new permission model to learn.
CREATE_PROJECT_PERMISSION: Final = "projects.add_project"
NO_RIGHT_TO_CREATE: Final = "Ask an administrator for the right to create projects."
ADDING_MEMBERS: Final = "add people to the team"


def _member_projects(*, user: User) -> QuerySet[Project]:
    # The caller's own role rides along as ``my_role`` so a list needs one query.
    role = Membership.objects.filter(project=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    return Project.objects.filter(memberships__user_id=user.pk).annotate(my_role=Subquery(role))


def project_list(*, user: User) -> QuerySet[Project]:
    """The projects ``user`` is a member of, each annotated with ``my_role``."""
    return _member_projects(user=user).order_by("id")


def project_get(*, user: User, project_id: object) -> Project:
    """One of ``user``'s projects (annotated with ``my_role``); NotFound otherwise."""
    pk = positive_id(project_id)
    project = None if pk is None else _member_projects(user=user).filter(pk=pk).first()
    if project is None:
        raise NotFound("No such project.")
    return project


def membership_role(*, user_id: int, project_id: int) -> str | None:
    """The user's role in the project, or None for a non-member."""
    return (
        Membership.objects.filter(user_id=user_id, project_id=project_id)
        .values_list("role", flat=True)
        .first()
    )


def can_create_project(*, user: User) -> bool:
    """Whether ``user`` may create projects: staff, or granted ``projects.add_project``.

    Whoever creates a project owns it and may add any active user to it, and
    members see each other's presence and get each other's notifications, so
    this right is not everyone's (anyone could otherwise pull anyone into a
    project of their own and watch them or send them tasks).
    """
    # has_perm is False for an inactive account and True for a superuser.
    return user.is_active and (user.is_staff or user.has_perm(CREATE_PROJECT_PERMISSION))


def manager_role_required(*, user: User, project_id: int, doing: str) -> str:
    """The role of ``user`` in the project if it is owner or manager.

    Args:
        doing: What was attempted, for the message, e.g. "add tasks".

    Raises:
        NotFound: ``user`` is not a member (the project stays invisible).
        Forbidden: ``user`` is a plain member.
    """
    role = membership_role(user_id=user.pk, project_id=project_id)
    if role is None:
        raise NotFound("No such project.")
    if role not in MANAGING_ROLES:
        raise Forbidden(f"Only the project's owners and managers can {doing}.")
    return role


def project_member_ids(*, project_id: int) -> list[int]:
    """Ids of every member of the project, sorted."""
    return list(
        Membership.objects.filter(project_id=project_id)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def member_list(*, user: User, project_id: object) -> QuerySet[Membership]:
    """The team of one of ``user``'s projects; NotFound for anyone else."""
    project = project_get(user=user, project_id=project_id)
    return Membership.objects.filter(project_id=project.pk).select_related("user").order_by("id")


def membership_get(*, user: User, project_id: object, membership_id: object) -> Membership:
    """One membership of one of ``user``'s projects; NotFound otherwise."""
    project = project_get(user=user, project_id=project_id)
    pk = positive_id(membership_id)
    membership = (
        None
        if pk is None
        else Membership.objects.filter(pk=pk, project_id=project.pk)
        .select_related("user", "project")
        .first()
    )
    if membership is None:
        raise NotFound("No such member in this project.")
    return membership


def milestone_list(*, user: User, project_id: object) -> QuerySet[Milestone]:
    project = project_get(user=user, project_id=project_id)
    return Milestone.objects.filter(project_id=project.pk).order_by("due_date", "id")


def milestone_get(*, user: User, project_id: object, milestone_id: object) -> Milestone:
    project = project_get(user=user, project_id=project_id)
    pk = positive_id(milestone_id)
    milestone = (
        None
        if pk is None
        else Milestone.objects.filter(pk=pk, project_id=project.pk)
        .select_related("project")
        .first()
    )
    if milestone is None:
        raise NotFound("No such milestone in this project.")
    return milestone


def task_list(*, user: User, project_id: object) -> QuerySet[Task]:
    project = project_get(user=user, project_id=project_id)
    return Task.objects.filter(project_id=project.pk).select_related("assignee").order_by("id")


def task_get(*, user: User, project_id: object, task_id: object) -> Task:
    project = project_get(user=user, project_id=project_id)
    pk = positive_id(task_id)
    task = (
        None
        if pk is None
        else Task.objects.filter(pk=pk, project_id=project.pk)
        .select_related("project", "assignee")
        .first()
    )
    if task is None:
        raise NotFound("No such task in this project.")
    return task


def member_user_get(*, project_id: int, user_id: int) -> User:
    """A member of the project as a User, for assigning tasks to.

    Unknown users and non-members get the same answer, so the API doesn't tell
    which user ids exist.
    """
    user = User.objects.filter(pk=user_id, memberships__project_id=project_id).first()
    if user is None:
        raise InvalidInput("The assignee must be a member of the project.", code="invalid_assignee")
    return user


def project_milestone_get(*, project_id: int, milestone_id: int) -> Milestone:
    """A milestone of the project, for attaching a task to; InvalidInput otherwise."""
    milestone = Milestone.objects.filter(pk=milestone_id, project_id=project_id).first()
    if milestone is None:
        raise InvalidInput(
            "The milestone must belong to the same project.", code="invalid_milestone"
        )
    return milestone


def user_to_add_get(
    *,
    actor: User,
    project_id: int,
    user_id: int | None = None,
    username: str | None = None,
) -> User:
    """The active user named by id or username, for ``actor`` to add to the project.

    The actor's right comes first: someone who may not add people gets the same
    Forbidden whatever the id, and only then is the user looked up, with one
    answer for an unknown and an inactive user. Neither says who exists.

    Raises:
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` may not add people to the project.
        InvalidInput: no active user has that id or username.
    """
    manager_role_required(user=actor, project_id=project_id, doing=ADDING_MEMBERS)
    users = User.objects.filter(is_active=True)
    if user_id is not None:
        user = users.filter(pk=user_id).first()
    elif username is not None:
        user = users.filter(username=username).first()
    else:
        user = None
    if user is None:
        raise InvalidInput("There is no active user with that id or username.", code="unknown_user")
    return user
