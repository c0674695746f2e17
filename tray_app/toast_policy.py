"""Which notifications become toasts, and when: the noise-control policy (pure, no Qt).

The UI offers every notification that reaches this device to a :class:`ToastPlanner` and
shows the :class:`Toast` values it returns; it never decides on its own. The rules:

- **Master switch.** With toasts disabled nothing is shown, urgent ones included: the
  user turned the feature off, and the badge and history still count everything.
- **Already read.** A row that arrives read (read on another device) never toasts.
- **Catch-up.** Rows that are not live (replay after an absence, REST paging) never toast
  one by one; :meth:`ToastPlanner.catch_up_finished` shows one "N new while you were
  away" toast for the unread ones among them.
- **Attention.** Whether a notification may interrupt is the user's attention settings'
  to say (:mod:`tray_app.attention`, shared by every device): muted projects and event
  types stay silent, urgent ones too; urgent ones get through do-not-disturb and quiet
  hours (unless the user opted out); the rest are held back by them and by the minimum
  priority. The rows are still stored and counted on the badge. Urgent rows are never
  folded into a burst summary: whoever marked them urgent wants each one seen, and they
  are rare.
- **Bursts.** A burst window opens at the first toast after a quiet spell and lasts
  ``burst_window`` seconds. Its first ``burst_size`` toasts show at once; later ones are
  held and become ONE summary when the window ends ("12 more updates in Mobile App").
  The first few show at once because a toast is worth most when it is immediate, and
  most windows never overflow: holding every first toast until we know whether a burst
  follows would delay every single notification by the window's length. A window that
  overflowed is followed straight away by one that starts with its quota spent, so a
  storm that outlasts one window yields one summary per window rather than another
  ``burst_size`` singles each time; singles come back after a window with no overflow.
- **Priority to urgency.** ``low`` -> low, ``normal``/``high`` -> normal, ``urgent`` ->
  critical; an unknown priority counts as normal. Low-priority toasts make no sound.
- **Urgent looks urgent.** A single toast's title leads with its priority's word when it
  is high or urgent ("Urgent: Production is down", "High: Review requested": the words
  of the history's priority chips), and the title is cut, never the word. Summary and
  away toasts put the same words before the titles they list, and an away toast that
  holds urgent ones says how many in its title. Each toast carries its ``emphasis``
  (the highest priority word it shows) for the toaster to pick the icon by.
- **Plain text.** Titles are one line of at most :data:`TITLE_LIMIT` characters, bodies
  at most :data:`BODY_LIMIT`, cut with an ellipsis; control characters and text that
  cannot be encoded are dropped. Markup is never added here, and escaping for a
  particular display (D-Bus body markup) is the toaster's job.

Times: ``ToastRequest.arrived_at`` and the planner's ``clock`` are the same monotonic
clock (bursts are measured with it); ``now`` is the wall clock for do-not-disturb and
quiet hours.
"""

from __future__ import annotations

import re
import time as monotonic_time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from tray_app.attention import DEFAULT as DEFAULT_ATTENTION
from tray_app.attention import Attention

if TYPE_CHECKING:
    from tray_app.preferences import Preferences
    from tray_app.store import StoredNotification

TITLE_LIMIT = 100
BODY_LIMIT = 300
PROJECT_LIMIT = 60
ELLIPSIS = "\u2026"
# How many of the newest titles a summary or away toast lists.
LISTED_TITLES = 3
# Ids already toasted or held, so an id offered twice is not shown twice.
_REMEMBERED_IDS = 2048

ToastKind = Literal["single", "summary", "away"]
Urgency = Literal["low", "normal", "critical"]
ToastEmphasis = Literal["plain", "high", "urgent"]

_URGENCY_BY_PRIORITY: dict[str, Urgency] = {
    "low": "low",
    "normal": "normal",
    "high": "normal",
    "urgent": "critical",
}
_URGENCY_RANK: dict[Urgency, int] = {"low": 0, "normal": 1, "critical": 2}
_EMPHASIS_BY_PRIORITY: dict[str, ToastEmphasis] = {"high": "high", "urgent": "urgent"}
_EMPHASIS_RANK: dict[ToastEmphasis, int] = {"plain": 0, "high": 1, "urgent": 2}
#: The word a line leads with for each emphasis ("Urgent: Production is down").
PRIORITY_WORDS: Final[dict[ToastEmphasis, str]] = {"high": "High", "urgent": "Urgent"}
# The bidi embedding, override and isolate controls, as a regex character range: one
# unmatched U+202E in a title would reverse (and spoof) everything shown after it in a
# toast, a menu entry or a history row, so every text path drops them; the plain RLM/LRM
# marks stay.
BIDI_CONTROLS: Final = "\u202a-\u202e\u2066-\u2069"
# C0/C1 controls except tab and newline mean nothing on a toast; nor do the bidi controls.
_CONTROL = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI_CONTROLS}]")
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


