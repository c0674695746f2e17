"""Settings from the environment: the embedded default as it always was, and what
production mode (``TRAY_ENV=production``, backend/config/production.py) demands and sets.

The checks are pure functions over an environment mapping; the settings module's
reaction to them is seen in a subprocess, since it reads ``os.environ`` once at import.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import production
from tests.fixtures.services import REPO_ROOT

GOOD_KEY = secrets.token_urlsafe(50)
GOOD = {"DJANGO_SECRET_KEY": GOOD_KEY, "TRAY_ALLOWED_HOSTS": "notify.example.com"}


def test_a_good_production_environment_has_no_problems():
    assert production.production_problems(GOOD) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "DJANGO_SECRET_KEY is not set"),
        ("", "DJANGO_SECRET_KEY is not set"),
        ("   ", "DJANGO_SECRET_KEY is not set"),
        ("k" * 49, "too short or too plain (49 characters)"),
        ("abcd" * 20, "too short or too plain (80 characters)"),  # 4 distinct characters
    ],
)
def test_secret_key_problems_name_the_variable_and_how_to_make_one(
    value: str | None, fragment: str
):
    problem = production.secret_key_problem(value)
    assert problem is not None
    assert fragment in problem
    assert production.MAKE_SECRET_KEY in problem
    assert "\n" not in problem


def test_a_50_character_random_key_is_accepted():
    assert production.secret_key_problem(secrets.token_urlsafe(38)[:50]) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "TRAY_ALLOWED_HOSTS is not set"),
        (" , ", "TRAY_ALLOWED_HOSTS is not set"),
        ("*", "must not be '*'"),
        ("notify.example.com,*", "must not be '*'"),
    ],
)
def test_allowed_hosts_problems(value: str | None, fragment: str):
    problem = production.allowed_hosts_problem(value)
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("value", ["notify.example.com", ".example.com, 10.0.0.5"])
def test_named_hosts_are_accepted(value: str):
    assert production.allowed_hosts_problem(value) is None


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_debug_is_refused(value: str):
    problem = production.debug_problem(value)
    assert problem is not None
    assert problem.startswith("TRAY_DEBUG must be off")


@pytest.mark.parametrize("value", [None, "", "0", "off", "false"])
def test_debug_off_is_fine(value: str | None):
    assert production.debug_problem(value) is None


@pytest.mark.parametrize("value", [None, "", "127.0.0.1", "127.0.0.1, ::1", "10.0.0.0/8", "*"])
def test_forwarded_allow_ips_accepts_addresses_and_networks(value: str | None):
    assert production.forwarded_allow_ips_problem(value) is None


@pytest.mark.parametrize(
    ("value", "bad"), [("proxy.internal", "proxy.internal"), ("127.0.0.1,10.0.0.0/33", "/33")]
)
def test_forwarded_allow_ips_refuses_names_and_bad_networks(value: str, bad: str):
    problem = production.forwarded_allow_ips_problem(value)
    assert problem is not None
    assert problem.startswith("TRAY_FORWARDED_ALLOW_IPS must list IP addresses")
    assert bad in problem


def test_demo_is_a_problem_only_when_asked_for():
    assert production.demo_problem(False) is None
    problem = production.demo_problem(True)
    assert problem is not None
    assert problem.startswith("--demo must not be used with TRAY_ENV=production")
    assert "manage createsuperuser" in problem


def test_every_problem_is_reported_at_once_in_a_stable_order():
    problems = production.production_problems({"TRAY_ALLOWED_HOSTS": "*", "TRAY_DEBUG": "1"})
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "DJANGO_SECRET_KEY",
        "TRAY_ALLOWED_HOSTS",
        "TRAY_DEBUG",
    ]


def _settings_in_subprocess(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    """Import the product's settings with exactly ``env`` and return some of them."""
    script = (
        "import json\n"
        # Django's settings object: the module's values over Django's defaults.
        "from django.conf import settings as s\n"
        "print(json.dumps({name: getattr(s, name) for name in ("
        "'PRODUCTION', 'DEBUG', 'ALLOWED_HOSTS', 'SECRET_KEY', 'SESSION_COOKIE_SECURE', "
        "'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', "
        "'CSRF_TRUSTED_ORIGINS', 'FORWARDED_ALLOW_IPS', 'REDIS_URL', "
        "'SECURE_PROXY_SSL_HEADER')}"
        " | {'DB': s.DATABASES['default']['ENGINE']}"
        " | {'DB_OPTIONS': s.DATABASES['default'].get('OPTIONS', {}).get('connect_timeout')}"
        " | {'RATES': s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TRAY_DATA_DIR": str(tmp_path / "data"),
            "DJANGO_SETTINGS_MODULE": "backend.config.settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    values: dict[str, object] = json.loads(result.stdout)
    return values


def test_the_embedded_default_is_unchanged(tmp_path: Path):
    """No variable at all: a generated key, any host, nothing of production."""
    values = _settings_in_subprocess(tmp_path, {})
    key_file = tmp_path / "data" / "secret_key"
    assert values == {
        "PRODUCTION": False,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],
        "SECRET_KEY": key_file.read_text().strip(),
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "CSRF_TRUSTED_ORIGINS": [],
        # What uvicorn trusted by default before the setting existed.
        "FORWARDED_ALLOW_IPS": "127.0.0.1,::1",
        "REDIS_URL": "",
        "SECURE_PROXY_SSL_HEADER": None,
        "DB": "django.db.backends.sqlite3",
        "DB_OPTIONS": None,
        "RATES": {
            "login": "20/min",
            "project_create": "20/hour",
            "member_add": "120/hour",
            "attention_change": "120/min",
        },
    }


