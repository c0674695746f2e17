"""Admin of integration keys and notifications.

Messages are never edited or deleted here: deleting one would take Inbox rows
with it and leave holes in users' seq, which clients read as a gap to replay.
"Add message" is the "Send an announcement" form; it goes through
``notification_create`` like every other notification.

"Connected now" (``connected_now_view``, at /admin/connected/, linked from the index)
lists who is connected on every server process, as ``GET /api/connections/`` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from backend.notifications import connections, inbox_log
from backend.notifications.models import ApiKey, Message
from backend.notifications.selectors import Audience
from backend.notifications.services import (
    api_key_create,
    api_key_revoke,
    notification_create,
    user_publisher,
)
from backend.text import single_line_text_problem, url_problem
from backend.users.models import Role, User

if TYPE_CHECKING:
    _ApiKeyAdminBase = admin.ModelAdmin[ApiKey]
    _MessageAdminBase = admin.ModelAdmin[Message]
    _AnnouncementFormBase = forms.ModelForm[Message]
else:
    _ApiKeyAdminBase = _MessageAdminBase = admin.ModelAdmin
    _AnnouncementFormBase = forms.ModelForm


def _copy_into(target: Any, source: Any) -> None:
    """Make the admin's unsaved ``target`` the row a service saved, for the admin's
    log entry and redirect."""
    for field in type(source)._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False


@admin.register(ApiKey)
class ApiKeyAdmin(_ApiKeyAdminBase):
    list_display = ("name", "prefix", "created_by", "created_at", "last_used_at", "revoked")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke_keys",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name",)
        return ("name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    @admin.display(boolean=True, description="revoked", ordering="revoked_at")
    def revoked(self, key: ApiKey) -> bool:
        return key.revoked_at is not None

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm[ApiKey], change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created_by = request.user if isinstance(request.user, User) else None
        key, raw = api_key_create(name=obj.name, created_by=created_by)
        _copy_into(obj, key)
        # Only the hash is stored: this message is the one time anyone sees the key.
        self.message_user(
            request,
            f"The new key is {raw} — copy it now: it will not be shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        pending = list(queryset.filter(revoked_at__isnull=True))
        for key in pending:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(pending)} key(s).", messages.SUCCESS)


class AnnouncementForm(_AnnouncementFormBase):
    everyone = forms.BooleanField(required=False, help_text="Every active user.")
    roles = forms.ModelMultipleChoiceField(
        queryset=Role.objects.all(), required=False, help_text="Everyone with these roles."
    )

    class Meta:
        model = Message
        fields = ("title", "message", "priority", "url")

    # The service's rules, shown as field errors instead of failing on save.
    def clean_title(self) -> str:
        title: str = self.cleaned_data["title"]
        problem = single_line_text_problem(title)
        if problem is not None:
            raise ValidationError(f"The title {problem}.")
        return title

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        problem = url_problem(url)
        if problem is not None:
            raise ValidationError(f"The {problem}.")
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("everyone") and not cleaned.get("roles"):
            raise ValidationError("Send it to everyone or to at least one role.")
        return cleaned

    def audience(self) -> Audience:
        if self.cleaned_data["everyone"]:
            return Audience(everyone=True)
        return Audience(roles=tuple(sorted(role.name for role in self.cleaned_data["roles"])))


@admin.register(Message)
class MessageAdmin(_MessageAdminBase):
    list_display = (
        "id",
        "title",
        "event_type",
        "priority",
        "actor",
        "project_title",
        "recipients",
        "created_at",
    )
    list_filter = ("event_type", "priority", "created_at")
    search_fields = ("title", "message", "idempotency_key")
    list_select_related = ("actor",)
    date_hierarchy = "created_at"
    readonly_fields = ("recipients",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        inbox_log.read_barrier()  # the recipients column counts Inbox rows
        return super().get_queryset(request).annotate(_recipients=Count("deliveries"))

    @admin.display(description="recipients", ordering="_recipients")
    def recipients(self, message: Any) -> int:
        return int(message._recipients)

    def get_form(
        self, request: HttpRequest, obj: Message | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Message]]:
        if obj is None:
            kwargs["form"] = AnnouncementForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Message | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("title", "message", "priority", "url", "everyone", "roles")
        return (
            "title",
            "message",
            "event_type",
            "priority",
            "url",
            "actor",
            "project_id",
            "project_title",
            "data",
            "audience",
            "publisher",
            "idempotency_key",
            "created_at",
            "recipients",
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Message | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        roles = initial.get("roles")
        if isinstance(roles, str):
            # Set by the roles admin's "Send an announcement" action.
            initial["roles"] = [pk for pk in roles.split(",") if pk.isdecimal()]
        return initial

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"title": "Send an announcement", **(extra_context or {})}
        return super().add_view(request, form_url, context)

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Message, form: forms.ModelForm[Message], change: bool
    ) -> None:
        assert isinstance(form, AnnouncementForm)  # only the add form can be saved
        actor = request.user if isinstance(request.user, User) else None
        result = notification_create(
            audience=form.audience(),
            title=obj.title,
            message=obj.message,
            priority=obj.priority,
            url=obj.url,
            actor=actor,
            publisher=user_publisher(actor) if actor is not None else "",
        )
        _copy_into(obj, result.message)
        self.message_user(request, f"Sent to {result.recipient_count} user(s).", messages.SUCCESS)


# The index links to "Connected now" (templates/admin/notifications/index.html).
admin.site.index_template = "admin/notifications/index.html"


def connected_now_view(request: HttpRequest) -> HttpResponse:
    """Who is connected now, on every process (staff: wrapped in ``admin_view`` by
    backend/config/urls.py); 503 with Retry-After while Redis is away."""
    # Here, not at the top: the admin loads with Django, and a process that only rings
    # the doorbell (the notify command) must not load the hub (test_events.py).
    from backend.notifications.hub import Hub

    context: dict[str, Any] = {**admin.site.each_context(request), "title": "Connected now"}
    try:
        now = connections.connected_now(hub=Hub.current())
    except connections.ConnectionsUnavailable as error:
        context["unavailable"] = error.message
        response = TemplateResponse(
            request, "admin/notifications/connected_now.html", context, status=error.status
        )
        response["Retry-After"] = str(error.retry_after)
        return response
    rows = [
        {
            **row,
            "since": None
            if row["connected_at"] is None
            else datetime.fromisoformat(row["connected_at"]),
        }
        for row in now["connections"]
    ]
    context.update(count=now["count"], users=now["users"], rows=rows)
    return TemplateResponse(request, "admin/notifications/connected_now.html", context)
