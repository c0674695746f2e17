"""Schema-driven fuzzing of the REST API (schemathesis) against the real server subprocess.

Every operation of the server's own OpenAPI schema (``GET /api/schema/``) is called with
generated requests, both ones that fit the schema and ones that break it, as five
identities: anonymous, alice, bob, the staff admin and an integration API key. What must
hold for every single request:

- no 5xx: bad input gets a 4xx with the error shape, never a crash;
- no leak: before fuzzing, alice and carol each get a notification and own a project
  whose titles carry a marker unique to them; no response to anyone but the owner
  contains that marker (bob, admin and the key own neither; in the demo bob may not
  create projects at all, so his requests also walk the refusals).

``TRAY_TEST_SCALE`` scales the examples per operation and mode (default 3, so the CI run
stays well under two minutes; 5 gives 15).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from tests.fixtures.services import RunningServer, ServerFactory

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
EXAMPLES = max(1, round(3 * SCALE))
TIMEOUT = 20.0
IDENTITIES = ("anonymous", "alice", "bob", "admin", "api_key")
# Who may see whose marker: the owner only.
OWNERS = ("alice", "carol")


@dataclass
class Tally:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _login(server: RunningServer, username: str) -> str:
    response = httpx.post(
        f"{server.url}/api/auth/token/",
        json={"username": username, "password": "demo"},
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    access: str = response.json()["access"]
    return access


def _seed_markers(server: RunningServer, tokens: dict[str, str]) -> dict[str, str]:
    """Give alice and carol one notification and one project each, titled with a marker."""
    markers = {owner: f"{owner.upper()}-SECRET-{uuid.uuid4().hex}" for owner in OWNERS}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for owner, marker in markers.items():
        published = httpx.post(
            f"{server.url}/api/notifications/",
            json={"audience": {"usernames": [owner]}, "title": marker, "message": marker},
            headers=admin,
            timeout=TIMEOUT,
        )
        assert published.status_code == 201, published.text
        created = httpx.post(
            f"{server.url}/api/projects/",
            json={"title": marker, "description": marker},
            headers={"Authorization": f"Bearer {tokens[owner]}"},
            timeout=TIMEOUT,
        )
        assert created.status_code == 201, created.text
        # The check has teeth only if the owner really can read the marker.
        inbox = httpx.get(
            f"{server.url}/api/inbox/",
            headers={"Authorization": f"Bearer {tokens[owner]}"},
            timeout=TIMEOUT,
        )
        assert marker in inbox.text
    return markers


def _headers(identity: str, tokens: dict[str, str], api_key: str) -> dict[str, str]:
    if identity == "anonymous":
        return {}
    if identity == "api_key":
        return {"Authorization": f"Api-Key {api_key}"}
    return {"Authorization": f"Bearer {tokens[identity]}"}


@pytest.fixture
def fuzz_server(server_factory: ServerFactory) -> RunningServer:
    # Rates high enough that generated requests reach the code behind the throttles.
    rates = {
        "TRAY_LOGIN_RATE": "100000/min",
        "TRAY_PROJECT_CREATE_RATE": "100000/min",
        "TRAY_MEMBER_ADD_RATE": "100000/min",
    }
    return server_factory(demo=True, env=rates)


# ~30 s at scale 1; the full run's time grows with the examples.
@pytest.mark.timeout(120 + 90 * SCALE)
def test_no_operation_errors_or_leaks_for_any_identity(fuzz_server: RunningServer) -> None:
    server = fuzz_server
    created = server.cli("create-api-key", "fuzz", check=True)
    api_key = created.stdout.strip().split()[-1]
    tokens = {name: _login(server, name) for name in ("alice", "bob", "carol", "admin")}
    markers = _seed_markers(server, tokens)

    schema = schemathesis.openapi.from_url(f"{server.url}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 30, "the schema lost operations"
    tally = Tally()
    session = requests.Session()

    def run(
        strategy: st.SearchStrategy[Case[Any]],
        headers: dict[str, str],
        forbidden: list[str],
        identity: str,
    ) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case: Case[Any]) -> None:
            response = case.call(
                base_url=server.url, session=session, headers=headers, timeout=TIMEOUT
            )
            tally.requests += 1
            tally.by_status[response.status_code] += 1
            where = f"{identity} {case.method} {case.formatted_path}"
            if response.status_code >= 500:
                tally.failures.append(f"{where}: {response.status_code}")
            for marker in forbidden:
                if marker in response.text:
                    tally.failures.append(f"{where}: leaked {marker[:14]}")

        fuzz()

    for identity in IDENTITIES:
        headers = _headers(identity, tokens, api_key)
        forbidden = [marker for owner, marker in markers.items() if owner != identity]
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run(operation.as_strategy(generation_mode=mode), headers, forbidden, identity)
    session.close()

    print(f"\nREST fuzz: {tally.requests} requests, status counts {dict(tally.by_status)}")
    assert server.is_running(), server.output()[-2000:]
    assert tally.failures == []
    assert "Traceback" not in server.output()
    # Every identity reached every operation in both modes.
    assert tally.requests >= len(IDENTITIES) * len(operations) * 2
