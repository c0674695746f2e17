"""A user's attention state as the wire and the database hold it: parsing a change,
applying it, and the one question the server itself asks (is do-not-disturb on?).

Pure: no Django, no I/O. Which notification interrupts whom is the clients' to decide
(``tray_app/attention.py``, ``backend/web/static/web/live.js``): the server stores the
state, syncs it to every device, and shows do-not-disturb to teammates as presence
(backend/notifications/presence.py).

The state is a JSON object (docs/protocol.md, "Attention")::

    {"dnd": null | {"until": null | "2026-12-07T08:00:00Z"},
     "quiet_hours": null | {"start": "22:00", "end": "07:00"},
     "time_zone": null | "Europe/Berlin",
     "muted_projects": [3], "muted_event_types": ["task_status_changed"],
     "min_priority": "low", "urgent_breaks_through": true}

``dnd.until`` null means until turned off; ``time_zone`` null means each device's own
clock. A change is the same object with any subset of the keys.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import available_timezones

PRIORITIES: Final = ("low", "normal", "high", "urgent")
MAX_MUTED_PROJECTS: Final = 500
MAX_MUTED_EVENT_TYPES: Final = 100
EVENT_TYPE_MAX: Final = 50
# The publish API's rule for event types (backend/notifications/publish_input.py).
_EVENT_TYPE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]*\Z")
_CLOCK: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\Z")
KEYS: Final = (
    "dnd",
    "quiet_hours",
    "time_zone",
    "muted_projects",
    "muted_event_types",
    "min_priority",
    "urgent_breaks_through",
)
DEFAULT: Final[Mapping[str, Any]] = {
    "dnd": None,
    "quiet_hours": None,
    "time_zone": None,
    "muted_projects": [],
    "muted_event_types": [],
    "min_priority": "low",
    "urgent_breaks_through": True,
}


class AttentionError(ValueError):
    """A change that cannot be applied; ``problems`` maps each bad key to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {why}" for key, why in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class Change:
    """A parsed change: the keys it sets, normalised; ``muted_projects`` still to be
    checked against the user's projects (:func:`apply` does not know them)."""

    values: dict[str, Any]

    @property
    def muted_projects(self) -> list[int] | None:
        found = self.values.get("muted_projects")
        return None if found is None else list(found)


def parse_change(document: Any, *, now: datetime) -> Change:
    """A change as a client sent it, checked and normalised.

    Args:
        document: the decoded JSON body or frame payload.
        now: the moment, for refusing a do-not-disturb that ended in the past.

    Raises:
        AttentionError: not an object, an unknown key, or a bad value (every problem
            is listed, each in words a user can act on).
    """
    if not isinstance(document, dict):
        raise AttentionError({"attention": "send a JSON object of the settings to change"})
    problems: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in document:
        if key not in KEYS:
            problems[str(key)[:50]] = f"not a setting; the settings are {', '.join(KEYS)}"
    for key, parse in _PARSERS.items():
        if key not in document:
            continue
        try:
            values[key] = parse(document[key], now)
        except (TypeError, ValueError) as error:
            problems[key] = str(error)
    if problems:
        raise AttentionError(problems)
    return Change(values)


def apply(state: Mapping[str, Any], change: Change) -> dict[str, Any]:
    """``state`` (a stored one, or :data:`DEFAULT`) with ``change`` applied."""
    return {**DEFAULT, **{k: v for k, v in state.items() if k in KEYS}, **change.values}


def current(stored: Mapping[str, Any] | None, *, now: datetime) -> dict[str, Any]:
    """The state as clients see it at ``now``: a do-not-disturb that has ended reads as
    off, so no device has to decide that on its own."""
    state = apply(stored or DEFAULT, Change({}))
    if not dnd_active(state, now):
        state["dnd"] = None
    return state


def dnd_active(state: Mapping[str, Any], now: datetime) -> bool:
    """Whether do-not-disturb holds at ``now`` (an aware moment)."""
    dnd = state.get("dnd")
    if not isinstance(dnd, dict):
        return False
    until = dnd.get("until")
    return until is None or _instant(until) > now


