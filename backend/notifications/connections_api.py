"""``GET /api/connections/``: who is connected now, on every server process (staff only).

Thin: ``connections.connected_now`` reads it (the hub's store on its event loop, the
users from the database); Redis away answers 503 ``connections_unavailable`` with
Retry-After.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ErrorSerializer
from backend.errors import InvalidInput
from backend.notifications import connections
from backend.notifications.hub import Hub
from backend.notifications.serializers import ActorSerializer
from backend.numbers import positive_id
from backend.users.api import IsStaff


class IsStaffReader(IsStaff):
    message = "Only staff can see who is connected."


class ConnectionClientSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        choices=list(connections.CLIENT_KINDS),
        help_text="desktop: the tray app (or its headless mode); web: the web companion "
        "(a browser on its session cookie); other: anything else; unknown: a server "
        "process that did not say.",
    )
    version = serializers.CharField(
        allow_null=True,
        help_text="The app's version, or the browser's name and major version.",
    )
    user_agent = serializers.CharField(
        allow_blank=True,
        help_text="The User-Agent, without control characters, at most 200 characters.",
    )


class ConnectionSerializer(serializers.Serializer[Any]):
    user = ActorSerializer(allow_null=True, help_text="null: the account no longer exists.")
    client = ConnectionClientSerializer()
    transport = serializers.ChoiceField(
        choices=list(connections.TRANSPORTS), allow_null=True, help_text="null: unknown."
    )
    connected_at = serializers.DateTimeField(
        allow_null=True, help_text="When it said hello (ISO 8601, UTC); null: unknown."
    )
    process = serializers.CharField(help_text="The id of the server process it is on.")


class ConnectionListSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Connections.")
    users = serializers.IntegerField(help_text="Distinct users among them.")
    connections = ConnectionSerializer(many=True)


class ConnectionListApi(APIView):
    permission_classes = [IsStaffReader]

    @extend_schema(
        tags=["operations"],
        operation_id="connection_list",
        parameters=[
            OpenApiParameter("user", OpenApiTypes.INT, description="Only this user's connections.")
        ],
        responses={
            200: ConnectionListSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            503: ErrorSerializer,
        },
        summary="Who is connected now, on every server process (staff only).",
        description="Every live WebSocket and HTTP stream, oldest first: the user, the "
        "client (kind, version, User-Agent), the transport, since when, and the server "
        "process. 400 `invalid_user` for a `user` that is not an id; 403 for anyone not "
        "staff; 503 `connections_unavailable` with Retry-After while the server cannot "
        "reach Redis (scale mode).",
    )
    def get(self, request: Request) -> Response:
        user_id = None
        raw = request.query_params.get("user")
        if raw is not None:
            user_id = positive_id(raw)
            if user_id is None:
                raise InvalidInput(
                    "user must be a user id (a positive whole number).", code="invalid_user"
                )
        return Response(connections.connected_now(hub=Hub.current(), user_id=user_id))
