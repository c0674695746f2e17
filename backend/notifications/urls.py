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
]
