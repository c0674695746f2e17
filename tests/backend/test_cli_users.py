"""``tray-notifier-server create-user``: adding people (and the first admin) without the
admin and without a terminal."""

from __future__ import annotations

import re
import sqlite3
import subprocess

import httpx

from tests.fixtures.services import RunningServer, ServerFactory, run_cli


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.match(r"tray-notifier-server( [a-z-]+)?: error: ", lines[0]), lines[0]
    return lines[0]


def _user_row(server_or_factory: RunningServer | ServerFactory, username: str) -> tuple[int, ...]:
    with sqlite3.connect(server_or_factory.data_dir / "db.sqlite3", timeout=20) as db:
        row = db.execute(
            "SELECT is_active, is_staff, is_superuser FROM users_user WHERE username = ?",
            (username,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_create_user_from_stdin_who_then_logs_in(demo_server: RunningServer) -> None:
    result = demo_server.cli(
        "create-user", "dave", "--email", "dave@example.com", "--password-stdin",
        stdin="Quite-Long-Pass-123\n",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "created user 'dave'" in result.stdout
    assert "Quite-Long-Pass-123" not in result.stdout + result.stderr
    assert _user_row(demo_server, "dave") == (1, 0, 0)
    login = httpx.post(
        demo_server.url + "/api/auth/token/",
        json={"username": "dave", "password": "Quite-Long-Pass-123"},
        timeout=10,
    )
    assert login.status_code == 200, login.text


def test_the_first_admin_without_a_terminal(server_factory: ServerFactory) -> None:
    server_factory.cli("manage", "migrate", "--verbosity", "0", check=True)

    result = run_cli(
        "create-user", "boss", "--superuser", "--password-stdin",
        env=server_factory.env(), stdin="Quite-Long-Pass-123\n",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "created superuser 'boss'" in result.stdout
    assert _user_row(server_factory, "boss") == (1, 1, 1)


def test_create_user_staff(demo_server: RunningServer) -> None:
    result = demo_server.cli(
        "create-user", "erin", "--staff", "--password-stdin", stdin="Quite-Long-Pass-123"
    )
    assert result.returncode == 0, result.stderr
    assert "created staff user 'erin'" in result.stdout
    assert _user_row(demo_server, "erin") == (1, 1, 0)


def test_a_taken_username_is_one_plain_line_exit_2(demo_server: RunningServer) -> None:
    result = demo_server.cli(
        "create-user", "ALICE", "--password-stdin", stdin="Quite-Long-Pass-123\n"
    )

    assert result.returncode == 2
    assert "The username 'ALICE' is taken." in _one_line_error(result)


def test_a_weak_password_is_one_plain_line_exit_2(demo_server: RunningServer) -> None:
    result = demo_server.cli("create-user", "frank", "--password-stdin", stdin="password\n")

    assert result.returncode == 2
    assert "too common" in _one_line_error(result)
    with sqlite3.connect(demo_server.data_dir / "db.sqlite3", timeout=20) as db:
        assert db.execute("SELECT COUNT(*) FROM users_user WHERE username='frank'").fetchone() == (
            0,
        )


def test_no_password_and_no_terminal_is_one_plain_line(demo_server: RunningServer) -> None:
    empty = demo_server.cli("create-user", "gina", "--password-stdin", stdin="")
    assert empty.returncode == 2
    assert "no password on stdin" in _one_line_error(empty)

    no_tty = demo_server.cli("create-user", "gina", stdin="Quite-Long-Pass-123\n")
    assert no_tty.returncode == 2
    assert "--password-stdin" in _one_line_error(no_tty)


def test_create_user_before_the_database_is_set_up(server_factory: ServerFactory) -> None:
    result = run_cli("create-user", "hal", "--password-stdin", env=server_factory.env(), stdin="")
    assert result.returncode == 1
    assert "not set up yet" in _one_line_error(result)
