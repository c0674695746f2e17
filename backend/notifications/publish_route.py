"""The single publish (``POST /api/notifications/``) without Django's request machinery.

A publish over HTTP cost ~4x the CPU of the service it calls: the middleware
chain, DRF's request, content negotiation and renderer, and two queries of
authentication came on top of ``notification_create``. Here, for a request that
is well-formed and allowed, only what the answer depends on is done: the
authorization header is checked with the cached checks REST uses
(``token_user_cached``, ``cached_api_key``), the body parsed as DRF parses it,
validated as the view validates it (``parse_publish``), the service called, and the answer rendered
as DRF renders it. The headers the middleware adds (security headers, the CSP)
are learned once per host from the full stack (``ResponseHeaders``).

Everything else (an error of any kind, a header or content type out of the
ordinary) is answered by the full stack as before (``PublishApi``), so error bodies
and their order of checks stay exactly what they were: the fast path says
"not mine" (None) and the caller hands the request on. Nothing is written before
that decision but a notification that is then answered.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, transaction
from rest_framework.utils.json import strict_constant
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from backend import log_context
from backend.errors import InvalidInput
from backend.notifications.authentication import KEYWORD, cached_api_key
from backend.notifications.publish_input import PublishItem, parse_publish
from backend.notifications.services import (
    NotificationResult,
    api_key_publisher,
    notification_publish,
    user_publisher,
)
from backend.users.models import User
from backend.users.tokens import SessionJWTAuthentication

PUBLISH_PATH = "/api/notifications/"
# The content types DRF's JSON parser reads as UTF-8 (anything else goes the full way).
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
_API_KEY = KEYWORD.lower()
# Generous for "tnk_" + 43 characters, as ApiKeyAuthentication allows.
_MAX_KEY_LENGTH = 256
_bearer = SessionJWTAuthentication()


@dataclass(frozen=True, slots=True)
class Request:
    """What a publish depends on: the Authorization header and the body; and the log
    context it is written in (its request id; the publisher's ids are bound there)."""

    authorization: bytes
    body: bytes
    # Entered on the database thread while this request is authenticated and written,
    # so those lines carry its ids and the next request's carry none of them.
    context: contextvars.Context = field(default_factory=contextvars.Context)


@dataclass(frozen=True, slots=True)
class Publish:
    item: PublishItem
    actor: User | None
    publisher: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def takes(content_type: bytes | None, authorization: bytes | None) -> bool:
    """Whether a POST with these headers may go the fast way (decided before its body)."""
    return (
        authorization is not None
        and content_type is not None
        and content_type.lower() in _JSON_TYPES
    )


def _caller(authorization: bytes) -> tuple[User | None, str] | None:
    """(actor, publisher) of a staff Bearer token or an active key; None for anything else."""
    parts = authorization.split()
    if len(parts) != 2:
        return None
    scheme, credential = parts
    if scheme == b"Bearer":
        try:
            user = _bearer.get_user(_access_token(credential))
        except Exception:  # every refusal is the full stack's to word
            return None
        if not user.is_staff:
            return None
        return user, user_publisher(user)
    if scheme.decode("latin-1").lower() != _API_KEY or len(credential) > _MAX_KEY_LENGTH:
        return None
    try:
        raw = credential.decode("ascii")
    except UnicodeDecodeError:
        return None
    key = cached_api_key(raw)
    if key is None:
        return None
    log_context.bind_api_key(key.prefix)
    return None, api_key_publisher(key)


# Raw access token -> (monotonic deadline, the token as simplejwt verified it).
_verified: dict[bytes, tuple[float, Token]] = {}
_VERIFIED_SWEEP = 4096


def _access_token(raw: bytes) -> Token:
    """The verified access token; its signature checked once per TRAY_AUTH_CACHE_SECONDS
    (~0.1 ms each), its expiry every time."""
    now = time.monotonic()
    entry = _verified.get(raw)
    if entry is not None and entry[0] > now:
        token = entry[1]
        if token["exp"] <= time.time():
            raise InvalidToken("expired")
        return token
    token = _bearer.get_validated_token(raw)
    seconds: float = settings.TRAY["AUTH_CACHE_SECONDS"]
    if seconds > 0:
        if len(_verified) >= _VERIFIED_SWEEP:
            for stale in [key for key, (deadline, _) in _verified.items() if deadline <= now]:
                _verified.pop(stale, None)
        _verified[raw] = (now + seconds, token)
    return token


def _parse(body: bytes) -> object:
    """The body as DRF's JSONParser reads it (strict: no NaN or Infinity)."""
    return json.loads(body.decode("utf-8"), parse_constant=strict_constant)


def prepare(request: Request) -> Publish | None:
    """Authenticate and validate one request; None when the full stack must answer it."""
    caller = _caller(request.authorization)
    if caller is None:
        return None
    try:
        item = parse_publish(_parse(request.body), check_users=False)
    except Exception:  # parse errors, field errors, unknown names alike
        return None
    return Publish(item=item, actor=caller[0], publisher=caller[1])


def _create(
    publish: Publish, *, rows_later: bool, own_transaction: bool = True
) -> NotificationResult:
    return notification_publish(
        item=publish.item,
        actor=publish.actor,
        publisher=publish.publisher,
        users_unchecked=True,
        rows_later=rows_later,
        own_transaction=own_transaction,
    )


def answer(result: NotificationResult) -> Answer:
    """201 (or 200 for an earlier notification with that idempotency key), as DRF renders."""
    body = json.dumps(
        {"id": result.message.pk, "recipients": result.recipient_count, "created": result.created},
        separators=(",", ":"),
    ).encode()
    return Answer(201 if result.created else 200, body)


def publish_batch(
    requests: Sequence[Request], *, group_commit: bool, rows_later: bool = False
) -> list[Answer | None]:
    """Answer each request, or None where the full stack must (nothing of it written).

    With ``rows_later`` the notifications' Inbox rows are written after their push
    (backend/notifications/inbox_log.py); whoever calls it then calls
    ``inbox_log.settle`` soon after.

    With ``group_commit`` the notifications are written in one transaction and the
    doorbells ring after that one commit. A publish the service refuses
    (``InvalidInput``, raised before it writes anything) is left to the full stack
    alone; any other failure, or a failed commit, hands the whole batch on with
    nothing of it written. No publish takes a savepoint of its own: two per publish
    (SAVEPOINT and RELEASE through Django's cursor) cost a sixth of a single
    publish's CPU on SQLite, and what they guarded against, a statement failing
    midway, sinks the batch instead (PostgreSQL refuses every later statement of a
    transaction after a failed one anyway). Runs on the thread that holds the
    process's database connection (backend/config/asgi.py).
    """
    close_old_connections()
    prepared = [request.context.run(prepare, request) for request in requests]
    answers: list[Answer | None] = [None] * len(requests)
    if not group_commit or sum(p is not None for p in prepared) < 2:
        for index, publish in enumerate(prepared):
            if publish is not None:
                answers[index] = requests[index].context.run(
                    _attempt, publish, rows_later=rows_later
                )
        return answers
    try:
        with transaction.atomic():
            for index, publish in enumerate(prepared):
                if publish is not None:
                    answers[index] = requests[index].context.run(
                        _attempt_in_batch, publish, rows_later=rows_later
                    )
            if transaction.get_rollback():
                raise _RolledBack
    except Exception:  # a publish failed midway, or the commit did: nothing was written
        return [None] * len(requests)
    return answers


class _RolledBack(Exception):
    """The batch's transaction cannot commit; its publishes go the full way."""


def _attempt(publish: Publish, *, rows_later: bool) -> Answer | None:
    try:
        return answer(_create(publish, rows_later=rows_later))
    except Exception:  # BackendError or worse: the full stack tries again and reports it
        return None


def _attempt_in_batch(publish: Publish, *, rows_later: bool) -> Answer | None:
    """One publish of a group commit; raises (sinking the batch) unless it was refused
    before anything of it was written."""
    try:
        return answer(_create(publish, rows_later=rows_later, own_transaction=False))
    except InvalidInput:  # the full stack words the refusal
        return None
