"""tray_app/attention.py: the attention rules, their clocks and zones, and the wire format.

Pure code, no Qt: every ``now`` is a fixed UTC instant. The computer's own clock (quiet
hours whose ``time_zone`` is None, the words a user reads, "until tomorrow") is set
through ``TZ`` by the ``computer_clock`` fixture and restored afterwards.
"""

from __future__ import annotations

import itertools
import json
import time as process_time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from tests.tray_app.conftest import SCALE
from tray_app.attention import (
    DEFAULT,
    PRIORITIES,
    Attention,
    AttentionFormatError,
    Silence,
    dnd_change,
    dnd_choice_change,
    local_time_zone,
    parse_attention,
    quiet_hours_change,
    silence_words,
)

AUCKLAND = "Pacific/Auckland"  # UTC+13 in January (NZDT), +12 from April (NZST)
LOS_ANGELES = "America/Los_Angeles"  # UTC-8 in January (PST), -7 from March (PDT)
# Thursday 15 January 2026, 23:00 in Auckland, 02:00 in Los Angeles.
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
NIGHT = (time(22, 0), time(7, 0))  # across midnight
OFFICE = (time(9, 0), time(17, 0))  # within a day
FUZZ = settings(
    max_examples=max(50, round(300 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SetClock = Callable[[str], None]


@pytest.fixture
def computer_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SetClock]:
    """``computer_clock("Pacific/Auckland")`` puts this process's clock in that zone."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        process_time.tzset()

    yield set_zone
    monkeypatch.undo()
    process_time.tzset()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def interrupts(attention: Attention, priority: str = "normal", **traits: Any) -> bool:
    return attention.may_interrupt(
        priority=priority,
        project_id=traits.get("project_id", 1),
        event_type=traits.get("event_type", "ci"),
        now=traits.get("now", NOW),
    )


# --- do-not-disturb -------------------------------------------------------------------------------


def test_nothing_set_lets_everything_interrupt() -> None:
    assert Attention() == DEFAULT
    assert not DEFAULT.dnd_active(NOW)
    assert not DEFAULT.quiet_now(NOW)
    assert DEFAULT.silence(NOW) is None
    assert DEFAULT.next_change(NOW) is None
    assert all(interrupts(DEFAULT, priority) for priority in PRIORITIES)


@pytest.mark.parametrize(
    ("attention", "active"),
    [
        (Attention(dnd=False), False),
        (Attention(dnd=True), True),  # until turned off
        (Attention(dnd=True, dnd_until=NOW + timedelta(minutes=1)), True),
        (Attention(dnd=True, dnd_until=NOW + timedelta(microseconds=1)), True),
        (Attention(dnd=True, dnd_until=NOW), False),  # ends at its until
        (Attention(dnd=True, dnd_until=NOW - timedelta(hours=1)), False),  # passed
        # Off, with a stale until left over: off is off.
        (Attention(dnd=False, dnd_until=NOW + timedelta(hours=1)), False),
    ],
    ids=["off", "on", "until-later", "until-a-moment-later", "until-now", "passed", "off-stale"],
)
def test_do_not_disturb_holds_until_its_until(attention: Attention, active: bool) -> None:
    assert attention.dnd_active(NOW) is active
    assert attention.dnd_active(NOW.replace(tzinfo=None)) is active  # naive is UTC
    if active:
        assert attention.silence(NOW) == Silence("dnd", attention.dnd_until)
    else:
        assert attention.silence(NOW) is None
    assert interrupts(attention) is not active
    assert interrupts(attention, "high") is not active
    assert interrupts(attention, "urgent")  # urgent breaks through by default
    assert interrupts(replace(attention, urgent_breaks_through=False), "urgent") is not active


def test_turning_do_not_disturb_off_ends_it_whatever_its_until() -> None:
    on = parse_attention(dnd_change(NOW + timedelta(hours=2)))
    assert on.dnd_active(NOW)
    assert not interrupts(on)
    off = parse_attention({**on.payload(), **dnd_change(None, on=False)})
    assert off.dnd is False
    assert off.dnd_until is None
    assert not off.dnd_active(NOW)
    assert interrupts(off)


# --- quiet hours: zones on both sides of UTC, and the computer's clock ----------------------------


@pytest.mark.parametrize(
    ("quiet_hours", "zone", "now", "quiet"),
    [
        # Auckland (NZDT, UTC+13), quiet 22:00-07:00 across midnight.
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 8, 59), False),  # 21:59
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 9, 0), True),  # 22:00: start included
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 10, 0), True),  # 23:00
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 11, 30), True),  # 00:30 the next day
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 17, 59), True),  # 06:59
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 18, 0), False),  # 07:00: end excluded
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 23, 0), False),  # noon
        # Auckland in July (NZST, UTC+12): the same wall clock, another UTC hour.
        (NIGHT, AUCKLAND, utc(2026, 7, 15, 9, 30), False),  # 21:30
        (NIGHT, AUCKLAND, utc(2026, 7, 15, 10, 0), True),  # 22:00
        # Los Angeles (PDT, UTC-7), quiet 09:00-17:00 within a day.
        (OFFICE, LOS_ANGELES, utc(2026, 7, 1, 15, 59), False),  # 08:59
        (OFFICE, LOS_ANGELES, utc(2026, 7, 1, 16, 0), True),  # 09:00
        (OFFICE, LOS_ANGELES, utc(2026, 7, 1, 23, 59), True),  # 16:59
        (OFFICE, LOS_ANGELES, utc(2026, 7, 2, 0, 0), False),  # 17:00
        (OFFICE, LOS_ANGELES, utc(2026, 7, 2, 6, 0), False),  # 23:00
        # Los Angeles across midnight, in PST (UTC-8).
        (NIGHT, LOS_ANGELES, utc(2026, 1, 15, 5, 59), False),  # 21:59 on the 14th
        (NIGHT, LOS_ANGELES, utc(2026, 1, 15, 6, 0), True),  # 22:00
        (NIGHT, LOS_ANGELES, utc(2026, 1, 15, 14, 59), True),  # 06:59
        (NIGHT, LOS_ANGELES, utc(2026, 1, 15, 15, 0), False),  # 07:00
    ],
)
def test_quiet_hours_follow_their_zones_wall_clock(
    quiet_hours: tuple[time, time], zone: str, now: datetime, quiet: bool
) -> None:
    attention = Attention(quiet_hours=quiet_hours, time_zone=zone)
    assert attention.quiet_now(now) is quiet
    assert attention.quiet_now(now.replace(tzinfo=None)) is quiet  # naive is UTC
    assert (attention.silence(now) is not None) is quiet
    if quiet:
        silence = attention.silence(now)
        assert silence is not None
        assert silence.reason == "quiet_hours"
    assert interrupts(attention, now=now) is not quiet
    assert interrupts(attention, "urgent", now=now)


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    instant = utc(2026, 1, 15, 6, 0)  # 19:00 in Auckland, 22:00 (the 14th) in Los Angeles
    assert not Attention(quiet_hours=NIGHT, time_zone=AUCKLAND).quiet_now(instant)
    assert Attention(quiet_hours=NIGHT, time_zone=LOS_ANGELES).quiet_now(instant)
    assert Attention(quiet_hours=NIGHT, time_zone="UTC").quiet_now(instant)  # 06:00


def test_quiet_hours_without_a_zone_follow_the_computers_clock(computer_clock: SetClock) -> None:
    local = Attention(quiet_hours=NIGHT, time_zone=None)
    instant = utc(2026, 1, 15, 6, 0)
    computer_clock(AUCKLAND)  # 19:00
    assert not local.quiet_now(instant)
    assert interrupts(local, now=instant)
    computer_clock(LOS_ANGELES)  # 22:00
    assert local.quiet_now(instant)
    assert not interrupts(local, now=instant)
    computer_clock("UTC")  # 06:00
    assert local.quiet_now(instant)
    assert not local.quiet_now(utc(2026, 1, 15, 7, 0))  # 07:00, the end
    # A zone that is set wins over the computer's clock.
    computer_clock(LOS_ANGELES)
    assert not Attention(quiet_hours=NIGHT, time_zone=AUCKLAND).quiet_now(instant)


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus_Mons", "", "America", "../../etc/passwd", "/etc/localtime", "a" * 300],
    ids=["unknown", "empty", "a-directory", "relative-path", "absolute-path", "too-long"],
)
def test_a_zone_this_computer_cannot_read_means_its_own_clock(
    computer_clock: SetClock, zone: str
) -> None:
    instant = utc(2026, 1, 15, 6, 0)
    odd = Attention(quiet_hours=NIGHT, time_zone=zone)
    computer_clock(LOS_ANGELES)  # 22:00: quiet
    assert odd.quiet_now(instant)
    assert odd.silence(instant) == Silence("quiet_hours", utc(2026, 1, 15, 15, 0))
    assert not interrupts(odd, now=instant)
    computer_clock(AUCKLAND)  # 19:00: not quiet
    assert not odd.quiet_now(instant)
    assert odd.next_change(instant) == utc(2026, 1, 15, 9, 0)  # 22:00 in Auckland


def test_quiet_hours_of_equal_start_and_end_are_never_quiet() -> None:
    attention = Attention(quiet_hours=(time(8, 0), time(8, 0)), time_zone="UTC")
    assert not any(attention.quiet_now(NOW + timedelta(minutes=m)) for m in range(0, 1440, 15))


# --- mutes, the minimum priority, urgent ones -----------------------------------------------------


def test_a_muted_project_never_interrupts_urgent_ones_included() -> None:
    attention = Attention(muted_projects=frozenset({4}))
    assert attention.muted(project_id=4, event_type="ci")
    assert not attention.muted(project_id=5, event_type="ci")
    assert not attention.muted(project_id=None, event_type="ci")
    for priority in PRIORITIES:
        assert not interrupts(attention, priority, project_id=4)
        assert interrupts(attention, priority, project_id=5)
        assert interrupts(attention, priority, project_id=None)
    assert not attention.worth_interrupting(priority="urgent", project_id=4, event_type="ci")


def test_a_muted_event_type_never_interrupts_urgent_ones_included() -> None:
    attention = Attention(muted_event_types=frozenset({"task_status_changed"}))
    assert attention.muted(project_id=None, event_type="task_status_changed")
    assert not attention.muted(project_id=None, event_type="task_created")
    for priority in PRIORITIES:
        assert not interrupts(attention, priority, event_type="task_status_changed")
        assert interrupts(attention, priority, event_type="task_created")
    # The match is exact.
    assert interrupts(attention, event_type="task_status")
    assert interrupts(attention, event_type="Task_Status_Changed")


@pytest.mark.parametrize("minimum", PRIORITIES)
@pytest.mark.parametrize("breaks_through", [True, False])
def test_min_priority_is_a_threshold(minimum: str, breaks_through: bool) -> None:
    attention = Attention(min_priority=minimum, urgent_breaks_through=breaks_through)
    rank = PRIORITIES.index(minimum)
    for index, priority in enumerate(PRIORITIES):
        expected = index >= rank or (priority == "urgent" and breaks_through)
        assert interrupts(attention, priority) is expected, priority
        assert (
            attention.worth_interrupting(priority=priority, project_id=1, event_type="ci")
            is expected
        )
    # A priority this client does not know counts as normal.
    assert interrupts(attention, "critical") is (rank <= PRIORITIES.index("normal"))


# The rules, as the module's docstring states them, against every combination.
SILENCES = ("none", "dnd", "dnd-passed", "quiet")
MUTES = ("none", "project", "event_type")


def _attention_for(silence: str, mute: str, minimum: str, breaks_through: bool) -> Attention:
    attention = Attention(
        min_priority=minimum,
        urgent_breaks_through=breaks_through,
        # Quiet hours that hold at NOW only in the "quiet" case (23:00 in Auckland).
        quiet_hours=NIGHT if silence == "quiet" else (time(9, 0), time(10, 0)),
        time_zone=AUCKLAND,
        muted_projects=frozenset({4}) if mute == "project" else frozenset({99}),
        muted_event_types=frozenset({"ci"}) if mute == "event_type" else frozenset({"other"}),
    )
    if silence == "dnd":
        attention = replace(attention, dnd=True, dnd_until=NOW + timedelta(hours=1))
    if silence == "dnd-passed":
        attention = replace(attention, dnd=True, dnd_until=NOW - timedelta(seconds=1))
    return attention


def test_every_combination_of_the_rules() -> None:
    wrong = []
    for silence, mute, minimum, breaks_through, priority in itertools.product(
        SILENCES, MUTES, PRIORITIES, [True, False], PRIORITIES
    ):
        attention = _attention_for(silence, mute, minimum, breaks_through)
        if mute != "none":
            expected = False  # 1. a mute is final
        elif priority == "urgent" and breaks_through:
            expected = True  # 2. urgent breaks through
        elif silence in ("dnd", "quiet"):
            expected = False  # 3. held back while silent...
        else:
            expected = PRIORITIES.index(priority) >= PRIORITIES.index(minimum)  # ...and below
        got = attention.may_interrupt(priority=priority, project_id=4, event_type="ci", now=NOW)
        if got is not expected:
            wrong.append((silence, mute, minimum, breaks_through, priority, got))
    assert wrong == []


# --- IT's lock ------------------------------------------------------------------------------------


def test_an_unlocked_setting_leaves_the_users_own() -> None:
    mine = Attention(quiet_hours=NIGHT, time_zone=AUCKLAND, min_priority="high")
    assert mine.locked(quiet_hours=False) is mine


def test_locked_quiet_hours_override_the_users_on_the_computers_clock(
    computer_clock: SetClock,
) -> None:
    computer_clock(LOS_ANGELES)
    instant = utc(2026, 1, 15, 16, 0)  # 08:00 in Los Angeles, 05:00 (the 16th) in Auckland
    mine = Attention(
        quiet_hours=NIGHT,
        time_zone=AUCKLAND,
        dnd=True,
        dnd_until=instant + timedelta(hours=3),
        muted_projects=frozenset({4}),
        min_priority="normal",
        urgent_breaks_through=False,
        version=7,
    )
    assert mine.quiet_now(instant)  # the user's own: 05:00 in Auckland
    office = mine.locked(quiet_hours=OFFICE)
    assert office.quiet_hours == OFFICE
    assert office.time_zone is None  # IT's hours are on this computer's clock
    assert not office.quiet_now(instant)  # 08:00 here
    assert office.quiet_now(instant + timedelta(hours=1))  # 09:00 here
    # Everything else is the user's.
    assert replace(office, quiet_hours=NIGHT, time_zone=AUCKLAND) == mine


def test_quiet_hours_locked_to_none_let_the_users_quiet_hours_go() -> None:
    mine = Attention(quiet_hours=NIGHT, time_zone=AUCKLAND)
    assert not interrupts(mine)  # 23:00 in Auckland
    unlocked = mine.locked(quiet_hours=None)
    assert unlocked.quiet_hours is None
    assert not unlocked.quiet_now(NOW)
    assert unlocked.silence(NOW) is None
    assert unlocked.next_change(NOW) is None
    assert interrupts(unlocked)
    # A do-not-disturb is not IT's: it stays.
    dnd = replace(mine, dnd=True).locked(quiet_hours=None)
    assert dnd.silence(NOW) == Silence("dnd", None)


def test_locked_quiet_hours_apply_when_the_user_has_none(computer_clock: SetClock) -> None:
    computer_clock(LOS_ANGELES)
    locked = Attention().locked(quiet_hours=NIGHT)
    assert locked.quiet_now(utc(2026, 1, 15, 6, 0))  # 22:00 here
    assert not interrupts(locked, now=utc(2026, 1, 15, 6, 0))
    assert interrupts(locked, "urgent", now=utc(2026, 1, 15, 6, 0))


# --- silence(): which reason, until when ----------------------------------------------------------


def test_do_not_disturb_wins_over_quiet_hours() -> None:
    quiet = Attention(quiet_hours=NIGHT, time_zone=AUCKLAND)
    until = NOW + timedelta(minutes=30)
    assert replace(quiet, dnd=True, dnd_until=until).silence(NOW) == Silence("dnd", until)
    assert replace(quiet, dnd=True).silence(NOW) == Silence("dnd", None)
    # Once the do-not-disturb has passed, the quiet hours show, with their end.
    passed = replace(quiet, dnd=True, dnd_until=NOW - timedelta(minutes=1))
    assert passed.silence(NOW) == Silence("quiet_hours", utc(2026, 1, 15, 18, 0))


@pytest.mark.parametrize(
    ("quiet_hours", "zone", "now", "until"),
    [
        # Auckland 22:00-07:00: the end is the next morning, at 07:00 NZDT.
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 10, 0), utc(2026, 1, 15, 18, 0)),  # 23:00
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 12, 0), utc(2026, 1, 15, 18, 0)),  # 01:00
        (NIGHT, AUCKLAND, utc(2026, 1, 15, 17, 59), utc(2026, 1, 15, 18, 0)),  # 06:59
        # Los Angeles 09:00-17:00 PDT: the end is 17:00 the same day, midnight UTC.
        (OFFICE, LOS_ANGELES, utc(2026, 7, 1, 17, 0), utc(2026, 7, 2, 0, 0)),
        # Los Angeles 22:00-07:00 PST.
        (NIGHT, LOS_ANGELES, utc(2026, 1, 15, 6, 0), utc(2026, 1, 15, 15, 0)),
        # The night the clocks go forward in Los Angeles (2 a.m. on 8 March 2026): 23:00
        # PST, and the quiet hours end at 07:00 PDT, an hour earlier in UTC than in PST.
        (NIGHT, LOS_ANGELES, utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 14, 0)),
        # The night they go back in Auckland (3 a.m. on 5 April 2026): 23:00 NZDT, and the
        # quiet hours end at 07:00 NZST.
        (NIGHT, AUCKLAND, utc(2026, 4, 4, 10, 0), utc(2026, 4, 4, 19, 0)),
    ],
)
def test_quiet_hours_end_on_their_zones_clock(
    quiet_hours: tuple[time, time], zone: str, now: datetime, until: datetime
) -> None:
    silence = Attention(quiet_hours=quiet_hours, time_zone=zone).silence(now)
    assert silence == Silence("quiet_hours", until)
    assert silence is not None
    assert silence.until is not None
    assert silence.until.utcoffset() == timedelta(0)


def test_quiet_hours_end_on_the_computers_clock_on_a_dst_night(computer_clock: SetClock) -> None:
    """No zone set: the computer's clock, whose offset changes overnight too."""
    computer_clock(LOS_ANGELES)
    local = Attention(quiet_hours=NIGHT, time_zone=None)
    assert local.silence(utc(2026, 3, 8, 7, 0)) == Silence("quiet_hours", utc(2026, 3, 8, 14, 0))
    assert local.next_change(utc(2026, 3, 8, 7, 0)) == utc(2026, 3, 8, 14, 0)
    computer_clock(AUCKLAND)
    assert local.silence(utc(2026, 4, 4, 10, 0)) == Silence("quiet_hours", utc(2026, 4, 4, 19, 0))


@pytest.mark.parametrize("zone", [AUCKLAND, None], ids=["zone", "computers-clock"])
def test_quiet_hours_ending_in_the_hour_a_fall_back_repeats_end_ahead(
    computer_clock: SetClock, zone: str | None
) -> None:
    """Auckland's 02:00-03:00 happens twice on 5 April 2026. In its second pass (NZST),
    quiet hours ending at 02:45 end at the 02:45 still to come, not the one gone by."""
    computer_clock(AUCKLAND)
    quiet = Attention(quiet_hours=(time(22, 0), time(2, 45)), time_zone=zone)
    second_pass = utc(2026, 4, 4, 14, 30)  # 02:30 NZST
    assert quiet.quiet_now(second_pass)
    silence = quiet.silence(second_pass)
    assert silence == Silence("quiet_hours", utc(2026, 4, 4, 14, 45))
    change = quiet.next_change(second_pass)
    assert change is not None
    assert change > second_pass


def test_quiet_hours_starting_in_the_hour_a_spring_forward_skips_start_with_it() -> None:
    """Los Angeles skips 02:00-03:00 on 8 March 2026: quiet hours from 02:30 begin at
    03:00 PDT (10:00 UTC), and next_change must not name a later moment."""
    quiet = Attention(quiet_hours=(time(2, 30), time(5, 0)), time_zone=LOS_ANGELES)
    before = utc(2026, 3, 8, 9, 0)  # 01:00 PST
    assert not quiet.quiet_now(before)
    assert quiet.quiet_now(utc(2026, 3, 8, 10, 0))  # 03:00 PDT: already quiet
    change = quiet.next_change(before)
    assert change is not None
    assert change <= utc(2026, 3, 8, 10, 0)


# --- next_change() --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attention", "now", "expected"),
    [
        (Attention(), NOW, None),
        (Attention(dnd=True), NOW, None),  # until turned off
        (Attention(dnd=True, dnd_until=NOW + timedelta(hours=2)), NOW, NOW + timedelta(hours=2)),
        (Attention(dnd=True, dnd_until=NOW - timedelta(hours=2)), NOW, None),  # passed
        # Auckland 22:00-07:00: before them, their start; in them, their end.
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND), utc(2026, 1, 15, 8, 0),
         utc(2026, 1, 15, 9, 0)),
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND), NOW, utc(2026, 1, 15, 18, 0)),
        # Exactly at the start: the next change is the end.
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND), utc(2026, 1, 15, 9, 0),
         utc(2026, 1, 15, 18, 0)),
        # Exactly at the end: the next start, that evening.
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND), utc(2026, 1, 15, 18, 0),
         utc(2026, 1, 16, 9, 0)),
        # A do-not-disturb that ends before the quiet hours start.
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND, dnd=True,
                   dnd_until=utc(2026, 1, 15, 8, 30)), utc(2026, 1, 15, 8, 0),
         utc(2026, 1, 15, 8, 30)),
        # ...and one that ends after: the quiet hours' start comes first.
        (Attention(quiet_hours=NIGHT, time_zone=AUCKLAND, dnd=True,
                   dnd_until=utc(2026, 1, 15, 9, 30)), utc(2026, 1, 15, 8, 0),
         utc(2026, 1, 15, 9, 0)),
        # Los Angeles 09:00-17:00 PDT, in the evening: 09:00 tomorrow.
        (Attention(quiet_hours=OFFICE, time_zone=LOS_ANGELES), utc(2026, 7, 2, 3, 0),
         utc(2026, 7, 2, 16, 0)),
        # Across the spring-forward night in Los Angeles.
        (Attention(quiet_hours=NIGHT, time_zone=LOS_ANGELES), utc(2026, 3, 8, 7, 0),
         utc(2026, 3, 8, 14, 0)),
    ],
)  # fmt: skip
def test_next_change(attention: Attention, now: datetime, expected: datetime | None) -> None:
    assert attention.next_change(now) == expected


