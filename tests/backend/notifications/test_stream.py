"""The HTTP stream (``GET /api/stream/``, Server-Sent Events) against the real server in a
subprocess, read with httpx as a client on a network without WebSockets would read it.

Every test starts its own demo server (tests/fixtures/services.py); notifications come
from the ``notify`` command, as another system's would; the nginx test runs Debian's
nginx configured as a proxy that knows nothing of WebSockets (tests/fixtures/proxies.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import WAIT, Socket, login
from tests.fixtures.proxies import nginx_without_upgrade
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = pytest.mark.asyncio

STREAM = "/api/stream/"


@pytest.fixture(autouse=True)
def _servers_log_no_error(server_factory: ServerFactory) -> Iterator[None]:
    """Whatever a test did to its streams, its servers logged no error or traceback
    (uvicorn's "returned without completing response", a failed task)."""
    yield
    for server in server_factory._servers:
        problems = [
            line
            for line in server.output().splitlines()
            if " ERROR " in line or "Traceback" in line or "Exception" in line
        ]
        assert problems == [], server.output()


# --- a Server-Sent Events reader ---------------------------------------------------------


@dataclass
class Block:
    """What the server sent up to one blank line: an event, a comment or a retry."""

    data: list[str] = field(default_factory=list)
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def frame(self) -> dict[str, Any] | None:
        if not self.data:
            return None
        decoded: dict[str, Any] = json.loads("\n".join(self.data))
        return decoded


class EventReader:
    """Reads an event stream block by block, as the SSE specification splits it (on
    CR/LF only; the server escapes what ``str.splitlines`` would also split on)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_bytes()
        self._buffer = b""
        self.ended = False
        self.comments: list[str] = []

    async def _line(self, deadline: float) -> bytes | None:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            try:
                chunk = await asyncio.wait_for(anext(self._chunks), max(0.01, remaining))
            except StopAsyncIteration:
                self.ended = True
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def block(self, timeout: float = WAIT) -> Block | None:
        """The next block, or None at the end of the body."""
        deadline = time.monotonic() + timeout
        block = Block()
        while True:
            line = await self._line(deadline)
            if line is None:
                return None
            text = line.decode()
            if text == "":
                if block.data or block.comments or block.retry is not None or block.id:
                    return block
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.comments.append(value)
                self.comments.append(value)
            elif name == "data":
                block.data.append(value)
            elif name == "id":
                block.id = value
            elif name == "retry":
                block.retry = int(value)

    async def event(self, timeout: float = WAIT) -> Block:
        """The next block that carries a frame (comments on the way are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            block = await self.block(max(0.01, deadline - time.monotonic()))
            assert block is not None, "the stream ended"
            if block.data:
                return block

    async def frame(self, timeout: float = WAIT) -> dict[str, Any]:
        frame = (await self.event(timeout)).frame
        assert frame is not None
        return frame

    async def until(self, kind: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """Frames up to the first of ``kind`` whose payload has the ``match`` items."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.frame(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind and all(
                frame["payload"].get(k) == v for k, v in match.items()
            ):
                return frame

    async def replay(self) -> tuple[list[Block], dict[str, Any]]:
        """The notification events up to ``caught_up``, and that frame."""
        events: list[Block] = []
        while True:
            block = await self.event()
            frame = block.frame
            assert frame is not None
            if frame["type"] == "caught_up":
                return events, frame
            if frame["type"] == "notification_created":
                events.append(block)

    async def end(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Every frame until the server ends the body."""
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            block = await self.block(max(0.01, deadline - time.monotonic()))
            if block is None:
                return frames
            if block.frame is not None:
                frames.append(block.frame)


@contextlib.asynccontextmanager
async def open_stream(
    url: str,
    token: str | None = None,
    *,
    params: Any = None,
    headers: dict[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[EventReader]:
    """The stream at ``url`` (a server's or a proxy's base URL), past its ``retry`` line
    and with ``hello`` read into ``reader.hello``."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=WAIT))
        response = await stack.enter_async_context(
            client.stream("GET", url + STREAM, params=params, headers=all_headers)
        )
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        reader = EventReader(response)
        first = await reader.block()
        assert first is not None
        assert (first.retry, first.data) == (3000, []), first
        hello = await reader.frame()
        assert hello["type"] == "hello", hello
        reader.hello = hello["payload"]  # type: ignore[attr-defined]
        yield reader


async def notify(server: RunningServer, username: str, title: str, message: str = "") -> None:
    result = await asyncio.to_thread(
        server.cli, "notify", "--user", username, "--title", title, "--message", message
    )
    assert result.returncode == 0, result.stderr


async def shell(server: RunningServer, code: str) -> str:
    result = await asyncio.to_thread(server.cli, "manage", "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after the shell's own banner


def tokens(server: RunningServer, username: str) -> dict[str, str]:
    response = httpx.post(
        f"{server.url}/api/auth/token/", json={"username": username, "password": "demo"}, timeout=30
    )
    response.raise_for_status()
    pair: dict[str, str] = response.json()
    return pair


def rest(server: RunningServer, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT
    )


# --- the stream ---------------------------------------------------------------------------


async def test_hello_replay_caught_up_then_live_frames_with_seqs_as_event_ids(
    demo_server: RunningServer,
) -> None:
    token = login(demo_server, "alice")
    socket = await Socket.open(demo_server, token)
    async with open_stream(demo_server.url, token, params={"after_seq": 0}) as stream:
        # The socket's hello, word for word (the same token: the same expiry).
        assert stream.hello == socket.hello  # type: ignore[attr-defined]
        latest = socket.hello["latest_seq"]
        assert latest > 0
        replayed, caught_up = await stream.replay()
        assert [block.id for block in replayed] == [str(seq) for seq in range(1, latest + 1)]
        assert [block.frame["payload"]["seq"] for block in replayed if block.frame] == list(
            range(1, latest + 1)
        )
        assert caught_up["payload"] == {"after_seq": 0, "through_seq": latest, "replayed": latest}
        # Line breaks, and characters str.splitlines takes for line ends (httpx's
        # iter_lines is such a reader): still one line of the stream.
        message = "Deploy\ndone\r\u2028ok\u2029now\x85."
        await notify(demo_server, "alice", "Deployed", message)
        live = await stream.event()
        assert live.id == str(latest + 1)
        assert len(live.data) == 1
        assert not set(live.data[0]) & set("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        assert live.frame is not None
        assert live.frame["payload"]["message"] == message
        assert live.frame["payload"]["seq"] == latest + 1
        count = await stream.frame()
        assert count == {
            "type": "unread_count",
            "payload": {"unread_count": socket.hello["unread_count"] + 1},
        }
    await socket.close()


async def test_resume_by_last_event_id_or_after_seq_sends_exactly_the_missed_ones(
    demo_server: RunningServer,
) -> None:
    token = login(demo_server, "bob")
    async with open_stream(demo_server.url, token) as first:
        cursor = first.hello["latest_seq"]  # type: ignore[attr-defined]
    for n in range(3):
        await notify(demo_server, "bob", f"missed {n}")
    missed = [(str(cursor + n + 1), f"missed {n}") for n in range(3)]
    ways: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, {"Last-Event-ID": str(cursor)}),
        ({"after_seq": cursor}, {}),
        # EventSource reconnects to its first URL: the header, newer, wins.
        ({"after_seq": 0}, {"Last-Event-ID": str(cursor)}),
    ]
    for params, headers in ways:
        async with open_stream(demo_server.url, token, params=params, headers=headers) as again:
            replayed, caught_up = await again.replay()
            got = [(block.id, block.frame["payload"]["title"]) for block in replayed if block.frame]
            assert got == missed, (params, headers)
            assert caught_up["payload"] == {
                "after_seq": cursor,
                "through_seq": cursor + len(missed),
                "replayed": len(missed),
            }
            # Then live, and nothing twice: the next event is the next seq.
            title = f"live after {len(missed)}"
            await notify(demo_server, "bob", title)
            live = await again.event()
            assert live.frame is not None
            assert live.frame["payload"]["title"] == title
            assert live.id == str(cursor + len(missed) + 1)
        missed.append((live.id, title))


async def test_refusals_are_plain_http_answers_with_the_api_error_body(
    demo_server: RunningServer,
) -> None:
    url = demo_server.url + STREAM
    expired = await shell(
        demo_server,
        "from datetime import timedelta\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "from backend.users.models import User\n"
        "from backend.users.services import session_start\n"
        "token = AccessToken(session_start(user=User.objects.get(username='alice')).access)\n"
        "token.set_exp(lifetime=timedelta(seconds=-5))\n"
        "print(token)",
    )
    token = login(demo_server, "alice")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        for headers, code in [
            ({}, "token_missing"),
            ({"Authorization": "Bearer not-a-token"}, "token_invalid"),
            ({"Authorization": f"Bearer {expired}"}, "token_invalid"),
        ]:
            response = await client.get(url, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["code"] == code
            assert set(response.json()["error"]) == {"code", "message"}
        bearer = {"Authorization": f"Bearer {token}"}
        cursors: list[tuple[dict[str, str | list[str]], dict[str, str]]] = [
            ({"after_seq": "abc"}, {}),
            ({"after_seq": ["1", "2"]}, {}),
            ({}, {"Last-Event-ID": "-1"}),
            ({}, {"Last-Event-ID": str(2**63)}),
        ]
        for params, headers in cursors:
            response = await client.get(url, params=params, headers={**bearer, **headers})
            assert response.status_code == 400, (params, headers, response.text)
            assert response.json()["error"]["code"] == "invalid_cursor"
        # A cursor ahead of the inbox is not refused: as on the socket, an error frame.
        async with open_stream(
            demo_server.url, token, headers={"Last-Event-ID": "1000000"}, client=client
        ) as ahead:
            error = await ahead.frame()
            assert (error["type"], error["payload"]["code"]) == ("error", "cursor_ahead")
        response = await client.get(url, params={"watch": "x"}, headers=bearer)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_project")
        response = await client.post(url, headers=bearer)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, OPTIONS"
        assert response.json()["error"]["code"] == "method_not_allowed"
        response = await client.get(url, headers={**bearer, "Origin": "https://evil.example"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "origin_refused"


async def test_a_disabled_account_is_refused_403_and_its_open_stream_ends_4003(
    demo_server: RunningServer,
) -> None:
    token = login(demo_server, "carol")
    async with open_stream(demo_server.url, token) as stream:
        await shell(
            demo_server,
            "from backend.users.models import User\n"
            "from backend.users.services import user_deactivate\n"
            "user_deactivate(user=User.objects.get(username='carol'))",
        )
        frames = await stream.end()
    assert frames[-1]["type"] == "closed"
    assert frames[-1]["payload"]["code"] == 4003
    assert frames[-1]["payload"]["reason"] == "account_disabled"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(
            demo_server.url + STREAM, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_disabled"


async def test_logging_out_ends_the_stream_with_a_closed_event(
    demo_server: RunningServer,
) -> None:
    pair = tokens(demo_server, "alice")
    async with open_stream(demo_server.url, pair["access"]) as stream:
        async with rest(demo_server, pair["access"]) as api:
            response = await api.post("/api/auth/logout/", json={"refresh": pair["refresh"]})
            assert response.status_code in (200, 204), response.text
        frames = await stream.end()
    assert frames == [
        {
            "type": "closed",
            "payload": {
                "code": 4001,
                "reason": "token_invalid",
                "message": "The access token expired or its session ended: refresh it, "
                "then reconnect with your cursor.",
            },
        }
    ]
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(
            demo_server.url + STREAM, headers={"Authorization": f"Bearer {pair['access']}"}
        )
    assert response.status_code == 401


async def test_an_expired_token_ends_the_stream_4001(server_factory: ServerFactory) -> None:
    server = server_factory(
        demo=True,
        env={"TRAY_ACCESS_TOKEN_MINUTES": "0.04", "TRAY_TOKEN_SWEEP_INTERVAL": "0.2"},
    )
    async with open_stream(server.url, login(server, "alice")) as stream:
        frames = await stream.end(timeout=10)
    assert [frame["type"] for frame in frames] == ["closed"]
    assert frames[0]["payload"]["code"] == 4001


async def test_read_state_changed_on_another_device_arrives(demo_server: RunningServer) -> None:
    token = login(demo_server, "alice")
    async with open_stream(demo_server.url, token, params={"after_seq": 0}) as stream:
        replayed, _ = await stream.replay()
        first = replayed[0].frame
        assert first is not None
        assert first["payload"]["is_read"] is False
        inbox_id = first["payload"]["id"]
        async with rest(demo_server, login(demo_server, "alice")) as other_device:
            response = await other_device.post("/api/inbox/mark-read/", json={"ids": [inbox_id]})
            assert response.status_code == 200, response.text
        assert await stream.frame() == {
            "type": "notification_updated",
            "payload": {"id": inbox_id, "updates": {"is_read": True}},
        }
        unread = stream.hello["unread_count"] - 1  # type: ignore[attr-defined]
        assert await stream.frame() == {"type": "unread_count", "payload": {"unread_count": unread}}


async def test_watched_projects_presence_comes_on_the_stream(demo_server: RunningServer) -> None:
    alice, bob = login(demo_server, "alice"), login(demo_server, "bob")
    mobile, website = 1, 2  # the demo's: bob is in Mobile App only
    async with open_stream(demo_server.url, alice, params={"watch": [mobile, website]}) as stream:
        snapshots = [await stream.frame(), await stream.frame()]
        assert [frame["type"] for frame in snapshots] == ["presence_snapshot"] * 2
        assert [frame["payload"]["project_id"] for frame in snapshots] == [mobile, website]
        members = {m["user"]["username"]: m for m in snapshots[0]["payload"]["members"]}
        assert set(members) == {"alice", "bob", "carol"}
        assert members["bob"]["online"] is False
        socket = await Socket.open(demo_server, bob)
        bob_id = socket.hello["user"]["id"]
        changed = await stream.until("presence_changed", user_id=bob_id)
        assert changed["payload"]["project_id"] == mobile
        assert (changed["payload"]["online"], changed["payload"]["status"]) == (True, "online")
        await socket.close()
        gone = await stream.until("presence_changed", user_id=bob_id)
        assert gone["payload"]["online"] is False
    # Members only, as subscribe_presence: another's project is 404, whether it exists.
    async with httpx.AsyncClient(timeout=WAIT) as client:
        for project_id in (website, 999):
            response = await client.get(
                demo_server.url + STREAM,
                params={"watch": project_id},
                headers={"Authorization": f"Bearer {bob}"},
            )
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"


async def test_a_stream_counts_as_online_and_sets_its_status_over_rest(
    demo_server: RunningServer,
) -> None:
    alice, bob = login(demo_server, "alice"), login(demo_server, "bob")
    watcher = await Socket.open(demo_server, bob)
    await watcher.send("subscribe_presence", {"project_id": 1})
    await watcher.receive_until("presence_snapshot")
    async with rest(demo_server, bob) as bob_api, rest(demo_server, alice) as alice_api:
        async with open_stream(demo_server.url, alice) as stream:
            alice_id = stream.hello["user"]["id"]  # type: ignore[attr-defined]
            online = await watcher.receive_until("presence_changed", user_id=alice_id)
            assert online["payload"]["online"] is True
            snapshot = (await bob_api.get("/api/projects/1/presence/")).json()
            states = {m["user"]["id"]: m for m in snapshot["members"]}
            assert (states[alice_id]["online"], states[alice_id]["status"]) == (True, "online")
            response = await alice_api.post("/api/presence/status/", json={"status": "away"})
            assert (response.status_code, response.json()) == (200, {"status": "away"})
            away = await watcher.receive_until("presence_changed", user_id=alice_id)
            assert away["payload"]["status"] == "away"
            # dnd is the attention settings' do-not-disturb: every device of hers is told.
            until = "2999-01-01T00:00:00Z"
            response = await alice_api.post(
                "/api/presence/status/", json={"status": "dnd", "until": until}
            )
            assert (response.status_code, response.json()) == (200, {"status": "dnd"})
            attention = await stream.until("attention_changed")
            assert attention["payload"]["dnd"] == {"until": until}
            dnd = await watcher.receive_until("presence_changed", user_id=alice_id)
            assert dnd["payload"]["status"] == "dnd"
            response = await alice_api.post("/api/presence/status/", json={"status": "busy"})
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_status"
        offline = await watcher.receive_until("presence_changed", user_id=alice_id)
        assert (offline["payload"]["online"], offline["payload"]["status"]) == (False, "offline")
        # The REST snapshot is members only, like subscribe_presence.
        response = await bob_api.get("/api/projects/2/presence/")
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    await watcher.close()


async def test_heartbeat_comments_keep_an_idle_stream_talking(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(demo=True, env={"TRAY_STREAM_HEARTBEAT": "0.2"})
    async with open_stream(server.url, login(server, "alice")) as stream:
        for _ in range(2):
            block = await stream.block(timeout=5)
            assert block is not None
            assert block.comments == ["ping"]
            assert not block.data


async def test_stopping_the_server_ends_the_stream_with_1012(demo_server: RunningServer) -> None:
    async with open_stream(demo_server.url, login(demo_server, "alice")) as stream:
        started = time.monotonic()
        stopping = asyncio.ensure_future(asyncio.to_thread(demo_server.stop))
        frames = await stream.end()
        assert await stopping == 0
    assert frames[-1]["type"] == "closed"
    assert frames[-1]["payload"]["code"] == 1012
    # Not after uvicorn's graceful timeout (5 s) for open answers.
    assert time.monotonic() - started < 4


async def test_the_web_companions_session_cookie_opens_a_stream_from_its_own_page(
    demo_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=demo_server.url, timeout=WAIT) as browser:
        page = await browser.get("/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match is not None, page.text
        response = await browser.post(
            "/login/",
            data={"csrfmiddlewaretoken": match.group(1), "username": "alice", "password": "demo"},
            headers={"Origin": demo_server.url, "Referer": demo_server.url + "/"},
        )
        assert response.status_code == 302, response.text
        # An EventSource on the server's page: no Origin (a same-origin GET), the
        # browser's Sec-Fetch-Site; or the page's own Origin.
        for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": demo_server.url}):
            async with open_stream(demo_server.url, headers=headers, client=browser) as stream:
                assert stream.hello["user"]["username"] == "alice"  # type: ignore[attr-defined]
        # Anything else does not use the cookie.
        for headers in ({}, {"Sec-Fetch-Site": "cross-site"}):
            response = await browser.get(STREAM, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "token_missing"


# --- through a proxy that knows nothing of WebSockets ---------------------------------------


async def test_through_a_proxy_without_upgrade_headers_the_stream_works_where_the_socket_fails(
    demo_server: RunningServer,
) -> None:
    token = login(demo_server, "alice")
    with nginx_without_upgrade(demo_server.port) as proxy:
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                proxy.ws_url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=WAIT,
            )
        # proxy_buffering off, then nginx's default (X-Accel-Buffering: no must do).
        assert proxy.unbuffered_url is not None
        for base in (proxy.unbuffered_url, proxy.url):
            async with open_stream(base, token) as stream:
                title = f"Through nginx at {base}"
                await notify(demo_server, "alice", title)
                live = await stream.until("notification_created")
                assert live["payload"]["title"] == title
