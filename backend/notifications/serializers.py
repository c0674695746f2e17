"""Input and output shapes of the inbox and publish endpoints.

The inbox endpoints answer with ``payloads.inbox_payload`` (the same shape the
WebSocket sends); the output serializers here describe it for the OpenAPI
schema. The inbox actions' bodies are checked by the services, so REST and the
WebSocket refuse a bad request with the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from backend.api import ErrorBodySerializer, StrictBooleanField, StrictCharField, StrictIntegerField
from backend.errors import InvalidInput
from backend.notifications.models import Priority
from backend.notifications.publish_input import MAX_AUDIENCE_ENTRIES, MAX_BATCH_ITEMS
from backend.notifications.selectors import Audience
from backend.notifications.services import MAX_IDS_PER_REQUEST
from backend.numbers import MAX_INT64
from backend.projects.models import Project
from backend.text import url_problem
from backend.users.selectors import role_names_missing, user_ids_by_username, user_ids_missing


class StrictSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know, so a misspelt "mesage" is an error, not a blank."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


# Output: what the inbox endpoints send.


class ActorSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()


class ProjectRefSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    title = serializers.CharField()


class InboxItemSerializer(serializers.Serializer[Any]):
    """One notification as its recipient sees it (``payloads.inbox_payload``)."""

    id = serializers.IntegerField(help_text="The inbox row's id: what mark-read and delete take.")
    seq = serializers.IntegerField(help_text="Per-user sequence number: 1, 2, 3, ... no gaps.")
    is_read = serializers.BooleanField()
    read_at = serializers.DateTimeField(allow_null=True)
    title = serializers.CharField()
    message = serializers.CharField()
    event_type = serializers.CharField()
    priority = serializers.ChoiceField(choices=Priority.choices)
    url = serializers.CharField()
    created_at = serializers.DateTimeField()
    actor = ActorSerializer(allow_null=True)
    project = ProjectRefSerializer(allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here: as a class attribute, "data" would hide Serializer.data.
        fields["data"] = serializers.DictField(
            help_text="Event details, e.g. old and new task status."
        )
        return fields


class InboxStateSerializer(serializers.Serializer[Any]):
    unread_count = serializers.IntegerField()
    latest_seq = serializers.IntegerField(help_text="The highest seq handed out to the caller.")


class InboxPageSerializer(InboxStateSerializer):
    results = InboxItemSerializer(many=True)
    next_after_seq = serializers.IntegerField(
        allow_null=True, help_text="Pass as after_seq for the next page up; null when done."
    )
    next_before_seq = serializers.IntegerField(
        allow_null=True, help_text="Pass as before_seq for the next page down; null when done."
    )


class InboxChangeSerializer(serializers.Serializer[Any]):
    changed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Rows this call changed."
    )
    not_found = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids that are not the caller's notifications."
    )
    unread_count = serializers.IntegerField()


# Input of the inbox actions (documented here, checked by the services).


class InboxIdsInputSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_INT64),
        max_length=MAX_IDS_PER_REQUEST,
        help_text="Inbox row ids (the id of each notification, not its seq).",
    )


class MarkAllReadInputSerializer(serializers.Serializer[Any]):
    up_to_seq = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_INT64,
        help_text="Leave newer notifications unread: those the user had not seen yet.",
    )


# Publish.


def _web_url(value: str) -> None:
    # The service's rule, as a field error: the tray opens this URL on a click.
    problem = url_problem(value)
    if problem is not None:
        raise serializers.ValidationError(problem)


class PublishAudienceSerializer(StrictSerializer):
    users = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=MAX_INT64),
        required=False,
        max_length=MAX_AUDIENCE_ENTRIES,
    )
    usernames = serializers.ListField(
        child=StrictCharField(max_length=150), required=False, max_length=MAX_AUDIENCE_ENTRIES
    )
    projects = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=MAX_INT64),
        required=False,
        max_length=MAX_AUDIENCE_ENTRIES,
    )
    roles = serializers.ListField(
        child=StrictCharField(max_length=50), required=False, max_length=MAX_AUDIENCE_ENTRIES
    )
    everyone = StrictBooleanField(required=False, default=False)


class PublishInputSerializer(StrictSerializer):
    """The publish body, for the OpenAPI schema and as the reference of its checks.

    The endpoints check bodies with ``publish_input.parse_publish`` (no DRF at run
    time); ``tests/backend/notifications/test_publish_input.py`` holds the two to the
    same answers, so a change here must be made there too, and the other way round.
    """

    audience = PublishAudienceSerializer(
        help_text="Who receives it: the union of the parts given. Resolved when sent."
    )
    title = StrictCharField(max_length=200)
    message = StrictCharField(max_length=5000, required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(
        choices=Priority.choices, required=False, default=Priority.NORMAL
    )
    url = StrictCharField(
        max_length=2000, required=False, allow_blank=True, default="", validators=[_web_url]
    )
    event_type = StrictCharField(
        max_length=50,
        required=False,
        default="announcement",
        validators=[
            RegexValidator(
                r"^[a-z0-9][a-z0-9_.-]*\Z",
                "Use lower-case letters, digits, '_', '.' and '-'.",
            )
        ],
    )
    idempotency_key = StrictCharField(
        max_length=200,
        required=False,
        allow_null=True,
        default=None,
        help_text="Sending the same key again (with the same integration key or as the "
        "same staff user) returns the first notification, not a new one.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # After the field checks, so that a malformed request costs no query.
        return {**attrs, "audience": _audience(attrs["audience"])}


def _audience(value: dict[str, Any]) -> Audience:
    """Resolve names to ids; every name must exist, so a typo is not a silent no-op.

    Raises:
        InvalidInput: the audience is empty (``empty_audience``) or names users,
            projects or roles that do not exist (``unknown_audience``, listed in
            the error's detail).
    """
    usernames: list[str] = value.get("usernames", [])
    user_ids: list[int] = value.get("users", [])
    project_ids: list[int] = value.get("projects", [])
    roles: list[str] = value.get("roles", [])
    everyone: bool = value.get("everyone", False)
    if not (usernames or user_ids or project_ids or roles or everyone):
        raise InvalidInput(
            "Name an audience: users, usernames, projects, roles or everyone.",
            code="empty_audience",
        )
    by_name = user_ids_by_username(usernames=usernames)
    unknown: dict[str, list[Any]] = {
        "users": user_ids_missing(ids=user_ids),
        "usernames": [name for name in dict.fromkeys(usernames) if name not in by_name],
        "projects": _project_ids_missing(project_ids),
        "roles": role_names_missing(names=roles),
    }
    unknown = {part: names for part, names in unknown.items() if names}
    if unknown:
        listed = "; ".join(
            f"{part}: {', '.join(str(name) for name in names)}" for part, names in unknown.items()
        )
        raise InvalidInput(f"Unknown {listed}.", code="unknown_audience", unknown=unknown)
    return Audience(
        users=tuple(sorted({*user_ids, *by_name.values()})),
        projects=tuple(sorted(set(project_ids))),
        roles=tuple(sorted(set(roles))),
        everyone=everyone,
    )


def _project_ids_missing(ids: list[int]) -> list[int]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = set(Project.objects.filter(id__in=wanted).values_list("id", flat=True))
    return [project_id for project_id in wanted if project_id not in found]


class PublishOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(help_text="The notification (Message) id.")
    recipients = serializers.IntegerField(help_text="How many inboxes it was delivered to.")
    created = serializers.BooleanField(
        help_text="False when the idempotency key named an earlier notification."
    )


# Batch publish (documented here; checked by publish_input.parse_batch and parse_publish_many).


BATCH_STATUSES = ["created", "duplicate", "error"]


class PublishBatchInputSerializer(serializers.Serializer[Any]):
    notifications = serializers.ListField(
        child=PublishInputSerializer(),
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        help_text="Publish bodies, each as POST /api/notifications/ takes it. A bad one is "
        "that item's error; the others are still created.",
    )


class PublishBatchResultSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(help_text="The item's position in notifications.")
    status = serializers.ChoiceField(
        choices=BATCH_STATUSES,
        help_text="duplicate: the idempotency key named an earlier notification of the "
        "same publisher, or an earlier item of this batch.",
    )
    id = serializers.IntegerField(
        required=False, help_text="The notification (Message) id; absent for an error."
    )
    recipients = serializers.IntegerField(
        required=False, help_text="How many inboxes it was delivered to; absent for an error."
    )
    error = ErrorBodySerializer(
        required=False,
        help_text="Why this item was not sent: what POST /api/notifications/ answers for it.",
    )


class PublishBatchOutputSerializer(serializers.Serializer[Any]):
    results = PublishBatchResultSerializer(many=True, help_text="One per item, in order.")
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here: as a class attribute, "errors" would hide Serializer.errors.
        fields["errors"] = serializers.IntegerField(help_text="Items answered with an error.")
        return fields
