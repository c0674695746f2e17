"""``tray-notifier --headless`` end to end, as a user runs it: a real client subprocess.

Every test starts the real server (``server_factory``) and the client's own console script
in a subprocess with its HOME, XDG directories, data and config directories inside the
test's ``tmp_path``, so nothing of the real user's is read or written. The client's stdout
(one JSON line per notification) and stderr (state words) are read by threads; every wait
is for a line or a condition, with a deadline.

The keyring test runs a real ``gnome-keyring-daemon`` on a private D-Bus bus
(:class:`tests.tray_app.desktop_session.DesktopSession`); the others run with no D-Bus
session, where the client keeps its login in memory only.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import keyring.backend
import pytest
from keyring.backends import SecretService

from tests.fixtures.proxies import CONDITIONS
from tests.fixtures.services import RunningServer, ServerFactory, free_port
from tests.tray_app.conftest import (
    HeadlessClient,
    KeyringDesktop,
    Launcher,
    Publisher,
    RestartableServer,
    WaitingKeyring,
    client_env,
    scaled,
    stored_notification,
)
from tray_app.headless import KEYRING_WAITING, notification_line
from tray_app.net.transport_choice import REASON_BLOCKED
from tray_app.store.db import account_database_path
from tray_app.store.inbox import Inbox
from tray_app.store.secrets import TokenVault, keyring_entry_name

WAIT = 30.0
LINE_FIELDS = {
    "seq",
    "id",
    "title",
    "message",
    "priority",
    "event_type",
    "url",
    "created_at",
    "project",
    "actor",
    "is_read",
    "arrival",
    "interrupt",
}
SETTINGS_FIELDS = {"server_url", "username", "retention_days", "retention_rows"}
JWT_PREFIX = b"eyJ"  # base64url of '{"': every JWT's header starts with it
# Every client start logs in with the password; the default (20/min) would refuse them.
GENEROUS_LOGINS = {"TRAY_LOGIN_RATE": "10000/min"}


# --- the client's environment ------------------------------------------------------


def database_path(env: Mapping[str, str], server_url: str, username: str = "alice") -> Path:
    return account_database_path(Path(env["TRAY_NOTIFIER_DATA_DIR"]), server_url, username)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under ``root`` whose raw bytes hold ``needle`` (SQLite, WAL too)."""
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


# --- the server's side ---------------------------------------------------------------


def log_in(server_url: str, username: str = "alice") -> dict[str, str]:
    """Log in over REST as a user would with curl: the ``access``/``refresh`` pair."""
    response = httpx.post(
        f"{server_url}/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=10,
    )
    response.raise_for_status()
    tokens: dict[str, str] = response.json()
    return tokens


def latest_seq(server_url: str, username: str = "alice") -> int:
    """The server's newest seq for ``username`` (``GET /api/inbox/unread-count/``)."""
    access = log_in(server_url, username)["access"]
    response = httpx.get(
        f"{server_url}/api/inbox/unread-count/",
        headers={"Authorization": f"Bearer {access}"},
        timeout=10,
    )
    response.raise_for_status()
    return int(response.json()["latest_seq"])


def stored_state(path: Path) -> tuple[str, int, set[int]]:
    """``(integrity_check, cursor, seqs)`` of a client's SQLite file, read with plain sqlite3."""
    connection = sqlite3.connect(path)
    try:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()
        cursor = Inbox(connection).cursor()
        seqs = {seq for (seq,) in connection.execute("SELECT seq FROM notifications")}
    finally:
        connection.close()
    return str(integrity), cursor, seqs


# --- 1. the README's walk-through --------------------------------------------------------


