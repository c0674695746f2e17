"""The refresh token in the OS keyring, one entry per server and user.

The token goes to the operating system's secret store (Secret Service on Linux,
KWallet, the Windows Credential Locker, the macOS Keychain) and nowhere else:
never a file of ours, a log line or an exception message. Passwords are never
stored at all.

When no trustworthy keyring is available (no keyring daemon, a locked or broken
one, or only a backend that writes plain files such as ``keyrings.alt``'s), the
vault keeps tokens in memory for the life of the process and says so through
:attr:`TokenVault.status` and :attr:`TokenVault.session_only`, so the UI can tell
the user that their login will not be remembered.

The apps never load the keyring stack themselves (issue 20: about 10 MiB of
``keyring``, ``secretstorage`` and ``cryptography`` in a process that runs for days,
for two or three calls a session). Where ``keyring`` is sure to choose the Secret
Service (Linux, no setting naming another backend, not KDE: see
:mod:`tray_app.store.secret_service`) and one answers, a :class:`TokenVault` built
without a ``backend`` makes the same few D-Bus calls itself over ``jeepney``, which the
app already loads for its toasts (~10 ms of CPU at start, against ~0.1 s for a helper
process on the CPU the app is loading on). Anywhere else it runs each keyring operation
in a short-lived helper process (:mod:`tray_app.store.vault_helper`, through
:class:`HelperKeyring`), which judges the keyring by the same rules. ``keyring`` is
imported here only by that helper and where a caller hands in a keyring backend of its
own (tests, :func:`keyring_status`).

Keyring calls block (they talk D-Bus, the OS or the helper), so async callers run them
in a thread: :func:`open_token_vault`, and the vault's ``*_in_background`` methods,
which run on one worker thread per vault, in the order they were asked for.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import msgspec

from tray_app.store.errors import StoreError
from tray_app.store.vault_helper import (
    MAX_LINE,
    HelperReply,
    HelperRequest,
    ProtocolError,
    encode_request,
    parse_reply,
)

if TYPE_CHECKING:
    # asyncio and concurrent.futures are imported where used: the helper process imports
    # this module for the keyring rules, and would pay ~35 ms for them on every run.
    import asyncio
    import concurrent.futures

    from keyring.backend import KeyringBackend

__all__ = [
    "HELPER_IDLE",
    "HELPER_TIMEOUT",
    "HelperKeyring",
    "KeyringFailure",
    "KeyringStatus",
    "KeyringUnavailable",
    "TokenVault",
    "helper_command",
    "keyring_entry_name",
    "keyring_status",
    "open_token_vault",
    "open_token_vault_unless",
]

logger = logging.getLogger(__name__)

# The backends keyring itself recommends: each hands the secret to an OS secret store
# that encrypts it. Anything else (keyrings.alt, unknown third-party backends) is refused,
# because keyrings.alt's file backends write the token to disk in plain text or behind a
# password prompt on a terminal the tray app does not have.
_TRUSTED_BACKENDS = frozenset(
    {
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
        "keyring.backends.kwallet.DBusKeyringKWallet4",
        "keyring.backends.Windows.WinVaultKeyring",
        "keyring.backends.macOS.Keyring",
    }
)
_NO_KEYRING_BACKENDS = frozenset({"keyring.backends.fail.Keyring"})
_DISABLED_BACKENDS = frozenset({"keyring.backends.null.Keyring"})
_PLAINTEXT_MODULE_PREFIX = "keyrings.alt"

# A read of an entry that never exists: it proves the keyring answers (and unlocks it,
# prompting the user if their desktop can) without touching a real entry.
_PROBE_USERNAME = "keyring-probe"

_STILL_LOG_IN = "You can still log in for this session."
_REASON_NO_SERVICE = (
    "No keyring service is running (such as GNOME Keyring or KWallet), so the app cannot "
    f"remember your login. {_STILL_LOG_IN}"
)
_REASON_DISABLED = (
    "The keyring is turned off for this app (PYTHON_KEYRING_BACKEND or keyringrc.cfg selects "
    f"the null backend), so the app cannot remember your login. {_STILL_LOG_IN}"
)
_REASON_PLAINTEXT = (
    "The only keyring available ({backend}) would store your login in a plain file on disk, "
    "which this app refuses to do. Start your desktop's keyring service (such as GNOME Keyring "
    f"or KWallet) so the app can remember your login. {_STILL_LOG_IN}"
)
_REASON_UNTRUSTED = (
    "The keyring in use ({backend}) is not one this app knows to keep secrets encrypted, so "
    f"it will not store your login there. {_STILL_LOG_IN}"
)
_REASON_LOCKED = (
    "Your keyring is locked and was not unlocked, so the app cannot remember your login. "
    f"Unlock the keyring (for example by logging in to your desktop again) and restart the app. "
    f"{_STILL_LOG_IN}"
)
_REASON_NOT_OPENED = (
    "The keyring is not used: this login lasts until the app stops (--session-only)."
)
_REASON_BROKEN = (
    "The keyring service ({backend}) did not answer ({error}), so the app cannot remember "
    f"your login. Restarting your desktop session usually fixes this. {_STILL_LOG_IN}"
)


class KeyringUnavailable(StoreError):
    """The keyring could not do something the user asked for (such as forget a login).

    Attributes:
        user_message: Plain words for the UI: what went wrong and what the user can do.
            Never contains a token.
    """

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class KeyringStatus(msgspec.Struct, frozen=True):
    """Whether the app can keep the refresh token in the keyring.

    Attributes:
        usable: True when tokens are stored in a trusted, answering keyring.
        backend: The keyring backend's display name, e.g. ``"SecretService Keyring"``.
        reason: Empty when usable; otherwise plain words for the UI saying what is wrong
            and what the user can do.
    """

    usable: bool
    backend: str
    reason: str


def _class_path(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_name(backend: KeyringBackend) -> str:
    try:
        return str(backend.name)
    except Exception:  # a third-party backend's name property is not ours to trust
        return _class_path(backend)


def _refusal(backend: KeyringBackend) -> str:
    """Why ``backend`` (not a chainer) may not hold the token, in plain words."""
    path = _class_path(backend)
    name = _backend_name(backend)
    if path in _NO_KEYRING_BACKENDS:
        return _REASON_NO_SERVICE
    if path in _DISABLED_BACKENDS:
        return _REASON_DISABLED
    if path.startswith(_PLAINTEXT_MODULE_PREFIX):
        return _REASON_PLAINTEXT.format(backend=name)
    return _REASON_UNTRUSTED.format(backend=name)


def _members(backend: KeyringBackend) -> list[KeyringBackend]:
    """The backends a write would go to, in keyring's own order (a chainer's members)."""
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        return list(backend.backends)
    return [backend]


def _chainer_refusal(members: list[KeyringBackend]) -> str:
    reasons = [_refusal(member) for member in members]
    # A plain-file member is the one worth naming: it is what keyring would silently use.
    for member, reason in zip(members, reasons, strict=True):
        if _class_path(member).startswith(_PLAINTEXT_MODULE_PREFIX):
            return reason
    return reasons[0] if reasons else _REASON_NO_SERVICE


class KeyringFailure(Exception):
    """A keyring operation that did not happen, said without the keyring's own words.

    The same for a keyring in this process and one behind the helper: only the kind and
    the exception's type name travel (a D-Bus error's message may echo the token).

    Attributes:
        kind: ``"locked"``, ``"not_found"`` (nothing to delete), ``"failed"``,
            ``"refused"`` (the helper found no trusted keyring any more) or ``"helper"``
            (the helper did not start, died, timed out or answered garbage).
        type_name: The failing exception's type name, or the helper's problem.
        reason: The user-facing reason to show, when the failure brings its own.
        backend: The backend's display name, when the failure names one.
    """

    def __init__(self, kind: str, type_name: str, *, reason: str = "", backend: str = "") -> None:
        super().__init__(f"{kind}: {type_name}")
        self.kind = kind
        self.type_name = type_name
        self.reason = reason
        self.backend = backend

    @classmethod
    def of(cls, error: BaseException) -> KeyringFailure:
        """The failure a keyring exception stands for (one of ours is itself)."""
        if isinstance(error, KeyringFailure):
            return error
        import keyring.errors

        if isinstance(error, keyring.errors.KeyringLocked):
            return cls("locked", type(error).__name__)
        if isinstance(error, keyring.errors.PasswordDeleteError):
            return cls("not_found", type(error).__name__)
        return cls("failed", type(error).__name__)


def _failure_reason(backend_name: str, failure: KeyringFailure) -> str:
    if failure.reason:
        return failure.reason
    if failure.kind == "locked":
        return _REASON_LOCKED
    # Only the error's type: messages of D-Bus errors may echo arguments.
    return _REASON_BROKEN.format(backend=backend_name, error=failure.type_name)


def _choose(backend: KeyringBackend | None) -> tuple[KeyringStatus, KeyringBackend | None]:
    """The verdict before any call: the trusted backend to use, or None and why not.

    A chainer's first trusted member is used directly, so that a write can never fall
    through to a plain-file member.
    """
    if backend is None:
        try:
            import keyring

            backend = keyring.get_keyring()
        except Exception as error:
            logger.warning("keyring: no backend could be loaded (%s)", type(error).__name__)
            return KeyringStatus(False, "none", _REASON_NO_SERVICE), None
    from keyring.backends.chainer import ChainerBackend

    members = _members(backend)
    trusted = [member for member in members if _class_path(member) in _TRUSTED_BACKENDS]
    if not trusted:
        name = _backend_name(backend)
        reason = _chainer_refusal(members) if isinstance(backend, ChainerBackend) else None
        logger.info("keyring: refusing backend %s", name)
        return KeyringStatus(False, name, reason or _refusal(backend)), None
    chosen = trusted[0]
    return KeyringStatus(True, _backend_name(chosen), ""), chosen


class _Backend(Protocol):
    """A keyring backend's three calls: ``keyring``'s backends, or the helper's direct
    Secret Service (:mod:`tray_app.store.secret_service`)."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def _assess(backend: KeyringBackend | None) -> tuple[KeyringStatus, _Backend | None]:
    """The status, and the trusted backend to use (None when refused).

    A trusted backend must also answer a probe read; when it does not, the status says
    why and the backend is still returned (a delete is worth trying later).
    """
    return _probe(*_choose(backend))


