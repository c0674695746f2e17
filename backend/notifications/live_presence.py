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
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from backend.attention.services import attention_update
from backend.errors import InvalidInput, NotFound
from backend.notifications import protocol, selectors
from backend.notifications.events import ClientSocket
from backend.notifications.hub import Hub


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
    states are read (no change falls in between)."""
    if watcher is not None:
        hub.watch(watcher, project_id)
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


async def chosen_status_set(*, hub: Hub, user_id: int, status: str) -> None:
    """``online`` or ``away``: what teammates see while do-not-disturb is off."""
    await hub.presence.set_status(user_id, status)
    await hub.publish_presence(user_id)


_dnd_set = database_sync_to_async(dnd_set)
_chosen_status_set = async_to_sync(chosen_status_set)


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
        _chosen_status_set(hub=hub, user_id=user_id, status=chosen)
    return chosen
