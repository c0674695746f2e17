"""``tray-notifier-server``: serve, notify, manage, create-api-key, and how they fail.

Most tests run the real command in a subprocess (tests/fixtures/services.py);
the demo data is also checked in-process.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from backend.demo import seed_demo
from backend.logging_filters import RedactSecrets, redact
from backend.projects.models import Membership, Milestone, Project, Task
from backend.projects.selectors import can_create_project
from backend.users.models import User
from tests.fixtures.services import REPO_ROOT, RunningServer, ServerFactory, run_cli, server_env
from tests.fixtures.tls import ThrowawayCA

LISTENING = re.compile(r"^tray-notifier-server: listening on http://127\.0\.0\.1:(\d+)$")


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a failed command: exactly one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    # argparse names the subcommand: "tray-notifier-server notify: error: ..."
    assert re.match(r"tray-notifier-server( [a-z-]+)?: error: ", lines[0]), lines[0]
    return lines[0]


def _db(server_or_dir: RunningServer | Path) -> sqlite3.Connection:
    data_dir = server_or_dir.data_dir if isinstance(server_or_dir, RunningServer) else server_or_dir
    return sqlite3.connect(data_dir / "db.sqlite3", timeout=20)


def _count(connection: sqlite3.Connection, sql: str, *params: object) -> int:
    return int(connection.execute(sql, params).fetchone()[0])


def _login(server: RunningServer, username: str = "alice") -> dict[str, str]:
    response = httpx.post(
        server.url + "/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- serve ------------------------------------------------------------------------


def test_serve_demo_prints_its_url_first_and_answers_healthz(tmp_path: Path):
    stderr = (tmp_path / "stderr").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--demo", "--port", "0"],
        cwd=REPO_ROOT,
        env=server_env(data_dir=tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().rstrip("\n")
        match = LISTENING.match(first)
        assert match, first
        port = int(match.group(1))
        assert port != 0
        rest = [process.stdout.readline() for _ in range(2)]
        assert any("demo logins: alice / demo, bob / demo, carol / demo" in line for line in rest)

        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["status"] == "ok"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
        process.stdout.close()  # type: ignore[union-attr]
        stderr.close()


def test_sigterm_closes_open_sockets_and_exits_0_promptly(demo_server: RunningServer):
    access = _login(demo_server)["access"]
    with connect(
        demo_server.ws_url,
        additional_headers={"Authorization": f"Bearer {access}"},
        open_timeout=10,
    ) as websocket:
        first = json.loads(websocket.recv(timeout=10))
        assert first["type"]

        started = time.monotonic()
        assert demo_server.stop(timeout=15) == 0
        assert time.monotonic() - started < 10

        # The client is told the server is restarting (1012), not left hanging.
        def read_until_closed() -> None:
            while True:
                websocket.recv(timeout=10)

        with pytest.raises(ConnectionClosed) as closed:
            read_until_closed()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012


def test_demo_data_is_created_once(server_factory: ServerFactory):
    first = server_factory(demo=True)
    assert first.stop() == 0
    second = server_factory(demo=True)
    assert second.wait_for_output("demo logins")
    with _db(second) as db:
        assert _count(db, "SELECT count(*) FROM users_user") == 4
        assert _count(db, "SELECT count(*) FROM projects_project") == 2


def test_a_port_in_use_is_one_plain_line(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=server_env(data_dir=tmp_path))
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in _one_line_error(result)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--port", "eighty"], "not a port number"),
        (["--port", "70000"], "0 to 65535"),
        (["notify", "--title", "x"], "one of the arguments --user --project --role --everyone"),
        (["notify", "--user", "a", "--title", "x", "--priority", "extreme"], "invalid choice"),
        (["notify", "--user", "a", "--everyone", "--title", "x"], "not allowed with"),
    ],
)
def test_bad_flags_are_one_plain_line(tmp_path: Path, args: list[str], expected: str):
    result = run_cli(*args, env=server_env(data_dir=tmp_path))
    assert result.returncode == 2
    assert expected in _one_line_error(result)


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("nonsense://nowhere", "DATABASE_URL is not a database URL"),
        # Port 1 on loopback: nothing listens there, so the connection is refused at once.
        ("postgres://someone:hunter2@127.0.0.1:1/tray", "cannot use the database tray on"),
    ],
)
def test_a_bad_database_url_is_one_plain_line(tmp_path: Path, database_url: str, expected: str):
    env = server_env(data_dir=tmp_path, database_url=database_url)
    result = run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 1
    line = _one_line_error(result)
    assert expected in line
    assert "hunter2" not in line


@pytest.mark.parametrize("value", ["0", "-1", "nan", "5000"])
def test_a_bad_switch_interval_is_one_plain_line(tmp_path: Path, value: str):
    env = server_env(data_dir=tmp_path, extra={"TRAY_SWITCH_INTERVAL_MS": value})
    result = run_cli("serve", "--port", "0", env=env, timeout=30)
    assert result.returncode == 2
    assert "TRAY_SWITCH_INTERVAL_MS must be more than 0" in _one_line_error(result)


def _python_output(code: str, env: dict[str, str]) -> str:
    """What ``python -c code`` prints in the repository with ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_serve_sets_the_switch_interval(tmp_path: Path):
    """The server's GIL hand-over interval is the setting's (Python's default is 5 ms)."""
    env = server_env(data_dir=tmp_path, extra={"TRAY_SWITCH_INTERVAL_MS": "0.25"})
    code = (
        "import sys\n"
        "from backend import cli\n"
        "cli._setup_django()\n"
        "cli._set_switch_interval()\n"
        "print(sys.getswitchinterval())\n"
    )
    assert float(_python_output(code, env)) == pytest.approx(0.00025)


