from django.urls import URLPattern, URLResolver, path

from backend.attention.api import AttentionApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("attention/", AttentionApi.as_view(), name="attention"),
]
