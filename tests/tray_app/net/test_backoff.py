"""The reconnect policy: exponential bound, full jitter, reset only after a stable connection."""

from __future__ import annotations

import random

from tray_app.net.backoff import Backoff


def test_the_first_retry_comes_within_a_second_and_the_bound_doubles_to_the_cap():
    backoff = Backoff(rng=random.Random(1))
    bounds = []
    for _ in range(12):
        bounds.append(backoff.bound())
        delay = backoff.next_delay()
        assert 0 <= delay <= bounds[-1]
    assert bounds[0] < 1
    assert bounds[:6] == [0.5, 1, 2, 4, 8, 10]
    assert bounds[-1] == 10


def test_jitter_spreads_delays_over_the_whole_window():
    delays = []
    for seed in range(500):
        backoff = Backoff(rng=random.Random(seed), failures=4)  # bound 8 s
        delays.append(backoff.next_delay())
    assert min(delays) < 0.75
    assert max(delays) > 7.25
    assert 3 < sum(delays) / len(delays) < 5  # uniform on [0, 8]: mean 4


def test_a_connection_that_closes_at_once_does_not_reset_the_backoff():
    backoff = Backoff(rng=random.Random(2), stable_after=30)
    clock = 1000.0
    for _ in range(6):
        backoff.next_delay()
        backoff.opened(clock)
        clock += 0.05  # the server accepts, then closes at once
        backoff.closed(clock)
    assert backoff.failures == 6
    assert backoff.bound() == 10


def test_a_connection_that_stayed_up_resets_it():
    backoff = Backoff(rng=random.Random(3), stable_after=30)
    for _ in range(6):
        backoff.next_delay()
    backoff.opened(0)
    backoff.closed(31)
    assert backoff.bound() == 0.5


def test_reset_on_wake_and_huge_failure_counts_stay_at_the_cap():
    backoff = Backoff(failures=10_000)
    assert backoff.bound() == 10
    backoff.reset()
    assert backoff.bound() == 0.5


def test_a_connection_that_served_resets_it_even_if_short():
    """A server killed every few seconds never keeps a socket up for stable_after; a socket
    that delivered something still proves the server works, so the next retry comes fast
    (tests/e2e/test_server_crashes.py found clients drifting to the backoff's cap)."""
    backoff = Backoff(rng=random.Random(4), stable_after=30)
    for _ in range(6):
        backoff.next_delay()
    backoff.opened(0)
    backoff.served()
    backoff.closed(2)
    assert backoff.bound() == 0.5