class ToastRequest(msgspec.Struct, frozen=True):
    """One notification that reached this device, as the planner needs it.

    Attributes:
        id: The notification's id (the one "Open" and "Mark read" act on).
        seq: Its per-user sequence number: higher is newer.
        title: Plain text from the server.
        message: Plain text from the server.
        priority: ``low``, ``normal``, ``high`` or ``urgent``.
        project_id: Its project, if any (for mutes and summaries).
        project_title: That project's name.
        url: Its link.
        event_type: What happened (``task_status_changed``...), for mutes.
        is_read: Whether it arrived already read.
        live: False for catch-up rows (replay or paging), which never toast singly.
        arrived_at: When it arrived, in seconds of the planner's monotonic clock.
    """

    id: int
    seq: int
    title: str
    message: str
    priority: str
    project_id: int | None
    project_title: str | None
    url: str
    is_read: bool
    live: bool
    arrived_at: float
    event_type: str = ""

    @classmethod
    def of(cls, row: StoredNotification, *, live: bool, arrived_at: float) -> ToastRequest:
        """The request for a notification the store just added."""
        return cls(
            id=row.id,
            seq=row.seq,
            title=row.title,
            message=row.message,
            priority=row.priority,
            project_id=row.project_id,
            project_title=row.project_title,
            url=row.url,
            is_read=row.is_read,
            live=live,
            arrived_at=arrived_at,
            event_type=row.event_type,
        )


class ToastPreferences(msgspec.Struct, frozen=True):
    """What the user chose about toasts.

    Attributes:
        enabled: This computer's master switch; off means no toasts at all.
        sound: Whether toasts may make a sound on this computer.
        attention: The user's attention settings in force (every device's, with IT's
            locks on top): when a notification may interrupt.
    """

    enabled: bool = True
    sound: bool = True
    attention: Attention = DEFAULT_ATTENTION

    @classmethod
    def of(cls, preferences: Preferences, attention: Attention) -> ToastPreferences:
        """The toast rules' part of this computer's preferences, and the attention."""
        return cls(enabled=preferences.toasts_enabled, sound=preferences.sound, attention=attention)


class Toast(msgspec.Struct, frozen=True):
    """One toast to show, already in its final plain-text form.

    Attributes:
        kind: ``single`` (one notification, with "Open" and "Mark read"), ``summary``
            (a burst) or ``away`` (what arrived while the app was not connected).
        title: One line of plain text.
        body: Plain text, possibly several lines.
        urgency: ``low``, ``normal`` or ``critical``.
        notification_id: The notification a single toast is about; None otherwise.
        url: That notification's link; None otherwise.
        sound: Whether to play a sound.
        emphasis: ``urgent`` or ``high`` when the toast is about such notifications (its
            text then says so), ``plain`` otherwise: how loud it should look.
    """

    kind: ToastKind
    title: str
    body: str
    urgency: Urgency
    notification_id: int | None
    url: str | None
    sound: bool
    emphasis: ToastEmphasis = "plain"


def urgency_for(priority: str) -> Urgency:
    """The toast urgency for a notification priority (unknown ones count as normal)."""
    return _URGENCY_BY_PRIORITY.get(priority, "normal")


def emphasis_for(priority: str) -> ToastEmphasis:
    """How loud a toast about a notification of ``priority`` looks (unknown: plain)."""
    return _EMPHASIS_BY_PRIORITY.get(priority, "plain")


def worded_line(title: str, emphasis: ToastEmphasis, *, untitled: str = "") -> str:
    """``title`` as one clean line led by its priority word, "Urgent: Production is down",
    within :data:`TITLE_LIMIT`: the title is cut, the word is kept.

    Args:
        title: Plain text from the server.
        emphasis: Which word leads (none for ``plain``).
        untitled: What stands for a title that is empty once cleaned.
    """
    line = _WHITESPACE.sub(" ", _clean(title)).strip() or untitled
    word = PRIORITY_WORDS.get(emphasis)
    return plain_line(f"{word}: {line}" if word and line else line)


def plain_line(text: str, limit: int = TITLE_LIMIT) -> str:
    """``text`` as one clean line of at most ``limit`` characters."""
    return truncate(_WHITESPACE.sub(" ", _clean(text)).strip(), limit)


