"""The web companion's login and guards (backend/web/views.py), through the whole
middleware chain (Django's test client). The pages themselves are driven in a real
browser by tests/e2e/test_web_pages.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from backend.notifications.models import Inbox, InboxSequence
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
from backend.projects.models import Membership, Project
from backend.users.throttling import LoginRateThrottle
from backend.web.views import PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice", password="right-one")


def test_a_visitor_gets_the_login_and_a_page_sends_them_there(client: Client) -> None:
    home = client.get("/")
    assert home.status_code == 200
    assert b'action="/login/"' in home.content

    deep = client.get("/projects/1/tasks/2")
    assert deep.status_code == 302
    assert deep["Location"] == "/?next=/projects/1/tasks/2"


def test_logging_in_goes_to_next_on_this_server_only(client: Client, alice: Any) -> None:
    answer = client.post(
        "/login/", {"username": "alice", "password": "right-one", "next": "/projects"}
    )
    assert answer.status_code == 302
    assert answer["Location"] == "/projects"
    assert client.session["_auth_user_id"] == str(alice.pk)

    client.post("/logout/")
    for elsewhere in ("https://evil.example.com/", "//evil.example.com/x", "javascript:alert(1)"):
        answer = client.post(
            "/login/", {"username": "alice", "password": "right-one", "next": elsewhere}
        )
        assert answer["Location"] == "/", elsewhere


def test_a_wrong_password_shows_the_form_again_with_why(client: Client, alice: Any) -> None:
    answer = client.post("/login/", {"username": "alice", "password": "nope"})

    assert answer.status_code == 400
    assert b"Please enter a correct username and password" in answer.content
    assert "_auth_user_id" not in client.session


def test_a_disabled_account_cannot_log_in_nor_stay_logged_in(client: Client, alice: Any) -> None:
    client.post("/login/", {"username": "alice", "password": "right-one"})
    alice.is_active = False
    alice.save()

    assert client.get("/projects").status_code == 302  # the session no longer counts
    answer = client.post("/login/", {"username": "alice", "password": "right-one"})
    assert answer.status_code == 400


def test_logout_takes_a_post_only(client: Client, alice: Any) -> None:
    client.post("/login/", {"username": "alice", "password": "right-one"})

    assert client.get("/logout/").status_code == 405
    assert client.get("/projects").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/projects").status_code == 302


def test_the_login_spends_the_same_per_address_budget_as_the_api(
    client: Client, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": "3/min"})
    cache.clear()
    try:
        for _ in range(3):
            assert client.post("/login/", {"username": "alice", "password": "x"}).status_code == 400
        refused = client.post("/login/", {"username": "alice", "password": "right-one"})
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) >= 1
        assert b"Too many login attempts" in refused.content
        assert "_auth_user_id" not in client.session
    finally:
        cache.clear()


def test_a_page_that_is_not_there_is_the_companions_404(client: Client, alice: Any) -> None:
    client.post("/login/", {"username": "alice", "password": "right-one"})

    for path in ("/nowhere", "/projects/1", "/notifications/5", "/projects/x"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert b"not yours to see" in answer.content


def test_the_inbox_pages_newest_first_without_repeats(client: Client, alice: Any) -> None:
    for number in range(1, 121):
        notification_create(audience=Audience(users=(alice.pk,)), title=f"number {number}")
    client.post("/login/", {"username": "alice", "password": "right-one"})

    seen: list[str] = []
    path = "/"
    while path:
        page = client.get(path)
        assert page.status_code == 200
        titles = re.findall(
            r'<a href="/notifications/\d+">(?:<span[^>]*></span>)?([^<]+)</a>',
            page.content.decode(),
        )
        assert 0 < len(titles) <= PAGE_SIZE
        seen += titles
        older = re.search(r'<a href="(/\?before=\d+)" rel="next">', page.content.decode())
        path = older.group(1) if older else ""
    assert seen == [f"number {number}" for number in range(120, 0, -1)]
    assert b'id="unread-count">120<' in client.get("/").content


BIG_INBOX = 100_000


def _fill_inbox(user_id: int, rows: int) -> None:
    """``rows`` notifications ("number 1" .. "number N", seq 1 .. N) in one statement
    each: a hundred thousand through the services would take minutes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_message (event_type, title, message, priority, url,"
            " project_title, data, audience, publisher, created_at)"
            " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)"
            " SELECT 'announcement', 'number ' || i, '', 'normal', '', '', '{}', '{}', '',"
            " CURRENT_TIMESTAMP FROM n",
            [rows],
        )
        cursor.execute(
            "INSERT INTO notifications_inbox (user_id, message_id, seq)"
            " SELECT %s, id, CAST(substr(title, 8) AS INTEGER) FROM notifications_message"
            " WHERE title LIKE 'number %%'",
            [user_id],
        )
    InboxSequence.objects.filter(user_id=user_id).update(last_seq=rows, unread=rows)


