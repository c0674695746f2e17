"""The composition root (``tray_app/__main__.py``): signals and threads of the GUI app.

In process: :func:`quit_on_signals` on a real qasync loop, woken by a real SIGTERM sent
from another thread while the loop's thread is asleep in Qt's poll. As a user runs it:
``python -m tray_app`` against the real demo server (a subprocess on port 0) on Qt's
offscreen platform (no tray host is needed to test signals and threads), observed through
``/proc``: it is connected and caught up when its SQLite store's cursor reaches the server's
latest seq; then its main thread must sleep (a timer ticking to let Python's handlers run
would wake it four times a second), and SIGTERM or SIGINT must end it with status 0.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import qasync
from PySide6.QtWidgets import QApplication

from tests.e2e.desktop import read_store_cursor
from tests.fixtures.services import RunningServer
from tests.tray_app.conftest import client_env
from tray_app.__main__ import IO_THREADS, SignalWakeup, io_executor, quit_on_signals
from tray_app.store.db import account_database_path

WAIT = 20.0
# Long enough to catch a ticker (250 ms: 12 wakeups), short beside the 15 s heartbeats.
IDLE_WINDOW = 3.0
IDLE_WAKEUPS_ALLOWED = 6
SETTLE_WINDOW = 0.5


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def thread_state(pid: int, tid: int) -> str:
    """One letter from /proc: R running, S sleeping (blocked in poll, say), ..."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def voluntary_switches(pid: int, tid: int) -> int:
    """How often the thread went to sleep of its own accord: each is one wakeup later."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no context switch count for thread {tid}")


def thread_names(pid: int) -> list[str]:
    return [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    event_loop = qasync.QEventLoop(qapp)
    try:
        yield event_loop
    finally:
        event_loop.close()  # also gives SIGTERM and SIGINT back their default handling
        # The loop's Qt objects sit in reference cycles: collect them in the GUI thread.
        gc.collect()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_wakes_a_sleeping_loop_and_quits(
    loop: qasync.QEventLoop, signum: signal.Signals
) -> None:
    events: list[str] = []

    def quit_app() -> None:
        events.append("quit")
        loop.stop()

    def give_up() -> None:
        events.append("gave up waiting")
        loop.stop()

    assert quit_on_signals(loop, quit_app) is None  # the loop's own handling: Unix
    sender = send_once_asleep(signum)
    loop.call_soon(sender.start)
    guard = loop.call_later(WAIT, give_up)
    loop.run_forever()
    guard.cancel()
    sender.join()
    assert events == ["quit"]


class LoopWithoutSignals(qasync.QEventLoop):  # type: ignore[misc]  # qasync is untyped
    """qasync's loop as it is on Windows, where asyncio's loops have no signal handling.

    A stand-in for the one part that cannot run here: everything else is the real loop.
    """

    def add_signal_handler(self, sig: int, callback: object, *args: object) -> None:
        raise NotImplementedError


def send_once_asleep(signum: signal.Signals) -> threading.Thread:
    """A thread that sends ``signum`` to this process once its main thread sleeps (in
    Qt's poll): a handler that needed Python to get control by itself would then not run
    until something else woke the loop."""
    main_thread = threading.get_native_id()

    def send() -> None:
        wait_for(lambda: thread_state(os.getpid(), main_thread) == "S", what="the loop to sleep")
        os.kill(os.getpid(), signum)

    return threading.Thread(target=send)


def test_without_the_loops_signal_handling_a_signal_still_wakes_it(qapp: QApplication) -> None:
    loop = LoopWithoutSignals(qapp)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    events: list[str] = []

    def quit_app() -> None:
        events.append("quit")
        loop.stop()

    def give_up() -> None:
        events.append("gave up waiting")
        loop.stop()

    wakeup = quit_on_signals(loop, quit_app)
    try:
        assert isinstance(wakeup, SignalWakeup)
        sender = send_once_asleep(signal.SIGTERM)
        loop.call_soon(sender.start)
        guard = loop.call_later(WAIT, give_up)
        loop.run_forever()
        guard.cancel()
        sender.join()
        assert events == ["quit"]
    finally:
        assert wakeup is not None
        wakeup.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        loop.close()
        gc.collect()


def test_blocking_calls_run_on_a_few_threads_started_on_demand(
    loop: qasync.QEventLoop,
) -> None:
    executor = io_executor()
    loop.set_default_executor(executor)
    before = threading.active_count()

    async def block_a_little() -> set[int]:
        # Twice as many calls as threads, all waiting on one another: every thread is used.
        barrier = threading.Barrier(IO_THREADS)

        def call() -> int:
            barrier.wait(timeout=WAIT)
            return threading.get_ident()

        threads = await asyncio.gather(*(asyncio.to_thread(call) for _ in range(2 * IO_THREADS)))
        return set(threads)

    assert threading.active_count() == before  # nothing started before it was needed
    used = loop.run_until_complete(block_a_little())
    assert len(used) == IO_THREADS
    assert threading.active_count() == before + IO_THREADS


def _latest_seq(server: RunningServer, username: str) -> int:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        token = client.post(
            "/api/auth/token/", json={"username": username, "password": "demo"}
        ).json()["access"]
        response = client.get(
            "/api/inbox/unread-count/", headers={"Authorization": f"Bearer {token}"}
        )
        return int(response.json()["latest_seq"])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_idle_app_sleeps_until_a_signal_ends_it(
    demo_server: RunningServer, tmp_path: Path, signum: signal.Signals
) -> None:
    env = {
        **client_env(tmp_path),
        "QT_QPA_PLATFORM": "offscreen",
        "TRAY_NOTIFIER_LOG_DIR": str(tmp_path / "logs"),
        "TMPDIR": str(tmp_path / "runtime"),
    }
    store = account_database_path(Path(env["TRAY_NOTIFIER_DATA_DIR"]), demo_server.url, "alice")
    latest = _latest_seq(demo_server, "alice")
    output = (tmp_path / "output.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tray_app", "--server", demo_server.url, "--username", "alice"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:

        def caught_up() -> bool:
            assert process.poll() is None, (tmp_path / "output.log").read_text()
            return read_store_cursor(store) >= latest

        wait_for(caught_up, what=f"the app's store to reach seq {latest}")
        # The keyring was opened off the GUI thread, on the app's own small executor.
        assert "_QThreadWorker" not in thread_names(process.pid)

        def settled() -> bool:
            # The cursor is stored before the tray, menu and toasts follow it; the app must
            # then go quiet by itself (a loop that never settles fails this wait).
            before = voluntary_switches(process.pid, process.pid)
            time.sleep(SETTLE_WINDOW)  # a measurement window, not a wait for a condition
            return voluntary_switches(process.pid, process.pid) - before <= 1

        wait_for(settled, what="the app's main thread to go quiet after the catch-up")
        before = voluntary_switches(process.pid, process.pid)
        time.sleep(IDLE_WINDOW)  # a measurement window, not a wait for a condition
        wakeups = voluntary_switches(process.pid, process.pid) - before
        assert wakeups <= IDLE_WAKEUPS_ALLOWED, f"{wakeups} wakeups in {IDLE_WINDOW:g} s"

        process.send_signal(signum)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()
    printed = (tmp_path / "output.log").read_text()
    assert "Traceback" not in printed, printed
    log = (tmp_path / "logs" / "tray-notifier.log").read_text()
    assert " ERROR " not in log, log
