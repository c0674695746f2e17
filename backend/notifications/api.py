"""REST endpoints of the caller's inbox and of the publish API.

Thin by design: parse, call one selector or service, render. The inbox
actions answer with the new unread count, and the services also broadcast it
to the user's sockets, so every desktop of that user agrees.
"""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend import metrics
from backend.api import ErrorSerializer, error_body, request_user
from backend.errors import InvalidInput, NotFound
from backend.notifications.authentication import ApiKeyAuthentication
from backend.notifications.models import ApiKey
from backend.notifications.payloads import inbox_payload
from backend.notifications.publish_input import parse_batch, parse_publish, parse_publish_many
from backend.notifications.selectors import (
    INBOX_PAGE_MAX,
    inbox_get,
    inbox_list,
    inbox_state,
    validate_seq,
)
from backend.notifications.serializers import (
    InboxChangeSerializer,
    InboxIdsInputSerializer,
    InboxItemSerializer,
    InboxPageSerializer,
    InboxStateSerializer,
    MarkAllReadInputSerializer,
    PublishBatchInputSerializer,
    PublishBatchOutputSerializer,
    PublishInputSerializer,
    PublishOutputSerializer,
)
from backend.notifications.services import (
    BatchOutcome,
    InboxChange,
    api_key_publisher,
    inbox_delete,
    inbox_mark_all_read,
    inbox_mark_read,
    inbox_mark_unread,
    notification_create_batch,
    notification_publish,
    user_publisher,
)
from backend.numbers import is_id, whole_number
from backend.users.models import User
from backend.users.tokens import SessionJWTAuthentication

INBOX_PAGE_DEFAULT = 50
_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer}


def _whole_number(raw: str, *, name: str, code: str) -> int:
    number = whole_number(raw)
    if number is None:
        raise InvalidInput(f"{name} must be a whole number", code=code)
    return number


def _seq(raw: object, *, name: str) -> int:
    if isinstance(raw, str):
        raw = _whole_number(raw, name=name, code="invalid_cursor")
    return validate_seq(raw, name=name)


