"""How the client words a moment (tray_app/time_words.py): the tray menu's short age,
the history's and presence panel's phrase, and naive times read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tray_app.time_words import as_aware, describe_age

NOW = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
NOON = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("created", "words"),
    [
        (NOW + timedelta(minutes=2), "now"),
        (NOW - timedelta(seconds=30), "now"),
        (NOW - timedelta(minutes=5), "5 min"),
        (NOW - timedelta(minutes=59), "59 min"),
        (NOW - timedelta(hours=2), "2 h"),
        (NOW - timedelta(hours=15), "15 h"),
        (NOW - timedelta(hours=16), "yesterday"),
        (NOW - timedelta(days=3), "3 days"),
        (NOW - timedelta(days=10), "4 Mar"),
        (datetime(2024, 12, 30, tzinfo=UTC), "30 Dec 2024"),
    ],
)
def test_a_short_age(created: datetime, words: str) -> None:
    assert describe_age(created, NOW) == words


def test_yesterday_is_judged_in_the_zone_of_now() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2025, 3, 15, 1, 30, tzinfo=tokyo)  # 16:30 UTC on the 14th
    created = datetime(2025, 3, 14, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo, the 14th
    assert describe_age(created, now) == "yesterday"
    naive_utc = datetime(2025, 3, 14, 16, 0)  # naive is read as UTC, like the store writes
    assert describe_age(naive_utc, now) == "30 min"


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(seconds=-30), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=5), "5 min ago"),
        (timedelta(minutes=59, seconds=59), "59 min ago"),
        (timedelta(hours=3), "3 h ago"),
    ],
)
def test_a_phrase_reads_like_a_person(elapsed: timedelta, expected: str) -> None:
    assert describe_age(NOON - elapsed, NOON, ago=True) == expected


def test_a_phrase_names_days_and_dates() -> None:
    now = datetime(2025, 3, 14, 12, 0).astimezone()
    assert describe_age(now - timedelta(days=1, hours=2), now, ago=True) == "yesterday"
    assert describe_age(now - timedelta(days=4), now, ago=True) == "4 days ago"
    assert describe_age(datetime(2025, 1, 2, 9, 0).astimezone(), now, ago=True) == "2 Jan"
    assert describe_age(datetime(2023, 11, 20, 9, 0).astimezone(), now, ago=True) == "20 Nov 2023"


def test_a_naive_time_is_utc() -> None:
    assert as_aware(datetime(2025, 3, 14, 16, 0)) == datetime(2025, 3, 14, 16, 0, tzinfo=UTC)
    tokyo = timezone(timedelta(hours=9))
    assert as_aware(datetime(2025, 3, 14, 16, 0, tzinfo=tokyo)).tzinfo is tokyo