def test_a_negative_collector_threshold_is_one_plain_line(tmp_path: Path):
    env = server_env(data_dir=tmp_path, extra={"TRAY_GC_THRESHOLD": "-5"})
    result = run_cli("serve", "--port", "0", env=env, timeout=30)
    assert result.returncode == 2
    assert "TRAY_GC_THRESHOLD must be 0 or more, got -5" in _one_line_error(result)


@pytest.mark.parametrize(("value", "expected"), [("1234", 1234), ("0", 700)])
def test_the_started_server_freezes_what_it_loaded_and_sets_the_threshold(
    tmp_path: Path, value: str, expected: int
):
    """What serve does once started (``_tune_collector``): the objects loaded at start
    are out of every collection, and the youngest generation's threshold is the
    setting's (0: Python's 700)."""
    env = server_env(data_dir=tmp_path, extra={"TRAY_GC_THRESHOLD": value})
    code = (
        "import gc\n"
        "from backend import cli\n"
        "cli._setup_django()\n"
        "import backend.config.asgi\n"
        "before = gc.get_freeze_count()\n"
        "cli._tune_collector(cli._collector_threshold())\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0])\n"
    )
    before, frozen, threshold = map(int, _python_output(code, env).split())
    assert before == 0
    assert frozen > 10_000  # Django, the app registry, the URL configuration
    assert threshold == expected


def test_production_refuses_demo_before_touching_the_database(tmp_path: Path):
    # Security review, finding 11: TRAY_ENV=production --demo seeded admin / demo.
    env = server_env(
        data_dir=tmp_path,
        extra={
            "TRAY_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "TRAY_ALLOWED_HOSTS": "notify.example.com",
        },
    )
    run_cli("manage", "migrate", "--verbosity", "0", env=env, check=True)
    with _db(tmp_path) as db:
        tables_before = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()

    for args in (["--demo", "--port", "0"], ["serve", "--demo", "--port", "0"]):
        # On the old code the server started (and ran until this timeout).
        result = run_cli(*args, env=env, timeout=30)
        assert result.returncode == 2, result.stderr
        line = _one_line_error(result)
        assert "--demo must not be used with TRAY_ENV=production" in line
        assert result.stdout == ""

    with _db(tmp_path) as db:
        assert _count(db, "SELECT count(*) FROM users_user") == 0
        assert db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == (
            tables_before
        )


# --- notify -----------------------------------------------------------------------


