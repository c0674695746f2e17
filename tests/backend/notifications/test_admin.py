"""Admin of API keys and notifications: keys shown once and revocable; messages read-only;
announcements sent through notification_create."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from backend.notifications.models import ApiKey, Inbox, Message
from backend.notifications.selectors import Audience
from backend.notifications.services import api_key_authenticate, api_key_create, notification_create
from backend.users.models import Role

ADD_KEY = reverse("admin:notifications_apikey_add")
KEYS = reverse("admin:notifications_apikey_changelist")
ANNOUNCE = reverse("admin:notifications_message_add")
MESSAGES = reverse("admin:notifications_message_changelist")


@pytest.fixture
def admin_user(make_user: Any) -> Any:
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def browser(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def flashed(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# API keys


def test_creating_a_key_shows_the_raw_key_once(browser: Client, admin_user: Any) -> None:
    response = browser.post(ADD_KEY, {"name": "Jenkins"}, follow=True)
    assert response.status_code == 200
    shown = [re.search(r"tnk_\S+", text) for text in flashed(response)]
    raw = next(match.group(0) for match in shown if match)
    key = ApiKey.objects.get()
    assert key.name == "Jenkins"
    assert key.created_by == admin_user
    assert api_key_authenticate(raw=raw) == key
    assert (
        raw
        not in browser.get(
            reverse("admin:notifications_apikey_change", args=[key.pk])
        ).content.decode()
    )


def test_key_list_shows_prefix_and_state(browser: Client) -> None:
    key, _ = api_key_create(name="Jenkins")
    page = browser.get(KEYS).content.decode()
    assert key.prefix in page
    assert "Jenkins" in page


def test_revoke_selected_keys(browser: Client) -> None:
    first, first_raw = api_key_create(name="one")
    second, second_raw = api_key_create(name="two")
    kept, kept_raw = api_key_create(name="kept")
    response = browser.post(
        KEYS, {"action": "revoke_keys", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    assert response.status_code == 200
    assert api_key_authenticate(raw=first_raw) is None
    assert api_key_authenticate(raw=second_raw) is None
    assert api_key_authenticate(raw=kept_raw) == kept


# Messages


def test_message_list_shows_recipient_counts(browser: Client, make_user: Any) -> None:
    users = [make_user(f"user{number}") for number in range(3)]
    notification_create(audience=Audience(users=tuple(u.pk for u in users)), title="To three")
    response = browser.get(MESSAGES)
    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert row._recipients == 3


def test_messages_cannot_be_edited_or_deleted(browser: Client, make_user: Any) -> None:
    alice = make_user("alice")
    message = notification_create(audience=Audience(users=(alice.pk,)), title="Fixed").message
    change = reverse("admin:notifications_message_change", args=[message.pk])
    assert browser.get(change).status_code == 200  # viewing is fine
    browser.post(change, {"title": "Edited"})
    assert (
        browser.post(reverse("admin:notifications_message_delete", args=[message.pk])).status_code
        == 403
    )
    message.refresh_from_db()
    assert message.title == "Fixed"
    assert Inbox.objects.filter(message=message).count() == 1


def test_send_an_announcement_to_a_role(browser: Client, make_user: Any, admin_user: Any) -> None:
    make_user("dev1", role="developer")
    make_user("dev2", role="developer")
    make_user("designer", role="designer")
    make_user("gone", role="developer", is_active=False)
    developer = Role.objects.get(name="developer")
    response = browser.post(
        ANNOUNCE,
        {
            "title": "Standup moved",
            "message": "To 10:30",
            "priority": "high",
            "url": "",
            "roles": [developer.pk],
        },
        follow=True,
    )
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.actor == admin_user
    assert message.audience == {"roles": ["developer"]}
    assert message.priority == "high"
    recipients = set(message.deliveries.values_list("user__username", flat=True))
    assert recipients == {"dev1", "dev2"}
    assert any("Sent to 2" in text for text in flashed(response))


def test_send_an_announcement_to_everyone(browser: Client, make_user: Any) -> None:
    make_user("alice")
    browser.post(ANNOUNCE, {"title": "Hello all", "priority": "normal", "everyone": "on"})
    message = Message.objects.get()
    assert message.audience == {"everyone": True}
    assert message.deliveries.count() == 2  # alice and the admin


@pytest.mark.parametrize(
    "form",
    [
        {"title": "Nobody", "priority": "normal"},
        {"title": "", "priority": "normal", "everyone": "on"},
        {"title": "Bad link", "priority": "normal", "everyone": "on", "url": "javascript:alert(1)"},
        {"title": "Bad priority", "priority": "whenever", "everyone": "on"},
    ],
)
def test_announcement_form_refuses_bad_input(browser: Client, form: dict[str, str]) -> None:
    response = browser.post(ANNOUNCE, form)
    assert response.status_code == 200  # the form again, with errors
    assert response.context["adminform"].form.errors or response.context["errors"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "//evil.example/phish"),
        ("url", "data:text/html,x"),
        ("url", "java\tscript:alert(1)"),
        ("title", "\u200d"),
        ("title", "\u3164"),
        ("title", "Deploy\u2028at 5"),
    ],
)
def test_announcement_form_shows_the_services_rule_on_the_field(
    browser: Client, field: str, value: str
) -> None:
    form = {"title": "Hello", "priority": "normal", "everyone": "on", field: value}
    response = browser.post(ANNOUNCE, form)
    assert response.status_code == 200  # the form again, with the error on the field
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    assert errors[field][0].startswith(f"The {field} "), errors
    assert not Message.objects.exists()


def test_announcement_links_may_be_paths_on_this_server(browser: Client) -> None:
    form = {"title": "Hello", "priority": "normal", "everyone": "on", "url": "/projects/1"}
    browser.post(ANNOUNCE, form)
    assert Message.objects.get().url == "/projects/1"


def test_role_action_prefills_the_announcement(browser: Client, make_user: Any) -> None:
    make_user("dev", role="developer")
    make_user("des", role="designer")
    roles = list(Role.objects.order_by("pk"))
    response = browser.post(
        reverse("admin:users_role_changelist"),
        {"action": "send_announcement", "_selected_action": [role.pk for role in roles]},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(ANNOUNCE)
    form = browser.get(response["Location"]).context["adminform"].form
    assert sorted(int(pk) for pk in form.initial["roles"]) == [role.pk for role in roles]
