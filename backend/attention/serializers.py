"""The attention settings' shape, for the OpenAPI schema (rules.py checks the input)."""

from __future__ import annotations

from rest_framework import serializers

from backend.attention import rules


class DndSerializer(serializers.Serializer[None]):
    until = serializers.DateTimeField(
        allow_null=True, help_text="When it ends by itself; null: until turned off."
    )


class QuietHoursSerializer(serializers.Serializer[None]):
    start = serializers.CharField(help_text='24-hour "HH:MM", included.')
    end = serializers.CharField(help_text='24-hour "HH:MM", excluded; may be past midnight.')


class AttentionChangeSerializer(serializers.Serializer[None]):
    """Any subset of the settings; a key left out stays as it is."""

    dnd = DndSerializer(
        allow_null=True, required=False, help_text="Do not disturb; null turns it off."
    )
    quiet_hours = QuietHoursSerializer(
        allow_null=True, required=False, help_text="Daily, in time_zone; null: none."
    )
    time_zone = serializers.CharField(
        allow_null=True,
        required=False,
        help_text="IANA name for quiet hours, e.g. Europe/Berlin; null: each device's clock.",
    )
    muted_projects = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=rules.MAX_MUTED_PROJECTS,
        help_text="Projects (yours) that never interrupt; still counted and stored.",
    )
    muted_event_types = serializers.ListField(
        child=serializers.CharField(max_length=rules.EVENT_TYPE_MAX),
        required=False,
        max_length=rules.MAX_MUTED_EVENT_TYPES,
        help_text="Event types that never interrupt, e.g. task_status_changed.",
    )
    min_priority = serializers.ChoiceField(
        choices=rules.PRIORITIES,
        required=False,
        help_text="The lowest priority that may interrupt.",
    )
    urgent_breaks_through = serializers.BooleanField(
        required=False,
        help_text="Urgent notifications interrupt despite do-not-disturb and quiet hours "
        "(never a muted project or event type).",
    )


class AttentionSerializer(AttentionChangeSerializer):
    """Every setting, and the version that goes up by one with each change."""

    version = serializers.IntegerField(help_text="Apply a pushed state only if newer.")
