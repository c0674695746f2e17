"""GET and PATCH /api/attention/: the logged-in user's attention settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ErrorSerializer, WriteRateThrottle, request_user
from backend.attention.selectors import attention_of
from backend.attention.serializers import AttentionChangeSerializer, AttentionSerializer
from backend.attention.services import attention_update

TAGS = ["attention"]


class AttentionApi(APIView):
    # Changes are throttled per user (REST_FRAMEWORK's "attention_change" rate).
    throttle_classes = [WriteRateThrottle]
    throttle_scope = "attention_change"

    @extend_schema(
        tags=TAGS,
        operation_id="attention_read",
        responses={200: AttentionSerializer, 401: ErrorSerializer},
        summary="Your do-not-disturb, quiet hours, mutes and priority threshold.",
    )
    def get(self, request: Request) -> Response:
        return Response(attention_of(user_id=request_user(request).pk))

    @extend_schema(
        tags=TAGS,
        operation_id="attention_change",
        request=AttentionChangeSerializer,
        responses={200: AttentionSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        summary="Change some of them; every device of yours gets attention_changed.",
        description="Keys left out stay as they are. A bad value is a 400 whose "
        "error.detail.fields names each bad setting. Turning do-not-disturb on or off "
        "also shows you as dnd (or back online) to your teammates.",
    )
    def patch(self, request: Request) -> Response:
        user = request_user(request)
        return Response(attention_update(user_id=user.pk, changes=request.data))