ZONES = (AUCKLAND, LOS_ANGELES, "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
clocks = st.builds(time, st.integers(0, 23), st.integers(0, 59))
# Clear of the hours these zones' clocks skip or repeat (00:00-03:59 at most).
daytime_clocks = st.builds(time, st.integers(4, 23), st.integers(0, 59))
dnd_states = st.just((False, None)) | st.tuples(st.just(True), st.none() | instants)


def attentions_with(clocks: st.SearchStrategy[time]) -> st.SearchStrategy[Attention]:
    return st.builds(
        lambda version, dnd, quiet, zone, projects, types, minimum, breaks: Attention(
            version=version,
            dnd=dnd[0],
            dnd_until=dnd[1],
            quiet_hours=quiet,
            time_zone=zone,
            muted_projects=frozenset(projects),
            muted_event_types=frozenset(types),
            min_priority=minimum,
            urgent_breaks_through=breaks,
        ),
        st.integers(0, 2**40),
        dnd_states,
        st.none() | st.tuples(clocks, clocks),
        st.none() | st.sampled_from(ZONES),
        st.lists(st.integers(1, 2**40), max_size=4),
        st.lists(st.text("abc_.-", min_size=1, max_size=8), max_size=4),
        st.sampled_from(PRIORITIES),
        st.booleans(),
    )


attentions = attentions_with(clocks)


@FUZZ
@given(attention=attentions_with(daytime_clocks), now=instants, fraction=st.floats(0, 1))
def test_silence_holds_still_until_next_change(
    attention: Attention, now: datetime, fraction: float
) -> None:
    """Quiet hours here start and end at hours no clock skips or repeats; those hours
    have tests of their own above and below."""
    change = attention.next_change(now)
    silence = attention.silence(now)
    if change is None:
        # Nothing ends by itself: a week on, it is the same.
        later = attention.silence(now + timedelta(days=7))
        assert (later is None) == (silence is None)
        return
    assert change > now
    assert change.utcoffset() == timedelta(0)
    if silence is not None and silence.until is not None:
        assert silence.until > now
        assert silence.until >= change
    # In between, the same reason (a quiet hour, say, does not end early).
    between = now + (change - now) * fraction
    if between < change:
        held = attention.silence(between)
        assert (held and held.reason) == (silence and silence.reason)


# --- silence_words() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "silence", "words"),
    [
        (AUCKLAND, Silence("dnd", None), "Do not disturb (until you turn it off)"),
        (AUCKLAND, Silence("quiet_hours", None), "Quiet hours (until you turn it off)"),
        # Friday 08:00 in Auckland, 9 hours on.
        (AUCKLAND, Silence("dnd", utc(2026, 1, 15, 19, 0)), "Do not disturb until 08:00"),
        # The same moment on a computer in Los Angeles: 11:00 there.
        (LOS_ANGELES, Silence("dnd", utc(2026, 1, 15, 19, 0)), "Do not disturb until 11:00"),
        # Quiet hours of Auckland, read on a computer in Los Angeles.
        (LOS_ANGELES, Silence("quiet_hours", utc(2026, 1, 15, 18, 0)),
         "Quiet hours until 10:00"),
        # A day or more: the weekday (Monday 07:00 in Auckland).
        (AUCKLAND, Silence("quiet_hours", utc(2026, 1, 18, 18, 0)), "Quiet hours until Mon 07:00"),
        (AUCKLAND, Silence("dnd", NOW + timedelta(days=1)), "Do not disturb until Fri 23:00"),
        (AUCKLAND, Silence("dnd", NOW + timedelta(hours=23, minutes=59)),
         "Do not disturb until 22:59"),
        # Six days or more: the date.
        (AUCKLAND, Silence("dnd", NOW + timedelta(days=6)), "Do not disturb until 21 Jan 23:00"),
        (AUCKLAND, Silence("dnd", utc(2026, 12, 23, 19, 0)), "Do not disturb until 24 Dec 08:00"),
    ],
)  # fmt: skip
def test_silence_words_on_the_computers_clock(
    computer_clock: SetClock, zone: str, silence: Silence, words: str
) -> None:
    computer_clock(zone)
    assert silence_words(silence, NOW) == words
    assert silence_words(silence, NOW.replace(tzinfo=None)) == words  # naive is UTC


