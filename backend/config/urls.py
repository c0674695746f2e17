from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from backend.api_refusals import api_not_found
from backend.health import healthz, readyz
from backend.metrics_endpoint import metrics_view
from backend.notifications.admin import connected_now_view
from backend.users.admin import rate_limited_admin_login

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Readiness; the running server answers it before Django (backend/health.py).
    path("readyz", readyz, name="readyz"),
    # Prometheus scrapes this process here; off (404) without TRAY_METRICS_TOKEN.
    path("metrics", metrics_view, name="metrics"),
    # Before the admin's own URLs: the same login, rate limited like the API's.
    path("admin/login/", rate_limited_admin_login, name="admin-login"),
    # Staff: who is connected now, on every process (linked from the admin's index).
    path(
        "admin/connected/",
        admin.site.admin_view(connected_now_view),
        name="admin-connected-now",
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("backend.users.urls")),
    path("api/", include("backend.projects.urls")),
    path("api/", include("backend.notifications.urls")),
    path("api/", include("backend.attention.urls")),
    # Last: any other /api/ path answers the API's JSON 404, not Django's HTML page.
    re_path(r"^api/(?P<rest>.*)$", api_not_found, name="api-not-found"),
    # The web companion at the root: the inbox, and a page for every link a
    # notification carries (backend/web/).
    path("", include("backend.web.urls")),
]

# Pages outside the API that do not exist (or are not the visitor's) say so in the
# web companion's frame; the API's own 404s stay JSON (backend/api_refusals.py).
handler404 = "backend.web.views.not_found"
# A database fault anywhere (stopped, restarting, disk full, read-only) answers 503/507
# with Retry-After instead of a 500 (backend/db_faults.py); other errors stay Django's 500.
handler500 = "backend.db_faults.server_error"
