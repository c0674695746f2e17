"""The one exception family of ``tray_app.net``, and how transport failures map onto it.

Every error carries two texts:

- ``str(error)``: a short technical description for logs and support. It names
  the server's host and what failed, never a token, a password or a query string.
- ``user_message``: plain words a UI shows as they are: what went wrong and what
  the user can do about it.

``code`` is stable and machine-readable (``"server_unreachable"``, or the
server's own code such as ``"throttled"`` for a rejected request), so callers
branch on the class or the code, never on the wording.

:func:`error_from_transport` classifies the exceptions of httpx, ssl, socket and
websockets' connection attempts, so the REST client and the socket session
report the same failure in the same words.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
import websockets.exceptions

from tray_app.net.redaction import redact

_GENERIC_MESSAGE = "Something went wrong while talking to the server. Try again in a moment."


class NetError(Exception):
    """Base of every error ``tray_app.net`` raises on purpose.

    Attributes:
        code: stable, machine-readable name of the failure.
        user_message: plain words a UI shows as they are: what went wrong and
            what to do.
    """

    code: str = "network_error"
    user_message: str = _GENERIC_MESSAGE

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        user_message: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if user_message:
            self.user_message = redact(user_message)
        super().__init__(redact(message) if message else self.user_message)


class InvalidCredentials(NetError):
    """The server refused the username and password (an inactive account gets the
    same answer, so the server does not reveal which accounts exist)."""

    code = "invalid_credentials"
    user_message = "Wrong username or password."


class LoginRequired(NetError):
    """The session ended (refresh token rejected, expired or revoked): log in again."""

    code = "login_required"
    user_message = "Your session has ended. Log in again."


class AccountDisabled(NetError):
    """The account has been deactivated on the server."""

    code = "account_disabled"
    user_message = "This account is disabled. Ask an administrator."


class ServerUnreachable(NetError):
    """No answer: name not found, connection refused, timeout, network down."""

    code = "server_unreachable"
    user_message = "Can't reach the server. Check your network connection and try again."


class TlsFailure(NetError):
    """The secure connection failed: certificate not trusted, wrong name, handshake error.

    Attributes:
        verify_code: OpenSSL's ``X509_V_ERR_*`` number when certificate verification
            failed (None for other TLS failures, and on platforms that give none).
        verify_message: the TLS library's own words for the failure.
        reason: plain words for why the certificate was refused ("unknown issuer",
            "self-signed", "expired"...), or the handshake error.
        certificate: what the server presented, when it could be read (see
            :meth:`tray_app.net.transport.Transport.explain`).
    """

    code = "tls_failure"
    user_message = (
        "Couldn't open a secure connection to the server: its certificate could not be "
        "verified. Check the server address, or ask IT to install your organisation's "
        "certificate."
    )
    verify_code: int | None = None
    verify_message: str = ""
    reason: str = ""
    certificate: CertificateSummary | None = None


class ProxyFailure(NetError):
    """The proxy refused to carry the connection (407, 403 to CONNECT, unreachable proxy)."""

    code = "proxy_failure"
    user_message = (
        "The proxy refused the connection to the server. Check the proxy settings "
        "(address, user name and password) or ask IT."
    )


class NotOurServer(NetError):
    """Something answered that is not the tray notifier server's API."""

    code = "not_our_server"
    user_message = (
        "The address answered, but not like a tray notifier server. Check the server address."
    )


class RequestRejected(NetError):
    """The server refused a request with a 4xx and its ``{"error": {...}}`` body.

    Attributes:
        status: the HTTP status code.
        detail: the error body's ``detail`` (per-field errors and the like), if any.
    """

    code = "request_rejected"
    user_message = "The server refused the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int,
        code: str | None = None,
        user_message: str | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message, code=code, user_message=user_message)
        self.status = status
        self.detail = detail


