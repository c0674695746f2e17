"""The keyring helper: the keyring's operations in a short-lived process of its own.

The tray app runs for days; the keyring stack (``keyring``, which scans entry points,
``secretstorage`` and ``jeepney``, and ``cryptography`` for Secret Service's encrypted
session) weighs about 10 MiB and is needed only to read the refresh token at start and
write it when it rotates (issue 20). So the app never imports it: its operations run
here, in ``python -m tray_app.store.vault_helper`` (or ``<bundle> --vault-helper`` when
frozen), which reads request lines of JSON on stdin and answers each with one reply line
of JSON on stdout, in order, until the app closes the pipe. The app keeps one helper
while it has more to ask soon (the start's read, then the save of the token its refresh
rotated) and lets it go when idle.

Requests::

    {"op": "status"}                          the verdict, with the probe read
    {"op": "status", "entry": E}              the same, and the entry's token
    {"op": "get", "entry": E}
    {"op": "set", "entry": E, "token": T}
    {"op": "delete", "entry": E}

Replies always carry ``status`` (``usable``, ``backend``, ``reason``: the verdict after
this operation) and ``trusted`` (a trusted backend was found, so a delete is worth
trying); then ``value`` on success, or ``error`` (``refused``: no trusted backend;
``locked``; ``not_found``: nothing to delete; ``failed``, with ``error_type``, the
exception's type name and never its message, which may echo the token;
``bad_request``, with ``detail``).

The token travels only through the pipes, never argv or the environment. The helper
exits as soon as its stdin closes, even in the middle of an operation (the app quit or
gave up): a locked keyring's unlock prompt asked for by an app that quit is not left
waiting. A request that cannot be read is answered with ``bad_request`` and ends it.

This module imports nothing of the keyring at import time: the app uses its protocol
functions, only the helper process runs :func:`main`. Its two records are dataclasses,
where the rest of the app's are msgspec Structs: the helper is a short-lived process on
the start path, and msgspec's import would cost it more than the two classes do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, Final

__all__ = [
    "MAX_LINE",
    "HelperReply",
    "HelperRequest",
    "ProtocolError",
    "encode_reply",
    "encode_request",
    "error_reply",
    "main",
    "parse_reply",
    "parse_request",
]

# A request or reply is a few hundred bytes (a token is well under 4 KiB); anything near
# this cap is not one of ours, and is refused before it is parsed.
MAX_LINE: Final = 64 * 1024
# Entry names are "user@https://host[:port]/path"; a token is a JWT.
_MAX_ENTRY: Final = 2048
_MAX_TOKEN: Final = 16 * 1024
_MAX_TEXT: Final = 4096  # a backend's name, a reason, a type name

OPS: Final = frozenset({"status", "get", "set", "delete"})
ERRORS: Final = frozenset({"refused", "locked", "not_found", "failed", "bad_request"})

EXIT_OK: Final = 0
EXIT_BAD_REQUEST: Final = 2
# The app closed the pipe (it quit, or gave up waiting) before an answer was sent.
EXIT_ORPHANED: Final = 3


class ProtocolError(ValueError):
    """A request or reply that is not one of the protocol's; ``str()`` says why, and never
    repeats the offending text (it may hold a token)."""


@dataclass(frozen=True)
class HelperRequest:
    """One operation: ``op`` on the keyring entry ``entry`` (``token`` for ``set``)."""

    op: str
    entry: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class HelperReply:
    """The helper's answer (see the module's docstring)."""

    usable: bool
    backend: str
    reason: str
    trusted: bool
    value: str | bool | None = None
    error: str | None = None
    error_type: str | None = None
    detail: str | None = None


def _text(document: dict[str, Any], key: str, *, limit: int, required: bool) -> str | None:
    value = document.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise ProtocolError(f"{key} is longer than {limit} characters")
    return value


def _document(line: bytes, what: str) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"the {what} is longer than {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        raise ProtocolError(f"the {what} is not one whole line")
    try:
        document = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(f"the {what} is not JSON") from None
    except RecursionError:  # deeply nested arrays
        raise ProtocolError(f"the {what} is nested too deeply") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"the {what} is not a JSON object")
    return document


def encode_request(request: HelperRequest) -> bytes:
    """The request as one line of JSON (UTF-8, ending in a newline)."""
    document: dict[str, str] = {"op": request.op}
    if request.entry is not None:
        document["entry"] = request.entry
    if request.token is not None:
        document["token"] = request.token
    return json.dumps(document).encode("utf-8") + b"\n"


def parse_request(line: bytes) -> HelperRequest:
    """The request in ``line`` (one line of JSON, newline included).

    Raises:
        ProtocolError: Not JSON, too long, an unknown op or field, a missing or
            mistyped field.
    """
    document = _document(line, "request")
    unknown = set(document) - {"op", "entry", "token"}
    if unknown:
        raise ProtocolError(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}")
    op = document.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f"op must be one of {', '.join(sorted(OPS))}")
    entry = _text(document, "entry", limit=_MAX_ENTRY, required=op != "status")
    token = _text(document, "token", limit=_MAX_TOKEN, required=op == "set")
    if op != "set" and token is not None:
        raise ProtocolError("only set carries a token")
    return HelperRequest(op, entry, token)


def encode_reply(reply: HelperReply) -> bytes:
    """The reply as one line of JSON (UTF-8, ending in a newline)."""
    document: dict[str, Any] = {
        "status": {"usable": reply.usable, "backend": reply.backend, "reason": reply.reason},
        "trusted": reply.trusted,
    }
    if reply.error is None:
        document["value"] = reply.value
    else:
        document["error"] = reply.error
        if reply.error_type is not None:
            document["error_type"] = reply.error_type
        if reply.detail is not None:
            document["detail"] = reply.detail
    return json.dumps(document).encode("utf-8") + b"\n"


def parse_reply(line: bytes, request: HelperRequest) -> HelperReply:
    """The helper's reply to ``request``, checked field by field.

    Raises:
        ProtocolError: Anything but a reply this protocol allows for that request.
    """
    document = _document(line, "reply")
    status = document.get("status")
    if not isinstance(status, dict):
        raise ProtocolError("status must be an object")
    usable, trusted = status.get("usable"), document.get("trusted")
    if not isinstance(usable, bool) or not isinstance(trusted, bool):
        raise ProtocolError("status.usable and trusted must be true or false")
    backend = _text(status, "backend", limit=_MAX_TEXT, required=True)
    reason = status.get("reason")
    if not isinstance(reason, str) or len(reason) > _MAX_TEXT or usable == bool(reason):
        raise ProtocolError("status.reason must be empty exactly when usable")
    assert backend is not None
    error = document.get("error")
    if error is not None:
        if not isinstance(error, str) or error not in ERRORS:
            raise ProtocolError("error is not one the protocol knows")
        error_type = _text(document, "error_type", limit=_MAX_TEXT, required=error == "failed")
        detail = _text(document, "detail", limit=_MAX_TEXT, required=False)
        return HelperReply(usable, backend, reason, trusted, None, error, error_type, detail)
    if "value" not in document:
        raise ProtocolError("a reply carries a value or an error")
    value = document["value"]
    wanted: tuple[type, ...] = {
        "status": (str, type(None)) if request.entry is not None else (type(None),),
        "get": (str, type(None)),
        "set": (bool,),
        "delete": (bool,),
    }[request.op]
    if not isinstance(value, wanted) or (isinstance(value, str) and len(value) > _MAX_TOKEN):
        raise ProtocolError(f"the value does not answer {request.op}")
    checked: str | bool | None = value if isinstance(value, str | bool) else None
    return HelperReply(usable, backend, reason, trusted, checked)


def error_reply(detail: str) -> HelperReply:
    """The answer to a request that could not be read."""
    return HelperReply(False, "none", "bad request", False, error="bad_request", detail=detail)


class _Requests:
    """The request lines arriving on the helper's stdin, read by a thread of its own.

    The app keeps the pipe open while it may still ask something (the start's read, then
    the save of the token that read's refresh rotated), and closes it when it is done or
    goes away. That end ends this process at once: with every request answered, as
    done; with one unanswered, orphaned, since nobody waits for the answer any more and
    a keyring call may be waiting for a person.
    """

    def __init__(self, stdin: IO[bytes]) -> None:
        import queue

        self._descriptor = stdin.fileno()
        self._lines: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._received = self._answered = 0
        self._stopped = False
        threading.Thread(target=self._read, name="vault-helper-stdin", daemon=True).start()

    def next(self) -> bytes:
        """The next request line (a line longer than the protocol allows is handed on
        cut, for :func:`parse_request` to refuse)."""
        return self._lines.get()

    def answered(self) -> None:
        with self._lock:
            self._answered += 1

    def stop(self) -> None:
        """The helper ends by itself (its exit status is the main thread's to give)."""
        with self._lock:
            self._stopped = True

    def _read(self) -> None:
        # The raw descriptor, not the buffered reader: a thread blocked inside the reader
        # holds its lock, and the interpreter's shutdown would wait for that lock.
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(self._descriptor, 4096):
                pending += chunk
                while (end := pending.find(b"\n")) >= 0 or len(pending) > MAX_LINE:
                    cut = end + 1 if end >= 0 else len(pending)
                    line, pending = pending[:cut], pending[cut:] if end >= 0 else b""
                    with self._lock:
                        self._received += 1
                    self._lines.put(line)
        with self._lock:
            if self._stopped:
                return
            done = self._received == self._answered
        os._exit(EXIT_OK if done else EXIT_ORPHANED)


_chosen: tuple[Any, Any] | None = None


def _choice() -> tuple[Any, Any]:
    """The verdict before any call and the backend to use (see ``secrets._choose``),
    once per helper: the direct Secret Service where ``keyring`` would choose it anyway
    (:mod:`tray_app.store.secret_service`), else ``keyring``'s own choice."""
    global _chosen
    if _chosen is None:
        from tray_app.store import secret_service, secrets

        direct = secret_service.open_if_chosen()
        if direct is not None:
            _chosen = secrets.KeyringStatus(True, direct.name, ""), direct
        else:
            _chosen = secrets._choose(None)
    return _chosen


def _answer(request: HelperRequest) -> HelperReply:
    """Run ``request`` against the keyring, judged as the app judges it."""
    from tray_app.store import secrets

    if request.op == "status":
        status, chosen = secrets._probe(*_choice())
        value: str | bool | None = None
        if status.usable and chosen is not None and request.entry is not None:
            try:
                value = chosen.get_password(secrets.TokenVault.SERVICE, request.entry) or None
            except Exception as error:
                return _failure(secrets, status.backend, error)
        return HelperReply(status.usable, status.backend, status.reason, chosen is not None, value)
    status, chosen = _choice()
    if chosen is None:
        return HelperReply(False, status.backend, status.reason, False, error="refused")
    service, entry = secrets.TokenVault.SERVICE, request.entry
    assert entry is not None
    try:
        if request.op == "get":
            value = chosen.get_password(service, entry) or None
        elif request.op == "set":
            assert request.token is not None
            chosen.set_password(service, entry, request.token)
            value = True
        else:
            chosen.delete_password(service, entry)
            value = True
    except Exception as error:
        return _failure(secrets, status.backend, error, deleting=request.op == "delete")
    return HelperReply(True, status.backend, "", True, value)


def _failure(
    secrets: Any, backend: str, error: Exception, *, deleting: bool = False
) -> HelperReply:
    failure = secrets.KeyringFailure.of(error)
    if deleting and failure.kind == "not_found":
        # Nothing stored: the keyring answered, and the entry is gone as asked.
        return HelperReply(True, backend, "", True, error="not_found")
    reason = secrets._failure_reason(backend, failure)
    # Only the type's name: messages of D-Bus errors may echo arguments (the token).
    kind = "locked" if failure.kind == "locked" else "failed"
    return HelperReply(False, backend, reason, True, error=kind, error_type=failure.type_name)


def _answer_safely(request: HelperRequest) -> HelperReply:
    try:
        return _answer(request)
    except Exception as error:  # keyring's own import or choice failing: a broken install
        return HelperReply(
            False, "none", "The keyring could not be loaded.", False,
            error="failed", error_type=type(error).__name__,
        )  # fmt: skip


def main(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """Answer requests, one line each, until the app closes the pipe; the exit status (0,
    or 2 after a request that could not be read: the helper stops there).

    Args:
        stdin: Where the requests come from (default: this process's stdin, read by a
            thread that ends the process when the pipe closes, see :class:`_Requests`).
        stdout: Where the replies go (default: this process's stdout).
    """
    sink = stdout if stdout is not None else sys.stdout.buffer
    requests = _Requests(sys.stdin.buffer) if stdin is None else None
    if requests is not None:
        # A Ctrl-C in the app's terminal reaches its whole process group, this helper
        # too: the app ends the helper by closing the pipe, and a traceback here would
        # only be noise on the user's terminal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    niced = False
    while True:
        if requests is not None:
            line = requests.next()
        else:
            assert stdin is not None
            line = stdin.readline(MAX_LINE + 1)
        if not line:  # the given stream ended (the real stdin's end exits in its reader)
            return EXIT_OK
        try:
            request = parse_request(line)
        except ProtocolError as problem:
            if requests is not None:  # before the reply, which may close the pipe at once
                requests.stop()
            sink.write(encode_reply(error_reply(str(problem))))
            sink.flush()
            return EXIT_BAD_REQUEST
        if requests is not None and not niced and request.op in ("set", "delete"):
            # A save or a delete is nobody's wait (the app hands it to a background
            # worker); a helper started for one must not slow the app, which may be
            # connecting right then.
            niced = True
            if hasattr(os, "nice"):
                os.nice(10)
        reply = encode_reply(_answer_safely(request))
        if requests is not None:  # before the reply, which may close the pipe at once
            requests.answered()
        sink.write(reply)
        sink.flush()


if __name__ == "__main__":
    sys.exit(main())
