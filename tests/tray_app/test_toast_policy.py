"""The toast policy: filters, urgency, text, bursts and the away toast.

Pure code, so every clock is injected: ``Clock`` for the monotonic burst clock and a fixed
wall-clock ``now`` for do-not-disturb and quiet hours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from tests.tray_app.conftest import stored_notification, toast_request
from tray_app.attention import Attention
from tray_app.time_words import describe_age
from tray_app.toast_policy import (
    BODY_LIMIT,
    ELLIPSIS,
    TITLE_LIMIT,
    Toast,
    ToastPlanner,
    ToastPreferences,
    ToastRequest,
    emphasis_for,
    plain_line,
    truncate,
    urgency_for,
    worded_line,
)

# Noon on this computer's clock (aware: the client's naive times are UTC).
NOON = datetime(2026, 11, 23, 12, 0).astimezone()
PREFS = ToastPreferences()


def attending(**settings: object) -> ToastPreferences:
    """Toast preferences with these attention settings (``dnd_until`` turns dnd on)."""
    if "dnd_until" in settings:
        settings["dnd"] = True
    return ToastPreferences(attention=Attention(**settings))  # type: ignore[arg-type]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


req = toast_request


def planner(clock: Clock | None = None, now: datetime = NOON, **kwargs) -> ToastPlanner:
    return ToastPlanner(clock=clock or Clock(), now=lambda: now, **kwargs)


def summary_count(toast: Toast) -> int:
    match = re.match(r"(\d+) more ", toast.title)
    assert match, toast.title
    return int(match.group(1))


# --- urgency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "urgency"),
    [
        ("low", "low"),
        ("normal", "normal"),
        ("high", "normal"),
        ("urgent", "critical"),
        ("", "normal"),
        ("URGENT", "normal"),
        ("emergency", "normal"),
    ],
)
def test_priority_maps_to_urgency(priority, urgency):
    assert urgency_for(priority) == urgency
    [toast] = planner().offer(req(priority=priority), PREFS)
    assert toast.urgency == urgency


# --- urgent looks urgent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "title", "emphasis", "urgency"),
    [
        ("urgent", "Urgent: Production is down", "urgent", "critical"),
        ("high", "High: Production is down", "high", "normal"),
        ("normal", "Production is down", "plain", "normal"),
        ("low", "Production is down", "plain", "low"),
        ("URGENT", "Production is down", "plain", "normal"),  # unknown: normal, no word
        ("", "Production is down", "plain", "normal"),
    ],
)
def test_a_single_toast_says_high_and_urgent_in_its_title(priority, title, emphasis, urgency):
    [toast] = planner().offer(req(priority=priority, title="Production is down"), PREFS)
    assert (toast.title, toast.emphasis, toast.urgency) == (title, emphasis, urgency)
    assert emphasis_for(priority) == emphasis
    assert toast.body == "Mobile App \u00b7 Reviewed by bob"  # the body is left alone


def test_the_priority_word_is_kept_and_the_title_cut():
    [toast] = planner().offer(req(priority="urgent", title="T " * 400), PREFS)
    assert len(toast.title) == TITLE_LIMIT
    assert toast.title.startswith("Urgent: T T")
    assert toast.title.endswith(ELLIPSIS)
    assert ELLIPSIS not in toast.title[:-1]  # cut once, not once per step

    [untitled] = planner().offer(req(2, priority="urgent", title=" \n\t "), PREFS)
    assert untitled.title == "Urgent: (no title)"
    [hostile] = planner().offer(req(3, priority="high", title="<b>x</b>\x1b\u202e"), PREFS)
    assert hostile.title == "High: <b>x</b>"  # plain text, cleaned like any title


@pytest.mark.parametrize(
    ("title", "emphasis", "untitled", "line"),
    [
        ("Prod down", "urgent", "", "Urgent: Prod down"),
        ("Prod down", "high", "", "High: Prod down"),
        ("Prod down", "plain", "", "Prod down"),
        ("  ", "urgent", "", ""),  # nothing to put the word before
        ("  ", "urgent", "(no title)", "Urgent: (no title)"),
        ("a\nb", "high", "", "High: a b"),
    ],
)
def test_worded_line(title, emphasis, untitled, line):
    assert worded_line(title, emphasis, untitled=untitled) == line
    assert len(worded_line("x" * 500, emphasis)) == TITLE_LIMIT


def test_a_summary_words_its_high_rows_and_carries_the_loudest_emphasis():
    clock = Clock()
    plan = planner(clock)
    burst(plan, range(1, 6), at=1000.0)
    burst(plan, range(6, 8), at=1001.0)
    plan.offer(req(8, priority="high", title="Review requested", arrived_at=1001.5), PREFS)
    clock.t = 1005.0
    [summary] = plan.flush(PREFS)
    assert summary.title == "3 more updates in Mobile App"
    assert summary.body.splitlines() == [
        "High: Review requested",
        "Task 7 moved to Done",
        "Task 6 moved to Done",
    ]
    assert (summary.emphasis, summary.urgency) == ("high", "normal")

    burst(plan, range(11, 20), at=1010.0)
    clock.t = 1020.0
    [plain] = plan.flush(PREFS)
    assert plain.emphasis == "plain"
    assert not any(line.startswith(("High:", "Urgent:")) for line in plain.body.splitlines())


# --- who gets a toast --------------------------------------------------------------------

DND_ON = attending(dnd_until=NOON + timedelta(minutes=30))
DND_FOREVER = attending(dnd=True)
DND_OVER = attending(dnd_until=NOON - timedelta(seconds=1))
DND_ENDS_NOW = attending(dnd_until=NOON)
DND_NO_BREAKING = attending(dnd=True, urgent_breaks_through=False)
LUNCH = attending(quiet_hours=(time(11, 30), time(13, 0)))
NIGHT = attending(quiet_hours=(time(22, 0), time(7, 0)))
MUTED = attending(muted_projects=frozenset({7}))
MUTED_KIND = attending(muted_event_types=frozenset({"task_status_changed"}))
HIGH_ONLY = attending(min_priority="high")
OFF = ToastPreferences(enabled=False)


@pytest.mark.parametrize(
    ("case", "prefs", "fields", "now", "shown"),
    [
        ("plain live row", PREFS, {}, NOON, True),
        ("disabled", OFF, {}, NOON, False),
        ("disabled, even urgent", OFF, {"priority": "urgent"}, NOON, False),
        ("already read", PREFS, {"is_read": True}, NOON, False),
        ("already read, even urgent", PREFS, {"is_read": True, "priority": "urgent"}, NOON, False),
        ("catch-up row", PREFS, {"live": False}, NOON, False),
        ("catch-up row, even urgent", PREFS, {"live": False, "priority": "urgent"}, NOON, False),
        ("muted project", MUTED, {}, NOON, False),
        ("muted project stays silent for urgent", MUTED, {"priority": "urgent"}, NOON, False),
        ("another project is not muted", MUTED, {"project_id": 8}, NOON, True),
        ("no project is never muted", MUTED, {"project_id": None}, NOON, True),
        ("do not disturb", DND_ON, {}, NOON, False),
        ("do not disturb, high", DND_ON, {"priority": "high"}, NOON, False),
        ("urgent gets through do not disturb", DND_ON, {"priority": "urgent"}, NOON, True),
        ("do not disturb until turned off", DND_FOREVER, {}, NOON, False),
        ("urgent through dnd until turned off", DND_FOREVER, {"priority": "urgent"}, NOON, True),
        (
            "urgent opted out of breaking through",
            DND_NO_BREAKING,
            {"priority": "urgent"},
            NOON,
            False,
        ),
        ("muted kind of event", MUTED_KIND, {"event_type": "task_status_changed"}, NOON, False),
        (
            "muted kind stays silent for urgent",
            MUTED_KIND,
            {"event_type": "task_status_changed", "priority": "urgent"},
            NOON,
            False,
        ),
        ("another kind is not muted", MUTED_KIND, {"event_type": "task_created"}, NOON, True),
        ("below the minimum priority", HIGH_ONLY, {"priority": "normal"}, NOON, False),
        ("at the minimum priority", HIGH_ONLY, {"priority": "high"}, NOON, True),
        ("urgent is above any minimum", HIGH_ONLY, {"priority": "urgent"}, NOON, True),
        ("do not disturb is over", DND_OVER, {}, NOON, True),
        ("do not disturb ends at its end", DND_ENDS_NOW, {}, NOON, True),
        ("quiet hours", LUNCH, {}, NOON, False),
        ("urgent gets through quiet hours", LUNCH, {"priority": "urgent"}, NOON, True),
        ("quiet hours start included", LUNCH, {}, NOON.replace(hour=11, minute=30), False),
        ("quiet hours end excluded", LUNCH, {}, NOON.replace(hour=13), True),
        ("before quiet hours", LUNCH, {}, NOON.replace(hour=11, minute=29), True),
        ("night wraps: late", NIGHT, {}, NOON.replace(hour=23, minute=15), False),
        ("night wraps: midnight", NIGHT, {}, NOON.replace(hour=0), False),
        ("night wraps: early", NIGHT, {}, NOON.replace(hour=6, minute=59), False),
        ("night wraps: morning", NIGHT, {}, NOON.replace(hour=7), True),
        ("night wraps: evening", NIGHT, {}, NOON.replace(hour=21, minute=59), True),
        ("night wraps: urgent", NIGHT, {"priority": "urgent"}, NOON.replace(hour=2), True),
    ],
)
def test_which_rows_toast(case, prefs, fields, now, shown):
    toasts = planner(now=now).offer(req(**fields), prefs)
    assert [t.kind for t in toasts] == (["single"] if shown else []), case


def test_a_naive_time_is_utc_for_the_rules(monkeypatch):
    # The client's one rule for a time without a zone (time_words.as_aware): UTC, in
    # the toasts' rules as in the words the tray and the history use.
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    import time as time_module

    time_module.tzset()
    try:
        until = Attention(dnd=True, dnd_until=datetime(2030, 1, 1, 10, 0, tzinfo=UTC))
        assert (
            planner(now=datetime(2030, 1, 1, 9, 59)).offer(req(), ToastPreferences(attention=until))
            == []
        )
        assert planner(now=datetime(2030, 1, 1, 10, 0)).offer(
            req(), ToastPreferences(attention=until)
        )
        # 14:00 UTC is 23:00 in Tokyo: inside the computer's quiet hours.
        night = ToastPreferences(attention=Attention(quiet_hours=(time(22), time(7))))
        assert planner(now=datetime(2030, 1, 1, 14, 0)).offer(req(), night) == []
        assert describe_age(datetime(2030, 1, 1, 13, 55), datetime(2030, 1, 1, 14, 0)) == "5 min"
    finally:
        monkeypatch.undo()
        time_module.tzset()


# --- what a single toast says -------------------------------------------------------------


def test_a_single_toast_carries_the_row_and_its_actions_target():
    [toast] = planner().offer(req(42, url="/projects/7/tasks/42"), PREFS)
    assert toast == Toast(
        kind="single",
        title="Task 42 moved to Done",
        body="Mobile App \u00b7 Reviewed by bob",
        urgency="normal",
        notification_id=42,
        url="/projects/7/tasks/42",
        sound=True,
    )


@pytest.mark.parametrize(
    ("prefs", "priority", "sound"),
    [
        (PREFS, "normal", True),
        (PREFS, "high", True),
        (PREFS, "urgent", True),
        (PREFS, "low", False),  # low priority is silent
        (ToastPreferences(sound=False), "normal", False),
        (ToastPreferences(sound=False), "urgent", False),
    ],
)
def test_sound(prefs, priority, sound):
    [toast] = planner().offer(req(priority=priority), prefs)
    assert toast.sound is sound


@pytest.mark.parametrize(
    ("fields", "title", "body"),
    [
        ({"project_title": None, "project_id": None}, "Task 1 moved to Done", "Reviewed by bob"),
        ({"message": ""}, "Task 1 moved to Done", "Mobile App"),
        ({"message": "", "project_title": None}, "Task 1 moved to Done", ""),
        ({"title": "", "message": "x"}, "(no title)", "Mobile App \u00b7 x"),
        ({"title": "  \n\t "}, "(no title)", "Mobile App \u00b7 Reviewed by bob"),
        # Server text is plain text: kept verbatim here, never turned into markup.
        (
            {"title": "<b>x</b><img src=x>", "message": "a & b <i>c</i>"},
            "<b>x</b><img src=x>",
            "Mobile App \u00b7 a & b <i>c</i>",
        ),
        ({"title": "line one\nline two\r\n\tthree"}, "line one line two three", None),
        ({"title": "bell\x07 nul\x00 esc\x1b[31m"}, "bell nul esc[31m", None),
        ({"title": "lone \ud800 surrogate"}, "lone ? surrogate", None),
        ({"message": "one\n\n\n\n\ntwo\r\nthree  "}, None, "Mobile App \u00b7 one\n\ntwo\nthree"),
        (
            {"title": "\u00e9t\u00e9 \U0001f680 \u4e2d\u6587"},
            "\u00e9t\u00e9 \U0001f680 \u4e2d\u6587",
            None,
        ),
    ],
)
def test_text_is_plain_and_clean(fields, title, body):
    [toast] = planner().offer(req(**fields), PREFS)
    if title is not None:
        assert toast.title == title
    if body is not None:
        assert toast.body == body
    toast.title.encode("utf-8")  # always encodable (D-Bus strings must be UTF-8)
    toast.body.encode("utf-8")


def test_long_text_is_cut_with_an_ellipsis():
    [toast] = planner().offer(req(title="T" * 500, message="word " * 200), PREFS)
    assert len(toast.title) == TITLE_LIMIT
    assert toast.title == "T" * (TITLE_LIMIT - 1) + ELLIPSIS
    assert len(toast.body) <= BODY_LIMIT
    assert toast.body.endswith(ELLIPSIS)
    assert toast.body.startswith("Mobile App \u00b7 word word")
    assert " " + ELLIPSIS not in toast.body  # no dangling space before the ellipsis

    [exact] = planner().offer(req(title="T" * TITLE_LIMIT), PREFS)
    assert exact.title == "T" * TITLE_LIMIT  # nothing cut, no ellipsis


def test_truncate_and_plain_line_edges():
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab" + ELLIPSIS
    assert truncate("abcd", 1) == ELLIPSIS
    with pytest.raises(ValueError, match="positive"):
        truncate("abc", 0)
    assert plain_line("x" * 10, 5) == "xxxx" + ELLIPSIS


# --- bursts ------------------------------------------------------------------------------


def burst(plan: ToastPlanner, ids, *, at: float, step: float = 0.1, **fields) -> list[Toast]:
    shown: list[Toast] = []
    for n, notification_id in enumerate(ids):
        shown += plan.offer(req(notification_id, arrived_at=at + n * step, **fields), PREFS)
    return shown


def test_up_to_burst_size_show_singly_with_nothing_held():
    clock = Clock()
    plan = planner(clock)
    shown = burst(plan, range(1, 6), at=1000.0)
    assert [t.notification_id for t in shown] == [1, 2, 3, 4, 5]
    assert plan.next_flush_in() is None
    clock.t = 2000.0
    assert plan.flush(PREFS) == []


def test_a_burst_shows_the_first_few_then_one_summary_at_the_window_end():
    clock = Clock(1000.0)
    plan = planner(clock)
    shown = burst(plan, range(1, 13), at=1000.0, step=0.1)  # 12 within 1.2 s
    assert [t.kind for t in shown] == ["single"] * 5
    assert [t.notification_id for t in shown] == [1, 2, 3, 4, 5]

    clock.t = 1001.5
    assert plan.next_flush_in() == pytest.approx(3.5)
    assert plan.flush(PREFS) == []  # an early timer: nothing yet, still held
    assert plan.next_flush_in() == pytest.approx(3.5)

    clock.t = 1005.0
    assert plan.next_flush_in() == 0.0
    [summary] = plan.flush(PREFS)
    assert summary == Toast(
        kind="summary",
        title="7 more updates in Mobile App",
        body=(
            "Task 12 moved to Done\nTask 11 moved to Done\nTask 10 moved to Done\n"
            "and 4 more in the history"
        ),
        urgency="normal",
        notification_id=None,
        url=None,
        sound=True,
    )
    assert plan.next_flush_in() is None
    assert plan.flush(PREFS) == []  # only one summary per window


def test_a_burst_of_fifty_gives_one_summary():
    clock = Clock(1000.0)
    plan = planner(clock)
    shown = burst(plan, range(1, 51), at=1000.0, step=0.01)
    clock.t = 1000.0 + 5.0
    shown += plan.flush(PREFS)
    assert [t.kind for t in shown] == ["single"] * 5 + ["summary"]
    assert shown[-1].title == "45 more updates in Mobile App"


@pytest.mark.parametrize(
    ("projects", "count", "title"),
    [
        ([(7, "Mobile App")] * 6, 1, "1 more update in Mobile App"),
        ([(7, "Mobile App")] * 6 + [(8, "Web")] * 2, 3, "3 more notifications"),
        ([(7, "Mobile App")] * 5 + [(7, "Mobile App"), (None, None)], 2, "2 more notifications"),
        ([(None, None)] * 7, 2, "2 more notifications"),
        ([(7, "Mobile App")] * 5 + [(8, "Web")] * 2, 2, "2 more updates in Web"),
        ([(9, "P" * 200)] * 6, 1, "1 more update in " + "P" * 59 + ELLIPSIS),
    ],
)
def test_summary_names_the_project_only_when_all_share_it(projects, count, title):
    clock = Clock()
    plan = planner(clock)
    for n, (project_id, project_title) in enumerate(projects, start=1):
        plan.offer(
            req(n, project_id=project_id, project_title=project_title, arrived_at=1000 + n / 10),
            PREFS,
        )
    clock.t = 1005.1  # the window opened with the first row
    [summary] = plan.flush(PREFS)
    assert summary_count(summary) == count
    assert summary.title == title


def test_summary_urgency_and_sound_follow_what_was_held():
    clock = Clock()
    plan = planner(clock)
    burst(plan, range(1, 6), at=1000.0)
    burst(plan, range(6, 9), at=1001.0, priority="low")
    clock.t = 1005.0
    [low] = plan.flush(PREFS)
    assert (low.urgency, low.sound) == ("low", False)


def test_spread_out_rows_never_collapse():
    clock = Clock()
    plan = planner(clock)
    shown: list[Toast] = []
    for n in range(1, 21):  # 20 rows, 1.2 s apart: never more than 5 in any window
        clock.t = 1000 + n * 1.2
        shown += plan.offer(req(n, arrived_at=clock.t), PREFS)
        shown += plan.flush(PREFS)
    assert [t.kind for t in shown] == ["single"] * 20


def test_a_storm_gives_one_summary_per_window_until_it_calms_down():
    clock = Clock()
    plan = planner(clock)
    shown: list[tuple[float, Toast]] = []

    def step(t: float, ids=()) -> None:
        clock.t = t
        for notification_id in ids:
            for toast in plan.offer(req(notification_id, arrived_at=t), PREFS):
                shown.append((t, toast))
        for toast in plan.flush(PREFS):
            shown.append((t, toast))

    step(1000.0, range(1, 9))  # window 1: 5 singles, 3 held
    step(1003.0, range(9, 12))  # still window 1: held
    step(1005.0)  # window 1 ends: summary of 6; window 2 starts spent
    step(1006.0, range(12, 15))  # window 2: all held, no new singles
    step(1010.0)  # window 2 ends: summary of 3; window 3 starts spent
    step(1016.0, [15, 16])  # window 3 had nothing: a fresh window, singles again
    kinds = [(t, toast.kind, toast.notification_id) for t, toast in shown]
    assert kinds == [
        *[(1000.0, "single", n) for n in range(1, 6)],
        (1005.0, "summary", None),
        (1010.0, "summary", None),
        (1016.0, "single", 15),
        (1016.0, "single", 16),
    ]
    assert [summary_count(t) for _, t in shown if t.kind == "summary"] == [6, 3]


def test_a_late_timer_is_covered_by_the_next_offer():
    clock = Clock()
    plan = planner(clock)
    burst(plan, range(1, 8), at=1000.0)  # 5 singles, 2 held
    clock.t = 1007.0  # the timer never fired; a row arrives after the window
    shown = plan.offer(req(8, arrived_at=1007.0), PREFS)
    # The old window's summary comes first; the new row falls in the spent window.
    assert [(t.kind, t.title) for t in shown] == [("summary", "2 more updates in Mobile App")]
    assert plan.next_flush_in() == pytest.approx(3.0)  # window 2: 1005 + 5
    clock.t = 1010.0
    assert summary_count(plan.flush(PREFS)[0]) == 1


def test_urgent_rows_are_never_held_in_a_burst():
    clock = Clock()
    plan = planner(clock)
    shown = burst(plan, range(1, 8), at=1000.0)
    shown += plan.offer(req(8, priority="urgent", arrived_at=1001.0), PREFS)
    shown += plan.offer(req(9, arrived_at=1001.1), PREFS)
    assert [(t.kind, t.notification_id, t.urgency) for t in shown] == [
        *[("single", n, "normal") for n in range(1, 6)],
        ("single", 8, "critical"),
    ]
    clock.t = 1005.0
    [summary] = plan.flush(PREFS)
    assert summary_count(summary) == 3  # 6, 7 and 9


def test_preferences_at_flush_time_apply_to_the_summary():
    def held_planner() -> tuple[Clock, ToastPlanner]:
        clock = Clock()
        plan = planner(clock)
        burst(plan, range(1, 6), at=1000.0)
        burst(plan, range(6, 9), at=1001.0, project_id=8, project_title="Web")
        burst(plan, range(9, 11), at=1002.0)
        clock.t = 1005.0
        return clock, plan

    _, plan = held_planner()
    [summary] = plan.flush(attending(muted_projects=frozenset({8})))
    assert summary.title == "2 more updates in Mobile App"  # Web muted meanwhile

    _, plan = held_planner()
    assert plan.flush(attending(dnd_until=NOON + timedelta(hours=1))) == []
    _, plan = held_planner()
    assert plan.flush(OFF) == []
    _, plan = held_planner()
    assert plan.flush(attending(muted_projects=frozenset({7, 8}))) == []
    _, plan = held_planner()
    [quiet] = plan.flush(ToastPreferences(sound=False))
    assert quiet.sound is False


def test_rows_read_elsewhere_leave_a_pending_summary():
    clock = Clock()
    plan = planner(clock)
    burst(plan, range(1, 10), at=1000.0)  # 6..9 held
    plan.discard([6, 7, 100])
    clock.t = 1005.0
    assert summary_count(plan.flush(PREFS)[0]) == 2

    plan = planner(clock)
    clock.t = 1000.0
    burst(plan, range(1, 8), at=1000.0)
    plan.discard([6, 7])
    clock.t = 1005.0
    assert plan.flush(PREFS) == []


def test_the_same_row_offered_twice_toasts_once():
    plan = planner()
    assert len(plan.offer(req(1), PREFS)) == 1
    assert plan.offer(req(1), PREFS) == []
    assert len(plan.offer(req(2), PREFS)) == 1


def test_filtered_rows_do_not_use_up_the_burst():
    plan = planner()
    for n in range(1, 20):
        assert plan.offer(req(n, is_read=True), PREFS) == []
        assert plan.offer(req(100 + n, live=False), PREFS) == []
        assert plan.offer(req(200 + n), MUTED) == []
    assert [t.notification_id for t in burst(plan, range(1, 6), at=1000.0)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"burst_size": 0}, "burst_size"),
        ({"burst_window": 0.0}, "burst_window"),
        ({"burst_window": -1.0}, "burst_window"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToastPlanner(**kwargs)


@pytest.mark.parametrize(("size", "window"), [(1, 1.0), (3, 10.0), (5, 5.0)])
def test_burst_size_and_window_are_honoured(size, window):
    clock = Clock()
    plan = planner(clock, burst_size=size, burst_window=window)
    shown = burst(plan, range(1, size + 4), at=1000.0, step=window / 100)
    assert len(shown) == size
    assert plan.next_flush_in() == pytest.approx(window)
    clock.t = 1000.0 + window
    assert summary_count(plan.flush(PREFS)[0]) == 3


offers = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0),  # gap since the previous row
        st.sampled_from(["low", "normal", "high", "urgent"]),
        st.booleans(),  # is_read
        st.sampled_from([None, 7, 8]),  # project (8 is muted)
        st.booleans(),  # whether the flush timer fires before this row
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(offers)
def test_every_eligible_row_is_shown_once_singly_or_in_a_summary(rows):
    """Nothing is lost and nothing is counted twice, whatever the timing; no window
    shows more than ``burst_size`` non-urgent singles."""
    clock = Clock(0.0)
    plan = planner(clock)
    prefs = attending(muted_projects=frozenset({8}))
    singles: list[int | None] = []
    summarised = 0
    eligible = 0
    singles_at: list[float] = []
    for n, (gap, priority, is_read, project, timer_fires) in enumerate(rows, start=1):
        if timer_fires and plan.next_flush_in() is not None:
            clock.t += plan.next_flush_in() or 0.0
            summarised += sum(summary_count(t) for t in plan.flush(prefs))
        clock.t += gap
        request = req(n, priority=priority, is_read=is_read, project_id=project, arrived_at=clock.t)
        eligible += not is_read and project != 8
        for toast in plan.offer(request, prefs):
            if toast.kind == "single":
                singles.append(toast.notification_id)
                if toast.urgency != "critical":
                    singles_at.append(clock.t)
            else:
                summarised += summary_count(toast)
    clock.t += 100.0
    summarised += sum(summary_count(t) for t in plan.flush(prefs))
    assert len(singles) == len(set(singles))
    assert len(singles) + summarised == eligible
    for t in singles_at:
        assert sum(1 for other in singles_at if t <= other < t + 5.0) <= 5


# --- catch-up ----------------------------------------------------------------------------


def catch_up(plan: ToastPlanner, rows: list[ToastRequest], prefs=PREFS) -> list[Toast]:
    shown: list[Toast] = []
    for row in rows:
        shown += plan.offer(replace(row, live=False), prefs)
    assert shown == []  # catch-up rows never toast singly
    return plan.catch_up_finished(len(rows), prefs)


def test_catching_up_shows_one_away_toast():
    plan = planner()
    [toast] = catch_up(plan, [req(n) for n in range(1, 13)])
    assert toast == Toast(
        kind="away",
        title="12 new while you were away",
        body="In Mobile App\nTask 12 moved to Done\nTask 11 moved to Done\nTask 10 moved to Done",
        urgency="normal",
        notification_id=None,
        url=None,
        sound=True,
    )
    # The tally starts again for the next catch-up.
    [again] = catch_up(plan, [req(20, project_id=8, project_title="Web"), req(21, project_id=None)])
    assert again.title == "2 new while you were away"
    assert again.body == "Task 21 moved to Done\nTask 20 moved to Done"


@pytest.mark.parametrize(
    ("rows", "prefs", "expected"),
    [
        ([], PREFS, None),
        ([req(1, is_read=True), req(2, is_read=True)], PREFS, None),
        ([req(1), req(2, is_read=True)], PREFS, ("1 new while you were away", "normal")),
        ([req(1), req(2, project_id=8)], attending(muted_projects=frozenset({7, 8})), None),
        ([req(1), req(2, project_id=8)], MUTED, ("1 new while you were away", "normal")),
        ([req(1), req(2, project_id=8)], OFF, None),
        ([req(1), req(2)], DND_ON, None),
        ([req(1), req(2)], NIGHT, ("2 new while you were away", "normal")),  # noon
        (
            [req(1), req(2, priority="urgent", title="Prod down")],
            DND_ON,
            ("2 new while you were away, 1 urgent", "critical"),
        ),
        ([req(1, priority="low")], PREFS, ("1 new while you were away", "normal")),
    ],
)
def test_away_toast_rules(rows, prefs, expected):
    toasts = catch_up(planner(), rows, prefs)
    if expected is None:
        assert toasts == []
    else:
        [toast] = toasts
        assert (toast.title, toast.urgency) == expected


def test_urgent_rows_lead_the_away_toast():
    [toast] = catch_up(planner(), [req(1), req(2, priority="urgent", title="Prod down"), req(3)])
    assert toast.body == "In Mobile App\nUrgent: Prod down"
    assert toast.title == "3 new while you were away, 1 urgent"
    assert (toast.emphasis, toast.urgency) == ("urgent", "critical")


def test_an_away_toast_words_its_high_rows():
    rows = [req(1), req(2, priority="high", title="Review requested"), req(3, priority="low")]
    [toast] = catch_up(planner(), rows)
    assert toast.title == "3 new while you were away"
    assert (
        toast.body
        == "In Mobile App\nTask 3 moved to Done\nHigh: Review requested\nTask 1 moved to Done"
    )
    assert toast.emphasis == "high"


def test_a_count_alone_still_gives_an_away_toast():
    plan = planner()
    [toast] = plan.catch_up_finished(4, PREFS)
    assert (toast.title, toast.body) == ("4 new while you were away", "They are in the history.")
    assert plan.catch_up_finished(0, PREFS) == []
    assert plan.catch_up_finished(-3, PREFS) == []


def test_rows_read_during_catch_up_are_not_counted():
    plan = planner()
    for n in range(1, 6):
        plan.offer(req(n, live=False), PREFS)
    plan.discard([1, 2])
    [toast] = plan.catch_up_finished(5, PREFS)
    assert toast.title == "3 new while you were away"


def test_catch_up_does_not_disturb_a_live_burst():
    clock = Clock()
    plan = planner(clock)
    shown = burst(plan, range(1, 4), at=1000.0)
    catch_up(plan, [req(n, arrived_at=1000.5) for n in range(100, 150)])
    shown += burst(plan, range(4, 7), at=1001.0)
    assert [t.notification_id for t in shown] == [1, 2, 3, 4, 5]
    clock.t = 1005.0
    assert summary_count(plan.flush(PREFS)[0]) == 1


# --- from the store and the preferences ---------------------------------------------------


def test_a_request_carries_the_stored_rows_fields() -> None:
    row = stored_notification(7, seq=3, title="Build failed", priority="high", created_at=NOON)
    request = ToastRequest.of(row, live=True, arrived_at=12.5)
    assert (request.id, request.seq, request.title, request.message) == (
        7,
        3,
        "Build failed",
        "main is red",
    )
    assert (request.priority, request.project_id, request.project_title, request.url) == (
        "high",
        2,
        "Mobile App",
        "/projects/2/",
    )
    assert (request.is_read, request.live, request.arrived_at) == (False, True, 12.5)


def test_toast_preferences_are_the_preferences_in_force() -> None:
    from tray_app.preferences import Preferences

    attention = Attention(dnd=True, quiet_hours=(time(22), time(7)), muted_projects=frozenset({4}))
    chosen = Preferences(toasts_enabled=False, sound=False)
    assert ToastPreferences.of(chosen, attention) == ToastPreferences(
        enabled=False, sound=False, attention=attention
    )
