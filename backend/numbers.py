"""Whole numbers that clients send: ids, seqs, cursors, limits. One rule, one limit.

Every id and seq is a 64-bit integer in the database, so a number above ``MAX_INT64``
is a client's mistake to refuse, never a query to run (it would be an overflow error,
a 500). A bool is never a number, though Python's ``True`` is an int.

Text (a URL path segment, a query parameter, a frame's value where text is allowed)
is a whole number when, after surrounding whitespace, it is ASCII decimal digits, at
most ``MAX_DIGITS`` of them: ``str.isdigit`` would take "²", and ``int()`` refuses
more than 4,300 digits. Each caller words its own refusal; the rule is this module's.
"""

from __future__ import annotations

# The largest id or seq: int64's, the database's column type.
MAX_INT64 = 2**63 - 1
# 2**63-1 has 19 digits; one more lets a leading zero through, and the range decides.
MAX_DIGITS = 20


def whole_number(value: object, *, text: bool = True) -> int | None:
    """``value`` as an int when it is a whole number, else None (no range check).

    Args:
        value: An int (not a bool), or with ``text`` a string of digits.
        text: Whether a string of digits counts (URLs and query strings); JSON
            values that must be numbers pass False.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if text and isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdecimal() and len(digits) <= MAX_DIGITS:
            return int(digits)
    return None


def is_id(value: int) -> bool:
    """Whether an int can be a row's id: 1 to ``MAX_INT64``."""
    return 0 < value <= MAX_INT64


def is_seq(value: int) -> bool:
    """Whether an int can be a seq or a cursor: 0 (before the first) to ``MAX_INT64``."""
    return 0 <= value <= MAX_INT64


def positive_id(value: object, *, text: bool = True) -> int | None:
    """``value`` as an id (``whole_number`` and ``is_id``), else None."""
    number = whole_number(value, text=text)
    return number if number is not None and is_id(number) else None