def _probe(status: KeyringStatus, chosen: _Backend | None) -> tuple[KeyringStatus, _Backend | None]:
    """``status`` once ``chosen`` (when there is one) answered a probe read, or why not."""
    if chosen is None:
        return status, None
    try:
        chosen.get_password(TokenVault.SERVICE, _PROBE_USERNAME)
    except Exception as error:
        name = status.backend
        logger.warning("keyring: %s did not answer a probe read (%s)", name, type(error).__name__)
        return KeyringStatus(False, name, _failure_reason(name, KeyringFailure.of(error))), chosen
    return status, chosen


_T = TypeVar("_T")


async def _on_own_thread(call: Callable[[], _T], *, name: str) -> _T:
    """``call()`` on a daemon thread of its own, awaited.

    It may wait for a person (a locked keyring's unlock prompt): the event loop goes on
    meanwhile, and a process that quits while it waits is not held up by it, as it would
    be by asyncio's executor, whose threads are joined at exit. Cancelling the await
    leaves the thread to finish (or be ended with the process) unheard.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # a cancelled await no longer wants it
            outcome()

    def run() -> None:
        try:
            result = call()
        except BaseException as error:  # handed to the awaiting side as is
            outcome: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            outcome = functools.partial(future.set_result, result)
        # RuntimeError: the loop closed meanwhile, and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


async def open_token_vault(
    *, session_only: bool = False, preload: tuple[str, str] | None = None
) -> TokenVault:
    """``TokenVault(session_only=..., preload=...)``, built on a daemon thread of its own
    (see :func:`_on_own_thread`): its probe may wait for a person.

    Args:
        session_only: Keep new tokens in memory only.
        preload: ``(server_url, username)`` whose saved token is read along with the
            probe (the start's restore then runs no second helper).
    """
    return await _on_own_thread(
        lambda: TokenVault(session_only=session_only, preload=preload), name="keyring-open"
    )


async def open_token_vault_unless(
    stop: asyncio.Event, *, preload: tuple[str, str] | None = None
) -> TokenVault | None:
    """``open_token_vault(preload=...)``, or None if ``stop`` is set first.

    A locked keyring puts up its unlock prompt and answers only when someone does: the
    caller's loop goes on meanwhile, and stopping does not wait for the prompt either
    (the probe's thread keeps waiting, and nothing awaits it).
    """
    import asyncio

    opened: asyncio.Future[TokenVault | bool] = asyncio.ensure_future(
        open_token_vault(preload=preload)
    )
    stopping: asyncio.Future[TokenVault | bool] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({opened, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not opened.done():
        opened.cancel()
        return None
    vault = opened.result()
    assert isinstance(vault, TokenVault)
    return vault


def keyring_status(backend: KeyringBackend | None = None) -> KeyringStatus:
    """Whether ``backend`` (default: keyring's own choice) can hold the refresh token.

    Judged in this process (it loads keyring): :class:`TokenVault` asks its helper.

    Refuses backends that do not keep secrets in an OS secret store: keyring's ``fail``
    (no keyring service) and ``null`` (keyring disabled) backends, every ``keyrings.alt``
    backend (plain or password-prompted files), unknown third-party backends, and a chainer
    with none of the trusted backends among its members. A trusted backend must also answer
    a probe read: a locked keyring, a vanished daemon or any other error makes it unusable.

    Args:
        backend: The backend to judge; None for ``keyring.get_keyring()``.

    Returns:
        The verdict, with a plain-words reason when unusable. Never raises.
    """
    return _assess(backend)[0]


# --- where the keyring operations run --------------------------------------------------


class _Keyring(Protocol):
    """The keyring as the vault uses it; every failure is a :class:`KeyringFailure`."""

    def open(self, entry: str | None) -> tuple[KeyringStatus, bool, str | None]:
        """The verdict (probe read included), whether a trusted backend exists (a delete
        is worth trying), and ``entry``'s token when usable and asked for. Never raises."""
        ...

    def get(self, entry: str) -> str | None: ...

    def set(self, entry: str, token: str) -> None: ...

    def delete(self, entry: str) -> None: ...


class _InProcessKeyring:
    """A keyring backend in this process: one handed in (tests), or the Secret Service
    over jeepney where keyring would choose it (:func:`_default_keyring`).

    Args:
        assess: The status and the trusted backend, once judged (a probe read included).
    """

    def __init__(self, assess: Callable[[], tuple[KeyringStatus, _Backend | None]]) -> None:
        self._assess = assess
        self._chosen: _Backend | None = None

    @classmethod
    def of(cls, backend: KeyringBackend) -> _InProcessKeyring:
        """``backend``, judged by the vault's rules (:func:`keyring_status`)."""
        return cls(functools.partial(_assess, backend))

    def open(self, entry: str | None) -> tuple[KeyringStatus, bool, str | None]:
        status, self._chosen = self._assess()
        token = None
        if status.usable and entry is not None:
            try:
                token = self.get(entry)
            except KeyringFailure as failure:
                return (
                    KeyringStatus(False, status.backend, _failure_reason(status.backend, failure)),
                    True,
                    None,
                )
        return status, self._chosen is not None, token

    def _run(self, call: Callable[[_Backend], _T]) -> _T:
        if self._chosen is None:
            raise KeyringFailure("refused", "no trusted backend")
        try:
            return call(self._chosen)
        except Exception as error:
            raise KeyringFailure.of(error) from None

    def get(self, entry: str) -> str | None:
        token = self._run(lambda backend: backend.get_password(TokenVault.SERVICE, entry))
        return str(token) if token else None

    def set(self, entry: str, token: str) -> None:
        self._run(lambda backend: backend.set_password(TokenVault.SERVICE, entry, token))

    def delete(self, entry: str) -> None:
        self._run(lambda backend: backend.delete_password(TokenVault.SERVICE, entry))


# A locked keyring's unlock prompt waits for a person: give them time to answer it.
HELPER_TIMEOUT: Final = 120.0
# How long a helper is kept after its last answer. The start's read is followed within a
# second or two by the save of the token its refresh rotated: one helper does both, so
# the second costs a D-Bus call instead of a second interpreter and keyring import
# (~0.17 s of CPU, just as the app opens its socket). Then it goes (~10 MiB).
HELPER_IDLE: Final = 10.0
# After its pipe closes, the helper only has to exit.
_HELPER_EXIT_WAIT = 5.0
_HELPER_NAME = "keyring helper"
_REASON_HELPER = (
    "The app's keyring helper {problem}, so the app cannot remember your login. "
    f"Restarting the app usually fixes this. {_STILL_LOG_IN}"
)


def helper_command(
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], str | None, dict[str, str]]:
    """How to start the helper: the command, the directory to start it in, and its
    environment (``environ``, by default this process's, with what the helper needs).

    Frozen (the one-folder bundle), ``sys.executable`` is the bundle's own program, which
    runs the helper when given ``--vault-helper``. Otherwise it is Python, started in the
    folder holding ``tray_app`` so that ``-m`` finds this very copy of the app (and not
    whatever a ``tray_app`` in the user's current directory might be: it gets the token).
    It runs with ``-S`` and this interpreter's module search path as ``PYTHONPATH``:
    the same modules, without ``site`` reading the ``.pth`` files again (an editable
    install's import hook and setuptools' distutils shim cost ~30 ms of CPU per start,
    on the CPU the app is loading on).
    """
    env = dict(os.environ if environ is None else environ)
    if getattr(sys, "frozen", False):
        return [sys.executable, "--vault-helper"], None, env
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), *(entry for entry in sys.path if entry)])
    return [sys.executable, "-S", "-m", "tray_app.store.vault_helper"], str(root), env


