"""Helpers for end-to-end tests: real server subprocesses (tests/fixtures/services.py)
driven by real clients: httpx for REST, the ``websockets`` client for the socket, and a
headless chromium driven by Playwright for web pages (the ``browser`` fixture,
tests/e2e/browser.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from playwright.sync_api import Page
from websockets.asyncio.client import ClientConnection

from tests.e2e.browser import chromium_binary, launch
from tests.e2e.desktop import TrayDesktop
from tests.fixtures.services import RunningServer, _missing

WAIT = 10.0  # seconds to wait for an expected frame before failing


def login(server: RunningServer, username: str, password: str = "demo") -> str:
    """An access token for a user of ``server`` (demo users share the password "demo")."""
    response = httpx.post(
        f"{server.url}/api/auth/token/",
        json={"username": username, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access"]
    return token


class Socket:
    """A real WebSocket client with frame helpers; frames are decoded dicts."""

    def __init__(self, connection: ClientConnection, hello: dict[str, Any]) -> None:
        self.connection = connection
        self.hello = hello

    @classmethod
    async def open(cls, server: RunningServer, token: str) -> Socket:
        connection = await websockets.connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=WAIT,
        )
        hello = json.loads(await asyncio.wait_for(connection.recv(), WAIT))
        assert hello["type"] == "hello", hello
        return cls(connection, hello["payload"])

    async def send(self, kind: str, payload: dict[str, Any] | None = None, **extra: Any) -> None:
        await self.connection.send(json.dumps({"type": kind, "payload": payload or {}, **extra}))

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        return frame

    async def receive_until(self, kind: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """Skip frames until one of ``kind`` whose payload has the ``match`` items."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.receive(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind and all(
                frame["payload"].get(k) == v for k, v in match.items()
            ):
                return frame

    async def close_code(self, timeout: float = WAIT) -> int | None:
        """Wait for the server to close the socket; its close code."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def close(self) -> None:
        await self.connection.close()


def doorbell_channel(redis_url: str, timeout: float = WAIT) -> str:
    """The one doorbell channel servers subscribe to on ``redis_url`` (its name holds the
    deployment's namespace, backend/notifications/namespace.py); waits for a subscriber."""
    deadline = time.monotonic() + timeout
    with redis.Redis.from_url(redis_url) as admin:
        while True:
            channels: list[str] = [
                name.decode() for name in admin.pubsub_channels("tray-notifier:*doorbell")
            ]
            if channels:
                assert len(channels) == 1, channels
                return channels[0]
            assert time.monotonic() < deadline, "no server subscribed to a doorbell channel"
            time.sleep(0.05)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    """A blank Playwright page in a private headless chromium (tests/e2e/browser.py);
    skipped when Debian's ``chromium`` is missing, except under CI, where that fails."""
    binary = chromium_binary()
    if binary is None:
        _missing("chromium")
    with launch(tmp_path / "browser", binary=binary) as page:
        yield page


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrayDesktop]:
    """A tray desktop for the module (tests/e2e/desktop.py): Xvfb, a private bus,
    gnome-keyring, xfce4-notifyd and xfce4-panel, each waited for up to 20 s."""
    with TrayDesktop(tmp_path_factory.mktemp("desktop"), timeout=20.0) as started:
        started.start()
        yield started
