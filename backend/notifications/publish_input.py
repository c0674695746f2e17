"""The publish body, checked without DRF: ``parse_publish`` and ``parse_publish_many``.

The publish endpoints (single and batch) take a parsed JSON document and need a
``PublishItem`` or an ``InvalidInput``. DRF's nested serializer did this at a
quarter of a publish's CPU (a third of that in ``copy.deepcopy`` of the declared
fields), so this module checks the same fields by hand, and refuses exactly what
``serializers.PublishInputSerializer`` refuses with exactly the error body the
REST layer rendered for it: code ``invalid``, the first message prefixed with its
field, the per-field messages as detail; then ``empty_audience`` and
``unknown_audience`` from the audience resolution. The serializer stays, for the
OpenAPI schema only; ``tests/backend/notifications/test_publish_input.py`` runs
both over a table of bodies and a fuzz, and fails on the first difference.

Where DRF echoed a lone surrogate (an unknown field's name, a priority) into its
answer and then failed to encode that answer (a 500), the answer here is the same
words with the surrogate written as ``\\ud800``.

One deliberate difference in form, not in the rendered body: list errors are keyed
by the item's index as a string (``{"users": {"0": [...]}}``), where DRF used an
int that JSON renders as the same string; a renderer that refuses non-string keys
(orjson) can write these as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from backend.api import _first_message
from backend.errors import InvalidInput
from backend.notifications.models import Priority
from backend.notifications.selectors import Audience
from backend.numbers import MAX_INT64
from backend.projects.models import Project
from backend.sql import rows_where_in
from backend.text import url_problem
from backend.users.selectors import role_names_missing, user_ids_by_username, user_ids_missing

# More names than this in one list is a mistake, and would overflow SQLite's
# bound-variable limit; a large audience is a role, a project or everyone.
MAX_AUDIENCE_ENTRIES = 1000
# Bodies in one batch request: a minute of one integration's events, and one
# transaction the other writers wait for (about half a second here).
MAX_BATCH_ITEMS = 1000
# Names looked up per statement when a batch resolves its audiences together.
_LOOKUP_CHUNK = 5000

# DRF's words, kept word for word: clients and tests read these bodies.
_REQUIRED = "This field is required."
_NULL = "This field may not be null."
_BLANK = "This field may not be blank."
_NOT_STRING = "Not a valid string."
_NOT_INTEGER = "A valid integer is required."
_NOT_BOOLEAN = "Must be a valid boolean."
_UNKNOWN_FIELD = "Unknown field."
_NULL_CHARACTERS = "Null characters are not allowed."
_EVENT_TYPE_WORDS = "Use lower-case letters, digits, '_', '.' and '-'."
_PRIORITIES: Final = frozenset(Priority.values)

_MISSING: Final = object()
_TOP_FIELDS: Final = frozenset(
    {"audience", "title", "message", "priority", "url", "event_type", "idempotency_key"}
)
_AUDIENCE_FIELDS: Final = frozenset({"users", "usernames", "projects", "roles", "everyone"})
# The serializer's RegexValidator, searched the same way.
_EVENT_TYPE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]*\Z")


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One checked publish body, its audience's names resolved to ids."""

    audience: Audience
    title: str
    message: str
    priority: str
    url: str
    event_type: str
    idempotency_key: str | None


class _Refused(Exception):
    """One field's errors: a list of messages, or a mapping for nested values."""

    def __init__(self, detail: list[str] | dict[str, Any]) -> None:
        super().__init__()
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Checked:
    """A body whose fields passed; its audience names are not looked up yet."""

    users: list[int]
    usernames: list[str]
    projects: list[int]
    roles: list[str]
    everyone: bool
    title: str
    message: str
    priority: str
    url: str
    event_type: str
    idempotency_key: str | None


def parse_publish(document: object, *, check_users: bool = True) -> PublishItem:
    """Check one publish body and resolve its audience (a query per kind of name used).

    Args:
        document: the parsed JSON body.
        check_users: whether to look up the user ids it names. The fast publish route
            (publish_route.py) passes False and lets ``notification_create(...,
            users_unchecked=True)`` find unknown ids in the query that resolves the
            recipients anyway: one statement less per publish.

    Returns:
        The notification to create.

    Raises:
        InvalidInput: with the code, message and detail POST /api/notifications/
            answered with DRF's serializer: ``invalid`` with per-field detail,
            ``empty_audience``, or ``unknown_audience`` (names listed in detail).
    """
    return _resolve_one(_check(document), check_users=check_users)


