"""One instance per user: hand-over to the running one, and recovery from a crash's leftovers.

Everything is real: QLocalServer sockets (``bus=None``, the way off Linux or with no
session bus), a private D-Bus session bus (the way on Linux), second instances in this
process and in child processes, and a holder killed with SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QByteArray
from PySide6.QtNetwork import QLocalSocket
from pytestqt.qtbot import QtBot

from tests.tray_app.desktop_session import DesktopSession
from tray_app.ui.single_instance import SingleInstance, bus_service_name, server_name

ROOT = Path(__file__).resolve().parents[3]
CHILD_TIMEOUT = 60.0

CLAIM_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from PySide6.QtCore import QCoreApplication
    from tray_app.ui.single_instance import SingleInstance

    app = QCoreApplication([])
    guard = SingleInstance(bus=os.environ.get("TEST_INSTANCE_BUS") or None)
    started = time.monotonic()
    claimed = guard.claim(sys.argv[1])
    network = "PySide6.QtNetwork" in sys.modules
    seconds = time.monotonic() - started
    print(f"claimed={claimed} network={network} seconds={seconds:.3f}", flush=True)
    if claimed and len(sys.argv) > 2:  # hold the instance until killed
        app.exec()
    sys.exit(0 if not claimed else 3)
    """
)


@pytest.fixture
def name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh instance name, with the sockets in a private runtime directory.

    The directory is short on purpose: pytest's tmp_path can exceed a socket path's limit.
    """
    runtime = Path(tempfile.mkdtemp(prefix="si-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield f"tray-test-{uuid.uuid4().hex[:8]}"
    shutil.rmtree(runtime, ignore_errors=True)


def _finished_child(qtbot: QtBot, name: str, **options: Any) -> tuple[str, str]:
    """``_child(name, **options)`` run to its end (events processed meanwhile, so this
    process answers its hand-over); its stdout and stderr."""
    child = _child(name, **options)
    try:
        qtbot.waitUntil(lambda: child.poll() is not None, timeout=int(CHILD_TIMEOUT * 1000))
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
    finally:
        child.kill()
    assert child.returncode == 0, out + err
    return out, err


def _child(name: str, *extra: str, bus: str = "") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONPATH": str(ROOT),
        "TEST_INSTANCE_BUS": bus,
    }
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM_SCRIPT, name, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_name_is_per_user_and_private(name: str) -> None:
    full = server_name(name)
    assert str(os.getuid()) in Path(full).name
    assert Path(full).parent == Path(os.environ["XDG_RUNTIME_DIR"])
    assert server_name("a b/../c") != server_name("a b/../d")
    assert "/" not in Path(server_name("a/../../etc")).name


def test_name_without_a_runtime_dir_carries_the_user_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert server_name("tray-notifier") == f"tray-notifier-{os.getuid()}.sock"


def test_name_falls_back_when_the_runtime_dir_is_too_deep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    assert server_name("tray-notifier") == f"tray-notifier-{os.getuid()}.sock"


def _assert_hands_over(
    qtbot: QtBot, first: SingleInstance, second: SingleInstance, name: str
) -> None:
    """``second``'s claim of ``name`` fails within 2 s, and ``first`` is asked forward."""
    with qtbot.waitSignal(first.activation_requested, timeout=2000):
        started = time.monotonic()
        assert second.claim(name) is False
        assert time.monotonic() - started < 2.0
    assert not second.listening


def test_second_object_hands_over_to_the_first(qtbot: QtBot, name: str) -> None:
    first, second = SingleInstance(bus=None), SingleInstance(bus=None)
    assert first.claim(name)
    assert first.listening
    assert Path(first.full_server_name).exists()
    _assert_hands_over(qtbot, first, second, name)
    first.release()
    assert not Path(server_name(name)).exists()


def test_after_release_the_next_one_claims(qtbot: QtBot, name: str) -> None:
    first = SingleInstance(bus=None)
    assert first.claim(name)
    first.release()
    second = SingleInstance(bus=None)
    assert second.claim(name)
    with qtbot.waitSignal(second.activation_requested, timeout=2000):
        assert SingleInstance(bus=None).claim(name) is False
    second.release()


def test_a_second_process_hands_over_within_two_seconds(qtbot: QtBot, name: str) -> None:
    first = SingleInstance(bus=None)
    assert first.claim(name)
    activations: list[float] = []
    first.activation_requested.connect(lambda: activations.append(time.monotonic()))
    spawned = time.monotonic()
    out, err = _finished_child(qtbot, name)
    assert err == ""
    assert out.startswith("claimed=False")
    claim_seconds = float(out.split("seconds=")[1])
    assert claim_seconds < 2.0, f"hand-over took {claim_seconds:.3f} s"
    assert len(activations) == 1
    # The whole second launch, interpreter start and Qt import included (~0.2 s here).
    launch_seconds = activations[0] - spawned
    assert launch_seconds < 2.0, f"the second launch took {launch_seconds:.3f} s to hand over"
    first.release()


def test_stale_socket_of_a_killed_holder_is_recovered(qtbot: QtBot, name: str) -> None:
    holder = _child(name, "hold")
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.startswith("claimed=True"), line + (
            holder.stderr.read() if holder.stderr else ""
        )
        socket_path = Path(server_name(name))
        assert socket_path.exists()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=CHILD_TIMEOUT)
    finally:
        holder.kill()
        holder.communicate(timeout=CHILD_TIMEOUT)
    assert holder.returncode == -signal.SIGKILL
    assert socket_path.exists()  # SIGKILL leaves the socket file behind

    probe = QLocalSocket()
    probe.connectToServer(str(socket_path))
    assert not probe.waitForConnected(1000)  # nobody answers on it
    assert probe.error() == QLocalSocket.LocalSocketError.ConnectionRefusedError

    heir = SingleInstance(bus=None)
    started = time.monotonic()
    assert heir.claim(name) is True
    assert time.monotonic() - started < 2.0
    with qtbot.waitSignal(heir.activation_requested, timeout=2000):
        assert SingleInstance(bus=None).claim(name) is False
    heir.release()


