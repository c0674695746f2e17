"""The user's attention settings, as every device shares them, and the rules that decide
when a notification may interrupt (pure: no Qt, no I/O).

The server stores one state per user and pushes it to every device (docs/protocol.md,
"Attention"); this module reads it (:func:`parse_attention`), answers the toast rules'
one question (:meth:`Attention.may_interrupt`), and says in words when and why toasts
are held back (:meth:`Attention.silence`, :func:`silence_words`) for the tray icon, the
tooltip, the menu and the settings window.

The order of the rules (the same in ``backend/web/static/web/live.js``):

1. A muted project or event type never interrupts, urgent ones included: a mute is the
   user's explicit word about one source.
2. An urgent notification interrupts while ``urgent_breaks_through`` holds, whatever
   do-not-disturb, quiet hours or the minimum priority say.
3. Anything else is held back while do-not-disturb or quiet hours hold, and below
   ``min_priority``.

IT's managed configuration may lock quiet hours on a desktop: :meth:`Attention.locked`
lays them over the user's own (docs/managed-configuration.md).
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec.structs import replace

from tray_app.time_words import as_aware

PRIORITIES: Final = ("low", "normal", "high", "urgent")
_RANK: Final = {name: rank for rank, name in enumerate(PRIORITIES)}
_CLOCK_FORMAT: Final = "%H:%M"

SilenceReason = Literal["dnd", "quiet_hours"]


class AttentionFormatError(ValueError):
    """An attention payload that is not the documented shape."""


class Silence(msgspec.Struct, frozen=True):
    """Why toasts are held back right now, and until when.

    Attributes:
        reason: ``dnd`` (do-not-disturb) or ``quiet_hours``.
        until: When it ends by itself (aware); None for a do-not-disturb that lasts
            until turned off.
    """

    reason: SilenceReason
    until: datetime | None


class Attention(msgspec.Struct, frozen=True):
    """One user's attention settings (docs/protocol.md, "Attention").

    Attributes:
        version: Goes up by one with each change on the server; 0 means never changed.
        dnd: Whether do-not-disturb is on (see :meth:`dnd_active` for whether it holds).
        dnd_until: When it ends by itself (aware UTC); None: until turned off.
        quiet_hours: Daily ``(start, end)``, start included, end excluded; may wrap
            midnight.
        time_zone: The IANA zone quiet hours are in; None: this computer's clock.
        muted_projects: Projects that never interrupt.
        muted_event_types: Event types that never interrupt.
        min_priority: The lowest priority that may interrupt.
        urgent_breaks_through: Urgent ones interrupt despite do-not-disturb, quiet
            hours and ``min_priority``.
    """

    version: int = 0
    dnd: bool = False
    dnd_until: datetime | None = None
    quiet_hours: tuple[time, time] | None = None
    time_zone: str | None = None
    muted_projects: frozenset[int] = msgspec.field(default_factory=frozenset)
    muted_event_types: frozenset[str] = msgspec.field(default_factory=frozenset)
    min_priority: str = "low"
    urgent_breaks_through: bool = True

    # --- the rules ---------------------------------------------------------------------

    def dnd_active(self, now: datetime) -> bool:
        """Whether do-not-disturb holds at ``now`` (naive means UTC)."""
        if not self.dnd:
            return False
        return self.dnd_until is None or as_aware(now) < self.dnd_until

    def quiet_now(self, now: datetime) -> bool:
        """Whether ``now`` falls in the quiet hours, on their zone's clock."""
        if self.quiet_hours is None:
            return False
        start, end = self.quiet_hours
        clock = self._wall(now).time().replace(tzinfo=None)
        if start <= end:
            return start <= clock < end
        return clock >= start or clock < end

    def silence(self, now: datetime) -> Silence | None:
        """Why non-urgent toasts are held back at ``now``; None when they are not.
        Do-not-disturb wins over quiet hours (it is the one the user just chose)."""
        if self.dnd_active(now):
            return Silence("dnd", self.dnd_until)
        if self.quiet_now(now) and self.quiet_hours is not None:
            return Silence("quiet_hours", self._quiet_end(now))
        return None

    def next_change(self, now: datetime) -> datetime | None:
        """When :meth:`silence` may next change by itself (a do-not-disturb ending,
        quiet hours starting or ending), for a UI that shows it; None: never."""
        moments: list[datetime] = []
        if self.dnd_active(now) and self.dnd_until is not None:
            moments.append(self.dnd_until)
        if self.quiet_hours is not None:
            moments.append(self._next_wall(now, self.quiet_hours[0]))
            moments.append(self._next_wall(now, self.quiet_hours[1]))
        return min(moments) if moments else None

    def muted(self, *, project_id: int | None, event_type: str) -> bool:
        return (project_id is not None and project_id in self.muted_projects) or (
            event_type in self.muted_event_types
        )

    def may_interrupt(
        self, *, priority: str, project_id: int | None, event_type: str, now: datetime
    ) -> bool:
        """Whether a notification with these traits may interrupt at ``now`` (the
        module's rules; an unknown priority counts as normal)."""
        if not self.worth_interrupting(
            priority=priority, project_id=project_id, event_type=event_type
        ):
            return False
        if priority == "urgent" and self.urgent_breaks_through:
            return True
        return self.silence(now) is None

    def worth_interrupting(self, *, priority: str, project_id: int | None, event_type: str) -> bool:
        """Whether it would interrupt were it not for do-not-disturb or quiet hours: not
        muted, and urgent or at least ``min_priority``."""
        if self.muted(project_id=project_id, event_type=event_type):
            return False
        if priority == "urgent" and self.urgent_breaks_through:
            return True
        return _RANK.get(priority, _RANK["normal"]) >= _RANK.get(self.min_priority, 0)

    def payload(self) -> dict[str, Any]:
        """The wire's form (docs/protocol.md, "Attention"), with the version."""
        return {
            "version": self.version,
            **dnd_change(self.dnd_until, on=self.dnd),
            **quiet_hours_change(self.quiet_hours, time_zone=self.time_zone),
            "time_zone": self.time_zone,
            "muted_projects": sorted(self.muted_projects),
            "muted_event_types": sorted(self.muted_event_types),
            "min_priority": self.min_priority,
            "urgent_breaks_through": self.urgent_breaks_through,
        }

    # --- IT's locks ----------------------------------------------------------------------

    def locked(self, *, quiet_hours: tuple[time, time] | Literal[False] | None) -> Attention:
        """These settings with IT's locked values on top: ``quiet_hours`` is the locked
        range (or None: locked to none), ``False`` when IT does not lock it."""
        if quiet_hours is False:
            return self
        return replace(self, quiet_hours=quiet_hours, time_zone=None)

    # --- internals -----------------------------------------------------------------------

    def _zone(self) -> ZoneInfo | None:
        if self.time_zone is None:
            return None
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # A zone this computer does not know (or a name that is a directory, too
            # long for a file name): its own clock.
            return None

    def _wall(self, now: datetime) -> datetime:
        zone = self._zone()
        moment = as_aware(now)
        return moment.astimezone(zone) if zone is not None else moment.astimezone()

    def _quiet_end(self, now: datetime) -> datetime:
        """The next end of the quiet hours after ``now`` (aware UTC)."""
        assert self.quiet_hours is not None
        return self._next_wall(now, self.quiet_hours[1])

    def _next_wall(self, now: datetime, clock: time) -> datetime:
        """The next moment after ``now`` when the zone's clock shows ``clock`` (UTC)."""
        wall = self._wall(now)
        moment = wall.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
        if moment <= wall:
            moment = (moment.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=wall.tzinfo)
        # Across a daylight-saving change the offset differs from now's: the wall time is
        # read in its zone again (a ZoneInfo, or this computer's own clock, whose
        # astimezone() gave a fixed offset). The fold is kept: in the hour a fall-back
        # repeats, the second pass's clock is the one still to come.
        zone = wall.tzinfo
        if isinstance(zone, ZoneInfo):
            naive = moment.replace(tzinfo=None)
            moment = naive.replace(tzinfo=zone)
            skipped = naive.replace(tzinfo=zone, fold=1)
            if skipped.astimezone(UTC) < moment.astimezone(UTC):
                # A spring-forward skips this clock time: the clock passes it at the jump.
                moment = _jump(skipped.astimezone(UTC), moment.astimezone(UTC), zone)
        else:
            naive = moment.replace(tzinfo=None)
            moment = naive.astimezone()
            if moment <= wall:
                moment = naive.replace(fold=1).astimezone()  # the second pass
        return moment.astimezone(UTC)


