"""The project services: who is told of each change, who may change what, and
what is refused. Recipients are read from the Inbox rows, the record itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from backend.errors import Conflict, Forbidden, InvalidInput, NotFound
from backend.notifications.models import Inbox, Message
from backend.projects import services
from backend.projects.models import Membership, Milestone, Project, Task
from backend.projects.services import (
    membership_add,
    membership_remove,
    membership_update,
    milestone_create,
    milestone_delete,
    milestone_update,
    project_create,
    project_delete,
    project_update,
    project_url,
    task_create,
    task_delete,
    task_update,
)
from backend.users.models import User

from .conftest import News, Team, snapshot

pytestmark = pytest.mark.django_db


def test_project_url_builds_deep_links() -> None:
    assert project_url(3) == "/projects/3"
    assert project_url(3, "tasks", 7) == "/projects/3/tasks/7"


# --- projects ---------------------------------------------------------------------------


def test_project_create_makes_the_actor_owner(make_user: Callable[..., User]) -> None:
    dana = make_user("dana", can_create_projects=True)
    before = Message.objects.count()
    project = project_create(actor=dana, title="  Website  ", description="New look")
    assert project.title == "Website"
    assert project.created_by == dana
    membership = Membership.objects.get(project=project)
    assert (membership.user, membership.role, membership.capacity) == (dana, "owner", 100)
    message = Message.objects.get(id__gt=0, event_type="project_created")
    assert Message.objects.count() == before + 1
    # The only member is the actor, who is never told of their own action.
    assert not Inbox.objects.filter(message=message).exists()
    assert message.project_id == project.pk
    assert message.url == f"/projects/{project.pk}"


def test_project_update_tells_the_team_but_not_the_actor(team: Team, news: News) -> None:
    project = project_update(actor=team.mia, project=team.project, title="Mobile")
    assert project.title == "Mobile"
    assert news.events() == [("project_updated", ["alice", "bob", "carol"])]
    message = news.one("project_updated")
    assert message.title == "Project renamed"
    assert message.message == "mia renamed “Mobile App” to “Mobile”"
    assert (message.project_id, message.project_title) == (team.project.pk, "Mobile")
    assert message.url == f"/projects/{team.project.pk}"
    assert message.priority == "normal"
    assert message.actor == team.mia
    assert message.data == {"fields": ["title"]}


def test_project_update_of_the_description_only(team: Team, news: News) -> None:
    project_update(actor=team.alice, project=team.project, description="For the field")
    message = news.one("project_updated")
    assert message.title == "Project updated"
    assert message.message == "alice updated the description of Mobile App"
    assert Project.objects.get(pk=team.project.pk).description == "For the field"


def test_an_update_that_changes_nothing_writes_nothing(team: Team) -> None:
    project_update(actor=team.alice, project=team.project, title="Mobile App")
    project_update(actor=team.alice, project=team.project)
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    before = snapshot()
    milestone_update(actor=team.alice, milestone=milestone, title="Beta", progress=0)
    task_update(actor=team.alice, task=task, title="Fix login", status="todo", assignee=None)
    membership_update(actor=team.alice, membership=team.membership(team.bob), role="member")
    assert snapshot() == before


def test_uses_the_full_name_when_there_is_one(team: Team, news: News) -> None:
    team.mia.first_name, team.mia.last_name = "Mia", "Wong"
    team.mia.save()
    project_update(actor=team.mia, project=team.project, title="Mobile")
    assert news.one("project_updated").message == "Mia Wong renamed “Mobile App” to “Mobile”"


@pytest.mark.parametrize("who", ["mia", "bob"])
def test_only_an_owner_deletes_a_project(team: Team, who: str) -> None:
    before = snapshot()
    with pytest.raises(Forbidden):
        project_delete(actor=getattr(team, who), project=team.project)
    assert snapshot() == before


def test_members_may_not_change_the_project(team: Team) -> None:
    before = snapshot()
    with pytest.raises(Forbidden):
        project_update(actor=team.bob, project=team.project, title="Mine")
    assert snapshot() == before


def test_outsiders_get_not_found_never_forbidden(team: Team) -> None:
    task = Task.objects.get(project=team.other)
    milestone = Milestone.objects.get(project=team.other)
    owner_membership = Membership.objects.get(project=team.other)
    before = snapshot()
    calls: list[Callable[[], Any]] = [
        lambda: project_update(actor=team.alice, project=team.other, title="Mine"),
        lambda: project_delete(actor=team.alice, project=team.other),
        lambda: membership_add(actor=team.alice, project=team.other, user=team.bob),
        lambda: membership_update(actor=team.alice, membership=owner_membership, capacity=1),
        lambda: membership_remove(actor=team.alice, membership=owner_membership),
        lambda: milestone_create(actor=team.alice, project=team.other, title="M"),
        lambda: milestone_update(actor=team.alice, milestone=milestone, title="M"),
        lambda: milestone_delete(actor=team.alice, milestone=milestone),
        lambda: task_create(actor=team.alice, project=team.other, title="T"),
        lambda: task_update(actor=team.alice, task=task, status="done"),
        lambda: task_delete(actor=team.alice, task=task),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert snapshot() == before


def test_project_delete_tells_every_member_with_high_priority(
    team: Team,
    news: News,
    rings: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    project_id = team.project.pk
    with django_capture_on_commit_callbacks(execute=True):
        project_delete(actor=team.alice, project=team.project)
    assert not Project.objects.filter(pk=project_id).exists()
    assert not Membership.objects.filter(project_id=project_id).exists()
    assert news.events() == [("project_deleted", ["bob", "carol", "mia"])]
    message = news.one("project_deleted")
    assert message.priority == "high"
    assert (message.project_id, message.project_title) == (project_id, "Mobile App")
    assert message.message == "alice deleted Mobile App"
    # Everyone's live presence subscriptions to the project are dropped, the actor's too.
    assert sorted(rings, key=lambda event: event["user_id"]) == [
        {"kind": "membership_removed", "user_id": user.pk, "project_id": project_id}
        for user in sorted([team.alice, team.mia, team.bob, team.carol], key=lambda u: u.pk)
    ]


# --- team -------------------------------------------------------------------------------


def test_the_new_member_and_the_team_hear_of_an_addition(
    team: Team, news: News, make_user: Callable[..., User]
) -> None:
    dana = make_user("dana")
    membership = membership_add(
        actor=team.mia, project=team.project, user=dana, role="member", capacity=60
    )
    assert (membership.role, membership.capacity) == ("member", 60)
    assert news.events() == [("team_member_added", ["alice", "bob", "carol", "dana"])]
    message = news.one("team_member_added")
    assert message.title == "New team member"
    assert message.message == "mia added dana to Mobile App as member"
    assert message.url == f"/projects/{team.project.pk}/members"
    assert message.data == {"user_id": dana.pk, "membership_id": membership.pk, "role": "member"}


def test_adding_someone_twice_is_a_conflict(team: Team) -> None:
    before = snapshot()
    with pytest.raises(Conflict):
        membership_add(actor=team.alice, project=team.project, user=team.bob)
    assert snapshot() == before


def test_only_owners_make_owners(team: Team, make_user: Callable[..., User]) -> None:
    dana = make_user("dana")
    before = snapshot()
    with pytest.raises(Forbidden):
        membership_add(actor=team.mia, project=team.project, user=dana, role="owner")
    with pytest.raises(Forbidden):
        membership_update(actor=team.mia, membership=team.membership(team.bob), role="owner")
    with pytest.raises(Forbidden):
        membership_update(actor=team.mia, membership=team.membership(team.alice), role="member")
    with pytest.raises(Forbidden):
        membership_update(actor=team.mia, membership=team.membership(team.alice), capacity=5)
    with pytest.raises(Forbidden):
        membership_remove(actor=team.mia, membership=team.membership(team.alice))
    assert snapshot() == before
    membership = membership_update(
        actor=team.alice, membership=team.membership(team.mia), role="owner"
    )
    assert membership.role == "owner"


def test_members_may_not_change_the_team(team: Team, make_user: Callable[..., User]) -> None:
    dana = make_user("dana")
    before = snapshot()
    with pytest.raises(Forbidden):
        membership_add(actor=team.bob, project=team.project, user=dana)
    with pytest.raises(Forbidden):
        membership_update(actor=team.bob, membership=team.membership(team.carol), capacity=1)
    with pytest.raises(Forbidden):
        membership_update(actor=team.bob, membership=team.membership(team.bob), role="manager")
    with pytest.raises(Forbidden):
        membership_remove(actor=team.bob, membership=team.membership(team.carol))
    assert snapshot() == before


def test_a_deactivated_user_cannot_join(team: Team, make_user: Callable[..., User]) -> None:
    gone = make_user("gone", is_active=False)
    with pytest.raises(InvalidInput):
        membership_add(actor=team.alice, project=team.project, user=gone)
    assert not Membership.objects.filter(user=gone).exists()


def test_membership_update_tells_the_team_including_the_member(team: Team, news: News) -> None:
    membership = membership_update(
        actor=team.mia, membership=team.membership(team.bob), role="manager", capacity=50
    )
    assert (membership.role, membership.capacity) == ("manager", 50)
    assert news.events() == [("team_member_updated", ["alice", "bob", "carol"])]
    message = news.one("team_member_updated")
    assert message.message == ("mia made bob manager and set bob's capacity to 50% in Mobile App")
    assert message.data["user_id"] == team.bob.pk
    assert message.data["old_role"] == "member"


def test_the_last_owner_can_be_neither_demoted_nor_removed(team: Team) -> None:
    before = snapshot()
    with pytest.raises(Conflict) as demoted:
        membership_update(actor=team.alice, membership=team.membership(team.alice), role="manager")
    assert demoted.value.code == "last_owner"
    with pytest.raises(Conflict):
        membership_remove(actor=team.alice, membership=team.membership(team.alice))
    assert snapshot() == before
    # With a second owner, the first may step down.
    membership_update(actor=team.alice, membership=team.membership(team.mia), role="owner")
    membership_update(actor=team.alice, membership=team.membership(team.alice), role="member")
    assert team.membership(team.alice).role == "member"
    with pytest.raises(Conflict):
        membership_remove(actor=team.mia, membership=team.membership(team.mia))


def test_a_removed_member_is_not_told_and_hears_nothing_more(
    team: Team,
    rings: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    task = task_create(actor=team.alice, project=team.project, title="Fix login", assignee=team.bob)
    news = News()
    with django_capture_on_commit_callbacks(execute=True):
        membership_remove(actor=team.mia, membership=team.membership(team.bob))
    assert news.events() == [("team_member_removed", ["alice", "carol"])]
    message = news.one("team_member_removed")
    assert message.title == "Team member removed"
    assert message.message == "mia removed bob from Mobile App"
    assert message.data == {"user_id": team.bob.pk, "unassigned_task_ids": [task.pk]}
    assert rings == [
        {"kind": "membership_removed", "user_id": team.bob.pk, "project_id": team.project.pk}
    ]
    # An assignee must be a member, so the task lost its assignee with the membership.
    assert Task.objects.get(pk=task.pk).assignee is None
    bob_rows = Inbox.objects.filter(user=team.bob).count()
    task_update(actor=team.alice, task=task, status="done")
    milestone_create(actor=team.alice, project=team.project, title="Beta")
    project_update(actor=team.alice, project=team.project, title="Mobile")
    assert Inbox.objects.filter(user=team.bob).count() == bob_rows


def test_a_member_may_leave(team: Team, news: News) -> None:
    membership_remove(actor=team.bob, membership=team.membership(team.bob))
    assert news.events() == [("team_member_removed", ["alice", "carol", "mia"])]
    message = news.one("team_member_removed")
    assert (message.title, message.message) == ("Team member left", "bob left Mobile App")
    assert not Membership.objects.filter(project=team.project, user=team.bob).exists()


def test_a_stale_membership_is_not_found(team: Team) -> None:
    membership = team.membership(team.bob)
    membership_remove(actor=team.alice, membership=membership)
    with pytest.raises(NotFound):
        membership_remove(actor=team.alice, membership=membership)
    with pytest.raises(NotFound):
        membership_update(actor=team.alice, membership=membership, capacity=3)


# --- milestones -------------------------------------------------------------------------


def test_milestone_events(team: Team, news: News) -> None:
    due = dt.date(2027, 3, 1)
    milestone = milestone_create(
        actor=team.mia, project=team.project, title="Beta", due_date=due, progress=10
    )
    milestone = milestone_update(actor=team.alice, milestone=milestone, progress=60)
    milestone = milestone_update(actor=team.alice, milestone=milestone, due_date=None)
    assert milestone.due_date is None
    milestone_id = milestone.pk
    milestone_delete(actor=team.mia, milestone=milestone)
    assert not Milestone.objects.filter(pk=milestone_id).exists()
    assert news.events() == [
        ("milestone_created", ["alice", "bob", "carol"]),
        ("milestone_updated", ["bob", "carol", "mia"]),
        ("milestone_updated", ["bob", "carol", "mia"]),
        ("milestone_deleted", ["alice", "bob", "carol"]),
    ]
    created, progressed, undated, deleted = news.messages()
    assert created.message == "mia added the milestone “Beta” (due 2027-03-01) to Mobile App"
    assert created.url == f"/projects/{team.project.pk}/milestones/{milestone_id}"
    assert created.data == {"milestone_id": milestone_id}
    assert progressed.message == "alice set “Beta” to 60% (was 10%) in Mobile App"
    assert progressed.data["milestone_id"] == milestone_id
    assert undated.message == "alice removed the due date of “Beta” in Mobile App"
    assert deleted.message == "mia deleted the milestone “Beta” from Mobile App"
    assert deleted.data == {"milestone_id": milestone_id}
    assert {m.priority for m in news.messages()} == {"normal"}


def test_leaving_out_the_due_date_keeps_it(team: Team) -> None:
    due = dt.date(2027, 3, 1)
    milestone = milestone_create(actor=team.mia, project=team.project, title="Beta", due_date=due)
    milestone = milestone_update(actor=team.mia, milestone=milestone, title="Beta 2")
    assert (milestone.title, milestone.due_date) == ("Beta 2", due)


def test_members_may_not_touch_milestones(team: Team) -> None:
    milestone = milestone_create(actor=team.mia, project=team.project, title="Beta")
    before = snapshot()
    with pytest.raises(Forbidden):
        milestone_create(actor=team.bob, project=team.project, title="Mine")
    with pytest.raises(Forbidden):
        milestone_update(actor=team.bob, milestone=milestone, progress=100)
    with pytest.raises(Forbidden):
        milestone_delete(actor=team.bob, milestone=milestone)
    assert snapshot() == before


# --- tasks ------------------------------------------------------------------------------


def test_task_create_tells_the_team_and_the_assignee(team: Team, news: News) -> None:
    task = task_create(actor=team.mia, project=team.project, title="Fix login", assignee=team.bob)
    # The assignee hears task_assigned instead of the team notice: one toast, not two.
    assert news.events() == [
        ("task_created", ["alice", "carol"]),
        ("task_assigned", ["bob"]),
    ]
    created, assigned = news.messages()
    assert created.url == assigned.url == f"/projects/{team.project.pk}/tasks/{task.pk}"
    assert created.priority == "normal"
    assert created.data == {"task_id": task.pk, "status": "todo"}
    assert (assigned.priority, assigned.title) == ("high", "Task assigned to you")
    assert assigned.message == "mia assigned “Fix login” to you in Mobile App"
    assert assigned.data == {"task_id": task.pk}


def test_assigning_oneself_is_not_announced_to_oneself(team: Team, news: News) -> None:
    task_create(actor=team.mia, project=team.project, title="Fix login", assignee=team.mia)
    assert news.events() == [("task_created", ["alice", "bob", "carol"])]


def test_a_member_moves_their_own_task(team: Team) -> None:
    task = task_create(
        actor=team.alice,
        project=team.project,
        title="Fix login",
        status="in_progress",
        assignee=team.bob,
    )
    news = News()
    task = task_update(actor=team.bob, task=task, status="done")
    assert task.status == "done"
    assert news.events() == [("task_status_changed", ["alice", "carol", "mia"])]
    message = news.one("task_status_changed")
    assert message.title == "Task moved to Done"
    assert message.message == "bob moved “Fix login” from In progress to Done in Mobile App"
    assert message.data == {"old_status": "in_progress", "new_status": "done", "task_id": task.pk}
    assert message.url == f"/projects/{team.project.pk}/tasks/{task.pk}"
    assert message.priority == "normal"


def test_the_old_status_is_read_under_the_lock_not_from_a_stale_object(team: Team) -> None:
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    task_update(actor=team.alice, task=task, status="review")
    news = News()
    task_update(actor=team.alice, task=task, status="done")  # ``task`` still says "todo"
    assert news.one("task_status_changed").data["old_status"] == "review"


def test_a_member_may_do_nothing_else_with_tasks(team: Team) -> None:
    own = task_create(actor=team.alice, project=team.project, title="Own", assignee=team.bob)
    others = task_create(actor=team.alice, project=team.project, title="Other", assignee=team.carol)
    before = snapshot()
    attempts: list[Callable[[], Any]] = [
        lambda: task_update(actor=team.bob, task=others, status="done"),
        lambda: task_update(actor=team.bob, task=own, title="Renamed"),
        lambda: task_update(actor=team.bob, task=own, status="done", assignee=team.carol),
        lambda: task_update(actor=team.bob, task=own, assignee=None),
        lambda: task_create(actor=team.bob, project=team.project, title="New"),
        lambda: task_delete(actor=team.bob, task=own),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            attempt()
    assert snapshot() == before


def test_reassigning_tells_the_team_and_the_new_assignee(team: Team) -> None:
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    task = task_create(actor=team.alice, project=team.project, title="Fix login", assignee=team.bob)
    news = News()
    task = task_update(
        actor=team.mia, task=task, title="Fix sign-in", assignee=team.carol, milestone=milestone
    )
    assert (task.title, task.assignee, task.milestone) == ("Fix sign-in", team.carol, milestone)
    assert news.events() == [
        ("task_updated", ["alice", "bob"]),
        ("task_assigned", ["carol"]),
    ]
    updated = news.one("task_updated")
    assert updated.message == (
        "mia renamed “Fix login” to “Fix sign-in”, assigned “Fix sign-in” to carol, "
        "moved “Fix sign-in” to the milestone “Beta” in Mobile App"
    )
    assert updated.data == {
        "task_id": task.pk,
        "fields": ["title", "assignee", "milestone"],
        "assignee_id": team.carol.pk,
        "milestone_id": milestone.pk,
    }
    assert news.one("task_assigned").priority == "high"
    news = News()
    task_update(actor=team.mia, task=task, assignee=None, milestone=None)
    assert news.events() == [("task_updated", ["alice", "bob", "carol"])]
    assert Task.objects.get(pk=task.pk).assignee is None


def test_assignee_and_milestone_must_belong_to_the_project(team: Team) -> None:
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    foreign_milestone = Milestone.objects.get(project=team.other)
    before = snapshot()
    with pytest.raises(InvalidInput) as outsider:
        task_create(actor=team.alice, project=team.project, title="T", assignee=team.otto)
    assert outsider.value.code == "invalid_assignee"
    with pytest.raises(InvalidInput):
        task_update(actor=team.alice, task=task, assignee=team.otto)
    with pytest.raises(InvalidInput) as milestone:
        task_create(actor=team.alice, project=team.project, title="T", milestone=foreign_milestone)
    assert milestone.value.code == "invalid_milestone"
    with pytest.raises(InvalidInput):
        task_update(actor=team.alice, task=task, milestone=foreign_milestone)
    assert snapshot() == before


def test_task_delete_tells_the_team(team: Team) -> None:
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    news = News()
    task_delete(actor=team.mia, task=task)
    assert not Task.objects.filter(pk=task.pk).exists()
    assert news.events() == [("task_deleted", ["alice", "bob", "carol"])]
    assert news.one("task_deleted").data == {"task_id": task.pk}


# --- validation -------------------------------------------------------------------------


def untyped(value: object) -> Any:
    """A value of the wrong type, as a caller without a type checker could pass it."""
    return value


BAD_TITLES: list[Any] = ["", "   ", "x" * 201, 123, None, "two\nlines", "nul\x00"]
BAD_PERCENTS: list[Any] = [-1, 101, 10**30, True, "50", 5.0, None]


@pytest.mark.parametrize("title", BAD_TITLES)
def test_bad_titles_are_refused_everywhere(team: Team, title: Any) -> None:
    milestone = milestone_create(actor=team.alice, project=team.project, title="Beta")
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    before = snapshot()
    calls: list[Callable[[], Any]] = [
        lambda: project_create(actor=team.alice, title=title),
        lambda: milestone_create(actor=team.alice, project=team.project, title=title),
        lambda: task_create(actor=team.alice, project=team.project, title=title),
    ]
    if title is not None:  # None means "unchanged" in an update
        calls += [
            lambda: project_update(actor=team.alice, project=team.project, title=title),
            lambda: milestone_update(actor=team.alice, milestone=milestone, title=title),
            lambda: task_update(actor=team.alice, task=task, title=title),
        ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()
    assert snapshot() == before


def test_a_title_of_exactly_200_characters_is_fine(team: Team) -> None:
    task = task_create(actor=team.alice, project=team.project, title="x" * 200)
    assert len(task.title) == 200


@pytest.mark.parametrize("value", BAD_PERCENTS)
def test_bad_percentages_are_refused(
    team: Team, value: Any, make_user: Callable[..., User]
) -> None:
    dana = make_user("dana")
    before = snapshot()
    with pytest.raises(InvalidInput):
        milestone_create(actor=team.alice, project=team.project, title="Beta", progress=value)
    with pytest.raises(InvalidInput):
        membership_add(actor=team.alice, project=team.project, user=dana, capacity=value)
    if value is not None:
        with pytest.raises(InvalidInput):
            membership_update(
                actor=team.alice, membership=team.membership(team.bob), capacity=value
            )
    assert snapshot() == before


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda t: membership_update(actor=t.alice, membership=t.membership(t.bob), role="boss"),
            "invalid_role",
        ),
        (
            lambda t: task_create(actor=t.alice, project=t.project, title="T", status="blocked"),
            "invalid_status",
        ),
        (
            lambda t: task_create(actor=t.alice, project=t.project, title="T", status=untyped(1)),
            "invalid_status",
        ),
        (
            lambda t: milestone_create(
                actor=t.alice, project=t.project, title="M", due_date=untyped("2027-01-01")
            ),
            "invalid_due_date",
        ),
        (
            lambda t: milestone_create(
                actor=t.alice, project=t.project, title="M", due_date=dt.datetime(2027, 1, 1)
            ),
            "invalid_due_date",
        ),
        (
            lambda t: project_update(actor=t.alice, project=t.project, description="x" * 10_001),
            "invalid_description",
        ),
        (
            lambda t: project_create(actor=t.alice, title="P", description=untyped(42)),
            "invalid_description",
        ),
    ],
)
def test_other_bad_values_are_refused(team: Team, call: Callable[[Team], Any], code: str) -> None:
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        call(team)
    assert refused.value.code == code
    assert snapshot() == before


# --- the record -------------------------------------------------------------------------


def test_every_users_seq_runs_1_to_n_without_gaps(
    team: Team, make_user: Callable[..., User]
) -> None:
    dana = make_user("dana")
    membership_add(actor=team.alice, project=team.project, user=dana)
    milestone = milestone_create(actor=team.mia, project=team.project, title="Beta")
    task = task_create(
        actor=team.mia, project=team.project, title="Fix", assignee=dana, milestone=milestone
    )
    task_update(actor=dana, task=task, status="in_progress")
    task_update(actor=team.alice, task=task, assignee=team.bob)
    membership_remove(actor=team.alice, membership=team.membership(dana))
    milestone_update(actor=team.alice, milestone=milestone, progress=50)
    project_update(actor=team.mia, project=team.project, title="Mobile")
    project_delete(actor=team.alice, project=Project.objects.get(pk=team.project.pk))
    checked = 0
    for user in User.objects.all():
        seqs = list(Inbox.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), user.username
        checked += len(seqs)
    assert checked == Inbox.objects.count() > 20


def test_a_failed_change_leaves_no_notification(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A change and its notification commit together: when notifying fails, the
    # new status is rolled back with it.
    task = task_create(actor=team.alice, project=team.project, title="Fix login")
    before = snapshot()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "notification_create", broken)
    with pytest.raises(RuntimeError):
        task_update(actor=team.alice, task=task, status="done")
    assert snapshot() == before
