"""A real Prometheus scraping two server processes in scale mode (issue 19).

Debian's ``prometheus`` (installed by scripts/test) runs on a free port with a
configuration written here: one job scraping both processes' ``/metrics`` with the
bearer token every second, and one job without the token. While it scrapes, the test
opens sockets and a stream on both processes and publishes; then it asks Prometheus
(its HTTP API, as Grafana would) and the series must say what the test did. The job
without the token must be down with the 401 the endpoint answers. The shipped alert
rules (resources/deploy/tray-notifier-alerts.yml) are loaded and evaluate, and every
query of the shipped Grafana dashboard (resources/deploy/grafana-dashboard.json) runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import WAIT, Socket, login
from tests.e2e.test_deploy import _require
from tests.fixtures.services import RunningServer, ServerFactory, free_port

TOKEN = "prometheus-e2e-token-0123456789-abcdefghij"
DEPLOY = Path(__file__).resolve().parents[2] / "resources" / "deploy"
ALERTS = DEPLOY / "tray-notifier-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
SCRAPE_S = 1


class Prometheus:
    """A running prometheus with its HTTP API at ``url``."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expression: str) -> float | None:
        """The single value of an instant query (None when it has no series yet)."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        answer.raise_for_status()
        active: list[dict[str, Any]] = answer.json()["data"]["activeTargets"]
        return active

    def until(self, condition: Callable[[], bool], *, what: str, timeout: float = 60) -> None:
        """Poll Prometheus until ``condition`` holds (it scrapes every SCRAPE_S)."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, self.log.read_text()
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never showed {what}:\n{self.targets()}")
            time.sleep(0.2)


def _config(targets: list[str], rules: Path) -> str:
    jobs = [
        {
            "job_name": "tray-notifier",
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "authorization": {"type": "Bearer", "credentials": TOKEN},
            "static_configs": [{"targets": targets}],
        },
        {
            "job_name": "no-token",
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "static_configs": [{"targets": targets[:1]}],
        },
    ]
    # YAML is a superset of JSON: no YAML writer needed.
    return json.dumps(
        {
            "global": {
                "scrape_interval": f"{SCRAPE_S}s",
                "evaluation_interval": f"{SCRAPE_S}s",
            },
            "rule_files": [str(rules)],
            "scrape_configs": jobs,
        }
    )


