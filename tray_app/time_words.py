"""How the client words a moment, and its one rule for a time without a zone.

The store hands out aware UTC datetimes and the server sends UTC ("...Z"), so a
naive datetime is read as UTC everywhere a moment is worded (``as_aware``). The tray
menu says how old a notification is in a word or two ("5 min"); the history window
and the presence panel in a phrase ("5 min ago"): one function with one set of
rules, ``describe_age``, and ``ago`` choosing the phrase.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_aware(moment: datetime) -> datetime:
    """``moment`` with a zone: a naive one is UTC (what the store and the server give)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def describe_age(moment: datetime, now: datetime, *, ago: bool = False) -> str:
    """How long before ``now`` ``moment`` was: "now", "5 min", "2 h", "yesterday",
    "3 days", "4 Mar", "30 Dec 2024"; with ``ago``, "just now", "5 min ago", "2 h ago",
    "yesterday", "3 days ago" and the same dates.

    Calendar words ("yesterday", the date) are judged in ``now``'s zone: pass the
    local time for the person reading it. A moment after ``now`` (two machines' clocks
    disagree by a little) reads as now.
    """
    now = as_aware(now)
    moment = as_aware(moment).astimezone(now.tzinfo)
    seconds = (now - moment).total_seconds()
    suffix = " ago" if ago else ""
    if seconds < 60:
        return "just now" if ago else "now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min{suffix}"
    days = (now.date() - moment.date()).days
    if days == 0:
        return f"{int(seconds // 3600)} h{suffix}"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days{suffix}"
    if moment.year == now.year:
        return f"{moment.day} {moment:%b}"
    return f"{moment.day} {moment:%b %Y}"
