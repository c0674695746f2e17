"""Writes of notifications. Every function is keyword-only and atomic.

``notification_create`` is the one way a notification comes into being: one
Message, one Inbox row per recipient with the next seq of that recipient, one
doorbell after commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from backend.errors import BackendError, InvalidInput
from backend.notifications import delivery, inbox_log
from backend.notifications.models import ApiKey, Inbox, InboxSequence, Message, Priority
from backend.notifications.payloads import message_payload
from backend.notifications.selectors import Audience, audience_user_ids
from backend.numbers import positive_id
from backend.projects.models import Membership
from backend.sql import fetch_all, fetch_one, marks, rows_where_in, table
from backend.text import single_line_text_problem, url_problem
from backend.users.models import User
from backend.users.selectors import user_ids_missing

if TYPE_CHECKING:
    # The batch and notification_publish only read a PublishItem's attributes.
    from backend.notifications.publish_input import PublishItem

# Statement size for seq assignment: well under SQLite's 32,766 bound variables.
_SEQ_CHUNK = 5000
MAX_IDS_PER_REQUEST = 1000
# Message.publisher of the `notify` command; see api_key_publisher and user_publisher.
CLI_PUBLISHER = "cli"


def api_key_publisher(key: ApiKey) -> str:
    """The publisher scope of notifications sent with an integration key."""
    return f"api_key:{key.pk}"


def user_publisher(user: User) -> str:
    """The publisher scope of notifications a person sends (publish API, admin)."""
    return f"user:{user.pk}"


@dataclass(frozen=True)
class NotificationResult:
    message: Message
    created: bool
    recipient_count: int


def _validate_content(
    *, title: str, message: str, priority: str, url: str, event_type: str
) -> None:
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 50:
        raise InvalidInput("event_type must be 1 to 50 characters", code="invalid_event_type")
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("title must be a non-empty string", code="invalid_title")
    if len(title) > 200:
        raise InvalidInput("title must be at most 200 characters", code="invalid_title")
    title_problem = single_line_text_problem(title)
    if title_problem is not None:
        raise InvalidInput(f"title {title_problem}", code="invalid_title")
    if not isinstance(message, str) or len(message) > 5000:
        raise InvalidInput("message must be a string of at most 5000 characters")
    if priority not in Priority.values:
        raise InvalidInput(
            f"priority must be one of {', '.join(Priority.values)}", code="invalid_priority"
        )
    if not isinstance(url, str) or len(url) > 2000:
        raise InvalidInput("url must be a string of at most 2000 characters", code="invalid_url")
    problem = url_problem(url)
    if problem is not None:
        raise InvalidInput(problem, code="invalid_url")


def _validate_key(idempotency_key: str | None) -> None:
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
        raise InvalidInput("idempotency_key must be 1 to 200 characters", code="invalid_key")


def _lock_sequences(user_ids: list[int]) -> set[int]:
    """Lock the users' sequence rows in user-id order; returns the users that have one.

    Raw SQL: the ORM prepared every id of a 5,000-user IN list one by one, a third of
    a broadcast's CPU (bench/mixed_traffic.py). SQLite has no row locks (BEGIN
    IMMEDIATE already serialises writers); PostgreSQL takes them with FOR UPDATE.
    """
    if connection.vendor != "postgresql":
        found = rows_where_in(InboxSequence, ("user_id",), "user_id", user_ids)
        return {int(row[0]) for row in found}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT user_id FROM {table(InboxSequence)} WHERE user_id = ANY(%s) "  # noqa: S608
            "ORDER BY user_id FOR UPDATE",
            [list(user_ids)],
        )
        return {int(row[0]) for row in cursor.fetchall()}


def _lock_or_create_sequences(user_ids: list[int]) -> None:
    """Lock the users' sequence rows (``_lock_sequences``), creating those missing."""
    locked = _lock_sequences(user_ids)
    missing = [uid for uid in user_ids if uid not in locked]
    if missing:
        # Users saved without their post_save signal (bulk_create). ON CONFLICT DO
        # NOTHING waits for a concurrent creator to commit; then the lock holds.
        InboxSequence.objects.bulk_create(
            [InboxSequence(user_id=uid) for uid in missing], ignore_conflicts=True
        )
        _lock_sequences(missing)