class _RunningHelper(msgspec.Struct):
    """A helper process and the request it is answering (or answered last)."""

    request: HelperRequest
    process: subprocess.Popen[bytes]

    def ask(self, request: HelperRequest) -> bool:
        """Send ``request``; False if the helper is gone (its pipe closed)."""
        stdin = self.process.stdin
        assert stdin is not None
        self.request = request
        try:
            stdin.write(encode_request(request))
            stdin.flush()
        except (OSError, ValueError):  # ValueError: the pipe was closed on our side
            return False
        return True

    def end(self) -> None:
        """Close its pipe (it exits: see the helper) and reap it, killing it if it does
        not exit within a few seconds."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=_HELPER_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


_early: _RunningHelper | None = None
_early_lock = threading.Lock()


def _default_keyring() -> _Keyring:
    """The Secret Service in this process where keyring would choose it and one answers
    (see the module's docstring); the helper anywhere else."""
    from tray_app.store import secret_service

    direct = secret_service.open_if_chosen()
    if direct is None:
        return HelperKeyring()
    return _InProcessKeyring(
        lambda: _probe(KeyringStatus(True, secret_service.BACKEND_NAME, ""), direct)
    )


def start_reading_early(server_url: str, username: str) -> None:
    """Start the helper's first question (is the keyring usable, and this account's saved
    login) now, while the app goes on loading: the tray app calls it right after its icon
    is shown, so the helper's interpreter and the keyring's D-Bus round trips overlap the
    app's imports. The vault's first ``open`` for this account takes the answer. Never
    raises: a failure here is met again (and reported) by that ``open``.

    Where the vault will ask the Secret Service itself (:func:`_default_keyring`), no
    helper is started: its interpreter would cost more CPU than the calls it saves."""
    global _early
    from tray_app.store.secret_service import keyring_would_choose_secret_service

    if keyring_would_choose_secret_service():
        return
    try:
        entry = keyring_entry_name(server_url, username)
        running = HelperKeyring().start(HelperRequest("status", entry))
    except (ValueError, KeyringFailure):
        return
    with _early_lock:
        previous, _early = _early, running
    if previous is not None:
        _abandon(previous)


def _take_early(request: HelperRequest) -> _RunningHelper | None:
    """The helper started early, if it was asked ``request``; one asked something else
    is let go (its stdin closed: it exits without answering)."""
    global _early
    with _early_lock:
        running, _early = _early, None
    if running is None:
        return None
    if running.request == request:
        return running
    _abandon(running)
    return None


def _abandon(running: _RunningHelper) -> None:
    # Not reaped here (the caller may be the GUI thread): a thread does it.
    threading.Thread(target=running.end, name="keyring-helper-end", daemon=True).start()


class HelperKeyring:
    """The keyring through the helper process, kept between operations that come close
    together (see :data:`HELPER_IDLE`) and started again when needed.

    Safe to share between threads: one operation at a time.

    Args:
        command: The helper's command line (default: :func:`helper_command`'s).
        timeout: Seconds one operation may take, unlock prompt included; then the helper
            is killed and the operation fails (``kind="helper"``).
        idle: Seconds the helper is kept after an answer; 0 ends it after every one.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        timeout: float = HELPER_TIMEOUT,
        idle: float = HELPER_IDLE,
    ) -> None:
        self._command = list(command) if command is not None else None
        self._timeout = timeout
        self._idle = idle
        self._lock = threading.Lock()  # one operation at a time, and the fields below
        self._kept: _RunningHelper | None = None
        self._idle_timer: threading.Timer | None = None

    def open(self, entry: str | None) -> tuple[KeyringStatus, bool, str | None]:
        try:
            reply = self._call(HelperRequest("status", entry))
        except KeyringFailure as failure:
            logger.warning("keyring: the helper failed (%s)", failure.type_name)
            # Deletes are still tried: a later helper may work, and a logout must not
            # leave a login behind silently.
            return KeyringStatus(False, _HELPER_NAME, failure.reason), True, None
        if reply.error is not None:
            return KeyringStatus(False, reply.backend, reply.reason), reply.trusted, None
        token = reply.value if isinstance(reply.value, str) else None
        return KeyringStatus(reply.usable, reply.backend, reply.reason), reply.trusted, token

    def get(self, entry: str) -> str | None:
        value = self._answer(HelperRequest("get", entry)).value
        return value if isinstance(value, str) and value else None

    def set(self, entry: str, token: str) -> None:
        self._answer(HelperRequest("set", entry, token))

    def delete(self, entry: str) -> None:
        self._answer(HelperRequest("delete", entry))

    def close(self) -> None:
        """Let the kept helper go now (it is started again if needed)."""
        with self._lock:
            self._let_go()

    def _answer(self, request: HelperRequest) -> HelperReply:
        reply = self._call(request)
        if reply.error is None:
            return reply
        if reply.error == "bad_request":  # ours to send right: a bug, said as a failure
            raise KeyringFailure("failed", "BadRequest", backend=reply.backend)
        reason = reply.reason if reply.error == "refused" else ""
        raise KeyringFailure(
            reply.error, reply.error_type or reply.error, reason=reason, backend=reply.backend
        )

    def start(self, request: HelperRequest) -> _RunningHelper:
        """Start a helper on ``request`` without waiting for its answer (``finish``).

        Raises:
            KeyringFailure: ``kind="helper"``: it could not be started.
        """
        if self._command:
            command, directory, env = self._command, None, None
        else:
            command, directory, env = helper_command()
        options: dict[str, Any] = {}
        if sys.platform == "win32":  # no console window flashing up for a GUI app
            options["creationflags"] = subprocess.CREATE_NO_WINDOW
        try:
            # The token goes through the pipe, never the command line or the environment.
            process = subprocess.Popen(  # noqa: S603 - our own program, no shell
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=directory,
                env=env,
                **options,
            )
        except OSError as error:
            raise self._failure("could not be started", type(error).__name__) from None
        running = _RunningHelper(request, process)
        running.ask(request)  # a helper that died already: no answer says so
        return running

    def finish(self, running: _RunningHelper) -> HelperReply:
        """The answer to the request ``running`` was last asked, waited for up to the
        timeout; the helper is left running.

        Raises:
            KeyringFailure: ``kind="helper"``: it died, did not answer within the
                timeout, or answered something that is not a reply. The helper is
                ended then.
        """
        process = running.process
        timed_out = threading.Event()

        def give_up() -> None:
            timed_out.set()
            with contextlib.suppress(OSError):
                process.kill()

        timer = threading.Timer(self._timeout, give_up)
        timer.daemon = True
        timer.start()
        assert process.stdout is not None
        try:
            line = process.stdout.readline(MAX_LINE + 1)
        finally:
            timer.cancel()
        if line and not timed_out.is_set():
            try:
                return parse_reply(line, running.request)
            except ProtocolError as error:
                logger.warning("keyring: the helper's answer is not one: %s", error)
        running.end()  # after the answer, so that its exit status is known
        if timed_out.is_set():
            raise self._failure(f"did not answer within {self._timeout:g} seconds", "Timeout")
        if not line:
            raise self._failure("stopped without answering", f"ExitStatus{process.returncode}")
        raise self._failure("gave an answer the app could not read", "BadReply")

    def _call(self, request: HelperRequest) -> HelperReply:
        """``request``'s reply: from the helper started early for that very request
        (:func:`start_reading_early`), the kept one, or a new one.

        Raises:
            KeyringFailure: ``kind="helper"``: it could not start, died, did not answer
                within the timeout, or answered something that is not a reply.
        """
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            reply = None
            running = _take_early(request)
            if running is not None:
                self._let_go()
            elif self._kept is not None and self._kept.ask(request):
                running, self._kept = self._kept, None
                try:
                    reply = self.finish(running)
                except KeyringFailure as failure:
                    if not failure.type_name.startswith("ExitStatus"):
                        raise
                    # It went while idle (killed, or out of memory): once more with a
                    # new one, as every operation may be repeated.
                    running = None
            else:
                self._let_go()  # gone by itself: its pipe broke
            if running is None:
                running = self.start(request)
            if reply is None:
                reply = self.finish(running)  # raises with the helper ended
            if self._idle > 0:
                self._kept = running
                timer = threading.Timer(self._idle, lambda: self._let_go_when_idle(timer))
                timer.daemon = True
                self._idle_timer = timer
                timer.start()
            else:
                running.end()
            return reply

    def _let_go_when_idle(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._idle_timer is not timer:
                return  # an operation took the helper meanwhile
            self._idle_timer = None
            self._let_go()

    def _let_go(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.end()

    def _failure(self, problem: str, type_name: str) -> KeyringFailure:
        return KeyringFailure(
            "helper",
            type_name,
            reason=_REASON_HELPER.format(problem=problem),
            backend=_HELPER_NAME,
        )


class _Worker:
    """One daemon thread running calls one at a time, in the order they were handed in.

    Started by the first call. A daemon: a process that quits is not held up by a call
    that waits for a person; what must be done before exit is awaited by its owner.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def submit(self, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        import concurrent.futures

        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._calls.put((call, future))
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            call, future = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited its turn
            try:
                result = call()
            except BaseException as error:  # the caller's to handle
                future.set_exception(error)
            else:
                future.set_result(result)


def _normalise_server_url(server_url: str) -> str:
    text = server_url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        # The address is not echoed: it may carry a password in its user-info part.
        raise ValueError("server address is not an http:// or https:// URL with a host name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("server address has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    default_port = 443 if scheme == "https" else 80
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


def keyring_entry_name(server_url: str, username: str) -> str:
    """The keyring "username" of one account's entry: ``"alice@https://host:8000"``.

    The server URL is normalised (scheme and host lower-cased, default port and trailing
    slash dropped, query and fragment ignored) so spellings of one server share an entry.

    Raises:
        ValueError: The username is empty, or the server URL is not http(s) with a host.
    """
    if not username:
        raise ValueError("username must not be empty")
    return f"{username}@{_normalise_server_url(server_url)}"


class TokenVault:
    """Refresh tokens per server and user: in the keyring, or in memory when it can't be.

    Safe to share between threads. Tokens kept in memory (``session_only``) are gone when
    the process exits. One keyring operation runs at a time; reading :attr:`status`
    never waits for one.
    """

    SERVICE = "tray-notifier"

    def __init__(
        self,
        *,
        backend: KeyringBackend | None = None,
        session_only: bool = False,
        use_keyring: bool = True,
        preload: tuple[str, str] | None = None,
        helper: HelperKeyring | None = None,
    ) -> None:
        """Judge the keyring once (a probe read) and pick where tokens go.

        The probe may wait for a person: a locked keyring puts up its unlock prompt and
        answers when it is dismissed. Build it off a GUI thread; where the keyring must
        not be touched at all, use :meth:`in_memory`.

        Args:
            backend: A keyring backend to use in this process; None (the apps): the
                keyring of keyring's own choice, over jeepney in this process where
                that is the Secret Service, else through the helper process.
            session_only: Keep new tokens in memory only (the user chose not to be
                remembered). Deleting still removes an entry an earlier session stored.
            use_keyring: False: never touch the keyring, not even to look at it.
            preload: ``(server_url, username)``: read that account's token along with
                the probe, so the first load of it needs no second helper run (the
                app's start). Ignored when session-only or not a valid account.
            helper: The helper to run when ``backend`` is None, even where the Secret
                Service could be asked directly (tests: the helper's own behaviour, or a
                broken one).
        """
        self._lock = threading.Lock()  # the state below; never held across keyring I/O
        self._io = threading.Lock()  # one keyring operation at a time
        self._memory: dict[str, str] = {}
        self._preloaded: dict[str, str | None] = {}
        self._worker = _Worker("keyring-worker")
        self._forced_session_only = session_only or not use_keyring
        self._keyring: _Keyring | None = None
        if not use_keyring:
            self._status = KeyringStatus(False, "none", _REASON_NOT_OPENED)
            return
        keyring: _Keyring = (
            _InProcessKeyring.of(backend) if backend is not None else helper or _default_keyring()
        )
        entry = None
        if preload is not None and not self._forced_session_only:
            with contextlib.suppress(ValueError):  # not an account: nothing to read ahead
                entry = keyring_entry_name(*preload)
        self._status, trusted, token = keyring.open(entry)
        if trusted:
            self._keyring = keyring
        if entry is not None and self._status.usable:
            self._preloaded[entry] = token

    @classmethod
    def in_memory(cls) -> TokenVault:
        """A vault that keeps tokens in this process's memory and never touches the
        keyring (``--session-only``, and the tray app until its keyring is opened off the
        GUI thread)."""
        return cls(use_keyring=False)

    @property
    def status(self) -> KeyringStatus:
        """The keyring's state; turns unusable (with a reason) if a later call fails."""
        with self._lock:
            return self._status

    @property
    def session_only(self) -> bool:
        """True when tokens live only in this process's memory (forced, or no keyring)."""
        with self._lock:
            return self._forced_session_only or not self._status.usable

    def save_refresh_token(self, server_url: str, username: str, token: str) -> bool:
        """Remember ``token`` for this account, replacing any earlier one.

        Returns:
            True if stored in the keyring; False if kept in memory for this session only
            (session-only vault, or the keyring failed just now; ``status`` then says why).

        Raises:
            ValueError: Empty token or username, or a server URL that is not http(s).
        """
        if not token:
            raise ValueError("refusing to save an empty refresh token")
        entry = keyring_entry_name(server_url, username)
        with self._io:
            with self._lock:
                self._preloaded.pop(entry, None)
                keyring = self._writable_keyring()
                if keyring is None:
                    self._memory[entry] = token
                    return False
            try:
                keyring.set(entry, token)
            except KeyringFailure as failure:
                with self._lock:
                    self._mark_failed("save", entry, failure)
                    self._memory[entry] = token
                return False
            with self._lock:
                self._memory.pop(entry, None)
            return True

    def load_refresh_token(self, server_url: str, username: str) -> str | None:
        """The token remembered for this account, or None.

        A token kept in memory this session wins over the keyring. A keyring error is
        logged and answered with None (the user logs in again), never raised.

        Raises:
            ValueError: Empty username, or a server URL that is not http(s).
        """
        entry = keyring_entry_name(server_url, username)
        with self._io:
            with self._lock:
                if entry in self._memory:
                    return self._memory[entry]
                if entry in self._preloaded:  # read along with the probe, once
                    return self._preloaded.pop(entry)
                keyring = self._writable_keyring()
                if keyring is None:
                    return None
            try:
                return keyring.get(entry)
            except KeyringFailure as failure:
                with self._lock:
                    self._mark_failed("load", entry, failure)
                return None

    def delete_refresh_token(self, server_url: str, username: str) -> None:
        """Forget this account's token, in memory and in the keyring. Idempotent.

        The keyring entry is removed even from a session-only vault, and retried even after
        an earlier keyring error, so logging out never leaves a login behind silently.

        Raises:
            ValueError: Empty username, or a server URL that is not http(s).
            KeyringUnavailable: A trusted keyring holds (or may hold) the entry but failed
                to remove it; ``user_message`` tells the user what to do.
        """
        entry = keyring_entry_name(server_url, username)
        with self._io:
            with self._lock:
                self._memory.pop(entry, None)
                self._preloaded.pop(entry, None)
                keyring = self._keyring
            if keyring is None:
                return
            try:
                keyring.delete(entry)
            except KeyringFailure as failure:
                if failure.kind == "not_found":
                    return  # nothing stored: already forgotten
                with self._lock:
                    self._mark_failed("delete", entry, failure)
                problem = (
                    "the keyring is locked"
                    if failure.kind == "locked"
                    else "the keyring service did not answer"
                )
                raise KeyringUnavailable(
                    f"Your login could not be removed from the keyring: {problem}. Try again "
                    "once the keyring is unlocked, or delete the entry for "
                    f"'{self.SERVICE}' in your keyring manager (such as Seahorse or KWallet "
                    "Manager)."
                ) from None

    # --- the same, on the vault's worker thread, in the order asked ---------------------

    def save_in_background(
        self, server_url: str, username: str, token: str
    ) -> concurrent.futures.Future[bool]:
        """:meth:`save_refresh_token` on the vault's worker thread, after everything
        handed to it before; the input is checked here (``ValueError`` at once)."""
        if not token:
            raise ValueError("refusing to save an empty refresh token")
        keyring_entry_name(server_url, username)
        return self._worker.submit(
            functools.partial(self.save_refresh_token, server_url, username, token)
        )

    def delete_in_background(
        self, server_url: str, username: str
    ) -> concurrent.futures.Future[None]:
        """:meth:`delete_refresh_token` on the vault's worker thread, after everything
        handed to it before (so it wins over an earlier save)."""
        keyring_entry_name(server_url, username)
        return self._worker.submit(
            functools.partial(self.delete_refresh_token, server_url, username)
        )

    async def load_in_background(self, server_url: str, username: str) -> str | None:
        """:meth:`load_refresh_token` on the vault's worker thread: it sees every save and
        delete handed to the worker before."""
        keyring_entry_name(server_url, username)
        import asyncio

        return await asyncio.wrap_future(
            self._worker.submit(functools.partial(self.load_refresh_token, server_url, username))
        )

    async def settled(self) -> None:
        """Wait until every operation handed to the worker so far has finished."""
        if self._worker.started:
            import asyncio

            await asyncio.wrap_future(self._worker.submit(lambda: None))

    def _writable_keyring(self) -> _Keyring | None:
        if self._forced_session_only or not self._status.usable:
            return None
        return self._keyring

    def _mark_failed(self, action: str, entry: str, failure: KeyringFailure) -> None:
        """Switch to memory for the rest of the session; log without the token."""
        name = failure.backend or self._status.backend
        logger.warning(
            "keyring: %s of the refresh token for %s failed (%s); keeping tokens in memory "
            "for this session",
            action,
            entry,
            failure.type_name,
        )
        self._status = KeyringStatus(False, name, _failure_reason(name, failure))
