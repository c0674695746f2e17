"""Rate-limit counters (backend/throttling.py): one budget per deployment in scale mode,
and still a budget when the shared cache cannot be reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from backend import throttling
from backend.users.throttling import LoginRateThrottle
from tests.fixtures.services import ServerFactory, free_port


def _login(url: str, password: str) -> int:
    response = httpx.post(
        url + "/api/auth/token/", json={"username": "alice", "password": password}, timeout=30
    )
    return response.status_code


@pytest.mark.redis
def test_every_process_of_a_deployment_spends_one_login_budget(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    env = {"TRAY_LOGIN_RATE": "3/min"}
    first = server_factory(demo=True, data_dir=data, redis_url=redis_url, env=env)
    second = server_factory(data_dir=data, redis_url=redis_url, env=env)
    assert [_login(first.url, "wrong") for _ in range(3)] == [401, 401, 401]
    # Another process of the same deployment: the guesser gains nothing by moving over.
    assert _login(second.url, "demo") == 429


@pytest.mark.django_db
def test_logins_keep_a_budget_when_the_shared_cache_is_down(
    settings: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # Nothing listens here: every cache call fails.
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "2/min"})
    make_user("alice", password="s3cret-pass")
    client = APIClient()

    def login(password: str) -> int:
        body = {"username": "alice", "password": password}
        return int(client.post("/api/auth/token/", body, format="json").status_code)

    try:
        assert [login("wrong"), login("wrong")] == [401, 401]
        assert login("s3cret-pass") == 429
        with pytest.raises(Exception):  # noqa: B017, PT011 (redis-py's own error types)
            cache.get("anything")
    finally:
        throttling._local.clear()