def _bump_sequences(user_ids: list[int]) -> list[tuple[int, int]]:
    """Give each user the next seq (and one more unread): (user, seq), sorted by user.

    PostgreSQL: the rows are locked in user-id order first (``_lock_or_create_sequences``),
    so concurrent writers to overlapping audiences queue instead of deadlocking. SQLite
    (whose BEGIN IMMEDIATE already serialises writers) skips that statement: the
    UPDATE says whose row is missing, and those are created with their first seq.
    """
    if connection.vendor == "postgresql":
        _lock_or_create_sequences(user_ids)
    bumped: dict[int, int] = dict(
        fetch_all(
            f"UPDATE {table(InboxSequence)} SET last_seq = last_seq + 1, "  # noqa: S608
            f"unread = unread + 1 WHERE user_id IN ({marks(user_ids)}) "
            "RETURNING user_id, last_seq",
            user_ids,
        )
    )
    missing = [uid for uid in user_ids if uid not in bumped]
    if missing:
        # Users saved without their post_save signal (bulk_create).
        InboxSequence.objects.bulk_create(
            [InboxSequence(user_id=uid, last_seq=1, unread=1) for uid in missing]
        )
        bumped.update(dict.fromkeys(missing, 1))
    return sorted(bumped.items())


def _append_to_inboxes(
    message_id: int, user_ids: Sequence[int], *, rows_later: bool = False
) -> list[tuple[int, int, int]]:
    """Give each user the next seq and an Inbox row for the message: (user, row id, seq).

    With ``rows_later`` the rows of an audience of ``inbox_log.later_from()`` or more
    are reserved and written after the push (``inbox_log.append_later``).

    The locks ``_bump_sequences`` takes are held to commit, so seq order is commit
    order. Two statements per 5,000 recipients on SQLite, three on PostgreSQL.
    """
    inbox_table = table(Inbox)
    appended: list[tuple[int, int, int]] = []
    for start in range(0, len(user_ids), _SEQ_CHUNK):
        seqs = _bump_sequences(list(user_ids[start : start + _SEQ_CHUNK]))
        if rows_later and inbox_log.enabled() and len(seqs) >= inbox_log.later_from():
            appended.extend(inbox_log.append_later(message_id, seqs))
            continue
        rows = fetch_all(
            f"INSERT INTO {inbox_table} (user_id, message_id, seq) VALUES "  # noqa: S608
            + ",".join(["(%s, %s, %s)"] * len(seqs))
            + " RETURNING user_id, id, seq",
            [value for user, seq in seqs for value in (user, message_id, seq)],
        )
        appended.extend(sorted((int(u), int(i), int(q)) for u, i, q in rows))
    return appended


