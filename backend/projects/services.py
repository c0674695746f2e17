"""Writes of projects, their team, milestones and tasks. Every function is
keyword-only and atomic, checks the actor's rights itself, and tells the team
through ``notification_create`` inside the same transaction, so a change and
its notifications are committed together or not at all.

Rights: only staff and users granted ``projects.add_project`` create projects
(``selectors.can_create_project``); only members see a project (anyone else gets
NotFound, so ids don't leak); owners and managers change the project, its team,
milestones and tasks; only an owner deletes a project, makes someone an owner or
changes an owner's membership; a project always keeps at least one owner; a plain
member may move a task assigned to them to another status, and may leave a project.

Recipients: the project's members at the moment of writing, never the actor.
A member who is removed is no longer a member when the notification is written,
so from that commit on they receive nothing of the project.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any, Final, Literal

from django.db import transaction

from backend.errors import Conflict, Forbidden, InvalidInput, NotFound
from backend.notifications import delivery
from backend.notifications.models import Priority
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create, user_publisher
from backend.projects.models import (
    Membership,
    MembershipRole,
    Milestone,
    Project,
    Task,
    TaskStatus,
)
from backend.projects.selectors import (
    ADDING_MEMBERS,
    MANAGING_ROLES,
    NO_RIGHT_TO_CREATE,
    can_create_project,
    manager_role_required,
    membership_role,
    project_member_ids,
)
from backend.text import single_line_text_problem
from backend.users.models import User

TITLE_MAX = 200
DESCRIPTION_MAX = 10_000


class _Unset(Enum):
    UNSET = "unset"


# "Leave as it is" for arguments where None has a meaning of its own (no assignee,
# no milestone, no due date).
UNSET: Final = _Unset.UNSET
Unset = Literal[_Unset.UNSET]


def project_url(project_id: int, *parts: object) -> str:
    """The deep-link path the desktop client opens, e.g. ``/projects/3/tasks/7``."""
    return "/".join(["", "projects", str(project_id), *(str(part) for part in parts)])


# --- validation -------------------------------------------------------------------------


def _clean_title(value: object) -> str:
    # Titles end up in one-line OS toasts and menus: one line, something visible in it.
    if not isinstance(value, str):
        raise InvalidInput("title must be text", code="invalid_title")
    title = value.strip()
    if not 0 < len(title) <= TITLE_MAX:
        raise InvalidInput(f"title must be 1 to {TITLE_MAX} characters", code="invalid_title")
    problem = single_line_text_problem(title)
    if problem is not None:
        raise InvalidInput(f"title {problem}", code="invalid_title")
    return title


def _clean_description(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("description must be text", code="invalid_description")
    if len(value) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"description must be at most {DESCRIPTION_MAX} characters",
            code="invalid_description",
        )
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at the database.
        raise InvalidInput(
            "description must not contain NUL characters", code="invalid_description"
        )
    return value


def _clean_percent(value: object, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"{name} must be a whole number from 0 to 100", code=f"invalid_{name}")
    return value


def _clean_role(value: object) -> str:
    if not isinstance(value, str) or value not in MembershipRole.values:
        raise InvalidInput(
            f"role must be one of {', '.join(MembershipRole.values)}", code="invalid_role"
        )
    return value


def _clean_status(value: object) -> str:
    if not isinstance(value, str) or value not in TaskStatus.values:
        raise InvalidInput(
            f"status must be one of {', '.join(TaskStatus.values)}", code="invalid_status"
        )
    return value


def _clean_due_date(value: object) -> date | None:
    # A datetime is a date too, but a due date has no time of day.
    if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
        raise InvalidInput("due_date must be a date", code="invalid_due_date")
    return value


# --- rights -----------------------------------------------------------------------------


def _role_of(*, actor: User, project_id: int) -> str:
    role = membership_role(user_id=actor.pk, project_id=project_id)
    if role is None:
        raise NotFound("No such project.")
    return role


def _require_manager(*, actor: User, project_id: int, doing: str) -> str:
    return manager_role_required(user=actor, project_id=project_id, doing=doing)


def _lock_project(project_id: int) -> Project:
    """The project's row, locked to commit: membership changes queue on it, so two
    owners cannot demote each other at once and leave the project ownerless."""
    project = Project.objects.select_for_update().filter(pk=project_id).first()
    if project is None:
        raise NotFound("No such project.")
    return project


def _owner_count(*, project_id: int) -> int:
    return Membership.objects.filter(project_id=project_id, role=MembershipRole.OWNER).count()


# --- notifications ----------------------------------------------------------------------


def _name(user: User) -> str:
    return user.get_full_name() or user.username


def _role_label(role: str) -> str:
    return str(MembershipRole(role).label).lower()


def _status_label(status: str) -> str:
    return str(TaskStatus(status).label)


def _notify(
    *,
    event_type: str,
    actor: User,
    project: Project,
    title: str,
    message: str,
    url: str,
    data: dict[str, Any],
    audience: Audience | None = None,
    priority: str = Priority.NORMAL,
) -> None:
    notification_create(
        audience=audience or Audience(projects=(project.pk,), exclude=(actor.pk,)),
        title=title,
        message=message,
        event_type=event_type,
        priority=priority,
        url=url,
        actor=actor,
        project_id=project.pk,
        project_title=project.title,
        data=data,
        publisher=user_publisher(actor),
    )


def _ring_membership_removed(*, user_id: int, project_id: int) -> None:
    # Live presence subscriptions of that user to this project are dropped after commit.
    delivery.ring_on_commit(
        {"kind": "membership_removed", "user_id": user_id, "project_id": project_id}
    )


# --- projects ---------------------------------------------------------------------------


def project_create(*, actor: User, title: str, description: str = "") -> Project:
    """Create a project with ``actor`` as its owner (staff, or granted the right).

    Raises:
        Forbidden: ``actor`` may not create projects (``can_create_project``).
        InvalidInput: the title or description is not acceptable.
    """
    if not can_create_project(user=actor):
        raise Forbidden(NO_RIGHT_TO_CREATE)
    title = _clean_title(title)
    description = _clean_description(description)
    with transaction.atomic():
        project = Project.objects.create(title=title, description=description, created_by=actor)
        Membership.objects.create(project=project, user=actor, role=MembershipRole.OWNER)
        _notify(
            event_type="project_created",
            actor=actor,
            project=project,
            title="New project",
            message=f"{_name(actor)} created {project.title}",
            url=project_url(project.pk),
            data={},
        )
    return project


def project_update(
    *,
    actor: User,
    project: Project,
    title: str | None = None,
    description: str | None = None,
) -> Project:
    """Change a project's title and/or description (owners and managers).

    Args:
        title: The new title; None keeps it.
        description: The new description; None keeps it.

    Raises:
        InvalidInput: a value is not acceptable.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    new_title = None if title is None else _clean_title(title)
    new_description = None if description is None else _clean_description(description)
    with transaction.atomic():
        current = _lock_project(project.pk)
        _require_manager(actor=actor, project_id=current.pk, doing="change the project")
        old_title = current.title
        changed: list[str] = []
        if new_title is not None and new_title != current.title:
            current.title = new_title
            changed.append("title")
        if new_description is not None and new_description != current.description:
            current.description = new_description
            changed.append("description")
        if not changed:
            return current
        current.save(update_fields=[*changed, "updated_at"])
        if changed == ["description"]:
            summary = f"{_name(actor)} updated the description of {current.title}"
        else:
            summary = f"{_name(actor)} renamed “{old_title}” to “{current.title}”"
            if "description" in changed:
                summary += " and updated its description"
        _notify(
            event_type="project_updated",
            actor=actor,
            project=current,
            title="Project renamed" if "title" in changed else "Project updated",
            message=summary,
            url=project_url(current.pk),
            data={"fields": changed},
        )
    return current


