"""The server's REST API, client side: log in, keep the session fresh, read and change the inbox.

One :class:`ApiClient` per server address. It holds the session's tokens and
refreshes the access token when it is missing, about to expire or refused
(401), with one refresh request in flight at a time however many calls need
it: refresh tokens rotate (a rotated one used again ends the whole session), so two
refreshes racing with the same token would log the user out.

Every failure is a :class:`~tray_app.net.errors.NetError` with plain words for
the UI. Response bodies are checked before use: a 200 with the wrong shape is
:class:`~tray_app.net.errors.NotOurServer`, never a ``KeyError``. Tokens and
passwords never reach a log line or an error message.

The parsing functions (``parse_*``, :func:`jwt_expiry`, :func:`error_from_response`)
are pure; :class:`ApiClient` is the thin I/O layer around them and takes its
httpx transport as an argument so tests can point it anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import json
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import msgspec

import tray_app
from tray_app.attention import Attention, AttentionFormatError, parse_attention
from tray_app.net.errors import (
    AccountDisabled,
    InvalidCredentials,
    LoginRequired,
    NetError,
    NotOurServer,
    ProxyFailure,
    RateLimited,
    RequestRejected,
    ServerFailure,
    TlsFailure,
    describe_host,
    error_from_transport,
)
from tray_app.net.protocol import FieldReader, Notification, TokenGrant, parse_notification
from tray_app.net.transport import Transport

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ApiClient",
    "InboxChange",
    "InboxPage",
    "RefreshLease",
    "Tokens",
    "error_from_response",
    "jwt_expiry",
    "jwt_lifetime",
    "normalise_base_url",
    "parse_inbox_change",
    "parse_inbox_page",
    "parse_token_pair",
    "parse_unread_state",
]

log = logging.getLogger(__name__)

USER_AGENT: Final = f"tray-notifier/{tray_app.__version__}"
WEBSOCKET_PATH: Final = "/ws/notifications/"

LOGIN_PATH: Final = "/api/auth/token/"
REFRESH_PATH: Final = "/api/auth/token/refresh/"
LOGOUT_PATH: Final = "/api/auth/logout/"
ME_PATH: Final = "/api/me"
INBOX_PATH: Final = "/api/inbox/"
UNREAD_COUNT_PATH: Final = "/api/inbox/unread-count/"
MARK_READ_PATH: Final = "/api/inbox/mark-read/"
MARK_UNREAD_PATH: Final = "/api/inbox/mark-unread/"
MARK_ALL_READ_PATH: Final = "/api/inbox/mark-all-read/"
DELETE_PATH: Final = "/api/inbox/delete/"
ATTENTION_PATH: Final = "/api/attention/"
PRESENCE_STATUS_PATH: Final = "/api/presence/status/"

# Error codes of a 401/403 that mean the account itself is switched off.
_DISABLED_CODES: Final = frozenset({"user_inactive", "account_disabled"})
# Read at most this much of an error body: a misconfigured address may serve megabytes.
_MAX_ERROR_BODY: Final = 64 * 1024


# --- values ------------------------------------------------------------------------


class Tokens(msgspec.Struct, frozen=True):
    """The session's credentials. ``repr`` hides both tokens, so logging one is safe.

    Attributes:
        access: the bearer token for API calls; None when only the refresh token
            is known (restored from the keyring after a cold start).
        refresh: the token that buys a new pair (single use: it rotates).
        access_expires_at: epoch seconds from the access token's ``exp`` claim,
            read without verifying the signature (the server verifies); 0 if unknown.
    """

    access: str | None
    refresh: str
    access_expires_at: float = 0.0

    def __repr__(self) -> str:
        return f"Tokens(access_expires_at={self.access_expires_at!r})"  # no token shown


class InboxPage(msgspec.Struct, frozen=True):
    """One page of ``GET /api/inbox/``; ``results`` are its notifications, read once."""

    results: list[Notification]
    next_after_seq: int | None
    next_before_seq: int | None
    latest_seq: int
    unread_count: int


class InboxChange(msgspec.Struct, frozen=True):
    """What an inbox action did. ``not_found`` lists ids that are not (or no longer) the user's."""

    changed: list[int]
    not_found: list[int]
    unread_count: int


