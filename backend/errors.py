"""The backend's one exception family.

Services and selectors raise these; the REST layer and the WebSocket consumer
turn them into a response or an error frame with the same ``code`` and message,
so every client sees the same words for the same problem.
"""

from __future__ import annotations

from typing import Any


class BackendError(Exception):
    """Base of every error the backend raises on purpose."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.detail = detail


class InvalidInput(BackendError):
    """The request is well-formed but its content is wrong (type, range, size)."""

    code = "invalid"
    status = 400


class NotAuthenticated(BackendError):
    code = "not_authenticated"
    status = 401


class Forbidden(BackendError):
    code = "forbidden"
    status = 403


class NotFound(BackendError):
    """Also raised for objects that exist but belong to someone else, so ids don't leak."""

    code = "not_found"
    status = 404


class Conflict(BackendError):
    code = "conflict"
    status = 409


class RequestTooLarge(BackendError):
    """The request body is over the server's limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``)."""

    code = "request_too_large"
    status = 413
