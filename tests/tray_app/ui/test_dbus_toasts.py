"""The pure parts of the Linux toasts' Notify call (the D-Bus side is in test_toasts.py)."""

from __future__ import annotations

import html

from hypothesis import given
from hypothesis import strategies as st

from tray_app.ui.dbus_toasts import notify_body


@given(st.text())
def test_a_markup_server_gets_the_body_escaped_as_html_escape_would(body: str) -> None:
    assert notify_body(body, ["body", "body-markup"]) == html.escape(body, quote=False)


@given(st.text())
def test_a_server_without_markup_gets_the_body_as_it_is(body: str) -> None:
    assert notify_body(body, ["body", "actions"]) == body


def test_quotes_stay_as_they_are_and_ampersands_are_escaped_first() -> None:
    assert notify_body("\"a\" & 'b' <c>", ["body-markup"]) == "\"a\" &amp; 'b' &lt;c&gt;"
