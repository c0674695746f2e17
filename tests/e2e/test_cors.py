"""A browser page on another origin using the REST API and the socket (CORS).

The server lists one page origin in ``TRAY_ALLOWED_ORIGINS``. In a real chromium, a
page there logs in with ``fetch`` (a cross-origin POST with a JSON body: a preflight,
then the request), opens the socket with the token, and receives a notification sent
from the CLI. A page on an origin not listed gets neither: the browser refuses the
login's answer, and the server refuses the socket with 403 and logs which setting would
allow it. The pages are served by a plain HTTP server on their own ports (an origin is
scheme, host and port).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from playwright.sync_api import Page

from tests.fixtures.services import ServerFactory

_BLANK = b"<!doctype html><title>elsewhere</title><p>A page on another origin."


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_BLANK)))
        self.end_headers()
        self.wfile.write(_BLANK)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def page_origin() -> Iterator[str]:
    """An origin (``http://127.0.0.1:PORT``) serving a blank page, while open."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _log_in_and_listen(server_url: str) -> str:
    """JavaScript run in the page: log in over the API, open the socket with the token,
    keep its frames in ``window.__frames``; resolves to "hello" or why it could not."""
    ws_url = "ws://" + server_url.split("://", 1)[1] + "/ws/notifications/"
    return f"""(async () => {{
        window.__frames = [];
        let access;
        try {{
            const answer = await fetch({json.dumps(server_url + "/api/auth/token/")}, {{
                method: "POST",
                headers: {{"Content-Type": "application/json"}},
                body: JSON.stringify({{username: "alice", password: "demo"}}),
            }});
            access = (await answer.json()).access;
        }} catch (error) {{
            return "login refused: " + error.name;
        }}
        return await new Promise((resolve) => {{
            const socket = new WebSocket({json.dumps(ws_url)} + "?token=" + access);
            socket.onmessage = (event) => {{
                const frame = JSON.parse(event.data);
                window.__frames.push(frame);
                if (frame.type === "hello") resolve("hello");
            }};
            socket.onclose = () => resolve("socket closed");
        }});
    }})()"""


def test_a_listed_origin_logs_in_and_receives_and_another_is_refused(
    server_factory: ServerFactory, browser: Page
) -> None:
    with page_origin() as listed, page_origin() as unlisted:
        server = server_factory(demo=True, env={"TRAY_ALLOWED_ORIGINS": listed})

        browser.goto(listed + "/")
        assert browser.evaluate(_log_in_and_listen(server.url)) == "hello"
        server.cli("notify", "--user", "alice", "--title", "across origins", check=True)
        browser.wait_for_function(
            "() => window.__frames.some((f) => f.type === 'notification_created'"
            " && f.payload.title === 'across origins')"
        )

        browser.goto(unlisted + "/")
        assert browser.evaluate(_log_in_and_listen(server.url)) == "login refused: TypeError"
        # With a token from elsewhere, the socket from that origin is still refused.
        token = server.access_token("alice")
        ws_url = "ws://" + server.url.split("://", 1)[1] + "/ws/notifications/?token=" + token
        closed = browser.evaluate(
            f"""new Promise((resolve) => {{
                const socket = new WebSocket({json.dumps(ws_url)});
                socket.onmessage = () => resolve("opened");
                socket.onclose = () => resolve("closed");
            }})"""
        )
        assert closed == "closed"
        assert server.wait_for_output(
            f"refused a WebSocket from origin {unlisted}: not this server; "
            "list it in TRAY_ALLOWED_ORIGINS to allow it"
        )


def test_the_answers_carry_cors_headers_for_listed_origins_only(
    server_factory: ServerFactory,
) -> None:
    listed, unlisted = "https://intranet.example.com", "https://evil.example.com"
    server = server_factory(demo=True, env={"TRAY_ALLOWED_ORIGINS": listed})
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }

    allowed = httpx.options(
        f"{server.url}/api/notifications/", headers={"Origin": listed, **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == listed
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"]
    # Bearer tokens, not cookies, cross origins: credentials are never allowed.
    assert "Access-Control-Allow-Credentials" not in allowed.headers

    refused = httpx.options(
        f"{server.url}/api/notifications/", headers={"Origin": unlisted, **preflight}
    )
    assert "Access-Control-Allow-Origin" not in refused.headers

    # A publish from a listed page (past the fast path, whose answers carry no CORS
    # headers) answers with them, and Retry-After is readable by the page.
    token = server.access_token("admin")
    published = httpx.post(
        f"{server.url}/api/notifications/",
        headers={"Origin": listed, "Authorization": f"Bearer {token}"},
        json={"audience": {"usernames": ["alice"]}, "title": "from a page"},
    )
    assert published.status_code == 201
    assert published.headers["Access-Control-Allow-Origin"] == listed
    assert published.headers["Access-Control-Expose-Headers"] == "Retry-After"
    # The same publish without an Origin (a desktop or a script) carries none, before
    # and after the fast path learned its headers from the full stack.
    for _ in range(2):
        plain = httpx.post(
            f"{server.url}/api/notifications/",
            headers={"Authorization": f"Bearer {token}"},
            json={"audience": {"usernames": ["alice"]}, "title": "from a script"},
        )
        assert plain.status_code == 201
        assert "Access-Control-Allow-Origin" not in plain.headers

    # Outside the API (the admin, the health check) no page of another origin is let in.
    health = httpx.get(f"{server.url}/healthz", headers={"Origin": listed})
    assert "Access-Control-Allow-Origin" not in health.headers
