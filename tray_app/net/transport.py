"""How the client reaches the server: which certificates it trusts, which proxy it uses.

One :class:`Transport` serves the REST client and the socket session alike, so both
trust the same certificates and go through the same proxy.

Trust: the operating system's trust store, through ``truststore`` (Windows' and macOS'
certificate APIs; on Linux OpenSSL's default locations, which ``update-ca-certificates``
fills from /usr/local/share/ca-certificates), plus an optional CA bundle from the
configuration. ``truststore.SSLContext.load_verify_locations`` adds the bundle to the
system's roots on every platform (OpenSSL's store on Linux, anchor certificates added
to the system's on macOS, a second chain engine on Windows), so neither replaces the
other. Verification is never switched off: nothing here or in the configuration can.

Proxy, first that applies:

1. the configured one (``Transport.proxy``): a URL, or ``"none"``/``"direct"`` for none;
2. the environment: ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY``, upper
   or lower case (lower case wins, as in curl and urllib);
3. the system settings: the Windows registry and macOS' network settings (urllib reads
   them when the environment names no proxy); on Linux, GNOME's ``org.gnome.system.proxy``
   in manual mode (read with ``gsettings``). Other Linux desktops publish their proxy in
   the environment of the session, which step 2 reads. GNOME's setting is read at most
   once every :data:`SYSTEM_PROXY_TTL` seconds (a ``gsettings`` process costs ~6 ms of
   CPU, and the REST client and the socket each ask for it at start and on reconnect).

httpx and websockets each read the environment themselves when left alone (httpx's
``trust_env``, websockets' ``proxy=True``); both are given the proxy resolved here
instead, with httpx's ``trust_env`` off, so the precedence above is the only one.

When a certificate is refused, :meth:`Transport.explain` reads the certificate the
server presented with a second handshake that does not verify, only to describe it:
that connection sends nothing but the handshake and is closed at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import msgspec

from tray_app.net.errors import (
    CertificateSummary,
    NetError,
    TlsFailure,
    certificate_failure,
    describe_host,
)
from tray_app.net.transport_choice import Forced

__all__ = [
    "NO_PROXY_VALUES",
    "SYSTEM_PROXY_TTL",
    "Transport",
    "TransportSettingError",
    "fetch_certificate",
    "gnome_proxies",
    "summarise_certificate",
]

log = logging.getLogger(__name__)

# What a configured proxy may say to mean "connect directly, whatever the environment says".
NO_PROXY_VALUES: Final = frozenset({"none", "direct"})
_PROXY_SCHEMES: Final = frozenset({"http", "https"})
DESCRIBE_TIMEOUT: Final = 5.0
SYSTEM_PROXY_TTL: Final = 30.0
"""Seconds GNOME's proxy setting, once read, is used without reading it again.