def _append_many(
    deliveries: Sequence[tuple[int, Sequence[int]]],
) -> list[list[tuple[int, int, int]]]:
    """``_append_to_inboxes`` for many messages at once, in the order given.

    For a batch: the same locks in the same order (every recipient's sequence row,
    in user-id order, held to commit), then each user's seqs counted on from their
    ``last_seq`` in message order, the rows inserted a few thousand per statement
    and the new ``last_seq`` written back (``unread`` up by the rows added, in the
    same statement). A few statements per 5,000 users and per 5,000 rows instead
    of three per message.

    Args:
        deliveries: (message id, its recipients) in the order the seqs must follow.

    Returns:
        Per message, its (user, row id, seq).
    """
    users = sorted({user for _, recipients in deliveries for user in recipients})
    if not users:
        return [[] for _ in deliveries]
    seq_table = table(InboxSequence)
    inbox_table = table(Inbox)
    last: dict[int, int] = {}
    for start in range(0, len(users), _SEQ_CHUNK):
        chunk = users[start : start + _SEQ_CHUNK]
        _lock_or_create_sequences(chunk)
        rows = rows_where_in(InboxSequence, ("user_id", "last_seq"), "user_id", chunk)
        last.update((int(u), int(q)) for u, q in rows)
    first = dict(last)  # each user's new rows, all unread, are last - first
    planned: list[tuple[int, int, int]] = []  # (user, message, seq)
    position: dict[tuple[int, int], int] = {}  # (user, seq) -> index in deliveries
    for index, (message_id, recipients) in enumerate(deliveries):
        for user in recipients:
            seq = last[user] + 1
            last[user] = seq
            planned.append((user, message_id, seq))
            position[user, seq] = index
    appended: list[list[tuple[int, int, int]]] = [[] for _ in deliveries]
    with connection.cursor() as cursor:
        for start in range(0, len(planned), _SEQ_CHUNK):
            rows = planned[start : start + _SEQ_CHUNK]
            cursor.execute(
                f"INSERT INTO {inbox_table} (user_id, message_id, seq) VALUES "  # noqa: S608
                + ",".join(["(%s, %s, %s)"] * len(rows))
                + " RETURNING user_id, id, seq",
                [value for row in rows for value in row],
            )
            # RETURNING comes in no promised order: (user, seq) says whose row it is.
            for u, i, q in cursor.fetchall():
                appended[position[int(u), int(q)]].append((int(u), int(i), int(q)))
        cursor.executemany(
            f"UPDATE {seq_table} SET last_seq = %s, unread = unread + %s "  # noqa: S608
            "WHERE user_id = %s",
            [(last[user], last[user] - first[user], user) for user in users],
        )
    for rows in appended:
        rows.sort()  # by user, as _append_to_inboxes answers
    return appended


