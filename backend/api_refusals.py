"""The REST API's answers to requests no endpoint takes: a path it does not have, a
method an endpoint does not allow.

Both answer in the API's error shape (backend/api.py), so a client shows the message
as it is, instead of Django's HTML "Not Found" page for an unknown ``/api/`` path, or
an authentication error for a method the endpoint would refuse anyway (a GET on the
publish endpoint used to say "Only staff and integration keys can publish").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from rest_framework.views import APIView

View = Callable[..., HttpResponse]

# The methods Django's View dispatches, in the order an Allow header lists them.
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _error(status: int, code: str, message: str) -> JsonResponse:
    # Compact, as DRF renders every other error.
    return JsonResponse(
        {"error": {"code": code, "message": message}},
        status=status,
        json_dumps_params={"separators": (",", ":")},
    )


def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any ``/api/`` path no endpoint has: 404, and the path with a slash where that
    is one (every endpoint's path ends with a slash)."""
    path = request.path_info
    message = f"The API has no endpoint at {path}."
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            pass
        else:
            if match.func is not api_not_found:
                message += f" Did you mean {path}/ (with the slash)?"
    return _error(404, "not_found", message)


def allowed_methods(view: View) -> list[str] | None:
    """The HTTP methods ``view`` (as Django resolved it) answers, upper case, in Allow
    header order; None for a view that is not the REST API's (DRF)."""
    cls = getattr(view, "cls", None)
    if not (isinstance(cls, type) and issubclass(cls, APIView)):
        return None
    names = {m for m in cls.http_method_names if hasattr(cls, m)}
    if "get" in names:
        names.add("head")  # Django's View answers HEAD with GET
    return [m.upper() for m in _METHODS if m in names]


class AllowedMethodsMiddleware:
    """Answers 405 with an Allow header before the REST API authenticates a request
    whose method the endpoint does not allow (DRF checks the method last)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: View, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        allowed = allowed_methods(view)
        method = (request.method or "").upper()
        if allowed is None or method in allowed:
            return None
        # HEAD and OPTIONS go in the Allow header only: nobody means to call them.
        takes = [m for m in allowed if m not in ("HEAD", "OPTIONS")] or allowed
        response = _error(
            405,
            "method_not_allowed",
            f"{method} is not allowed on {request.path_info}: it takes {' or '.join(takes)}.",
        )
        response["Allow"] = ", ".join(allowed)
        return response