def test_silence_words_of_a_real_silence(computer_clock: SetClock) -> None:
    computer_clock(AUCKLAND)
    attention = Attention(quiet_hours=NIGHT, time_zone=AUCKLAND)
    silence = attention.silence(NOW)
    assert silence is not None
    assert silence_words(silence, NOW) == "Quiet hours until 07:00"


# --- the wire -------------------------------------------------------------------------------------

DOCUMENTED = {
    "version": 3,
    "dnd": {"until": "2026-12-07T07:00:00Z"},
    "quiet_hours": {"start": "22:00", "end": "07:00"},
    "time_zone": "Europe/Berlin",
    "muted_projects": [4],
    "muted_event_types": ["task_status_changed"],
    "min_priority": "normal",
    "urgent_breaks_through": True,
}


def test_the_documented_example_reads_and_writes_back_as_it_was() -> None:
    attention = parse_attention(DOCUMENTED)
    assert attention == Attention(
        version=3,
        dnd=True,
        dnd_until=utc(2026, 12, 7, 7, 0),
        quiet_hours=NIGHT,
        time_zone="Europe/Berlin",
        muted_projects=frozenset({4}),
        muted_event_types=frozenset({"task_status_changed"}),
        min_priority="normal",
        urgent_breaks_through=True,
    )
    assert attention.payload() == DOCUMENTED
    assert json.loads(json.dumps(attention.payload())) == DOCUMENTED


