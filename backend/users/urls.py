from django.urls import URLPattern, URLResolver, path

from backend.users.api import (
    LoginApi,
    LogoutApi,
    MeApi,
    PasswordChangeApi,
    RefreshApi,
    UserListApi,
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/token/", LoginApi.as_view(), name="auth-token"),
    path("auth/token/refresh/", RefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/logout/", LogoutApi.as_view(), name="auth-logout"),
    path("auth/password/", PasswordChangeApi.as_view(), name="auth-password"),
    path("me", MeApi.as_view(), name="me"),
    path("users/", UserListApi.as_view(), name="users"),
]