# --- pure parsing ------------------------------------------------------------------------


# An address already in the form httpx writes it (a lowercase scheme and host, no default
# port, no dot, empty or escaped path segment, no trailing slash): what the settings keep.
_CANONICAL_URL: Final = re.compile(
    r"(?P<scheme>https?)://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*"
)
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def normalise_base_url(base_url: str) -> str:
    """``base_url`` checked and without a trailing slash.

    An address already in its normal form (the saved one, at every start) is answered
    without httpx, which the app then loads only for its first REST request (issue 20);
    a property test checks that both ways agree.

    Raises:
        ValueError: not an http:// or https:// address with a host name (the
            message is plain words a settings dialog can show).
    """
    text = base_url.strip()
    if "://" not in text:
        raise ValueError(
            "The server address must start with http:// or https:// "
            "(for example https://tray.example.com)."
        )
    canonical = _CANONICAL_URL.fullmatch(text)
    if (
        canonical is not None
        and ".." not in text
        and "xn--" not in text  # an IDNA label: httpx checks its encoding
        and (canonical["port"] is None or int(canonical["port"]) <= 65535)
        and canonical["port"] != _DEFAULT_PORTS[canonical["scheme"]]
    ):
        return text
    import httpx

    try:
        url = httpx.URL(text)
        host = url.host  # decodes an "xn--" label
    except (httpx.InvalidURL, ValueError, IndexError):
        # idna's errors (a malformed "xn--" label) come through httpx as they are.
        raise ValueError("The server address is not a valid web address.") from None
    if url.scheme not in {"http", "https"}:
        raise ValueError("The server address must start with http:// or https://.")
    if not host:
        raise ValueError("The server address has no host name.")
    if url.userinfo:
        raise ValueError("The server address must not contain a user name or password.")
    if url.query or url.fragment:
        raise ValueError("The server address must not contain ? or #.")
    return str(url.copy_with(query=None, fragment=None)).rstrip("/")


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, WITHOUT verifying its signature; {} if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    segment = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _epoch_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value > 0 else 0.0


def jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT in epoch seconds, WITHOUT verifying it; 0.0 if unreadable.

    Only a hint for refreshing early: the server is the one that verifies.
    """
    return _epoch_claim(_jwt_claims(token), "exp")


def jwt_lifetime(token: str) -> float | None:
    """``exp - iat`` of a JWT in seconds (unverified); None if either claim is unreadable.

    Measured on the server's clock, so a client whose clock is off still knows
    how long a token it has just received stays valid.
    """
    claims = _jwt_claims(token)
    expiry, issued = _epoch_claim(claims, "exp"), _epoch_claim(claims, "iat")
    if not expiry or not issued or expiry <= issued:
        return None
    return expiry - issued


def _shape_error(what: str) -> NotOurServer:
    return NotOurServer(f"unexpected answer: {what}")


# REST answers are read with the frames' field readers; a wrong shape is NotOurServer.
_fields = FieldReader(_shape_error)


def parse_token_pair(body: Any) -> Tokens:
    """The :class:`Tokens` of a login or refresh answer ``{"access", "refresh"}``.

    Raises:
        NotOurServer: the body has another shape.
    """
    pair = _fields.document(body, "token pair")
    access = _fields.text(pair, "access", "token pair", non_empty=True)
    refresh = _fields.text(pair, "refresh", "token pair", non_empty=True)
    return Tokens(access=access, refresh=refresh, access_expires_at=jwt_expiry(access))


def parse_inbox_page(body: Any) -> InboxPage:
    """The :class:`InboxPage` of ``GET /api/inbox/``.

    Every result must be an object with a positive ``id`` and ``seq``: the
    store keys on both. Its other fields are read leniently (``parse_notification``).

    Raises:
        NotOurServer: the body has another shape.
    """
    what = "inbox page"
    page = _fields.document(body, what)
    results = page.get("results")
    if not isinstance(results, list):
        raise _shape_error(f"{what}: results must be a list")
    return InboxPage(
        results=[
            parse_notification(item, what=f"{what} result", fields=_fields) for item in results
        ],
        next_after_seq=_fields.optional_whole(page, "next_after_seq", what, present=True),
        next_before_seq=_fields.optional_whole(page, "next_before_seq", what, present=True),
        latest_seq=_fields.whole(page, "latest_seq", what),
        unread_count=_fields.whole(page, "unread_count", what),
    )


def parse_inbox_change(body: Any) -> InboxChange:
    """The :class:`InboxChange` of a mark-read/mark-unread/delete/mark-all-read answer.

    Raises:
        NotOurServer: the body has another shape.
    """
    what = "inbox change"
    change = _fields.document(body, what)
    return InboxChange(
        changed=_fields.whole_list(change, "changed", what),
        not_found=_fields.whole_list(change, "not_found", what),
        unread_count=_fields.whole(change, "unread_count", what),
    )


def parse_unread_state(body: Any) -> tuple[int, int]:
    """``(unread_count, latest_seq)`` of ``GET /api/inbox/unread-count/``.

    Raises:
        NotOurServer: the body has another shape.
    """
    what = "unread count"
    state = _fields.document(body, what)
    return _fields.whole(state, "unread_count", what), _fields.whole(state, "latest_seq", what)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    with contextlib.suppress(ValueError):
        seconds = float(text)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _redirect_target(location: str | None) -> str | None:
    """``scheme://host[:port]`` of a redirect's absolute ``Location``, else None."""
    if not location or "://" not in location:
        return None
    import httpx

    try:
        scheme = httpx.URL(location).scheme
    except httpx.InvalidURL:
        return None
    host = describe_host(location)
    return f"{scheme}://{host}" if scheme in {"http", "https"} and host != "the server" else None


def _error_body(content: bytes) -> tuple[str, str, Any] | None:
    """``(code, message, detail)`` of the server's ``{"error": {...}}`` body, else None."""
    try:
        body = json.loads(content[:_MAX_ERROR_BODY])
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not code or not isinstance(message, str) or not message:
        return None
    return code, message, error.get("detail")


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, *, url: str
) -> NetError:
    """The :class:`NetError` for an HTTP answer that is not a success.

    Args:
        status: the HTTP status code (not 2xx).
        headers: the response headers (``Retry-After``, ``Location``), case-insensitive.
        content: the response body.
        url: the request's URL; only its host and port appear in messages.
    """
    where = describe_host(url)
    parsed = _error_body(content)
    code, message, detail = parsed if parsed else (None, None, None)
    if status == 407:
        return ProxyFailure(f"proxy asked for authentication (407) on the way to {where}")
    if status == 429:
        return RateLimited(
            f"{where} throttled the request (429, {code or 'no error body'})",
            code=code,
            user_message=message,
            detail=detail,
            retry_after=_retry_after(headers.get("retry-after")),
        )
    if status >= 500:
        return ServerFailure(
            f"{where} failed with HTTP {status} ({code or 'no error body'})",
            status=status,
            code=code,
            user_message=(
                f"The server {where} is having trouble (HTTP {status}). Try again in a few minutes."
            ),
        )
    if 300 <= status < 400:
        target = _redirect_target(headers.get("location"))
        return NotOurServer(
            f"{where} redirected (HTTP {status}) to {target or 'another page'}",
            code="redirected",
            user_message=(
                f"The server address redirects to {target}. Use that address instead."
                if target
                else "The server address redirects to another page. Check the server address."
            ),
        )
    if status == 404 or parsed is None or not 400 <= status < 500:
        return NotOurServer(f"{where} answered HTTP {status} without the API's error body")
    if code in _DISABLED_CODES:
        return AccountDisabled(f"{where}: account disabled (HTTP {status}, {code})")
    return RequestRejected(
        f"{where} rejected the request (HTTP {status}, {code})",
        status=status,
        code=code,
        user_message=message,
        detail=detail,
    )