def test_notify_writes_inbox_rows_for_each_recipient(demo_server: RunningServer):
    with _db(demo_server) as db:
        before = _count(db, "SELECT count(*) FROM notifications_inbox")

    result = demo_server.cli(
        "notify", "--user", "alice", "--user", "bob", "--title", "Deploy at 5",
        "--message", "Expect a short outage", "--priority", "high",
        "--url", "https://status.example.com",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sent to 2 recipients")
    with _db(demo_server) as db:
        rows = db.execute(
            "SELECT u.username, m.priority, m.message, m.url, i.seq"
            " FROM notifications_inbox i"
            " JOIN notifications_message m ON m.id = i.message_id"
            " JOIN users_user u ON u.id = i.user_id"
            " WHERE m.title = 'Deploy at 5' ORDER BY u.username"
        ).fetchall()
        assert _count(db, "SELECT count(*) FROM notifications_inbox") == before + 2
        last_seqs = dict(
            db.execute(
                "SELECT u.username, s.last_seq FROM notifications_inboxsequence s"
                " JOIN users_user u ON u.id = s.user_id"
            ).fetchall()
        )
    assert [row[:4] for row in rows] == [
        ("alice", "high", "Expect a short outage", "https://status.example.com"),
        ("bob", "high", "Expect a short outage", "https://status.example.com"),
    ]
    # The new row is each user's latest seq.
    assert rows[0][4] == last_seqs["alice"]
    assert rows[1][4] == last_seqs["bob"]


def test_notify_reaches_a_project_a_role_and_everyone(demo_server: RunningServer):
    with _db(demo_server) as db:
        project_id = _count(db, "SELECT id FROM projects_project WHERE title = 'Website Redesign'")
        members = _count(
            db, "SELECT count(*) FROM projects_membership WHERE project_id = ?", project_id
        )
        developers = _count(
            db,
            "SELECT count(*) FROM users_user u JOIN users_role r ON r.id = u.role_id"
            " WHERE r.name = 'developer'",
        )

    for args, count in (
        (["--project", str(project_id)], members),
        (["--role", "developer"], developers),
        (["--everyone"], 4),
    ):
        result = demo_server.cli("notify", *args, "--title", "hello")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"sent to {count} recipients"), result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--user", "alice", "--user", "mallory"], "no such user: mallory"),
        (["--project", "999"], "no project with id 999"),
        (["--role", "astronaut"], "no such role: astronaut (roles: designer, developer)"),
    ],
)
def test_notify_to_someone_unknown_exits_2(
    demo_server: RunningServer, args: list[str], expected: str
):
    with _db(demo_server) as db:
        before = _count(db, "SELECT count(*) FROM notifications_message")

    result = demo_server.cli("notify", *args, "--title", "Hello")

    assert result.returncode == 2
    assert expected in _one_line_error(result)
    with _db(demo_server) as db:
        assert _count(db, "SELECT count(*) FROM notifications_message") == before


def test_notify_refuses_bad_content_with_exit_2(demo_server: RunningServer):
    result = demo_server.cli("notify", "--user", "alice", "--title", "x" * 201)
    assert result.returncode == 2
    assert "title must be at most 200 characters" in _one_line_error(result)


