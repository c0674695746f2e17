"""Who is connected now, for real: two server processes in scale mode (one data
directory, one redis-server), a desktop-like WebSocket on the first, an HTTP stream and
the web companion's socket (its session cookie) on the second. Staff sees all three
from either process, over REST and on the admin's "Connected now" page; anyone else
gets 403; a connection that closes drops out of the list. While Redis is away the list
is 503 with Retry-After; once it is back, empty, every process puts its connections'
details back with their presence."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import WAIT, login
from tests.e2e.test_redis_faults import StoppableRedis, private_redis  # noqa: F401 (a fixture)
from tests.fixtures.services import RunningServer, ServerFactory

pytestmark = [pytest.mark.redis, pytest.mark.asyncio, pytest.mark.timeout(180)]

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
DEADLINE = 20.0  # seconds for a connection to show up in, or drop out of, the list


@pytest.fixture
def scale_mode(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> tuple[RunningServer, RunningServer]:
    """Two processes of one deployment: a shared data directory, a shared Redis."""
    data = tmp_path / "shared"
    first = server_factory(demo=True, data_dir=data, redis_url=redis_url)
    second = server_factory(data_dir=data, redis_url=redis_url)
    return first, second


async def until(
    check: Callable[[], Awaitable[Any]], *, what: str, timeout: float = DEADLINE
) -> Any:
    """Poll ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def desktop_socket(server: RunningServer, token: str) -> ClientConnection:
    """A socket as the desktop app opens it (its User-Agent is all it says of itself),
    once the server said hello."""
    socket = await websockets.connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        user_agent_header="tray-notifier/9.9.9",
        open_timeout=WAIT,
    )
    assert '"hello"' in str(await asyncio.wait_for(socket.recv(), WAIT))
    return socket