def parse_publish_many(documents: Sequence[object]) -> list[PublishItem | InvalidInput]:
    """``parse_publish`` for each document, looking names up once for all of them.

    Each result is what ``parse_publish`` would return or raise for that document
    alone; the names are looked up with a few statements for the whole list
    instead of a few per document.
    """
    checked: list[_Checked | InvalidInput] = []
    for document in documents:
        try:
            checked.append(_check(document))
        except InvalidInput as error:
            checked.append(error)
    good = [item for item in checked if isinstance(item, _Checked)]
    by_name = _chunked_dict(user_ids_by_username, {n for c in good for n in c.usernames})
    missing_users = _chunked_missing(
        lambda chunk: user_ids_missing(ids=chunk), {i for c in good for i in c.users}
    )
    missing_projects = _chunked_missing(_project_ids_missing, {i for c in good for i in c.projects})
    missing_roles = _chunked_missing(
        lambda chunk: role_names_missing(names=chunk), {r for c in good for r in c.roles}
    )
    results: list[PublishItem | InvalidInput] = []
    for item in checked:
        if isinstance(item, InvalidInput):
            results.append(item)
            continue
        try:
            results.append(
                _resolved(
                    item,
                    by_name=by_name,
                    unknown={
                        "users": [i for i in dict.fromkeys(item.users) if i in missing_users],
                        "usernames": [n for n in dict.fromkeys(item.usernames) if n not in by_name],
                        "projects": [
                            i for i in dict.fromkeys(item.projects) if i in missing_projects
                        ],
                        "roles": [r for r in dict.fromkeys(item.roles) if r in missing_roles],
                    },
                )
            )
        except InvalidInput as error:
            results.append(error)
    return results


def parse_batch(document: object) -> list[object]:
    """The publish bodies of a batch request, ``{"notifications": [body, ...]}``.

    Each body is left to ``parse_publish_many``: one bad body is that item's error,
    not the request's.

    Raises:
        InvalidInput: ``invalid_batch`` when the request is not such an object with 1
            to ``MAX_BATCH_ITEMS`` bodies (the count and the limit in detail).
    """
    shape = f'Send {{"notifications": [...]}} with 1 to {MAX_BATCH_ITEMS} publish bodies.'
    if not isinstance(document, Mapping) or "notifications" not in document:
        raise InvalidInput(shape, code="invalid_batch")
    unknown = sorted(_shown(str(key)) for key in document if key != "notifications")
    if unknown:
        raise InvalidInput(
            f"Unknown field: {', '.join(unknown)}. {shape}", code="invalid_batch", unknown=unknown
        )
    bodies = document["notifications"]
    if not isinstance(bodies, list):
        raise InvalidInput(f"notifications is not a list. {shape}", code="invalid_batch")
    if not 0 < len(bodies) <= MAX_BATCH_ITEMS:
        raise InvalidInput(
            f"notifications has {len(bodies)} items. {shape}",
            code="invalid_batch",
            items=len(bodies),
            max_items=MAX_BATCH_ITEMS,
        )
    return bodies


# --- Field checks: DRF's semantics, in the serializer's field order -------------------


def _check(document: object) -> _Checked:
    if not isinstance(document, Mapping):
        if document is None:
            _raise({"non_field_errors": ["No data provided"]})
        _raise({"non_field_errors": [_not_a_dict(document)]})
    unknown = sorted(str(key) for key in document if key not in _TOP_FIELDS)
    if unknown:
        _raise({_shown(key): [_UNKNOWN_FIELD] for key in unknown})
    errors: dict[str, Any] = {}
    audience = _field(errors, "audience", _audience_fields, document.get("audience", _MISSING))
    title = _field(errors, "title", _title, document.get("title", _MISSING))
    message = _field(errors, "message", _message, document.get("message", _MISSING))
    priority = _field(errors, "priority", _priority, document.get("priority", _MISSING))
    url = _field(errors, "url", _url, document.get("url", _MISSING))
    event_type = _field(errors, "event_type", _event_type, document.get("event_type", _MISSING))
    key = _field(
        errors, "idempotency_key", _idempotency_key, document.get("idempotency_key", _MISSING)
    )
    if errors:
        _raise(errors)
    return _Checked(
        users=audience.get("users", []),
        usernames=audience.get("usernames", []),
        projects=audience.get("projects", []),
        roles=audience.get("roles", []),
        everyone=audience.get("everyone", False),
        title=title,
        message=message,
        priority=priority,
        url=url,
        event_type=event_type,
        idempotency_key=key,
    )