def test_the_inbox_pages_through_a_hundred_thousand_rows_a_page_at_a_time(
    client: Client, alice: Any
) -> None:
    _fill_inbox(alice.pk, BIG_INBOX)
    client.post("/login/", {"username": "alice", "password": "right-one"})

    with CaptureQueriesContext(connection) as queries:
        newest = client.get("/")
        deep = client.get("/?before=50001")
    assert _titles(newest) == [f"number {n}" for n in range(BIG_INBOX, BIG_INBOX - PAGE_SIZE, -1)]
    assert _titles(deep) == [f"number {n}" for n in range(50000, 50000 - PAGE_SIZE, -1)]
    assert f'id="unread-count">{BIG_INBOX}<'.encode() in newest.content
    assert b'href="/?before=49951" rel="next"' in deep.content

    # Each page reads one page and a row (to know whether there is an older one),
    # found through the (user, seq) index, never counted or skipped through.
    pages = [q["sql"] for q in queries.captured_queries if 'FROM "notifications_inbox"' in q["sql"]]
    assert len(pages) == 2, pages
    for sql in pages:
        assert sql.endswith(f"LIMIT {PAGE_SIZE + 1}"), sql
        assert "OFFSET" not in sql, sql
        assert "COUNT" not in sql, sql
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "USING INDEX sqlite_autoindex_notifications_inbox_1 (user_id=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort of the user's rows


def _titles(page: Any) -> list[str]:
    return re.findall(
        r'<a href="/notifications/\d+">(?:<span[^>]*></span>)?([^<]+)</a>', page.content.decode()
    )


def test_the_inbox_filters_by_words_project_priority_and_unread(client: Client, alice: Any) -> None:
    project = Project.objects.create(title="Apollo", created_by=alice)
    Membership.objects.create(project=project, user=alice, role="owner")
    to_alice = Audience(users=(alice.pk,))
    notification_create(audience=to_alice, title="Deploy finished", message="All green")
    notification_create(
        audience=to_alice, title="Launch", project_id=project.pk, project_title="Apollo"
    )
    notification_create(audience=to_alice, title="Pager", priority="urgent", message="deploy")
    client.post("/login/", {"username": "alice", "password": "right-one"})

    assert _titles(client.get("/?q=DEPLOY")) == ["Pager", "Deploy finished"]
    assert _titles(client.get(f"/?project={project.pk}")) == ["Launch"]
    assert _titles(client.get("/?priority=urgent")) == ["Pager"]
    assert _titles(client.get("/?priority=bogus")) == ["Pager", "Launch", "Deploy finished"]
    (launch,) = re.findall(r"/notifications/(\d+)", client.get("/?q=launch").content.decode())
    client.get(f"/notifications/{launch}")  # opened: read
    assert _titles(client.get("/?unread=1")) == ["Pager", "Deploy finished"]
    assert b"Nothing matches." in client.get("/?q=nowhere").content