def test_notify_refuses_links_and_titles_the_api_refuses(demo_server: RunningServer):
    # Security review, findings 10 and 13a: `notify` stored javascript: links and
    # invisible titles that REST and the admin refused.
    with _db(demo_server) as db:
        before = _count(db, "SELECT count(*) FROM notifications_message")
    cases = [
        (["--title", "x", "--url", "javascript:alert(1)"], "url must be an http:// or https://"),
        (["--title", "x", "--url", "file:///etc/passwd"], "url must be an http:// or https://"),
        (["--title", "x", "--url", "//evil.example/x"], "url must not start with //"),
        (["--title", "x", "--url", "https://a.example/\tb"], "url must not contain spaces"),
        (["--title", "\u200d"], "title must contain visible text"),
        (["--title", "\u3164"], "title must contain visible text"),
        (["--title", "Deploy\u2028at 5"], "title must be a single line of text"),
    ]
    for args, expected in cases:
        result = demo_server.cli("notify", "--user", "alice", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in _one_line_error(result), args
        assert result.stdout == ""
    with _db(demo_server) as db:
        assert _count(db, "SELECT count(*) FROM notifications_message") == before

    # The server's own kind of link, a path on the server, is fine.
    result = demo_server.cli("notify", "--user", "alice", "--title", "x", "--url", "/projects/1")
    assert result.returncode == 0, result.stderr


def _batch_results(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_notify_batch_from_a_file_sends_every_good_line(
    demo_server: RunningServer, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"audience": {"usernames": ["alice"]}, "title": "Batch one"}),
        "",  # blank lines are skipped, and line numbers still count them
        "{not json",
        json.dumps({"audience": {"usernames": ["mallory"]}, "title": "To nobody"}),
        json.dumps({"audience": {"usernames": ["alice", "bob"]}, "title": "Batch two",
                    "priority": "high", "idempotency_key": "batch-2"}),
        json.dumps({"audience": {"usernames": ["alice"]}, "title": "Batch two again",
                    "idempotency_key": "batch-2"}),
        json.dumps({"audience": {"everyone": True}, "title": ""}),
    ]  # fmt: skip
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with _db(demo_server) as db:
        alice_before = _count(
            db,
            "SELECT s.last_seq FROM notifications_inboxsequence s"
            " JOIN users_user u ON u.id = s.user_id WHERE u.username = 'alice'",
        )

    result = demo_server.cli("notify", "--batch", str(batch))

    assert result.returncode == 2, result.stderr  # some lines failed; the rest were sent
    results = _batch_results(result)
    assert [(r["line"], r["status"]) for r in results] == [
        (1, "created"),
        (3, "error"),
        (4, "error"),
        (5, "created"),
        (6, "duplicate"),
        (7, "error"),
    ]
    assert results[1]["error"]["code"] == "invalid_json"
    assert results[2]["error"]["code"] == "unknown_audience"
    assert results[2]["error"]["detail"] == {"unknown": {"usernames": ["mallory"]}}
    assert results[5]["error"]["detail"] == {"title": ["This field may not be blank."]}
    assert (results[0]["recipients"], results[3]["recipients"]) == (1, 2)
    assert results[4]["id"] == results[3]["id"]
    assert result.stderr.strip() == "tray-notifier-server: 2 sent, 1 duplicate, 3 errors"
    with _db(demo_server) as db:
        rows = db.execute(
            "SELECT m.title, m.priority, m.publisher, i.seq FROM notifications_inbox i"
            " JOIN notifications_message m ON m.id = i.message_id"
            " JOIN users_user u ON u.id = i.user_id"
            " WHERE u.username = 'alice' AND i.seq > ? ORDER BY i.seq",
            (alice_before,),
        ).fetchall()
    assert rows == [
        ("Batch one", "normal", "cli", alice_before + 1),
        ("Batch two", "high", "cli", alice_before + 2),
    ]


def test_notify_batch_reads_stdin_and_is_idempotent_by_key(demo_server: RunningServer) -> None:
    stdin = "\n".join(
        [
            json.dumps({"audience": {"usernames": ["bob"]}, "title": "From stdin",
                        "idempotency_key": "stdin-1"}),
            '{"audience": {"usernames": ["bob"]}, "title": 5}',
            json.dumps({"audience": {"roles": ["developer"]}, "title": "To developers",
                        "idempotency_key": "stdin-2"}),
        ]
    )  # fmt: skip
    first = demo_server.cli("notify", "--batch", "-", stdin=stdin)
    assert first.returncode == 2, first.stderr
    sent = _batch_results(first)
    assert [r["status"] for r in sent] == ["created", "error", "created"]
    assert sent[1]["error"] == {
        "code": "invalid",
        "message": "title: Not a valid string.",
        "detail": {"title": ["Not a valid string."]},
    }

    again = demo_server.cli("notify", "--batch", "-", stdin=stdin)
    assert [(r["status"], r.get("id")) for r in _batch_results(again)] == [
        ("duplicate", sent[0]["id"]),
        ("error", None),
        ("duplicate", sent[2]["id"]),
    ]
    with _db(demo_server) as db:
        assert (
            _count(db, "SELECT count(*) FROM notifications_message WHERE title = 'From stdin'") == 1
        )

    only_good = demo_server.cli("notify", "--batch", "-", stdin=stdin.splitlines()[0])
    assert only_good.returncode == 0, only_good.stderr
    assert only_good.stderr.strip() == "tray-notifier-server: 0 sent, 1 duplicate, 0 errors"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--batch", "-", "--title", "x"], "leave out --title"),
        (["--batch", "/nonexistent/batch.jsonl"], "cannot read /nonexistent/batch.jsonl"),
        (["--batch", "-", "--user", "alice"], "not allowed with"),
        (["--user", "alice"], "required: --title"),
    ],
)
def test_notify_batch_usage_errors_exit_2(
    demo_server: RunningServer, args: list[str], expected: str
) -> None:
    result = demo_server.cli("notify", *args, stdin="")
    assert result.returncode == 2
    assert expected in _one_line_error(result)