def test_readme_walk_through_catch_up_then_a_live_line_then_sigterm(
    demo_server: RunningServer, launch: Launcher, tmp_path: Path
) -> None:
    """The demo's notifications arrive as catch-up lines in seq order, a ``notify`` from the
    server's command line arrives as one live line within seconds, and SIGTERM exits 0."""
    latest = latest_seq(demo_server.url)
    assert latest >= 1, "the demo gives alice some notifications to catch up on"
    env = client_env(tmp_path / "app")

    client = launch(env, "--server", demo_server.url, "--username", "alice")
    caught_up = client.wait_for_notifications(
        lambda rows: len(rows) >= latest, what=f"{latest} catch-up lines"
    )

    assert [row["seq"] for row in caught_up] == list(range(1, latest + 1))
    assert {row["arrival"] for row in caught_up} == {"catch_up"}
    assert {row["interrupt"] for row in caught_up} == {False}  # catch-up never interrupts
    for row in caught_up:
        assert set(row) == LINE_FIELDS
    client.wait_for_state("connected")

    published = demo_server.cli("notify", "--user", "alice", "--title", "Deploy finished")
    assert published.returncode == 0, published.stderr
    sent_at = time.monotonic()
    rows = client.wait_for_notifications(
        lambda rows: len(rows) > latest, timeout=5, what="the live line of the notify"
    )
    arrived_after = time.monotonic() - sent_at

    live = rows[latest:]
    assert len(live) == 1, live
    assert live[0]["title"] == "Deploy finished"
    assert live[0]["seq"] == latest + 1
    assert live[0]["arrival"] == "live"
    assert live[0]["is_read"] is False
    assert live[0]["interrupt"] is True
    assert set(live[0]) == LINE_FIELDS
    assert arrived_after < 5

    assert client.terminate() == 0
    assert len(client.out.lines) == latest + 1, "nothing else was printed on stdout"
    assert "Traceback" not in client.err.text()


def test_a_line_says_whether_it_may_interrupt() -> None:
    row = stored_notification(7, seq=3, project_id=4, project_title="Website Redesign")
    loud = json.loads(notification_line(row, live=True, interrupt=True))
    quiet = json.loads(notification_line(row, live=True, interrupt=False))
    assert set(loud) == LINE_FIELDS
    assert loud["interrupt"] is True
    assert quiet["interrupt"] is False
    assert {**loud, "interrupt": False} == quiet  # nothing else differs
    assert loud["project"] == {"id": 4, "title": "Website Redesign"}
    # Not said: it does not interrupt (a catch-up line, say).
    assert json.loads(notification_line(row, live=False))["interrupt"] is False


def rest(server_url: str, method: str, path: str, body: Any = None, *, user: str = "alice") -> Any:
    """One REST call as ``user`` (another device of theirs); the decoded answer."""
    response = httpx.request(
        method,
        f"{server_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {log_in(server_url, user)['access']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def test_each_live_line_says_whether_attention_lets_it_interrupt(
    demo_server: RunningServer, launch: Launcher, tmp_path: Path
) -> None:
    """alice muted Website Redesign on another device: a live line of it says
    ``"interrupt": false``, another says true. A do-not-disturb set elsewhere while the
    client runs is one stderr line; it holds back all but urgent lines until turned off."""
    url = demo_server.url
    listed = rest(url, "GET", "/api/projects/")
    projects = listed["results"] if isinstance(listed, dict) else listed
    website = next(row["id"] for row in projects if row["title"] == "Website Redesign")
    rest(url, "PATCH", "/api/attention/", {"muted_projects": [website]})
    latest = latest_seq(url)
    env = client_env(tmp_path / "app")
    env["TZ"] = "UTC"  # the clock the stderr words are on
    client = launch(env, "--server", url, "--username", "alice")
    client.wait_for_notifications(lambda rows: len(rows) >= latest, what="the catch-up")
    client.wait_for_state("connected")

    def line_titled(title: str) -> dict[str, Any]:
        rows = client.wait_for_notifications(
            lambda rows: any(row["title"] == title for row in rows), what=f"the line {title!r}"
        )
        (row,) = (row for row in rows if row["title"] == title)
        return row

    def notify(title: str, *extra: str) -> dict[str, Any]:
        published = demo_server.cli("notify", "--user", "alice", "--title", title, *extra)
        assert published.returncode == 0, published.stderr
        return line_titled(title)

    # carol adds a task to the muted project: alice's line of it may not interrupt.
    rest(url, "POST", f"/api/projects/{website}/tasks/", {"title": "Footer"}, user="carol")

    def carols_task(row: dict[str, Any]) -> bool:
        return bool(row["event_type"] == "task_created" and row["seq"] > latest)

    rows = client.wait_for_notifications(
        lambda rows: any(carols_task(row) for row in rows), what="the live line of carol's task"
    )
    (muted,) = (row for row in rows if carols_task(row))
    assert muted["project"] == {"id": website, "title": "Website Redesign"}
    assert (muted["arrival"], muted["is_read"], muted["interrupt"]) == ("live", False, False)
    assert notify("Deploy finished")["interrupt"] is True  # no project: not muted

    # Do not disturb for two hours, from alice's phone.
    until = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    rest(url, "PATCH", "/api/attention/", {"dnd": {"until": until.isoformat()}})
    client.wait_for_stderr(f"tray-notifier: Do not disturb until {until:%H:%M}")
    assert notify("Nightly build green")["interrupt"] is False
    assert notify("Production is down", "--priority", "urgent")["interrupt"] is True

    rest(url, "PATCH", "/api/attention/", {"dnd": None})
    client.wait_for_stderr("tray-notifier: interruptions on")
    assert notify("Review requested")["interrupt"] is True

    assert client.terminate() == 0
    said = [line for line in client.err.lines if "disturb" in line or "interruptions" in line]
    assert said == [
        f"tray-notifier: Do not disturb until {until:%H:%M}",
        "tray-notifier: interruptions on",
    ]  # one line per change, none for the mute (it silences nothing as a whole)
    assert "Traceback" not in client.err.text()


