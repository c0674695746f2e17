"""The keyring helper (issue 20): its protocol, and the vault through the real helper.

The apps never load the keyring stack: where the Secret Service is not asked directly
(tests/tray_app/store/test_secret_service.py), every keyring operation runs in ``python
-m tray_app.store.vault_helper``. These tests run that real helper process against a
real ``gnome-keyring-daemon`` on a private D-Bus session (``keyring_desktop``; the vaults
are given ``helper=HelperKeyring()`` where the direct path would apply), and check from a
fresh interpreter that the app's own process never imports ``keyring``,
``secretstorage`` or ``cryptography``. The broken helpers (one that
crashes, one that answers garbage, one that never answers, one that cannot start) are
small real programs in place of the helper's command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import keyring.backend
import pytest
from keyring.backends import SecretService

from tests.tray_app.conftest import KeyringDesktop, client_env, stalled
from tests.tray_app.desktop_session import LOGIN_COLLECTION, SECRETS_NAME
from tray_app.store.secrets import (
    HelperKeyring,
    KeyringUnavailable,
    TokenVault,
    helper_command,
    keyring_entry_name,
)
from tray_app.store.vault_helper import (
    EXIT_BAD_REQUEST,
    EXIT_ORPHANED,
    MAX_LINE,
    HelperReply,
    HelperRequest,
    ProtocolError,
    encode_reply,
    encode_request,
    error_reply,
    parse_reply,
    parse_request,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVER = "http://127.0.0.1:8000"
TOKEN = "refresh-token-2b9d4f6a8c0e1a3c5e7f"
ENTRY = keyring_entry_name(SERVER, "alice")
WAIT = 30.0


def secret_service() -> keyring.backend.KeyringBackend:
    """keyring's Secret Service backend in this process (the test's own, not the app's)."""
    keyring_class: type[keyring.backend.KeyringBackend] = SecretService.Keyring
    return keyring_class()


def in_keyring(entry: str) -> str | None:
    """What gnome-keyring holds for ``entry``, read in this process (the test's own)."""
    token = secret_service().get_password(TokenVault.SERVICE, entry)
    return str(token) if token else None


def line(document: object) -> bytes:
    return json.dumps(document).encode() + b"\n"


def run_helper(stdin: bytes, *, keep_open: bool = True) -> tuple[int, bytes]:
    """The real helper given ``stdin``; its exit status and stdout. With ``keep_open`` the
    pipe stays open until the answer is in, as the app keeps it."""
    command, directory, env = helper_command()
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(stdin)
    process.stdin.flush()
    if not keep_open:
        process.stdin.close()
    out = process.stdout.read() if not keep_open else process.stdout.readline()
    if keep_open:
        process.stdin.close()
        out += process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=WAIT), out


