"""Auth and account endpoints: log in, refresh, log out, who am I."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ErrorSerializer, request_user
from backend.errors import NotAuthenticated
from backend.users.models import User
from backend.users.selectors import user_profile
from backend.users.serializers import (
    WRONG_CREDENTIALS,
    LoginInputSerializer,
    MeOutputSerializer,
    RefreshInputSerializer,
    TokenPairSerializer,
)
from backend.users.services import session_logout, session_refresh, session_start
from backend.users.throttling import LoginRateThrottle


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
