"""One client address for everything keyed by client (backend/client_address.py), against
the real server: X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

import httpx

from tests.fixtures.services import ServerFactory

LOGIN = "/api/auth/token/"


def _login(url: str, password: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = httpx.post(
        url + LOGIN,
        json={"username": "alice", "password": password},
        headers=headers,
        timeout=30,
    )
    return response.status_code


def test_a_forged_forwarded_for_does_not_buy_fresh_login_attempts(
    server_factory: ServerFactory,
) -> None:
    # Reached directly: loopback is not a trusted proxy here, so the header is the client's
    # own words and the client is the connection's address.
    server = server_factory(
        demo=True,
        env={"TRAY_LOGIN_RATE": "3/min", "TRAY_FORWARDED_ALLOW_IPS": "192.0.2.1"},
    )
    statuses = [_login(server.url, "wrong", f"198.51.100.{n}") for n in range(1, 4)]
    assert statuses == [401, 401, 401]
    assert _login(server.url, "demo", "198.51.100.99") == 429
    assert _login(server.url, "demo") == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    server_factory: ServerFactory,
) -> None:
    # The default trusts loopback, where the reverse proxy runs: its X-Forwarded-For names
    # the real client, so one guesser is limited without locking out everyone else.
    server = server_factory(demo=True, env={"TRAY_LOGIN_RATE": "3/min"})
    guesser, colleague = "203.0.113.7", "203.0.113.8"
    assert [_login(server.url, "wrong", guesser) for _ in range(3)] == [401, 401, 401]
    assert _login(server.url, "demo", guesser) == 429
    assert _login(server.url, "demo", colleague) == 200
