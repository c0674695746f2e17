"""Reads of notifications and audiences. Writes are in services.py."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BigIntegerField,
    FilteredRelation,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from backend.attention.models import Attention
from backend.attention.selectors import attention_payload
from backend.errors import InvalidInput, NotFound
from backend.notifications import inbox_log
from backend.notifications.models import Inbox, InboxSequence
from backend.notifications.payloads import (
    PAYLOAD_COLUMNS,
    RECIPIENT_COLUMNS,
    recipient_payload,
    shared_values_payload,
    values_payload,
)
from backend.numbers import MAX_INT64, is_seq, positive_id, whole_number
from backend.projects.models import Membership
from backend.sql import fetch_all, marks, table
from backend.users.models import Role, User

INBOX_PAGE_MAX = 200


@dataclass(frozen=True)
class Audience:
    """Who a notification goes to: the union of the parts given.

    Recipients are resolved when the notification is written (``audience_user_ids``),
    never cached: a member removed a moment ago receives nothing more.
    """

    users: tuple[int, ...] = ()
    projects: tuple[int, ...] = ()
    roles: tuple[str, ...] = ()
    everyone: bool = False
    exclude: tuple[int, ...] = field(default=())

    def is_empty(self) -> bool:
        return not (self.users or self.projects or self.roles or self.everyone)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {}
        if self.everyone:
            described["everyone"] = True
        if self.users:
            described["users"] = list(self.users)
        if self.projects:
            described["projects"] = list(self.projects)
        if self.roles:
            described["roles"] = list(self.roles)
        return described


def audience_user_ids(audience: Audience) -> list[int]:
    """The active users an audience names right now, sorted (the lock order).

    One raw statement: the ORM's three querysets cost ~0.35 ms of Python per
    publish, a sixth of the whole write of the B3 mix (docs/performance.md, issue 14).
    """
    users = table(User)
    active = f"SELECT id FROM {users} WHERE is_active = %s"  # noqa: S608 (our names)
    params: list[Any] = [True]
    if not audience.everyone:
        named: list[str] = []
        if audience.users:
            named.append(f"id IN ({marks(audience.users)})")
            params.extend(audience.users)
        if audience.projects:
            named.append(
                f"id IN (SELECT user_id FROM {table(Membership)} "  # noqa: S608
                f"WHERE project_id IN ({marks(audience.projects)}))"
            )
            params.extend(audience.projects)
        if audience.roles:
            named.append(
                f"role_id IN (SELECT id FROM {table(Role)} "  # noqa: S608
                f"WHERE name IN ({marks(audience.roles)}))"
            )
            params.extend(audience.roles)
        if not named:
            return []
        active += " AND (" + " OR ".join(named) + ")"
    ids = {row[0] for row in fetch_all(active, params)}
    ids.difference_update(audience.exclude)
    return sorted(ids)


def user_project_ids(*, user_id: int) -> list[int]:
    return list(
        Membership.objects.filter(user_id=user_id)
        .order_by("project_id")
        .values_list("project_id", flat=True)
    )


def user_summary(user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


def presence_audience(*, user_id: int) -> tuple[dict[str, Any], list[int]] | None:
    """Who a presence change is about, and the projects whose watchers are told."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return None
    return user_summary(user), user_project_ids(user_id=user_id)


def project_members(*, project_id: int) -> list[dict[str, Any]]:
    users = User.objects.filter(memberships__project_id=project_id, is_active=True).order_by("id")
    return [user_summary(user) for user in users]


def is_project_member(*, user_id: int, project_id: int) -> bool:
    return Membership.objects.filter(user_id=user_id, project_id=project_id).exists()


def validate_seq(value: object, *, name: str) -> int:
    """A cursor from a client: a whole number from 0 to 2**63-1, or InvalidInput."""
    number = whole_number(value)
    if number is None:
        raise InvalidInput(f"{name} must be a whole number", code="invalid_cursor")
    if not is_seq(number):
        raise InvalidInput(f"{name} must be between 0 and {MAX_INT64}", code="invalid_cursor")
    return number


def validate_project_id(value: object) -> int:
    """A project id from a client: a positive whole number below 2**63, or InvalidInput."""
    number = positive_id(value, text=False)
    if number is None:
        raise InvalidInput("project_id must be a positive whole number", code="invalid_project")
    return number