def test_what_is_missing_is_the_default_and_unknown_keys_are_ignored() -> None:
    assert parse_attention({}) == DEFAULT
    assert parse_attention({"version": 2, "focus_mode": {"on": True}}) == Attention(version=2)
    assert DEFAULT.payload() == {
        "version": 0,
        "dnd": None,
        "quiet_hours": None,
        "time_zone": None,
        "muted_projects": [],
        "muted_event_types": [],
        "min_priority": "low",
        "urgent_breaks_through": True,
    }


def test_dnd_until_is_read_in_any_zone_and_kept_in_utc() -> None:
    berlin = parse_attention({"dnd": {"until": "2026-12-07T08:00:00+01:00"}})
    assert berlin.dnd_until == utc(2026, 12, 7, 7, 0)
    assert berlin.dnd_until is not None
    assert berlin.dnd_until.utcoffset() == timedelta(0)
    assert berlin.payload()["dnd"] == {"until": "2026-12-07T07:00:00Z"}
    assert parse_attention({"dnd": {}}) == Attention(dnd=True)
    assert parse_attention({"dnd": {"until": None}}) == Attention(dnd=True)


SECRET = "SECRET-CONTENT"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "attention",
        3,
        {"version": -1},
        {"version": True},
        {"version": "3"},
        {"version": 1.5},
        {"dnd": True},  # a change may say true; a state never does
        {"dnd": "on"},
        {"dnd": {"until": 5}},
        {"dnd": {"until": SECRET}},
        {"dnd": {"until": "2026-12-07T08:00:00"}},  # no zone
        {"dnd": {"until": "0001-01-01T00:00:00+01:00"}},  # before the first UTC instant
        {"dnd": {"until": "9999-12-31T23:59:59-01:00"}},  # after the last
        {"quiet_hours": "22:00-07:00"},
        {"quiet_hours": {"start": "22:00"}},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"quiet_hours": {"start": SECRET, "end": "07:00"}},
        {"quiet_hours": {"start": 22, "end": 7}},
        {"time_zone": 1},
        {"time_zone": ["Europe/Berlin"]},
        {"muted_projects": 4},
        {"muted_projects": ["4"]},
        {"muted_projects": [True]},
        {"muted_projects": None},
        {"muted_event_types": "ci"},
        {"muted_event_types": [1]},
        {"min_priority": "critical"},
        {"min_priority": None},
        {"min_priority": ["low"]},
        {"urgent_breaks_through": "yes"},
        {"urgent_breaks_through": 1},
        {"urgent_breaks_through": None},
    ],
)
def test_a_bad_value_makes_the_whole_payload_unusable(payload: Any) -> None:
    with pytest.raises(AttentionFormatError) as refused:
        parse_attention(payload)
    assert SECRET not in str(refused.value)  # a reason that can go to a log


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.just(SECRET),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
time_texts = (
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat())
    | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", SECRET])
    | st.text(max_size=30)
)
clock_texts = (
    clocks.map(lambda moment: moment.strftime("%H:%M"))
    | st.sampled_from(["24:00", "7:5", "07:00:00", " 07:00", SECRET])
    | st.text(max_size=8)
)
# Values shaped like each key's, often right and sometimes slightly wrong.
key_values = {
    "version": st.integers(-3, 2**63) | json_values,
    "dnd": st.none()
    | st.fixed_dictionaries({}, optional={"until": st.none() | time_texts})
    | json_values,
    "quiet_hours": st.none()
    | st.fixed_dictionaries({"start": clock_texts, "end": clock_texts})
    | json_values,
    "time_zone": st.none() | st.sampled_from(ZONES) | st.text(max_size=20) | json_values,
    "muted_projects": st.lists(st.integers(-5, 2**63) | json_values, max_size=4) | json_values,
    "muted_event_types": st.lists(st.text(max_size=10) | json_values, max_size=4) | json_values,
    "min_priority": st.sampled_from(PRIORITIES) | json_values,
    "urgent_breaks_through": st.booleans() | json_values,
}
shaped_payloads = st.fixed_dictionaries({}, optional=key_values) | json_values


