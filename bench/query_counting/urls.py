"""The product's URLs plus ``GET /bench/queries``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from backend.config.urls import urlpatterns as product_urlpatterns
from bench.query_counting.settings import settle_statements, statements


def queries(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"queries": statements(), "settle": settle_statements()})


urlpatterns = [path("bench/queries", queries), *product_urlpatterns]