# --- 2. a server that crashes and comes back ----------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)  # the client's backoff grows with each restart (up to 10 s)
@pytest.mark.parametrize("network", ["direct", "nginx-without-upgrade"])
def test_every_seq_printed_exactly_once_while_the_server_is_killed_and_restarted(
    server_factory: ServerFactory, launch: Launcher, tmp_path: Path, network: str
) -> None:
    """The server is SIGKILLed and restarted several times while a publisher (idempotency
    keys, retries) streams notifications: stdout holds seqs 1..latest, each exactly once.

    Behind nginx without the Upgrade headers the client is on the HTTP fallback
    (issue 18) and stays there across the restarts."""
    server = RestartableServer(server_factory, env=GENEROUS_LOGINS)
    env = client_env(tmp_path / "app")
    with contextlib.ExitStack() as stack:
        if network == "direct":
            url, state = server.url, "connected"
        else:
            url = stack.enter_context(CONDITIONS[network](server.port)).url
            state = f"connected ({REASON_BLOCKED})"
        client = launch(env, "--server", url, "--username", "alice")
        _print_every_seq_once_across_kills(server, client, state)
    if network != "direct":
        # Never back on the socket: nginx still strips the upgrade, and the server's
        # restarts are no reason to leave the stream.
        assert "tray-notifier: connected" not in client.err.lines


def _print_every_seq_once_across_kills(
    server: RestartableServer, client: HeadlessClient, state: str
) -> None:
    demo_latest = latest_seq(server.url)
    client.wait_for_notifications(lambda rows: len(rows) >= demo_latest, what="the demo catch-up")

    publisher = Publisher(server)
    minimum = scaled(60, minimum=20)
    restarts = scaled(4, minimum=2)
    restarts_done = threading.Event()
    failures: list[BaseException] = []

    def publish_all() -> None:
        # Publishes until every restart is done, so each kill lands mid-stream.
        try:
            while len(publisher.sent) < minimum or not restarts_done.is_set():
                publisher.publish(f"restart-test-{len(publisher.sent)}")
        except BaseException as error:  # surfaced by the main thread
            failures.append(error)

    thread = threading.Thread(target=publish_all, name="publisher", daemon=True)
    thread.start()
    try:
        for restart in range(restarts):
            # Each kill comes once the client is connected to the server it kills (a line
            # it prints may have been read before the last kill) and has shown a new line
            # since: it is live at that moment.
            connections = restart + 1
            client.err.wait_until(
                lambda lines: lines.count(f"tray-notifier: {state}") >= connections,  # noqa: B023
                timeout=90,
                what=f"connected before restart {restart + 1}",
            )
            seen = len(client.out.lines)
            client.out.wait_for_count(
                seen + 1, timeout=90, what=f"a new line before restart {restart + 1}"
            )
            server.restart()
    finally:
        restarts_done.set()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the publisher did not finish"
    assert not failures, failures
    total = len(publisher.sent)

    latest = latest_seq(server.url)
    assert latest == demo_latest + total, "an idempotency key made a second notification"
    rows = client.wait_for_notifications(
        lambda rows: any(row["seq"] == latest for row in rows),
        timeout=90,
        what=f"seq {latest}",
    )
    # The last rows may come by the catch-up before the socket says it is connected.
    client.wait_for_state(state, count=restarts + 1, timeout=90)
    assert client.terminate() == 0

    rows = client.notifications()
    seqs = [row["seq"] for row in rows]
    assert sorted(seqs) == list(range(1, latest + 1)), "a gap or a repeat"
    assert len(seqs) == len(set(seqs))
    titles = {row["title"] for row in rows}
    assert set(publisher.sent) <= titles
    assert client.state_count(state) > restarts, "it reconnected after each kill"