def dnd_ends_at(state: Mapping[str, Any]) -> datetime | None:
    """When an active do-not-disturb ends by itself; None when off or until turned off."""
    dnd = state.get("dnd")
    if not isinstance(dnd, dict) or dnd.get("until") is None:
        return None
    return _instant(dnd["until"])


# --- one parser per key: the normalised value, or TypeError/ValueError with why ------


def _dnd(value: Any, now: datetime) -> dict[str, Any] | None:
    if value is None:
        return None
    if value is True:
        return {"until": None}
    if not isinstance(value, dict) or set(value) - {"until"}:
        raise TypeError('send null (off), true or {"until": null} (until turned off), or '
                        '{"until": "<ISO 8601 time with its zone>"}')  # fmt: skip
    until = value.get("until")
    if until is None:
        return {"until": None}
    if not isinstance(until, str) or len(until) > 40:
        raise TypeError('"until" must be an ISO 8601 time with its zone, or null')
    moment = _instant(until)
    if moment <= now:
        raise ValueError(f"{until} has already passed; send a time in the future or null")
    return {"until": moment.isoformat().replace("+00:00", "Z")}


def _quiet_hours(value: Any, _now: datetime) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"start", "end"}:
        raise TypeError('send null (none) or {"start": "22:00", "end": "07:00"}')
    start, end = value["start"], value["end"]
    for name, clock in (("start", start), ("end", end)):
        if not isinstance(clock, str) or not _CLOCK.match(clock):
            raise ValueError(f'"{name}" must be a 24-hour time such as "22:00", not {clock!r:.30}')
    if start == end:
        raise ValueError("start and end are the same time; send null for no quiet hours")
    return {"start": start, "end": end}


def _time_zone(value: Any, _now: datetime) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise TypeError('send an IANA time zone name such as "Europe/Berlin", or null')
    if value not in _zones():
        raise ValueError(f'{value!r} is not a time zone this server knows, e.g. "Europe/Berlin"')
    return value


def _muted_projects(value: Any, _now: datetime) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item > 0 for item in value
    ):
        raise TypeError("send a list of project ids")
    if len(set(value)) > MAX_MUTED_PROJECTS:
        raise ValueError(f"at most {MAX_MUTED_PROJECTS} projects can be muted")
    return sorted(set(value))


def _muted_event_types(value: Any, _now: datetime) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError('send a list of event types such as ["task_status_changed"]')
    if len(set(value)) > MAX_MUTED_EVENT_TYPES:
        raise ValueError(f"at most {MAX_MUTED_EVENT_TYPES} event types can be muted")
    for item in value:
        if len(item) > EVENT_TYPE_MAX or not _EVENT_TYPE.match(item):
            raise ValueError(
                f"{item[:EVENT_TYPE_MAX]!r} is not an event type: lower-case letters, "
                f"digits, '_', '.' and '-', at most {EVENT_TYPE_MAX}"
            )
    return sorted(set(value))


def _min_priority(value: Any, _now: datetime) -> str:
    if value not in PRIORITIES:
        raise ValueError(f"send one of {', '.join(PRIORITIES)}")
    return str(value)


def _flag(value: Any, _now: datetime) -> bool:
    if not isinstance(value, bool):
        raise TypeError("send true or false")
    return value


_PARSERS = {
    "dnd": _dnd,
    "quiet_hours": _quiet_hours,
    "time_zone": _time_zone,
    "muted_projects": _muted_projects,
    "muted_event_types": _muted_event_types,
    "min_priority": _min_priority,
    "urgent_breaks_through": _flag,
}


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r:.40} is not an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r:.40} has no time zone; add Z or +01:00")
    return moment.astimezone(UTC)


@functools.cache
def _zones() -> frozenset[str]:
    """The IANA names the tz database knows (read once: it walks the database)."""
    return frozenset(available_timezones())