def _raise(detail: dict[str, Any]) -> NoReturn:
    error = InvalidInput(_first_message(detail))
    # Set, not passed as keywords: a field may be called "code" or "message".
    error.detail = detail
    raise error


def _shown(text: str) -> str:
    """Input echoed in an error, with lone surrogates written as ``\\ud800``.

    DRF echoed them as they were, and then failed to encode its own answer (a 500);
    here the answer is the same words with the surrogate escaped.
    """
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def _not_a_dict(value: object) -> str:
    return f"Invalid data. Expected a dictionary, but got {type(value).__name__}."


def _field(errors: dict[str, Any], name: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except _Refused as refused:
        errors[name] = refused.detail
        return None


def _text(
    value: Any,
    *,
    max_length: int,
    required: bool = True,
    default: str | None = "",
    allow_blank: bool = False,
    allow_null: bool = False,
    rule: Callable[[str], str | None] | None = None,
) -> str | None:
    """DRF's StrictCharField: trimmed, then the field's rule, length, NUL, surrogates."""
    if value is _MISSING:
        if required:
            raise _Refused([_REQUIRED])
        return default
    if type(value) is not str:
        if isinstance(value, str):
            value = str(value)
        elif value is None:
            if allow_null:
                return None
            raise _Refused([_NULL])
        else:
            raise _Refused([_NOT_STRING])
    text: str = value.strip()
    if not text:
        if allow_blank:
            return ""
        raise _Refused([_BLANK])
    problems: list[str] = []
    if rule is not None:
        problem = rule(text)
        if problem is not None:
            problems.append(problem)
    if len(text) > max_length:
        problems.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in text:
        problems.append(_NULL_CHARACTERS)
    if not text.isascii():
        surrogate = next((ch for ch in text if 0xD800 <= ord(ch) <= 0xDFFF), None)
        if surrogate is not None:
            problems.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
    if problems:
        raise _Refused(problems)
    return text


def _title(value: Any) -> str | None:
    return _text(value, max_length=200)


def _message(value: Any) -> str | None:
    return _text(value, max_length=5000, required=False, allow_blank=True)


def _url(value: Any) -> str | None:
    return _text(value, max_length=2000, required=False, allow_blank=True, rule=url_problem)


def _event_type_problem(text: str) -> str | None:
    return None if _EVENT_TYPE.search(text) else _EVENT_TYPE_WORDS


def _event_type(value: Any) -> str | None:
    return _text(
        value,
        max_length=50,
        required=False,
        default="announcement",
        rule=_event_type_problem,
    )


def _idempotency_key(value: Any) -> str | None:
    return _text(value, max_length=200, required=False, default=None, allow_null=True)


def _priority(value: Any) -> str:
    """DRF's ChoiceField: the value's text must be one of the choices, untrimmed."""
    if value is _MISSING:
        return str(Priority.NORMAL)
    if value is None:
        raise _Refused([_NULL])
    if type(value) is str and value in _PRIORITIES:
        return value
    try:
        text = str(value)
    except ValueError:  # an int past Python's digit limit; no JSON parser makes one
        text = "a number too long to show"
    if text in _PRIORITIES:
        return text
    raise _Refused([f'"{_shown(text)}" is not a valid choice.'])


def _whole_number(value: Any) -> int:
    """DRF's StrictIntegerField with min_value=1, max_value=MAX_INT64."""
    if value is None:
        raise _Refused([_NULL])
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused([_NOT_INTEGER])
    if 0 < value <= MAX_INT64:
        return int(value)
    try:
        str(value)
    except ValueError:  # DRF parsed the text of the number: past the digit limit it fails
        raise _Refused([_NOT_INTEGER]) from None
    if value > MAX_INT64:
        raise _Refused([f"Ensure this value is less than or equal to {MAX_INT64}."])
    raise _Refused(["Ensure this value is greater than or equal to 1."])


def _name(max_length: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value, max_length=max_length)
        assert text is not None  # required and not nullable: never None
        return text

    return check


_username = _name(150)
_role = _name(50)


def _list(value: Any, item: Callable[[Any], Any]) -> list[Any]:
    """DRF's ListField: every item checked (errors by index), then the length."""
    if value is None:
        raise _Refused([_NULL])
    if isinstance(value, str | Mapping) or not hasattr(value, "__iter__"):
        raise _Refused([f'Expected a list of items but got type "{type(value).__name__}".'])
    result: list[Any] = []
    errors: dict[str, Any] = {}
    for index, entry in enumerate(value):
        try:
            result.append(item(entry))
        except _Refused as refused:
            errors[str(index)] = refused.detail
    if errors:
        raise _Refused(errors)
    if len(result) > MAX_AUDIENCE_ENTRIES:
        raise _Refused([f"Ensure this field has no more than {MAX_AUDIENCE_ENTRIES} elements."])
    return result


def _everyone(value: Any) -> bool:
    if value is None:
        raise _Refused([_NULL])
    if not isinstance(value, bool):
        raise _Refused([_NOT_BOOLEAN])
    return value


_AUDIENCE_CHECKS: Final[tuple[tuple[str, Callable[[Any], Any]], ...]] = (
    ("users", lambda value: _list(value, _whole_number)),
    ("usernames", lambda value: _list(value, _username)),
    ("projects", lambda value: _list(value, _whole_number)),
    ("roles", lambda value: _list(value, _role)),
    ("everyone", _everyone),
)


def _audience_fields(value: Any) -> dict[str, Any]:
    """The nested audience serializer: a mapping of known parts, each checked."""
    if value is _MISSING:
        raise _Refused([_REQUIRED])
    if value is None:
        raise _Refused([_NULL])
    if not isinstance(value, Mapping):
        raise _Refused({"non_field_errors": [_not_a_dict(value)]})
    unknown = sorted(str(key) for key in value if key not in _AUDIENCE_FIELDS)
    if unknown:
        raise _Refused({_shown(key): [_UNKNOWN_FIELD] for key in unknown})
    parts: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name, check in _AUDIENCE_CHECKS:
        raw = value.get(name, _MISSING)
        if raw is _MISSING:
            continue
        try:
            parts[name] = check(raw)
        except _Refused as refused:
            errors[name] = refused.detail
    if errors:
        raise _Refused(errors)
    return parts


# --- Audience resolution: every name must exist, so a typo is not a silent no-op ------


def _resolve_one(item: _Checked, *, check_users: bool = True) -> PublishItem:
    _require_audience(item)
    by_name = user_ids_by_username(usernames=item.usernames) if item.usernames else {}
    return _resolved(
        item,
        by_name=by_name,
        unknown={
            "users": user_ids_missing(ids=item.users) if item.users and check_users else [],
            "usernames": [n for n in dict.fromkeys(item.usernames) if n not in by_name],
            "projects": _project_ids_missing(item.projects),
            "roles": role_names_missing(names=item.roles) if item.roles else [],
        },
    )


def _require_audience(item: _Checked) -> None:
    if not (item.usernames or item.users or item.projects or item.roles or item.everyone):
        raise InvalidInput(
            "Name an audience: users, usernames, projects, roles or everyone.",
            code="empty_audience",
        )


def _resolved(
    item: _Checked, *, by_name: Mapping[str, int], unknown: dict[str, list[Any]]
) -> PublishItem:
    """The item with names turned into ids, or ``unknown_audience`` naming what is missing."""
    _require_audience(item)
    unknown = {part: names for part, names in unknown.items() if names}
    if unknown:
        listed = "; ".join(
            f"{part}: {', '.join(str(name) for name in names)}" for part, names in unknown.items()
        )
        raise InvalidInput(f"Unknown {listed}.", code="unknown_audience", unknown=unknown)
    users = {*item.users, *(by_name[name] for name in item.usernames)}
    return PublishItem(
        audience=Audience(
            users=tuple(sorted(users)),
            projects=tuple(sorted(set(item.projects))),
            roles=tuple(sorted(set(item.roles))),
            everyone=item.everyone,
        ),
        title=item.title,
        message=item.message,
        priority=item.priority,
        url=item.url,
        event_type=item.event_type,
        idempotency_key=item.idempotency_key,
    )


def _project_ids_missing(ids: Iterable[int]) -> list[int]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = {int(row[0]) for row in rows_where_in(Project, ("id",), "id", wanted)}
    return [project_id for project_id in wanted if project_id not in found]


def _chunks(values: set[Any]) -> Iterable[list[Any]]:
    ordered = list(values)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        yield ordered[start : start + _LOOKUP_CHUNK]


def _chunked_dict(lookup: Callable[..., dict[str, int]], names: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(names):
        found.update(lookup(usernames=chunk))
    return found


def _chunked_missing(lookup: Callable[[list[Any]], list[Any]], values: set[Any]) -> set[Any]:
    missing: set[Any] = set()
    for chunk in _chunks(values):
        missing.update(lookup(chunk))
    return missing