def project_delete(*, actor: User, project: Project) -> None:
    """Delete a project with its team, milestones and tasks (owners only).

    Every member but the actor is told (high priority), and every member's live
    presence subscriptions to the project are dropped after commit.

    Raises:
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    with transaction.atomic():
        current = _lock_project(project.pk)
        if _role_of(actor=actor, project_id=current.pk) != MembershipRole.OWNER:
            raise Forbidden("Only an owner can delete the project.")
        # Resolved before the delete: afterwards there are no memberships to name them by.
        member_ids = project_member_ids(project_id=current.pk)
        _notify(
            event_type="project_deleted",
            actor=actor,
            project=current,
            title="Project deleted",
            message=f"{_name(actor)} deleted {current.title}",
            url="/projects",
            data={},
            audience=Audience(users=tuple(member_ids), exclude=(actor.pk,)),
            priority=Priority.HIGH,
        )
        project_id = current.pk
        current.delete()
        for user_id in member_ids:
            _ring_membership_removed(user_id=user_id, project_id=project_id)


# --- team -------------------------------------------------------------------------------


def membership_add(
    *,
    actor: User,
    project: Project,
    user: User,
    role: str = MembershipRole.MEMBER,
    capacity: int = 100,
) -> Membership:
    """Add ``user`` to the team (owners and managers; only an owner adds an owner).

    Args:
        role: A MembershipRole value.
        capacity: Share of the user's time given to the project, 0 to 100 percent.

    Raises:
        InvalidInput: a bad role or capacity, or ``user`` is not an active user.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
        Conflict: ``user`` is already a member.
    """
    role = _clean_role(role)
    capacity = _clean_percent(capacity, name="capacity")
    if not isinstance(user, User) or user.pk is None or not user.is_active:
        raise InvalidInput("Only an active user can join a project.", code="invalid_user")
    with transaction.atomic():
        current = _lock_project(project.pk)
        actor_role = _require_manager(actor=actor, project_id=current.pk, doing=ADDING_MEMBERS)
        if role == MembershipRole.OWNER and actor_role != MembershipRole.OWNER:
            raise Forbidden("Only an owner can make someone an owner.")
        if Membership.objects.filter(project_id=current.pk, user_id=user.pk).exists():
            raise Conflict(f"{user.username} is already in this project.", code="already_member")
        membership = Membership.objects.create(
            project=current, user=user, role=role, capacity=capacity
        )
        _notify(
            event_type="team_member_added",
            actor=actor,
            project=current,
            title="New team member",
            message=(
                f"{_name(actor)} added {_name(user)} to {current.title} as {_role_label(role)}"
            ),
            url=project_url(current.pk, "members"),
            data={"user_id": user.pk, "membership_id": membership.pk, "role": role},
        )
    return membership


def _locked_membership(membership: Membership) -> tuple[Project, Membership]:
    project = _lock_project(membership.project_id)
    current = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=membership.pk, project_id=project.pk)
        .first()
    )
    if current is None:
        raise NotFound("No such member in this project.")
    return project, current


def membership_update(
    *,
    actor: User,
    membership: Membership,
    role: str | None = None,
    capacity: int | None = None,
) -> Membership:
    """Change a member's role and/or capacity (owners and managers; an owner's
    membership, or a promotion to owner, needs an owner).

    Args:
        role: The new role; None keeps it.
        capacity: The new capacity; None keeps it.

    Raises:
        InvalidInput: a bad role or capacity.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
        Conflict: the change would leave the project without an owner.
    """
    new_role = None if role is None else _clean_role(role)
    new_capacity = None if capacity is None else _clean_percent(capacity, name="capacity")
    with transaction.atomic():
        project, current = _locked_membership(membership)
        actor_role = _require_manager(actor=actor, project_id=project.pk, doing="change the team")
        changed: list[str] = []
        old_role = current.role
        if new_role is not None and new_role != current.role:
            changed.append("role")
        if new_capacity is not None and new_capacity != current.capacity:
            changed.append("capacity")
        if not changed:
            return current
        if actor_role != MembershipRole.OWNER:
            if "role" in changed and new_role == MembershipRole.OWNER:
                raise Forbidden("Only an owner can make someone an owner.")
            if current.role == MembershipRole.OWNER:
                raise Forbidden("Only an owner can change an owner's membership.")
        if (
            "role" in changed
            and old_role == MembershipRole.OWNER
            and _owner_count(project_id=project.pk) <= 1
        ):
            raise Conflict(
                "A project needs an owner: make someone else an owner first.", code="last_owner"
            )
        if new_role is not None:
            current.role = new_role
        if new_capacity is not None:
            current.capacity = new_capacity
        current.save(update_fields=changed)
        member = _name(current.user)
        parts: list[str] = []
        if "role" in changed:
            parts.append(f"made {member} {_role_label(current.role)}")
        if "capacity" in changed:
            parts.append(f"set {member}'s capacity to {current.capacity}%")
        _notify(
            event_type="team_member_updated",
            actor=actor,
            project=project,
            title="Team member updated",
            message=f"{_name(actor)} {' and '.join(parts)} in {project.title}",
            url=project_url(project.pk, "members"),
            data={
                "user_id": current.user_id,
                "membership_id": current.pk,
                "role": current.role,
                "old_role": old_role,
                "capacity": current.capacity,
                "fields": changed,
            },
        )
    return current


def membership_remove(*, actor: User, membership: Membership) -> None:
    """Remove someone from the team (owners and managers; an owner only by an owner),
    or leave it oneself.

    The removed member's tasks in the project are unassigned, since an assignee
    must be a member; the rest of the team is told, the removed member is not,
    and their live presence subscriptions to the project are dropped after commit.

    Raises:
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
        Conflict: the member is the project's last owner.
    """
    with transaction.atomic():
        project, current = _locked_membership(membership)
        leaving = current.user_id == actor.pk
        if leaving:
            _role_of(actor=actor, project_id=project.pk)
        else:
            actor_role = _require_manager(
                actor=actor, project_id=project.pk, doing="remove people from the team"
            )
            if current.role == MembershipRole.OWNER and actor_role != MembershipRole.OWNER:
                raise Forbidden("Only an owner can remove an owner.")
        if current.role == MembershipRole.OWNER and _owner_count(project_id=project.pk) <= 1:
            raise Conflict(
                "A project needs an owner: make someone else an owner first.", code="last_owner"
            )
        removed = current.user
        unassigned = list(
            Task.objects.filter(project_id=project.pk, assignee_id=removed.pk)
            .order_by("id")
            .values_list("id", flat=True)
        )
        Task.objects.filter(pk__in=unassigned).update(assignee=None)
        current.delete()
        # Written after the delete, so the removed member is not in the audience;
        # excluded by id as well for a reader who skims past the ordering.
        _notify(
            event_type="team_member_removed",
            actor=actor,
            project=project,
            title="Team member left" if leaving else "Team member removed",
            message=(
                f"{_name(removed)} left {project.title}"
                if leaving
                else f"{_name(actor)} removed {_name(removed)} from {project.title}"
            ),
            url=project_url(project.pk, "members"),
            data={"user_id": removed.pk, "unassigned_task_ids": unassigned},
            audience=Audience(projects=(project.pk,), exclude=(actor.pk, removed.pk)),
        )
        _ring_membership_removed(user_id=removed.pk, project_id=project.pk)


# --- milestones -------------------------------------------------------------------------


def _due_text(due: date | None) -> str:
    return f" (due {due.isoformat()})" if due is not None else ""


def milestone_create(
    *,
    actor: User,
    project: Project,
    title: str,
    due_date: date | None = None,
    progress: int = 0,
) -> Milestone:
    """Add a milestone to the project (owners and managers).

    Raises:
        InvalidInput: a bad title, due date or progress.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    title = _clean_title(title)
    due_date = _clean_due_date(due_date)
    progress = _clean_percent(progress, name="progress")
    with transaction.atomic():
        _require_manager(actor=actor, project_id=project.pk, doing="add milestones")
        milestone = Milestone.objects.create(
            project=project, title=title, due_date=due_date, progress=progress
        )
        _notify(
            event_type="milestone_created",
            actor=actor,
            project=project,
            title="New milestone",
            message=(
                f"{_name(actor)} added the milestone “{title}”{_due_text(due_date)}"
                f" to {project.title}"
            ),
            url=project_url(project.pk, "milestones", milestone.pk),
            data={"milestone_id": milestone.pk},
        )
    return milestone


