"""The attention state's parsing and the server's one question (backend/attention/rules.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.attention import rules

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def parsed(document: Any) -> dict[str, Any]:
    return rules.parse_change(document, now=NOW).values


def problems(document: Any) -> dict[str, str]:
    with pytest.raises(rules.AttentionError) as caught:
        rules.parse_change(document, now=NOW)
    return caught.value.problems


def test_a_change_is_normalised() -> None:
    assert parsed(
        {
            "dnd": {"until": "2026-12-07T09:00:00+01:00"},
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "time_zone": "Europe/Berlin",
            "muted_projects": [3, 1, 3],
            "muted_event_types": ["task_status_changed", "deploy.done", "task_status_changed"],
            "min_priority": "high",
            "urgent_breaks_through": False,
        }
    ) == {
        "dnd": {"until": "2026-12-07T08:00:00Z"},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "time_zone": "Europe/Berlin",
        "muted_projects": [1, 3],
        "muted_event_types": ["deploy.done", "task_status_changed"],
        "min_priority": "high",
        "urgent_breaks_through": False,
    }
    assert parsed({"dnd": True}) == {"dnd": {"until": None}}
    assert parsed({"dnd": {"until": None}}) == {"dnd": {"until": None}}
    assert parsed({"dnd": None, "quiet_hours": None, "time_zone": None}) == {
        "dnd": None,
        "quiet_hours": None,
        "time_zone": None,
    }
    assert parsed({}) == {}


@pytest.mark.parametrize(
    ("document", "key", "words"),
    [
        ({"dnd": "yes"}, "dnd", "send null"),
        ({"dnd": {"until": "2026-12-06T11:00:00Z"}}, "dnd", "already passed"),
        ({"dnd": {"until": "2026-12-07T08:00:00"}}, "dnd", "no time zone"),
        ({"dnd": {"until": "tomorrow"}}, "dnd", "not an ISO 8601 time"),
        ({"dnd": {"until": None, "why": 1}}, "dnd", "send null"),
        ({"quiet_hours": ["22:00", "07:00"]}, "quiet_hours", '"start": "22:00"'),
        ({"quiet_hours": {"start": "22:00", "end": "7:00"}}, "quiet_hours", "24-hour"),
        ({"quiet_hours": {"start": "24:00", "end": "07:00"}}, "quiet_hours", "24-hour"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "quiet_hours", "same time"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "not a time zone"),
        ({"time_zone": 1}, "time_zone", "IANA"),
        ({"muted_projects": [1, "2"]}, "muted_projects", "list of project ids"),
        ({"muted_projects": [True]}, "muted_projects", "list of project ids"),
        ({"muted_projects": [0]}, "muted_projects", "list of project ids"),
        ({"muted_projects": list(range(1, 502))}, "muted_projects", "at most 500"),
        ({"muted_event_types": ["Task Status"]}, "muted_event_types", "not an event type"),
        ({"muted_event_types": ["x" * 51]}, "muted_event_types", "at most 50"),
        ({"muted_event_types": "task_created"}, "muted_event_types", "list of event types"),
        ({"min_priority": "critical"}, "min_priority", "low, normal, high, urgent"),
        ({"urgent_breaks_through": 1}, "urgent_breaks_through", "true or false"),
        ({"sound": True}, "sound", "not a setting"),
        ([], "attention", "JSON object"),
    ],
)
def test_a_bad_change_names_the_setting_and_why(document: Any, key: str, words: str) -> None:
    found = problems(document)
    assert words in found[key], found


def test_every_bad_setting_is_listed_at_once() -> None:
    assert set(problems({"min_priority": 1, "time_zone": 2, "nope": 3})) == {
        "min_priority",
        "time_zone",
        "nope",
    }


def test_a_change_applies_over_the_stored_state_and_the_defaults() -> None:
    stored = {"min_priority": "high", "muted_projects": [4], "retired_key": 1}
    change = rules.parse_change({"muted_projects": []}, now=NOW)
    assert rules.apply(stored, change) == {**rules.DEFAULT, "min_priority": "high"}


def test_do_not_disturb_holds_until_its_end_and_then_reads_as_off() -> None:
    until = {**rules.DEFAULT, "dnd": {"until": "2026-12-06T13:00:00Z"}}
    assert rules.dnd_active(until, NOW)
    assert rules.current(until, now=NOW)["dnd"] == {"until": "2026-12-06T13:00:00Z"}
    later = NOW + timedelta(hours=1)
    assert not rules.dnd_active(until, later)
    assert rules.current(until, now=later)["dnd"] is None
    assert rules.dnd_ends_at(until) == later

    forever = {**rules.DEFAULT, "dnd": {"until": None}}
    assert rules.dnd_active(forever, later + timedelta(days=900))
    assert rules.dnd_ends_at(forever) is None
    assert not rules.dnd_active(rules.DEFAULT, NOW)
    assert rules.current(None, now=NOW) == rules.DEFAULT


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
SETTING = st.sampled_from([*rules.KEYS, "other"])


@given(st.dictionaries(SETTING, JSON, max_size=7) | JSON)
def test_any_json_is_a_change_or_a_listed_refusal(document: Any) -> None:
    try:
        change = rules.parse_change(document, now=NOW)
    except rules.AttentionError as error:
        refusal = error.problems
    else:
        refusal = {}
    if refusal:
        assert all(isinstance(why, str) and why for why in refusal.values())
        return
    state = rules.apply(rules.DEFAULT, change)
    assert set(state) == set(rules.KEYS)
    json.dumps(state)  # what the database and the wire hold
    assert rules.parse_change(state, now=NOW).values == state  # normal form is stable
