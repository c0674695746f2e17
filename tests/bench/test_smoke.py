"""Smoke check of the benchmark suite (issue 5): it runs and writes its results.

Runs ``python -m bench --profile quick --only B1 --smoke`` as a real
subprocess, which starts the real servers (ours, P0, P1 on Daphne, P1 on
channels-redis with a private redis-server) and opens real sockets. No
timing assertions: the numbers of a 20-socket run on a shared machine mean
nothing, and issue 5 says CI checks only that the suite runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis


def test_quick_smoke_run_writes_results_in_the_issue_format(tmp_path: Path) -> None:
    output = tmp_path / "results" / "smoke.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--profile", "quick", "--only", "B1,B5"),
            *("--smoke", "--output", str(output)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(output.read_text())
    assert set(report) == {"machine", "date", "profile", "results"}
    assert report["profile"] == "quick"
    # B1 is two figures (memory and CPU) at the one smoke connection count, for the
    # embedded default and for scale mode; B5 four (time, two query counts, gaps).
    assert [row["id"] for row in report["results"]] == ["B1"] * 4 + ["B5"] * 4
    for row in report["results"]:
        assert set(row) == {"id", "metric", "unit", "ours", "peers", "target", "met"}
        assert isinstance(row["met"], bool)
        assert isinstance(row["ours"], float)
        assert all(isinstance(value, float) for value in row["peers"].values())
    assert all(set(row["peers"]) == {"P0", "P1", "P1-redis"} for row in report["results"][:4])
    # Nothing lost in the reconnect storm, whatever the timing.
    gaps = report["results"][-1]
    assert gaps["ours"] == 0.0
    assert gaps["met"] is True
    assert (output.parent / "smoke-raw.json").exists()
    assert sorted(p.name for p in (output.parent / "smoke-plots").glob("*.png"))