@FUZZ
@given(payload=shaped_payloads, now=instants)
def test_any_json_is_an_attention_or_an_attention_format_error(payload: Any, now: datetime) -> None:
    try:
        attention = parse_attention(payload)
    except AttentionFormatError as error:
        refused: AttentionFormatError | None = error
    else:
        refused = None
    if refused is not None:
        assert SECRET not in str(refused)
        return
    assert isinstance(attention, Attention)
    # What was read is usable by every rule, and writes back to itself.
    assert parse_attention(attention.payload()) == attention
    assert parse_attention(json.loads(json.dumps(attention.payload()))) == attention
    attention.silence(now)
    attention.next_change(now)
    for priority in PRIORITIES:
        attention.may_interrupt(priority=priority, project_id=1, event_type="ci", now=now)


@FUZZ
@given(attention=attentions)
def test_payload_and_parse_attention_round_trip(attention: Attention) -> None:
    payload = attention.payload()
    assert parse_attention(payload) == attention
    assert parse_attention(json.loads(json.dumps(payload))) == attention


# --- changes --------------------------------------------------------------------------------------


def test_dnd_change_values() -> None:
    assert dnd_change(None) == {"dnd": {"until": None}}
    assert dnd_change(None, on=False) == {"dnd": None}
    assert dnd_change(utc(2026, 1, 15, 11, 0), on=False) == {"dnd": None}
    assert dnd_change(utc(2026, 1, 15, 11, 0)) == {"dnd": {"until": "2026-01-15T11:00:00Z"}}
    berlin = datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert dnd_change(berlin) == {"dnd": {"until": "2026-01-15T11:00:00Z"}}
    assert dnd_change(datetime(2026, 1, 15, 11, 0)) == {"dnd": {"until": "2026-01-15T11:00:00Z"}}


