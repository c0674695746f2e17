"""Invariant 2 on real PostgreSQL: concurrent writers, overlapping audiences, no gap.

Eight writer threads in a separate process (tests/fixtures/seq_stress.py, the
product's settings with DATABASE_URL on a fresh database) send 2,000
notifications to users, projects, roles and everyone at once. Afterwards every
user's Inbox seqs must be exactly 1..n, n the number of notifications that named
them, and InboxSequence.last_seq == n. Once with single writes only, once with half
of the writers sending batches of 25 (notification_create_batch) among them. Two
more threads mark read, mark unread, delete and mark all read meanwhile: every
user's InboxSequence.unread must equal their unread rows at the end.

``TRAY_TEST_SCALE`` scales the count (0.1 = 200 notifications); default 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.services import REPO_ROOT, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NOTIFICATIONS = max(16, round(2000 * float(os.environ.get("TRAY_TEST_SCALE", "1"))))


@pytest.mark.parametrize("batch", [0, 25], ids=["single", "half_in_batches"])
def test_concurrent_writers_leave_gap_free_sequences(postgres_url: str, tmp_path, batch: int):
    env = server_env(
        data_dir=tmp_path, database_url=postgres_url, extra={"TRAY_LOG_LEVEL": "WARNING"}
    )
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "tests.fixtures.seq_stress"),
            *("--notifications", str(NOTIFICATIONS), "--writers", "8", "--users", "40"),
            *("--batch", str(batch), "--readers", "2"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["vendor"] == "postgresql"
    assert result["errors"] == []
    assert result["problems"] == []
    assert result["notifications"] == NOTIFICATIONS
    assert result["users"] == 40
    assert result["rows"] == result["expected_rows"] > NOTIFICATIONS
    # The readers ran among the writers, and some rows were left unread to count.
    assert sum(result["read_actions"].values()) > 10
    assert 0 < result["unread_rows"] < result["rows"]
    print(json.dumps(result))  # elapsed time and row count, shown with -s
