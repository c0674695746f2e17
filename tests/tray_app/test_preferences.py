"""Preferences persist as JSON and survive damage; IT's managed file is read defensively."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from tray_app.preferences import (
    MANAGED_FILE_ENV,
    PREFERENCES_FILE,
    ManagedSettings,
    Preferences,
    managed_settings,
    managed_settings_path,
)


def test_defaults_when_no_file(tmp_path: Path) -> None:
    assert Preferences.load(tmp_path) == Preferences()
    assert Preferences() == Preferences(
        toasts_enabled=True,
        sound=True,
        quiet_hours=None,
        muted_projects=frozenset(),
        dnd_until=None,
        start_at_login=False,
        remember_me=True,
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    original = Preferences(
        toasts_enabled=False,
        sound=False,
        quiet_hours=(time(22, 30), time(6, 45)),
        muted_projects=frozenset({3, 1, 7}),
        dnd_until=datetime(2031, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2))),
        start_at_login=True,
        remember_me=False,
    )
    original.save(tmp_path / "nested" / "config")
    loaded = Preferences.load(tmp_path / "nested" / "config")
    assert loaded == original
    assert loaded.dnd_until == datetime(2031, 5, 6, 5, 8, tzinfo=UTC)
    assert loaded.dnd_until is not None
    assert loaded.dnd_until.tzinfo == UTC
    raw = json.loads((tmp_path / "nested" / "config" / PREFERENCES_FILE).read_text())
    assert raw["quiet_hours"] == ["22:30", "06:45"]
    assert raw["muted_projects"] == [1, 3, 7]


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    Preferences(sound=False).save(tmp_path)
    Preferences(sound=True, toasts_enabled=False).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREFERENCES_FILE]
    assert Preferences.load(tmp_path) == Preferences(toasts_enabled=False)


def test_failed_save_raises_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    # The destination name taken by a directory makes the final rename fail.
    (tmp_path / PREFERENCES_FILE).mkdir()
    with pytest.raises(IsADirectoryError):
        Preferences(sound=True).save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [PREFERENCES_FILE]
    assert (tmp_path / PREFERENCES_FILE).is_dir()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        '"a string"',
        "",
        "\x00\xff garbage",
    ],
)
def test_damaged_file_gives_defaults_and_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / PREFERENCES_FILE).write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        assert Preferences.load(tmp_path) == Preferences()
    assert any("preferences" in record.getMessage() for record in caplog.records)


def test_undecodable_bytes_give_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / PREFERENCES_FILE).write_bytes(b"\xff\xfe\x00{")
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        assert Preferences.load(tmp_path) == Preferences()
    assert caplog.records


def test_wrong_typed_fields_fall_back_one_by_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / PREFERENCES_FILE).write_text(
        json.dumps(
            {
                "toasts_enabled": "yes",  # wrong type
                "sound": False,  # fine: kept
                "quiet_hours": ["25:00", "07:00"],  # not a time
                "muted_projects": [1, "two", True],  # mixed
                "dnd_until": "2030-01-01T10:00:00",  # no time zone
                "start_at_login": 1,  # an int is not a bool
                "remember_me": False,  # fine: kept
                "unknown_field": 42,  # ignored
            }
        ),
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        loaded = Preferences.load(tmp_path)
    assert loaded == Preferences(sound=False, remember_me=False)
    warned = " ".join(record.getMessage() for record in caplog.records)
    for name in ("toasts_enabled", "quiet_hours", "muted_projects", "dnd_until", "start_at_login"):
        assert name in warned


def test_unreadable_file_gives_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / PREFERENCES_FILE).mkdir()  # reading a directory raises an OSError
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        assert Preferences.load(tmp_path) == Preferences()
    assert caplog.records


def test_naive_dnd_until_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Preferences(dnd_until=datetime(2030, 1, 1))


def test_dnd_active_until_its_end() -> None:
    end = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    preferences = Preferences(dnd_until=end)
    assert preferences.dnd_active(end - timedelta(seconds=1))
    assert not preferences.dnd_active(end)
    assert not preferences.dnd_active(end + timedelta(hours=1))
    # Another zone, same instant.
    berlin = timezone(timedelta(hours=1))
    assert preferences.dnd_active(datetime(2030, 1, 1, 12, 59, tzinfo=berlin))
    assert not Preferences().dnd_active(end)
    with pytest.raises(ValueError, match="timezone-aware"):
        preferences.dnd_active(datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        # Same day.
        (time(9), time(17), [time(9), time(12), time(16, 59)], [time(8, 59), time(17), time(23)]),
        # Wraps midnight.
        (
            time(22),
            time(7),
            [time(22), time(23, 59), time(0), time(6, 59)],
            [time(7), time(12), time(21, 59)],
        ),
        # Equal ends: an empty interval.
        (time(8), time(8), [], [time(8), time(0), time(20)]),
    ],
)
def test_quiet_hours(start: time, end: time, inside: list[time], outside: list[time]) -> None:
    preferences = Preferences(quiet_hours=(start, end))
    day = datetime(2030, 3, 4)  # naive: local wall-clock time
    for moment in inside:
        assert preferences.in_quiet_hours(datetime.combine(day, moment)), moment
    for moment in outside:
        assert not preferences.in_quiet_hours(datetime.combine(day, moment)), moment


def test_no_quiet_hours_means_never_quiet() -> None:
    assert not Preferences().in_quiet_hours(datetime(2030, 1, 1, 23))


def test_quiet_hours_convert_an_aware_time_to_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    import time as time_module

    time_module.tzset()
    try:
        preferences = Preferences(quiet_hours=(time(22), time(7)))
        # 14:00 UTC is 23:00 in Tokyo: quiet there, although 14:00 is not.
        assert preferences.in_quiet_hours(datetime(2030, 1, 1, 14, tzinfo=UTC))
        assert not preferences.in_quiet_hours(datetime(2030, 1, 1, 3, tzinfo=UTC))  # 12:00
    finally:
        monkeypatch.undo()
        time_module.tzset()


def test_is_muted() -> None:
    preferences = Preferences(muted_projects=frozenset({4}))
    assert preferences.is_muted(4)
    assert not preferences.is_muted(5)
    assert not preferences.is_muted(None)


# --- managed settings ------------------------------------------------------------------


def test_missing_managed_file_means_nothing_is_managed(tmp_path: Path) -> None:
    managed = managed_settings(tmp_path / "absent.json")
    assert managed == ManagedSettings()
    assert not managed.server_locked


def test_managed_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "managed.json"
    path.write_text(
        json.dumps(
            {
                "server_url": " https://notify.example.com/ ",
                "allow_remember_me": False,
                "start_at_login": True,
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv(MANAGED_FILE_ENV, str(path))
    assert managed_settings_path() == path
    managed = managed_settings()
    assert managed == ManagedSettings(
        server_url="https://notify.example.com",
        allow_remember_me=False,
        start_at_login=True,
        source=path,
    )
    assert managed.server_locked


def test_default_managed_path_is_the_system_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MANAGED_FILE_ENV, raising=False)
    monkeypatch.delenv("XDG_CONFIG_DIRS", raising=False)
    if sys.platform.startswith("linux"):
        assert managed_settings_path() == Path("/etc/xdg/tray-notifier/managed.json")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{broken", ManagedSettings()),
        ("[]", ManagedSettings()),
        (json.dumps({"server_url": "ftp://example.com"}), None),
        (json.dumps({"server_url": "notify.example.com"}), None),
        (json.dumps({"server_url": 42, "allow_remember_me": "no"}), None),
        (json.dumps({"start_at_login": "always"}), None),
    ],
)
def test_bad_managed_values_are_ignored_with_a_warning(
    tmp_path: Path,
    content: str,
    expected: ManagedSettings | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "managed.json"
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        managed = managed_settings(path)
    assert managed == (expected or ManagedSettings(source=path))
    assert not managed.server_locked
    assert managed.allow_remember_me is True
    assert managed.start_at_login is None
    assert caplog.records