@pytest.mark.parametrize(
    ("zone", "choice", "now", "change"),
    [
        (AUCKLAND, "1h", NOW, {"dnd": {"until": "2026-01-15T11:00:00Z"}}),
        (AUCKLAND, "on", NOW, {"dnd": {"until": None}}),
        (AUCKLAND, "off", NOW, {"dnd": None}),
        (AUCKLAND, "", NOW, {"dnd": None}),
        (AUCKLAND, "2h", NOW, {"dnd": None}),  # not an entry of the menu: off
        # 23:00 on Thursday in Auckland: 08:00 on Friday, there.
        (AUCKLAND, "tomorrow", NOW, {"dnd": {"until": "2026-01-15T19:00:00Z"}}),
        # The same instant in Los Angeles (02:00 on Thursday): 08:00 on Friday, there.
        (LOS_ANGELES, "tomorrow", NOW, {"dnd": {"until": "2026-01-16T16:00:00Z"}}),
        # Noon on Saturday 7 March in Los Angeles; the clocks go forward that night, so
        # 08:00 on Sunday is PDT (UTC-7).
        (LOS_ANGELES, "tomorrow", utc(2026, 3, 7, 20, 0),
         {"dnd": {"until": "2026-03-08T15:00:00Z"}}),
        # 23:00 NZDT on 4 April; 08:00 on the 5th is NZST (UTC+12).
        (AUCKLAND, "tomorrow", utc(2026, 4, 4, 10, 0), {"dnd": {"until": "2026-04-04T20:00:00Z"}}),
    ],
)  # fmt: skip
def test_dnd_choice_change_values(
    computer_clock: SetClock, zone: str, choice: str, now: datetime, change: dict[str, Any]
) -> None:
    computer_clock(zone)
    assert dnd_choice_change(choice, now) == change
    # What the server sends back once it applied the change.
    applied = parse_attention({**DEFAULT.payload(), **change, "version": 1})
    on = change["dnd"] is not None
    assert applied.dnd is on
    assert applied.dnd_active(now) is on


