from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from backend.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("backend.users.urls")),
    path("api/", include("backend.projects.urls")),
    path("api/", include("backend.notifications.urls")),
]
