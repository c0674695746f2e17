"""Django settings, read from the environment.

Two deployments share this file (see README): the embedded default needs no
variable at all (SQLite in the data directory, in-process delivery); the scale
deployment sets ``DATABASE_URL`` and ``REDIS_URL``. Everything a deployment puts in
Redis is namespaced by a hash of its database's identity and its signing key, so two
deployments may share one redis-server; ``TRAY_REDIS_NAMESPACE`` names the namespace
instead (backend/notifications/namespace.py). ``TRAY_ENV=production``
(docs/deployment.md) adds what a server behind a reverse proxy needs and refuses
to start without a signing key and host names (backend/config/production.py).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
import platformdirs
from django.core.exceptions import ImproperlyConfigured

from backend.config import data_dir, production
from backend.notifications import namespace
from backend.ws_compression import COMPRESSION_CHOICES, SHIPPED_COMPRESSION

# Lets admin classes and querysets be subscripted (ModelAdmin[Project]) at run time.
django_stubs_ext.monkeypatch()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def _env_niceness(name: str, default: int) -> int:
    value = _env_int(name, default)
    if not 0 <= value <= 19:
        raise SystemExit(f"{name} must be from 0 to 19 (added to a nice value), got {value}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


# What DRF's throttles understand: a count per second, minute, hour or day.
_RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")


def _env_rate(name: str, default: str) -> str:
    """A throttle rate such as ``20/hour``; a bad one stops the server at start,
    not with a 500 on the first request it would apply to."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    count, _, period = raw.strip().partition("/")
    if not (count.strip().isascii() and count.strip().isdigit() and int(count) > 0) or (
        period.strip().lower() not in _RATE_PERIODS
    ):
        raise SystemExit(
            f"{name} must be a number of requests per second, min, hour or day "
            f"(like 20/hour), got {raw!r}"
        )
    return f"{int(count)}/{period.strip().lower()}"


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


DATA_DIR = Path(
    os.environ.get("TRAY_DATA_DIR") or platformdirs.user_data_dir("tray-notifier-server")
).resolve()


def _secret_key() -> str:
    """The signing key: from the environment, else one generated once per data directory."""
    from_env = os.environ.get("DJANGO_SECRET_KEY")
    if from_env:
        return from_env
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


BASE_DIR = Path(__file__).resolve().parent.parent

TRAY_ENV = _env_choice(production.MODE_VARIABLE, production.MODES, production.DEVELOPMENT)
PRODUCTION = TRAY_ENV == production.PRODUCTION
_problems = [
    problem
    for problem in (
        *(production.production_problems(os.environ) if PRODUCTION else ()),
        production.forwarded_allow_ips_problem(os.environ.get("TRAY_FORWARDED_ALLOW_IPS")),
        production.metrics_allow_problem(os.environ.get("TRAY_METRICS_ALLOW")),
    )
    if problem
]
if _problems:
    # Before _secret_key(): production must not leave a generated key file behind.
    raise ImproperlyConfigured("; ".join(_problems))

