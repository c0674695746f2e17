"""The server as users run it: ``tray-notifier-server`` in a subprocess on a free
port (embedded default: SQLite, in-process delivery), real REST and WebSocket clients."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.e2e.conftest import Socket, login
from tests.fixtures.services import RunningServer

pytestmark = pytest.mark.asyncio


async def test_a_notify_from_the_command_line_reaches_a_connected_client(
    demo_server: RunningServer,
):
    """README's walk-through: log in as alice, connect, publish with the CLI, see it arrive."""
    socket = await Socket.open(demo_server, login(demo_server, "alice"))
    assert socket.hello["user"]["username"] == "alice"
    result = await asyncio.to_thread(
        demo_server.cli,
        "notify",
        "--user",
        "alice",
        "--title",
        "Build is green",
        "--priority",
        "high",
    )
    assert result.returncode == 0, result.stderr
    frame = await socket.receive_until("notification_created")
    assert frame["payload"]["title"] == "Build is green"
    assert frame["payload"]["priority"] == "high"
    assert frame["payload"]["seq"] == socket.hello["latest_seq"] + 1
    await socket.close()


async def test_resume_after_500_missed_gives_exactly_those_in_order(demo_server: RunningServer):
    alice = login(demo_server, "alice")
    first = await Socket.open(demo_server, alice)
    cursor = first.hello["latest_seq"]
    await first.close()

    admin = login(demo_server, "admin")
    sent = []
    async with httpx.AsyncClient(
        base_url=demo_server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ) as rest:
        for n in range(500):
            response = await rest.post(
                "/api/notifications/",
                json={"audience": {"usernames": ["alice"]}, "title": f"missed {n}"},
            )
            assert response.status_code == 201, response.text
            sent.append(f"missed {n}")
        # Someone else's notifications in the meantime must not leak into alice's replay.
        response = await rest.post(
            "/api/notifications/", json={"audience": {"usernames": ["bob"]}, "title": "for bob"}
        )
        assert response.status_code == 201

    again = await Socket.open(demo_server, alice)
    assert again.hello["latest_seq"] == cursor + 500
    await again.send("resume", {"after_seq": cursor})
    replayed = []
    while True:
        frame = await again.receive()
        if frame["type"] == "caught_up":
            break
        assert frame["type"] == "notification_created", frame
        replayed.append(frame["payload"])
    assert [row["seq"] for row in replayed] == list(range(cursor + 1, cursor + 501))
    assert [row["title"] for row in replayed] == sent
    assert frame["payload"] == {
        "after_seq": cursor,
        "through_seq": cursor + 500,
        "replayed": 500,
    }
    # Nothing else is queued behind the replay: the next frame answers our ping.
    await again.send("ping", ref="after")
    assert await again.receive() == {"type": "pong", "payload": {}, "ref": "after"}
    await again.close()


async def test_protocol_violations_close_only_the_offending_socket(demo_server: RunningServer):
    token = login(demo_server, "alice")
    bystander = await Socket.open(demo_server, token)

    bad_utf8 = await Socket.open(demo_server, token)
    await bad_utf8.connection.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True)
    assert await bad_utf8.close_code() == 1007

    too_big = await Socket.open(demo_server, token)
    await too_big.connection.send(json.dumps({"type": "ping", "payload": {"x": "y" * 100_000}}))
    assert await too_big.close_code() == 1009

    await bystander.send("ping", ref=1)
    assert (await bystander.receive())["type"] == "pong"
    async with httpx.AsyncClient(timeout=10) as rest:
        health = await rest.get(f"{demo_server.url}/healthz")
    assert health.json()["status"] == "ok"
    await bystander.close()


async def test_a_handshake_without_a_token_is_accepted_then_closed_4001(demo_server: RunningServer):
    async with websockets.connect(demo_server.ws_url) as connection:
        error = json.loads(await connection.recv())
        assert error["payload"]["code"] == "token_missing"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await connection.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4001


async def test_stopping_the_server_closes_sockets_with_1012(demo_server: RunningServer):
    socket = await Socket.open(demo_server, login(demo_server, "alice"))
    stopping = asyncio.create_task(asyncio.to_thread(demo_server.stop))
    assert await socket.close_code() == 1012
    assert await stopping == 0