def dashboard_queries() -> list[str]:
    """Every query of the shipped dashboard, with Grafana's ``$__rate_interval`` filled
    in as Grafana would for a 1 s scrape."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"].replace("$__rate_interval", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


@pytest.fixture
def scale_mode(
    server_factory: ServerFactory, redis_url: str, tmp_path: Path
) -> tuple[RunningServer, RunningServer]:
    data = tmp_path / "shared"
    env = {"TRAY_METRICS_TOKEN": TOKEN}
    first = server_factory(demo=True, data_dir=data, redis_url=redis_url, env=env)
    second = server_factory(data_dir=data, redis_url=redis_url, env=env)
    return first, second


@pytest.fixture
def prometheus(
    scale_mode: tuple[RunningServer, RunningServer], tmp_path: Path
) -> Iterator[Prometheus]:
    binary = _require("prometheus", "prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(_config([f"127.0.0.1:{server.port}" for server in scale_mode], ALERTS))
    checked = subprocess.run(
        [_require("promtool", "prometheus"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = tmp_path / "prometheus.log"
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if process.poll() is None:
            break
        assert "address already in use" in log.read_text(), log.read_text()
    else:
        raise RuntimeError("prometheus lost its port three times")
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _open_stream(server: RunningServer, token: str, client: httpx.AsyncClient) -> Any:
    request = client.build_request(
        "GET", f"{server.url}/api/stream/", headers={"Authorization": f"Bearer {token}"}
    )
    response = await client.send(request, stream=True)
    assert response.status_code == 200
    return response


@pytest.mark.redis
@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_prometheus_scrapes_both_processes_and_the_series_match_what_was_done(
    scale_mode: tuple[RunningServer, RunningServer], prometheus: Prometheus
) -> None:
    first, second = scale_mode
    job = 'job="tray-notifier"'
    # Both targets up; the tokenless scrape is refused (the endpoint's 401).
    prometheus.until(lambda: prometheus.value(f"sum(up{{{job}}})") == 2, what="both processes up")
    prometheus.until(
        lambda: any(
            t["labels"]["job"] == "no-token" and "401" in t.get("lastError", "")
            for t in prometheus.targets()
        ),
        what="the scrape without the token refused with 401",
    )
    assert prometheus.value('up{job="no-token"}') == 0

    publishes_before = prometheus.value(f"sum(tray_publish_requests_total{{{job}}})") or 0.0
    deliveries_before = prometheus.value(f"sum(tray_deliveries_total{{{job}}})") or 0.0

    users = ["alice", "bob", "carol"]
    tokens = {user: await asyncio.to_thread(login, first, user) for user in users}
    sockets = [
        await Socket.open(first, tokens["alice"]),
        await Socket.open(second, tokens["bob"]),
        await Socket.open(second, tokens["carol"]),
    ]
    async with httpx.AsyncClient(timeout=WAIT) as client:
        stream = await _open_stream(first, tokens["bob"], client)
        try:
            # Open now: 3 sockets over the two processes, 1 stream.
            prometheus.until(
                lambda: (
                    prometheus.value(f'sum(tray_open_connections{{{job},transport="websocket"}})')
                    == 3
                    and prometheus.value(f'sum(tray_open_connections{{{job},transport="sse"}})')
                    == 1
                ),
                what="3 sockets and 1 stream open",
            )
            per_process = {
                series["metric"]["instance"]: float(series["value"][1])
                for series in prometheus.query(
                    f'tray_open_connections{{{job},transport="websocket"}}'
                )
            }
            assert per_process == {
                f"127.0.0.1:{first.port}": 1.0,
                f"127.0.0.1:{second.port}": 2.0,
            }

            # A short load: 10 publishes to all three, half through each process.
            admin = await asyncio.to_thread(login, first, "admin")
            published = 10
            for n in range(published):
                target = first if n % 2 else second
                answer = await client.post(
                    f"{target.url}/api/notifications/",
                    json={"audience": {"usernames": users}, "title": f"load {n}"},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert answer.status_code == 201, answer.text
            for socket in sockets:
                await socket.receive_until("notification_created", title=f"load {published - 1}")
            # Every notification to each of the 3 sockets and to bob's stream: 4 each.
            expected_deliveries = deliveries_before + published * 4
            prometheus.until(
                lambda: (
                    prometheus.value(f"sum(tray_deliveries_total{{{job}}})") == expected_deliveries
                ),
                what=f"{expected_deliveries:.0f} deliveries",
            )
            prometheus.until(
                lambda: (
                    prometheus.value(f'sum(tray_publish_requests_total{{{job},status="201"}})')
                    == publishes_before + published
                ),
                what=f"{published} publishes",
            )
            # The latency histogram saw them all, and a quantile can be asked of it.
            count = prometheus.value(f"sum(tray_publish_duration_seconds_count{{{job}}})")
            assert count is not None
            assert count >= published
            p99 = prometheus.value(
                "histogram_quantile(0.99, sum by (le) "
                f"(tray_publish_duration_seconds_bucket{{{job}}}))"
            )
            assert p99 is not None
            assert 0 < p99 < 10
            # Process memory is there for each process.
            assert len(prometheus.query(f"process_resident_memory_bytes{{{job}}}")) == 2
            # Every panel of the dashboard runs, and the ones about this load have data.
            answered = {query: prometheus.query(query) for query in dashboard_queries()}
            assert answered[f"sum(rate(tray_deliveries_total{{{job}}}[1m]))"], (
                "the deliveries panel is empty"
            )
            assert answered[f"sum by (transport) (tray_open_connections{{{job}}})"]
        finally:
            await stream.aclose()
            for socket in sockets:
                await socket.close()
    prometheus.until(
        lambda: prometheus.value(f"sum(tray_open_connections{{{job}}})") == 0,
        what="every connection closed again",
    )


def test_the_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        [_require("promtool", "prometheus"), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_the_alert_rules_load_and_evaluate(prometheus: Prometheus) -> None:
    def groups() -> list[dict[str, Any]]:
        answer = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["data"]["groups"]
        return found

    prometheus.until(
        lambda: (
            bool(groups())
            and all(
                rule.get("lastEvaluation", "").startswith("20") for rule in groups()[0]["rules"]
            )
        ),
        what="the alert rules evaluated",
    )
    (group,) = groups()
    assert {rule["name"] for rule in group["rules"]} == {
        "TrayNotifierDown",
        "TrayNotifierPublishErrors",
        "TrayNotifierPublishSlow",
        "TrayNotifierClientsTooFarBehind",
        "TrayNotifierDoorbellLag",
        "TrayNotifierNoConnections",
    }
    assert {rule["health"] for rule in group["rules"]} == {"ok"}, group
    # Both processes are up: the "down" alert is not firing.
    down = next(rule for rule in group["rules"] if rule["name"] == "TrayNotifierDown")
    prometheus.until(lambda: prometheus.value('sum(up{job="tray-notifier"})') == 2, what="up")
    assert down["state"] == "inactive"