# Owner-only: the directory (0700), its database and signing key (0600), fixed at every start.
data_dir.make_private(DATA_DIR, database=not os.environ.get("DATABASE_URL"))
SECRET_KEY = _secret_key()
DEBUG = _env_bool("TRAY_DEBUG")
# Desktop clients reach the server by whatever name IT gave it; restrict with TRAY_ALLOWED_HOSTS.
ALLOWED_HOSTS = _env_list("TRAY_ALLOWED_HOSTS", "*")
# Browser origins allowed to open the WebSocket (scheme://host[:port]); "*" allows any.
TRAY_ALLOWED_ORIGINS = _env_list("TRAY_ALLOWED_ORIGINS")
CSRF_TRUSTED_ORIGINS = [origin for origin in TRAY_ALLOWED_ORIGINS if origin != "*"]
# Origins of the admin when the proxy's public address differs from the Host it forwards.
# The web companion's socket takes its session cookie from these pages too.
TRAY_PUBLIC_ORIGINS = [o for o in _env_list("TRAY_CSRF_TRUSTED_ORIGINS") if o != "*"]
CSRF_TRUSTED_ORIGINS += TRAY_PUBLIC_ORIGINS
# The same origins may call the REST API from their pages (CORS, django-cors-headers).
# Without credentials: such a page logs in over the API and sends its access token as
# a Bearer header, so no cookie of this server ever goes with another origin's request,
# and "*" (any origin) stays as safe as a desktop client.
CORS_URLS_REGEX = r"^/api/"
CORS_ALLOWED_ORIGINS = [origin for origin in TRAY_ALLOWED_ORIGINS if origin != "*"]
CORS_ALLOW_ALL_ORIGINS = "*" in TRAY_ALLOWED_ORIGINS
CORS_ALLOW_CREDENTIALS = False
# A page backing off after a 429 or 503 reads when to try again.
CORS_EXPOSE_HEADERS = ["Retry-After"]

# Behind a reverse proxy. uvicorn (backend/cli.py) takes the client's address and
# scheme from X-Forwarded-For/-Proto, but only on connections from these addresses
# (and on a unix socket, whose file permissions decide who may connect); Django sees
# the result as request.is_secure(). SECURE_PROXY_SSL_HEADER stays unset on purpose:
# Django would believe X-Forwarded-Proto from any client that reaches the port.
FORWARDED_ALLOW_IPS = (
    os.environ.get("TRAY_FORWARDED_ALLOW_IPS", "").strip() or production.DEFAULT_FORWARDED_ALLOW_IPS
)
# Production runs behind TLS: cookies (the admin's session and CSRF) never travel in clear.
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
# GET /metrics (backend/metrics_endpoint.py): off unless set; scrapers send it as a
# Bearer token. Metrics are counted only while it is set (docs/deployment.md, "Metrics").
TRAY_METRICS_TOKEN = os.environ.get("TRAY_METRICS_TOKEN", "").strip()
# Optional, on top of the token: the client addresses (as FORWARDED_ALLOW_IPS resolves
# them) that may scrape; empty allows any. Checked above with the other problems.
TRAY_METRICS_ALLOW = production.metrics_allow_networks(os.environ.get("TRAY_METRICS_ALLOW"))
# HSTS is opt-in: once a browser has seen it, the name cannot go back to plain HTTP.
SECURE_HSTS_SECONDS = _env_int("TRAY_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("TRAY_HSTS_INCLUDE_SUBDOMAINS")
if PRODUCTION:
    # The reverse proxy redirects plain HTTP to HTTPS (resources/deploy/nginx); redirecting
    # here too would also bounce the proxy's own health checks.
    SILENCED_SYSTEM_CHECKS = ["security.W008"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "csp",
    "corsheaders",
    "backend.users.apps.UsersConfig",
    "backend.projects.apps.ProjectsConfig",
    "backend.notifications.apps.NotificationsConfig",
    "backend.attention.apps.AttentionConfig",
    "backend.web.apps.WebConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything that may answer on its own (WhiteNoise, CommonMiddleware's
    # redirects): their answers to another origin's page need the CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, so its 405 still gets every header the middleware above adds.
    "backend.api_refusals.AllowedMethodsMiddleware",
]

# Every response carries a Content-Security-Policy (django-csp). The admin, the only
# pages served today, runs no inline script: its scripts are files, its data JSON
# blocks. Inline style attributes stay allowed (the admin's templates use a few).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "backend.config.urls"
ASGI_APPLICATION = "backend.config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    # Every request and every socket does its database work in the one thread that
    # backend/config/asgi.py gives them, so one persistent connection per process serves
    # it all. (With Django's thread per request and conn_max_age=60, each request kept
    # a connection of its own until garbage collection, and a stream of publish requests
    # ran PostgreSQL out of connections: bench/publish_throughput.py.)
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=None, conn_health_checks=True)
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A database host that stops answering (a black hole, not a refusal) would hold
        # the database thread for the kernel's TCP timeout, minutes, on every reconnect:
        # give up after 5 s and answer 503 (backend/db_faults.py). A connect_timeout in
        # DATABASE_URL wins.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            # Keep the connection (one thread does all database work, see asgi.py):
            # opening one (and running the PRAGMAs below) on every database call was
            # an eighth of a reconnect storm's CPU (B5).
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so two writers queue on
                # busy_timeout instead of failing to upgrade a read lock.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"