def helper_children() -> list[int]:
    """This process's children that run the helper (any thread may have started one)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"tray_app.store.vault_helper" in cmdline:
                found.append(int(pid))
    return found


# --- the protocol ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        HelperRequest("status"),
        HelperRequest("status", ENTRY),
        HelperRequest("get", ENTRY),
        HelperRequest("set", ENTRY, TOKEN),
        HelperRequest("delete", ENTRY),
    ],
)
def test_requests_round_trip(request_: HelperRequest) -> None:
    encoded = encode_request(request_)
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert parse_request(encoded) == request_


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "not one whole line"),
        (b'{"op": "status"}', "not one whole line"),
        (b"not json\n", "not JSON"),
        (b"\xff\xfe\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b"[" * 100_000 + b"\n", "longer than"),
        (b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested too deeply"),
        (line({"op": "steal"}), "op must be one of"),
        (line({"op": ["get"]}), "op must be one of"),
        (line({"op": "get"}), "entry must be a non-empty string"),
        (line({"op": "get", "entry": ""}), "entry must be a non-empty string"),
        (line({"op": "get", "entry": 7}), "entry must be a non-empty string"),
        (line({"op": "get", "entry": "x" * 5000}), "longer than"),
        (line({"op": "set", "entry": ENTRY}), "token must be a non-empty string"),
        (line({"op": "set", "entry": ENTRY, "token": {"a": 1}}), "token must be"),
        (line({"op": "get", "entry": ENTRY, "token": TOKEN}), "only set carries a token"),
        (line({"op": "get", "entry": ENTRY, "extra": 1}), "unknown fields: extra"),
        (b'{"op": "set", "entry": "e", "token": "' + b"t" * MAX_LINE + b'"}\n', "longer than"),
    ],
)
def test_hostile_requests_are_refused_with_a_reason(raw: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as raised:
        parse_request(raw)
    # The reason never repeats what was sent (it may hold a token).
    assert TOKEN not in str(raised.value)


def test_replies_round_trip_and_are_checked_against_their_request() -> None:
    get = HelperRequest("get", ENTRY)
    found = HelperReply(True, "SecretService Keyring", "", True, TOKEN)
    assert parse_reply(encode_reply(found), get) == found
    locked = HelperReply(False, "SecretService Keyring", "locked", True, None, "locked", "X")
    assert parse_reply(encode_reply(locked), get) == locked
    refused = HelperReply(False, "fail Keyring", "No keyring", False, error="refused")
    assert parse_reply(encode_reply(refused), HelperRequest("set", ENTRY, TOKEN)) == refused
    # A set is answered with true, never a string: a token where none belongs is garbage.
    with pytest.raises(ProtocolError, match="does not answer set"):
        parse_reply(encode_reply(found), HelperRequest("set", ENTRY, TOKEN))
    # A status without an entry carries no token.
    with pytest.raises(ProtocolError, match="does not answer status"):
        parse_reply(encode_reply(found), HelperRequest("status"))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"Traceback (most recent call last):\n",
        b"{}\n",
        line({"status": {"usable": "yes", "backend": "b", "reason": ""}, "trusted": True}),
        line({"status": {"usable": True, "backend": "b", "reason": "why"}, "trusted": True}),
        line({"status": {"usable": False, "backend": "b", "reason": ""}, "trusted": True}),
        line({"status": {"usable": True, "backend": "", "reason": ""}, "trusted": True}),
        line({"status": {"usable": True, "backend": "b", "reason": ""}, "trusted": True}),
        line({"status": {"usable": True, "backend": "b", "reason": ""}, "trusted": 1, "value": 1}),
        line({"status": {"usable": True, "backend": "b", "reason": ""}, "trusted": True,
              "error": ["locked"]}),
        line({"status": {"usable": True, "backend": "b", "reason": ""}, "trusted": True,
              "error": "failed"}),
        line({"status": {"usable": True, "backend": "b", "reason": ""}, "trusted": True,
              "value": "t" * 20_000}),
    ],
)  # fmt: skip
def test_garbage_replies_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(raw, HelperRequest("get", ENTRY))


def test_the_real_helper_answers_a_bad_request_with_an_error_and_status_2() -> None:
    status, out = run_helper(b"this is not json\n")
    assert status == EXIT_BAD_REQUEST
    reply = parse_reply(out, HelperRequest("get", ENTRY))
    assert reply == error_reply("the request is not JSON")

    status, out = run_helper(b"x" * (MAX_LINE + 10) + b"\n")
    assert status == EXIT_BAD_REQUEST
    assert parse_reply(out, HelperRequest("get", ENTRY)).error == "bad_request"


def test_the_real_helper_ends_itself_when_the_app_goes_away_before_its_answer() -> None:
    """The pipe closed (the app quit or gave up): the helper exits instead of finishing a
    keyring call that may be waiting for a person."""
    status, out = run_helper(encode_request(HelperRequest("status")), keep_open=False)
    assert status == EXIT_ORPHANED
    assert out == b""


def test_a_ctrl_c_in_the_apps_terminal_leaves_the_helper_to_the_app() -> None:
    """SIGINT reaches the app's whole process group; the helper keeps answering and
    prints no KeyboardInterrupt traceback: the app ends it by closing the pipe."""
    command, directory, env = helper_command()
    # Leaving the block closes stdin first, which ends the helper whatever happened.
    with subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdin.write(encode_request(HelperRequest("status")))
        process.stdin.flush()
        parse_reply(process.stdout.readline(), HelperRequest("status"))  # it is running

        process.send_signal(signal.SIGINT)
        process.stdin.write(b"this is not json\n")
        process.stdin.flush()
        reply = parse_reply(process.stdout.readline(), HelperRequest("get", ENTRY))
        assert reply == error_reply("the request is not JSON")
        assert process.wait(timeout=WAIT) == EXIT_BAD_REQUEST
        assert process.stderr.read() == b""


# --- the vault through the real helper and a real keyring --------------------------------


def test_a_token_round_trips_through_the_helper_and_the_daemon(
    keyring_desktop: KeyringDesktop,
) -> None:
    vault = TokenVault(helper=HelperKeyring())
    assert vault.status.usable, vault.status
    assert vault.status.backend == "SecretService Keyring"

    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True
    assert in_keyring(ENTRY) == TOKEN
    assert TokenVault(helper=HelperKeyring()).load_refresh_token(SERVER, "alice") == TOKEN

    vault.delete_refresh_token(SERVER, "alice")
    vault.delete_refresh_token(SERVER, "alice")  # nothing stored: already forgotten
    assert in_keyring(ENTRY) is None
    assert vault.load_refresh_token(SERVER, "alice") is None
    assert vault.status.usable


def test_the_saved_login_is_read_along_with_the_probe(keyring_desktop: KeyringDesktop) -> None:
    TokenVault().save_refresh_token(SERVER, "alice", TOKEN)

    vault = TokenVault(helper=HelperKeyring(), preload=(SERVER, "alice"))
    # Gone from the keyring behind the vault's back: the first load is the read ahead,
    # the next one asks the keyring again.
    secret_service().delete_password(TokenVault.SERVICE, ENTRY)
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert vault.load_refresh_token(SERVER, "alice") is None
    # An account that is not one reads nothing ahead, and does not fail the vault.
    assert TokenVault(preload=("ftp://x", "alice")).status.usable


def test_a_locked_keyring_through_the_helper_says_locked(
    keyring_desktop: KeyringDesktop,
) -> None:
    TokenVault().save_refresh_token(SERVER, "alice", "earlier-token")
    keyring_desktop.session.dbus_send(
        SECRETS_NAME,
        "/org/freedesktop/secrets",
        "org.freedesktop.Secret.Service.Lock",
        f"array:objpath:{LOGIN_COLLECTION}",
    )

    vault = TokenVault(helper=HelperKeyring(), preload=(SERVER, "alice"))

    assert vault.status.usable is False
    assert vault.status.reason.startswith("Your keyring is locked and was not unlocked")
    assert vault.session_only is True
    assert vault.load_refresh_token(SERVER, "alice") is None
    assert vault.save_refresh_token(SERVER, "bob", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "bob") == TOKEN
    with pytest.raises(KeyringUnavailable, match="the keyring is locked"):
        vault.delete_refresh_token(SERVER, "alice")


def test_without_a_keyring_service_the_helper_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in client_env(tmp_path / "app", password=None).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)

    vault = TokenVault()

    assert vault.status.usable is False
    assert vault.status.backend == "fail Keyring"
    assert vault.status.reason.startswith("No keyring service is running")
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    vault.delete_refresh_token(SERVER, "alice")  # no trusted keyring: memory only


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ([sys.executable, "-c", "import os; os._exit(9)"], "stopped without answering"),
        ([sys.executable, "-c", "import sys; sys.stdin.readline(); print('{oops')"],
         "gave an answer the app could not read"),
        ([sys.executable, "-c", "import sys; sys.stdin.read()"], "did not answer within 1 s"),
        (["/nonexistent/tray-notifier-helper"], "could not be started"),
    ],
)  # fmt: skip
def test_a_broken_helper_leaves_the_vault_in_memory_with_a_reason(
    keyring_desktop: KeyringDesktop, command: list[str], words: str
) -> None:
    vault = TokenVault(helper=HelperKeyring(command, timeout=1.0))

    assert vault.status.usable is False
    assert vault.status.backend == "keyring helper"
    assert f"keyring helper {words}" in vault.status.reason
    assert "log in for this session" in vault.status.reason
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is False
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert in_keyring(ENTRY) is None
    # Logging out still tries the keyring, and says it could not.
    with pytest.raises(KeyringUnavailable, match="did not answer"):
        vault.delete_refresh_token(SERVER, "alice")


def test_a_helper_killed_mid_save_leaves_the_token_in_memory(
    keyring_desktop: KeyringDesktop,
) -> None:
    # A helper for each operation (none kept): the one to kill is the save's own.
    vault = TokenVault(helper=HelperKeyring(idle=0))
    assert vault.status.usable
    earlier = set(helper_children())  # kept by earlier tests' vaults, idle
    outcome: list[bool] = []
    with stalled(keyring_desktop.daemon.pid):
        saver = threading.Thread(
            target=lambda: outcome.append(vault.save_refresh_token(SERVER, "alice", TOKEN))
        )
        saver.start()
        keyring_desktop.session.wait_until(
            lambda: bool(set(helper_children()) - earlier), what="the helper to start"
        )
        for pid in set(helper_children()) - earlier:
            os.kill(pid, signal.SIGKILL)
        saver.join(WAIT)
    assert outcome == [False]
    assert vault.status.usable is False
    assert "keyring helper stopped without answering" in vault.status.reason
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert in_keyring(ENTRY) is None


def _dead(pid: int) -> bool:
    """``pid`` has exited (a zombie until its parent reaps it) or is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_operations_close_together_share_one_helper_which_goes_when_idle(
    keyring_desktop: KeyringDesktop,
) -> None:
    """The start's read and the save of the token its refresh rotated run in one helper
    (no second interpreter and keyring import while the app connects); it exits when
    nothing more came for ``idle`` seconds, and the next operation starts another."""
    earlier = set(helper_children())  # kept by earlier tests' vaults, idle
    vault = TokenVault(helper=HelperKeyring(idle=1.0), preload=(SERVER, "alice"))
    [kept] = set(helper_children()) - earlier
    assert vault.load_refresh_token(SERVER, "alice") is None  # read with the probe
    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True
    assert vault.load_refresh_token(SERVER, "alice") == TOKEN
    assert set(helper_children()) - earlier == {kept}
    assert in_keyring(ENTRY) == TOKEN

    keyring_desktop.session.wait_until(
        lambda: not set(helper_children()) - earlier, what="the idle helper to exit"
    )
    vault.delete_refresh_token(SERVER, "alice")
    assert in_keyring(ENTRY) is None
    assert vault.status.usable