def _locked_milestone(milestone: Milestone) -> Milestone:
    current = (
        Milestone.objects.select_for_update(of=("self",))
        .select_related("project")
        .filter(pk=milestone.pk)
        .first()
    )
    if current is None:
        raise NotFound("No such milestone in this project.")
    return current


def milestone_update(
    *,
    actor: User,
    milestone: Milestone,
    title: str | None = None,
    due_date: date | Unset | None = UNSET,
    progress: int | None = None,
) -> Milestone:
    """Change a milestone (owners and managers).

    Args:
        title: The new title; None keeps it.
        due_date: The new due date; None clears it, leaving it out keeps it.
        progress: The new progress in percent; None keeps it.

    Raises:
        InvalidInput: a bad title, due date or progress.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    new_title = None if title is None else _clean_title(title)
    new_due = due_date if due_date is UNSET else _clean_due_date(due_date)
    new_progress = None if progress is None else _clean_percent(progress, name="progress")
    with transaction.atomic():
        current = _locked_milestone(milestone)
        project = current.project
        _require_manager(actor=actor, project_id=project.pk, doing="change milestones")
        changes: list[str] = []
        if new_title is not None and new_title != current.title:
            changes.append(f"renamed “{current.title}” to “{new_title}”")
            current.title = new_title
        if not isinstance(new_due, _Unset) and new_due != current.due_date:
            changes.append(
                f"moved “{current.title}” to {new_due.isoformat()}"
                if new_due is not None
                else f"removed the due date of “{current.title}”"
            )
            current.due_date = new_due
        if new_progress is not None and new_progress != current.progress:
            changes.append(f"set “{current.title}” to {new_progress}% (was {current.progress}%)")
            current.progress = new_progress
        if not changes:
            return current
        current.save()
        _notify(
            event_type="milestone_updated",
            actor=actor,
            project=project,
            title="Milestone updated",
            message=f"{_name(actor)} {', '.join(changes)} in {project.title}",
            url=project_url(project.pk, "milestones", current.pk),
            data={
                "milestone_id": current.pk,
                "progress": current.progress,
                "due_date": current.due_date.isoformat() if current.due_date else None,
            },
        )
    return current


def milestone_delete(*, actor: User, milestone: Milestone) -> None:
    """Delete a milestone (owners and managers); its tasks stay, without a milestone.

    Raises:
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    with transaction.atomic():
        current = _locked_milestone(milestone)
        project = current.project
        _require_manager(actor=actor, project_id=project.pk, doing="delete milestones")
        milestone_id, title = current.pk, current.title
        current.delete()
        _notify(
            event_type="milestone_deleted",
            actor=actor,
            project=project,
            title="Milestone deleted",
            message=f"{_name(actor)} deleted the milestone “{title}” from {project.title}",
            url=project_url(project.pk, "milestones"),
            data={"milestone_id": milestone_id},
        )