# --- 3. a client that crashes, over and over -------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_store_survives_sigkill_of_the_client_during_a_fast_intake(
    server_factory: ServerFactory, launch: Launcher, tmp_path: Path
) -> None:
    """The client is SIGKILLed at random moments while notifications stream in. After every
    kill the SQLite file passes integrity_check, the cursor never went back, every seq up to
    it is stored, and every line printed was committed (printed lines come after commit) and
    new (no seq is printed twice across crashes). A last clean run catches up fully."""
    server = server_factory(demo=True, env=GENEROUS_LOGINS)
    env = client_env(tmp_path / "app")
    path = database_path(env, server.url)
    publisher = Publisher(server)
    stop = threading.Event()
    failures: list[BaseException] = []

    def stream() -> None:
        n = 0
        try:
            while not stop.is_set():
                publisher.publish(f"intake-{n}")
                n += 1
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=stream, name="publisher", daemon=True)
    thread.start()
    rng = random.Random(20250611)
    rounds = scaled(50, minimum=5, ci=12)
    previous_cursor = 0
    stored: set[int] = set()
    ever_printed: set[int] = set()
    first_line_after: list[float] = []
    began = time.monotonic()
    try:
        for round_number in range(1, rounds + 1):
            client = launch(env, "--server", server.url, "--username", "alice")
            client.out.wait_for_count(1, what=f"a first line in round {round_number}")
            first_line_after.append(time.monotonic() - client.started_at)
            more = rng.randint(0, 30)
            client.out.wait_for_count(1 + more, what=f"{1 + more} lines in round {round_number}")
            client.kill()
            assert client.process.returncode == -signal.SIGKILL

            printed = {row["seq"] for row in client.notifications()}
            integrity, cursor, seqs = stored_state(path)
            assert integrity == "ok", f"round {round_number}"
            assert cursor >= previous_cursor, f"round {round_number}: the cursor went back"
            assert all(seq in seqs for seq in range(1, cursor + 1)), f"round {round_number}"
            assert printed <= seqs, f"round {round_number}: a printed row was not committed"
            assert not printed & stored, f"round {round_number}: a stored row printed again"
            assert not printed & ever_printed
            assert seqs >= stored, f"round {round_number}: a committed row vanished"
            previous_cursor, stored = cursor, seqs
            ever_printed |= printed
    finally:
        stop.set()
        thread.join(timeout=60)
    crash_rounds_took = time.monotonic() - began
    assert not failures, failures

    publisher.publish("the last one")
    latest = latest_seq(server.url)
    final = launch(env, "--server", server.url, "--username", "alice")
    final.wait_for_notifications(
        lambda rows: any(row["seq"] == latest for row in rows), timeout=60, what=f"seq {latest}"
    )
    assert final.terminate() == 0
    integrity, cursor, seqs = stored_state(path)
    assert integrity == "ok"
    assert cursor == latest
    assert seqs == set(range(1, latest + 1))
    # Timings for the report (shown with -s or when the test fails).
    print(
        f"{rounds} crash rounds in {crash_rounds_took:.1f} s; start to first line: "
        f"median {sorted(first_line_after)[len(first_line_after) // 2]:.2f} s, "
        f"max {max(first_line_after):.2f} s; {latest} notifications"
    )


# --- 4. the refresh token in the keyring, and nowhere else -------------------------------


def stored_refresh_token(server_url: str, username: str) -> str | None:
    """What the Secret Service holds for the account, read straight from the daemon."""
    keyring_class: type[keyring.backend.KeyringBackend] = SecretService.Keyring
    backend = keyring_class()
    entry = keyring_entry_name(server_url, username)
    token = backend.get_password(TokenVault.SERVICE, entry)
    return str(token) if token is not None else None


