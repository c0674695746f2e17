"""single_line_text_problem: the one answer to "can this be a title?" for every way in."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.text import INVISIBLE_FILLERS, is_invisible, single_line_text_problem

LINE_BREAKERS = ["\n", "\r", "\t", "\x00", "\x7f", "\x85", "\u2028", "\u2029", "\ud800"]

# Characters that draw nothing: what a title made only of them looks like in a toast.
invisible_chars = st.one_of(
    st.characters(categories=["Zs", "Cf", "Co", "Cn"]),
    st.sampled_from(sorted(INVISIBLE_FILLERS)),
)
# Anything that may appear inside a title: every category except the line-breaking ones.
inline_chars = st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"])
visible_chars = st.characters(categories=["L", "N", "P", "S"]).filter(
    lambda char: char not in INVISIBLE_FILLERS
)


@pytest.mark.parametrize(
    "title",
    [
        "Deploy at 5",
        "Größe ändern",
        "デプロイ完了",
        "👨\u200d👩\u200d👧 family",  # the zero-width joiner inside an emoji sequence
        "\u05e9\u05dc\u05d5\u05dd",  # right-to-left text
        "a\u00a0b",  # a no-break space between words
        "\u200dx",
    ],
)
def test_visible_one_line_text_is_a_title(title: str) -> None:
    assert single_line_text_problem(title) is None


@pytest.mark.parametrize(
    "title",
    [
        "",
        " ",
        "\u200d",  # ZERO WIDTH JOINER alone
        "\u200b\u200c\u2060\ufeff",  # zero-width space, non-joiner, word joiner, BOM
        "\u00a0\u00a0",  # no-break spaces
        "\u3000",  # ideographic space
        "\u3164",  # HANGUL FILLER
        "\u115f\u1160",  # Hangul choseong and jungseong fillers
        "\uffa0",  # halfwidth Hangul filler
        "\u2800",  # braille blank
        "\u034f\ufe0f",  # combining grapheme joiner, variation selector
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE alone
        "\ue000",  # private use
    ],
)
def test_text_with_nothing_visible_is_refused(title: str) -> None:
    assert single_line_text_problem(title) == (
        "must contain visible text, not only spaces or invisible characters"
    )


@pytest.mark.parametrize("breaker", LINE_BREAKERS)
def test_line_breaks_and_controls_are_refused_anywhere(breaker: str) -> None:
    for title in (breaker, f"Deploy{breaker}at 5", f"Deploy at 5{breaker}"):
        problem = single_line_text_problem(title)
        assert problem is not None
        assert "single line" in problem


@given(st.text(invisible_chars, min_size=1, max_size=30))
def test_any_run_of_invisible_characters_is_refused(title: str) -> None:
    assert all(is_invisible(char) for char in title)
    assert single_line_text_problem(title) is not None


@given(st.text(inline_chars, max_size=20), visible_chars, st.text(inline_chars, max_size=20))
def test_one_visible_character_on_one_line_is_enough(before: str, visible: str, after: str) -> None:
    assert single_line_text_problem(before + visible + after) is None


@given(
    st.text(inline_chars, max_size=20),
    st.sampled_from(LINE_BREAKERS),
    st.text(inline_chars, max_size=20),
)
def test_any_line_breaker_is_refused(before: str, breaker: str, after: str) -> None:
    assert unicodedata.category(breaker) in {"Cc", "Cs", "Zl", "Zp"}
    assert single_line_text_problem(before + breaker + after) is not None
