"""Shared REST plumbing: one error shape for every endpoint.

Every error response is ``{"error": {"code": ..., "message": ..., "detail"?: ...}}``
with a plain-language message a desktop client can show as it is.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from backend import db_faults
from backend.errors import BackendError, NotAuthenticated, RequestTooLarge
from backend.throttling import SharedCounterThrottle
from backend.users.models import User
from backend.users.tokens import ACCOUNT_DISABLED, SESSION_ENDED

# Plain words for the 401s of simplejwt, whose own messages speak of token classes.
_AUTH_MESSAGES = {
    "token_not_valid": SESSION_ENDED,
    "user_inactive": ACCOUNT_DISABLED,
    "user_not_found": "This account no longer exists.",
    "password_changed": "Your password was changed. Log in again.",
}
# What a client that got a 401 should send next time; matches JWTAuthentication's realm.
WWW_AUTHENTICATE = 'Bearer realm="api"'


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in {"detail", "non_field_errors"} else f"{key}: {inner}"
    return str(detail)


def _token_reason(detail: dict[str, Any]) -> str:
    """The first concrete reason simplejwt gave ("Token is expired"), for logs and support."""
    for entry in detail.get("messages") or []:
        if isinstance(entry, dict) and entry.get("message"):
            return str(entry["message"])
    return str(detail.get("detail", ""))


def _too_large() -> RequestTooLarge:
    limit: int = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return RequestTooLarge(
        f"The request body is too large: send at most {limit} bytes.", limit=limit
    )


def error_body(exc: BackendError) -> dict[str, Any]:
    """``{"code", "message", "detail"?}``: what goes under "error" for ``exc``.

    Also one item's error in a batch answer, in the same words as a single request.
    """
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail:
        body["detail"] = exc.detail
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        # Raised by request.body when DRF parses the body. Left to Django, this
        # SuspiciousOperation would become its HTML "Bad Request" page.
        exc = _too_large()
    # The database is away, full or read-only: 503/507 with Retry-After, not a 500.
    exc = db_faults.classify(exc) or exc
    if isinstance(exc, BackendError):
        body = error_body(exc)
        rendered = Response({"error": body}, status=exc.status)
        if exc.status == status.HTTP_401_UNAUTHORIZED:
            rendered["WWW-Authenticate"] = WWW_AUTHENTICATE
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int):
            # An outage (the database, Redis), said once in the log where it was noticed.
            rendered["Retry-After"] = str(retry_after)
            rendered._has_been_logged = True  # type: ignore[attr-defined]
        return rendered
    # DRF converts these two itself, but into new objects this function would not see.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        detail = exc.detail
        if isinstance(detail, dict) and "code" in detail and "detail" in detail:
            # simplejwt's errors carry their code as a value: {"detail", "code", "messages"?}.
            code = str(detail["code"])
            body = {"code": code, "message": _AUTH_MESSAGES.get(code, str(detail["detail"]))}
            if code == "token_not_valid":
                body["detail"] = {"reason": _token_reason(detail)}
        else:
            body = {"code": code, "message": _first_message(detail)}
            if isinstance(exc, exceptions.ValidationError):
                body["detail"] = detail
        response.data = {"error": body}
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response.data["error"]["message"] = (
            response.data["error"]["message"] or "Log in again: your session has ended."
        )
    return response


def request_user(request: Request) -> User:
    """The authenticated account of ``request`` (views behind IsAuthenticated)."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated("Log in first.")
    return user


class WriteRateThrottle(SharedCounterThrottle, ScopedRateThrottle):
    """DRF's per-scope throttle (per user once logged in), counting writes only.

    A view that lists and creates (``/api/projects/``) limits how fast things are
    created without slowing down the reads the clients poll. The view names its
    scope in ``throttle_scope``; the rates are REST_FRAMEWORK's
    ``DEFAULT_THROTTLE_RATES``. Past the rate the answer is 429 with Retry-After.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class ErrorBodySerializer(serializers.Serializer[None]):
    code = serializers.CharField(help_text="Stable, machine-readable, e.g. invalid_cursor.")
    message = serializers.CharField(help_text="Plain words a client can show as they are.")
    detail = serializers.JSONField(required=False, help_text="Per-field errors and the like.")


class ErrorSerializer(serializers.Serializer[None]):
    """The shape of every error response."""

    error = ErrorBodySerializer()


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that takes only JSON integers: no "5", no 5.0, no true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes only JSON true and false, not "yes" or 1."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