# The inbox state of a user without a sequence row (saved without the signal).
_ZERO = Value(0, output_field=BigIntegerField())


@dataclass(frozen=True)
class InboxState:
    unread_count: int
    latest_seq: int


def users_with_inbox_state() -> QuerySet[User]:
    """Users annotated with their inbox state, so that a socket's authentication and
    its ``hello`` cost one query together (read it back with ``annotated_inbox_state``).

    Both come from the user's sequence row (0 without one)."""
    sequence = InboxSequence.objects.filter(user_id=OuterRef("pk"))
    return User.objects.annotate(
        inbox_unread_count=Coalesce(Subquery(sequence.values("unread")[:1]), _ZERO),
        inbox_latest_seq=Coalesce(Subquery(sequence.values("last_seq")[:1]), _ZERO),
    )


def annotated_inbox_state(user: User) -> InboxState:
    """The inbox state of a user read through ``users_with_inbox_state``."""
    return InboxState(
        unread_count=int(user.inbox_unread_count),  # type: ignore[attr-defined]
        latest_seq=int(user.inbox_latest_seq),  # type: ignore[attr-defined]
    )


@dataclass(frozen=True)
class SocketOpening:
    """What a socket needs once its token is read: who (``hello``'s user), the inbox
    state, and with a cursor the first replay batch above it."""

    user: dict[str, Any]
    state: InboxState
    replay: list[ReplayRow] | None
    attention: dict[str, Any]  # backend.attention.selectors.attention_payload


_OPENING_USER = ("id", "username", "first_name", "last_name", "is_active", "session_live")
_OPENING_HEAD = (
    *_OPENING_USER,
    "inbox_unread_count",
    "inbox_latest_seq",
    "attention_state",
    "attention_version",
)
_OPENING_REPLAY = ("replay__deleted_at", *(f"replay__{name}" for name in PAYLOAD_COLUMNS))


def _opening_rows(
    *, user_id: int, session_id: str, after_seq: int | None, limit: int, now: datetime
) -> QuerySet[User, tuple[Any, ...]]:
    """``socket_opening``'s statement as a queryset: ``_OPENING_HEAD`` (and with
    ``after_seq``, ``_OPENING_REPLAY`` per replayed row).

    The rows come through a LEFT JOIN of the user's Inbox rows above the cursor (one
    result row each, or one of NULLs when there are none); the unread count and the
    latest seq are subqueries reading the user's sequence row by its key, on a
    constant user id, so they are evaluated once, not per joined row.
    """
    from backend.users.tokens import with_session_state

    sequence = InboxSequence.objects.filter(user_id=user_id)
    attention = Attention.objects.filter(user_id=user_id)
    users = with_session_state(User.objects.filter(pk=user_id), session_id, now=now).annotate(
        inbox_unread_count=Coalesce(Subquery(sequence.values("unread")[:1]), _ZERO),
        inbox_latest_seq=Coalesce(Subquery(sequence.values("last_seq")[:1]), _ZERO),
        attention_state=Subquery(attention.values("state")[:1]),
        attention_version=Coalesce(Subquery(attention.values("version")[:1]), _ZERO),
    )
    if after_seq is None:
        return users.values_list(*_OPENING_HEAD)[:1]
    return (
        users.annotate(replay=FilteredRelation("inbox", condition=Q(inbox__seq__gt=after_seq)))
        .order_by("replay__seq")
        .values_list(*_OPENING_HEAD, *_OPENING_REPLAY)[: max(1, limit)]
    )


class _Slot(enum.Enum):
    """Where a prepared opening statement takes this socket's values."""

    USER = enum.auto()
    SESSION = enum.auto()
    NOW = enum.auto()
    AFTER = enum.auto()


# Stand-ins compiled into the prepared statement, found again among its parameters.
_STAND_INS: dict[_Slot, Any] = {
    _Slot.USER: -7_301_946_285_113,
    _Slot.SESSION: "\x00socket-opening-session",
    _Slot.NOW: datetime(1901, 2, 3, 4, 5, 6, 789, tzinfo=UTC),
    _Slot.AFTER: -7_301_946_285_114,
}


