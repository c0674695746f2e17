"""The server's data directory is owner-only (backend/config/data_dir.py), for new
installs and for ones made before the rule, with the real server."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import httpx

from tests.fixtures.services import ServerFactory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_and_its_database_are_owner_only(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "new-install"
    server = server_factory(demo=True, data_dir=data)
    # A login writes through the WAL, so every file SQLite keeps exists now.
    httpx.post(
        server.url + "/api/auth/token/", json={"username": "alice", "password": "demo"}, timeout=30
    ).raise_for_status()
    assert _mode(data) == 0o700
    files = [data / name for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm")]
    files.append(data / "secret_key")
    for file in files:
        assert file.exists(), file
        assert _mode(file) == 0o600, file


def test_an_install_from_before_the_rule_is_fixed_at_start(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "old-install"
    old_umask = os.umask(0o022)
    try:
        data.mkdir(mode=0o755)
        with sqlite3.connect(data / "db.sqlite3") as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE leftover (x)")
    finally:
        os.umask(old_umask)
    (data / "db.sqlite3").chmod(0o644)
    data.chmod(0o755)

    server_factory(demo=True, data_dir=data)

    assert _mode(data) == 0o700
    assert _mode(data / "db.sqlite3") == 0o600
    for leftover in data.glob("db.sqlite3-*"):
        assert _mode(leftover) == 0o600, leftover