def _jump(early: datetime, late: datetime, zone: ZoneInfo) -> datetime:
    """The instant between ``early`` and ``late`` (UTC) where ``zone``'s offset changes,
    to the second."""
    offset = early.astimezone(zone).utcoffset()
    while late - early > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            early = middle
        else:
            late = middle
    return late.replace(microsecond=0)


DEFAULT: Final = Attention()


# --- the wire ------------------------------------------------------------------------------


def parse_attention(payload: Any) -> Attention:
    """The attention object of ``hello`` or ``attention_changed``.

    Unknown keys are ignored (a newer server's settings); a known key of the wrong type
    makes the whole payload unusable, since half-understood settings could interrupt
    someone who asked not to be.

    Raises:
        AttentionFormatError: not an object, or a known key with a bad value.
    """
    if not isinstance(payload, dict):
        raise AttentionFormatError("attention must be an object")
    try:
        version = payload.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise AttentionFormatError("version must be a whole number")
        dnd, dnd_until = _parse_dnd(payload.get("dnd"))
        return Attention(
            version=version,
            dnd=dnd,
            dnd_until=dnd_until,
            quiet_hours=_parse_quiet_hours(payload.get("quiet_hours")),
            time_zone=_optional_text(payload.get("time_zone"), "time_zone"),
            muted_projects=frozenset(_ids(payload.get("muted_projects", []))),
            muted_event_types=frozenset(_texts(payload.get("muted_event_types", []))),
            min_priority=_priority(payload.get("min_priority", "low")),
            urgent_breaks_through=_flag(payload.get("urgent_breaks_through", True)),
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, AttentionFormatError):
            raise
        raise AttentionFormatError(str(error)) from None


