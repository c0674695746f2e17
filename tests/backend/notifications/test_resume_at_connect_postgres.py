"""Resume at connect (``?after_seq=N``) on real PostgreSQL: the one-statement opening
(a LEFT JOIN of the user's rows above the cursor, with constant-id subqueries for the
counts) must read the same on PostgreSQL as on SQLite."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.sync.client import connect

from tests.fixtures.services import ServerFactory

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_after_seq_replays_on_postgres(server_factory: ServerFactory, postgres_url: str) -> None:
    server = server_factory(demo=True, database_url=postgres_url)
    login = httpx.post(
        f"{server.url}/api/auth/token/",
        json={"username": "alice", "password": "demo"},
        timeout=30,  # the first request of a new server, on a busy machine
    )
    headers = {"Authorization": f"Bearer {login.json()['access']}"}
    with connect(server.ws_url, additional_headers=headers) as ws:
        latest = json.loads(ws.recv(timeout=10))["payload"]["latest_seq"]
    for n in range(3):
        result = server.cli("notify", "--user", "alice", "--title", f"missed {n}")
        assert result.returncode == 0, result.stderr

    with connect(f"{server.ws_url}?after_seq={latest}", additional_headers=headers) as ws:
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(5)]
    assert frames[0]["type"] == "hello"
    assert frames[0]["payload"]["latest_seq"] == latest + 3
    assert [f["payload"]["title"] for f in frames[1:4]] == [f"missed {n}" for n in range(3)]
    assert [f["payload"]["seq"] for f in frames[1:4]] == [latest + 1, latest + 2, latest + 3]
    assert frames[4] == {
        "type": "caught_up",
        "payload": {"after_seq": latest, "through_seq": latest + 3, "replayed": 3},
    }
    with connect(f"{server.ws_url}?after_seq={latest + 3}", additional_headers=headers) as ws:
        hello, done = json.loads(ws.recv(timeout=10)), json.loads(ws.recv(timeout=10))
    assert hello["payload"]["unread_count"] >= 3
    assert done["payload"] == {"after_seq": latest + 3, "through_seq": latest + 3, "replayed": 0}
