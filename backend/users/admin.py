"""Admin of users and roles.

Switching a user off here has the same effect as ``user_deactivate``: their
sessions end (their tokens stop working at once), and their sockets close.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from backend.users.models import Role, User
from backend.users.services import user_deactivate
from backend.users.throttling import login_attempt_allowed

# Django's admin classes are generic only in the stubs, so the parametrised
# bases exist for the type checker alone.
if TYPE_CHECKING:
    _UserAdminBase = DjangoUserAdmin[User]
    _RoleAdminBase = admin.ModelAdmin[Role]
else:
    _UserAdminBase = DjangoUserAdmin
    _RoleAdminBase = admin.ModelAdmin


@admin.register(User)
class UserAdmin(_UserAdminBase):
    list_display = ("username", "email", "first_name", "last_name", "role", "is_staff", "is_active")
    list_filter = ("is_active", "is_staff", "is_superuser", "role")
    list_select_related = ("role",)
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Tray notifier", {"fields": ("role",)}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Tray notifier", {"fields": ("email", "first_name", "last_name", "role", "is_staff")}),
    )
    actions = ("deactivate_users",)

    def save_model(
        self, request: HttpRequest, obj: User, form: ModelForm[User], change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # The form saved is_active; this also ends every session the user has.
            user_deactivate(user=obj)

    @admin.action(description="Deactivate selected users (ends their sessions)")
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        count = 0
        for user in queryset:
            if user.pk == getattr(request.user, "pk", None):
                self.message_user(request, "You cannot deactivate yourself.", messages.ERROR)
                continue
            user_deactivate(user=user)
            count += 1
        if count:
            self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)


@admin.register(Role)
class RoleAdmin(_RoleAdminBase):
    list_display = ("name", "description", "user_count")
    search_fields = ("name", "description")
    actions = ("send_announcement",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return super().get_queryset(request).annotate(_user_count=Count("users"))

    @admin.display(description="users", ordering="_user_count")
    def user_count(self, role: Any) -> int:
        return int(role._user_count)

    @admin.action(description="Send an announcement to the selected roles")
    def send_announcement(
        self, request: HttpRequest, queryset: QuerySet[Role]
    ) -> HttpResponseRedirect:
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:notifications_message_add')}?roles={ids}")


def rate_limited_admin_login(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponseBase:
    """The admin's login form, spending the same per-address budget as the API's login
    (``TRAY_LOGIN_RATE``) on every submitted password, before it is checked."""
    if request.method == "POST":
        wait = login_attempt_allowed(request)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            response = HttpResponse(
                f"Too many login attempts from your address. Try again in {seconds} seconds.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(seconds)
            return response
    return admin.site.login(request, extra_context)
