"""Input validation and output shapes of the projects REST API.

Input serializers are strict about JSON types (a title must be a string, an id
a number, not "7" or 7.0 or true) and refuse unknown fields, so a client's typo
is a 400 rather than a silently ignored change. Rights and cross-object rules
(the assignee is a member, ...) are checked by the services.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from backend.numbers import MAX_INT64
from backend.projects.models import Membership, MembershipRole, Milestone, Project, Task, TaskStatus
from backend.projects.services import DESCRIPTION_MAX, TITLE_MAX

# --- strict fields ----------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's would turn 12 into "12")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that takes only JSON integers (DRF's accepts "7", 7.0 and true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictDateField(serializers.DateField):
    """ISO dates given as strings only (DRF's would take a number as well)."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


def _id_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=1, max_value=MAX_INT64, **kwargs)


def _title_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(max_length=TITLE_MAX, **kwargs)


def _percent_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=100, **kwargs)


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is not accepted here."] for name in unknown}
                )
        return attrs


class NonEmptyPatchSerializer(StrictInputSerializer):
    """A PATCH body must name at least one field."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError(
                f"Give at least one of: {', '.join(self.fields)}.", code="empty"
            )
        return attrs


# --- input ------------------------------------------------------------------------------


class ProjectCreateInput(StrictInputSerializer):
    title = _title_field()
    description = StrictCharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, trim_whitespace=False
    )


class ProjectUpdateInput(NonEmptyPatchSerializer):
    title = _title_field(required=False)
    description = StrictCharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, trim_whitespace=False
    )


class MembershipCreateInput(StrictInputSerializer):
    user_id = _id_field(required=False)
    username = StrictCharField(max_length=150, required=False)
    role = StrictChoiceField(choices=MembershipRole.choices, required=False)
    capacity = _percent_field(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if ("user_id" in attrs) == ("username" in attrs):
            raise serializers.ValidationError(
                "Give either user_id or username of the person to add.", code="invalid"
            )
        return attrs


class MembershipUpdateInput(NonEmptyPatchSerializer):
    role = StrictChoiceField(choices=MembershipRole.choices, required=False)
    capacity = _percent_field(required=False)


class MilestoneCreateInput(StrictInputSerializer):
    title = _title_field()
    due_date = StrictDateField(required=False, allow_null=True)
    progress = _percent_field(required=False)


class MilestoneUpdateInput(NonEmptyPatchSerializer):
    title = _title_field(required=False)
    due_date = StrictDateField(required=False, allow_null=True)
    progress = _percent_field(required=False)


class TaskCreateInput(StrictInputSerializer):
    title = _title_field()
    status = StrictChoiceField(choices=TaskStatus.choices, required=False)
    assignee_id = _id_field(required=False, allow_null=True)
    milestone_id = _id_field(required=False, allow_null=True)


class TaskUpdateInput(NonEmptyPatchSerializer):
    title = _title_field(required=False)
    status = StrictChoiceField(choices=TaskStatus.choices, required=False)
    assignee_id = _id_field(required=False, allow_null=True)
    milestone_id = _id_field(required=False, allow_null=True)


# --- output -----------------------------------------------------------------------------


class UserOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()


class ProjectOutput(serializers.ModelSerializer[Project]):
    role = serializers.CharField(
        source="my_role", read_only=True, help_text="The caller's role in the project."
    )

    class Meta:
        model = Project
        fields = ["id", "title", "description", "role", "created_at", "updated_at"]
        read_only_fields = fields


class MembershipOutput(serializers.ModelSerializer[Membership]):
    project_id = serializers.IntegerField(read_only=True)
    user = UserOutput(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "project_id", "user", "role", "capacity", "joined_at"]
        read_only_fields = fields


class MilestoneOutput(serializers.ModelSerializer[Milestone]):
    project_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Milestone
        fields = ["id", "project_id", "title", "due_date", "progress", "created_at", "updated_at"]
        read_only_fields = fields


class TaskOutput(serializers.ModelSerializer[Task]):
    project_id = serializers.IntegerField(read_only=True)
    assignee = UserOutput(read_only=True, allow_null=True)
    milestone_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = [
            "id",
            "project_id",
            "title",
            "status",
            "assignee",
            "milestone_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