# --- tasks ------------------------------------------------------------------------------


def _check_assignee(*, project_id: int, assignee: User | None) -> None:
    if assignee is None:
        return
    if (
        not isinstance(assignee, User)
        or not Membership.objects.filter(project_id=project_id, user_id=assignee.pk).exists()
    ):
        raise InvalidInput("The assignee must be a member of the project.", code="invalid_assignee")


def _check_milestone(*, project_id: int, milestone: Milestone | None) -> None:
    if milestone is None:
        return
    if (
        not isinstance(milestone, Milestone)
        or not Milestone.objects.filter(pk=milestone.pk, project_id=project_id).exists()
    ):
        raise InvalidInput(
            "The milestone must belong to the same project.", code="invalid_milestone"
        )


def _team_except(actor: User, project: Project, assignee: User | None) -> Audience:
    """The team minus the actor and minus a new assignee, who hears task_assigned
    instead: one toast for one change."""
    excluded = (actor.pk,) if assignee is None else (actor.pk, assignee.pk)
    return Audience(projects=(project.pk,), exclude=excluded)


def _notify_assigned(*, actor: User, project: Project, task: Task, assignee: User) -> None:
    if assignee.pk == actor.pk:
        return
    _notify(
        event_type="task_assigned",
        actor=actor,
        project=project,
        title="Task assigned to you",
        message=f"{_name(actor)} assigned “{task.title}” to you in {project.title}",
        url=project_url(project.pk, "tasks", task.pk),
        data={"task_id": task.pk},
        audience=Audience(users=(assignee.pk,), exclude=(actor.pk,)),
        priority=Priority.HIGH,
    )