def dnd_change(until: datetime | None, *, on: bool = True) -> dict[str, Any]:
    """The change that turns do-not-disturb on until ``until`` (None: until turned off),
    or off with ``on=False``."""
    if not on:
        return {"dnd": None}
    return {"dnd": {"until": None if until is None else _instant_text(until)}}


# "Until tomorrow" ends at this hour of the computer's clock.
_TOMORROW_HOUR: Final = 8


def dnd_choice_change(choice: str, now: datetime) -> dict[str, Any]:
    """The change for a do-not-disturb entry of the tray menu.

    Args:
        choice: ``"1h"`` (an hour from ``now``), ``"tomorrow"`` (08:00 tomorrow on the
            computer's clock), ``"on"`` (until turned off); anything else: off.
        now: an aware instant.
    """
    if choice == "1h":
        return dnd_change(now + timedelta(hours=1))
    if choice == "tomorrow":
        local = as_aware(now).astimezone() + timedelta(days=1)
        eight = local.replace(hour=_TOMORROW_HOUR, minute=0, second=0, microsecond=0)
        # Read on the computer's clock again: its offset may change overnight (DST).
        return dnd_change(eight.replace(tzinfo=None).astimezone())
    if choice == "on":
        return dnd_change(None)
    return dnd_change(None, on=False)


def quiet_hours_change(
    quiet_hours: tuple[time, time] | None, *, time_zone: str | None
) -> dict[str, Any]:
    """The change that sets the quiet hours (None: none) and the zone they are in."""
    if quiet_hours is None:
        return {"quiet_hours": None}
    start, end = (moment.strftime(_CLOCK_FORMAT) for moment in quiet_hours)
    return {"quiet_hours": {"start": start, "end": end}, "time_zone": time_zone}


def local_time_zone() -> str | None:
    """This computer's IANA zone name (``TZ``, ``/etc/timezone`` or where
    ``/etc/localtime`` points), or None when it has none."""
    candidates = [os.environ.get("TZ", "").removeprefix(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    with contextlib.suppress(OSError):
        target = str(Path("/etc/localtime").resolve())
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
            return name
    return None


def silence_words(silence: Silence, now: datetime) -> str:
    """ "Do not disturb until 08:00", "Quiet hours until Mon 07:00", "Do not disturb
    until 24 Dec 08:00", "Do not disturb (until you turn it off)", on this computer's
    clock."""
    name = "Do not disturb" if silence.reason == "dnd" else "Quiet hours"
    if silence.until is None:
        return f"{name} (until you turn it off)"
    until = as_aware(silence.until).astimezone()
    left = until - as_aware(now)
    if left < timedelta(days=1):
        return f"{name} until {until:%H:%M}"
    if left < timedelta(days=6):
        return f"{name} until {until:%a %H:%M}"
    return f"{name} until {until.day} {until:%b %H:%M}"


def _parse_dnd(value: Any) -> tuple[bool, datetime | None]:
    if value is None:
        return False, None
    if not isinstance(value, dict):
        raise AttentionFormatError("dnd must be null or an object")
    until = value.get("until")
    if until is None:
        return True, None
    if not isinstance(until, str):
        raise AttentionFormatError("dnd.until must be a time or null")
    try:
        moment = datetime.fromisoformat(until)
    except ValueError:
        # Not the parser's message: it quotes the value (the error may reach a log).
        raise AttentionFormatError("dnd.until must be an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise AttentionFormatError("dnd.until has no time zone")
    try:
        return True, moment.astimezone(UTC)
    except OverflowError:
        raise AttentionFormatError("dnd.until is out of range") from None


def _parse_quiet_hours(value: Any) -> tuple[time, time] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AttentionFormatError("quiet_hours must be null or an object")
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        raise AttentionFormatError("quiet_hours needs a start and an end")
    try:
        return (
            datetime.strptime(start, _CLOCK_FORMAT).time(),
            datetime.strptime(end, _CLOCK_FORMAT).time(),
        )
    except ValueError:
        # Not strptime's message: it quotes the value (the error may reach a log).
        raise AttentionFormatError('quiet_hours start and end must be "HH:MM"') from None


def _optional_text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise AttentionFormatError(f"{name} must be text or null")


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise AttentionFormatError("muted_projects must be a list of ids")
    return value


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AttentionFormatError("muted_event_types must be a list of text")
    return value


def _priority(value: Any) -> str:
    if value not in PRIORITIES:
        raise AttentionFormatError(f"min_priority must be one of {', '.join(PRIORITIES)}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise AttentionFormatError("urgent_breaks_through must be true or false")
    return value


def _instant_text(moment: datetime) -> str:
    return as_aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")
