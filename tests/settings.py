"""Settings for the in-process tests: the product's settings with a private data directory.

Tests that start the server as a subprocess pass their own environment instead.
"""

import os
import tempfile

# Under pytest-xdist each worker inherits the controller's environment, this variable
# included: every worker gets a data directory of its own (database, keys, static root).
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    os.environ["TRAY_DATA_DIR"] = tempfile.mkdtemp(prefix=f"tray-notifier-tests-{_worker}-")
else:
    os.environ.setdefault("TRAY_DATA_DIR", tempfile.mkdtemp(prefix="tray-notifier-tests-"))
os.environ.setdefault("TRAY_LOG_LEVEL", "WARNING")
# In-process Qt tests draw offscreen; end-to-end tests give their subprocesses a real
# (virtual) display of their own.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from backend.config.settings import *  # noqa: E402, F403 (after the environment above)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users in tests
# Throttles stay on (tests that check them set a small rate) but out of the way of
# the many requests the other tests make as the same few users.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {  # noqa: F405
    "login": "1000/min",
    "project_create": "100000/min",
    "member_add": "100000/min",
    "attention_change": "100000/min",
}
# A file, like production: an in-memory shared-cache database locks whole tables
# and ignores busy_timeout, which the async (threaded) tests would trip over.
DATABASES["default"].setdefault("TEST", {})  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"]["NAME"] = str(DATA_DIR / "test.sqlite3")  # noqa: F405