# Scale mode: Redis carries the doorbell between processes and holds presence.
REDIS_URL = os.environ.get("REDIS_URL", "")
# The namespace of this deployment's channel and keys in Redis. Empty (the default):
# derived from the database's identity and SECRET_KEY, which every process of one
# deployment shares and another deployment does not (pub/sub ignores Redis database
# numbers, and user ids of two databases collide). Set it, identically on every
# process, when processes spell one database differently (a host name here, an
# address there).
TRAY_REDIS_NAMESPACE = os.environ.get(namespace.OVERRIDE_SETTING, "").strip()
if _namespace_problem := namespace.override_problem(TRAY_REDIS_NAMESPACE):
    raise ImproperlyConfigured(_namespace_problem)
if REDIS_URL:
    # Rate limits (logins, creating projects, adding people) count once per deployment,
    # not once per process; backend/throttling.py falls back to memory if Redis fails.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": namespace.cache_prefix(
                namespace.deployment_namespace(
                    database=DATABASES["default"],
                    secret_key=SECRET_KEY,
                    override=TRAY_REDIS_NAMESPACE,
                )
            ),
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root; finders serve admin files
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "backend.users.tokens.SessionJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backend.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["backend.parsers.SafeJSONParser"],
    # Per client address for logins; per user for creating projects and adding
    # people, which is how bob once pulled every account into a project of his.
    "DEFAULT_THROTTLE_RATES": {
        "login": _env_rate("TRAY_LOGIN_RATE", "20/min"),
        "project_create": _env_rate("TRAY_PROJECT_CREATE_RATE", "20/hour"),
        "member_add": _env_rate("TRAY_MEMBER_ADD_RATE", "120/hour"),
        "attention_change": _env_rate("TRAY_ATTENTION_CHANGE_RATE", "120/min"),
    },
    # Throttles key on REMOTE_ADDR alone (backend/client_address.py): uvicorn has already
    # replaced it with X-Forwarded-For's client where, and only where, the connection
    # came from a trusted proxy. DRF's default would believe the header from anyone.
    "NUM_PROXIES": 0,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=_env_float("TRAY_ACCESS_TOKEN_MINUTES", 10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=_env_float("TRAY_REFRESH_TOKEN_DAYS", 14)),
    # Rotation and reuse detection are LoginSession's (backend/users/services.py).
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tray notifier API",
    "DESCRIPTION": "REST API of the tray notifier server. The WebSocket is in docs/protocol.md.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The "status" fields (a task's, a batch item's, presence's) need an enum name each.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "backend.projects.models.TaskStatus",
        "PublishBatchStatusEnum": "backend.notifications.serializers.BATCH_STATUSES",
        "PresenceStatusEnum": "backend.notifications.protocol.STATUSES",
        "PresenceMemberStatusEnum": "backend.notifications.presence_api.MEMBER_STATUSES",
    },
}