def test_unknown_requests_are_dropped_without_activation(qtbot: QtBot, name: str) -> None:
    first = SingleInstance(bus=None)
    assert first.claim(name)
    activations: list[int] = []
    first.activation_requested.connect(lambda: activations.append(1))
    intruder = QLocalSocket()
    intruder.connectToServer(first.full_server_name)
    assert intruder.waitForConnected(1000)
    intruder.write(QByteArray(b"x" * 1000))
    intruder.flush()
    qtbot.waitUntil(lambda: intruder.state() == QLocalSocket.LocalSocketState.UnconnectedState)
    assert activations == []
    # The server still serves a real hand-over afterwards.
    with qtbot.waitSignal(first.activation_requested, timeout=2000):
        assert SingleInstance(bus=None).claim(name) is False
    first.release()


def test_simultaneous_launches_elect_exactly_one(name: str) -> None:
    """Several launches racing from nothing: the claim lock lets exactly one win."""
    children = [_child(name, "hold") for _ in range(4)]
    try:
        first_lines = []
        for child in children:
            assert child.stdout is not None
            first_lines.append(child.stdout.readline())
        pairs = list(zip(children, first_lines, strict=True))
        winners = [child for child, line in pairs if "claimed=True" in line]
        assert len(winners) == 1, first_lines
        for child, line in pairs:
            if child is not winners[0]:
                assert line.startswith("claimed=False"), line
                assert child.wait(timeout=CHILD_TIMEOUT) == 0
        assert winners[0].poll() is None  # the winner keeps running
    finally:
        for child in children:
            child.kill()
            child.communicate(timeout=CHILD_TIMEOUT)


# --- over D-Bus (Linux) ------------------------------------------------------------------


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[str]:
    """A private session bus's address."""
    with DesktopSession(tmp_path / "desktop") as session:
        yield session.address


def test_on_a_bus_the_second_object_hands_over_to_the_first(
    qtbot: QtBot, name: str, bus: str
) -> None:
    first, second = SingleInstance(bus=bus), SingleInstance(bus=bus)
    assert first.claim(name)
    assert first.listening
    assert first.full_server_name == bus_service_name(name)
    assert not Path(server_name(name)).exists()  # no socket
    _assert_hands_over(qtbot, first, second, name)
    first.release()
    assert not first.listening
    third = SingleInstance(bus=bus)
    assert third.claim(name)  # the name was given back
    third.release()


def test_bus_names_are_valid_and_distinct() -> None:
    assert (
        bus_service_name("tray-notifier-alice")
        == "com.traynotifier.app.instance.tray_notifier_alice"
    )
    assert bus_service_name("1 x") == "com.traynotifier.app.instance._1_x"
    assert bus_service_name("a.b") != bus_service_name("a-c")


def test_on_a_bus_a_second_process_hands_over_without_qt_network(
    qtbot: QtBot, name: str, bus: str
) -> None:
    first = SingleInstance(bus=bus)
    assert first.claim(name)
    activations: list[float] = []
    first.activation_requested.connect(lambda: activations.append(time.monotonic()))
    out, err = _finished_child(qtbot, name, bus=bus)
    assert out.startswith("claimed=False network=False"), out + err
    assert float(out.split("seconds=")[1]) < 2.0
    assert len(activations) == 1
    first.release()


def test_on_a_bus_a_killed_holder_leaves_nothing_behind(qtbot: QtBot, name: str, bus: str) -> None:
    holder = _child(name, "hold", bus=bus)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.startswith("claimed=True network=False"), line
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=CHILD_TIMEOUT)
    finally:
        holder.kill()
        holder.communicate(timeout=CHILD_TIMEOUT)
    heir = SingleInstance(bus=bus)
    # The bus takes the name back when its owner's connection drops: at once, or
    # after the daemon has noticed the hang-up.
    qtbot.waitUntil(lambda: heir.claim(name), timeout=5000)
    with qtbot.waitSignal(heir.activation_requested, timeout=2000):
        assert SingleInstance(bus=bus).claim(name) is False
    heir.release()


def test_on_a_bus_simultaneous_launches_elect_exactly_one(name: str, bus: str) -> None:
    children = [_child(name, "hold", bus=bus) for _ in range(4)]
    try:
        lines = []
        for child in children:
            assert child.stdout is not None
            lines.append(child.stdout.readline())
        winners = [c for c, line in zip(children, lines, strict=True) if "claimed=True" in line]
        assert len(winners) == 1, lines
        for child, line in zip(children, lines, strict=True):
            if child is not winners[0]:
                assert line.startswith("claimed=False"), line
                assert child.wait(timeout=CHILD_TIMEOUT) == 0
        assert winners[0].poll() is None
    finally:
        for child in children:
            child.kill()
            child.communicate(timeout=CHILD_TIMEOUT)


def test_with_no_bus_to_reach_the_local_socket_is_used(name: str, tmp_path: Path) -> None:
    guard = SingleInstance(bus=f"unix:path={tmp_path / 'nobody'}")
    assert guard.claim(name)
    assert guard.full_server_name == server_name(name)
    assert Path(guard.full_server_name).exists()
    guard.release()