def _cursor(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    return _seq(raw, name=name)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return INBOX_PAGE_DEFAULT
    limit = _whole_number(raw, name="limit", code="invalid_limit")
    if limit < 1:
        raise InvalidInput("limit must be at least 1", code="invalid_limit")
    return min(limit, INBOX_PAGE_MAX)


def _unread(request: Request) -> bool | None:
    raw = request.query_params.get("unread")
    if raw is None or raw == "":
        return None
    lowered = raw.strip().lower()
    if lowered in {"true", "1"}:
        return True
    if lowered in {"false", "0"}:
        return False
    raise InvalidInput("unread must be true or false", code="invalid_filter")


def _project(request: Request) -> int | None:
    raw = request.query_params.get("project")
    if raw is None or raw == "":
        return None
    project_id = _whole_number(raw, name="project", code="invalid_filter")
    if not is_id(project_id):
        raise InvalidInput("project must be a project id", code="invalid_filter")
    return project_id


def _change(change: InboxChange) -> Response:
    return Response(
        InboxChangeSerializer(
            {
                "changed": change.changed,
                "not_found": change.not_found,
                "unread_count": change.unread_count,
            }
        ).data
    )


def _ids(request: Request) -> Any:
    # The service checks the list itself, with the same words as over the WebSocket.
    return request.data.get("ids") if isinstance(request.data, dict) else None


def _checked_inbox_id(inbox_id: int) -> int:
    # The URL converter takes any digits; past int64 it can only be nobody's row.
    if not is_id(inbox_id):
        raise NotFound("No such notification.")
    return inbox_id


class InboxListApi(APIView):
    @extend_schema(
        operation_id="inbox_list",
        parameters=[
            OpenApiParameter(
                "after_seq",
                OpenApiTypes.INT64,
                description="Rows above this seq, oldest first (catching up).",
            ),
            OpenApiParameter(
                "before_seq",
                OpenApiTypes.INT64,
                description="Rows below this seq, newest first (browsing). "
                "Without either cursor: the newest rows, newest first.",
            ),
            OpenApiParameter(
                "limit",
                OpenApiTypes.INT,
                description=f"Rows per page, {INBOX_PAGE_DEFAULT} unless given, "
                f"at most {INBOX_PAGE_MAX}.",
            ),
            OpenApiParameter("unread", OpenApiTypes.BOOL, description="Only unread, or only read."),
            OpenApiParameter("project", OpenApiTypes.INT64, description="Only this project's."),
        ],
        responses={200: InboxPageSerializer, **_ERRORS},
        summary="A page of the caller's notifications.",
    )
    def get(self, request: Request) -> Response:
        user = request_user(request)
        after_seq = _cursor(request, "after_seq")
        before_seq = _cursor(request, "before_seq")
        limit = _limit(request)
        unread = _unread(request)
        project_id = _project(request)
        state = inbox_state(user_id=user.pk)
        rows = inbox_list(
            user_id=user.pk,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            unread=unread,
            project_id=project_id,
        )
        # A full page may have more behind it; a short one is the end.
        more = len(rows) == limit
        upward = after_seq is not None
        return Response(
            {
                "results": [inbox_payload(row) for row in rows],
                "next_after_seq": rows[-1].seq if upward and more else None,
                "next_before_seq": rows[-1].seq if not upward and more else None,
                "latest_seq": state.latest_seq,
                "unread_count": state.unread_count,
            }
        )


class InboxUnreadCountApi(APIView):
    @extend_schema(
        operation_id="inbox_unread_count",
        responses={200: InboxStateSerializer, 401: ErrorSerializer},
        summary="The caller's unread count and latest seq: what the tray badge shows.",
    )
    def get(self, request: Request) -> Response:
        state = inbox_state(user_id=request_user(request).pk)
        return Response(
            InboxStateSerializer(
                {"unread_count": state.unread_count, "latest_seq": state.latest_seq}
            ).data
        )


class InboxDetailApi(APIView):
    @extend_schema(
        operation_id="inbox_get",
        responses={200: InboxItemSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
        summary="One of the caller's notifications.",
    )
    def get(self, request: Request, inbox_id: int) -> Response:
        row = inbox_get(user_id=request_user(request).pk, inbox_id=_checked_inbox_id(inbox_id))
        return Response(inbox_payload(row))

    @extend_schema(
        operation_id="inbox_delete_one",
        responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer},
        summary="Delete one of the caller's notifications (for the caller only).",
    )
    def delete(self, request: Request, inbox_id: int) -> Response:
        change = inbox_delete(user_id=request_user(request).pk, ids=[_checked_inbox_id(inbox_id)])
        if change.not_found:
            raise NotFound("No such notification.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class InboxMarkReadApi(APIView):
    @extend_schema(
        operation_id="inbox_mark_read",
        request=InboxIdsInputSerializer,
        responses={200: InboxChangeSerializer, **_ERRORS},
        summary="Mark notifications read. Already-read ones stay as they are.",
    )
    def post(self, request: Request) -> Response:
        return _change(inbox_mark_read(user_id=request_user(request).pk, ids=_ids(request)))


class InboxMarkUnreadApi(APIView):
    @extend_schema(
        operation_id="inbox_mark_unread",
        request=InboxIdsInputSerializer,
        responses={200: InboxChangeSerializer, **_ERRORS},
        summary="Mark notifications unread again.",
    )
    def post(self, request: Request) -> Response:
        return _change(inbox_mark_unread(user_id=request_user(request).pk, ids=_ids(request)))


class InboxMarkAllReadApi(APIView):
    @extend_schema(
        operation_id="inbox_mark_all_read",
        request=MarkAllReadInputSerializer,
        responses={200: InboxChangeSerializer, **_ERRORS},
        summary="Mark every notification up to a seq read (all when no seq is given).",
    )
    def post(self, request: Request) -> Response:
        raw = request.data.get("up_to_seq") if isinstance(request.data, dict) else None
        up_to_seq = None if raw is None else _seq(raw, name="up_to_seq")
        return _change(inbox_mark_all_read(user_id=request_user(request).pk, up_to_seq=up_to_seq))


class InboxDeleteApi(APIView):
    @extend_schema(
        operation_id="inbox_delete",
        request=InboxIdsInputSerializer,
        responses={200: InboxChangeSerializer, **_ERRORS},
        summary="Delete notifications for the caller. Deleting twice is not an error.",
    )
    def post(self, request: Request) -> Response:
        return _change(inbox_delete(user_id=request_user(request).pk, ids=_ids(request)))


class CanPublish(BasePermission):
    """Staff users and integration keys may publish; other users may not."""

    message = "Only staff and integration keys can publish notifications."
    code = "forbidden"

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def _publisher(request: Request) -> tuple[User | None, str]:
    """Who publishes: (actor, publisher scope) of a staff user or an integration key.

    A key is not a person: its notifications have no actor. Idempotency keys are
    scoped to the integration key or the staff user that sends them.
    """
    if isinstance(request.auth, ApiKey):
        return None, api_key_publisher(request.auth)
    actor = request_user(request)
    return actor, user_publisher(actor)


class MeasuredPublish(APIView):
    """A publish endpoint whose answers (every status, refusals too) are counted and
    timed in tray_publish_requests_total and tray_publish_duration_seconds."""

    publish_kind = "single"

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        response = super().dispatch(request, *args, **kwargs)
        metrics.publish_answered(
            self.publish_kind, response.status_code, time.perf_counter() - started
        )
        return response


class PublishApi(MeasuredPublish):
    # Bearer first: its WWW-Authenticate header is the one a 401 carries.
    authentication_classes = [SessionJWTAuthentication, ApiKeyAuthentication]
    permission_classes = [CanPublish]

    @extend_schema(
        operation_id="notification_publish",
        request=PublishInputSerializer,
        responses={
            200: PublishOutputSerializer,
            201: PublishOutputSerializer,
            403: ErrorSerializer,
            **_ERRORS,
        },
        summary="Send a notification to users, projects, roles or everyone.",
        description="Authenticate as a staff user (Bearer) or with an integration key "
        "(`Authorization: Api-Key <key>`). 201 when created; 200 when the idempotency "
        "key named an earlier notification of the same publisher (the same integration "
        "key, or the same staff user), which is returned instead.",
    )
    def post(self, request: Request) -> Response:
        # Not the serializer (it documents the body): the same checks by hand, a
        # quarter of a publish's CPU cheaper, with the same error bodies.
        item = parse_publish(request.data)
        actor, publisher = _publisher(request)
        result = notification_publish(item=item, actor=actor, publisher=publisher)
        body = PublishOutputSerializer(
            {
                "id": result.message.pk,
                "recipients": result.recipient_count,
                "created": result.created,
            }
        ).data
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


def _batch_result(index: int, outcome: BatchOutcome) -> dict[str, Any]:
    if outcome.error is not None:
        return {"index": index, "status": "error", "error": error_body(outcome.error)}
    return {
        "index": index,
        "status": outcome.status,
        "id": outcome.message_id,
        "recipients": outcome.recipients,
    }


class PublishBatchApi(MeasuredPublish):
    publish_kind = "batch"
    authentication_classes = [SessionJWTAuthentication, ApiKeyAuthentication]
    permission_classes = [CanPublish]

    @extend_schema(
        operation_id="notification_publish_batch",
        request=PublishBatchInputSerializer,
        responses={200: PublishBatchOutputSerializer, 403: ErrorSerializer, **_ERRORS},
        summary="Send many notifications in one request and one transaction.",
        description="Who may, and each item's body, as for POST /api/notifications/. "
        "200 with one result per item, in order: created, duplicate (the idempotency "
        "key named an earlier notification of the same publisher, or an earlier item "
        "of this batch) or error (that item's error body; the other items are still "
        'created). 400 when the body is not `{"notifications": [...]}` with 1 to 1000 '
        "items.",
    )
    def post(self, request: Request) -> Response:
        items = parse_publish_many(parse_batch(request.data))
        actor, publisher = _publisher(request)
        outcomes = notification_create_batch(items=items, actor=actor, publisher=publisher)
        results = [_batch_result(index, outcome) for index, outcome in enumerate(outcomes)]
        statuses = [outcome.status for outcome in outcomes]
        return Response(
            {
                "results": results,
                "created": statuses.count("created"),
                "duplicates": statuses.count("duplicate"),
                "errors": statuses.count("error"),
            }
        )