def test_notify_batch_of_nothing_exits_2(demo_server: RunningServer) -> None:
    result = demo_server.cli("notify", "--batch", "-", stdin="\n  \n")
    assert result.returncode == 2
    assert "has no notifications" in _one_line_error(result)


def test_notify_before_the_database_is_set_up(server_factory: ServerFactory):
    result = server_factory.cli("notify", "--everyone", "--title", "too early")
    assert result.returncode == 1
    assert "is not set up yet" in _one_line_error(result)


# --- manage, create-api-key ----------------------------------------------------------


def test_manage_passes_everything_to_django(server_factory: ServerFactory):
    help_text = server_factory.cli("manage", "--help")
    assert help_text.returncode == 0
    assert "createsuperuser" in help_text.stdout

    migrate = server_factory.cli("manage", "migrate", "--verbosity", "0")
    assert migrate.returncode == 0, migrate.stderr
    check = server_factory.cli("manage", "check")
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash(
    server_factory: ServerFactory,
):
    server_factory.cli("manage", "migrate", "--verbosity", "0", check=True)

    result = server_factory.cli("create-api-key", "ci-pipeline")

    assert result.returncode == 0, result.stderr
    raw = result.stdout.strip()
    assert re.fullmatch(r"tnk_[A-Za-z0-9_-]{40,}", raw)
    assert "only time it is shown" in result.stderr
    with _db(server_factory.data_dir) as db:
        stored = db.execute("SELECT name, prefix, hashed_key FROM notifications_apikey").fetchall()
    assert len(stored) == 1
    name, prefix, hashed = stored[0]
    assert (name, prefix) == ("ci-pipeline", raw[:12])
    assert raw not in hashed


# --- tokens stay out of the logs ------------------------------------------------------


def test_tokens_never_reach_the_server_output(demo_server: RunningServer):
    tokens = _login(demo_server)
    access, refresh = tokens["access"], tokens["refresh"]
    forged = "NOT-A-REAL-TOKEN-0123456789"

    # A browser-style client: the token in the URL, as uvicorn logs it.
    with connect(f"{demo_server.ws_url}?token={access}", open_timeout=10) as websocket:
        websocket.recv(timeout=10)
    # A refused token is logged with its URL too (an error frame, then close 4001).
    with connect(f"{demo_server.ws_url}?token={forged}", open_timeout=10) as websocket:
        error = json.loads(websocket.recv(timeout=10))
        assert error["type"] == "error"
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=10)
    # And so is a handshake refused before accept (a browser origin not allowed: HTTP 403).
    with pytest.raises(InvalidStatus):
        connect(
            f"{demo_server.ws_url}?token={access}",
            origin=Origin("https://evil.example.com"),
            open_timeout=10,
        )
    # Spellings a query parser decodes into "token": none of them authenticates (only the
    # exact name does), and none of them puts the token in the log.
    for variant in ("tok%65n", "%74oken", "tok%2565n", "TOKEN", "token%3D"):
        with connect(f"{demo_server.ws_url}?{variant}={access}", open_timeout=10) as websocket:
            error = json.loads(websocket.recv(timeout=10))
            assert error["payload"]["code"] == "token_missing", variant
            with pytest.raises(ConnectionClosed):
                websocket.recv(timeout=10)
    httpx.get(f"{demo_server.url}/healthz?access={access}&refresh={refresh}", timeout=10)
    httpx.get(f"{demo_server.url}/healthz?next=%2F%3Facc%65ss%3D{access}", timeout=10)
    httpx.get(
        f"{demo_server.url}/api/me", headers={"Authorization": f"Bearer {forged}"}, timeout=10
    )

    assert demo_server.wait_for_output("GET /healthz?access=[redacted]&refresh=[redacted]")
    assert demo_server.wait_for_output("GET /healthz?next=%2F%3Facc")
    assert demo_server.stop() == 0
    output = demo_server.output()
    assert '"WebSocket /ws/notifications/?tok%65n=[redacted]" [accepted]' in output
    assert '"WebSocket /ws/notifications/?token=[redacted]" [accepted]' in output
    assert '"WebSocket /ws/notifications/?token=[redacted]" 403' in output
    for secret in (access, refresh, forged):
        assert secret not in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/notifications/?token=abc.def-ghi&x=1", "/ws/notifications/?token=[redacted]&x=1"),
        ("?access=A1&refresh=R2", "?access=[redacted]&refresh=[redacted]"),
        ("/cb?access_token=A1", "/cb?access_token=[redacted]"),
        ("next=%2F%3Ftoken%3DSECRET", "next=%2F%3Ftoken%3D[redacted]"),
        ("Authorization: Bearer eyJ.a.b", "Authorization: Bearer [redacted]"),
        ("Authorization: Api-Key tnk_abcdefgh123", "Authorization: Api-Key [redacted]"),
        ("created tnk_abcdefgh123", "created tnk_[redacted]"),
        ('{"refresh": "R2", "n": 1}', '{"refresh": "[redacted]", "n": 1}'),
        ("mytoken=kept&tokens=kept", "mytoken=kept&tokens=kept"),
        # Names a query parser decodes into a credential's name.
        ("/ws/?tok%65n=SECRET&x=1", "/ws/?tok%65n=[redacted]&x=1"),
        ("/ws/?%74oken=SECRET", "/ws/?%74oken=[redacted]"),
        ("/ws/?tok%2565n=SECRET", "/ws/?tok%2565n=[redacted]"),
        ("/x?acc%65ss%3DSECRET", "/x?acc%65ss%3D[redacted]"),
        ("/x?p%61ssword=hunter2", "/x?p%61ssword=[redacted]"),
        ("/x?na%6De=kept", "/x?na%6De=kept"),
        # A JWT under any name at all.
        ("/x?whatever=eyJhbGciOi.eyJzdWIiOjF9.c2ln", "/x?whatever=[redacted]"),
        ("jwt eyJhbGciOi.eyJzdWIiOjF9.c2ln seen", "jwt [redacted] seen"),
    ],
)
def test_redact(text: str, expected: str):
    assert redact(text) == expected


