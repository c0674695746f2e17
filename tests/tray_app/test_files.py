"""Whole-file writes (tray_app/files.py): the old file or the new one, never half."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tray_app import config
from tray_app.files import write_atomically
from tray_app.preferences import PREFERENCES_FILE, Preferences, SavedPreferences


def test_the_content_is_replaced_and_nothing_else_is_left(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "settings.json"
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["settings.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    write_atomically(path, b"three", mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the flush to disk: the old content stays, whole."""
    path = tmp_path / "settings.json"
    write_atomically(path, b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the disk cannot be filled here: its error is raised
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["settings.json"]


def test_two_writers_at_once_never_share_a_temporary(tmp_path: Path) -> None:
    """The tray app and a second start may save the settings together: each save is
    whole (with a fixed temporary name one writer renamed away, or half over, the
    other's file)."""
    names = [chr(97 + n) * 50_000 for n in range(8)]
    errors: list[BaseException] = []

    def save(name: str) -> None:
        try:
            for _ in range(20):
                config.Settings(username=name).save(tmp_path)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert config.Settings.load(tmp_path).username in names
    assert os.listdir(tmp_path) == ["settings.json"]


def test_settings_and_preferences_are_written_whole(tmp_path: Path) -> None:
    settings = config.Settings(server_url="https://notify.example.com", username="alice")
    settings.save(tmp_path)
    assert config.Settings.load(tmp_path).username == "alice"
    SavedPreferences(Preferences(sound=False), frozenset({"sound"})).save(tmp_path)
    assert SavedPreferences.load(tmp_path).values.sound is False
    assert sorted(os.listdir(tmp_path)) == sorted(["settings.json", PREFERENCES_FILE])
