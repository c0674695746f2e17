"""Auth and account endpoints: log in, refresh, log out, who am I."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView

from backend.api import ErrorSerializer, request_user
from backend.users.selectors import user_profile
from backend.users.serializers import (
    LoginInputSerializer,
    LoginSerializer,
    MeOutputSerializer,
    RefreshInputSerializer,
    TokenPairSerializer,
)
from backend.users.services import session_logout, session_refresh


class LoginApi(TokenObtainPairView):
    serializer_class = LoginSerializer
    # Password guessing is throttled per client address (REST_FRAMEWORK's "login" rate).
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        operation_id="auth_login",
        request=LoginInputSerializer,
        responses={200: TokenPairSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        auth=[],
        summary="Log in with a username and password.",
        description="A wrong password and a disabled account get the same 401. "
        "Throttled per client address.",
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


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