def test_production_settings_for_a_reverse_proxy(tmp_path: Path):
    values = _settings_in_subprocess(
        tmp_path,
        {
            "TRAY_ENV": "production",
            **GOOD,
            "TRAY_ALLOWED_HOSTS": "notify.example.com, notify",
            "DATABASE_URL": "postgres://tray:secret@db.internal:5432/tray",
            "REDIS_URL": "redis://redis.internal:6379/0",
            "TRAY_FORWARDED_ALLOW_IPS": "10.0.0.2",
            "TRAY_CSRF_TRUSTED_ORIGINS": "https://notify.example.com",
            "TRAY_HSTS_SECONDS": "31536000",
        },
    )
    assert values == {
        "PRODUCTION": True,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["notify.example.com", "notify"],
        "SECRET_KEY": GOOD_KEY,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "CSRF_TRUSTED_ORIGINS": ["https://notify.example.com"],
        "FORWARDED_ALLOW_IPS": "10.0.0.2",
        "REDIS_URL": "redis://redis.internal:6379/0",
        # Not Django's header check: it would believe X-Forwarded-Proto from anyone.
        # uvicorn sets the scheme from trusted proxies only (tests/e2e/test_deploy.py).
        "SECURE_PROXY_SSL_HEADER": None,
        "DB": "django.db.backends.postgresql",
        # A black-holed database host gives up after 5 s, not the kernel's minutes.
        "DB_OPTIONS": 5,
        "RATES": {
            "login": "20/min",
            "project_create": "20/hour",
            "member_add": "120/hour",
            "attention_change": "120/min",
        },
    }
    # No generated key file: production takes its key from the environment only.
    assert not (tmp_path / "data" / "secret_key").exists()


