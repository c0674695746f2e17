"""Writes of notifications. Every function is keyword-only and atomic.

``notification_create`` is the one way a notification comes into being: one
Message, one Inbox row per recipient with the next seq of that recipient, one
doorbell after commit.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from backend.errors import InvalidInput
from backend.notifications import delivery
from backend.notifications.models import ApiKey, Inbox, InboxSequence, Message, Priority
from backend.notifications.payloads import message_payload
from backend.notifications.selectors import Audience, audience_user_ids, inbox_unread_count
from backend.text import single_line_text_problem
from backend.users.models import User

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


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a notification's link, or None if it can.

    The tray and the web companion open the link on a click, so it is one of: empty
    (no link); an absolute ``http``/``https`` address with a host; or a path on this
    server starting with one ``/`` (what the server itself writes, e.g.
    ``/projects/3/tasks/7``), which clients resolve against the server's address.
    Never ``javascript:``, ``file:`` or ``data:``; never ``//host`` or ``/\\host``,
    which browsers read as another host; never spaces or control characters, which
    browsers strip or rewrite, so the link checked would not be the link opened.
    Every way in (publish API, admin, ``notify``, projects) asks this one function.

    Returns:
        A plain sentence naming the problem, or None.
    """
    if not url:
        return None
    if any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in url):
        return "url must not contain spaces, line breaks or control characters"
    if "\\" in url:
        return "url must not contain backslashes; write them as %5C"
    if url.startswith("//"):
        return "url must not start with // (an address on another host needs https://)"
    if url.startswith("/"):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check: it raises when out of range)
    except ValueError:
        return "url is not a valid address"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return (
            "url must be an http:// or https:// address with a host, "
            "or a path on this server starting with /"
        )
    return None


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


def _lock_sequences(user_ids: list[int]) -> set[int]:
    """Lock the users' sequence rows in user-id order; returns the users that have one.

    Raw SQL: the ORM prepared every id of a 5,000-user IN list one by one, a third of
    a broadcast's CPU (bench/mixed_traffic.py). SQLite has no row locks (BEGIN
    IMMEDIATE already serialises writers); PostgreSQL takes them with FOR UPDATE.
    """
    seq_table = connection.ops.quote_name(InboxSequence._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT user_id FROM {seq_table} WHERE user_id = ANY(%s) "  # noqa: S608
                "ORDER BY user_id FOR UPDATE",
                [list(user_ids)],
            )
        else:
            placeholders = ",".join(["%s"] * len(user_ids))
            cursor.execute(
                f"SELECT user_id FROM {seq_table} WHERE user_id IN ({placeholders})",  # noqa: S608
                list(user_ids),
            )
        return {int(row[0]) for row in cursor.fetchall()}


