"""Whole numbers from clients (backend/numbers.py): one rule for every caller.

Before issue 15 six readers disagreed: a project's id refused " 7" and a 20-digit
"00...07" that a cursor took, some used ``isdigit`` and some ``isdecimal``, and the
largest id and seq were two constants. These pin that every reader now agrees.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.errors import InvalidInput
from backend.notifications.api import _whole_number
from backend.notifications.selectors import validate_project_id, validate_seq
from backend.numbers import MAX_DIGITS, MAX_INT64, is_id, is_seq, positive_id, whole_number

TEXT = [
    ("7", 7),
    (" 7 ", 7),
    ("0" * (MAX_DIGITS - 1) + "7", 7),
    (str(MAX_INT64), MAX_INT64),
    ("1" * (MAX_DIGITS + 1), None),  # refused before int() reads it
    ("²", None),  # str.isdigit() takes it
    ("٣", None),  # an Arabic-Indic digit: str.isdecimal() takes it
    ("7.0", None),
    ("-7", None),
    ("+7", None),
    ("", None),
    ("   ", None),
]


@pytest.mark.parametrize(("text", "expected"), TEXT)
def test_text_is_a_whole_number_by_one_rule_for_every_reader(
    text: str, expected: int | None
) -> None:
    assert whole_number(text) == expected
    assert whole_number(text, text=False) is None  # where JSON needs a number
    # The cursor of the socket and the inbox API, a query parameter, an id in a URL.
    if expected is None:
        with pytest.raises(InvalidInput):
            validate_seq(text, name="after_seq")
        with pytest.raises(InvalidInput):
            _whole_number(text, name="limit", code="invalid_limit")
        assert positive_id(text) is None
    else:
        assert validate_seq(text, name="after_seq") == expected
        assert _whole_number(text, name="limit", code="invalid_limit") == expected
        assert positive_id(text) == expected


@pytest.mark.parametrize("value", [True, False, 1.0, None, [1], "1"])
def test_json_values_must_be_ints_and_never_bools(value: object) -> None:
    assert positive_id(value, text=False) is None
    with pytest.raises(InvalidInput):
        validate_project_id(value)


def test_one_range_for_ids_and_seqs() -> None:
    assert MAX_INT64 == 2**63 - 1
    assert (is_id(0), is_id(1), is_id(MAX_INT64), is_id(MAX_INT64 + 1)) == (
        False,
        True,
        True,
        False,
    )
    assert (is_seq(-1), is_seq(0), is_seq(MAX_INT64), is_seq(MAX_INT64 + 1)) == (
        False,
        True,
        True,
        False,
    )
    assert validate_project_id(MAX_INT64) == MAX_INT64
    with pytest.raises(InvalidInput):
        validate_project_id(MAX_INT64 + 1)
    with pytest.raises(InvalidInput):
        validate_seq(MAX_INT64 + 1, name="after_seq")


@given(st.one_of(st.text(max_size=30), st.from_regex(r"\s*[0-9]{1,22}\s*", fullmatch=True)))
def test_the_readers_agree_on_any_text(text: str) -> None:
    """Whatever a client sends, the cursor, the query parameter and the id readers give
    the same number or all refuse it (an out-of-range id is refused as an id only)."""
    number = whole_number(text)
    try:
        seq: int | None = validate_seq(text, name="after_seq")
    except InvalidInput:
        seq = None
    try:
        parameter: int | None = _whole_number(text, name="limit", code="invalid_limit")
    except InvalidInput:
        parameter = None
    assert parameter == number
    assert seq == (number if number is not None and is_seq(number) else None)
    assert positive_id(text) == (number if number is not None and is_id(number) else None)
