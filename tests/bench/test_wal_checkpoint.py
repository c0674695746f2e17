"""bench/wal_checkpoint.py's pure parts: the modes it runs and the audiences it names."""

from __future__ import annotations

import pytest

from bench.wal_checkpoint import _audience, _mode_settings


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("auto", ("auto", "0", None)),
        ("none", ("none", "0", None)),
        ("thread", ("thread", "1", None)),
        ("thread:0.25:16", ("thread", "0.25", 16 * 1024 * 1024)),
    ],
)
def test_modes(mode: str, expected: tuple[str, str, int | None]) -> None:
    assert _mode_settings(mode) == expected


def test_audiences_follow_b3s_seeding() -> None:
    projects = [11, 12]
    assert _audience("user.u7", projects) == {"usernames": ["bu7"]}
    assert _audience("project.1", projects) == {"projects": [12]}
    assert _audience("role.r3", projects) == {"roles": ["bench-r3"]}
    assert _audience("everyone", projects) == {"everyone": True}
