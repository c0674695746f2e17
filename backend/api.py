"""Shared REST plumbing: one error shape for every endpoint.

Every error response is ``{"error": {"code": ..., "message": ..., "detail"?: ...}}``
with a plain-language message a desktop client can show as it is.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import BackendError


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in {"detail", "non_field_errors"} else f"{key}: {inner}"
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, BackendError):
        body: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.detail:
            body["detail"] = exc.detail
        return Response({"error": body}, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        body = {"code": code, "message": _first_message(exc.detail)}
        if isinstance(exc, exceptions.ValidationError):
            body["detail"] = exc.detail
        response.data = {"error": body}
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response.data["error"]["message"] = (
            response.data["error"]["message"] or "Log in again: your session has ended."
        )
    return response