def assert_no_secret_on_disk(root: Path, secrets: list[str]) -> None:
    assert files_containing(root, JWT_PREFIX) == [], "a JWT was written to the app's files"
    for secret in secrets:
        assert files_containing(root, secret.encode()) == []


def assert_plain_settings(env: Mapping[str, str], server_url: str) -> None:
    settings = json.loads(
        (Path(env["TRAY_NOTIFIER_CONFIG_DIR"]) / "settings.json").read_text(encoding="utf-8")
    )
    assert set(settings) == SETTINGS_FIELDS
    assert settings["server_url"] == server_url
    assert settings["username"] == "alice"


def test_a_keyring_waiting_for_a_person_holds_up_neither_session_only_nor_a_stop(
    waiting_keyring: WaitingKeyring, demo_server: RunningServer, launch: Launcher, tmp_path: Path
) -> None:
    """The login keyring is locked and its unlock prompt is up with nobody to answer it.
    ``--session-only`` never asks the keyring and connects as usual; without it the
    client waits for the keyring to log in, and SIGTERM still ends it at once."""
    env = {**client_env(tmp_path / "app"), **waiting_keyring.session.env}

    session_only = launch(env, "--server", demo_server.url, "--username", "alice", "--session-only")
    session_only.wait_for_state("connected")
    assert session_only.terminate() == 0
    assert "keyring" not in session_only.err.text().lower()

    remembering = launch(env, "--server", demo_server.url, "--username", "alice")
    remembering.wait_for_stderr(KEYRING_WAITING)
    assert waiting_keyring.prompt_is_up()
    assert remembering.terminate() == 0  # at once: the keyring's wait holds nothing
    assert remembering.state_count("connected") == 0


@pytest.mark.slow
def test_the_refresh_token_lives_in_the_keyring_and_never_in_a_file(
    keyring_desktop: KeyringDesktop, server_factory: ServerFactory, launch: Launcher, tmp_path: Path
) -> None:
    """With gnome-keyring: the first run (password) stores the refresh token there, and a
    second run with no password logs in from it. Without a D-Bus session: the client says
    the keyring is unusable, runs session-only with a password and exits 2 without one.
    No file of the app ever holds a JWT."""
    server = server_factory(demo=True, env=GENEROUS_LOGINS)
    root = tmp_path / "app"
    plain = client_env(root)
    with_keyring = {**plain, **keyring_desktop.session.env}
    latest = latest_seq(server.url)
    mine = log_in(server.url)  # tokens this test saw: none may show up in the app's files
    seen_tokens = [mine["access"], mine["refresh"]]

    first = launch(with_keyring, "--server", server.url, "--username", "alice")
    first.wait_for_notifications(lambda rows: len(rows) >= latest, what="the catch-up")
    first.wait_for_state("connected")
    assert first.terminate() == 0
    assert "keyring" not in first.err.text().lower(), "the keyring was usable"
    first_token = stored_refresh_token(server.url, "alice")
    assert first_token is not None, "the first run did not store its refresh token"
    assert first_token.encode().startswith(JWT_PREFIX)
    seen_tokens.append(first_token)
    assert_no_secret_on_disk(root, seen_tokens)
    assert_plain_settings(plain, server.url)

    no_password = {k: v for k, v in with_keyring.items() if k != "TRAY_NOTIFIER_PASSWORD"}
    second = launch(no_password, "--server", server.url, "--username", "alice")
    second.wait_for_state("connected")
    published = server.cli("notify", "--user", "alice", "--title", "From the keyring")
    assert published.returncode == 0, published.stderr
    rows = second.wait_for_notifications(lambda rows: len(rows) >= 1, what="a live line")
    assert [(row["title"], row["arrival"]) for row in rows] == [("From the keyring", "live")]
    assert rows[0]["seq"] == latest + 1, "the history was kept from the first run"
    assert second.terminate() == 0
    second_token = stored_refresh_token(server.url, "alice")
    assert second_token is not None
    seen_tokens.append(second_token)
    assert_no_secret_on_disk(root, seen_tokens)

    # --session-only with a working keyring: the login is not stored for bob.
    bob = launch(with_keyring, "--server", server.url, "--username", "bob", "--session-only")
    bob.wait_for_state("connected")
    assert bob.terminate() == 0
    assert stored_refresh_token(server.url, "bob") is None

    # No D-Bus session: the keyring cannot be reached, and the client says so.
    without_password = {k: v for k, v in plain.items() if k != "TRAY_NOTIFIER_PASSWORD"}
    refused = launch(without_password, "--server", server.url, "--username", "alice")
    assert refused.wait() == 2
    assert "No keyring service is running" in refused.err.text()
    assert "log in for this session" in refused.err.text()
    assert "TRAY_NOTIFIER_PASSWORD" in refused.err.text()
    assert "Traceback" not in refused.err.text()
    assert refused.out.lines == []

    session_only = launch(plain, "--server", server.url, "--username", "alice")
    session_only.wait_for_stderr("No keyring service is running")
    session_only.wait_for_state("connected")
    published = server.cli("notify", "--user", "alice", "--title", "Session only")
    assert published.returncode == 0, published.stderr
    rows = session_only.wait_for_notifications(lambda rows: len(rows) >= 1, what="a live line")
    assert [(row["title"], row["seq"]) for row in rows] == [("Session only", latest + 2)]
    assert session_only.terminate() == 0

    for client in (first, second, bob, refused, session_only):
        assert JWT_PREFIX.decode() not in client.err.text() + client.out.text()
    assert_no_secret_on_disk(root, seen_tokens)
    assert_plain_settings(plain, server.url)