def test_a_kept_helper_that_died_while_idle_is_replaced(
    keyring_desktop: KeyringDesktop,
) -> None:
    earlier = set(helper_children())
    vault = TokenVault(helper=HelperKeyring())
    [kept] = set(helper_children()) - earlier
    os.kill(kept, signal.SIGKILL)
    keyring_desktop.session.wait_until(lambda: _dead(kept), what="the helper to die")

    assert vault.save_refresh_token(SERVER, "alice", TOKEN) is True
    assert vault.status.usable
    assert in_keyring(ENTRY) == TOKEN
    [replacement] = set(helper_children()) - earlier
    assert replacement != kept


def _helper_imports(env: dict[str, str], request: HelperRequest) -> tuple[HelperReply, set[str]]:
    """The real helper's reply to ``request`` and the modules it imported (its stdin kept
    open until the reply is in, as the app keeps it)."""
    command, directory, helper_env = helper_command(env)
    process = subprocess.Popen(
        [command[0], "-X", "importtime", *command[1:]],
        cwd=directory,
        env=helper_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(encode_request(request))
    process.stdin.flush()
    reply = process.stdout.readline()
    _, errors = process.communicate(timeout=WAIT)  # closes stdin: the helper exits
    modules = {
        row.rsplit("|", 1)[1].strip()
        for row in errors.decode().splitlines()
        if row.startswith("import time:") and "|" in row
    }
    return parse_reply(reply, request), modules


@pytest.mark.parametrize(
    ("setting", "keyring_loaded"),
    [
        (None, False),
        ("env", True),  # PYTHON_KEYRING_BACKEND may name another backend
        ("config", True),  # so may keyringrc.cfg
        ("kde", True),  # KWallet comes first on KDE
    ],
)  # fmt: skip
def test_the_helper_asks_the_secret_service_without_keyring_where_keyring_would(
    keyring_desktop: KeyringDesktop, tmp_path: Path, setting: str | None, keyring_loaded: bool
) -> None:
    """Where keyring is sure to choose its Secret Service backend, the helper skips
    keyring's ~0.17 s (its imports and backend discovery) and secretstorage's
    cryptography, and asks the same service for the same items over jeepney; anywhere
    else keyring decides, as before."""
    secret_service().set_password(TokenVault.SERVICE, ENTRY, "saved-by-keyring")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CURRENT_DESKTOP": "XFCE"}
    env.pop("PYTHON_KEYRING_BACKEND", None)
    if setting == "env":
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.SecretService.Keyring"
    elif setting == "config":
        config = tmp_path / "config" / "python_keyring" / "keyringrc.cfg"
        config.parent.mkdir(parents=True)
        config.write_text("[backend]\ndefault-keyring=keyring.backends.SecretService.Keyring\n")
    elif setting == "kde":
        env["XDG_CURRENT_DESKTOP"] = "KDE"

    reply, modules = _helper_imports(env, HelperRequest("status", ENTRY))

    assert (reply.usable, reply.backend, reply.value) == (
        True, "SecretService Keyring", "saved-by-keyring"
    )  # fmt: skip
    assert "site" not in modules  # started with -S: no .pth hooks run again
    assert "jeepney" in modules
    assert ("keyring" in modules) is keyring_loaded
    if not keyring_loaded:  # the plain session: no AES, so neither of these
        assert not {"secretstorage", "cryptography"} & modules

    # What the direct path writes, keyring reads (and deletes), and the other way round.
    reply, _ = _helper_imports(env, HelperRequest("set", ENTRY, TOKEN))
    assert reply.value is True
    assert in_keyring(ENTRY) == TOKEN
    secret_service().delete_password(TokenVault.SERVICE, ENTRY)
    reply, _ = _helper_imports(env, HelperRequest("delete", ENTRY))
    assert reply.error == "not_found"
    assert reply.usable


def test_the_helpers_direct_path_says_locked_as_keyring_does(
    keyring_desktop: KeyringDesktop, tmp_path: Path
) -> None:
    keyring_desktop.session.dbus_send(
        SECRETS_NAME,
        "/org/freedesktop/secrets",
        "org.freedesktop.Secret.Service.Lock",
        f"array:objpath:{LOGIN_COLLECTION}",
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CURRENT_DESKTOP": "XFCE"}
    env.pop("PYTHON_KEYRING_BACKEND", None)

    reply, modules = _helper_imports(env, HelperRequest("set", ENTRY, TOKEN))

    assert "keyring" not in modules
    assert reply.error == "locked"
    assert reply.error_type == "KeyringLocked"
    assert reply.reason.startswith("Your keyring is locked and was not unlocked")


# --- the worker thread: in order, off the event loop -------------------------------------


@pytest.mark.asyncio
async def test_background_writes_keep_their_order(keyring_desktop: KeyringDesktop) -> None:
    vault = TokenVault()
    saves = [vault.save_in_background(SERVER, "alice", f"token-{n}") for n in range(5)]
    await vault.settled()
    assert [save.result() for save in saves] == [True] * 5
    assert in_keyring(ENTRY) == "token-4"  # the last save, never an earlier one

    vault.save_in_background(SERVER, "alice", "token-5")
    deleted = vault.delete_in_background(SERVER, "alice")
    assert await vault.load_in_background(SERVER, "alice") is None  # the delete won
    assert deleted.done()
    assert in_keyring(ENTRY) is None

    vault.save_in_background(SERVER, "alice", "token-6")  # a new login after the logout
    assert await vault.load_in_background(SERVER, "alice") == "token-6"
    with pytest.raises(ValueError, match="empty refresh token"):
        vault.save_in_background(SERVER, "alice", "")
    with pytest.raises(ValueError, match="server address"):
        vault.delete_in_background("ftp://x", "alice")


@pytest.mark.asyncio
async def test_a_load_waiting_for_the_keyring_does_not_hold_up_the_event_loop(
    keyring_desktop: KeyringDesktop,
) -> None:
    """The keyring stops answering after the vault opened (SIGSTOP): a load waits in its
    helper while the loop goes on; the keyring answers again and the load finishes."""
    vault = TokenVault(helper=HelperKeyring())
    vault.save_refresh_token(SERVER, "alice", TOKEN)

    with stalled(keyring_desktop.daemon.pid):
        loading = asyncio.ensure_future(vault.load_in_background(SERVER, "alice"))
        # Awaited on the loop: it gets this answer only if the load does not hold it up.
        await asyncio.to_thread(
            keyring_desktop.session.wait_until,
            lambda: bool(helper_children()),
            what="the load's helper to start",
        )
        assert not loading.done()
    async with asyncio.timeout(WAIT):
        assert await loading == TOKEN


# --- the app's process never loads the keyring stack --------------------------------------

_APP_PATHS_SCRIPT = """
import asyncio, json, sys
import tray_app.__main__, tray_app.account, tray_app.headless, tray_app.ui.app
from tray_app.store import open_token_vault

SERVER, USER, TOKEN = sys.argv[1], "alice", sys.argv[2]

async def main():
    vault = await open_token_vault(preload=(SERVER, USER))
    saved = vault.save_in_background(SERVER, USER, TOKEN)
    await vault.settled()
    loaded = await vault.load_in_background(SERVER, USER)
    vault.delete_in_background(SERVER, USER)
    await vault.settled()
    gone = await vault.load_in_background(SERVER, USER)
    return [vault.status.usable, saved.result(), loaded == TOKEN, gone]

results = asyncio.run(main())
stack = ("keyring", "secretstorage", "cryptography")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in stack)
print(json.dumps({"results": results, "loaded": loaded, "jeepney": "jeepney" in sys.modules}))
"""


def test_the_apps_process_never_imports_the_keyring_stack(
    keyring_desktop: KeyringDesktop, tmp_path: Path
) -> None:
    """The app's modules, and the vault's open, save, load and delete as the app runs
    them, in a fresh interpreter with a real keyring: the Secret Service asked over
    jeepney (keyring would choose it here), none of keyring, secretstorage or
    cryptography loaded."""
    env = {**client_env(tmp_path / "app", password=None), **keyring_desktop.session.env}
    env["QT_QPA_PLATFORM"] = "offscreen"
    completed = subprocess.run(
        [sys.executable, "-c", _APP_PATHS_SCRIPT, SERVER, TOKEN],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["results"] == [True, True, True, None]
    assert report["loaded"] == []
    assert report["jeepney"] is True
    assert TOKEN not in completed.stderr