def _import_settings(
    tmp_path: Path, env: dict[str, str], code: str = "import backend.config.settings"
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` against the product's settings in a fresh interpreter with ``env``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TRAY_DATA_DIR": str(tmp_path / "data"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refusal_is_improperly_configured_for_any_asgi_server(tmp_path: Path):
    """Loaded by something other than the CLI, the settings still refuse, with Django's
    own exception and the same sentence."""
    result = _import_settings(
        tmp_path, {"TRAY_ENV": "production", "TRAY_ALLOWED_HOSTS": "notify.example.com"}
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY")
    assert not (tmp_path / "data" / "secret_key").exists()


def test_a_connect_timeout_in_the_database_url_wins(tmp_path: Path):
    values = _settings_in_subprocess(
        tmp_path, {"DATABASE_URL": "postgres://tray:secret@db.internal/tray?connect_timeout=12"}
    )
    assert values["DB_OPTIONS"] == 12


def test_throttle_rates_come_from_the_environment(tmp_path: Path):
    values = _settings_in_subprocess(
        tmp_path,
        {
            "TRAY_LOGIN_RATE": "5/min",
            "TRAY_PROJECT_CREATE_RATE": " 3/day ",
            "TRAY_MEMBER_ADD_RATE": "30/Hour",
            "TRAY_ATTENTION_CHANGE_RATE": "10/MIN",
        },
    )
    assert values["RATES"] == {
        "login": "5/min",
        "project_create": "3/day",
        "member_add": "30/hour",
        "attention_change": "10/min",
    }


@pytest.mark.parametrize("value", ["lots", "20", "0/hour", "-1/hour", "20/week", "2.5/min"])
def test_a_bad_throttle_rate_stops_the_server_at_start(tmp_path: Path, value: str):
    """Not a 500 on the first project someone creates, which is where DRF would notice."""
    result = _import_settings(tmp_path, {"TRAY_PROJECT_CREATE_RATE": value})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("TRAY_PROJECT_CREATE_RATE must be a number of requests per"), last
    assert repr(value) in last


@pytest.mark.parametrize(("value", "expected"), [(None, 10), ("0", 0), (" 19 ", 19)])
def test_the_login_lanes_niceness_comes_from_the_environment(
    tmp_path: Path, value: str | None, expected: int
):
    env = {} if value is None else {"TRAY_LOGIN_NICENESS": value}
    code = "from django.conf import settings\nprint(settings.TRAY['LOGIN_NICENESS'])\n"
    result = _import_settings(
        tmp_path, {"DJANGO_SETTINGS_MODULE": "backend.config.settings", **env}, code
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == expected


@pytest.mark.parametrize("value", ["-1", "20", "ten"])
def test_a_bad_login_niceness_stops_the_server_at_start(tmp_path: Path, value: str):
    result = _import_settings(tmp_path, {"TRAY_LOGIN_NICENESS": value})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("TRAY_LOGIN_NICENESS must be"), last


@pytest.mark.parametrize(("value", "accepted"), [(" acme-prod ", True), ("acme prod", False)])
def test_the_redis_namespace_override_is_read_and_checked(
    tmp_path: Path, value: str, accepted: bool
):
    """A name that is unsafe in a Redis key stops the server at start, like every other
    bad setting, rather than at the first doorbell."""
    result = _import_settings(
        tmp_path,
        {"DJANGO_SETTINGS_MODULE": "backend.config.settings", "TRAY_REDIS_NAMESPACE": value},
        code="from django.conf import settings; print(repr(settings.TRAY_REDIS_NAMESPACE))",
    )
    if accepted:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "'acme-prod'"
    else:
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("django.core.exceptions.ImproperlyConfigured: TRAY_REDIS_NAMESPACE")


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (None, 0),
        ("", 0),
        (" 10.0.0.0/8 ", 1),
        ("127.0.0.1, ::1,2001:db8::/32", 3),
        ("10.1.2.3/8", 1),
    ],
)
def test_the_metrics_allow_list_reads_addresses_and_networks(value: str | None, count: int):
    assert production.metrics_allow_problem(value) is None
    assert len(production.metrics_allow_networks(value)) == count


@pytest.mark.parametrize(
    ("value", "bad"),
    [("10.0.0.0/8,metrics.internal", "metrics.internal"), ("10.0.0.0/33", "10.0.0.0/33"),
     ("::1, fe80::/129", "fe80::/129"), ("*", "*")],
)  # fmt: skip
def test_a_bad_metrics_allow_list_names_the_variable_and_the_entry(value: str, bad: str):
    problem = production.metrics_allow_problem(value)
    assert problem is not None
    assert problem.startswith("TRAY_METRICS_ALLOW must list the IP addresses or networks")
    assert repr(bad) in problem


def test_a_bad_metrics_allow_list_stops_the_server_at_start(tmp_path: Path):
    """In every mode, before anything is served, in one line naming the entry."""
    result = _import_settings(tmp_path, {"TRAY_METRICS_ALLOW": "10.0.0.0/8, metrics.internal"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: TRAY_METRICS_ALLOW"), last
    assert "'metrics.internal'" in last