# --- the client --------------------------------------------------------------------------


class ApiClient:
    """The REST client of one server, holding the session's tokens.

    Args:
        base_url: the server's address, ``http://`` or ``https://`` (a path prefix is kept).
        transport: the trust and proxy settings (the system's trust store and proxy
            when None). Read on the first request: a broken setting (a CA bundle that
            cannot be read) fails that request with its
            :class:`~tray_app.net.transport.TransportSettingError`, not the app's start.
        http_transport: an httpx transport to use instead of the network (tests).
        timeout: seconds for each of connect, read, write and waiting for a
            pooled connection.
        on_tokens_changed: called with the new :class:`Tokens` after every login
            and refresh (store the refresh token), and with None when the session
            ends (logout, rejected refresh). Exceptions it raises are logged.

    Raises:
        ValueError: ``base_url`` is not an http(s) address, or ``timeout`` is not positive.
    """

    def __init__(
        self,
        base_url: str,
        *,
        transport: Transport | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        on_tokens_changed: Callable[[Tokens | None], None] | None = None,
    ) -> None:
        self._base_url = normalise_base_url(base_url)
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        self._transport = transport or Transport()
        self._http_transport = http_transport
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._proxy: str | None = None
        self._on_tokens_changed = on_tokens_changed
        self._tokens: Tokens | None = None
        # When to refresh, on the monotonic clock: see _track_expiry.
        self._access_deadline = 0.0
        self._access_lifetime = math.inf
        # Bumped whenever the session is replaced (login, restore, logout, rejection):
        # a refresh that finishes after that must not bring the old session back.
        self._generation = 0
        # The refresh in flight: a REST request's task, or a lent token's (lease_refresh).
        self._refreshing: asyncio.Future[Tokens] | None = None

    # -- properties ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's address, without a trailing slash."""
        return self._base_url

    @property
    def ws_url(self) -> str:
        """The WebSocket address: ``ws://`` for http, ``wss://`` for https."""
        scheme, rest = self._base_url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + WEBSOCKET_PATH

    @property
    def tokens(self) -> Tokens | None:
        """The session's tokens, or None when logged out."""
        return self._tokens

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool. The tokens are kept (nothing is revoked)."""
        if self._refreshing is not None:
            self._refreshing.cancel()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- session -------------------------------------------------------------------------

    def restore(self, refresh_token: str, *, access_token: str | None = None) -> None:
        """Resume a session from stored tokens (a cold start: the keyring's refresh token).

        Without ``access_token`` the first authenticated call refreshes first. An
        access token that turns out to be refused (expired, signed with an old
        key) costs one refresh. Does not call ``on_tokens_changed``: the caller
        already holds these tokens.

        Raises:
            ValueError: ``refresh_token`` is empty.
        """
        refresh_token = refresh_token.strip()
        if not refresh_token:
            raise ValueError("refresh_token is empty")
        access = access_token.strip() if access_token else None
        self._new_session()
        tokens = Tokens(
            access=access or None,
            refresh=refresh_token,
            access_expires_at=jwt_expiry(access) if access else 0.0,
        )
        self._tokens = tokens
        self._track_expiry(tokens, fresh=False)

    async def login(self, username: str, password: str) -> Tokens:
        """Log in with a username and password; the new session replaces any other.

        Raises:
            InvalidCredentials: wrong username or password, or either is empty.
            RateLimited: too many attempts from this address.
            AccountDisabled, ServerUnreachable, TlsFailure, ProxyFailure,
            NotOurServer, ServerFailure, RequestRejected: as their names say.
        """
        if not username.strip() or not password:
            raise InvalidCredentials(
                "empty username or password",
                code="credentials_missing",
                user_message="Enter your username and your password.",
            )
        response = await self._send(
            "POST", LOGIN_PATH, json={"username": username.strip(), "password": password}
        )
        if response.status_code in (400, 401) and (
            (parsed := _error_body(response.content)) is not None
            and parsed[0] not in _DISABLED_CODES
        ):
            code, message, _detail = parsed
            raise InvalidCredentials(
                f"login refused (HTTP {response.status_code}, {code})",
                code=code,
                user_message=message if response.status_code == 401 else None,
            )
        tokens = parse_token_pair(self._json(response))
        self._new_session()
        self._set_tokens(tokens)
        log.info("logged in to %s", describe_host(self._base_url))
        return tokens

    async def refresh(self) -> Tokens:
        """Trade the refresh token for a new pair; concurrent callers share one request.

        Raises:
            LoginRequired: no session, or the server rejected the refresh token
                (the tokens are cleared and ``on_tokens_changed(None)`` is called).
            AccountDisabled: the account was switched off (tokens cleared too).
            ServerUnreachable, TlsFailure, ProxyFailure, NotOurServer,
            ServerFailure, RateLimited: the tokens are kept; try again later.
        """
        task = self._refreshing
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._refresh_once(), name="tray-api-refresh"
            )
            task.add_done_callback(self._refresh_done)
            self._refreshing = task
        # Shielded: a caller that gives up must not cancel the request the others
        # wait for, nor lose a rotated token the server has already issued.
        return await asyncio.shield(task)

    def lease_refresh(self, *, min_validity: float | None = 30.0) -> RefreshLease | None:
        """Lend the refresh token to the socket, which trades it itself (in its handshake
        or in band), when the access token is missing or expires within ``min_validity``
        s (None: whatever its validity) and no refresh is in flight; None otherwise (use
        :meth:`access_token`, or :meth:`refresh`, which joins the one in flight).

        Until the lease is settled it is this client's refresh in flight: a call that
        needs a fresh token waits for its outcome, and no second refresh can spend the
        same token (which would end the session).
        """
        tokens = self._tokens
        if tokens is None or self._refreshing is not None:
            return None
        if min_validity is not None and tokens.access is not None:
            margin = min(min_validity, self._access_lifetime / 2)
            if self._access_deadline - time.monotonic() >= margin:
                return None
        outcome: asyncio.Future[Tokens] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(self._refresh_done)
        self._refreshing = outcome
        return RefreshLease(self, tokens.refresh, outcome, self._generation)

    async def access_token(self, *, min_validity: float = 30.0) -> str:
        """The access token, refreshed first if missing or expiring within ``min_validity`` s.

        Raises:
            LoginRequired: no session, or it ended.
            NetError: the refresh failed for another reason (see :meth:`refresh`).
        """
        tokens = self._tokens
        if tokens is None:
            raise LoginRequired("not logged in")
        # A token that lives shorter than min_validity is refreshed at half-life
        # instead of on every call.
        margin = min(min_validity, self._access_lifetime / 2)
        if tokens.access is None or self._access_deadline - time.monotonic() < margin:
            tokens = await self.refresh()
        if tokens.access is None:  # parse_token_pair never leaves it empty
            raise LoginRequired("the refresh gave no access token")
        return tokens.access

    async def logout(self) -> None:
        """End the session: forget the tokens at once, then revoke the refresh token on
        the server as a best effort (a failure there is logged, not raised)."""
        tokens = self._tokens
        self._end_session()
        if tokens is not None:
            await self._revoke(tokens.refresh)

    # -- account and inbox -----------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        """The logged-in account (``id``, ``username``, names, ``role``, ``projects``...)."""
        body = _fields.document(await self._authorized("GET", ME_PATH), "account")
        _fields.whole(body, "id", "account", minimum=1)
        _fields.text(body, "username", "account", non_empty=True)
        if not isinstance(body.get("projects", []), list):
            raise _shape_error("account: projects must be a list")
        return dict(body)

    async def inbox_page(
        self, *, after_seq: int | None = None, before_seq: int | None = None, limit: int = 200
    ) -> InboxPage:
        """A page of the inbox: with ``after_seq`` oldest first above it (catching up),
        otherwise newest first below ``before_seq`` (or from the newest).

        Raises:
            ValueError: a negative cursor or a limit below 1.
        """
        params: dict[str, int] = {"limit": _check_whole(limit, "limit", minimum=1)}
        if after_seq is not None:
            params["after_seq"] = _check_whole(after_seq, "after_seq")
        if before_seq is not None:
            params["before_seq"] = _check_whole(before_seq, "before_seq")
        return parse_inbox_page(await self._authorized("GET", INBOX_PATH, params=params))

    async def unread_count(self) -> tuple[int, int]:
        """``(unread_count, latest_seq)``: what the tray badge shows."""
        return parse_unread_state(await self._authorized("GET", UNREAD_COUNT_PATH))

    async def mark_read(self, ids: Sequence[int]) -> InboxChange:
        """Mark these inbox rows read (already-read rows are left alone)."""
        return await self._change(MARK_READ_PATH, {"ids": _ids(ids)})

    async def mark_unread(self, ids: Sequence[int]) -> InboxChange:
        """Mark these inbox rows unread."""
        return await self._change(MARK_UNREAD_PATH, {"ids": _ids(ids)})

    async def delete(self, ids: Sequence[int]) -> InboxChange:
        """Delete these inbox rows for this user (deleting twice is not an error)."""
        return await self._change(DELETE_PATH, {"ids": _ids(ids)})

    async def mark_all_read(self, up_to_seq: int | None = None) -> InboxChange:
        """Mark every row up to ``up_to_seq`` read (every row when None)."""
        body = {} if up_to_seq is None else {"up_to_seq": _check_whole(up_to_seq, "up_to_seq")}
        return await self._change(MARK_ALL_READ_PATH, body)

    async def attention(self) -> Attention:
        """The user's attention settings (docs/protocol.md, "Attention")."""
        return _attention(await self._authorized("GET", ATTENTION_PATH))

    async def change_attention(self, changes: Mapping[str, Any]) -> Attention:
        """Change some attention settings; every device of the user is told. The
        settings as they now are.

        Raises:
            RequestRejected: a bad value (``invalid_attention``; its message names the
                setting and why), or too many changes (429).
        """
        return _attention(await self._authorized("PATCH", ATTENTION_PATH, json=dict(changes)))

    async def set_presence_status(self, status: str) -> None:
        """The status teammates see (``online``, ``away``, ``dnd``): the socket's
        ``set_status`` over REST, for when the live connection is the HTTP stream.

        Raises:
            RequestRejected: a status the server does not know.
        """
        await self._authorized("POST", PRESENCE_STATUS_PATH, json={"status": status})

    # -- internals ---------------------------------------------------------------------------

    async def _change(self, path: str, body: dict[str, Any]) -> InboxChange:
        return parse_inbox_change(await self._authorized("POST", path, json=body))

    def _client(self) -> httpx.AsyncClient:
        """The connection pool, made on first use from the transport settings.

        Raises:
            TransportSettingError: the CA bundle or the proxy setting cannot be used.
        """
        if self._http is None:
            # Here, not with the module: a session that needs no REST call (the socket
            # renews its tokens itself) never loads httpx (~8 MiB with its stack).
            import httpx

            self._proxy = self._transport.proxy_for(self._base_url)
            secure = self._base_url.startswith("https:")
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                transport=self._http_transport,
                # Plain http never does TLS (redirects are not followed), so only an
                # https server needs the trust settings, and a broken CA bundle is
                # reported where it matters. For http, an empty context (it trusts no
                # one, so it could only fail closed) instead of httpx's default, which
                # loads certifi's ~150 CAs (~3 MB) into memory for nothing.
                verify=self._transport.ssl_context()
                if secure
                else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
                proxy=self._proxy,
                # The proxy is resolved above (configuration > environment > system);
                # httpx must not apply its own reading of the environment on top.
                trust_env=False,
                timeout=httpx.Timeout(
                    connect=self._timeout,
                    read=self._timeout,
                    write=self._timeout,
                    pool=self._timeout,
                ),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                # A redirect is reported (NotOurServer names its target), never followed
                # with a password or a token in the body.
                follow_redirects=False,
            )
        return self._http

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, int] | None = None,
        access: str | None = None,
    ) -> httpx.Response:
        """One request; transport failures become NetErrors. Never logs headers or bodies."""
        headers = {"Authorization": f"Bearer {access}"} if access else None
        url = self._base_url + path
        http = self._client()
        import httpx

        try:
            response = await http.request(method, path, json=json, params=params, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            error = error_from_transport(exc, url=url, proxy=self._proxy)
            if isinstance(error, TlsFailure):
                error = await self._transport.explain(error, url)
                log.warning("%s %s failed: %s", method, path, error)
            else:
                log.debug("%s %s failed: %s", method, path, error)
            raise error from exc
        log.debug("%s %s -> %d", method, path, response.status_code)
        return response

    def _json(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; any other answer raised as its NetError."""
        if not response.is_success:
            raise error_from_response(
                response.status_code, response.headers, response.content, url=str(response.url)
            )
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type.lower():
            raise NotOurServer(
                f"{describe_host(self._base_url)} answered {content_type or 'no content type'} "
                "instead of JSON"
            )
        try:
            return response.json()
        except ValueError:
            raise NotOurServer(f"{describe_host(self._base_url)} answered malformed JSON") from None

    async def _authorized(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, int] | None = None,
    ) -> Any:
        """An authenticated request: refresh once on a 401 and retry once."""
        access = await self.access_token()
        response = await self._send(method, path, json=json, params=params, access=access)
        if response.status_code == 401:
            self._check_disabled(response)
            await self._refresh_unless_done(access)
            access = await self.access_token()
            response = await self._send(method, path, json=json, params=params, access=access)
            if response.status_code == 401:
                self._check_disabled(response)
                self._end_session()
                raise LoginRequired("the server refused a freshly refreshed access token")
        return self._json(response)

    def _check_disabled(self, response: httpx.Response) -> None:
        parsed = _error_body(response.content)
        if parsed is not None and parsed[0] in _DISABLED_CODES:
            self._end_session()
            raise AccountDisabled(f"account disabled ({parsed[0]})")

    async def _refresh_unless_done(self, rejected_access: str) -> None:
        """Refresh after ``rejected_access`` got a 401, unless another call already did:
        twenty calls refused together need one new token, not twenty."""
        tokens = self._tokens
        if tokens is None:
            raise LoginRequired("the session ended")
        if tokens.access == rejected_access or self._refreshing is not None:
            await self.refresh()

    async def _refresh_once(self) -> Tokens:
        tokens = self._tokens
        if tokens is None:
            raise LoginRequired("not logged in")
        generation = self._generation
        response = await self._send("POST", REFRESH_PATH, json={"refresh": tokens.refresh})
        if response.status_code in (400, 401):
            parsed = _error_body(response.content)
            if parsed is None:
                raise error_from_response(
                    response.status_code, response.headers, response.content, url=str(response.url)
                )
            if generation == self._generation:
                self._end_session()
            if parsed[0] in _DISABLED_CODES:
                raise AccountDisabled(f"refresh refused: account disabled ({parsed[0]})")
            raise LoginRequired(
                f"refresh refused (HTTP {response.status_code}, {parsed[0]})",
                user_message=parsed[1] if response.status_code == 401 else None,
            )
        fresh = parse_token_pair(self._json(response))
        if generation != self._generation:
            # Logged out or in again meanwhile: this pair belongs to no session now.
            await self._revoke(fresh.refresh)
            raise LoginRequired("the session was replaced while refreshing")
        self._set_tokens(fresh)
        log.info("refreshed the session with %s", describe_host(self._base_url))
        return fresh

    def _refresh_done(self, outcome: asyncio.Future[Tokens]) -> None:
        if self._refreshing is outcome:
            self._refreshing = None
        # Mark the outcome as seen: every caller may have given up (shield).
        if not outcome.cancelled():
            outcome.exception()

    async def _revoke(self, refresh_token: str) -> None:
        try:
            response = await self._send("POST", LOGOUT_PATH, json={"refresh": refresh_token})
        except NetError as error:
            log.warning("could not revoke the session on the server: %s", error)
            return
        if not response.is_success:
            log.warning("the server did not revoke the session (HTTP %d)", response.status_code)

    def _set_tokens(self, tokens: Tokens) -> None:
        self._tokens = tokens
        self._track_expiry(tokens, fresh=True)
        self._notify(tokens)

    def _track_expiry(self, tokens: Tokens, *, fresh: bool) -> None:
        # A token just received is good for its lifetime (exp - iat, both on the
        # server's clock) counted from now, so a wrong local clock neither makes
        # every call refresh nor lets an expired token through. A stored one can
        # only be judged by exp against the local clock.
        lifetime = jwt_lifetime(tokens.access) if tokens.access else None
        self._access_lifetime = lifetime if lifetime is not None else math.inf
        if fresh and lifetime is not None:
            self._access_deadline = time.monotonic() + lifetime
        elif tokens.access_expires_at:
            self._access_deadline = time.monotonic() + tokens.access_expires_at - time.time()
        else:  # unknown: use it until the server refuses it (401 -> refresh)
            self._access_deadline = math.inf

    def _new_session(self) -> None:
        """Forget the old session's pending refresh: its outcome no longer matters here."""
        self._generation += 1
        self._refreshing = None

    def _end_session(self) -> None:
        self._new_session()
        had_session = self._tokens is not None
        self._tokens = None
        if had_session:
            self._notify(None)

    def _notify(self, tokens: Tokens | None) -> None:
        if self._on_tokens_changed is None:
            return
        try:
            self._on_tokens_changed(tokens)
        except Exception:
            # The session itself is fine; a failing keyring must not fail the request.
            log.exception("on_tokens_changed failed")


class RefreshLease:
    """The refresh token, lent to the socket by :meth:`ApiClient.lease_refresh`.

    Settle it once, with what the server said: :meth:`granted` (the new pair),
    :meth:`refused` (the session ended) or :meth:`failed` (no answer: whether the server
    rotated the token is unknown, as when a REST refresh's answer is lost, so the tokens
    are kept). Later calls do nothing.

    Attributes:
        token: the refresh token to send.
    """

    def __init__(
        self, client: ApiClient, token: str, outcome: asyncio.Future[Tokens], generation: int
    ) -> None:
        self.token = token
        self._client = client
        self._outcome = outcome
        self._generation = generation

    def __repr__(self) -> str:
        return f"<RefreshLease settled={self.settled}>"

    @property
    def settled(self) -> bool:
        return self._outcome.done()

    def granted(self, grant: TokenGrant) -> Tokens | None:
        """The server rotated the token: the new pair is the session's (``on_tokens_changed``
        stores it). None when the session was replaced meanwhile (logout, another login):
        the pair belongs to none then."""
        if self.settled:
            return None
        client = self._client
        if self._generation != client._generation:
            self._outcome.set_exception(LoginRequired("the session was replaced while refreshing"))
            return None
        tokens = Tokens(
            access=grant.access, refresh=grant.refresh, access_expires_at=jwt_expiry(grant.access)
        )
        client._set_tokens(tokens)
        log.info("refreshed the session with %s over the socket", describe_host(client.base_url))
        self._outcome.set_result(tokens)
        return tokens

    def refused(self, error: LoginRequired | AccountDisabled) -> None:
        """The server refused the token: the session is over (the tokens are cleared)."""
        if self.settled:
            return
        if self._generation == self._client._generation:
            self._client._end_session()
        self._outcome.set_exception(error)

    def failed(self, error: NetError) -> None:
        """No answer: the tokens are kept, and whoever waited gets ``error``."""
        if not self.settled:
            self._outcome.set_exception(error)


def _attention(body: Any) -> Attention:
    try:
        return parse_attention(body)
    except AttentionFormatError as error:
        raise _shape_error(f"attention: {error}") from None


def _check_whole(value: int, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, str | bytes):
        raise ValueError("ids must be a sequence of notification ids")
    return [_check_whole(value, "every id", minimum=1) for value in ids]