Long enough that the REST call and the socket of one connection attempt (and the
quick retries after it) share one ``gsettings`` run; short enough that a proxy changed
in GNOME's settings is used by the next connection attempt 30 s later at the latest.
"""


class TransportSettingError(NetError):
    """A trust or proxy setting cannot be used (a CA bundle that is missing or not PEM,
    a proxy address that is not an http(s) URL). The message names the file or value."""

    code = "transport_setting_invalid"


class Transport(msgspec.Struct, frozen=True):
    """Trust and proxy settings, shared by the REST client and the socket session.

    Attributes:
        ca_bundle: a PEM file of CA certificates trusted in addition to the system's.
        proxy: None to use the environment's or the system's proxy; ``"none"`` or
            ``"direct"`` for no proxy at all; otherwise the proxy's URL
            (``http://user:password@proxy.example.com:3128``).
        live: the live connection's transport: None to choose by itself (the socket,
            the HTTP stream where WebSockets are blocked), ``"websocket"`` or ``"http"``.
        websocket_retry: while on the HTTP stream, seconds before the first retry of the
            socket (None: :data:`~tray_app.net.transport_choice.PROBE_INTERVAL`).
    """

    ca_bundle: Path | None = None
    proxy: str | None = None
    live: Forced = None
    websocket_retry: float | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying against the system's trust store plus ``ca_bundle``.

        Raises:
            TransportSettingError: ``ca_bundle`` is missing, unreadable or holds no
                PEM certificate.
        """
        # Imported with the first TLS connection: a plain ws:// or http:// server never
        # needs it (truststore and the platform module it reads, ~6 ms; issue 20).
        import truststore

        context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_bundle is not None:
            context.load_verify_locations(cadata=_read_ca_bundle(self.ca_bundle))
        return context

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for connections to ``url`` (http, https, ws or wss), or None.

        ``ws``/``wss`` resolve like ``http``/``https``, so the socket session goes
        through the same proxy as the REST calls to the same server.

        Raises:
            TransportSettingError: the proxy found is not an http(s) URL.
        """
        if self.proxy is not None:
            configured = self.proxy.strip()
            if not configured or configured.lower() in NO_PROXY_VALUES:
                return None
            return _checked_proxy(configured, "the configured proxy")
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            port = 443 if secure else 80
        # The environment first; when it names no proxy, urllib reads the Windows
        # registry or macOS' settings (its proxy_bypass follows the same choice).
        # Linux has no system-wide setting urllib knows: GNOME's is read instead.
        environment = urllib.request.getproxies_environment()
        proxies = environment or urllib.request.getproxies()
        source = "the environment's proxy" if environment else "the system's proxy setting"
        if proxies:
            if urllib.request.proxy_bypass(f"{host}:{port}"):
                return None
            found = _pick(proxies, secure)
        elif sys.platform.startswith("linux"):
            found = _gnome_proxy(host, secure)
        else:
            found = None
        return _checked_proxy(found, source) if found else None

    async def explain(self, error: NetError, url: str) -> NetError:
        """``error`` with the refused certificate described, when it is a certificate failure.

        Reads the certificate with a second, non-verifying handshake (through the same
        proxy) that sends nothing else; if that fails too, ``error`` is returned as it was.
        """
        if not isinstance(error, TlsFailure) or error.code not in _CERTIFICATE_CODES:
            return error
        try:
            der = await fetch_certificate(
                url, proxy=self.proxy_for(url), proxy_context=self.ssl_context()
            )
            certificate = summarise_certificate(der)
        except (NetError, OSError, EOFError, TimeoutError, ValueError) as failure:
            log.debug("could not read the refused certificate of %s: %s", url, failure)
            return error
        return certificate_failure(
            describe_host(url),
            verify_code=error.verify_code,
            verify_message=error.verify_message,
            certificate=certificate,
        )


_CERTIFICATE_CODES: Final = frozenset(
    {
        "tls_untrusted_certificate",
        "tls_hostname_mismatch",
        "tls_certificate_expired",
        "tls_certificate_not_yet_valid",
        "tls_certificate_revoked",
    }
)


def _read_ca_bundle(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise _bundle_error(path, "is not a PEM file (it holds binary data)") from None
    except OSError as error:
        raise _bundle_error(path, f"cannot be read: {error.strerror or error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise _bundle_error(path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=text)
    except ssl.SSLError as error:
        raise _bundle_error(
            path, f"holds a damaged certificate ({error.reason or error})"
        ) from None
    return text


def _bundle_error(path: Path, problem: str) -> TransportSettingError:
    return TransportSettingError(
        f"CA bundle {path} {problem}",
        code="ca_bundle_invalid",
        user_message=(
            f"The CA bundle {path} set in the configuration {problem}. Secure connections "
            "cannot be checked against it: ask IT to fix the file or the setting."
        ),
    )


def _pick(proxies: dict[str, str], secure: bool) -> str | None:
    for scheme in ("https", "all") if secure else ("http", "all"):
        if proxies.get(scheme):
            return proxies[scheme]
    return None


def _checked_proxy(proxy: str, source: str) -> str:
    # A bare "host:port" (common in the environment) means an http proxy, as in curl.
    url = proxy if "://" in proxy else f"http://{proxy}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in _PROXY_SCHEMES or not parts.hostname:
        shown = describe_host(url) if parts is not None and parts.hostname else "an address"
        raise TransportSettingError(
            f"{source} {shown} is not an http:// or https:// proxy URL",
            code="proxy_invalid",
            user_message=(
                f"{source.capitalize()} ({shown}) is not an HTTP proxy address this app can "
                "use (http://host:port or https://host:port). Check the proxy settings or "
                "ask IT."
            ),
        )
    return url


# --- GNOME's proxy setting (Linux) ------------------------------------------------------


def gnome_proxies(output: str) -> tuple[dict[str, str], list[str]]:
    """``(proxies by scheme, hosts to bypass)`` from ``gsettings list-recursively
    org.gnome.system.proxy`` output; empty unless its mode is ``'manual'``. Pure."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        schema, _, rest = line.partition(" ")
        key, _, value = rest.partition(" ")
        values[f"{schema.removeprefix('org.gnome.system.proxy')}.{key}"] = value.strip()
    if values.get(".mode") != "'manual'":
        return {}, []
    proxies: dict[str, str] = {}
    for scheme in ("http", "https"):
        host = values.get(f".{scheme}.host", "''").strip("'")
        port = values.get(f".{scheme}.port", "0")
        if host and port.isdigit() and int(port) > 0:
            proxies[scheme] = f"http://{host}:{port}"
    bypass = [
        item.strip().strip("'")
        for item in values.get(".ignore-hosts", "[]").strip("[]").split(",")
        if item.strip().strip("'")
    ]
    return proxies, bypass