@dataclass(frozen=True)
class _Bound:
    """A parameter of a prepared statement that takes a socket's value, wrapped as the
    compiler wrapped the stand-in (psycopg's ``Int8`` for a bigint, on PostgreSQL)."""

    slot: _Slot
    wrap: Callable[[Any], Any] | None

    def value(self, values: dict[_Slot, Any]) -> Any:
        value = values[self.slot]
        return value if self.wrap is None else self.wrap(value)


def _bound(param: Any, stand_ins: dict[_Slot, Any]) -> Any:
    """``param`` of a compiled statement: a ``_Bound`` if it is one of the stand-ins
    (as such, or in a subclass of its type that the compiler wrapped it in)."""
    for slot, value in stand_ins.items():
        if isinstance(param, type(value)) and param == value:
            return _Bound(slot, None if type(param) is type(value) else type(param))
    return param


# Connections times shapes is small; past this many the cache starts over.
_PREPARED_MAX = 32


@dataclass(frozen=True)
class _PreparedOpening:
    sql: str
    params: tuple[Any, ...]  # constants, and a _Bound where this socket's value goes
    compiler: SQLCompiler  # converts the raw rows as the queryset would ...
    converters: dict[int, Any]  # ... with these (column -> the field's converters)
    # With a cursor: where the replayed message's own columns start in a row.
    shared_start: int | None

    def rows(
        self, connection: BaseDatabaseWrapper, values: dict[_Slot, Any], *, raw_shared: bool = False
    ) -> list[Any]:
        """The statement's rows for this socket, converted as the queryset's would be;
        with ``raw_shared``, the message's columns are left as read (``shared``)."""
        params = [p.value(values) if isinstance(p, _Bound) else p for p in self.params]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            raw: list[Any] = cursor.fetchall()
        converters = self.converters
        if raw_shared and self.shared_start is not None:
            start = self.shared_start
            converters = {pos: c for pos, c in converters.items() if pos < start}
        if not converters:
            return raw
        return list(map(tuple, self.compiler.apply_converters(raw, converters)))

    def shared(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """The message part of a replayed row read with ``raw_shared``, converted and
        built once per distinct message: a storm replays the same few messages to
        every client, and converting their columns (parsing timestamps, decoding
        ``data``) was a quarter of a reconnect's CPU. Keyed by every column as read,
        so a changed message or actor is a new key, never a stale payload."""
        start = self.shared_start
        if start is None:
            raise ValueError("this opening statement reads no replay")
        key: tuple[Any, ...] | None = row[start:]
        try:
            return _shared_payloads[row[start:]]
        except KeyError:
            pass
        except TypeError:  # a driver that returns something unhashable: no memory
            key = None
        converters = {pos: c for pos, c in self.converters.items() if pos >= start}
        converted = (
            next(iter(self.compiler.apply_converters([row], converters))) if converters else row
        )
        shared = shared_values_payload(converted[start:])
        if key is not None:
            if len(_shared_payloads) >= _SHARED_PAYLOADS_MAX:
                _shared_payloads.clear()
            _shared_payloads[key] = shared
        return shared


# A replayed message's columns as read -> its shared payload (``_PreparedOpening.shared``).
# Payloads share this dict as the live path shares a message's (nobody changes them).
_shared_payloads: dict[tuple[Any, ...], dict[str, Any]] = {}
_SHARED_PAYLOADS_MAX = 4096


_prepared: dict[tuple[int, bool, int], _PreparedOpening] = {}


def _prepared_opening(
    connection: BaseDatabaseWrapper, *, replay: bool, limit: int
) -> _PreparedOpening:
    """``_opening_rows`` compiled once per connection and shape, with stand-ins for the
    socket's values. Building and compiling the queryset cost about 2 ms of CPU per
    reconnect, several times the statement itself (B5: a reconnect storm)."""
    limit = max(1, limit) if replay else 1
    key = (id(connection), replay, limit)  # the compiler holds the connection: no id reuse
    prepared = _prepared.get(key)
    if prepared is not None:
        return prepared
    stand_ins = _STAND_INS if replay else {k: v for k, v in _STAND_INS.items() if k != _Slot.AFTER}
    queryset = _opening_rows(
        user_id=stand_ins[_Slot.USER],
        session_id=stand_ins[_Slot.SESSION],
        after_seq=stand_ins.get(_Slot.AFTER),
        limit=limit,
        now=stand_ins[_Slot.NOW],
    )
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    adapted = {
        slot: connection.ops.adapt_datetimefield_value(value) if slot is _Slot.NOW else value
        for slot, value in stand_ins.items()
    }
    template = tuple(_bound(p, adapted) for p in params)
    if set(stand_ins) - {p.slot for p in template if isinstance(p, _Bound)}:
        raise RuntimeError(f"socket_opening: a value is missing from {sql!r} {params!r}")
    if len(_prepared) >= _PREPARED_MAX:
        _prepared.clear()
    converters = compiler.get_converters([c[0] for c in compiler.select[: compiler.col_count]])
    prepared = _prepared[key] = _PreparedOpening(
        sql=sql,
        params=template,
        compiler=compiler,
        converters=converters,
        shared_start=len(_OPENING_HEAD) + 1 + RECIPIENT_COLUMNS if replay else None,
    )
    return prepared


def socket_opening(
    *, user_id: int, session_id: str, after_seq: int | None = None, limit: int = 0
) -> SocketOpening:
    """A socket's user (its session checked), inbox state, attention settings and, given
    ``after_seq``, up to ``limit`` rows above it (deleted ones included, as
    ``inbox_replay_after``): in ONE
    statement, what a reconnecting client costs the database (B5, a reconnect storm).
    The statement is ``_opening_rows``, compiled once (``_prepared_opening``).

    Raises:
        NotAuthenticated: no such user, or the session has ended.
        Forbidden: the user is deactivated.
    """
    from backend.users.tokens import refuse_unless_live

    if after_seq is not None:  # the counts come from the sequence row, the rows do not
        inbox_log.read_barrier(user_id=user_id)
    connection = connections[User.objects.db]
    replay = after_seq is not None
    prepared = _prepared_opening(connection, replay=replay, limit=limit)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    slots = {_Slot.USER: user_id, _Slot.SESSION: session_id, _Slot.NOW: now, _Slot.AFTER: after_seq}
    results = prepared.rows(connection, slots, raw_shared=True)
    if not results:
        refuse_unless_live(found=False, is_active=False, session_live=False)
    first = results[0]
    refuse_unless_live(found=True, is_active=first[4], session_live=bool(first[5]))
    rows = None
    if after_seq is not None:
        head = len(_OPENING_HEAD)
        rows = [
            ReplayRow(
                seq=result[head + 2],
                payload=None
                if result[head] is not None  # deleted: the replay only moves past its seq
                else recipient_payload(
                    prepared.shared(result),
                    inbox_id=result[head + 1],
                    seq=result[head + 2],
                    read_at=result[head + 3],
                ),
            )
            for result in results
            if result[head + 1] is not None  # the NULL row of a user with nothing to replay
        ]
    return SocketOpening(
        user={"id": first[0], "username": first[1], "first_name": first[2], "last_name": first[3]},
        state=InboxState(unread_count=int(first[6]), latest_seq=int(first[7])),
        replay=rows,
        attention=attention_payload(state=first[8], version=int(first[9])),
    )


def inbox_state(*, user_id: int) -> InboxState:
    """The user's unread count and latest seq, both from their sequence row (one query)."""
    found = InboxSequence.objects.filter(user_id=user_id).values_list("unread", "last_seq")
    unread, latest = next(iter(found), (0, 0))
    return InboxState(unread_count=unread, latest_seq=latest)


def inbox_latest_seq(*, user_id: int) -> int:
    latest = InboxSequence.objects.filter(user_id=user_id).values_list("last_seq", flat=True)
    return next(iter(latest), 0)


def inbox_unread_count(*, user_id: int) -> int:
    """The user's unread rows (not read, not deleted): ``InboxSequence.unread``, which the
    services keep exact; 0 for a user without a sequence row."""
    unread = InboxSequence.objects.filter(user_id=user_id).values_list("unread", flat=True)
    return next(iter(unread), 0)


def inbox_list(
    *,
    user_id: int,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int = 50,
    unread: bool | None = None,
    project_id: int | None = None,
    include_deleted: bool = False,
    priority: str | None = None,
    search: str | None = None,
) -> list[Inbox]:
    """One page of the user's inbox.

    With ``after_seq`` the page runs upward in seq order (catching up); otherwise
    it runs downward from ``before_seq`` (or the newest), newest first (browsing).
    ``search`` keeps the rows whose title or text contains it (any case).
    """
    limit = max(1, min(limit, INBOX_PAGE_MAX))
    inbox_log.read_barrier(user_id=user_id)
    rows: QuerySet[Inbox] = Inbox.objects.filter(user_id=user_id).select_related(
        "message", "message__actor"
    )
    if not include_deleted:
        rows = rows.filter(deleted_at__isnull=True)
    # No index of unread rows (InboxSequence.unread counts them): ``unread`` filters
    # the user's rows as inbox_unique_user_seq (user_id, seq) yields them in page
    # order; SQLite's plan: SEARCH notifications_inbox USING INDEX
    # sqlite_autoindex_notifications_inbox_1 (user_id=? [AND seq>?]).
    if unread is True:
        rows = rows.filter(read_at__isnull=True)
    elif unread is False:
        rows = rows.filter(read_at__isnull=False)
    if project_id is not None:
        rows = rows.filter(message__project_id=project_id)
    if priority is not None:
        rows = rows.filter(message__priority=priority)
    if search:
        rows = rows.filter(
            Q(message__title__icontains=search) | Q(message__message__icontains=search)
        )
    if before_seq is not None:
        rows = rows.filter(seq__lt=before_seq)
    if after_seq is not None:
        return list(rows.filter(seq__gt=after_seq).order_by("seq")[:limit])
    return list(rows.order_by("-seq")[:limit])


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One row of a replay: its seq, and its payload (None for a deleted row, which the
    client never sees but whose seq the replay still moves past)."""

    seq: int
    payload: dict[str, Any] | None


def inbox_replay_after(*, user_id: int, after_seq: int, limit: int) -> list[ReplayRow]:
    """Rows above a cursor in seq order, deleted ones included (the caller skips them but
    still moves its cursor past them), as payloads read from plain values: one query and
    no model instances, since this is what every resume costs."""
    inbox_log.read_barrier(user_id=user_id)
    rows = (
        Inbox.objects.filter(user_id=user_id, seq__gt=after_seq)
        .order_by("seq")
        .values_list("deleted_at", *PAYLOAD_COLUMNS)[:limit]
    )
    return [
        ReplayRow(
            seq=values[2], payload=None if values[0] is not None else values_payload(values[1:])
        )
        for values in rows
    ]


def inbox_get(*, user_id: int, inbox_id: int) -> Inbox:
    """The caller's own row; someone else's id is NotFound, exactly like a missing one."""
    inbox_log.read_barrier(user_id=user_id)
    row = (
        Inbox.objects.filter(user_id=user_id, id=inbox_id, deleted_at__isnull=True)
        .select_related("message", "message__actor")
        .first()
    )
    if row is None:
        raise NotFound("No such notification.")
    return row


def inbox_rows_for_users(*, message_id: int, user_ids: Iterable[int]) -> list[tuple[int, int, int]]:
    """(user_id, inbox_id, seq) of one message for the given users.

    For a message another process wrote (the database watch): if its rows are pending
    (another server's lane), they are written first, whether or not this process
    trusts its own count.
    """
    inbox_log.settle_if_pending(message_id=message_id)
    return list(
        Inbox.objects.filter(message_id=message_id, user_id__in=list(user_ids)).values_list(
            "user_id", "id", "seq"
        )
    )


def latest_message_id() -> int:
    from backend.notifications.models import Message

    return Message.objects.aggregate(latest=Max("id"))["latest"] or 0


def inbox_about(*, user_id: int, url: str, limit: int = 50) -> list[Inbox]:
    """The user's notifications that link to ``url`` (a task's, a milestone's), newest
    first: what the user was told about that thing, its history as they saw it."""
    inbox_log.read_barrier(user_id=user_id)
    return list(
        Inbox.objects.filter(user_id=user_id, deleted_at__isnull=True, message__url=url)
        .select_related("message", "message__actor")
        .order_by("-seq")[: max(1, min(limit, INBOX_PAGE_MAX))]
    )
