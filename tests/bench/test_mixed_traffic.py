"""B4's ceiling search and the ratio targets of bench/mixed_traffic.py (pure parts), and
its publishers' keep-alive connection (against a real server on port 0).

The search runs against a server whose steps pass exactly below a known
ceiling: within each profile's step budget it must stop with the highest pass
and the lowest failure within 10% of each other, around the ceiling, for
ceilings from ours' today (x0.005 of the issue's rate) to P0's and beyond.
"""

from __future__ import annotations

import pytest

from bench.mixed_traffic import (
    PROFILES,
    CeilingSession,
    Layout,
    ceiling_bracket,
    ceiling_plan,
    make_plan,
    next_multiple,
    ratio_met,
)


def search(ceiling: float, steps: int, precision: float) -> tuple[CeilingSession, bool]:
    """The search against steps that pass up to ``ceiling``; and whether it finished."""
    session = CeilingSession(server="simulated", connections=0)
    multiple: float | None = 1.0
    for _ in range(steps):
        if multiple is None:
            break
        session.multiples.append(multiple)
        session.passed.append(multiple <= ceiling)
        multiple = next_multiple(session.multiples, session.passed, precision)
    return session, multiple is None


@pytest.mark.parametrize(
    ("profile", "ceilings"),
    [
        ("full", (0.003, 0.005, 0.05, 0.3, 0.9, 1.0, 1.5, 2.5, 8.0, 20.0)),
        ("quick", (0.05, 0.3, 1.5, 8.0)),
    ],
)
def test_the_search_finds_the_ceiling_within_10_percent_in_the_step_budget(
    profile: str, ceilings: tuple[float, ...]
) -> None:
    settings = PROFILES[profile]
    for ceiling in ceilings:
        session, finished = search(ceiling, settings.ceiling_steps, settings.ceiling_precision)
        low, high = ceiling_bracket(session)
        assert finished, (ceiling, session.multiples)
        assert low is not None, ceiling
        assert low <= ceiling, ceiling
        assert high is None or high / low < settings.ceiling_precision, (ceiling, low, high)
        assert ceiling / low < settings.ceiling_precision, (ceiling, low)


def test_the_search_stops_at_the_precision_asked_for() -> None:
    coarse, _ = search(0.3, 20, 1.5)
    fine, _ = search(0.3, 20, 1.02)
    assert len(coarse.multiples) < len(fine.multiples)
    low, high = ceiling_bracket(fine)
    assert low is not None
    assert high is not None
    assert high / low < 1.02


def test_a_ratio_target_needs_both_figures() -> None:
    assert ratio_met(30.0, 10.0, 3.0)
    assert not ratio_met(30.1, 10.0, 3.0)
    assert not ratio_met(None, 10.0, 3.0)
    assert not ratio_met(1.0, None, 3.0)


def test_every_ceiling_step_carries_the_same_audiences_at_its_own_rate() -> None:
    """A step's deliveries scale with its multiple: the same sequence of audiences at
    every multiple (a plan drawn per step gave x1 a third more deliveries than x0.917)."""
    layout = Layout(200)
    base = make_plan(layout, 100, 7)
    assert ceiling_plan(base, 100) == base
    assert ceiling_plan(base, 250) == base + base + base[:50]
    assert ceiling_plan(base, 40) == base[:40]

    members = layout.members()

    def recipients(plan: list[str]) -> int:
        return sum(len(members[group]) for group in plan)

    assert recipients(ceiling_plan(base, 300)) == 3 * recipients(base)
