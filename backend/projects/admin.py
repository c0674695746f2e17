"""Admin of projects, their team, milestones and tasks.

The admin edits rows directly, without the services' notifications. One thing
must still happen whatever the path: someone who stops being a member loses
their live presence subscriptions to the project, so removals ring the doorbell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from backend.notifications import delivery
from backend.projects.models import Membership, Milestone, Project, Task

# Django's admin classes are generic only in the stubs (no django_stubs_ext.monkeypatch
# at runtime), so the parametrised bases exist for the type checker alone.
if TYPE_CHECKING:
    _MembershipInlineBase = admin.TabularInline[Membership, Project]
    _MilestoneInlineBase = admin.TabularInline[Milestone, Project]
    _ProjectAdminBase = admin.ModelAdmin[Project]
    _TaskAdminBase = admin.ModelAdmin[Task]
else:
    _MembershipInlineBase = _MilestoneInlineBase = admin.TabularInline
    _ProjectAdminBase = _TaskAdminBase = admin.ModelAdmin


def _ring_removed(memberships: list[tuple[int, int]]) -> None:
    for user_id, project_id in memberships:
        delivery.ring_on_commit(
            {"kind": "membership_removed", "user_id": user_id, "project_id": project_id}
        )


class MembershipInline(_MembershipInlineBase):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class MilestoneInline(_MilestoneInlineBase):
    model = Milestone
    extra = 0


@admin.register(Project)
class ProjectAdmin(_ProjectAdminBase):
    list_display = ["id", "title", "created_by", "created_at"]
    search_fields = ["title"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [MembershipInline, MilestoneInline]

    def save_formset(
        self, request: HttpRequest, form: ModelForm[Project], formset: Any, change: bool
    ) -> None:
        super().save_formset(request, form, formset, change)
        if isinstance(formset, BaseInlineFormSet) and formset.model is Membership:
            _ring_removed([(m.user_id, m.project_id) for m in formset.deleted_objects])

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        members = list(obj.memberships.values_list("user_id", "project_id"))
        super().delete_model(request, obj)
        _ring_removed(members)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        members = list(
            Membership.objects.filter(project__in=queryset).values_list("user_id", "project_id")
        )
        super().delete_queryset(request, queryset)
        _ring_removed(members)


@admin.register(Task)
class TaskAdmin(_TaskAdminBase):
    list_display = ["id", "title", "project", "status", "assignee", "milestone"]
    list_filter = ["status"]
    search_fields = ["title", "project__title"]
    raw_id_fields = ["project", "assignee", "milestone"]