@pytest.mark.slow
def test_a_login_is_kept_for_the_session_only_when_it_turned_off_remembering_logins(
    keyring_desktop: KeyringDesktop, server_factory: ServerFactory, launch: Launcher, tmp_path: Path
) -> None:
    """IT's ``allow_remember_me: false`` holds for headless as for the tray: the login
    works, the client says why it is not kept, and the keyring holds nothing after."""
    server = server_factory(demo=True, env=GENEROUS_LOGINS)
    managed = tmp_path / "managed.json"
    managed.write_text('{"allow_remember_me": false}', encoding="utf-8")
    env = {
        **client_env(tmp_path / "app"),
        **keyring_desktop.session.env,
        "TRAY_NOTIFIER_MANAGED_FILE": str(managed),
    }
    client = launch(env, "--server", server.url, "--username", "alice")
    client.wait_for_stderr("Your IT department turned off remembering logins.")
    client.wait_for_state("connected")
    assert client.terminate() == 0
    assert stored_refresh_token(server.url, "alice") is None
    assert "Traceback" not in client.err.text()


# --- 5. bad input --------------------------------------------------------------------


def _one_plain_line(client: HeadlessClient) -> str:
    lines = client.err.lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("tray-notifier: ")
    assert "Traceback" not in client.err.text()
    assert client.out.lines == []
    return lines[0]


def test_a_wrong_password_exits_3_with_one_plain_line(
    demo_server: RunningServer, launch: Launcher, tmp_path: Path
) -> None:
    env = client_env(tmp_path / "app", password="not-the-password")
    client = launch(env, "--server", demo_server.url, "--username", "alice", "--session-only")
    assert client.wait() == 3
    assert "Wrong username or password." in _one_plain_line(client)
    assert "not-the-password" not in client.err.text()


def test_no_username_and_none_saved_exits_2(
    demo_server: RunningServer, launch: Launcher, tmp_path: Path
) -> None:
    env = client_env(tmp_path / "app")
    client = launch(env, "--server", demo_server.url, "--session-only")
    assert client.wait() == 2
    assert "--username" in _one_plain_line(client)


def test_a_server_address_that_is_not_http_exits_2(launch: Launcher, tmp_path: Path) -> None:
    env = client_env(tmp_path / "app")
    client = launch(env, "--server", "ftp://x", "--username", "alice", "--session-only")
    assert client.wait() == 2
    line = _one_plain_line(client)
    assert "ftp://x" in line
    assert "http://" in line


def test_an_unreachable_server_at_first_login_is_retried_until_sigterm(
    launch: Launcher, tmp_path: Path
) -> None:
    """Nobody listens on the port: the client says so and retries; SIGTERM still exits 0."""
    env = client_env(tmp_path / "app")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = launch(env, "--server", url, "--username", "alice", "--session-only")

    retries = client.wait_for_stderr("Retrying in", count=2)

    assert all(f"Nothing answers at 127.0.0.1:{port}" in line for line in retries), retries
    assert client.terminate() == 0
    assert "Traceback" not in client.err.text()
    assert client.out.lines == []
