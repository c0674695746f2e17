"""IT's managed configuration: the file format, every kind of bad input (with the file and
line in the message), the precedence of locked and unlocked keys over the user's own
preferences, and where the file is looked for on each platform.

Everything reads real files in a temporary directory; the permission test runs the loader
without root's file-permission bypass (``setpriv``) when the tests run as root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import time
from pathlib import Path, PurePosixPath, PureWindowsPath

import certifi
import pytest
from msgspec.structs import replace

from tray_app.managed import (
    MANAGED_FILE_ENV,
    MANAGED_KEYS,
    MAX_FILE_BYTES,
    REMEMBER_ME_TURNED_OFF,
    WEBSOCKET_RETRY_ENVIRONMENT,
    ManagedConfig,
    ManagedSetting,
    PreferenceKeeper,
    display_value,
    load_managed_config,
    managed_config_locations,
    managed_config_path,
    parse_managed_config,
    redact_url,
)
from tray_app.preferences import PREFERENCES_FILE, Preferences, SavedPreferences

SOURCE = Path("/etc/xdg/tray-notifier/managed.json")
REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(config: ManagedConfig) -> str:
    assert len(config.problems) == 1, config.problems
    return config.problems[0]


# --- the format ------------------------------------------------------------------------


def test_a_plain_value_is_managed_and_locked() -> None:
    # Today's files: one plain key. It keeps meaning "IT fixed the server".
    config = parse_managed_config('{"server_url": " https://notify.example.com/ "}', SOURCE)
    assert config.problems == ()
    assert config.server_url == "https://notify.example.com"
    assert config.is_managed("server_url")
    assert config.is_locked("server_url")
    assert not config.is_managed("proxy")
    assert not config.is_locked("proxy")
    assert config.proxy is None
    assert config.ca_bundle is None
    assert config.start_at_login is None
    assert config.allow_remember_me is True


def test_every_key_in_both_forms() -> None:
    text = """{
  "_comment": "Rolled out by IT, ticket 4711",
  "server_url": "https://notify.example.com",
  "start_at_login": {"value": true},
  "toasts_enabled": {"value": false, "locked": false},
  "sound": false,
  "quiet_hours": {"value": ["22:00", "07:00"], "locked": false},
  "allow_remember_me": false,
  "ca_bundle": "/etc/ssl/company-ca.pem",
  "proxy": {"value": "http://proxy.example.com:3128/", "locked": false},
  "live_transport": "http"
}"""
    config = parse_managed_config(text, SOURCE)
    assert config.problems == ()
    assert [s.key for s in config.settings] == list(MANAGED_KEYS)
    assert [(s.key, s.locked, s.line) for s in config.settings] == [
        ("server_url", True, 3),
        ("start_at_login", True, 4),
        ("toasts_enabled", False, 5),
        ("sound", True, 6),
        ("quiet_hours", False, 7),
        ("allow_remember_me", True, 8),
        ("ca_bundle", True, 9),
        ("proxy", False, 10),
        ("live_transport", True, 11),
    ]
    assert config.start_at_login is True
    quiet = config.setting("quiet_hours")
    assert quiet is not None
    assert quiet.value == (time(22), time(7))
    assert config.allow_remember_me is False
    assert config.is_locked("allow_remember_me")  # a policy forbidding is always in force
    assert config.ca_bundle == Path("/etc/ssl/company-ca.pem")
    assert config.proxy == "http://proxy.example.com:3128"
    assert config.live_transport == "http"
    assert config.locked_preferences() == {"start_at_login", "sound", "remember_me"}


def test_allow_remember_me_true_locks_nothing() -> None:
    config = parse_managed_config('{"allow_remember_me": true}', SOURCE)
    assert config.is_managed("allow_remember_me")
    assert not config.is_locked("allow_remember_me")
    assert config.locked_preferences() == frozenset()


@pytest.mark.parametrize("value", ["system", "none", " SYSTEM ", "https://u:p@proxy:8443"])
def test_proxy_values(value: str) -> None:
    config = parse_managed_config(json.dumps({"proxy": value}), SOURCE)
    assert config.problems == ()
    expected = value.strip().lower() if "://" not in value else value
    assert config.proxy == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", None), ("websocket", "websocket"), (" HTTP ", "http"), ({"value": "http"}, "http")],
)
def test_live_transport_values_reach_the_transport(value: object, expected: str | None) -> None:
    config = parse_managed_config(json.dumps({"live_transport": value}), SOURCE)
    assert config.problems == ()
    assert config.live_transport == expected
    assert config.transport({}).live == expected


@pytest.mark.parametrize("value", ["sse", "", 1, None, ["http"]])
def test_a_bad_live_transport_is_named_and_ignored(value: object) -> None:
    config = parse_managed_config(json.dumps({"live_transport": value}), SOURCE)
    problem = only_problem(config)
    assert "live_transport" in problem
    assert '"auto", "websocket" or "http"' in problem
    assert config.live_transport is None


@pytest.mark.parametrize(
    ("text", "expected"), [("30", 30.0), (" 2.5 ", 2.5), ("0", None), ("soon", None), ("", None)]
)
def test_the_websocket_retry_comes_from_the_environment(
    text: str, expected: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    transport = ManagedConfig(SOURCE).transport({WEBSOCKET_RETRY_ENVIRONMENT: text})
    assert transport.websocket_retry == expected
    if expected is None and text:
        assert WEBSOCKET_RETRY_ENVIRONMENT in caplog.text


def test_an_empty_object_manages_nothing() -> None:
    config = parse_managed_config("{}\n", SOURCE)
    assert config == ManagedConfig(SOURCE)
    assert not any(config.is_managed(key) for key in MANAGED_KEYS)


def test_asking_about_a_key_that_does_not_exist_is_a_bug() -> None:
    with pytest.raises(KeyError):
        ManagedConfig().is_locked("server")


# --- bad input: file and line in every message -----------------------------------------


def test_a_json_syntax_error_names_file_line_and_column_and_applies_nothing() -> None:
    text = '{\n  "server_url": "https://a.example",\n  "sound": false,\n}\n'
    config = parse_managed_config(text, SOURCE)
    assert config.settings == ()
    message = only_problem(config)
    assert message.startswith(f"{SOURCE}, line 4, column 1: not valid JSON")
    assert "nothing in the file applies" in message


def test_a_top_level_that_is_not_an_object_applies_nothing() -> None:
    config = parse_managed_config('\n\n["https://a.example"]', SOURCE)
    assert config.settings == ()
    assert only_problem(config).startswith(f"{SOURCE}, line 3: expected a JSON object")


def test_an_unknown_key_is_named_with_its_line_and_the_rest_applies() -> None:
    text = '{\n  "server_url": "https://a.example",\n  "proxi": "none",\n  "colour": 1\n}'
    config = parse_managed_config(text, SOURCE)
    assert config.server_url == "https://a.example"
    assert config.problems == (
        f'{SOURCE}, line 3: unknown key "proxi" (did you mean "proxy"?); ignored.',
        f'{SOURCE}, line 4: unknown key "colour" (known keys: {", ".join(MANAGED_KEYS)}); ignored.',
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("server_url", "notify.example.com", "starting with https:// or http://"),
        ("server_url", "ftp://notify.example.com", "starting with https:// or http://"),
        ("server_url", "https://notify.example.com:port", "starting with https:// or http://"),
        ("server_url", 42, "got the number 42"),
        ("start_at_login", "yes", 'expected true or false, got the text "yes"'),
        ("toasts_enabled", 1, "expected true or false, got the number 1"),
        ("sound", None, "expected true or false, got null"),
        ("quiet_hours", "22:00-07:00", 'expected ["HH:MM", "HH:MM"]'),
        ("quiet_hours", ["22:00", "24:30"], "24-hour times"),
        ("allow_remember_me", [], "expected true or false, got a list"),
        ("ca_bundle", "company-ca.pem", 'expected an absolute path, got "company-ca.pem"'),
        ("ca_bundle", {"path": "/x"}, None),  # an object without "value"
        ("proxy", "socks5://proxy:1080", "or an address starting with http:// or https://"),
        ("proxy", True, "got true"),
    ],
)
def test_a_wrong_value_is_named_with_its_line_and_the_rest_applies(
    key: str, value: object, expected: str | None
) -> None:
    other = "toasts_enabled" if key != "toasts_enabled" else "sound"
    text = f'{{\n  "{other}": false,\n  {json.dumps(key)}: {json.dumps(value)}\n}}\n'
    config = parse_managed_config(text, SOURCE)
    message = only_problem(config)
    assert message.startswith(f"{SOURCE}, line 3: {json.dumps(key)}")
    assert message.endswith("; ignored.")
    if expected is not None:
        assert expected in message
    assert not config.is_managed(key)
    kept = config.setting(other)  # the rest applies
    assert kept is not None
    assert kept.value is False


def test_a_proxy_password_never_appears_in_a_message() -> None:
    config = parse_managed_config('{"proxy": "socks5://bob:hunter2@proxy:1080"}', SOURCE)
    message = only_problem(config)
    assert "hunter2" not in message
    assert "bob:***@proxy:1080" in message


@pytest.mark.parametrize(
    ("value_text", "line", "expected"),
    [
        ('{\n    "value": true,\n    "lockd": false\n  }', 4, 'unknown field "lockd"'),
        ('{\n    "value": true,\n    "locked": "no"\n  }', 4, '"locked" of "start_at_login"'),
        ('{\n    "locked": false\n  }', 2, 'has no "value"'),
        ('{\n    "locked": false,\n    "value": "on"\n  }', 4, "expected true or false"),
    ],
)
def test_a_bad_value_object_names_the_line_inside_it(
    value_text: str, line: int, expected: str
) -> None:
    text = '{\n  "start_at_login": ' + value_text + "\n}"
    config = parse_managed_config(text, SOURCE)
    message = only_problem(config)
    assert message.startswith(f"{SOURCE}, line {line}: ")
    assert expected in message
    # The whole key is left out: a half-understood lock is not guessed at.
    assert not config.is_managed("start_at_login")


def test_a_key_given_twice_is_reported_and_the_last_one_applies() -> None:
    text = '{\n  "sound": true,\n  "proxy": "none",\n  "sound": false\n}'
    config = parse_managed_config(text, SOURCE)
    assert only_problem(config) == (
        f'{SOURCE}, line 4: "sound" is given more than once (also on line 2); the last one applies.'
    )
    sound = config.setting("sound")
    assert sound is not None
    assert (sound.value, sound.line) == (False, 4)


def test_loading_logs_each_problem_as_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "managed.json", '{\n  "sound": "loud",\n  "proxy": "none"\n}')
    with caplog.at_level(logging.WARNING, logger="tray_app.managed"):
        config = load_managed_config(path)
    assert config.source == path
    assert config.proxy == "none"
    assert [r.getMessage() for r in caplog.records] == [
        f"managed configuration: {config.problems[0]}"
    ]
    assert f"{path}, line 2:" in config.problems[0]


def test_a_missing_file_manages_nothing_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tray_app.managed"):
        assert load_managed_config(tmp_path / "absent.json") == ManagedConfig()
    assert caplog.records == []


def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    path.mkdir()
    config = load_managed_config(path)
    assert config.source == path
    assert config.settings == ()
    assert only_problem(config) == (
        f"{path}: it is a directory, not a file; nothing in the file applies."
    )


def test_a_broken_link(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    path.symlink_to(tmp_path / "gone.json")
    assert only_problem(load_managed_config(path)).startswith(f"{path}: it is a broken link")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    os.mkfifo(path)
    assert "not a regular file" in only_problem(load_managed_config(path))


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    padding = " " * MAX_FILE_BYTES
    write(path, '{"server_url": "https://a.example"' + padding + "}")
    config = load_managed_config(path)
    assert config.settings == ()
    assert only_problem(config) == (
        f"{path}: it is larger than 1024 KiB; nothing in the file applies."
    )


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    path.write_bytes(b'{\n  "proxy": "none",\n  "sound": "\xff"\n}')
    config = load_managed_config(path)
    assert config.settings == ()
    assert only_problem(config).startswith(f"{path}, line 3: it is not UTF-8 text")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "managed.json"
    path.write_bytes(b'\xef\xbb\xbf{"sound": false}')
    config = load_managed_config(path)
    assert config.problems == ()
    assert config.is_locked("sound")


def _problems_without_root_privilege(path: Path) -> list[str]:
    """The problems a user's app would see. Root reads every file, so as root the loader runs
    in a child process that keeps uid 0 but loses the capabilities that bypass file
    permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a mode 000 file is then as closed
    to it as to anyone, while this checkout stays readable wherever CI cloned it."""
    if os.geteuid() != 0:
        return list(load_managed_config(path).problems)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to drop root's file-permission bypass")
    script = (
        "import json, sys; from pathlib import Path; "
        "from tray_app.managed import load_managed_config; "
        "print(json.dumps(list(load_managed_config(Path(sys.argv[1])).problems)))"
    )
    unprivileged = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    result = subprocess.run(
        [*unprivileged, sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    problems: list[str] = json.loads(result.stdout)
    return problems


def test_a_file_the_user_cannot_read(tmp_path: Path) -> None:
    path = write(tmp_path / "managed.json", '{"server_url": "https://a.example"}')
    path.chmod(0o000)
    assert _problems_without_root_privilege(path) == [
        f"{path}: it cannot be read (permission denied; every user must be able to read it); "
        "nothing in the file applies."
    ]
    path.chmod(0o644)  # and readable, the same file applies
    assert _problems_without_root_privilege(path) == []


def test_a_file_in_a_directory_the_user_cannot_enter(tmp_path: Path) -> None:
    inner = tmp_path / "private"
    inner.mkdir()
    path = write(inner / "managed.json", "{}")
    inner.chmod(0o000)
    try:
        # Not "missing": IT meant something to apply, so the user is told.
        assert _problems_without_root_privilege(path) == [
            f"{path}: it cannot be read (permission denied; every user must be able to read "
            "it); nothing in the file applies."
        ]
    finally:
        inner.chmod(0o700)  # so pytest can clean up


def test_a_ca_bundle_is_checked_for_certificates(tmp_path: Path) -> None:
    good = tmp_path / "company-ca.pem"
    shutil.copyfile(certifi.where(), good)
    path = write(tmp_path / "managed.json", json.dumps({"ca_bundle": str(good)}))
    config = load_managed_config(path)
    assert config.problems == ()
    assert config.ca_bundle == good

    write(good, "not a certificate\n")
    config = load_managed_config(path)
    assert config.ca_bundle is None
    assert only_problem(config) == (
        f'{path}, line 1: "ca_bundle": {good} holds no PEM certificate; ignored '
        "(only the system's certificate authorities are trusted)."
    )

    good.unlink()
    config = load_managed_config(path)
    assert config.ca_bundle is None
    assert "cannot be read (No such file or directory)" in only_problem(config)


# --- precedence ------------------------------------------------------------------------

MANAGED_TEXT = json.dumps(
    {
        "sound": False,  # locked
        "quiet_hours": {"value": ["22:00", "07:00"], "locked": False},  # a default
        "start_at_login": {"value": True, "locked": False},  # a default
        "allow_remember_me": False,
    }
)


def test_locked_values_win_and_unlocked_ones_are_defaults() -> None:
    config = parse_managed_config(MANAGED_TEXT, SOURCE)
    # A user who chose nothing gets every managed value.
    effective = config.effective_preferences(SavedPreferences())
    assert effective == Preferences(sound=False, start_at_login=True, remember_me=False)
    # A user who chose sound, start at login and remember-me keeps only the unlocked choice.
    saved = SavedPreferences().choose(sound=True, start_at_login=False, remember_me=True)
    effective = config.effective_preferences(saved)
    assert effective.sound is False
    assert effective.start_at_login is False
    assert effective.remember_me is False


def test_quiet_hours_are_a_lock_or_a_suggestion_for_the_attention_settings() -> None:
    suggested = parse_managed_config(MANAGED_TEXT, SOURCE)
    assert suggested.quiet_hours_lock() is False
    assert suggested.quiet_hours_default() == (time(22), time(7))
    locked = parse_managed_config('{"quiet_hours": ["23:00", "06:00"]}', SOURCE)
    assert locked.quiet_hours_lock() == (time(23), time(6))
    assert locked.quiet_hours_default() is False
    locked_to_none = parse_managed_config('{"quiet_hours": null}', SOURCE)
    assert locked_to_none.quiet_hours_lock() is None
    unmanaged = parse_managed_config("{}", SOURCE)
    assert unmanaged.quiet_hours_lock() is False
    assert unmanaged.quiet_hours_default() is False


def test_a_plain_preferences_object_counts_as_chosen_everywhere() -> None:
    config = parse_managed_config(MANAGED_TEXT, SOURCE)
    effective = config.effective_preferences(Preferences(toasts_enabled=False))
    assert effective == Preferences(toasts_enabled=False, sound=False, remember_me=False)


def test_edits_record_only_unlocked_changes(tmp_path: Path) -> None:
    config = parse_managed_config(MANAGED_TEXT, SOURCE)
    saved = SavedPreferences()
    effective = config.effective_preferences(saved)
    edited = Preferences(
        toasts_enabled=False,  # changed, not managed
        sound=True,  # locked: refused
        start_at_login=False,  # changed, an unlocked default
        remember_me=True,  # locked by the policy: refused
    )
    assert effective.start_at_login is True
    after = config.record_choices(saved, edited)
    assert after.chosen == {"toasts_enabled", "start_at_login"}
    assert config.effective_preferences(after) == Preferences(
        toasts_enabled=False, sound=False, start_at_login=False, remember_me=False
    )
    after.save(tmp_path)
    assert json.loads((tmp_path / PREFERENCES_FILE).read_text()) == {
        "start_at_login": False,
        "toasts_enabled": False,
    }


def test_a_choice_made_before_a_lock_is_back_when_it_is_lifted() -> None:
    saved = SavedPreferences().choose(sound=True)
    locked = parse_managed_config('{"sound": false}', SOURCE)
    # While locked, an edit of something else keeps the user's own sound choice.
    saved = locked.record_choices(saved, Preferences(sound=False, toasts_enabled=False))
    assert saved.values.sound is True
    assert locked.effective_preferences(saved).sound is False
    unlocked = parse_managed_config('{"sound": {"value": false, "locked": false}}', SOURCE)
    assert unlocked.effective_preferences(saved).sound is True
    assert ManagedConfig().effective_preferences(saved).sound is True


def test_the_server_address() -> None:
    locked = parse_managed_config('{"server_url": "https://it.example"}', SOURCE)
    assert locked.effective_server_url("https://mine.example") == "https://it.example"
    default = parse_managed_config(
        '{"server_url": {"value": "https://it.example", "locked": false}}', SOURCE
    )
    assert default.effective_server_url("https://mine.example") == "https://mine.example"
    assert default.effective_server_url(None) == "https://it.example"
    assert ManagedConfig().effective_server_url(None) is None


def test_an_unlocked_proxy_yields_to_the_environment() -> None:
    default = parse_managed_config(
        '{"proxy": {"value": "http://it-proxy:3128", "locked": false}}', SOURCE
    )
    assert default.effective_proxy({}) == "http://it-proxy:3128"
    assert default.effective_proxy({"HTTPS_PROXY": "http://mine:8080"}) is None
    assert default.effective_proxy({"all_proxy": "http://mine:8080"}) is None
    assert default.effective_proxy({"NO_PROXY": "localhost"}) == "http://it-proxy:3128"
    locked = parse_managed_config('{"proxy": "none"}', SOURCE)
    assert locked.effective_proxy({"HTTPS_PROXY": "http://mine:8080"}) == "none"
    assert ManagedConfig().effective_proxy({}) is None


def test_display_values_hide_passwords() -> None:
    def shown(key: str, value: object) -> str:
        return display_value(ManagedSetting(key, value, True, 1))

    assert shown("proxy", "http://bob:hunter2@proxy:3128") == "http://bob:***@proxy:3128"
    assert shown("proxy", "system") == "the system's setting"
    assert shown("quiet_hours", (time(22), time(7, 30))) == "22:00 to 07:30"
    assert shown("quiet_hours", None) == "none"
    assert shown("sound", False) == "off"
    assert shown("allow_remember_me", False) == "not allowed"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"


# --- locations -------------------------------------------------------------------------


def test_linux_looks_in_every_xdg_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MANAGED_FILE_ENV, raising=False)
    monkeypatch.delenv("XDG_CONFIG_DIRS", raising=False)
    assert managed_config_locations("linux") == (
        PurePosixPath("/etc/xdg/tray-notifier/managed.json"),
    )
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("XDG_CONFIG_DIRS", f"{first}:relative/ignored:{second}")
    assert managed_config_locations("linux") == (
        PurePosixPath(first / "tray-notifier" / "managed.json"),
        PurePosixPath(second / "tray-notifier" / "managed.json"),
    )
    if sys.platform.startswith("linux"):
        # None exists: the first is the one (absent, so nothing is managed).
        assert managed_config_path() == first / "tray-notifier" / "managed.json"
        target = second / "tray-notifier"
        target.mkdir(parents=True)
        write(target / "managed.json", '{"sound": false}')
        assert managed_config_path() == target / "managed.json"
        assert load_managed_config().is_locked("sound")
        # The more important directory wins as soon as it has a file, even a broken one.
        (first / "tray-notifier").mkdir(parents=True)
        write(first / "tray-notifier" / "managed.json", "{")
        assert managed_config_path() == first / "tray-notifier" / "managed.json"


def test_the_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "policy.json", '{"server_url": "https://it.example"}')
    monkeypatch.setenv(MANAGED_FILE_ENV, str(path))
    assert managed_config_path() == path
    assert load_managed_config().server_url == "https://it.example"


def test_macos_and_windows_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    assert managed_config_locations("darwin") == (
        PurePosixPath("/Library/Application Support/tray-notifier/managed.json"),
    )
    # platformdirs asks Windows itself for ProgramData; its documented override stands in
    # for that call here.
    monkeypatch.setenv("WIN_PD_OVERRIDE_COMMON_APPDATA", "C:\\ProgramData")
    assert managed_config_locations("win32") == (
        PureWindowsPath("C:\\ProgramData\\tray-notifier\\managed.json"),
    )


def test_the_documentation_covers_every_key() -> None:
    doc = (REPO / "docs" / "managed-configuration.md").read_text(encoding="utf-8")
    for key in MANAGED_KEYS:
        assert f"`{key}`" in doc, key
    for location in (
        "/etc/xdg/tray-notifier/managed.json",
        "C:\\ProgramData\\tray-notifier\\managed.json",
        "/Library/Application Support/tray-notifier/managed.json",
    ):
        assert location in doc
    # The example in the documentation is a valid file that uses every key.
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    config = parse_managed_config(example, SOURCE)
    assert config.problems == ()
    assert {s.key for s in config.settings} == set(MANAGED_KEYS)


def test_whether_a_login_is_kept_is_one_rule_it_first_then_the_user() -> None:
    """What the tray's login dialog and headless mode both ask (ManagedConfig.
    remember_me_refusal): IT's policy wins over the user's own "remember me"."""
    keep = Preferences(remember_me=True)
    forget = Preferences(remember_me=False)
    unmanaged = ManagedConfig()
    forbidden = parse_managed_config('{"allow_remember_me": false}', SOURCE)
    allowed = parse_managed_config('{"allow_remember_me": true}', SOURCE)
    assert unmanaged.remember_me_refusal(keep) is None
    assert allowed.remember_me_refusal(keep) is None
    assert forbidden.remember_me_refusal(keep) == REMEMBER_ME_TURNED_OFF
    assert forbidden.remember_me_refusal(forget) == REMEMBER_ME_TURNED_OFF
    assert unmanaged.remember_me_refusal(forget) == (
        "Remembering logins is off in your preferences."
    )
    # A user's own layer that never chose: the built-in default keeps logins.
    assert unmanaged.remember_me_refusal(SavedPreferences(Preferences(), frozenset())) is None


def test_the_preference_keeper_saves_the_users_choices_and_keeps_its_locks(
    tmp_path: Path,
) -> None:
    config = parse_managed_config(
        '{"sound": false, "toasts_enabled": {"value": false, "locked": false}}', SOURCE
    )
    SavedPreferences(Preferences(toasts_enabled=True), frozenset({"toasts_enabled"})).save(tmp_path)
    keeper = PreferenceKeeper(tmp_path, config)
    assert keeper.current.sound is False  # locked
    assert keeper.current.toasts_enabled is True  # the user's, over IT's default
    now_in_force = keeper.update(replace(keeper.current, sound=True, remember_me=False))
    assert now_in_force == keeper.current
    assert keeper.current.sound is False  # the lock holds
    assert keeper.current.remember_me is False
    assert keeper.saved.chosen == {"toasts_enabled", "remember_me"}
    # What the file holds is the user's own, and a new keeper reads the same.
    assert json.loads((tmp_path / PREFERENCES_FILE).read_text()) == {
        "remember_me": False,
        "toasts_enabled": True,
    }
    assert PreferenceKeeper(tmp_path, config).current == keeper.current


def test_a_preference_keeper_that_cannot_save_changes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    directory.write_text("a file where the directory should be")
    keeper = PreferenceKeeper(directory, parse_managed_config("{}", SOURCE))
    before = keeper.current
    with pytest.raises((FileExistsError, NotADirectoryError)):
        keeper.update(replace(before, sound=False))
    assert keeper.current == before
    assert keeper.saved.chosen == frozenset()


@pytest.fixture
def login_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The desktop's login entries in a scratch home (none system-wide)."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    return tmp_path / "config"


def test_a_changed_start_at_login_reaches_the_login_entry(login_entries: Path) -> None:
    from tray_app import autostart

    keeper = PreferenceKeeper(login_entries, parse_managed_config("{}", SOURCE))
    keeper.update(replace(keeper.current, start_at_login=True))
    assert autostart.is_enabled()
    keeper.update(replace(keeper.current, sound=False))  # unchanged: left alone
    assert autostart.is_enabled()
    keeper.update(replace(keeper.current, start_at_login=False))
    assert not autostart.is_enabled()


def test_at_start_the_login_entry_and_the_preference_are_settled(login_entries: Path) -> None:
    from tray_app import autostart

    # Unmanaged: the entry (changed by the desktop since) is the truth.
    keeper = PreferenceKeeper(login_entries, parse_managed_config("{}", SOURCE))
    autostart.set_enabled(True)
    keeper.settle_start_at_login()
    assert keeper.current.start_at_login is True
    # IT's default, the user having chosen nothing: the entry is made to match it.
    managed = parse_managed_config('{"start_at_login": {"value": false, "locked": false}}', SOURCE)
    keeper = PreferenceKeeper(login_entries, managed)
    keeper.settle_start_at_login()
    assert keeper.current.start_at_login is False
    assert not autostart.is_enabled()