def task_create(
    *,
    actor: User,
    project: Project,
    title: str,
    status: str = TaskStatus.TODO,
    assignee: User | None = None,
    milestone: Milestone | None = None,
) -> Task:
    """Add a task (owners and managers).

    The team hears task_created; the assignee, unless it is the actor, hears
    task_assigned instead.

    Raises:
        InvalidInput: a bad title or status, an assignee who is not a member, or a
            milestone of another project.
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    title = _clean_title(title)
    status = _clean_status(status)
    with transaction.atomic():
        _require_manager(actor=actor, project_id=project.pk, doing="add tasks")
        _check_assignee(project_id=project.pk, assignee=assignee)
        _check_milestone(project_id=project.pk, milestone=milestone)
        task = Task.objects.create(
            project=project, title=title, status=status, assignee=assignee, milestone=milestone
        )
        _notify(
            event_type="task_created",
            actor=actor,
            project=project,
            title="New task",
            message=f"{_name(actor)} added “{title}” to {project.title}",
            url=project_url(project.pk, "tasks", task.pk),
            data={"task_id": task.pk, "status": status},
            audience=_team_except(actor, project, assignee),
        )
        if assignee is not None:
            _notify_assigned(actor=actor, project=project, task=task, assignee=assignee)
    return task


def task_update(
    *,
    actor: User,
    task: Task,
    title: str | None = None,
    status: str | None = None,
    assignee: User | Unset | None = UNSET,
    milestone: Milestone | Unset | None = UNSET,
) -> Task:
    """Change a task. Owners and managers change anything; a plain member may only
    move a task assigned to them to another status.

    Notifies task_status_changed (the team) for a new status, task_updated (the
    team) for a new title, milestone or assignee, and task_assigned (the new
    assignee only, unless it is the actor; they are left out of task_updated).

    Args:
        title: The new title; None keeps it.
        status: The new TaskStatus value; None keeps it.
        assignee: The new assignee, a member; None unassigns, leaving it out keeps it.
        milestone: A milestone of the same project; None detaches, leaving it out keeps it.

    Raises:
        InvalidInput: a bad title or status, an assignee who is not a member, or a
            milestone of another project.
        NotFound: ``actor`` is not a member of the project, or the task is gone.
        Forbidden: ``actor`` is a member without the right to make this change.
    """
    new_title = None if title is None else _clean_title(title)
    new_status = None if status is None else _clean_status(status)
    with transaction.atomic():
        current = (
            Task.objects.select_for_update(of=("self",))
            .select_related("project", "assignee")
            .filter(pk=task.pk)
            .first()
        )
        if current is None:
            raise NotFound("No such task in this project.")
        project = current.project
        role = _role_of(actor=actor, project_id=project.pk)
        changed: list[str] = []
        if new_title is not None and new_title != current.title:
            changed.append("title")
        if new_status is not None and new_status != current.status:
            changed.append("status")
        if not isinstance(assignee, _Unset) and (
            (assignee.pk if assignee is not None else None) != current.assignee_id
        ):
            changed.append("assignee")
        if not isinstance(milestone, _Unset) and (
            (milestone.pk if milestone is not None else None) != current.milestone_id
        ):
            changed.append("milestone")
        if not changed:
            return current
        if role not in MANAGING_ROLES and (
            changed != ["status"] or current.assignee_id != actor.pk
        ):
            raise Forbidden(
                "Only the project's owners and managers can change this task; "
                "you can move tasks assigned to you."
            )
        if "assignee" in changed and not isinstance(assignee, _Unset):
            _check_assignee(project_id=project.pk, assignee=assignee)
        if "milestone" in changed and not isinstance(milestone, _Unset):
            _check_milestone(project_id=project.pk, milestone=milestone)

        old_title, old_status = current.title, current.status
        if new_title is not None:
            current.title = new_title
        if new_status is not None:
            current.status = new_status
        if not isinstance(assignee, _Unset):
            current.assignee = assignee
        if not isinstance(milestone, _Unset):
            current.milestone = milestone
        current.save(update_fields=[*changed, "updated_at"])

        url = project_url(project.pk, "tasks", current.pk)
        if "status" in changed:
            _notify(
                event_type="task_status_changed",
                actor=actor,
                project=project,
                title=f"Task moved to {_status_label(current.status)}",
                message=(
                    f"{_name(actor)} moved “{current.title}” from {_status_label(old_status)}"
                    f" to {_status_label(current.status)} in {project.title}"
                ),
                url=url,
                data={
                    "old_status": old_status,
                    "new_status": current.status,
                    "task_id": current.pk,
                },
            )
        other = [field for field in changed if field != "status"]
        if other:
            parts: list[str] = []
            if "title" in other:
                parts.append(f"renamed “{old_title}” to “{current.title}”")
            if "assignee" in other:
                parts.append(
                    f"assigned “{current.title}” to {_name(current.assignee)}"
                    if current.assignee is not None
                    else f"unassigned “{current.title}”"
                )
            if "milestone" in other:
                parts.append(
                    f"moved “{current.title}” to the milestone “{current.milestone.title}”"
                    if current.milestone is not None
                    else f"took “{current.title}” out of its milestone"
                )
            _notify(
                event_type="task_updated",
                actor=actor,
                project=project,
                title="Task updated",
                message=f"{_name(actor)} {', '.join(parts)} in {project.title}",
                url=url,
                data={
                    "task_id": current.pk,
                    "fields": other,
                    "assignee_id": current.assignee_id,
                    "milestone_id": current.milestone_id,
                },
                audience=_team_except(
                    actor, project, current.assignee if "assignee" in changed else None
                ),
            )
        if "assignee" in changed and current.assignee is not None:
            _notify_assigned(actor=actor, project=project, task=current, assignee=current.assignee)
    return current


def task_delete(*, actor: User, task: Task) -> None:
    """Delete a task (owners and managers).

    Raises:
        NotFound: ``actor`` is not a member of the project.
        Forbidden: ``actor`` is a member without the right to do this.
    """
    with transaction.atomic():
        current = (
            Task.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(pk=task.pk)
            .first()
        )
        if current is None:
            raise NotFound("No such task in this project.")
        project = current.project
        _require_manager(actor=actor, project_id=project.pk, doing="delete tasks")
        task_id, title = current.pk, current.title
        current.delete()
        _notify(
            event_type="task_deleted",
            actor=actor,
            project=project,
            title="Task deleted",
            message=f"{_name(actor)} deleted “{title}” from {project.title}",
            url=project_url(project.pk, "tasks"),
            data={"task_id": task_id},
        )
