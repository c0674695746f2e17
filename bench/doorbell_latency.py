"""Cross-process latency on the embedded default: ``notify`` in another process to
the frame at a WebSocket client.

Run from the repository root::

    .venv/bin/python -m bench.doorbell_latency                  # this tree, 100 rounds
    .venv/bin/python -m bench.doorbell_latency --tree ../main   # another checkout (before)

The product's server (``python -m backend.cli serve --port 0``, embedded default,
demo data, every setting at its default) runs from ``--tree``; alice holds one
WebSocket. Each round runs ``tray-notifier-server notify --user alice`` from the
same tree as a separate process (``backend.cli.main``, with ``delivery.ring``
wrapped to print the time it is called: just after the commit) and waits for its
frame. Reported per round, up to the moment a reader thread of this process
received the frame (every clock is this machine's):

- ``commit``: from the notify command's commit (its ``delivery.ring`` call);
- ``created``: from the notification's ``created_at``, stamped inside the notify
  command's transaction (so it adds the rest of that transaction).

Nothing is pinned to a CPU (a focused measurement, not a suite benchmark), so a
busy machine shows.

Before the local doorbell (backend/notifications/doorbell.py) another process's
notification waited for the server's next database poll (``TRAY_DB_WATCH_INTERVAL``,
0.5 s): ~250 ms at the median, up to the interval.

Results go to stdout and, with ``--json PATH``, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from backend.cli import LISTENING_PREFIX
from bench.common import REPO_ROOT, bench_env, percentile

# ``notify`` as the console script runs it, with the moment of the doorbell's ring
# (on commit) printed to stderr.
_NOTIFY = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
import django
django.setup()
from backend.notifications import delivery
original = delivery.ring
def ring(event):
    sys.stderr.write(f"RUNG {time.time()!r}\\n")
    original(event)
delivery.ring = ring
from backend.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _notify(tree: Path, env: dict[str, str], *args: str) -> float:
    """Run ``notify ARGS``; the time its doorbell rang."""
    done = subprocess.run(
        [sys.executable, "-c", _NOTIFY, "notify", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    rung = [line for line in done.stderr.splitlines() if line.startswith("RUNG ")]
    if done.returncode != 0 or not rung:
        raise SystemExit(f"notify {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return float(rung[-1].split()[1])


def _cli(tree: Path, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"backend.cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def _start(tree: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--demo"],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(LISTENING_PREFIX):
                return process, line.removeprefix(LISTENING_PREFIX).strip()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")


def _read(websocket: ClientConnection, frames: queue.Queue[tuple[float, dict[str, Any]]]) -> None:
    """Timestamp every notification frame as it arrives."""
    try:
        while True:
            frame = json.loads(websocket.recv())
            if frame["type"] == "notification_created":
                frames.put((time.time(), frame["payload"]))
    except ConnectionClosed:
        return


def measure(tree: Path, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="doorbell-latency-") as base:
        env = bench_env(Path(base) / "data")
        env["PYTHONPATH"] = str(tree)
        process, url = _start(tree, env, Path(base) / "server.log")
        try:
            token = httpx.post(
                f"{url}/api/auth/token/", json={"username": "alice", "password": "demo"}
            ).json()["access"]
            ws_url = url.replace("http://", "ws://", 1) + "/ws/notifications/"
            frames: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
            with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                assert json.loads(ws.recv())["type"] == "hello"
                reader = threading.Thread(target=_read, args=(ws, frames), daemon=True)
                reader.start()
                since_commit: list[float] = []
                since_created: list[float] = []
                for n in range(rounds):
                    rung = _notify(tree, env, "--user", "alice", "--title", f"round {n}")
                    received, payload = frames.get(timeout=30)
                    assert payload["title"] == f"round {n}", payload
                    created = datetime.fromisoformat(payload["created_at"].replace("Z", "+00:00"))
                    since_commit.append((received - rung) * 1000)
                    since_created.append((received - created.timestamp()) * 1000)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "tree": str(tree),
        "rounds": rounds,
        "cpus": os.cpu_count(),
        **_summary("commit", since_commit),
        **_summary("created", since_created),
    }


def _summary(name: str, latencies: list[float]) -> dict[str, float]:
    return {
        f"{name}_p50_ms": round(percentile(latencies, 50), 2),
        f"{name}_p90_ms": round(percentile(latencies, 90), 2),
        f"{name}_p99_ms": round(percentile(latencies, 99), 2),
        f"{name}_max_ms": round(max(latencies), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="checkout to run [this one]")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the result here")
    options = parser.parse_args(argv)
    result = measure(options.tree.resolve(), options.rounds)
    print(json.dumps(result, indent=2))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