class RateLimited(RequestRejected):
    """Too many requests (429).

    Attributes:
        retry_after: seconds the server asked to wait, when it said.
    """

    code = "throttled"
    user_message = "Too many attempts. Wait a minute, then try again."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int = 429,
        code: str | None = None,
        user_message: str | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status=status, code=code, user_message=user_message, detail=detail
        )
        self.retry_after = retry_after


class ServerFailure(NetError):
    """The server (or a gateway in front of it) failed with a 5xx.

    Attributes:
        status: the HTTP status code.
    """

    code = "server_failure"
    user_message = "The server ran into a problem. Try again in a few minutes."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int = 500,
        code: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message, code=code, user_message=user_message)
        self.status = status


def describe_host(url: str) -> str:
    """``host[:port]`` of ``url``: what error messages name, without path, query or user."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "the server"
    if not host:
        return "the server"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


# --- classification ------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from, innermost last, without loops."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((link for link in _chain(exc) if isinstance(link, kind)), None)


def _find_tls(exc: BaseException) -> ssl.SSLError | None:
    # SSLWantRead/WriteError only say "not yet": a handshake cut short by a timeout
    # leaves one in the chain, and that is a timeout, not a TLS failure.
    for link in _chain(exc):
        if isinstance(link, ssl.SSLError) and not isinstance(
            link, ssl.SSLWantReadError | ssl.SSLWantWriteError
        ):
            return link
    return None


# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h) for the reasons a user can
# act on; anything else is reported with OpenSSL's own words.
_UNKNOWN_ISSUER = {2, 20, 21}  # issuer not found / not found locally / leaf unverifiable
_SELF_SIGNED = 18  # DEPTH_ZERO_SELF_SIGNED_CERT
_UNTRUSTED_ROOT = 19  # SELF_SIGNED_CERT_IN_CHAIN
_NOT_YET_VALID = 9
_EXPIRED = 10
_REVOKED = 23
_NAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH


class CertificateSummary(msgspec.Struct, frozen=True):
    """The parts of a server certificate a person needs to recognise it.

    Attributes:
        subject: the subject's common name (the whole subject when it has none).
        names: the DNS names and IP addresses it is valid for (subjectAltName).
        issuer: the issuer's common name (the whole issuer when it has none).
        not_before, not_after: its validity period (UTC).
        self_signed: issued by itself rather than by a certificate authority.
    """

    subject: str
    names: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    self_signed: bool

    def __str__(self) -> str:
        names = ", ".join(self.names) if self.names else "no names"
        issuer = "itself (self-signed)" if self.self_signed else f"“{self.issuer}”"
        return (
            f"“{self.subject}” for {names}, issued by {issuer}, valid "
            f"{self.not_before:%Y-%m-%d %H:%M} to {self.not_after:%Y-%m-%d %H:%M} UTC"
        )


def certificate_failure(
    where: str,
    *,
    verify_code: int | None,
    verify_message: str,
    certificate: CertificateSummary | None = None,
) -> TlsFailure:
    """The :class:`TlsFailure` for a certificate that failed verification: which
    certificate (when known) and why, in the log text and in the user's words.

    Never suggests turning verification off: the way out is trusting the right CA.
    """
    code, why = _certificate_reason(verify_code, verify_message, certificate, where)
    presented = f" It presented {certificate}." if certificate is not None else ""
    if code == "tls_hostname_mismatch":
        advice = "The connection could be intercepted. Check the server address or ask IT."
    elif code in ("tls_certificate_expired", "tls_certificate_not_yet_valid"):
        advice = "Check this computer's date and time; if they are right, tell IT."
    else:
        advice = (
            "Ask IT to install your organisation's certificate authority on this computer "
            "or to set its CA bundle in the app's configuration, and check the server address."
        )
    error = TlsFailure(
        f"TLS to {where}: certificate refused: {why} ({verify_message or 'no details'})"
        + (f"; certificate {certificate}" if certificate is not None else ""),
        code=code,
        user_message=f"The certificate of {where} was refused: {why}.{presented} {advice}",
    )
    error.verify_code = verify_code
    error.verify_message = verify_message
    error.reason = why
    error.certificate = certificate
    return error


def _certificate_reason(
    verify_code: int | None,
    verify_message: str,
    certificate: CertificateSummary | None,
    where: str,
) -> tuple[str, str]:
    """``(code, plain words)`` for a verification failure."""
    text = verify_message.lower()
    if verify_code in _NAME_MISMATCH or "mismatch" in text or "hostname" in text:
        names = f" ({', '.join(certificate.names)})" if certificate and certificate.names else ""
        host = where.rsplit(":", 1)[0] if not where.endswith("]") else where
        return (
            "tls_hostname_mismatch",
            f"hostname mismatch: it is issued for other names{names}, not for {host}",
        )
    if verify_code == _EXPIRED or "expired" in text:
        when = f" on {certificate.not_after:%Y-%m-%d %H:%M} UTC" if certificate else ""
        return "tls_certificate_expired", f"it expired{when}"
    if verify_code == _NOT_YET_VALID or "not yet valid" in text:
        when = f" until {certificate.not_before:%Y-%m-%d %H:%M} UTC" if certificate else " yet"
        return "tls_certificate_not_yet_valid", f"it is not valid{when}"
    if verify_code == _REVOKED or "revoked" in text:
        return "tls_certificate_revoked", "it has been revoked by its issuer"
    if verify_code == _SELF_SIGNED or (certificate is not None and certificate.self_signed):
        return (
            "tls_untrusted_certificate",
            "it is self-signed, and this computer does not trust it",
        )
    if verify_code == _UNTRUSTED_ROOT:
        return (
            "tls_untrusted_certificate",
            "its chain ends in a self-signed root certificate this computer does not trust",
        )
    if verify_code in _UNKNOWN_ISSUER or "issuer" in text:
        issuer = f" “{certificate.issuer}”" if certificate else ""
        return (
            "tls_untrusted_certificate",
            f"unknown issuer: its certificate authority{issuer} is not trusted on this computer",
        )
    return "tls_untrusted_certificate", f"it is not trusted ({verify_message or 'no reason given'})"


def _tls_error(tls: BaseException, where: str) -> TlsFailure:
    reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(tls)
    text = str(tls)
    if isinstance(tls, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        code = getattr(tls, "verify_code", None)
        return certificate_failure(
            where,
            verify_code=code if isinstance(code, int) else None,
            verify_message=str(getattr(tls, "verify_message", None) or text),
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text.lower():
        error = TlsFailure(
            f"TLS to {where}: the server does not speak TLS ({reason})",
            code="tls_not_supported",
            user_message=(
                f"{where} does not offer a secure connection on this port. Check whether "
                "the address should start with http:// instead of https://."
            ),
        )
    else:
        error = TlsFailure(
            f"TLS to {where}: handshake failed ({reason})",
            user_message=(
                f"Couldn't open a secure connection to {where}. Check the server address, "
                "or ask IT whether a firewall or proxy blocks it."
            ),
        )
    error.reason = str(reason)
    return error


def _httpx_types(*names: str) -> tuple[type[BaseException], ...]:
    """httpx's exception classes ``names``; none while httpx is not loaded, since nothing
    can have raised one then (the app loads it with its first REST request)."""
    module = sys.modules.get("httpx")
    return tuple(getattr(module, name) for name in names) if module is not None else ()


def _unreachable(exc: BaseException, where: str) -> ServerUnreachable:
    if _find(exc, socket.gaierror) is not None:
        return ServerUnreachable(
            f"cannot resolve {where}: {_find(exc, socket.gaierror)}",
            code="server_not_found",
            user_message=(
                f"Can't find the server {where}. Check the server address and your "
                "network connection."
            ),
        )
    if isinstance(exc, _httpx_types("TimeoutException")) or _find(exc, TimeoutError) is not None:
        return ServerUnreachable(
            f"{where} timed out ({type(exc).__name__})",
            code="server_timeout",
            user_message=(
                f"The server {where} did not answer in time. Check your network "
                "connection; the app keeps trying."
            ),
        )
    if _find(exc, ConnectionRefusedError) is not None:
        return ServerUnreachable(
            f"{where} refused the connection",
            code="connection_refused",
            user_message=(
                f"Nothing answers at {where}. The server may be down or the address "
                "may be wrong; the app keeps trying."
            ),
        )
    return ServerUnreachable(
        f"connection to {where} failed ({type(exc).__name__}: {exc})",
        user_message=(
            f"Can't reach the server {where}. Check your network connection; the app keeps trying."
        ),
    )


def proxy_unreachable(proxy: str, cause: BaseException | str) -> ProxyFailure:
    """The proxy itself could not be reached (every connection goes to it first)."""
    where = describe_host(proxy)
    return ProxyFailure(
        f"cannot connect to the proxy {where}: {cause}",
        code="proxy_unreachable",
        user_message=(
            f"Can't reach the proxy server {where}. Check the proxy settings or your "
            "network connection."
        ),
    )


def _proxy_refused(exc: BaseException, where: str, proxy: str | None) -> ProxyFailure:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    answer = f" (HTTP {status})" if isinstance(status, int) else ""
    via = f"the proxy {describe_host(proxy)}" if proxy else "the proxy"
    return ProxyFailure(
        f"{via} refused the connection to {where}{answer}: {exc}",
        # An answer with a status is the proxy's policy at work (the fallback's choice
        # counts a refused WebSocket tunnel); without one, the proxy misbehaved.
        code="proxy_refused" if answer else None,
        user_message=(
            f"{via.capitalize()} refused the connection to {where}{answer}. Check the proxy "
            "settings "
            "(address, user name and password) or ask IT."
        ),
    )


def error_from_transport(exc: BaseException, *, url: str, proxy: str | None = None) -> NetError:
    """The :class:`NetError` for a failed connection or request to ``url``.

    Handles httpx's exceptions and the bare ones a socket connection raises
    (``ssl.SSLError``, ``socket.gaierror``, ``TimeoutError``, ``OSError``), plus
    websockets' proxy and handshake errors. Pure: no I/O, no logging. The
    messages name ``url``'s host and port only.

    Args:
        exc: what the connection attempt raised.
        url: where it was going (any query string, such as ``?token=``, is dropped).
        proxy: the proxy the connection went through, if any: a connection that
            could not be opened then failed at the proxy, and the message names it.

    Returns:
        The classified error; ``exc`` itself if it already is a :class:`NetError`.
    """
    if isinstance(exc, NetError):
        return exc
    where = describe_host(url)
    proxy_errors = (
        *_httpx_types("ProxyError"),
        websockets.exceptions.ProxyError,
        websockets.exceptions.InvalidProxy,
    )
    if isinstance(exc, proxy_errors):
        return _proxy_refused(exc, where, proxy)
    tls = _find_tls(exc)
    if tls is not None:
        return _tls_error(tls, where)
    if isinstance(exc, _httpx_types("RemoteProtocolError")) and "disconnected" not in str(exc):
        return NotOurServer(f"{where} does not speak HTTP as expected: {exc}")
    if isinstance(exc, (websockets.exceptions.InvalidMessage, *_httpx_types("DecodingError"))):
        return NotOurServer(f"{where} sent a malformed answer: {exc}")
    if isinstance(exc, _httpx_types("TooManyRedirects")):
        return NotOurServer(f"{where} redirected too many times")
    if isinstance(exc, (*_httpx_types("TransportError"), OSError)):
        error = _unreachable(exc, where)
        # Through a proxy every connection is opened to the proxy: a connection that
        # could not be opened at all failed there. (A proxy that cannot reach the
        # server answers the tunnel request with an error status instead.)
        opening_failed = isinstance(exc, _httpx_types("ConnectError", "ConnectTimeout")) or (
            isinstance(exc, OSError) and not isinstance(exc, TimeoutError)
        )
        if proxy is not None and opening_failed:
            return proxy_unreachable(proxy, error)
        return error
    return NetError(f"request to {where} failed ({type(exc).__name__}: {exc})")
