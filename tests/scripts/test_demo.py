"""``scripts/demo``, where README's first command ends: the server on the embedded default
with demo data, and the client logged in as alice; Ctrl-C stops both.

Run as a user runs it (``bash scripts/demo`` from the checkout, its own process group),
with HOME and XDG directories under ``tmp_path`` so the server's data and the client's
files are the test's own. With no display here the script runs the client headless,
which is also the path it takes on a server without a desktop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.fixtures.services import REPO_ROOT, SCRUBBED_ENV, free_port
from tests.tray_app.conftest import LineReader, client_env

WAIT = 60.0


def _json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_the_demo_serves_alices_notifications_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    # The client's private directories; the server's data goes under its XDG_DATA_HOME.
    env = client_env(tmp_path / "demo")
    for variable in ("DISPLAY", "WAYLAND_DISPLAY", *SCRUBBED_ENV):
        env.pop(variable, None)
    port = free_port()
    env["TRAY_DEMO_PORT"] = str(port)
    demo = subprocess.Popen(
        ["bash", "scripts/demo"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert demo.stdout is not None
    assert demo.stderr is not None
    out, err = LineReader(demo.stdout), LineReader(demo.stderr)
    try:
        [announced] = out.wait_for_line(
            lambda line: line.startswith("scripts/demo: server at "),
            timeout=WAIT,
            what="the script's line with the server's address",
        )
        url = announced.removeprefix("scripts/demo: server at ").split(" ", 1)[0]
        assert url == f"http://127.0.0.1:{port}", announced
        assert "logins alice, bob, carol, admin, password demo" in announced
        out.wait_for_line(
            lambda line: line.startswith("scripts/demo: no display here"),
            timeout=WAIT,
            what="the script saying the client runs headless",
        )

        # Alice, logged in with the demo password, catches up on her demo notifications.
        login = httpx.post(
            f"{url}/api/auth/token/", json={"username": "alice", "password": "demo"}, timeout=30
        )
        login.raise_for_status()
        count = httpx.get(
            f"{url}/api/inbox/unread-count/",
            headers={"Authorization": f"Bearer {login.json()['access']}"},
            timeout=30,
        )
        count.raise_for_status()
        latest = int(count.json()["latest_seq"])
        assert latest >= 1, "the demo data gives alice notifications"
        out.wait_until(
            lambda lines: len(_json_lines(lines)) >= latest,
            timeout=WAIT,
            what=f"{latest} catch-up lines\nstderr:\n{err.text()}",
        )
        assert [row["seq"] for row in _json_lines(out.lines)] == list(range(1, latest + 1))
        err.wait_for_line(
            lambda line: line == "tray-notifier: connected",
            timeout=WAIT,
            what="the client saying it is connected",
        )

        # Ctrl-C: the terminal signals the whole foreground group.
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=WAIT) in (0, 130), err.text()
        deadline = time.monotonic() + WAIT
        while _accepts(port):
            assert time.monotonic() < deadline, "the demo's server still listens after Ctrl-C"
            time.sleep(0.1)
        assert "Traceback" not in err.text(), err.text()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
        out.close()
        err.close()