def _append_to_inboxes(message_id: int, user_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """Give each user the next seq and an Inbox row for the message: (user, row id, seq).

    Sequence rows are locked in user-id order, so concurrent writers to
    overlapping audiences queue instead of deadlocking; the locks are held to
    commit, so seq order is commit order. (On SQLite, BEGIN IMMEDIATE already
    serialises writers.) Three statements per 5,000 recipients, whatever the
    database: the seqs are bumped and copied into the inbox inside the database.
    """
    seq_table = connection.ops.quote_name(InboxSequence._meta.db_table)
    inbox_table = connection.ops.quote_name(Inbox._meta.db_table)
    appended: list[tuple[int, int, int]] = []
    for start in range(0, len(user_ids), _SEQ_CHUNK):
        chunk = list(user_ids[start : start + _SEQ_CHUNK])
        locked = _lock_sequences(chunk)
        missing = [uid for uid in chunk if uid not in locked]
        if missing:
            # Users saved without their post_save signal (bulk_create). ON CONFLICT DO
            # NOTHING waits for a concurrent creator to commit; then the lock holds.
            InboxSequence.objects.bulk_create(
                [InboxSequence(user_id=uid) for uid in missing], ignore_conflicts=True
            )
            _lock_sequences(missing)
        placeholders = ",".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {seq_table} SET last_seq = last_seq + 1 "  # noqa: S608 (our names)
                f"WHERE user_id IN ({placeholders})",
                chunk,
            )
            cursor.execute(
                f"INSERT INTO {inbox_table} (user_id, message_id, seq) "  # noqa: S608
                f"SELECT user_id, %s, last_seq FROM {seq_table} WHERE user_id IN ({placeholders}) "
                "RETURNING user_id, id, seq",
                [message_id, *chunk],
            )
            appended.extend((int(u), int(i), int(q)) for u, i, q in cursor.fetchall())
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
) -> NotificationResult:
    """Store a notification for everyone ``audience`` names right now, then ring.

    The same ``idempotency_key`` from the same ``publisher`` returns the first
    notification instead of a new one. Keys are scoped to the publisher
    (``api_key_publisher``, ``user_publisher``, ``CLI_PUBLISHER``): two systems that
    happen to pick the same key each get their own notification.
    """
    _validate_content(
        title=title, message=message, priority=priority, url=url, event_type=event_type
    )
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
        raise InvalidInput("idempotency_key must be 1 to 200 characters", code="invalid_key")
    if idempotency_key is not None:
        existing = Message.objects.filter(
            publisher=publisher, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return NotificationResult(existing, False, existing.deliveries.count())
    try:
        with transaction.atomic():
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
            )
    except IntegrityError:
        # Two requests of one publisher raced with one key: the other one's notification stands.
        if idempotency_key is None:
            raise
        existing = Message.objects.get(publisher=publisher, idempotency_key=idempotency_key)
        return NotificationResult(existing, False, existing.deliveries.count())


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
) -> NotificationResult:
    stored = Message.objects.create(
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
    recipients = audience_user_ids(audience)
    if not recipients:
        return NotificationResult(stored, True, 0)
    rows = _append_to_inboxes(stored.pk, recipients)
    delivery.ring_on_commit(
        {
            "kind": "notification",
            "message_id": stored.pk,
            "shared": message_payload(stored),
            "recipients": [list(row) for row in rows],
        }
    )
    return NotificationResult(stored, True, len(rows))


def _validate_ids(ids: Iterable[object]) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, list | tuple):
        raise InvalidInput("ids must be a list of notification ids", code="invalid_ids")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise InvalidInput(f"at most {MAX_IDS_PER_REQUEST} ids per request", code="invalid_ids")
    checked: list[int] = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise InvalidInput("every id must be a positive whole number", code="invalid_ids")
        checked.append(value)
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
    updates: list[tuple[int, bool]] | None = None,
    deleted: list[int] | None = None,
    all_read_up_to: int | None = None,
) -> int:
    unread = inbox_unread_count(user_id=user_id)
    delivery.ring_on_commit(
        {
            "kind": "read_state",
            "user_id": user_id,
            "updates": [[inbox_id, is_read] for inbox_id, is_read in updates or []],
            "deleted": deleted or [],
            "all_read_up_to": all_read_up_to,
            "unread_count": unread,
        }
    )
    return unread


def _set_read(*, user_id: int, ids: Iterable[object], read: bool) -> InboxChange:
    wanted = _validate_ids(ids)
    with transaction.atomic():
        own = Inbox.objects.filter(user_id=user_id, id__in=wanted, deleted_at__isnull=True)
        found = set(own.values_list("id", flat=True))
        pending = own.filter(read_at__isnull=read)
        changed = sorted(pending.values_list("id", flat=True))
        pending.update(read_at=timezone.now() if read else None)
        unread = _announce_read_state(
            user_id=user_id, updates=[(inbox_id, read) for inbox_id in changed]
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
    with transaction.atomic():
        pending = Inbox.objects.filter(
            user_id=user_id, read_at__isnull=True, deleted_at__isnull=True
        )
        if up_to_seq is not None:
            pending = pending.filter(seq__lte=up_to_seq)
        changed = sorted(pending.values_list("id", flat=True))
        pending.update(read_at=timezone.now())
        bound = up_to_seq
        if bound is None:
            bound = (
                InboxSequence.objects.filter(user_id=user_id)
                .values_list("last_seq", flat=True)
                .first()
                or 0
            )
        unread = _announce_read_state(user_id=user_id, all_read_up_to=bound)
    return InboxChange(changed, [], unread)


def inbox_delete(*, user_id: int, ids: Iterable[object]) -> InboxChange:
    """Delete the caller's rows (for them only). Deleting twice is not an error."""
    wanted = _validate_ids(ids)
    with transaction.atomic():
        own = Inbox.objects.filter(user_id=user_id, id__in=wanted)
        found = set(own.values_list("id", flat=True))
        pending = own.filter(deleted_at__isnull=True)
        changed = sorted(pending.values_list("id", flat=True))
        pending.update(deleted_at=timezone.now())
        unread = _announce_read_state(user_id=user_id, deleted=changed)
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
