"""Preferences persist as JSON and survive damage; the user's own layer keeps only their choices."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from tray_app.preferences import (
    PREFERENCE_NAMES,
    PREFERENCES_FILE,
    Preferences,
    SavedPreferences,
    legacy_attention_change,
    parse_quiet_hours,
)


def _load(directory: Path) -> Preferences:
    return SavedPreferences.load(directory).values


def _save_every_field(preferences: Preferences, directory: Path) -> None:
    SavedPreferences(preferences, frozenset(PREFERENCE_NAMES)).save(directory)


def test_defaults_when_no_file(tmp_path: Path) -> None:
    assert _load(tmp_path) == Preferences()
    assert Preferences() == Preferences(
        toasts_enabled=True, sound=True, start_at_login=False, remember_me=True
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    original = Preferences(
        toasts_enabled=False, sound=False, start_at_login=True, remember_me=False
    )
    _save_every_field(original, tmp_path / "nested" / "config")
    loaded = _load(tmp_path / "nested" / "config")
    assert loaded == original
    raw = json.loads((tmp_path / "nested" / "config" / PREFERENCES_FILE).read_text())
    assert raw == {
        "toasts_enabled": False,
        "sound": False,
        "start_at_login": True,
        "remember_me": False,
    }


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    _save_every_field(Preferences(sound=False), tmp_path)
    _save_every_field(Preferences(sound=True, toasts_enabled=False), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREFERENCES_FILE]
    assert _load(tmp_path) == Preferences(toasts_enabled=False)


def test_failed_save_raises_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    # The destination name taken by a directory makes the final rename fail.
    (tmp_path / PREFERENCES_FILE).mkdir()
    with pytest.raises(IsADirectoryError):
        _save_every_field(Preferences(sound=True), tmp_path)
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
        assert _load(tmp_path) == Preferences()
    assert any("preferences" in record.getMessage() for record in caplog.records)


def test_undecodable_bytes_give_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / PREFERENCES_FILE).write_bytes(b"\xff\xfe\x00{")
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        assert _load(tmp_path) == Preferences()
    assert caplog.records


def test_wrong_typed_fields_fall_back_one_by_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / PREFERENCES_FILE).write_text(
        json.dumps(
            {
                "toasts_enabled": "yes",  # wrong type
                "sound": False,  # fine: kept
                "start_at_login": 1,  # an int is not a bool
                "remember_me": False,  # fine: kept
                "unknown_field": 42,  # ignored
            }
        ),
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        loaded = _load(tmp_path)
    assert loaded == Preferences(sound=False, remember_me=False)
    warned = " ".join(record.getMessage() for record in caplog.records)
    for name in ("toasts_enabled", "start_at_login"):
        assert name in warned


def test_unreadable_file_gives_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / PREFERENCES_FILE).mkdir()  # reading a directory raises an OSError
    with caplog.at_level(logging.WARNING, logger="tray_app.preferences"):
        assert _load(tmp_path) == Preferences()
    assert caplog.records


# --- the user's own layer --------------------------------------------------------------


def test_saved_preferences_know_which_fields_the_user_chose(tmp_path: Path) -> None:
    (tmp_path / PREFERENCES_FILE).write_text(
        json.dumps({"sound": False, "start_at_login": True, "toasts_enabled": "x"}),
        encoding="utf-8",
    )
    saved = SavedPreferences.load(tmp_path)
    # A field dropped for its wrong type is not a choice.
    assert saved.chosen == {"sound", "start_at_login"}
    assert saved.values == Preferences(sound=False, start_at_login=True)
    assert _load(tmp_path) == saved.values


def test_saved_preferences_write_only_the_chosen_fields(tmp_path: Path) -> None:
    saved = SavedPreferences().choose(sound=False).choose(remember_me=True)
    assert saved.chosen == {"sound", "remember_me"}
    saved.save(tmp_path)
    raw = json.loads((tmp_path / PREFERENCES_FILE).read_text())
    assert raw == {"remember_me": True, "sound": False}
    assert SavedPreferences.load(tmp_path) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREFERENCES_FILE]


def test_a_full_file_counts_every_field_as_chosen(tmp_path: Path) -> None:
    _save_every_field(Preferences(sound=False), tmp_path)
    saved = SavedPreferences.load(tmp_path)
    assert saved.chosen == set(PREFERENCE_NAMES)
    assert saved.values == Preferences(sound=False)


def test_missing_or_damaged_file_means_nothing_chosen(tmp_path: Path) -> None:
    assert SavedPreferences.load(tmp_path) == SavedPreferences()
    (tmp_path / PREFERENCES_FILE).write_text("{oops", encoding="utf-8")
    assert SavedPreferences.load(tmp_path).chosen == frozenset()


def test_choose_refuses_what_is_not_a_preference() -> None:
    with pytest.raises(TypeError):
        SavedPreferences().choose(colour="blue")
    with pytest.raises(ValueError, match="colour"):
        SavedPreferences(chosen=frozenset({"colour"}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("22:00", "expected"),
        (["22:00"], "expected"),
        (["25:00", "07:00"], "24-hour"),
        (["22:00", "7pm"], "'7pm'"),
    ],
)
def test_parse_quiet_hours_says_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        parse_quiet_hours(value)
    assert parse_quiet_hours(None) is None
    assert parse_quiet_hours(["22:00", "07:30"]) == (time(22), time(7, 30))


def test_attention_settings_of_an_older_file_are_read_once_for_the_server(
    tmp_path: Path,
) -> None:
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    (tmp_path / PREFERENCES_FILE).write_text(
        json.dumps(
            {
                "sound": False,
                "quiet_hours": ["22:30", "06:45"],
                "muted_projects": [7, 3],
                "dnd_until": "2030-01-01T14:00:00+02:00",
            }
        ),
        encoding="utf-8",
    )
    change = legacy_attention_change(tmp_path, now=now - timedelta(hours=1))
    assert change["dnd"] == {"until": "2030-01-01T12:00:00Z"}
    assert change["quiet_hours"] == {"start": "22:30", "end": "06:45"}
    assert change["muted_projects"] == [3, 7]
    # A do-not-disturb that has ended is not handed on.
    assert "dnd" not in legacy_attention_change(tmp_path, now=now + timedelta(minutes=1))
    # The file's own preferences are unaffected, and saving drops the old keys.
    saved = SavedPreferences.load(tmp_path)
    assert saved.values == Preferences(sound=False)
    saved.save(tmp_path)
    assert legacy_attention_change(tmp_path, now=now) == {}


@pytest.mark.parametrize(
    "content",
    [
        "{oops",
        "[]",
        json.dumps({"quiet_hours": "nights", "muted_projects": ["x"], "dnd_until": 5}),
        json.dumps({"quiet_hours": None, "muted_projects": [], "dnd_until": None}),
    ],
)
def test_an_unusable_older_file_hands_on_nothing(tmp_path: Path, content: str) -> None:
    (tmp_path / PREFERENCES_FILE).write_text(content, encoding="utf-8")
    assert legacy_attention_change(tmp_path, now=datetime(2030, 1, 1, tzinfo=UTC)) == {}
    assert legacy_attention_change(tmp_path / "missing", now=datetime(2030, 1, 1, tzinfo=UTC)) == {}
