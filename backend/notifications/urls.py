from django.urls import URLPattern, URLResolver, path

from backend.notifications.api import (
    InboxDeleteApi,
    InboxDetailApi,
    InboxListApi,
    InboxMarkAllReadApi,
    InboxMarkReadApi,
    InboxMarkUnreadApi,
    InboxUnreadCountApi,
    PublishApi,
    PublishBatchApi,
)
from backend.notifications.connections_api import ConnectionListApi
from backend.notifications.presence_api import PresenceStatusApi, ProjectPresenceApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("inbox/", InboxListApi.as_view(), name="inbox-list"),
    path("inbox/unread-count/", InboxUnreadCountApi.as_view(), name="inbox-unread-count"),
    path("inbox/mark-read/", InboxMarkReadApi.as_view(), name="inbox-mark-read"),
    path("inbox/mark-unread/", InboxMarkUnreadApi.as_view(), name="inbox-mark-unread"),
    path("inbox/mark-all-read/", InboxMarkAllReadApi.as_view(), name="inbox-mark-all-read"),
    path("inbox/delete/", InboxDeleteApi.as_view(), name="inbox-delete"),
    path("inbox/<int:inbox_id>/", InboxDetailApi.as_view(), name="inbox-detail"),
    path("notifications/", PublishApi.as_view(), name="notification-publish"),
    path("notifications/batch/", PublishBatchApi.as_view(), name="notification-publish-batch"),
    # Presence for clients without a socket (the HTTP stream's); the socket's
    # subscribe_presence and set_status, over REST.
    path(
        "projects/<str:project_id>/presence/",
        ProjectPresenceApi.as_view(),
        name="project-presence",
    ),
    path("presence/status/", PresenceStatusApi.as_view(), name="presence-status"),
    # Staff: who is connected now, on every process.
    path("connections/", ConnectionListApi.as_view(), name="connection-list"),
]
