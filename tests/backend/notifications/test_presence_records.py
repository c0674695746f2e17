"""What presence keeps in the database (backend/notifications/presence_services.py and
presence_selectors.py): the status a user chose and when they were last seen."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.notifications.models import PresenceRecord
from backend.notifications.presence_selectors import KeptPresence, presence_kept
from backend.notifications.presence_services import presence_seen_record, presence_status_choose
from backend.users.models import User

pytestmark = pytest.mark.django_db


def users(*names: str) -> list[User]:
    return [User.objects.create_user(username=name, password="pw") for name in names]


def test_a_chosen_status_is_kept_and_rewritten_only_when_it_changes() -> None:
    (alice,) = users("alice")
    assert presence_status_choose(user_id=alice.pk, status="away") is True
    with CaptureQueriesContext(connection) as queries:
        assert presence_status_choose(user_id=alice.pk, status="away") is False
    assert len(queries) == 1  # a re-sent status: one read, no write
    assert presence_kept(user_ids=[alice.pk]) == {
        alice.pk: KeptPresence(chosen_status="away", last_seen=None)
    }
    assert presence_status_choose(user_id=alice.pk, status="online") is True
    assert PresenceRecord.objects.get(user=alice).chosen_status == "online"
    with pytest.raises(ValueError, match="dnd"):
        presence_status_choose(user_id=alice.pk, status="dnd")  # an attention setting


def test_last_seen_is_written_in_one_batch_newest_wins_and_keeps_the_status() -> None:
    alice, bob = users("alice", "bob")
    presence_status_choose(user_id=alice.pk, status="away")
    written = presence_seen_record(seen={alice.pk: 1_795_000_000.25, bob.pk: 1_795_000_100.5})
    assert written == 2
    assert presence_kept() == {
        alice.pk: KeptPresence(chosen_status="away", last_seen=1_795_000_000.25),
        bob.pk: KeptPresence(chosen_status="", last_seen=1_795_000_100.5),
    }
    # Another process's older flush arriving late changes nothing; a newer one does.
    assert presence_seen_record(seen={alice.pk: 1_794_000_000.0}) == 0
    assert presence_seen_record(seen={alice.pk: 1_795_000_200.0}) == 1
    record = PresenceRecord.objects.get(user=alice)
    assert record.last_seen == datetime.fromtimestamp(1_795_000_200.0, tz=UTC)
    assert record.chosen_status == "away"


def test_last_seen_of_a_deleted_user_is_skipped() -> None:
    (alice,) = users("alice")
    assert presence_seen_record(seen={alice.pk: 10.0, alice.pk + 1000: 20.0}) == 1
    assert presence_seen_record(seen={}) == 0
    assert list(presence_kept()) == [alice.pk]


def test_kept_presence_of_some_users_in_one_query() -> None:
    alice, bob, carol = users("alice", "bob", "carol")
    presence_seen_record(seen={alice.pk: 10.0, bob.pk: 20.0, carol.pk: 30.0})
    with CaptureQueriesContext(connection) as queries:
        kept = presence_kept(user_ids=[bob.pk, carol.pk, 99_999])
    assert len(queries) == 1
    assert {user_id: k.last_seen for user_id, k in kept.items()} == {bob.pk: 20.0, carol.pk: 30.0}
