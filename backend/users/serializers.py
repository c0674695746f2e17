"""Input and output shapes of the auth and account endpoints."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

WRONG_CREDENTIALS = _("Wrong username or password.")


class LoginInputSerializer(serializers.Serializer[None]):
    username = serializers.CharField(max_length=150)
    # Bounded: every character is hashed a million times over.
    password = serializers.CharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"}
    )


class TokenPairSerializer(serializers.Serializer[Any]):
    access = serializers.CharField(help_text="Bearer token for API calls; short-lived.")
    refresh = serializers.CharField(
        help_text="Trade it for a new pair at /api/auth/token/refresh/."
    )


class RefreshInputSerializer(serializers.Serializer[None]):
    refresh = serializers.CharField(max_length=4096)


class ProjectRoleSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    title = serializers.CharField()
    role = serializers.CharField(help_text="owner, manager or member")


class MeOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    email = serializers.CharField()
    is_staff = serializers.BooleanField()
    role = serializers.CharField(allow_null=True, help_text="Name of the global role, if any.")
    projects = ProjectRoleSerializer(many=True)
    can_create_projects = serializers.BooleanField(
        help_text="Whether POST /api/projects/ is allowed: staff, or granted "
        "projects.add_project by an administrator."
    )


class PasswordChangeInputSerializer(serializers.Serializer[None]):
    # Bounded like the login's: every character is hashed a million times over.
    current_password = serializers.CharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"}
    )
    new_password = serializers.CharField(
        max_length=4096,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Checked by the server's password validators.",
    )


class UserCreateInputSerializer(serializers.Serializer[None]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=4096,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Checked by the server's password validators.",
    )
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    first_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)
    is_staff = serializers.BooleanField(
        required=False, default=False, help_text="May use the admin and publish."
    )
    role = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=50,
        help_text="Name of an existing global role.",
    )


class AccountOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    is_staff = serializers.BooleanField()
    role = serializers.SerializerMethodField(help_text="Name of the global role, if any.")

    def get_role(self, user: Any) -> str | None:
        return user.role.name if user.role_id else None