def notification_create(
    *,
    audience: Audience,
    title: str,
    message: str = "",
    event_type: str = "announcement",
    priority: str = Priority.NORMAL,
    url: str = "",
    actor: User | None = None,
    project_id: int | None = None,
    project_title: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    publisher: str = "",
    users_unchecked: bool = False,
    rows_later: bool = False,
    own_transaction: bool = True,
) -> NotificationResult:
    """Store a notification for everyone ``audience`` names right now, then ring.

    The same ``idempotency_key`` from the same ``publisher`` returns the first
    notification instead of a new one. Keys are scoped to the publisher
    (``api_key_publisher``, ``user_publisher``, ``CLI_PUBLISHER``): two systems that
    happen to pick the same key each get their own notification.

    Raises:
        InvalidInput: bad content; with ``users_unchecked`` (the caller did not look
            up ``audience.users``), ``unknown_audience`` when one of them names no
            user, and nothing is written.

    With ``rows_later`` (the publish lane, where ``inbox_log.enabled()``), the Inbox
    rows are written after the push (backend/notifications/inbox_log.py).

    ``own_transaction=False`` writes in the caller's open transaction without a
    savepoint (the publish lane's group commit, where one per publish cost a sixth of
    its CPU): a failure after the first write, even a key raced by another process,
    is then the caller's to roll back. ``InvalidInput`` is raised before anything is
    written either way.
    """
    _validate_content(
        title=title, message=message, priority=priority, url=url, event_type=event_type
    )
    _validate_key(idempotency_key)
    if idempotency_key is not None:
        existing = Message.objects.filter(
            publisher=publisher, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            if users_unchecked:
                # An audience naming no one is refused whether or not the key was seen.
                _check_listed_users(audience, ())
            return NotificationResult(existing, False, _delivery_count(existing))
    if not own_transaction and not connection.in_atomic_block:
        raise RuntimeError("own_transaction=False needs the caller's transaction open")
    try:
        with transaction.atomic() if own_transaction else contextlib.nullcontext():
            return _notification_write(
                audience=audience,
                title=title,
                message=message,
                event_type=event_type,
                priority=priority,
                url=url,
                actor=actor,
                project_id=project_id,
                project_title=project_title,
                data=data or {},
                idempotency_key=idempotency_key,
                publisher=publisher,
                users_unchecked=users_unchecked,
                rows_later=rows_later,
            )
    except IntegrityError:
        # Two requests of one publisher raced with one key: the other one's notification stands.
        if idempotency_key is None:
            raise
        existing = Message.objects.get(publisher=publisher, idempotency_key=idempotency_key)
        return NotificationResult(existing, False, _delivery_count(existing))


def _delivery_count(message: Message) -> int:
    inbox_log.read_barrier()
    return message.deliveries.count()


def notification_publish(
    *,
    item: PublishItem,
    actor: User | None,
    publisher: str,
    users_unchecked: bool = False,
    rows_later: bool = False,
    own_transaction: bool = True,
) -> NotificationResult:
    """``notification_create`` for a checked publish body (``publish_input.parse_publish``):
    what the publish API's view and its fast route both call."""
    return notification_create(
        audience=item.audience,
        title=item.title,
        message=item.message,
        priority=item.priority,
        url=item.url,
        event_type=item.event_type,
        idempotency_key=item.idempotency_key,
        publisher=publisher,
        actor=actor,
        users_unchecked=users_unchecked,
        rows_later=rows_later,
        own_transaction=own_transaction,
    )


def _notification_write(
    *,
    audience: Audience,
    title: str,
    message: str,
    event_type: str,
    priority: str,
    url: str,
    actor: User | None,
    project_id: int | None,
    project_title: str,
    data: dict[str, Any],
    idempotency_key: str | None,
    publisher: str,
    users_unchecked: bool = False,
    rows_later: bool = False,
) -> NotificationResult:
    recipients = audience_user_ids(audience)
    if users_unchecked:
        _check_listed_users(audience, recipients)
    stored = _insert_message(
        event_type=event_type,
        title=title,
        message=message,
        priority=priority,
        url=url,
        actor=actor,
        project_id=project_id,
        project_title=project_title,
        data=data,
        audience=audience.describe(),
        idempotency_key=idempotency_key,
        publisher=publisher,
    )
    return _deliver(stored, recipients, rows_later=rows_later)


def _insert_message(**values: Any) -> Message:
    """``Message.objects.create(**values)`` in one prepared statement.

    The ORM compiles the same INSERT anew on every call (~0.3 ms of Python, a sixth
    of a publish's write in the B3 mix); here the statement is built once and the
    values go through each field's own conversion (JSON, datetimes), so what is
    stored is what ``create`` would store. No model signals are sent for Message.
    """
    stored = Message(**values)
    stored.created_at = timezone.now()
    fields, statement = _message_insert()
    inserted = fetch_one(
        statement, [f.get_db_prep_save(getattr(stored, f.attname), connection) for f in fields]
    )
    assert inserted is not None  # INSERT ... RETURNING answers its row
    stored.pk = inserted[0]
    stored._state.adding = False
    stored._state.db = connection.alias
    return stored


_message_insert_cache: dict[str, tuple[list[Any], str]] = {}


def _message_insert() -> tuple[list[Any], str]:
    """Message's concrete fields but the id, and the INSERT for them (per database vendor)."""
    cached = _message_insert_cache.get(connection.vendor)
    if cached is None:
        fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        cached = (
            fields,
            f"INSERT INTO {table(Message)} ({columns}) "  # noqa: S608
            f"VALUES ({marks(fields)}) RETURNING {quote(Message._meta.pk.column)}",
        )
        _message_insert_cache[connection.vendor] = cached
    return cached


def _check_listed_users(audience: Audience, recipients: Sequence[int]) -> None:
    """Refuse an audience whose user ids name no one, as ``parse_publish`` would.

    Costs a query only when a listed id is not among the recipients (inactive,
    excluded or unknown): the common publish to active users costs none.
    """
    resolved = set(recipients)
    absent = [user_id for user_id in audience.users if user_id not in resolved]
    unknown = user_ids_missing(ids=absent) if absent else []
    if unknown:
        listed = ", ".join(str(user_id) for user_id in unknown)
        raise InvalidInput(
            f"Unknown users: {listed}.", code="unknown_audience", unknown={"users": unknown}
        )


def _deliver(
    stored: Message, recipients: Sequence[int], *, rows_later: bool = False
) -> NotificationResult:
    """Inbox rows of a stored message for ``recipients`` (sorted), and its doorbell.

    Inside the caller's transaction: the doorbell rings once it commits.
    """
    if not recipients:
        return NotificationResult(stored, True, 0)
    return _ring(stored, _append_to_inboxes(stored.pk, recipients, rows_later=rows_later))


def _ring(stored: Message, rows: list[tuple[int, int, int]]) -> NotificationResult:
    """Ring for a message's new inbox rows once the transaction commits."""
    if not rows:
        return NotificationResult(stored, True, 0)
    delivery.ring_on_commit(
        {
            "kind": "notification",
            "message_id": stored.pk,
            "shared": message_payload(stored),
            "recipients": [list(row) for row in rows],
        }
    )
    return NotificationResult(stored, True, len(rows))


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one item of a batch.

    ``created``: a new notification (``message_id``, delivered to ``recipients``).
    ``duplicate``: its idempotency key named an earlier notification of the same
    publisher, or an earlier item of the same batch; ``message_id`` is that one's.
    ``error``: nothing written for this item; ``error`` says why.
    """

    status: Literal["created", "duplicate", "error"]
    message_id: int | None
    recipients: int
    error: BackendError | None


# Keys and names looked up per statement: well under SQLite's bound-variable limit.
_LOOKUP_CHUNK = 5000


def notification_create_batch(
    *,
    items: Sequence[PublishItem | BackendError],
    actor: User | None = None,
    publisher: str = "",
) -> list[BatchOutcome]:
    """Create many notifications in one transaction; one outcome per item, in order.

    An item given as an error (it failed parsing) and an item whose content is
    invalid are answered ``error`` and the others are still created. Idempotency
    is that of ``notification_create``, per ``publisher``; a key used twice in one
    batch makes the second item a duplicate of the first. Every recipient's seqs
    stay gap-free and in item order; the doorbells ring after the commit, one per
    notification, as ``notification_create`` rings.

    Cheap per item: the idempotency keys and the audiences of the whole batch are
    looked up with a few statements, and there is one commit for all of it.
    """
    outcomes: list[BatchOutcome | None] = [None] * len(items)
    valid: list[tuple[int, PublishItem]] = []
    for index, item in enumerate(items):
        if isinstance(item, BackendError):
            outcomes[index] = BatchOutcome("error", None, 0, item)
            continue
        try:
            _validate_content(
                title=item.title,
                message=item.message,
                priority=item.priority,
                url=item.url,
                event_type=item.event_type,
            )
            _validate_key(item.idempotency_key)
        except InvalidInput as error:
            outcomes[index] = BatchOutcome("error", None, 0, error)
            continue
        valid.append((index, item))
    if valid:
        try:
            written = _batch_write(valid, actor=actor, publisher=publisher)
        except IntegrityError:
            # Another writer of this publisher committed one of the keys first (only
            # PostgreSQL can interleave; SQLite's BEGIN IMMEDIATE queues writers).
            # Nothing of this batch was kept: run it again, and those keys are found.
            written = _batch_write(valid, actor=actor, publisher=publisher)
        for index, outcome in written.items():
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _batch_write(
    valid: list[tuple[int, PublishItem]], *, actor: User | None, publisher: str
) -> dict[int, BatchOutcome]:
    written: dict[int, BatchOutcome] = {}
    with transaction.atomic():
        keys = {item.idempotency_key for _, item in valid if item.idempotency_key is not None}
        earlier = _messages_by_key(publisher, keys)
        counts = _delivery_counts(set(earlier.values()))
        for index, item in valid:
            if item.idempotency_key in earlier:
                message_id = earlier[item.idempotency_key]
                written[index] = BatchOutcome(
                    "duplicate", message_id, counts.get(message_id, 0), None
                )
        # The first item with a key is written; later ones with that key copy its outcome.
        first_with_key: dict[str, int] = {}
        fresh: list[tuple[int, PublishItem]] = []
        repeats: list[tuple[int, int]] = []
        for index, item in valid:
            key = item.idempotency_key
            if index in written:
                continue
            if key is not None and key in first_with_key:
                repeats.append((index, first_with_key[key]))
                continue
            if key is not None:
                first_with_key[key] = index
            fresh.append((index, item))
        # One INSERT for the messages: compiling one ORM insert per item was half the time.
        stored = Message.objects.bulk_create(
            [
                Message(
                    event_type=item.event_type,
                    title=item.title,
                    message=item.message,
                    priority=item.priority,
                    url=item.url,
                    actor=actor,
                    data={},
                    audience=item.audience.describe(),
                    idempotency_key=item.idempotency_key,
                    publisher=publisher,
                )
                for _, item in fresh
            ]
        )
        recipients = _recipients_many([item.audience for _, item in fresh])
        # In item order, so every recipient's seqs follow the order of the items.
        appended = _append_many(
            [(message.pk, users) for message, users in zip(stored, recipients, strict=True)]
        )
        for (index, _), message, rows in zip(fresh, stored, appended, strict=True):
            result = _ring(message, rows)
            written[index] = BatchOutcome("created", message.pk, result.recipient_count, None)
        for index, first in repeats:
            outcome = written[first]
            written[index] = BatchOutcome("duplicate", outcome.message_id, outcome.recipients, None)
    return written


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    ordered = list(values)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        yield ordered[start : start + _LOOKUP_CHUNK]


def _messages_by_key(publisher: str, keys: set[str]) -> dict[str | None, int]:
    found: dict[str | None, int] = {}
    for chunk in _chunks(keys):
        found.update(
            Message.objects.filter(publisher=publisher, idempotency_key__in=chunk).values_list(
                "idempotency_key", "id"
            )
        )
    return found


def _delivery_counts(message_ids: set[int]) -> dict[int, int]:
    inbox_log.read_barrier()
    counts: dict[int, int] = {}
    for chunk in _chunks(message_ids):
        rows = (
            Inbox.objects.filter(message_id__in=chunk)
            .values("message_id")
            .annotate(rows=Count("id"))
            .values_list("message_id", "rows")
        )
        counts.update((int(m), int(n)) for m, n in rows)
    return counts


def _recipients_many(audiences: list[Audience]) -> list[list[int]]:
    """``audience_user_ids`` of each audience, with at most four statements in all.

    Who is active, who is in which project and who has which role is read once for
    the whole batch; each audience is then a union of those sets.
    """
    active = User.objects.filter(is_active=True)
    everyone: list[int] = []
    if any(audience.everyone for audience in audiences):
        everyone = sorted(active.values_list("id", flat=True))
    active_users: set[int] = set()
    for chunk in _chunks({u for a in audiences if not a.everyone for u in a.users}):
        active_users.update(active.filter(id__in=chunk).values_list("id", flat=True))
    by_project: defaultdict[int, set[int]] = defaultdict(set)
    for chunk in _chunks({p for a in audiences if not a.everyone for p in a.projects}):
        rows = Membership.objects.filter(project_id__in=chunk, user__is_active=True).values_list(
            "project_id", "user_id"
        )
        for project_id, user_id in rows:
            by_project[project_id].add(user_id)
    by_role: defaultdict[str, set[int]] = defaultdict(set)
    for chunk in _chunks({r for a in audiences if not a.everyone for r in a.roles}):
        for name, user_id in active.filter(role__name__in=chunk).values_list("role__name", "id"):
            by_role[name].add(user_id)
    resolved: list[list[int]] = []
    for audience in audiences:
        if audience.everyone:
            ids = everyone
            if audience.exclude:
                ids = [u for u in ids if u not in set(audience.exclude)]
            resolved.append(ids)
            continue
        chosen = {u for u in audience.users if u in active_users}
        for project_id in audience.projects:
            chosen |= by_project.get(project_id, set())
        for role in audience.roles:
            chosen |= by_role.get(role, set())
        chosen.difference_update(audience.exclude)
        resolved.append(sorted(chosen))
    return resolved


def _validate_ids(ids: Iterable[object]) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, list | tuple):
        raise InvalidInput("ids must be a list of notification ids", code="invalid_ids")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise InvalidInput(f"at most {MAX_IDS_PER_REQUEST} ids per request", code="invalid_ids")
    checked: list[int] = []
    for value in ids:
        number = positive_id(value, text=False)
        if number is None:
            raise InvalidInput("every id must be a positive whole number", code="invalid_ids")
        checked.append(number)
    return checked


@dataclass(frozen=True)
class InboxChange:
    """What an inbox action did; ``not_found`` lists ids that are not the caller's."""

    changed: list[int]
    not_found: list[int]
    unread_count: int


def _announce_read_state(
    *,
    user_id: int,
    unread: int,
    latest_seq: int,
    updates: list[tuple[int, bool]] | None = None,
    deleted: list[int] | None = None,
    all_read_up_to: int | None = None,
) -> None:
    delivery.ring_on_commit(
        {
            "kind": "read_state",
            "user_id": user_id,
            "updates": [[inbox_id, is_read] for inbox_id, is_read in updates or []],
            "deleted": deleted or [],
            "all_read_up_to": all_read_up_to,
            "unread_count": unread,
            # The newest seq that count includes: a socket counts on from it.
            "latest_seq": latest_seq,
        }
    )


def _update_inbox(
    *,
    user_id: int,
    column: Literal["read_at", "deleted_at"],
    value: datetime | None,
    where: str,
    params: Sequence[Any] = (),
) -> list[tuple[int, bool]]:
    """Set ``column`` of the user's Inbox rows matching ``where``: (id, whether its
    ``read_at`` is NULL) of each row this statement changed, sorted by id.

    Raw SQL for RETURNING: the unread count moves by exactly the rows this statement
    changed, read as it changed them. On PostgreSQL a row another transaction is
    changing is checked against ``where`` again once that one commits (READ
    COMMITTED), so of two requests marking a row read at once only the one that
    changed it counts it, and a row marked unread meanwhile is deleted as unread.

    Args:
        where: SQL of our own (column names and ``%s``), ANDed after ``user_id = %s``.
        params: the values of ``where``'s placeholders.
    """
    stored = connection.ops.adapt_datetimefield_value(value)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Inbox)} SET {column} = %s "  # noqa: S608 (our names and SQL)
            f"WHERE user_id = %s AND {where} RETURNING id, read_at",
            [stored, user_id, *params],
        )
        return sorted((int(row_id), read_at is None) for row_id, read_at in cursor.fetchall())


