"""The transport policy (tray_app/net/transport_choice.py): its rules, one by one, and
property tests over arbitrary sequences of outcomes and times. ``TRAY_TEST_SCALE``
scales the examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tray_app.net.transport_choice import (
    CUT_WINDOW,
    NETWORK_FAILURES,
    PROBE_INTERVAL,
    REASON_BLOCKED,
    THRESHOLD,
    Forced,
    Outcome,
    Transport,
    TransportChoice,
    socket_outcome,
)

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
FUZZ = settings(
    max_examples=max(50, round(300 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
T0 = 1_700_000_000.0

outcomes = st.sampled_from(list(Outcome))
steps = st.lists(st.tuples(outcomes, st.floats(min_value=0, max_value=7200)), max_size=40)
forced_values = st.sampled_from([None, "websocket", "http"])


def run(
    choice: TransportChoice, history: list[tuple[Outcome, float]]
) -> tuple[TransportChoice, float]:
    now = T0
    for outcome, gap in history:
        now += gap
        choice = choice.record(outcome, now)
    return choice, now


# --- the rules, one by one -------------------------------------------------------------


def test_the_socket_by_default() -> None:
    decision = TransportChoice.create().decide(T0)
    assert decision.transport is Transport.WEBSOCKET
    assert not decision.fallback


# A cut is counted a step later (rule 3a): test_sockets_cut_after_hello_move_to_the_stream...
@pytest.mark.parametrize(
    "failure", [o for o in Outcome if o in NETWORK_FAILURES and o is not Outcome.SOCKET_CUT]
)
def test_three_network_failures_switch_to_the_stream(failure: Outcome) -> None:
    choice = TransportChoice.create()
    for _ in range(2):
        choice = choice.record(failure, T0)
        assert choice.decide(T0).transport is Transport.WEBSOCKET
    choice = choice.record(failure, T0)
    decision = choice.decide(T0 + 1)
    assert decision.transport is Transport.HTTP
    assert decision.fallback
    assert decision.reason == REASON_BLOCKED
    assert decision.revisit_at == T0 + 300


def test_server_side_failures_neither_count_nor_clear_the_count() -> None:
    choice = TransportChoice.create()
    choice = choice.record(Outcome.SOCKET_REFUSED, T0)
    choice = choice.record(Outcome.SOCKET_REFUSED, T0)
    for _ in range(20):
        choice = choice.record(Outcome.SOCKET_SERVER_SIDE, T0)
        choice = choice.record(Outcome.STREAM_FAILED, T0)
    assert choice.decide(T0).transport is Transport.WEBSOCKET
    choice = choice.record(Outcome.SOCKET_RESET, T0)
    assert choice.decide(T0).transport is Transport.HTTP


def test_hello_clears_the_count() -> None:
    choice = TransportChoice.create()
    for _ in range(2):
        choice = choice.record(Outcome.SOCKET_NO_HELLO, T0)
    choice = choice.record(Outcome.SOCKET_WORKS, T0)
    for _ in range(2):
        choice = choice.record(Outcome.SOCKET_NO_HELLO, T0)
    assert choice.decide(T0).transport is Transport.WEBSOCKET


def test_probes_back_off_and_a_working_probe_moves_back() -> None:
    choice = TransportChoice.create(probe_interval=300, probe_cap=1000)
    for _ in range(3):
        choice = choice.record(Outcome.SOCKET_REFUSED, T0)
    assert choice.decide(T0 + 299).transport is Transport.HTTP
    now = T0 + 300
    waits = []
    for _ in range(4):
        assert choice.decide(now).transport is Transport.WEBSOCKET  # the probe
        choice = choice.record(Outcome.SOCKET_REFUSED, now)
        decision = choice.decide(now)
        assert decision.transport is Transport.HTTP
        assert decision.revisit_at is not None
        waits.append(decision.revisit_at - now)
        now = decision.revisit_at
    assert waits == [600, 1000, 1000, 1000]
    choice = choice.record(Outcome.SOCKET_WORKS, now)
    assert choice.decide(now).transport is Transport.WEBSOCKET
    assert not choice.decide(now).fallback
    # Back to the start: three more failures before the next switch, first probe at 300.
    for _ in range(3):
        choice = choice.record(Outcome.SOCKET_REFUSED, now)
    assert choice.decide(now).revisit_at == now + 300


def test_an_inconclusive_probe_keeps_the_interval() -> None:
    choice = TransportChoice.create(probe_interval=300)
    for _ in range(3):
        choice = choice.record(Outcome.SOCKET_REFUSED, T0)
    choice = choice.record(Outcome.SOCKET_SERVER_SIDE, T0 + 300)
    assert choice.decide(T0 + 300).revisit_at == T0 + 600


@pytest.mark.parametrize(
    ("forced", "transport"), [("websocket", Transport.WEBSOCKET), ("http", Transport.HTTP)]
)
def test_a_forced_choice_wins_and_automatic_remembers(forced: Forced, transport: Transport) -> None:
    choice = TransportChoice.create(forced)
    for _ in range(5):
        choice = choice.record(Outcome.SOCKET_REFUSED, T0)
        assert choice.decide(T0).transport is transport
        assert not choice.decide(T0).fallback
    assert choice.with_forced(None).decide(T0).transport is Transport.HTTP


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        TransportChoice.create(threshold=0)
    with pytest.raises(ValueError, match="probe_interval"):
        TransportChoice.create(probe_interval=0)


@pytest.mark.parametrize(
    ("code", "close_code", "upgraded", "hello", "message", "expected"),
    [
        (None, None, True, True, "", Outcome.SOCKET_WORKS),
        (
            "handshake_refused",
            None,
            False,
            False,
            "HTTP 400 at the handshake",
            Outcome.SOCKET_REFUSED,
        ),
        ("handshake_forbidden", None, False, False, "HTTP 403", Outcome.SOCKET_REFUSED),
        (
            "server_unreachable",
            None,
            False,
            False,
            "handshake failed: InvalidUpgrade",
            Outcome.SOCKET_REFUSED,
        ),
        ("connection_refused", None, False, False, "refused", Outcome.SOCKET_SERVER_SIDE),
        ("server_not_found", None, False, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("tls_failure", None, False, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("server_timeout", None, False, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("closed", 4001, False, False, "HTTP 401 at the handshake", Outcome.SOCKET_SERVER_SIDE),
        (
            "closed",
            None,
            True,
            False,
            "the server closed the socket with None",
            Outcome.SOCKET_RESET,
        ),
        ("server_unreachable", None, True, False, "connection reset", Outcome.SOCKET_RESET),
        ("server_timeout", None, True, False, "timed out", Outcome.SOCKET_NO_HELLO),
        (
            "closed",
            None,
            True,
            False,
            "the server did not start with hello",
            Outcome.SOCKET_NO_HELLO,
        ),
        ("closed", 1012, True, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("account_disabled", None, True, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("proxy_refused", None, False, False, "HTTP 403", Outcome.SOCKET_REFUSED),
        ("proxy_unreachable", None, False, False, "", Outcome.SOCKET_SERVER_SIDE),
        ("proxy_failure", None, False, False, "", Outcome.SOCKET_SERVER_SIDE),
    ],
)
def test_socket_outcome(
    code: str | None,
    close_code: int | None,
    upgraded: bool,
    hello: bool,
    message: str,
    expected: Outcome,
) -> None:
    assert (
        socket_outcome(code, close_code=close_code, upgraded=upgraded, hello=hello, message=message)
        is expected
    )


# --- properties over arbitrary histories -------------------------------------------------


@FUZZ
@given(history=steps, forced=st.sampled_from(["websocket", "http"]), gap=st.floats(0, 1e6))
def test_forced_always_wins(
    history: list[tuple[Outcome, float]], forced: Forced, gap: float
) -> None:
    choice, now = run(TransportChoice.create(forced), history)
    decision = choice.decide(now + gap)
    assert decision.transport.value == forced
    assert not decision.fallback
    assert decision.reason


@FUZZ
@given(
    history=st.lists(
        st.tuples(outcomes.filter(lambda o: o not in NETWORK_FAILURES), st.floats(0, 7200))
    )
)
def test_without_network_failures_the_socket_is_used(history: list[tuple[Outcome, float]]) -> None:
    choice, now = run(TransportChoice.create(), history)
    assert choice.decide(now).transport is Transport.WEBSOCKET
    assert not choice.on_stream


@FUZZ
@given(history=steps, threshold=st.integers(1, 6))
def test_the_stream_only_after_threshold_consecutive_network_failures(
    history: list[tuple[Outcome, float]], threshold: int
) -> None:
    choice = TransportChoice.create(threshold=threshold)
    streak = 0  # network failures since the last hello
    pending = False  # a cut not yet counted (rule 3a)
    now = T0
    for outcome, gap in history:
        now += gap
        before = choice.on_stream
        choice = choice.record(outcome, now)
        if outcome is Outcome.SOCKET_WORKS:
            streak, pending = 0, False
            assert not choice.on_stream
        elif outcome is Outcome.SOCKET_CUT and not before:
            streak += 1 if pending else 0
            pending = not choice.on_stream
        elif outcome in NETWORK_FAILURES:
            streak += 1 + (1 if pending else 0)
            pending = False
        elif outcome is Outcome.SOCKET_SERVER_SIDE:
            pending = False
        if choice.on_stream and not before:
            assert outcome in NETWORK_FAILURES
            assert streak >= threshold
        assert choice.on_stream == (streak >= threshold)


@FUZZ
@given(history=steps, interval=st.floats(1, 600), cap=st.floats(1, 7200), gap=st.floats(0, 1e5))
def test_on_the_stream_a_probe_is_always_scheduled_within_bounds(
    history: list[tuple[Outcome, float]], interval: float, cap: float, gap: float
) -> None:
    choice, now = run(TransportChoice.create(probe_interval=interval, probe_cap=cap), history)
    if not choice.on_stream:
        assert choice.next_probe_at is None
        return
    assert choice.next_probe_at is not None
    assert interval <= choice.wait <= max(cap, interval)
    decision = choice.decide(now + gap)
    if now + gap >= choice.next_probe_at:
        assert decision.transport is Transport.WEBSOCKET
        assert decision.fallback
    else:
        assert decision.transport is Transport.HTTP
        assert decision.reason == REASON_BLOCKED
        assert decision.revisit_at == choice.next_probe_at
        assert decision.revisit_at <= now + gap + max(cap, interval)


@FUZZ
@given(history=steps, failures=st.integers(1, 10))
def test_consecutive_failed_probes_never_shorten_the_wait(
    history: list[tuple[Outcome, float]], failures: int
) -> None:
    choice, now = run(TransportChoice.create(), history)
    for _ in range(3):
        choice = choice.record(Outcome.SOCKET_REFUSED, now)
    assert choice.on_stream
    previous = choice.wait
    for _ in range(failures):
        assert choice.next_probe_at is not None
        now = choice.next_probe_at
        choice = choice.record(Outcome.SOCKET_RESET, now)
        assert choice.wait >= previous
        previous = choice.wait


@pytest.mark.parametrize(
    ("code", "close_code", "lived", "expected"),
    [
        ("closed", None, 5.0, Outcome.SOCKET_CUT),
        ("closed", None, CUT_WINDOW - 0.1, Outcome.SOCKET_CUT),
        ("closed", None, CUT_WINDOW, Outcome.SOCKET_WORKS),
        ("closed", None, 3600.0, Outcome.SOCKET_WORKS),
        # The server closed with a code: it is there and the socket carried its frame.
        ("closed", 1012, 5.0, Outcome.SOCKET_WORKS),
        ("closed", 4001, 5.0, Outcome.SOCKET_WORKS),
        # Ended on purpose (logout, quit): no error.
        (None, None, 5.0, Outcome.SOCKET_WORKS),
    ],
)
def test_a_socket_cut_soon_after_hello_counts_against_the_network(
    code: str | None, close_code: int | None, lived: float, expected: Outcome
) -> None:
    outcome = socket_outcome(code, close_code=close_code, upgraded=True, hello=True, lived=lived)
    assert outcome is expected


def test_sockets_cut_after_hello_move_to_the_stream_at_the_fourth_cut() -> None:
    # Each cut is counted once the next socket's hello shows the server was there
    # (rule 3a), so three counted cuts take four.
    choice = TransportChoice.create()
    for attempt in range(THRESHOLD + 1):
        assert choice.decide(T0 + attempt).transport is Transport.WEBSOCKET
        choice = choice.record(Outcome.SOCKET_CUT, T0 + attempt)
    decision = choice.decide(T0 + THRESHOLD + 1)
    assert decision.transport is Transport.HTTP
    assert decision.reason == REASON_BLOCKED
    probe_at = T0 + THRESHOLD + PROBE_INTERVAL
    assert choice.decide(probe_at).transport is Transport.WEBSOCKET
    choice = choice.record(Outcome.SOCKET_CUT, probe_at + 5)
    assert choice.decide(probe_at + 5).revisit_at == probe_at + 5 + 2 * PROBE_INTERVAL


def test_a_server_killed_after_hello_is_not_taken_for_a_cutting_proxy() -> None:
    # Killed right after hello (a cut, from here), then refusing connections while it
    # restarts (server side): the cut is forgiven, however often it happens.
    choice = TransportChoice.create()
    for attempt in range(10):
        choice = choice.record(Outcome.SOCKET_CUT, T0 + attempt)
        choice = choice.record(Outcome.SOCKET_SERVER_SIDE, T0 + attempt + 0.5)
    assert choice.decide(T0 + 10).transport is Transport.WEBSOCKET
    assert choice.failures == 0


def test_a_pending_cut_confirmed_by_a_refused_upgrade_counts_too() -> None:
    choice = TransportChoice.create().record(Outcome.SOCKET_CUT, T0)
    choice = choice.record(Outcome.SOCKET_REFUSED, T0 + 1)
    assert choice.failures == 2
    assert not choice.cut_pending
    choice = choice.record(Outcome.SOCKET_REFUSED, T0 + 2)
    assert choice.decide(T0 + 2).transport is Transport.HTTP
