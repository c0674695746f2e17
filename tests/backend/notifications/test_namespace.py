"""The per-deployment Redis namespace (pure) and the doorbell's deployment stamp.

Two deployments sharing a redis-server, for real, are in tests/e2e/test_shared_redis.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from backend.notifications import namespace
from backend.notifications.delivery import (
    ForeignDoorbell,
    current_namespace,
    decode_doorbell,
    encode_doorbell,
)
from backend.notifications.events import UserDisabledEvent

KEY = "production-signing-key-" + "k" * 40
SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/tray/db.sqlite3"}
POSTGRES = {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": "db.internal",
    "PORT": 5432,
    "NAME": "tray",
    "USER": "tray",
    "PASSWORD": "pw",
}


def derive(database: Mapping[str, Any], secret_key: str = KEY, override: str = "") -> str:
    return namespace.deployment_namespace(
        database=database, secret_key=secret_key, override=override
    )


def test_the_same_deployment_derives_the_same_namespace_in_every_process():
    assert derive(dict(POSTGRES)) == derive(dict(POSTGRES))
    assert derive(dict(SQLITE)) == derive(dict(SQLITE))
    # Other credentials for the same database, or a host name in other case: the same.
    assert derive({**POSTGRES, "USER": "reader", "PASSWORD": "other"}) == derive(POSTGRES)
    assert derive({**POSTGRES, "HOST": "DB.Internal"}) == derive(POSTGRES)


@pytest.mark.parametrize(
    "other",
    [
        {**POSTGRES, "NAME": "tray_demo"},
        {**POSTGRES, "HOST": "db2.internal"},
        {**POSTGRES, "PORT": 5433},
        {**SQLITE, "NAME": "/tmp/demo/db.sqlite3"},
    ],
)
def test_another_database_is_another_namespace(other: dict[str, Any]):
    assert derive(other) != derive(POSTGRES if "HOST" in other else SQLITE)


def test_another_signing_key_is_another_namespace():
    assert derive(SQLITE, secret_key="another-key") != derive(SQLITE)
    assert derive(POSTGRES, secret_key="another-key") != derive(POSTGRES)


def test_the_namespace_is_a_short_hash_that_reveals_neither_key_nor_database():
    value = derive(POSTGRES)
    assert len(value) == namespace.DERIVED_LENGTH
    assert int(value, 16) >= 0
    for name in (namespace.doorbell_channel(value), namespace.presence_prefix(value)):
        assert name.startswith("tray-notifier:" + value + ":")
        assert KEY not in name
        assert "db.internal" not in name
    assert namespace.doorbell_channel(value) != namespace.doorbell_channel(derive(SQLITE))


def test_the_override_wins():
    assert derive(POSTGRES, override="acme-prod") == "acme-prod"
    assert derive(SQLITE, secret_key="other", override="acme-prod") == "acme-prod"
    assert namespace.doorbell_channel("acme-prod") == "tray-notifier:acme-prod:doorbell"
    assert namespace.presence_prefix("acme-prod") == "tray-notifier:acme-prod:presence:"


@pytest.mark.parametrize("bad", ["two words", "a:b", "-leading", "x" * 65, "tab\t", "é"])
def test_an_override_that_is_no_safe_name_is_refused(bad: str):
    problem = namespace.override_problem(bad)
    assert problem is not None
    assert problem.startswith("TRAY_REDIS_NAMESPACE must be")
    with pytest.raises(ValueError, match="TRAY_REDIS_NAMESPACE"):
        derive(POSTGRES, override=bad)


def test_current_namespace_reads_the_settings():
    with override_settings(SECRET_KEY=KEY, TRAY_REDIS_NAMESPACE=""):
        assert current_namespace() == derive(settings.DATABASES["default"])
    with override_settings(SECRET_KEY=KEY, TRAY_REDIS_NAMESPACE="acme-prod"):
        assert current_namespace() == "acme-prod"


# --- the doorbell's deployment stamp ------------------------------------------------------

EVENT: UserDisabledEvent = {"kind": "user_disabled", "user_id": 7}


def test_a_doorbell_of_this_deployment_round_trips():
    raw = encode_doorbell(EVENT, "ours")
    assert json.loads(raw)["deployment"] == "ours"
    assert decode_doorbell(raw.encode(), "ours") == EVENT


@pytest.mark.parametrize(
    "raw",
    [
        encode_doorbell(EVENT, "theirs"),
        json.dumps(EVENT),  # no stamp: an older server or a hand-typed PUBLISH
        json.dumps({**EVENT, "deployment": None}),
    ],
)
def test_a_doorbell_of_another_deployment_is_refused(raw: str):
    with pytest.raises(ForeignDoorbell):
        decode_doorbell(raw, "ours")


@pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe", b"[1, 2]", b'"ours"'])
def test_a_doorbell_that_is_no_json_object_is_refused(raw: bytes):
    with pytest.raises(ValueError, match="must be a JSON object") as refused:
        decode_doorbell(raw, "ours")
    assert not isinstance(refused.value, ForeignDoorbell)
