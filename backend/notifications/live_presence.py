"""Presence as clients ask for it: a project's snapshot, and the status a user sets.

One place for what the socket's ``subscribe_presence`` and ``set_status``, the HTTP
stream's ``?watch=`` and the REST endpoints (``GET /api/projects/{id}/presence/``,
``POST /api/presence/status/``) do, so every way in answers with the same payload,
the same checks and the same words.

Presence lives in this process's hub (``Hub.presence``: in memory, or Redis), on its
event loop, so its parts are coroutines; the database's parts are plain functions.
The socket and the stream await the ``presence_snapshot`` / ``status_set``
coroutines; a REST view (synchronous, in the server's database thread) reads the
database itself and runs only the hub's part on the loop (``asgiref``'s
``async_to_sync``): ``presence_snapshot_sync`` / ``status_set_sync``.

In scale mode presence lives in Redis: while it cannot be reached, every way in answers
``PresenceUnavailable`` (``presence_unavailable``, 503 with Retry-After over REST, an
``error`` frame on the socket, which stays open). A chosen status is written to the
database first, so it is kept even then, and shown once Redis is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from backend.attention.services import attention_update
from backend.errors import BackendError, InvalidInput, NotFound
from backend.notifications import presence_services, protocol, selectors
from backend.notifications.events import ClientSocket
from backend.notifications.hub import Hub


class PresenceUnavailable(BackendError):
    """Scale mode: Redis, where presence lives, cannot be reached now."""

    code = "presence_unavailable"
    status = 503
    retry_after = 5


UNAVAILABLE_MESSAGE = (
    "Presence is temporarily unavailable (the server cannot reach Redis). "
    "Try again in a few seconds."
)
STATUS_KEPT_MESSAGE = (
    "Presence is temporarily unavailable (the server cannot reach Redis). Your status is "
    "saved and teammates see it once presence is back; try again in a few seconds."
)


@contextlib.asynccontextmanager
async def _redis_guard(hub: Hub, message: str = UNAVAILABLE_MESSAGE) -> AsyncIterator[None]:
    """Redis away becomes ``PresenceUnavailable`` (said once in the log, by the
    doorbell's link), not a server error."""
    try:
        yield
    except Exception as error:
        if not hub.redis_lost(error):
            raise
        raise PresenceUnavailable(message) from None


def validate_status(value: object) -> str:
    """A status a client may set (``protocol.STATUSES``), or InvalidInput."""
    if not isinstance(value, str) or value not in protocol.STATUSES:
        message = f"status must be one of {', '.join(protocol.STATUSES)}"
        raise InvalidInput(message, code="invalid_status")
    return value


# -- a project's snapshot ------------------------------------------------------------


def members_for(*, user_id: int, project_id: int) -> list[dict[str, Any]]:
    """The active members of a project ``user_id`` is a member of (``user_summary``s).

    Raises:
        NotFound: not a member (the project may not exist: ids do not leak).
    """
    if not selectors.is_project_member(user_id=user_id, project_id=project_id):
        raise NotFound(f"You are not a member of a project {project_id}.")
    return selectors.project_members(project_id=project_id)


async def snapshot_of(
    *,
    hub: Hub,
    project_id: int,
    members: list[dict[str, Any]],
    watcher: ClientSocket | None = None,
) -> dict[str, Any]:
    """``{"project_id", "members": [{"user", "online", "status", "last_seen"}, ...]}``;
    with ``watcher``, that connection watches the project's presence from before the
    states are read (no change falls in between). It still does if presence is
    unavailable: once Redis is back the hub resends every member's state to watchers.

    Raises:
        PresenceUnavailable: Redis cannot be reached.
    """
    if watcher is not None:
        hub.watch(watcher, project_id)
    async with _redis_guard(hub):
        states = await hub.presence.states([member["id"] for member in members])
    snapshot = [{"user": member, **states[member["id"]].as_payload()} for member in members]
    return {"project_id": project_id, "members": snapshot}


_members_for = database_sync_to_async(members_for)
_snapshot_of = async_to_sync(snapshot_of)


async def presence_snapshot(
    *, hub: Hub, user_id: int, project_id: int, watcher: ClientSocket | None = None
) -> dict[str, Any]:
    """``snapshot_of`` a project of ``user_id``'s (the socket's, the stream's).

    Raises:
        NotFound: not a member.
    """
    members = await _members_for(user_id=user_id, project_id=project_id)
    return await snapshot_of(hub=hub, project_id=project_id, members=members, watcher=watcher)


def presence_snapshot_sync(*, hub: Hub, user_id: int, project_id: int) -> dict[str, Any]:
    """``presence_snapshot`` from synchronous code (REST)."""
    members = members_for(user_id=user_id, project_id=project_id)
    return _snapshot_of(hub=hub, project_id=project_id, members=members)


# -- the status teammates see --------------------------------------------------------


def dnd_set(*, user_id: int, until: object) -> None:
    """Do-not-disturb on, as an attention setting (every device is told; ``until`` may
    end it by itself); the hub turns the attention change into the presence change.

    Raises:
        InvalidInput: a bad ``until`` (``invalid_attention``).
    """
    attention_update(user_id=user_id, changes={"dnd": {"until": until}})


async def _status_shown(*, hub: Hub, user_id: int, status: str) -> None:
    """The hub's part of ``chosen_status_set``: presence, and the watchers told.

    Raises:
        PresenceUnavailable: Redis cannot be reached (the status is kept already).
    """
    async with _redis_guard(hub, STATUS_KEPT_MESSAGE):
        await hub.presence.set_status(user_id, status)
        await hub.publish_presence(user_id)


_status_choose = database_sync_to_async(presence_services.presence_status_choose)


async def chosen_status_set(*, hub: Hub, user_id: int, status: str) -> None:
    """``online`` or ``away``: what teammates see while do-not-disturb is off. Kept in
    the database first (it outlives Redis and the server's memory), then shown.

    Raises:
        PresenceUnavailable: Redis cannot be reached (the status is kept already, and
            shown once Redis is back).
    """
    await _status_choose(user_id=user_id, status=status)
    await _status_shown(hub=hub, user_id=user_id, status=status)


_dnd_set = database_sync_to_async(dnd_set)
_status_shown_sync = async_to_sync(_status_shown)


async def status_set(*, hub: Hub, user_id: int, status: object, until: object = None) -> str:
    """Set what teammates see (the socket's ``set_status``): ``dnd`` turns on
    do-not-disturb; ``online`` and ``away`` do not end it (a client that wants that
    changes the attention settings), so a client re-sending its status on reconnect
    cannot undo a do-not-disturb set on another device. Returns the status.

    Raises:
        InvalidInput: ``invalid_status``, or a bad ``until`` (``invalid_attention``).
    """
    chosen = validate_status(status)
    if chosen == "dnd":
        await _dnd_set(user_id=user_id, until=until)
    else:
        await chosen_status_set(hub=hub, user_id=user_id, status=chosen)
    return chosen


def status_set_sync(*, hub: Hub, user_id: int, status: object, until: object = None) -> str:
    """``status_set`` from synchronous code (REST)."""
    chosen = validate_status(status)
    if chosen == "dnd":
        dnd_set(user_id=user_id, until=until)
    else:
        presence_services.presence_status_choose(user_id=user_id, status=chosen)
        _status_shown_sync(hub=hub, user_id=user_id, status=chosen)
    return chosen