def plain_block(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` as clean lines (runs of blank lines squeezed) of at most ``limit`` characters."""
    lines = (line.rstrip() for line in _clean(text).replace("\r\n", "\n").split("\n"))
    squeezed = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return truncate(squeezed.expandtabs(4), limit)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when anything was cut."""
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


class ToastPlanner:
    """Turns notifications into the toasts to show, following the module's rules.

    Not thread-safe: call it from one thread (the GUI thread).

    Args:
        burst_size: How many toasts a burst window shows one by one.
        burst_window: The window's length in seconds.
        clock: Monotonic seconds, the clock of ``ToastRequest.arrived_at``.
        now: The wall clock for do-not-disturb and quiet hours (aware; a naive value
            is UTC).
    """

    def __init__(
        self,
        *,
        burst_size: int = 5,
        burst_window: float = 5.0,
        clock: Callable[[], float] = monotonic_time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if burst_size < 1:
            raise ValueError(f"burst_size must be at least 1, not {burst_size}")
        if burst_window <= 0:
            raise ValueError(f"burst_window must be positive, not {burst_window}")
        self._burst_size = burst_size
        self._burst_window = burst_window
        self._clock = clock
        self._now = now
        self._window_end: float | None = None
        self._window_singles = 0
        self._window_quota = burst_size
        self._held: list[ToastRequest] = []
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._away_offered = 0
        self._away: list[ToastRequest] = []

    # --- public ----------------------------------------------------------------------

    def offer(self, request: ToastRequest, prefs: ToastPreferences) -> list[Toast]:
        """Take one notification that reached this device; what to show now.

        Offer every one, live or not: catch-up rows are tallied for the away toast.
        The result may hold a summary of an earlier window that has just ended, and may
        be empty (filtered out, or held for a summary).
        """
        shown = self._close_window_if_due(request.arrived_at, prefs)
        if not request.live:
            self._tally_catch_up(request, prefs)
            return shown
        if request.id in self._seen or not self._may_toast(request, prefs):
            return shown
        self._remember(request.id)
        urgent = urgency_for(request.priority) == "critical"
        if self._window_end is None:
            self._open_window(request.arrived_at, quota=self._burst_size)
        if urgent or self._window_singles < self._window_quota:
            self._window_singles += 1
            shown.append(self._single(request, prefs))
        else:
            self._held.append(request)
        return shown

    def catch_up_finished(self, added: int, prefs: ToastPreferences) -> list[Toast]:
        """A replay ended with ``added`` new rows: at most one "N new while you were away".

        N counts the unread, unmuted catch-up rows offered since the last catch-up; when
        none were offered (a caller that only reports counts), it is ``added``.
        """
        offered, tallied = self._away_offered, self._away
        self._away_offered, self._away = 0, []
        count = len(tallied) if offered else max(added, 0)
        if count == 0 or not prefs.enabled:
            return []
        urgent = [r for r in tallied if urgency_for(r.priority) == "critical"]
        if self._held_back(prefs) and not (urgent and prefs.attention.urgent_breaks_through):
            return []
        title = f"{count} new while you were away"
        if urgent:
            title += f", {len(urgent)} urgent"
            lines = [worded_line(r.title, "urgent") for r in _newest(urgent)]
        else:
            lines = [worded_line(r.title, emphasis_for(r.priority)) for r in _newest(tallied)]
        project = _common_project(tallied)
        if project is not None:
            lines.insert(0, f"In {plain_line(project, PROJECT_LIMIT)}")
        body = plain_block("\n".join(lines)) or "They are in the history."
        return [
            Toast(
                kind="away",
                title=plain_line(title),
                body=body,
                urgency="critical" if urgent else _highest(tallied, floor="normal"),
                notification_id=None,
                url=None,
                sound=prefs.sound,
                emphasis=_loudest(tallied),
            )
        ]

    def flush(self, prefs: ToastPreferences) -> list[Toast]:
        """Close the burst window if it has ended; its summary, if anything was held.

        Call it when :meth:`next_flush_in` says; a call that comes early returns nothing
        and leaves the window as it is (ask :meth:`next_flush_in` again).
        """
        return self._close_window_if_due(self._clock(), prefs)

    def next_flush_in(self) -> float | None:
        """Seconds until :meth:`flush` has a summary to give, or None when nothing is held."""
        if not self._held or self._window_end is None:
            return None
        return max(0.0, self._window_end - self._clock())

    def discard(self, ids: Iterable[int]) -> None:
        """Rows read or deleted elsewhere stop counting toward a pending summary or away toast."""
        gone = set(ids)
        self._held = [r for r in self._held if r.id not in gone]
        self._away = [r for r in self._away if r.id not in gone]

    # --- internals -------------------------------------------------------------------

    def _may_toast(self, request: ToastRequest, prefs: ToastPreferences) -> bool:
        if not prefs.enabled or request.is_read:
            return False
        return prefs.attention.may_interrupt(
            priority=request.priority,
            project_id=request.project_id,
            event_type=request.event_type,
            now=self._now(),
        )

    def _held_back(self, prefs: ToastPreferences) -> bool:
        """Whether do-not-disturb or quiet hours hold back non-urgent toasts right now."""
        return prefs.attention.silence(self._now()) is not None

    def _open_window(self, start: float, *, quota: int) -> None:
        self._window_end = start + self._burst_window
        self._window_singles = 0
        self._window_quota = quota

    def _close_window_if_due(self, moment: float, prefs: ToastPreferences) -> list[Toast]:
        if self._window_end is None or moment < self._window_end:
            return []
        ended_at = self._window_end
        held, self._held = self._held, []
        self._window_end = None
        if not held:
            return []
        # The window overflowed: the storm may go on, so the next window starts spent.
        self._open_window(ended_at, quota=0)
        return self._summary(held, prefs)

    def _summary(self, held: Sequence[ToastRequest], prefs: ToastPreferences) -> list[Toast]:
        # Preferences may have changed while these were held: apply them as they are now.
        kept = [r for r in held if prefs.enabled and _worth(r, prefs)]
        if not kept or self._held_back(prefs):
            return []
        count = len(kept)
        project = _common_project(kept)
        if project is not None:
            noun = "update" if count == 1 else "updates"
            title = f"{count} more {noun} in {plain_line(project, PROJECT_LIMIT)}"
        else:
            title = f"{count} more {'notification' if count == 1 else 'notifications'}"
        newest = _newest(kept)
        lines = [worded_line(r.title, emphasis_for(r.priority)) for r in newest]
        if count > len(newest):
            lines.append(f"and {count - len(newest)} more in the history")
        urgency = _highest(kept, floor="low")
        return [
            Toast(
                kind="summary",
                title=plain_line(title),
                body=plain_block("\n".join(lines)),
                urgency=urgency,
                notification_id=None,
                url=None,
                sound=prefs.sound and urgency != "low",
                emphasis=_loudest(kept),
            )
        ]

    def _single(self, request: ToastRequest, prefs: ToastPreferences) -> Toast:
        urgency = urgency_for(request.priority)
        project = plain_line(request.project_title or "", PROJECT_LIMIT)
        message = plain_block(request.message)
        body = f"{project} \u00b7 {message}" if project and message else project or message
        emphasis = emphasis_for(request.priority)
        return Toast(
            kind="single",
            title=worded_line(request.title, emphasis, untitled="(no title)"),
            body=plain_block(body),
            urgency=urgency,
            notification_id=request.id,
            url=request.url,
            sound=prefs.sound and urgency != "low",
            emphasis=emphasis,
        )

    def _tally_catch_up(self, request: ToastRequest, prefs: ToastPreferences) -> None:
        self._away_offered += 1
        if request.is_read or not _worth(request, prefs):
            return
        self._away.append(request)

    def _remember(self, notification_id: int) -> None:
        self._seen[notification_id] = None
        while len(self._seen) > _REMEMBERED_IDS:
            self._seen.popitem(last=False)


def _worth(request: ToastRequest, prefs: ToastPreferences) -> bool:
    """Whether ``request`` would interrupt were it not for do-not-disturb or quiet hours."""
    return prefs.attention.worth_interrupting(
        priority=request.priority, project_id=request.project_id, event_type=request.event_type
    )


def _newest(requests: Sequence[ToastRequest]) -> list[ToastRequest]:
    return sorted(requests, key=lambda r: r.seq, reverse=True)[:LISTED_TITLES]


def _common_project(requests: Sequence[ToastRequest]) -> str | None:
    """The project title all of ``requests`` share, or None when they differ or have none."""
    ids = {r.project_id for r in requests}
    if len(ids) != 1 or None in ids:
        return None
    titles = [r.project_title for r in requests if r.project_title]
    return titles[-1] if titles else None


def _highest(requests: Sequence[ToastRequest], *, floor: Urgency) -> Urgency:
    best = floor
    for request in requests:
        urgency = urgency_for(request.priority)
        if _URGENCY_RANK[urgency] > _URGENCY_RANK[best]:
            best = urgency
    return best


def _loudest(requests: Sequence[ToastRequest]) -> ToastEmphasis:
    loudest: ToastEmphasis = "plain"
    for request in requests:
        emphasis = emphasis_for(request.priority)
        if _EMPHASIS_RANK[emphasis] > _EMPHASIS_RANK[loudest]:
            loudest = emphasis
    return loudest


def _clean(text: str) -> str:
    """Drop control characters and anything that is not encodable (lone surrogates)."""
    encodable = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", encodable)