def web_login(server: RunningServer, username: str) -> httpx.Client:
    """A browser-like client logged in to the web companion (its session cookie)."""
    browser = httpx.Client(base_url=server.url, timeout=30)
    browser.get("/")
    answer = browser.post(
        "/login/",
        data={
            "username": username,
            "password": "demo",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
    )
    assert answer.status_code == 302, answer.text
    return browser


def admin_login(server: RunningServer, username: str) -> httpx.Client:
    """A client logged in to the admin through its login form (CSRF and all)."""
    browser = httpx.Client(base_url=server.url, timeout=30)
    assert browser.get("/admin/login/").status_code == 200
    answer = browser.post(
        "/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": "demo",
            "next": "/admin/",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
    )
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/admin/"
    return browser


async def test_staff_see_who_is_connected_on_every_process(
    scale_mode: tuple[RunningServer, RunningServer],
) -> None:
    a, b = scale_mode
    admin, alice, bob = login(a, "admin"), login(a, "alice"), login(b, "bob")
    opened_after = time.time()
    async with httpx.AsyncClient(timeout=30) as rest:

        async def listing(server: RunningServer, token: str = admin, query: str = "") -> Any:
            return await rest.get(
                f"{server.url}/api/connections/{query}",
                headers={"Authorization": f"Bearer {token}"},
            )

        # Nobody yet (the staff's own REST calls are not connections).
        for server in (a, b):
            empty = await listing(server)
            assert empty.status_code == 200, empty.text
            assert empty.json() == {"count": 0, "users": 0, "connections": []}

        # The desktop app's socket on A (its User-Agent is all it says of itself).
        desktop = await desktop_socket(a, alice)
        # An HTTP stream on B (the app's fallback where WebSockets are blocked).
        stream_request = rest.build_request(
            "GET",
            f"{b.url}/api/stream/",
            headers={"Authorization": f"Bearer {bob}", "User-Agent": "tray-notifier/9.9.8"},
        )
        stream = await rest.send(stream_request, stream=True)
        assert stream.status_code == 200
        # The web companion's socket on B: a browser on carol's session cookie.
        browser = web_login(b, "carol")
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
        web = await websockets.connect(
            b.ws_url,
            additional_headers={"Cookie": cookie, "Origin": b.url},
            user_agent_header=CHROME,
            open_timeout=WAIT,
        )
        assert '"hello"' in str(await asyncio.wait_for(web.recv(), WAIT))
        try:

            async def all_three(server: RunningServer) -> Any:
                body = (await listing(server)).json()
                # Presence first, then the info: a socket may be listed an instant
                # before its client is known.
                known = all(row["transport"] for row in body["connections"])
                return body if body["count"] == 3 and known else None

            seen = [await until(partial(all_three, server), what="3") for server in (a, b)]
            assert seen[0] == seen[1], "both processes list the same connections"
            body = seen[0]
            assert body["users"] == 3
            rows = {row["user"]["username"]: row for row in body["connections"]}
            assert set(rows) == {"alice", "bob", "carol"}
            assert rows["alice"]["client"] == {
                "kind": "desktop",
                "version": "9.9.9",
                "user_agent": "tray-notifier/9.9.9",
            }
            assert rows["alice"]["transport"] == "websocket"
            assert rows["bob"]["client"]["kind"] == "desktop"
            assert rows["bob"]["client"]["version"] == "9.9.8"
            assert rows["bob"]["transport"] == "http-stream"
            assert rows["carol"]["client"] == {
                "kind": "web",
                "version": "Chrome 131",
                "user_agent": CHROME,
            }
            assert rows["carol"]["transport"] == "websocket"
            assert rows["carol"]["user"]["first_name"] == "Carol"
            # A's socket on one process, B's two on the other.
            assert rows["bob"]["process"] == rows["carol"]["process"] != rows["alice"]["process"]
            since = [
                datetime.fromisoformat(row["connected_at"]).timestamp()
                for row in body["connections"]
            ]
            assert since == sorted(since)
            assert all(opened_after - 1 <= moment <= time.time() for moment in since)
            assert [row["user"]["username"] for row in body["connections"]] == [
                "alice",
                "bob",
                "carol",
            ]

            # One user's, and a bad filter.
            carols = (await listing(a, query=f"?user={rows['carol']['user']['id']}")).json()
            assert [row["user"]["username"] for row in carols["connections"]] == ["carol"]
            bad = await listing(b, query="?user=carol")
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "invalid_user"
            # Not staff: 403, on either process; nobody: 401.
            for server in (a, b):
                refused = await listing(server, token=alice)
                assert refused.status_code == 403, refused.text
                nobody = await rest.get(f"{server.url}/api/connections/")
                assert nobody.status_code == 401

            # The admin's page on B, logged in through its form: the same rows.
            staff = admin_login(b, "admin")
            try:
                index = staff.get("/admin/")
                assert 'href="/admin/connected/"' in index.text
                page = staff.get("/admin/connected/")
                assert page.status_code == 200
                assert "3 connections of 3 users." in page.text
                shown = {
                    cells[0].split()[0]: cells
                    for cells in (
                        [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
                        for row in re.findall(r'<tr class="connection">(.*?)</tr>', page.text, re.S)
                    )
                }
                assert set(shown) == {"alice", "bob", "carol"}
                for name, client, transport in (
                    ("alice", "desktop 9.9.9", "websocket"),
                    ("bob", "desktop 9.9.8", "http-stream"),
                    ("carol", "web Chrome 131", "websocket"),
                ):
                    _user, kind, when, via, process = shown[name]
                    assert (kind, via, process) == (client, transport, rows[name]["process"])
                    assert when.endswith("ago)"), when
            finally:
                staff.close()
            # Someone not staff cannot log in to the admin, nor see the page.
            assert admin_login_refused(b, "alice")

            # The desktop closes: gone from the list on both processes.
            await desktop.close()

            async def without_alice(server: RunningServer) -> Any:
                body = (await listing(server)).json()
                names = {row["user"]["username"] for row in body["connections"]}
                return body if names == {"bob", "carol"} else None

            for server in (b, a):
                left = await until(partial(without_alice, server), what="alice gone")
                assert left["count"] == 2
        finally:
            await desktop.close()
            await web.close()
            await stream.aclose()
            browser.close()

        async def nobody_left() -> Any:
            body = (await listing(a)).json()
            return body if body["count"] == 0 else None

        await until(nobody_left, what="every connection gone")


def _text(cell: str) -> str:
    """A table cell's text, tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())


def admin_login_refused(server: RunningServer, username: str) -> bool:
    """A user who is not staff cannot log in to the admin, nor see the page."""
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        browser.get("/admin/login/")
        answer = browser.post(
            "/admin/login/?next=/admin/connected/",
            data={
                "username": username,
                "password": "demo",
                "next": "/admin/connected/",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        # The form again (200), not a redirect into the admin.
        page = browser.get("/admin/connected/")
        return (
            answer.status_code == 200
            and page.status_code == 302
            and page.headers["location"].startswith("/admin/login/")
        )


async def test_redis_away_is_a_503_and_an_empty_restart_loses_no_details(
    server_factory: ServerFactory,
    tmp_path: Path,
    private_redis: StoppableRedis,  # noqa: F811 (the imported fixture)
) -> None:
    ttl = 3.0  # each process re-asserts its sockets every ttl/3 (the default ttl is 30 s)
    data, env = tmp_path / "shared", {"TRAY_PRESENCE_TTL": str(ttl)}
    a = server_factory(demo=True, data_dir=data, redis_url=private_redis.url, env=env)
    b = server_factory(data_dir=data, redis_url=private_redis.url, env=env)
    admin = login(a, "admin")
    desktop = await desktop_socket(a, login(a, "alice"))
    staff = admin_login(b, "admin")
    async with httpx.AsyncClient(timeout=30) as rest:
        stream = await rest.send(
            rest.build_request(
                "GET",
                f"{b.url}/api/stream/",
                headers={"Authorization": f"Bearer {login(b, 'bob')}"},
            ),
            stream=True,
        )
        assert stream.status_code == 200

        async def both_known(server: RunningServer) -> Any:
            answer = await rest.get(
                f"{server.url}/api/connections/", headers={"Authorization": f"Bearer {admin}"}
            )
            if answer.status_code != 200:
                return None
            rows = {row["user"]["username"]: row for row in answer.json()["connections"]}
            if set(rows) != {"alice", "bob"} or not all(r["transport"] for r in rows.values()):
                return None
            return rows

        async def unavailable(server: RunningServer) -> Any:
            answer = await rest.get(
                f"{server.url}/api/connections/", headers={"Authorization": f"Bearer {admin}"}
            )
            return answer if answer.status_code == 503 else None

        try:
            before = await until(partial(both_known, a), what="both listed")
            private_redis.stop()
            for server in (a, b):
                answer = await until(partial(unavailable, server), what="a 503")
                assert answer.headers["retry-after"] == "5"
                assert answer.json()["error"]["code"] == "connections_unavailable"
            page = staff.get("/admin/connected/")
            assert page.status_code == 503
            assert page.headers["retry-after"] == "5"
            assert "cannot reach Redis" in page.text

            private_redis.start()  # empty: no presence, no details
            for server in (b, a):
                after = await until(
                    partial(both_known, server), what="details back", timeout=ttl * 4
                )
                for name in ("alice", "bob"):
                    assert after[name]["client"] == before[name]["client"]
                    assert after[name]["connected_at"] == before[name]["connected_at"]
                    assert after[name]["transport"] == before[name]["transport"]
            assert after["alice"]["client"]["version"] == "9.9.9"
            assert after["bob"]["transport"] == "http-stream"
            assert "2 connections of 2 users." in staff.get("/admin/connected/").text
        finally:
            staff.close()
            await desktop.close()
            await stream.aclose()