def _move_unread(*, user_id: int, by: int) -> tuple[int, int]:
    """Add ``by`` to the user's ``InboxSequence.unread``: (unread, last_seq) after, (0, 0)
    for a user without a sequence row (who has no rows either).

    One statement either way; the UPDATE's RETURNING is the count the change announces.
    """
    seq_table = table(InboxSequence)
    with connection.cursor() as cursor:
        if by:
            cursor.execute(
                f"UPDATE {seq_table} SET unread = unread + %s "  # noqa: S608 (our names)
                "WHERE user_id = %s RETURNING unread, last_seq",
                [by, user_id],
            )
        else:
            cursor.execute(
                f"SELECT unread, last_seq FROM {seq_table} WHERE user_id = %s",  # noqa: S608
                [user_id],
            )
        row = cursor.fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _set_read(*, user_id: int, ids: Iterable[object], read: bool) -> InboxChange:
    wanted = _validate_ids(ids)
    with transaction.atomic():
        inbox_log.read_barrier(user_id=user_id)
        found = set(
            Inbox.objects.filter(user_id=user_id, id__in=wanted, deleted_at__isnull=True)
            .order_by()
            .values_list("id", flat=True)
        )
        changed: list[int] = []
        mine = sorted(found)
        if mine:
            # Deleted rows are neither counted nor changed; the rows changed were
            # counted (mark unread) or not (mark read) before and the other way after.
            rows = _update_inbox(
                user_id=user_id,
                column="read_at",
                value=timezone.now() if read else None,
                where=f"id IN ({marks(mine)}) AND deleted_at IS NULL "
                + ("AND read_at IS NULL" if read else "AND read_at IS NOT NULL"),
                params=mine,
            )
            changed = [row_id for row_id, _ in rows]
        unread, latest = _move_unread(user_id=user_id, by=-len(changed) if read else len(changed))
        _announce_read_state(
            latest_seq=latest,
            user_id=user_id,
            unread=unread,
            updates=[(inbox_id, read) for inbox_id in changed],
        )
    return InboxChange(changed, [i for i in wanted if i not in found], unread)


