"""The server's frames (backend/notifications/protocol.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.notifications import protocol

_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
_shared = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda key: key not in {"id", "seq"}),
    st.one_of(_values, st.dictionaries(st.text(max_size=5), _values, max_size=3)),
    max_size=6,
)


@given(shared=_shared, inbox_id=st.integers(1, 2**63 - 1), seq=st.integers(1, 2**63 - 1))
def test_a_spliced_notification_frame_is_the_frame_encode_writes(
    shared: dict[str, Any], inbox_id: int, seq: int
) -> None:
    # The hub serialises the shared part once per broadcast and splices each recipient
    # in; with the tail made once (the fan-out) or per call, the frame must read as
    # the whole payload encoded in one go.
    prefix = protocol.notification_frame_prefix(shared)
    tail = protocol.notification_frame_tail(prefix)
    made_once = protocol.notification_frame(prefix, inbox_id=inbox_id, seq=seq, tail=tail)
    assert made_once == protocol.notification_frame(prefix, inbox_id=inbox_id, seq=seq)
    whole = {"id": inbox_id, "seq": seq, "is_read": False, "read_at": None, **shared}
    assert json.loads(made_once) == json.loads(protocol.encode("notification_created", whole))


def _handshake(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "websocket", "headers": list(headers)}


@pytest.mark.parametrize(
    ("origin", "cookie", "expected"),
    [
        (b"http://notify.example.com", b"sessionid=abc", "abc"),
        (b"https://notify.example.com", b"other=1; sessionid=abc; x=2", "abc"),
        # Another origin's page (the browser may send the cookie along): never.
        (b"https://evil.example.com", b"sessionid=abc", None),
        (b"http://notify.example.com.evil.example", b"sessionid=abc", None),
        (None, b"sessionid=abc", None),  # no Origin: not a browser page
        (b"http://notify.example.com", b"xsessionid=abc", None),
        (b"http://notify.example.com", b"sessionid=", None),
    ],
)
def test_the_session_cookie_counts_from_the_servers_own_pages_only(
    origin: bytes | None, cookie: bytes, expected: str | None
) -> None:
    headers = [(b"host", b"notify.example.com"), (b"cookie", cookie)]
    if origin is not None:
        headers.append((b"origin", origin))

    found = protocol.session_cookie_from_scope(_handshake(*headers), name="sessionid")

    assert found == expected


def test_behind_a_proxy_the_public_origin_counts_too() -> None:
    # The proxy forwards Host: backend:8000; the page is at https://notify.example.com.
    headers = [
        (b"host", b"backend:8000"),
        (b"origin", b"https://notify.example.com"),
        (b"cookie", b"sessionid=abc"),
    ]
    scope = _handshake(*headers)

    assert protocol.session_cookie_from_scope(scope, name="sessionid") is None
    own = ["https://notify.example.com"]
    assert protocol.session_cookie_from_scope(scope, name="sessionid", own_origins=own) == "abc"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Refresh abc.def.ghi", "abc.def.ghi"),
        (b"refresh  abc ", "abc"),
        (b"REFRESH abc", "abc"),
        (b"Refresh", ""),
        (b"Refresh ", ""),
        (b"Bearer abc", None),
        (b"Refreshabc", None),
        (None, None),
    ],
)
def test_the_refresh_token_comes_from_the_refresh_scheme_only(
    header: bytes | None, expected: str | None
) -> None:
    headers = [] if header is None else [(b"Authorization", header)]
    scope = {"type": "websocket", "headers": headers, "query_string": b"token=x"}

    assert protocol.refresh_token_from_scope(scope) == expected
    if header is not None and expected is not None:
        # The access token's reader still sees no Bearer token in it.
        assert protocol.token_from_scope(scope) == (None, "header")


def test_hello_carries_tokens_only_when_given() -> None:
    common: dict[str, Any] = {
        "user": {"id": 1},
        "unread_count": 0,
        "latest_seq": 0,
        "token_expires_at": 1.5,
        "max_frame_bytes": 10,
        "attention": {},
    }
    plain = json.loads(protocol.hello_frame(**common))["payload"]
    pair = {"access": "a", "refresh": "r"}
    with_pair = json.loads(protocol.hello_frame(**common, tokens=pair))["payload"]

    assert "tokens" not in plain
    assert with_pair == {**plain, "tokens": pair}