class _SystemProxyCache:
    """GNOME's proxy setting as last read, kept for :data:`SYSTEM_PROXY_TTL` seconds.

    Failures (no ``gsettings``, a timeout, an error exit) are kept as "no proxy" for as
    long, so a desktop without GNOME does not spawn a failing process on every call.
    ``proxy_for`` may run on several threads at once: the lock is held while
    ``gsettings`` runs, so a second caller waits for that read instead of starting its own.

    Attributes:
        clock: seconds from a monotonic clock; tests replace it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._setting: tuple[dict[str, str], list[str]] = ({}, [])

    def get(
        self, read: Callable[[], tuple[dict[str, str], list[str]]]
    ) -> tuple[dict[str, str], list[str]]:
        """``(proxies by scheme, hosts to bypass)``: the kept setting, or ``read()``'s
        when none is kept or it is older than :data:`SYSTEM_PROXY_TTL`."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= SYSTEM_PROXY_TTL:
                self._setting = read()
                self._read_at = now
            return self._setting

    def clear(self) -> None:
        """Forget the kept setting: the next :meth:`get` reads it again."""
        with self._lock:
            self._read_at = None
            self._setting = ({}, [])


_system_proxy_cache: Final = _SystemProxyCache()


def _gnome_proxy(host: str, secure: bool) -> str | None:
    proxies, bypass = _system_proxy_cache.get(_read_gnome_proxies)
    if not proxies or _bypassed(host, bypass):
        return None
    return _pick(proxies, secure)


def _read_gnome_proxies() -> tuple[dict[str, str], list[str]]:
    gsettings = shutil.which("gsettings")
    if gsettings is None:
        return {}, []
    try:
        completed = subprocess.run(  # noqa: S603 - a fixed command, found on PATH
            [gsettings, "list-recursively", "org.gnome.system.proxy"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.debug("gsettings could not be read: %s", error)
        return {}, []
    return gnome_proxies(completed.stdout if completed.returncode == 0 else "")


def _bypassed(host: str, patterns: list[str]) -> bool:
    """GNOME's ignore-hosts: names, ``*.domain`` wildcards, addresses and networks."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for pattern in patterns:
        if address is not None:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
        name = pattern.lower().removeprefix("*")
        if host.lower() == name.lstrip(".") or (name.startswith(".") and host.endswith(name)):
            return True
    return False


# --- describing a refused certificate ---------------------------------------------------


def summarise_certificate(der: bytes) -> CertificateSummary:
    """The parts of a DER certificate a person recognises it by. Pure.

    Raises:
        ValueError: ``der`` is not a certificate.
    """
    # cryptography parses X.509 (SecretStorage, the keyring's Linux backend, needs it too).
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_der_x509_certificate(der)

    def common_name(name: x509.Name) -> str:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else name.rfc4514_string() or "(no name)"

    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(
            [str(n) for n in alternative.value.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in alternative.value.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateSummary(
        subject=common_name(certificate.subject),
        names=names,
        issuer=common_name(certificate.issuer),
        not_before=certificate.not_valid_before_utc.astimezone(UTC),
        not_after=certificate.not_valid_after_utc.astimezone(UTC),
        self_signed=certificate.issuer == certificate.subject,
    )


async def fetch_certificate(
    url: str,
    *,
    proxy: str | None = None,
    proxy_context: ssl.SSLContext | None = None,
) -> bytes:
    """The DER certificate the server at ``url`` presents, read WITHOUT verifying it
    (within ``DESCRIBE_TIMEOUT`` seconds).

    Only for describing a certificate that verification refused: the connection sends
    the TLS handshake (and, through ``proxy``, a CONNECT request) and nothing else, and
    is closed at once.

    Args:
        url: the server (https or wss).
        proxy: an http(s) proxy to tunnel through, as the refused connection did.
        proxy_context: verifies an https proxy (it sees the proxy's credentials).

    Raises:
        OSError, TimeoutError, NetError: the server or the proxy could not be reached.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    describe_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    describe_only.check_hostname = False
    describe_only.verify_mode = ssl.CERT_NONE
    async with asyncio.timeout(DESCRIBE_TIMEOUT):
        if proxy is None:
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=describe_only, server_hostname=host
            )
        else:
            writer = await _tunnel(proxy, host, port, proxy_context)
            await writer.start_tls(describe_only, server_hostname=host)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.transport.abort()
    if not der:
        raise ValueError(f"{describe_host(url)} presented no certificate")
    return bytes(der)


async def _tunnel(
    proxy: str, host: str, port: int, proxy_context: ssl.SSLContext | None
) -> asyncio.StreamWriter:
    """A CONNECT tunnel to ``host:port`` through an http(s) proxy."""
    parts = urlsplit(proxy)
    secure = parts.scheme == "https"
    try:
        reader, writer = await asyncio.open_connection(
            parts.hostname,
            parts.port or (443 if secure else 80),
            ssl=(proxy_context or Transport().ssl_context()) if secure else None,
        )
    except OSError as error:
        raise NetError(f"cannot connect to the proxy {describe_host(proxy)}: {error}") from error
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request += (
            f"Proxy-Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
        )
    writer.write((request + "\r\n").encode("latin-1"))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as error:
        writer.transport.abort()
        raise NetError(f"the proxy {describe_host(proxy)} sent an oversized answer") from error
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
    if not status.startswith(b"2"):
        writer.transport.abort()
        raise NetError(f"the proxy {describe_host(proxy)} refused the tunnel ({status.decode()})")
    return writer