def inbox_mark_read(*, user_id: int, ids: Iterable[object]) -> InboxChange:
    """Mark the caller's rows read. Already-read rows are left as they are (idempotent)."""
    return _set_read(user_id=user_id, ids=ids, read=True)


def inbox_mark_unread(*, user_id: int, ids: Iterable[object]) -> InboxChange:
    return _set_read(user_id=user_id, ids=ids, read=False)


def inbox_mark_all_read(*, user_id: int, up_to_seq: int | None = None) -> InboxChange:
    """Mark every unread row with seq <= ``up_to_seq`` read (all of them when None).

    The bound makes a replayed "mark all read" from an offline client leave
    notifications that arrived after the click unread.
    """
    # No index of unread rows (InboxSequence.unread counts them): the UPDATE walks the
    # user's rows through inbox_unique_user_seq, whose user_id leads, and checks each
    # one's read state. SQLite's plan: SEARCH notifications_inbox USING INDEX
    # sqlite_autoindex_notifications_inbox_1 (user_id=? AND seq<?), that constraint's
    # index: the user's rows, never the table.
    where = "read_at IS NULL AND deleted_at IS NULL"
    params: list[object] = []
    if up_to_seq is not None:
        where += " AND seq <= %s"
        params.append(up_to_seq)
    with transaction.atomic():
        inbox_log.read_barrier(user_id=user_id)
        rows = _update_inbox(
            user_id=user_id, column="read_at", value=timezone.now(), where=where, params=params
        )
        changed = [row_id for row_id, _ in rows]
        unread, last_seq = _move_unread(user_id=user_id, by=-len(changed))
        bound = last_seq if up_to_seq is None else up_to_seq
        _announce_read_state(
            user_id=user_id, unread=unread, latest_seq=last_seq, all_read_up_to=bound
        )
    return InboxChange(changed, [], unread)


