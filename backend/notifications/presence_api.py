"""REST endpoints of presence: a project's snapshot, and the status the caller sets.

What the socket's ``subscribe_presence`` and ``set_status`` do, for clients without a
socket (the HTTP stream's, docs/protocol.md "HTTP fallback"): the same checks, the
same payloads and words (backend/notifications/live_presence.py). Presence lives in
this process's hub, on its event loop; the views read the database themselves and run
only the hub's part there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ErrorSerializer, WriteRateThrottle, request_user
from backend.errors import NotFound
from backend.notifications import live_presence, protocol
from backend.notifications.hub import Hub
from backend.notifications.serializers import ActorSerializer
from backend.numbers import positive_id

TAGS = ["presence"]
# What a member's status may read (the schema's PresenceMemberStatusEnum).
MEMBER_STATUSES = (*protocol.STATUSES, "offline")


class PresenceMemberSerializer(serializers.Serializer[Any]):
    user = ActorSerializer()
    online = serializers.BooleanField()
    status = serializers.ChoiceField(choices=list(MEMBER_STATUSES))
    last_seen = serializers.FloatField(
        allow_null=True, help_text="Epoch seconds (now, while online); null if never seen."
    )


class PresenceSnapshotSerializer(serializers.Serializer[Any]):
    """The socket's ``presence_snapshot`` payload."""

    project_id = serializers.IntegerField()
    members = PresenceMemberSerializer(many=True)


class PresenceStatusInputSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=list(protocol.STATUSES))
    until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="dnd only: when do-not-disturb ends by itself (ISO 8601).",
    )


class PresenceStatusSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=list(protocol.STATUSES))


class ProjectPresenceApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="project_presence",
        parameters=[OpenApiParameter("project_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={200: PresenceSnapshotSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
        summary="Who of a project's members is online, and their status (members only).",
    )
    def get(self, request: Request, project_id: str) -> Response:
        user = request_user(request)
        pk = positive_id(project_id)
        if pk is None:
            raise NotFound("No such project.")
        with _redis_guard():
            snapshot = live_presence.presence_snapshot_sync(
                hub=Hub.current(), user_id=user.pk, project_id=pk
            )
        return Response(snapshot)


class PresenceStatusApi(APIView):
    # Do-not-disturb is an attention setting: the same per-user rate limits both.
    throttle_classes = [WriteRateThrottle]
    throttle_scope = "attention_change"

    @extend_schema(
        tags=TAGS,
        operation_id="presence_status",
        request=PresenceStatusInputSerializer,
        responses={200: PresenceStatusSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        summary="Set the status your teammates see: online, away, or dnd.",
        description="dnd turns do-not-disturb on (an attention setting, on every device; "
        "until may end it by itself). online and away do not end a do-not-disturb: turn it "
        'off with PATCH /api/attention/ {"dnd": null}.',
    )
    def post(self, request: Request) -> Response:
        user = request_user(request)
        body = request.data if isinstance(request.data, dict) else {}
        # The status is written to the database before Redis is asked: kept even then.
        with _redis_guard(live_presence.STATUS_KEPT_MESSAGE):
            status = live_presence.status_set_sync(
                hub=Hub.current(),
                user_id=user.pk,
                status=body.get("status"),
                until=body.get("until"),
            )
        return Response({"status": status})


# Scale mode: Redis, where presence lives, cannot be reached now (503, Retry-After: 5).
PresenceUnavailable = live_presence.PresenceUnavailable


@contextlib.contextmanager
def _redis_guard(message: str = live_presence.UNAVAILABLE_MESSAGE) -> Iterator[None]:
    """Redis away answers 503 with Retry-After and ``message`` (said once in the log by
    the doorbell's link), not a 500."""
    try:
        yield
    except Exception as error:
        hub = Hub.current()
        if not hub.redis_lost(error):
            raise
        raise PresenceUnavailable(message) from None
