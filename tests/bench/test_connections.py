"""B1 and B2's results (bench/connections.py) for ours with metrics on beside off."""

from __future__ import annotations

from bench.common import METRICS_TOKEN, OURS_WITH_METRICS, ours_env, server_names
from bench.connections import (
    METRICS_OFF,
    OPTIONAL_SERVERS,
    SERVERS,
    Profile,
    Session,
    summarize,
)

PROFILE = Profile(sizes=(10,), rounds=3, idle_window=1.0, connectors=1, round_budget=1.0)


def _session(server: str, latency: float) -> Session:
    return Session(
        server=server,
        connections=10,
        rss_before_kib=1000,
        rss_idle_kib=1200,
        empty_window=0.5,
        idle_window=1.0,
        cpu_idle_seconds=0.02,
        latency_seconds={"everyone": [latency] * 3, "project": [latency] * 3},
    )


def test_metrics_on_stands_beside_metrics_off_in_its_own_rows() -> None:
    rows = summarize([_session("ours", 0.010), _session(OURS_WITH_METRICS, 0.0102)], PROFILE)
    on = [row for row in rows if "metrics on" in row["metric"]]
    assert {row["id"] for row in on} == {"B1", "B2"}
    assert len([row for row in on if row["id"] == "B2"]) == 4  # 2 audiences x p50, p99
    for row in on:
        assert set(row["peers"]) == {METRICS_OFF}
        assert row["peers"][METRICS_OFF] is not None
    (everyone,) = [r for r in on if "to everyone" in r["metric"] and "p50," in r["metric"]]
    assert (everyone["ours"], everyone["peers"][METRICS_OFF]) == (10.2, 10.0)
    assert everyone["met"]  # 1.02x: within the 5 % budget
    # The default servers' rows are as before: no metrics rows, the peers beside ours.
    plain = summarize([_session("ours", 0.010)], PROFILE)
    assert not [row for row in plain if "metrics" in row["metric"]]
    assert all(set(row["peers"]) == {"P0", "P1", "P1-redis"} for row in plain)


def test_only_the_metrics_variant_gets_the_token() -> None:
    env = {"TRAY_DATA_DIR": "/tmp/x"}
    assert ours_env("ours", env) == env
    assert ours_env(OURS_WITH_METRICS, env) == {**env, "TRAY_METRICS_TOKEN": METRICS_TOKEN}
    assert env == {"TRAY_DATA_DIR": "/tmp/x"}  # not changed in place
    known = SERVERS + OPTIONAL_SERVERS
    assert server_names(" ours, ours+metrics ", known) == ["ours", OURS_WITH_METRICS]
    assert server_names("ours,P9", known) is None
    assert server_names(" , ", known) is None