def test_the_buttons_change_only_the_users_own_rows(
    client: Client, alice: Any, make_user: Any
) -> None:
    bob = make_user("bob", password="right-one")
    mine = notification_create(audience=Audience(users=(alice.pk,)), title="mine")
    theirs = notification_create(audience=Audience(users=(bob.pk,)), title="theirs")
    my_row = Inbox.objects.get(user=alice, message=mine.message)
    their_row = Inbox.objects.get(user=bob, message=theirs.message)
    client.post("/login/", {"username": "alice", "password": "right-one"})

    def press(action: str, *ids: int, back: str = "/?unread=1") -> Any:
        return client.post(
            "/inbox/change/", {"action": action, "id": [str(i) for i in ids], "next": back}
        )

    answer = press("read", my_row.pk, their_row.pk)
    assert answer.status_code == 302
    assert answer["Location"] == "/?unread=1"
    my_row.refresh_from_db()
    their_row.refresh_from_db()
    assert my_row.read_at is not None
    assert their_row.read_at is None

    press("unread", my_row.pk)
    my_row.refresh_from_db()
    assert my_row.read_at is None
    press("all")
    my_row.refresh_from_db()
    assert my_row.read_at is not None
    assert press("delete", my_row.pk, back=f"/notifications/{my_row.pk}")["Location"] == "/"
    my_row.refresh_from_db()
    assert my_row.deleted_at is not None

    assert press("read", 0).status_code == 400  # not an id
    assert press("explode", my_row.pk).status_code == 400
    their_row.refresh_from_db()
    assert their_row.read_at is None
    assert their_row.deleted_at is None


def test_the_buttons_need_the_pages_csrf_token(alice: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    row = Inbox.objects.get(
        user=alice,
        message=notification_create(audience=Audience(users=(alice.pk,)), title="x").message,
    )

    forged = browser.post("/inbox/change/", {"action": "delete", "id": str(row.pk)})

    assert forged.status_code == 403
    row.refresh_from_db()
    assert row.deleted_at is None


def test_opening_a_notifications_page_marks_it_read(client: Client, alice: Any) -> None:
    created = notification_create(audience=Audience(users=(alice.pk,)), title="look at me")
    row = Inbox.objects.get(user=alice, message=created.message)
    client.post("/login/", {"username": "alice", "password": "right-one"})

    page = client.get(f"/notifications/{row.pk}")

    assert page.status_code == 200
    assert b"look at me" in page.content
    row.refresh_from_db()
    assert row.read_at is not None


def test_a_deep_link_with_a_query_keeps_it_through_the_login(client: Client) -> None:
    deep = client.get("/projects?sort=name&page=2")

    assert deep.status_code == 302
    login = client.get(deep["Location"])
    assert b'name="next" value="/projects?sort=name&amp;page=2"' in login.content


def test_the_headers_do_not_disturb_is_the_users_attention(client: Client, alice: Any) -> None:
    from backend.attention.selectors import attention_of

    client.post("/login/", {"username": "alice", "password": "right-one"})
    page = client.get("/").content.decode()
    assert 'aria-label="Turn on do not disturb"' in page
    answer = client.post("/attention/dnd/", {"dnd": "1h", "next": "/projects"})
    assert (answer.status_code, answer["Location"]) == (302, "/projects")
    until = attention_of(user_id=alice.pk)["dnd"]["until"]
    assert until is not None
    assert f'<time datetime="{until}">' in client.get("/").content.decode()
    client.post("/attention/dnd/", {"dnd": "on"})
    assert attention_of(user_id=alice.pk)["dnd"] == {"until": None}
    client.post("/attention/dnd/", {"dnd": "off"})
    assert attention_of(user_id=alice.pk)["dnd"] is None
    refused = client.post("/attention/dnd/", {"dnd": "forever"})
    assert refused.status_code == 400
    assert client.get("/attention/dnd/").status_code == 405
    client.post("/logout/")
    assert client.post("/attention/dnd/", {"dnd": "on"}).status_code == 302  # to the login
    assert attention_of(user_id=alice.pk)["dnd"] is None
