"""The Server-Sent Events decoder (tray_app/net/sse.py): the WHATWG standard's examples
and rules, and fuzzing: it never raises on any text, and any chunking of a stream gives
the same events. ``TRAY_TEST_SCALE`` scales the examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tray_app.net.sse import Heartbeat, SseDecoder, SseEvent, SseTooLarge

SCALE = float(os.environ.get("TRAY_TEST_SCALE", "1"))
FUZZ = settings(
    max_examples=max(50, round(300 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode(*chunks: str) -> list[SseEvent | Heartbeat]:
    decoder = SseDecoder()
    return [item for chunk in chunks for item in decoder.feed(chunk)]


def data_of(items: list[SseEvent | Heartbeat]) -> list[str]:
    return [item.data for item in items if isinstance(item, SseEvent)]


# --- the standard's examples (HTML, 9.2.6 "Interpreting an event stream") -------------


def test_data_lines_are_joined_with_line_feeds() -> None:
    assert decode("data: YHOO\ndata: +2\ndata: 10\n\n") == [SseEvent("YHOO\n+2\n10")]


def test_ids_carry_over_and_an_empty_id_resets_them() -> None:
    stream = (
        ": test stream\n\ndata: first event\nid: 1\n\n"
        "data:second event\nid\n\ndata:  third event\n\n"
    )
    assert decode(stream) == [
        Heartbeat("test stream"),
        SseEvent("first event", last_event_id="1"),
        SseEvent("second event", last_event_id=""),
        SseEvent(" third event", last_event_id=""),
    ]


def test_empty_data_fields_and_an_unfinished_event() -> None:
    assert data_of(decode("data\n\ndata\ndata\n\ndata:")) == ["", "\n"]


def test_one_space_after_the_colon_is_dropped() -> None:
    assert data_of(decode("data:test\n\ndata: test\n\n")) == ["test", "test"]


# --- the rules ------------------------------------------------------------------------


@pytest.mark.parametrize("line_end", ["\n", "\r", "\r\n"])
def test_every_line_end_ends_a_line(line_end: str) -> None:
    stream = f"id: 7{line_end}data: a{line_end}data: b{line_end}{line_end}"
    assert decode(stream) == [SseEvent("a\nb", last_event_id="7")]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    assert decode("data: a\r", "\ndata: b\r", "\n\r", "\n") == [SseEvent("a\nb")]


def test_a_leading_byte_order_mark_is_dropped_once() -> None:
    assert data_of(decode("\ufeffdata: x\n\n")) == ["x"]
    assert data_of(decode("", "\ufeff", "data: x\n\n")) == ["x"]
    # A second one is part of the first line's field name: an unknown field.
    assert decode("\ufeff\ufeffdata: x\n\n") == []


def test_an_id_holding_nul_is_ignored() -> None:
    decoder = SseDecoder()
    events = decoder.feed("id: 5\n\nid: 6\0\ndata: x\n\n")
    assert events == [SseEvent("x", last_event_id="5")]
    assert decoder.last_event_id == "5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3000", 3000), ("0", 0), ("", None), ("3s", None), (" 30", None), ("-1", None), ("٣", None)],
)
def test_retry_takes_ascii_digits_only(value: str, expected: int | None) -> None:
    # One space after the colon is the separator's; a second would make it no number.
    decoder = SseDecoder()
    assert decoder.feed(f"retry: {value}\n\n") == []
    assert decoder.retry_ms == expected


def test_a_retry_too_long_to_convert_is_ignored() -> None:
    decoder = SseDecoder()
    decoder.feed("retry: 1000\n" + "retry: " + "9" * 5000 + "\n")
    assert decoder.retry_ms == 1000


def test_event_types_and_fields_without_a_colon() -> None:
    decoder = SseDecoder()
    assert decoder.feed("event: closed\ndata\nunknown: x\nid\n\ndata: y\n\n") == [
        SseEvent("", event_type="closed"),
        SseEvent("y"),
    ]


def test_a_blank_line_without_data_dispatches_nothing_but_ends_the_event_type() -> None:
    assert decode("event: odd\n\ndata: x\n\n") == [SseEvent("x")]


def test_comments_are_heartbeats_in_stream_order() -> None:
    assert decode(": ping\n\ndata: x\n:\n\n") == [Heartbeat("ping"), Heartbeat(""), SseEvent("x")]


def test_the_server_stream_example_decodes_to_its_frames() -> None:
    decoder = SseDecoder()
    events = decoder.feed(
        "retry: 3000\n\n"
        'data: {"type":"hello","payload":{}}\n\n'
        'id: 43\ndata: {"type":"notification_created","payload":{"seq":43}}\n\n'
        'data: {"type":"caught_up","payload":{}}\n\n: ping\n\n'
    )
    assert decoder.retry_ms == 3000
    assert [getattr(item, "last_event_id", None) for item in events] == ["", "43", "43", None]


def test_a_line_or_an_event_over_the_limit_raises() -> None:
    with pytest.raises(SseTooLarge):
        SseDecoder(max_event_chars=10).feed("data: " + "x" * 20)
    with pytest.raises(SseTooLarge):
        SseDecoder(max_event_chars=10).feed("data: xxxx\n" * 3)


# --- fuzzing ------------------------------------------------------------------------

# Text rich in what matters to the grammar.
stream_text = st.lists(
    st.sampled_from(["\r", "\n", ":", " ", "\0", "\ufeff", "data", "id", "retry", "event", "7"])
    | st.characters(),
    max_size=100,
).map("".join)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    return [text[start:end] for start, end in zip([0, *points], [*points, len(text)], strict=True)]


@FUZZ
@given(stream_text)
def test_any_text_decodes_without_raising(text: str) -> None:
    decoder = SseDecoder()
    for item in decoder.feed(text):
        assert isinstance(item, SseEvent | Heartbeat)


@FUZZ
@given(stream_text, st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_any_chunking_gives_the_same_events(text: str, cuts: list[int]) -> None:
    whole, chunked = SseDecoder(), SseDecoder()
    expected = whole.feed(text)
    got = [item for chunk in split(text, cuts) for item in chunked.feed(chunk)]
    assert got == expected
    assert (chunked.last_event_id, chunked.retry_ms) == (whole.last_event_id, whole.retry_ms)


line_free = st.text(st.characters(blacklist_characters="\r\n"), max_size=30)


@FUZZ
@given(
    st.lists(
        st.tuples(st.lists(line_free, min_size=1, max_size=3), st.none() | line_free),
        max_size=8,
    ),
    st.sampled_from(["\n", "\r", "\r\n"]),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_encoded_events_come_back(
    events: list[tuple[list[str], str | None]], line_end: str, cuts: list[int]
) -> None:
    text = ""
    expected = []
    last_id = ""
    for lines, event_id in events:
        if event_id is not None:
            text += f"id: {event_id}{line_end}"
            if "\0" not in event_id:
                last_id = event_id
        text += "".join(f"data: {line}{line_end}" for line in lines) + line_end
        expected.append(SseEvent("\n".join(lines), last_event_id=last_id))
    decoder = SseDecoder()
    assert [item for chunk in split(text, cuts) for item in decoder.feed(chunk)] == expected
