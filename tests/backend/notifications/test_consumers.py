"""The WebSocket consumer through Channels' communicator: the real ASGI app,
the real hub and a real SQLite database, in this process."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from backend.notifications import delivery
from backend.notifications.events import Event
from backend.notifications.models import Inbox
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.projects.models import Membership, Project
from backend.users.models import User
from backend.users.services import session_logout, session_start
from backend.users.tokens import SESSION_ENDED
from tests.backend.conftest import access_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def make(username: str, **fields: Any) -> User:
    return User.objects.create_user(username=username, password="pw", **fields)


@database_sync_to_async
def notify(*users: User, title: str = "Hello", **fields: Any) -> Any:
    return notification_create(
        audience=Audience(users=tuple(u.pk for u in users)), title=title, **fields
    )


@database_sync_to_async
def notify_many(user: User, count: int) -> None:
    for n in range(count):
        notification_create(audience=Audience(users=(user.pk,)), title=f"n{n + 1}")


async def test_hello_carries_protocol_user_unread_and_latest_seq(connect):
    alice = await make("alice", first_name="Alice")
    await notify(alice)
    await notify(alice)
    client = await connect(alice)
    assert client.hello["protocol"] == 1
    assert client.hello["user"] == {
        "id": alice.pk,
        "username": "alice",
        "first_name": "Alice",
        "last_name": "",
    }
    assert client.hello["unread_count"] == 2
    assert client.hello["latest_seq"] == 2


async def test_token_in_query_string_is_accepted_for_browsers(connect):
    alice = await make("alice")
    client = await connect(alice, via="query")
    assert client.hello["user"]["username"] == "alice"


async def test_live_notification_arrives_with_seq_and_content(connect):
    alice = await make("alice")
    bob = await make("bob", first_name="Bob")
    client = await connect(alice)
    await notify(
        alice, title="Deploy done", message="v2 is live", priority="high", url="/x", actor=bob
    )
    frame = await client.receive()
    assert frame["type"] == "notification_created"
    payload = frame["payload"]
    assert payload["seq"] == 1
    assert payload["title"] == "Deploy done"
    assert payload["message"] == "v2 is live"
    assert payload["priority"] == "high"
    assert payload["is_read"] is False
    assert payload["actor"]["username"] == "bob"
    row = await database_sync_to_async(Inbox.objects.get)(user=alice, seq=1)
    assert payload["id"] == row.pk


async def test_a_notification_reaches_only_its_recipients(connect):
    alice, bob = await make("alice"), await make("bob")
    to_alice = await connect(alice)
    to_bob = await connect(bob)
    await notify(alice, title="for alice")
    assert (await to_alice.receive())["payload"]["title"] == "for alice"
    assert await to_bob.nothing_pending()


async def test_resume_replays_exactly_the_missed_rows_in_order(connect):
    alice = await make("alice")
    await notify_many(alice, 30)
    client = await connect(alice)
    await client.send("resume", {"after_seq": 12})
    seqs = []
    while True:
        frame = await client.receive()
        if frame["type"] == "caught_up":
            break
        assert frame["type"] == "notification_created"
        seqs.append(frame["payload"]["seq"])
    assert seqs == list(range(13, 31))
    assert frame["payload"] == {"after_seq": 12, "through_seq": 30, "replayed": 18}
    # Live delivery continues after the replay.
    await notify(alice, title="after")
    assert (await client.receive())["payload"]["seq"] == 31


@pytest_asyncio.fixture
async def statements() -> AsyncIterator[list[str]]:
    """Every statement the consumers' database thread runs during the test.

    Channels runs database work in one shared thread (thread-sensitive), so a
    wrapper on that thread's connection sees all of it.
    """
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    # Looked up inside the database thread: ``connection`` is per thread.
    await database_sync_to_async(lambda: connection.execute_wrappers.append(record))()
    yield seen
    await database_sync_to_async(lambda: connection.execute_wrappers.remove(record))()


async def test_a_reconnect_with_resume_costs_two_queries(connect, statements):
    """B5's budget: one query authenticates the socket and reads hello's state, one
    replays; presence costs none while nobody watches a project."""
    alice = await make("alice")
    await notify_many(alice, 30)
    token = await database_sync_to_async(access_token)(alice)
    await connect(await make("bob"))  # the hub's one-off start-up queries
    statements.clear()
    client = await connect(token=token)
    assert client.hello["latest_seq"] == 30
    assert client.hello["unread_count"] == 30
    assert len(statements) == 1, statements
    await client.send("resume", {"after_seq": 12})
    frame = await client.receive_until("caught_up")
    assert frame["payload"] == {"after_seq": 12, "through_seq": 30, "replayed": 18}
    assert len(statements) == 2, statements


async def test_resume_skips_deleted_rows_but_reports_through_seq(connect):
    alice = await make("alice")
    await notify_many(alice, 3)
    row = await database_sync_to_async(Inbox.objects.get)(user=alice, seq=2)
    await database_sync_to_async(Inbox.objects.filter(pk=row.pk).update)(
        deleted_at="2020-01-01T00:00Z"
    )
    client = await connect(alice)
    await client.send("resume", {"after_seq": 0})
    first = await client.receive()
    second = await client.receive()
    done = await client.receive()
    assert [first["payload"]["seq"], second["payload"]["seq"]] == [1, 3]
    assert done == {
        "type": "caught_up",
        "payload": {"after_seq": 0, "through_seq": 3, "replayed": 2},
    }


@pytest.mark.parametrize("cursor", [-1, "abc", 2**63, None, True, 1.5, [1]])
async def test_bad_resume_cursors_get_a_clear_error_and_the_socket_stays(connect, cursor):
    alice = await make("alice")
    client = await connect(alice)
    await client.send("resume", {"after_seq": cursor}, ref="r1")
    error = await client.receive()
    assert error["type"] == "error"
    assert error["ref"] == "r1"
    assert error["payload"]["code"] == "invalid_cursor"
    await client.send("ping", ref=2)
    assert (await client.receive()) == {"type": "pong", "payload": {}, "ref": 2}


async def test_resume_from_beyond_the_latest_seq_says_the_server_was_reset(connect):
    alice = await make("alice")
    client = await connect(alice)
    await client.send("resume", {"after_seq": 99})
    error = await client.receive()
    assert error["payload"]["code"] == "cursor_ahead"


async def test_a_huge_backlog_is_paged_over_rest(connect, settings):
    settings.TRAY = {**settings.TRAY, "REPLAY_MAX": 5}
    alice = await make("alice")
    await notify_many(alice, 8)
    client = await connect(alice)
    await client.send("resume", {"after_seq": 1})
    frame = await client.receive()
    assert frame["type"] == "resync_required"
    assert frame["payload"]["latest_seq"] == 8
    assert "after_seq=1" in frame["payload"]["page_url"]


async def test_a_missed_doorbell_is_recovered_from_the_database(connect, monkeypatch):
    alice = await make("alice")
    client = await connect(alice)
    real_ring = delivery.ring
    dropped: list[Event] = []

    def lossy_ring(event: Event) -> None:
        # Fault injection: the first doorbell is lost on its way (a Redis blip).
        if not dropped:
            dropped.append(event)
            return
        real_ring(event)

    monkeypatch.setattr(delivery, "ring", lossy_ring)
    await notify(alice, title="lost doorbell")
    await notify(alice, title="second")
    first = await client.receive()
    second = await client.receive()
    assert [first["payload"]["title"], second["payload"]["title"]] == ["lost doorbell", "second"]
    assert [first["payload"]["seq"], second["payload"]["seq"]] == [1, 2]
    assert (await client.receive())["type"] == "caught_up"
    # The bell's count includes the one whose doorbell was lost.
    assert await client.receive() == {"type": "unread_count", "payload": {"unread_count": 2}}


async def test_mark_read_reaches_every_socket_of_the_user_with_the_count(connect):
    alice = await make("alice")
    await notify_many(alice, 2)
    desktop = await connect(alice)
    laptop = await connect(alice)
    row = await database_sync_to_async(Inbox.objects.get)(user=alice, seq=1)
    await desktop.send("mark_read", {"ids": [row.pk]}, ref="m")
    for client in (desktop, laptop):
        frames = [await client.receive() for _ in range(2 if client is laptop else 3)]
        kinds = {frame["type"]: frame for frame in frames}
        assert kinds["notification_updated"]["payload"] == {
            "id": row.pk,
            "updates": {"is_read": True},
        }
        assert kinds["unread_count"]["payload"] == {"unread_count": 1}
        if client is desktop:
            assert kinds["ack"]["ref"] == "m"
            assert kinds["ack"]["payload"]["changed"] == [row.pk]
    # Again: idempotent, nothing changes.
    await desktop.send("mark_read", {"ids": [row.pk]}, ref="again")
    ack = await desktop.receive_until("ack")
    assert ack["payload"]["changed"] == []
    assert ack["payload"]["unread_count"] == 1


async def test_other_users_ids_are_not_found_and_untouched(connect):
    alice, bob = await make("alice"), await make("bob")
    await notify(bob)
    bobs = await database_sync_to_async(Inbox.objects.get)(user=bob)
    client = await connect(alice)
    for kind in ("mark_read", "delete"):
        await client.send(kind, {"ids": [bobs.pk]}, ref=kind)
        ack = await client.receive_until("ack")
        assert ack["payload"]["not_found"] == [bobs.pk]
    await database_sync_to_async(bobs.refresh_from_db)()
    assert bobs.read_at is None
    assert bobs.deleted_at is None


async def test_mark_all_read_up_to_a_seq_leaves_newer_unread(connect):
    alice = await make("alice")
    await notify_many(alice, 3)
    client = await connect(alice)
    await client.send("mark_all_read", {"up_to_seq": 2}, ref=1)
    ack = await client.receive_until("ack")
    assert ack["payload"]["unread_count"] == 1
    unread = await database_sync_to_async(
        lambda: list(
            Inbox.objects.filter(user=alice, read_at__isnull=True).values_list("seq", flat=True)
        )
    )()
    assert unread == [3]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"payload": {}}', "invalid_frame"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "ping", "payload": [1]}', "invalid_frame"),
        ("[" * 30_000 + "]" * 30_000, "invalid_json"),
        ('{"type": "mark_read", "payload": {"ids": "1,2"}}', "invalid_ids"),
        ('{"type": "mark_read", "payload": {"ids": [1, -2]}}', "invalid_ids"),
        ('{"type": "set_status", "payload": {"status": "sleeping"}}', "invalid_status"),
        ('{"type": "subscribe_presence", "payload": {"project_id": "3"}}', "invalid_project"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_keeps_serving(connect, frame, code):
    alice = await make("alice")
    client = await connect(alice)
    await client.ws.send_to(text_data=frame)
    error = await client.receive()
    assert error["type"] == "error"
    assert error["payload"]["code"] == code
    assert error["payload"]["message"]
    await client.send("ping", {"n": 1}, ref="still")
    assert await client.receive() == {"type": "pong", "payload": {"n": 1}, "ref": "still"}


async def test_binary_frames_are_refused_with_an_error(connect):
    alice = await make("alice")
    client = await connect(alice)
    await client.ws.send_to(bytes_data=b"\xff\xfe\x00")
    error = await client.receive()
    assert error["payload"]["code"] == "binary_not_supported"


async def test_an_oversized_frame_closes_with_1009_and_others_are_served(connect):
    alice, bob = await make("alice"), await make("bob")
    big = await connect(alice)
    other = await connect(bob)
    await big.ws.send_to(text_data=json.dumps({"type": "ping", "payload": {"x": "y" * 70_000}}))
    assert await big.closed_with() == 1009
    await other.send("ping", ref=1)
    assert (await other.receive())["type"] == "pong"


async def test_a_flooding_client_is_closed_with_1008(connect, settings):
    settings.TRAY = {**settings.TRAY, "WS_RATE_BURST": 10, "WS_RATE_PER_SECOND": 1.0}
    alice = await make("alice")
    client = await connect(alice)
    for _ in range(30):
        await client.send("ping")
    assert await client.closed_with() == 1008


def _forge(claims: dict[str, Any], alg: str = "none") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "expired", "wrong_signature", "alg_none", "refresh", "huge"]
)
async def test_bad_tokens_close_with_4001_after_an_error_frame(connect, kind):
    alice = await make("alice")

    @database_sync_to_async
    def token_for() -> str | None:
        from backend.users.services import session_start

        if kind == "missing":
            return None
        if kind == "garbage":
            return "not-a-jwt"
        if kind == "expired":
            return access_token(alice, lifetime=timedelta(seconds=-10))
        if kind == "wrong_signature":
            head, body, _ = access_token(alice).split(".")
            return f"{head}.{body}.c2lnbmF0dXJlLWZvcmdlZA"
        if kind == "alg_none":
            good = AccessToken(access_token(alice))  # type: ignore[arg-type]
            return _forge(dict(good.payload))
        if kind == "refresh":
            return session_start(user=alice).refresh
        return "a" * 100_000

    client = await connect(token=await token_for(), expect_hello=False)
    assert client.connected
    error = await client.receive()
    assert error["type"] == "error"
    assert error["payload"]["code"] in {"token_missing", "token_invalid"}
    assert "eyJ" not in error["payload"]["message"]
    assert await client.closed_with() == 4001


async def test_a_deactivated_user_is_refused_and_disconnected(connect):
    alice = await make("alice")
    client = await connect(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert await client.closed_with() == 4003
    again = await connect(alice, expect_hello=False)
    error = await again.receive()
    assert error["payload"]["code"] == "account_disabled"
    assert await again.closed_with() == 4003


async def test_logout_closes_that_sessions_sockets_and_refuses_its_access_token(connect):
    alice = await make("alice")
    pair = await database_sync_to_async(session_start)(user=alice)
    other_device = await connect(alice)
    logged_out = await connect(alice, token=pair.access)
    await database_sync_to_async(session_logout)(refresh=pair.refresh)

    assert await logged_out.closed_with() == 4001
    # The same access token cannot open a new socket or renew another one in band.
    again = await connect(token=pair.access, expect_hello=False)
    ended = (await again.receive())["payload"]
    assert (ended["code"], ended["message"]) == ("token_invalid", SESSION_ENDED)
    assert await again.closed_with() == 4001
    await other_device.send("authenticate", {"token": pair.access}, ref="auth")
    refused = await other_device.receive()
    assert refused["type"] == "error"
    assert (refused["payload"]["code"], refused["payload"]["message"]) == (
        "token_invalid",
        SESSION_ENDED,
    )
    # The user's other session is untouched.
    await other_device.send("ping", ref="alive")
    assert (await other_device.receive())["type"] == "pong"


async def test_a_password_change_closes_every_socket_of_the_user(connect):
    alice, bob = await make("alice"), await make("bob")
    first, second, bystander = await connect(alice), await connect(alice), await connect(bob)

    @database_sync_to_async
    def change_password() -> None:
        alice.set_password("a-new-password-42")
        alice.save()

    await change_password()
    assert await first.closed_with() == 4001
    assert await second.closed_with() == 4001
    await bystander.send("ping", ref="alive")
    assert (await bystander.receive())["type"] == "pong"


async def test_an_expired_access_token_closes_4001_unless_renewed_in_band(connect, settings):
    settings.TRAY = {**settings.TRAY, "TOKEN_SWEEP_INTERVAL": 0.05}
    alice = await make("alice")
    short = await database_sync_to_async(access_token)(alice, lifetime=timedelta(seconds=1))
    renewed = await connect(alice, token=short)
    lapsing = await connect(alice, token=short)
    fresh = await database_sync_to_async(access_token)(alice)
    await renewed.send("authenticate", {"token": fresh}, ref="auth")
    ack = await renewed.receive()
    assert ack["type"] == "ack"
    assert ack["payload"]["token_expires_at"] > renewed.hello["token_expires_at"]
    assert await lapsing.closed_with() == 4001
    await renewed.send("ping", ref="alive")
    assert (await renewed.receive())["type"] == "pong"


async def test_in_band_auth_with_another_users_token_is_refused(connect):
    alice, bob = await make("alice"), await make("bob")
    client = await connect(alice)
    await client.send("authenticate", {"token": await database_sync_to_async(access_token)(bob)})
    error = await client.receive()
    assert error["payload"]["code"] == "wrong_user"


async def test_a_foreign_browser_origin_is_refused_at_the_handshake(connect, settings):
    settings.TRAY_ALLOWED_ORIGINS = ["https://app.example.com"]
    alice = await make("alice")
    refused = await connect(
        alice, via="query", headers=[(b"origin", b"https://evil.example")], expect_hello=False
    )
    assert not refused.connected
    allowed = await connect(alice, via="query", headers=[(b"origin", b"https://app.example.com")])
    assert allowed.hello["user"]["username"] == "alice"


async def test_a_host_not_in_allowed_hosts_is_refused_at_the_handshake(connect, settings):
    # DNS rebinding: a page on evil.example whose name now points at this server sends
    # its own Host and a matching Origin; the origin check alone would let it in.
    settings.ALLOWED_HOSTS = ["notify.example.com"]
    alice = await make("alice")
    rebound = [(b"host", b"evil.example"), (b"origin", b"http://evil.example")]
    refused = await connect(alice, via="query", headers=rebound, expect_hello=False)
    assert not refused.connected
    desktop = await connect(alice, headers=[(b"host", b"notify.example.com:8443")])
    assert desktop.hello["user"]["username"] == "alice"


@pytest.mark.parametrize(
    ("cursor", "answer"),
    [
        ("²", "error"),
        ("９", "error"),  # noqa: RUF001 (the look-alike digit is the point)
        ("1" * 5000, "error"),
        (" 0 ", "caught_up"),
    ],
)
async def test_string_cursors_are_ascii_digits_only(connect, cursor, answer):
    alice = await make("alice")
    client = await connect(alice)
    await client.send("resume", {"after_seq": cursor})
    frame = await client.receive()
    assert frame["type"] == answer
    if answer == "error":
        assert frame["payload"]["code"] == "invalid_cursor"


async def test_list_projects_answers_the_users_projects_only(connect):
    alice, bob = await make("alice"), await make("bob")

    @database_sync_to_async
    def memberships() -> tuple[int, int]:
        mobile = Project.objects.create(title="Mobile App")
        website = Project.objects.create(title="Website")
        Membership.objects.create(project=mobile, user=alice, role="owner")
        Membership.objects.create(project=website, user=bob)
        return mobile.pk, website.pk

    mobile_id, _ = await memberships()
    client = await connect(alice)
    await client.send("list_projects", ref="p1")
    answer = await client.receive()
    assert answer == {
        "type": "ack",
        "payload": {
            "for": "list_projects",
            "projects": [{"id": mobile_id, "title": "Mobile App", "role": "owner"}],
        },
        "ref": "p1",
    }