def inbox_delete(*, user_id: int, ids: Iterable[object]) -> InboxChange:
    """Delete the caller's rows (for them only). Deleting twice is not an error."""
    wanted = _validate_ids(ids)
    with transaction.atomic():
        inbox_log.read_barrier(user_id=user_id)
        found = set(
            Inbox.objects.filter(user_id=user_id, id__in=wanted)
            .order_by()
            .values_list("id", flat=True)
        )
        rows: list[tuple[int, bool]] = []
        mine = sorted(found)
        if mine:
            rows = _update_inbox(
                user_id=user_id,
                column="deleted_at",
                value=timezone.now(),
                where=f"id IN ({marks(mine)}) AND deleted_at IS NULL",
                params=mine,
            )
        # Only the rows unread when they were deleted were counted.
        were_unread = sum(1 for _, unread_row in rows if unread_row)
        unread, latest = _move_unread(user_id=user_id, by=-were_unread)
        changed = [row_id for row_id, _ in rows]
        _announce_read_state(user_id=user_id, unread=unread, latest_seq=latest, deleted=changed)
    return InboxChange(changed, [i for i in wanted if i not in found], unread)


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, name: str, created_by: User | None = None) -> tuple[ApiKey, str]:
    """A new integration key. The raw key is returned once and never stored."""
    if not name.strip():
        raise InvalidInput("an API key needs a name")
    raw = "tnk_" + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name.strip(), prefix=raw[:12], hashed_key=_hash_key(raw), created_by=created_by
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


# last_used_at says when a key was last used to the minute: writing it on every
# request was an UPDATE per publish.
API_KEY_USE_RESOLUTION = timedelta(minutes=1)


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw``, its use recorded (at most once a minute); None
    for unknown or revoked."""
    key = ApiKey.objects.filter(hashed_key=_hash_key(raw), revoked_at__isnull=True).first()
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at >= API_KEY_USE_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
    return key
