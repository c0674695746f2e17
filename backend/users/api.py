"""Auth and account endpoints: log in, refresh, log out, who am I, change my password,
and (staff) add people."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import Token

from backend.api import ErrorSerializer, WriteRateThrottle, request_user
from backend.errors import NotAuthenticated
from backend.users.models import User
from backend.users.selectors import user_profile
from backend.users.serializers import (
    WRONG_CREDENTIALS,
    AccountOutputSerializer,
    LoginInputSerializer,
    MeOutputSerializer,
    PasswordChangeInputSerializer,
    RefreshInputSerializer,
    TokenPairSerializer,
    UserCreateInputSerializer,
)
from backend.users.services import (
    password_change,
    session_logout,
    session_refresh,
    session_reissue,
    session_start,
    user_create,
)
from backend.users.throttling import LoginRateThrottle
from backend.users.tokens import SESSION_CLAIM


class LoginApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    # Password guessing is throttled per client address (REST_FRAMEWORK's "login" rate),
    # before any password is hashed; the request runs in the login lane's own threads
    # (backend/login_lane.py), so the hashing never holds up anyone else's request.
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        operation_id="auth_login",
        request=LoginInputSerializer,
        responses={200: TokenPairSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        auth=[],
        summary="Log in with a username and password.",
        description="A wrong password and a disabled account get the same 401. "
        "Throttled per client address.",
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if not isinstance(user, User):
            # A wrong password and an inactive account answer alike (ModelBackend refuses
            # both), so the endpoint does not reveal which accounts exist.
            raise NotAuthenticated(str(WRONG_CREDENTIALS), code="no_active_account")
        pair = session_start(user=user)
        return Response(TokenPairSerializer(pair).data)


class RefreshApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        operation_id="auth_refresh",
        request=RefreshInputSerializer,
        responses={200: TokenPairSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        auth=[],
        summary="Trade a refresh token for a new pair; the old one stops working.",
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = session_refresh(refresh=serializer.validated_data["refresh"])
        return Response(TokenPairSerializer(pair).data)


class LogoutApi(APIView):
    # The refresh token in the body is the credential: an expired access token
    # must not stop a user from logging out.
    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        operation_id="auth_logout",
        request=RefreshInputSerializer,
        responses={204: None, 400: ErrorSerializer, 401: ErrorSerializer},
        auth=[],
        summary="End the session of a refresh token. Repeating it is harmless.",
        description="The session's access tokens stop working at once and its open "
        "WebSockets close with 4001.",
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session_logout(refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(
        operation_id="me",
        responses={200: MeOutputSerializer, 401: ErrorSerializer},
        summary="The logged-in account, its role and its projects.",
    )
    def get(self, request: Request) -> Response:
        profile = user_profile(user=request_user(request))
        return Response(MeOutputSerializer(profile).data)


class PasswordChangeApi(APIView):
    # Guessing the current password is guessing a password: the login's budget per
    # client address, and the hashing runs in the login lane (backend/login_lane.py).
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        operation_id="auth_password_change",
        request=PasswordChangeInputSerializer,
        responses={200: TokenPairSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        summary="Change your own password; your other sessions end.",
        description="Every other session of the account ends: its tokens stop working "
        "and its WebSockets close with 4001. This session goes on, with a fresh pair: "
        "its earlier refresh token stops working. A wrong current password is 400 "
        "`wrong_password`; a new one the password validators refuse is 400 "
        "`invalid_password`. Throttled per client address, with the login.",
    )
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request_user(request)
        token = request.auth
        session_id = token.payload.get(SESSION_CLAIM) if isinstance(token, Token) else None
        if not isinstance(session_id, str):
            raise NotAuthenticated("Log in first.")
        password_change(
            user_id=user.pk,
            current_password=serializer.validated_data["current_password"],
            new_password=serializer.validated_data["new_password"],
            keep_session_id=session_id,
        )
        pair = session_reissue(user_id=user.pk, session_id=session_id)
        return Response(TokenPairSerializer(pair).data)


class IsStaff(BasePermission):
    message = "Only staff can add people."
    code = "staff_only"

    def has_permission(self, request: Request, view: object) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class UserListApi(APIView):
    permission_classes = [IsStaff]
    # Adding people is throttled per user, with adding them to projects ("member_add").
    throttle_classes = [WriteRateThrottle]
    throttle_scope = "member_add"

    @extend_schema(
        operation_id="user_create",
        request=UserCreateInputSerializer,
        responses={
            201: AccountOutputSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            409: ErrorSerializer,
        },
        summary="Add a person (staff only).",
        description="An active account that logs in with this password. 400 with the "
        "fields' errors under `detail` (a malformed username or email, a password the "
        "validators refuse: `invalid_password`, an unknown role: `unknown_role`); 409 "
        "`username_taken` for a username in use (compared without case); 403 for "
        "anyone not staff.",
    )
    def post(self, request: Request) -> Response:
        serializer = UserCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(**serializer.validated_data)
        return Response(AccountOutputSerializer(user).data, status=status.HTTP_201_CREATED)