# Real-time settings, all overridable for tests and benchmarks.
TRAY: dict[str, Any] = {
    # Largest text frame a client may send; bigger ones close with 1009.
    "WS_MAX_FRAME_BYTES": _env_int("TRAY_WS_MAX_FRAME_BYTES", 64 * 1024),
    # permessage-deflate for clients that offer it: off, default or tuned
    # (backend/ws_compression.py; the default was chosen by benchmark B7).
    "WS_COMPRESSION": _env_choice("TRAY_WS_COMPRESSION", COMPRESSION_CHOICES, SHIPPED_COMPRESSION),
    # Client frames per second (sustained) and burst before a close with 1008.
    "WS_RATE_PER_SECOND": _env_float("TRAY_WS_RATE_PER_SECOND", 20.0),
    "WS_RATE_BURST": _env_int("TRAY_WS_RATE_BURST", 60),
    # Frames waiting for one slow socket before it is closed with 1013 (it resumes later).
    "WS_SEND_QUEUE": _env_int("TRAY_WS_SEND_QUEUE", 1000),
    # Text frames written straight to uvicorn's websockets-sansio protocol, skipping the
    # ASGI send's layers (backend/notifications/wire.py); off sends every frame via ASGI.
    "WS_DIRECT_WRITE": _env_bool("TRAY_WS_DIRECT_WRITE", True),
    # Rows replayed per batch, and the most replayed over the socket before the
    # client is told to page over REST.
    "REPLAY_BATCH": _env_int("TRAY_REPLAY_BATCH", 200),
    "REPLAY_MAX": _env_int("TRAY_REPLAY_MAX", 10_000),
    # Seconds between the heartbeat comments of the HTTP stream (/api/stream/, the
    # fallback where WebSockets are blocked), which keep idle proxies from cutting it;
    # 0 sends none.
    "STREAM_HEARTBEAT": _env_float("TRAY_STREAM_HEARTBEAT", 15.0),
    # Presence: a process refreshes its sockets every TTL/3; entries of a dead
    # process expire after TTL seconds.
    "PRESENCE_TTL": _env_float("TRAY_PRESENCE_TTL", 30.0),
    # How often the embedded server looks for notifications and session ends written
    # by another process (tray-notifier-server notify) on the same database: a safety
    # net, since such a process rings the server's doorbell socket after its commit
    # (backend/notifications/doorbell.py) and the server looks at once.
    "DB_WATCH_INTERVAL": _env_float("TRAY_DB_WATCH_INTERVAL", 0.5),
    # How often sockets whose access token expired are closed with 4001.
    "TOKEN_SWEEP_INTERVAL": _env_float("TRAY_TOKEN_SWEEP_INTERVAL", 5.0),
    # A login session's absolute lifetime: rotating its refresh token never extends it.
    "SESSION_MAX_DAYS": _env_float("TRAY_SESSION_MAX_DAYS", 30),
    # Password checks run in their own threads (backend/login_lane.py), this many at
    # once, with at most LOGIN_QUEUE more waiting before logins are answered 503.
    "LOGIN_WORKERS": _env_int("TRAY_LOGIN_WORKERS", 2),
    "LOGIN_QUEUE": _env_int("TRAY_LOGIN_QUEUE", 16),
    # Added to those threads' nice value (0..19; 0: the process's own priority).
    "LOGIN_NICENESS": _env_niceness("TRAY_LOGIN_NICENESS", 10),
    # How long a process reuses a positive answer of the session check of a Bearer
    # token and of an integration key's lookup: a logout, password change,
    # deactivation or revoked key is refused by every process within this many
    # seconds (at once by the process that made the change). 0 checks every request.
    "AUTH_CACHE_SECONDS": _env_float("TRAY_AUTH_CACHE_SECONDS", 2.0),
    # Single publishes (POST /api/notifications/) skip the middleware chain and DRF
    # when well-formed and allowed (backend/notifications/publish_route.py); off sends
    # every one through the full stack.
    "PUBLISH_FAST_PATH": _env_bool("TRAY_PUBLISH_FAST_PATH", True),
    # Fast publishes queued or being written at once per process; past it, 503 with
    # Retry-After (backend/notifications/publish_lane.py, docs/performance.md).
    "PUBLISH_QUEUE": _env_int("TRAY_PUBLISH_QUEUE", 256),
    # The most publishes written in one batch (one trip to the database thread).
    "PUBLISH_BATCH": _env_int("TRAY_PUBLISH_BATCH", 64),
    # One transaction per batch: on, off, or auto (on: what measured faster on
    # PostgreSQL and SQLite alike, docs/performance.md).
    "PUBLISH_GROUP_COMMIT": _env_choice("TRAY_PUBLISH_GROUP_COMMIT", ("auto", "on", "off"), "auto"),
    # SQLite only: a fast publish's Inbox rows are written about this many ms after
    # its push, many publishes' at once, one band of users at a time; the publish
    # itself stores a record of them (backend/notifications/inbox_log.py,
    # docs/performance.md). Every reader of Inbox rows writes its user's pending rows
    # first. 0 writes them in the publish's own transaction, as before.
    "INBOX_SETTLE_MS": _env_float("TRAY_INBOX_SETTLE_MS", 2000.0),
    # ... and sooner, one band after the other, once this many rows wait (0: only
    # the time decides).
    "INBOX_SETTLE_ROWS": _env_int("TRAY_INBOX_SETTLE_ROWS", 40_000),
    # The smallest audience whose rows are left for later; smaller ones are written at
    # once (a record and its settle cost more than a few rows).
    "INBOX_LATER_FROM": _env_int("TRAY_INBOX_LATER_FROM", 8),
    # How long (ms) the server's threads may hold the GIL while another waits for it
    # (sys.setswitchinterval). The event loop and the database thread hand it back and
    # forth on every SQLite call, and while the loop delivers a broadcast each hand-back
    # waited up to Python's 5 ms: a publish queued behind ~10 such waits. At 0.5, B3's
    # p99 at 2,000 sockets fell from 324-398 to 222-246 ms with no more CPU
    # (docs/performance.md, issue 14, "The fourth stop").
    "SWITCH_INTERVAL_MS": _env_float("TRAY_SWITCH_INTERVAL_MS", 0.5),
    # New objects between two collections of Python's youngest generation (Python's
    # default: 700; 0 keeps it). Higher: fewer full collections, whose pauses grow
    # with the sockets held (backend/cli.py _tune_collector, docs/performance.md).
    "GC_THRESHOLD": _env_int("TRAY_GC_THRESHOLD", 10_000),
    # SQLite only: seconds between the serving process's own WAL checkpoints, run on a
    # thread beside the writer (backend/sqlite_checkpoint.py); its connections then
    # keep SQLite's automatic checkpoint, which stalled the writer, only as a 512 MiB
    # safety net. 0: SQLite's
    # automatic checkpoint, as before. CLI commands always keep the automatic one.
    "SQLITE_CHECKPOINT": _env_float("TRAY_SQLITE_CHECKPOINT", 1.0),
}

_LOG_LEVEL = os.environ.get("TRAY_LOG_LEVEL", "INFO").upper()
# "text" (the default): one human-readable line per record; "json": one JSON object
# per line with the request or socket id and the user id (backend/logging_json.py).
TRAY_LOG_FORMAT = _env_choice("TRAY_LOG_FORMAT", ("text", "json"), "text")

# One configuration for Django and uvicorn (the CLI hands uvicorn a copy of it), so
# every handler carries the redacting filter: browser clients put their token in
# the WebSocket URL, and uvicorn logs URLs with their query string.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "backend.logging_filters.RedactSecrets"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "backend.logging_json.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if TRAY_LOG_FORMAT == "json" else "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": _LOG_LEVEL},
    "loggers": {
        # Replaces Django's own default handlers on these, which lack the filter.
        "django": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "uvicorn": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"level": _LOG_LEVEL},
        "uvicorn.access": {"handlers": ["console"], "level": _LOG_LEVEL, "propagate": False},
    },
}
