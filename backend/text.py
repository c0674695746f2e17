"""Checks of text that ends up in OS toasts, menus and lists: one-line titles, links.

Pure functions with no Django in them, so that every way a title or link comes in
(the publish API, the admin, ``tray-notifier-server notify``, the projects API)
asks the same question and gets the same answer.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

# Characters that draw nothing yet are not in a Z* or C* category: Hangul fillers, the
# braille blank, the combining grapheme joiner, Khmer's inherent vowels and the
# variation selectors. A title of these alone looks empty in a toast or a menu.
INVISIBLE_FILLERS = frozenset(
    {
        "\u034f",  # COMBINING GRAPHEME JOINER
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u1160",  # HANGUL JUNGSEONG FILLER
        "\u17b4",  # KHMER VOWEL INHERENT AQ
        "\u17b5",  # KHMER VOWEL INHERENT AA
        "\u2800",  # BRAILLE PATTERN BLANK
        "\u3164",  # HANGUL FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
        *(chr(code) for code in range(0xFE00, 0xFE10)),  # VARIATION SELECTOR-1..16
        *(chr(code) for code in range(0xE0100, 0xE01F0)),  # VARIATION SELECTOR-17..256
    }
)

# Categories that break a line or cannot be stored: controls (Cc, which holds \n, \t and
# U+0085 NEXT LINE), lone surrogates (Cs, not encodable as UTF-8), and the line and
# paragraph separators (Zl U+2028, Zp U+2029). Format characters (Cf) are allowed inside
# text: emoji sequences need the zero-width joiner.
_LINE_BREAKING_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def is_invisible(char: str) -> bool:
    """Whether ``char`` draws nothing: separators and spaces (Z*), controls, format,
    surrogate, private-use and unassigned code points (C*), and the known fillers."""
    return unicodedata.category(char)[0] in "ZC" or char in INVISIBLE_FILLERS


def single_line_text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a one-line title, or None if it can.

    The answer completes a sentence about the field, e.g. ``f"title {problem}"``.

    Args:
        value: the text as given (not yet trimmed).

    Returns:
        None for visible text on one line; otherwise a plain-language reason:
        line breaks and control characters first, then text with nothing visible
        (empty, spaces, zero-width characters, fillers).
    """
    if any(unicodedata.category(char) in _LINE_BREAKING_CATEGORIES for char in value):
        return "must be a single line of text, without line breaks or control characters"
    if all(is_invisible(char) for char in value):
        return "must contain visible text, not only spaces or invisible characters"
    return None


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a notification's link, or None if it can.

    The tray and the web companion open the link on a click, so it is one of: empty
    (no link); an absolute ``http``/``https`` address with a host; or a path on this
    server starting with one ``/`` (what the server itself writes, e.g.
    ``/projects/3/tasks/7``), which clients resolve against the server's address.
    Never ``javascript:``, ``file:`` or ``data:``; never ``//host`` or ``/\\host``,
    which browsers read as another host; never spaces or control characters, which
    browsers strip or rewrite, so the link checked would not be the link opened.
    Every way in (publish API, admin, ``notify``, projects) asks this one function.

    Returns:
        A plain sentence naming the problem, or None.
    """
    if not url:
        return None
    # isprintable() is False exactly for Unicode's "Other" and "Separator" characters
    # (every whitespace character is one) except the ASCII space: the same test as
    # asking unicodedata per character, in C.
    if not url.isprintable() or " " in url:
        return "url must not contain spaces, line breaks or control characters"
    if "\\" in url:
        return "url must not contain backslashes; write them as %5C"
    if url.startswith("//"):
        return "url must not start with // (an address on another host needs https://)"
    if url.startswith("/"):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check: it raises when out of range)
    except ValueError:
        return "url is not a valid address"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return (
            "url must be an http:// or https:// address with a host, "
            "or a path on this server starting with /"
        )
    return None