def test_the_filter_redacts_arguments_and_tracebacks_before_formatting():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # uvicorn's shape: the path is an argument, and its access formatter unpacks args.
        logger.warning('%s - "WebSocket %s" 403', "127.0.0.1:5", "/ws/?token=SECRET1")
        logger.warning("%(path)s", {"path": "/x?refresh=SECRET2"})
        logger.warning("raw %r", b"token=SECRET3")
        try:
            raise ValueError("bad url /ws/?access=SECRET4")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert '"WebSocket /ws/?token=[redacted]" 403' in output
    assert "ValueError: bad url /ws/?access=[redacted]" in output
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4"):
        assert secret not in output


def test_settings_put_the_filter_on_every_handler():
    from django.conf import settings

    handlers = cast("dict[str, dict[str, Any]]", settings.LOGGING["handlers"])
    assert handlers
    for handler in handlers.values():
        assert "redact_secrets" in handler["filters"]
    loggers = cast("dict[str, dict[str, Any]]", settings.LOGGING["loggers"])
    for name in ("uvicorn", "uvicorn.access", "django"):
        assert loggers[name]["handlers"] == ["console"]


# --- demo data, in-process ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_seed_demo_creates_the_team_and_projects_once():
    summary = seed_demo()

    assert summary.created
    assert ("alice", "demo") in summary.logins
    admin = User.objects.get(username="admin")
    assert admin.is_staff
    assert admin.is_superuser
    alice = User.objects.get(username="alice")
    assert alice.check_password("demo")
    assert alice.role is not None
    assert alice.role.name == "developer"
    assert User.objects.get(username="carol").role.name == "designer"  # type: ignore[union-attr]
    assert sorted(Project.objects.values_list("title", flat=True)) == [
        "Mobile App",
        "Website Redesign",
    ]
    mobile = Project.objects.get(title="Mobile App")
    assert set(mobile.memberships.values_list("user__username", flat=True)) == {
        "alice",
        "bob",
        "carol",
    }
    assert Milestone.objects.exists()
    assert Task.objects.filter(status="done").exists()
    # alice and carol created the projects through the "Project managers" group; bob
    # is a plain member and may not (finding 2: he could pull anyone into his own).
    may_create = {
        user.username: can_create_project(user=user)
        for user in User.objects.filter(username__in=["alice", "bob", "carol", "admin"])
    }
    assert may_create == {"alice": True, "bob": False, "carol": True, "admin": True}
    counts = (User.objects.count(), Membership.objects.count(), Task.objects.count())
    # Project events notified the teams, as they would through the REST API.
    assert alice.inbox.exists()

    again = seed_demo()

    assert not again.created
    assert (User.objects.count(), Membership.objects.count(), Task.objects.count()) == counts