def test_quiet_hours_change_values() -> None:
    assert quiet_hours_change(None, time_zone=AUCKLAND) == {"quiet_hours": None}
    assert quiet_hours_change(NIGHT, time_zone=AUCKLAND) == {
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "time_zone": AUCKLAND,
    }
    assert quiet_hours_change((time(7, 5), time(9, 30)), time_zone=None) == {
        "quiet_hours": {"start": "07:05", "end": "09:30"},
        "time_zone": None,
    }
    applied = parse_attention(quiet_hours_change(NIGHT, time_zone=LOS_ANGELES))
    assert (applied.quiet_hours, applied.time_zone) == (NIGHT, LOS_ANGELES)


def test_local_time_zone_names_the_computers_zone(computer_clock: SetClock) -> None:
    computer_clock(AUCKLAND)
    assert local_time_zone() == AUCKLAND
    computer_clock(f":{LOS_ANGELES}")  # POSIX's "read this file" spelling
    assert local_time_zone() == LOS_ANGELES
    # A TZ that names no zone file: the system's own setting, or none.
    for odd in ("CET-1CEST", "America", "/etc/localtime", "a" * 300):
        computer_clock(odd)
        found = local_time_zone()
        assert found != odd
        if found is not None:
            ZoneInfo(found)  # a name the quiet hours can use