# --- the scale deployment ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_two_servers_start_together_on_a_fresh_postgres_and_both_deliver(
    server_factory: ServerFactory, postgres_url: str, redis_url: str, tmp_path: Path
):
    # Separate data directories, one signing key: what IT sets up for several processes.
    shared = {"DJANGO_SECRET_KEY": "scale-test-key-" + "x" * 40}
    with ThreadPoolExecutor(2) as pool:
        starts = [
            pool.submit(
                server_factory,
                data_dir=tmp_path / f"process-{index}",
                database_url=postgres_url,
                redis_url=redis_url,
                env=shared,
            )
            for index in (1, 2)
        ]
        first, second = (start.result() for start in starts)
    # Both ran migrate on the empty database at once; one waited for the other.
    seeded = first.cli("manage", "shell", "-c", "from backend.demo import seed_demo; seed_demo()")
    assert seeded.returncode == 0, seeded.stderr

    access = _login(first)["access"]
    headers = {"Authorization": f"Bearer {access}"}
    with (
        connect(first.ws_url, additional_headers=headers, open_timeout=10) as on_first,
        connect(second.ws_url, additional_headers=headers, open_timeout=10) as on_second,
    ):
        for websocket in (on_first, on_second):
            assert json.loads(websocket.recv(timeout=10))["type"] == "hello"

        sent = second.cli("notify", "--user", "alice", "--title", "scale hello")
        assert sent.returncode == 0, sent.stderr

        for websocket in (on_first, on_second):
            deadline = time.monotonic() + 15
            while True:
                frame = json.loads(websocket.recv(timeout=max(0.1, deadline - time.monotonic())))
                if frame["type"] == "notification_created":
                    break
            assert frame["payload"]["title"] == "scale hello"


# --- serve --certfile/--keyfile (TLS) ---------------------------------------------------


def test_serve_with_a_certificate_speaks_https_and_wss_on_one_port(
    server_factory: ServerFactory, tls_ca: ThrowawayCA
):
    issued = tls_ca.issue()
    server = server_factory(
        "--certfile", str(issued.cert_path), "--keyfile", str(issued.key_path), demo=True
    )
    match = re.match(r"^https://127\.0\.0\.1:(\d+)$", server.url)
    assert match, server.url
    port = match.group(1)
    wss_url = f"wss://127.0.0.1:{port}/ws/notifications/"
    assert server.wait_for_output(f"tray-notifier-server: websocket {wss_url}"), server.output()
    trust = ssl.create_default_context(cafile=tls_ca.cert_path)
    login = httpx.post(
        server.url + "/api/auth/token/",
        json={"username": "alice", "password": "demo"},
        verify=trust,
        timeout=30,
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access']}"}
    with connect(wss_url, additional_headers=headers, ssl=trust, open_timeout=10) as websocket:
        assert json.loads(websocket.recv(timeout=10))["type"] == "hello"
    # Plain http on that port is not served: the listening line told the truth.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("certfile-only", "--certfile and --keyfile go together"),
        ("missing", "cannot use the certificate"),
        ("wrong-key", "cannot use the certificate"),
    ],
)
def test_bad_tls_files_are_one_plain_line(
    tmp_path: Path, tls_ca: ThrowawayCA, which: str, expected: str
):
    issued = tls_ca.issue()
    other = tls_ca.issue("other")
    args = {
        "certfile-only": ["--certfile", str(issued.cert_path)],
        "missing": ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(issued.key_path)],
        "wrong-key": ["--certfile", str(issued.cert_path), "--keyfile", str(other.key_path)],
    }[which]
    result = run_cli("serve", "--port", "0", *args, env=server_env(data_dir=tmp_path))
    assert result.returncode == 2
    line = _one_line_error(result)
    assert expected in line
    if which != "certfile-only":
        assert str(args[1]) in line


def test_the_publish_protocol_is_used_only_on_the_uvicorn_releases_it_was_tested_on(
    monkeypatch: pytest.MonkeyPatch,
):
    import uvicorn

    from backend import cli
    from backend.config.publish_protocol import PublishHttpProtocol
    from backend.uvicorn_release import TESTED_UVICORN

    # The installed uvicorn is one the suite tests it on (else CI would not exercise it).
    assert uvicorn.__version__.rsplit(".", 1)[0] in TESTED_UVICORN
    assert cli._http_protocol() is PublishHttpProtocol
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    assert cli._http_protocol() == "auto"
