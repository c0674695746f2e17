"""parse_publish refuses what DRF's PublishInputSerializer refused, with the same body.

The serializer (kept for the OpenAPI schema) and the REST exception handler are the
reference: every body here goes through both, and the rendered error bodies, or the
checked values, must be equal. A table of hand-picked bodies, then a fuzz.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from backend.api import exception_handler
from backend.errors import InvalidInput
from backend.notifications.publish_input import PublishItem, parse_publish, parse_publish_many
from backend.notifications.selectors import Audience
from backend.notifications.serializers import PublishInputSerializer
from backend.numbers import MAX_INT64
from backend.projects.models import Project

pytestmark = pytest.mark.django_db


def rendered(error: Exception) -> Any:
    response = exception_handler(error, {})
    assert response is not None, error
    return json.loads(JSONRenderer().render(response.data))


def escaped(value: Any) -> Any:
    """``value`` with lone surrogates written as \\ud800, as parse_publish echoes them."""
    if isinstance(value, str):
        return value.encode(errors="backslashreplace").decode()
    if isinstance(value, list):
        return [escaped(item) for item in value]
    if isinstance(value, dict):
        return {escaped(key): escaped(item) for key, item in value.items()}
    return value


def old_rendered(error: Exception) -> Any:
    try:
        return rendered(error)
    except UnicodeEncodeError:
        # DRF echoed a lone surrogate and could not encode its own answer: a 500. The
        # new answer is the same words with the surrogate escaped.
        response = exception_handler(error, {})
        assert response is not None
        return escaped(json.loads(json.dumps(response.data)))


def old_path(document: Any) -> Any:
    """What POST /api/notifications/ answered before: the serializer, then the handler."""
    serializer = PublishInputSerializer(data=document)
    try:
        serializer.is_valid(raise_exception=True)
    except Exception as error:
        return ("error", old_rendered(error))
    data = serializer.validated_data
    return (
        "ok",
        PublishItem(
            audience=data["audience"],
            title=data["title"],
            message=data["message"],
            priority=data["priority"],
            url=data["url"],
            event_type=data["event_type"],
            idempotency_key=data["idempotency_key"],
        ),
    )


def new_path(document: Any) -> Any:
    try:
        return ("ok", parse_publish(document))
    except InvalidInput as error:
        # What a renderer that refuses non-string keys (orjson) would be handed.
        json.dumps(error.detail, allow_nan=False)
        return ("error", rendered(error))


def assert_same(document: Any) -> Any:
    old = old_path(document)
    new = new_path(document)
    assert new == old, document
    return new


@pytest.fixture
def people(make_user: Any) -> dict[str, Any]:
    dev = make_user("dev", role="developer")
    make_user("gone", role="designer", is_active=False)
    make_user("staff", is_staff=True)
    project = Project.objects.create(title="Apollo")
    return {"dev": dev, "project": project}


def body(**fields: Any) -> dict[str, Any]:
    return {"audience": {"everyone": True}, "title": "Maintenance tonight", **fields}


BAD_BODIES: list[Any] = [
    None,
    [],
    [body()],
    "text",
    7,
    True,
    {},
    {"title": "No audience"},
    body(title=""),
    body(title="   "),
    body(title=123),
    body(title=1.5),
    body(title=True),
    body(title=None),
    body(title=[]),
    body(title={}),
    body(title="x" * 201),
    body(title="a\x00b"),
    body(title="a\ud800b\udfff"),
    body(title="\x00" * 201),
    body(title="\ud83d" * 300),
    body(message="x" * 5001),
    body(message=["not", "text"]),
    body(message=None),
    body(message=5),
    body(priority="whenever"),
    body(priority=""),
    body(priority=" high"),
    body(priority="HIGH"),
    body(priority=1),
    body(priority=1.5),
    body(priority=None),
    body(priority=True),
    body(priority=["high"]),
    body(priority={"a": 1}),
    body(priority="\ud800"),
    body(audience={"everyone": True, "\udfff": 1}, **{"\ud800x": 1}),
    body(url="javascript:alert(1)"),
    body(url="file:///etc/passwd"),
    body(url="data:text/html,x"),
    body(url="//evil.example/x"),
    body(url="/\\evil.example"),
    body(url="java\tscript:x"),
    body(url="https://a.example/\x00"),
    body(url="https://a.example/" + "x" * 2000),
    body(url="x" * 2001),
    body(url="https://a.example:99999/"),
    body(url="https://[::1/"),
    body(url=None),
    body(url=7),
    body(event_type="Has Spaces"),
    body(event_type="x" * 51),
    body(event_type="X" * 51),
    body(event_type="_leading"),
    body(event_type="é"),
    body(event_type=""),
    body(event_type=None),
    body(event_type=3),
    body(idempotency_key=""),
    body(idempotency_key="  "),
    body(idempotency_key="k" * 201),
    body(idempotency_key=7),
    body(idempotency_key=False),
    body(audience={}),
    body(audience=None),
    body(audience={"everyone": False}),
    body(audience={"users": []}),
    body(audience={"users": [], "usernames": [], "projects": [], "roles": []}),
    body(audience=[1, 2]),
    body(audience="everyone"),
    body(audience=True),
    body(audience={"everyone": "yes"}),
    body(audience={"everyone": 1}),
    body(audience={"everyone": None}),
    body(audience={"users": ["1"]}),
    body(audience={"users": [True]}),
    body(audience={"users": [1.0]}),
    body(audience={"users": [0]}),
    body(audience={"users": [-5]}),
    body(audience={"users": [2**63]}),
    body(audience={"users": [None, 1, "x", 0, 2**64]}),
    body(audience={"users": 5}),
    body(audience={"users": "5"}),
    body(audience={"users": {"a": 1}}),
    body(audience={"users": None}),
    body(audience={"roles": [5]}),
    body(audience={"roles": [""]}),
    body(audience={"roles": ["r" * 51]}),
    body(audience={"usernames": ["u" * 151, " ", None, "ok\x00"]}),
    body(audience={"users": list(range(1, 1002))}),
    body(audience={"users": [*range(1, 1001), 0]}),
    body(audience={"user": [1]}),
    body(audience={"zeta": 1, "alpha": 2, "everyone": True}),
    body(audience={"users": 1, "usernames": 2, "projects": 3, "roles": 4, "everyone": 5}),
    body(mesage="typo"),
    {"title": "x", "code": 1, "message": "x", "audience": {"everyone": True}},
    {"b": 1, "a": 2},
    {"audience": {"users": [0]}, "title": "", "priority": "x", "url": "ftp://x", "event_type": "?"},
    body(audience={"users": [999_999]}),
    body(audience={"usernames": ["nobody", "dev", "nobody", "ghost"]}),
    body(audience={"projects": [424_242, 424_242]}),
    body(audience={"roles": ["developer", "astronaut"]}),
    body(
        audience={
            "users": [999_999, 999_998],
            "usernames": ["nobody", "ghost"],
            "projects": [424_242],
            "roles": ["astronaut"],
            "everyone": True,
        }
    ),
]

GOOD_BODIES: list[Any] = [
    body(),
    body(title="  padded title  ", message="  padded  ", url="  https://a.example/x  "),
    body(priority="high", url="https://status.example", event_type="ci.build_failed"),
    body(priority="low", url="/projects/1/tasks/2", event_type="0-x.y_z"),
    body(idempotency_key=None),
    body(idempotency_key="  deploy-42 "),
    body(message="", url="", title="\u200d"),  # the service refuses this title, not the parser
    body(title="x" * 200 + "   "),
    body(event_type="ci.build\n"),  # trimmed first, like every text field
    body(audience={"everyone": False, "usernames": [" dev "]}),
    body(audience={"users": [], "roles": ["developer", "developer"]}),
    body(audience={"roles": ["designer"]}),
]


@pytest.mark.parametrize("document", BAD_BODIES)
def test_bad_bodies_are_refused_with_the_serializers_body(
    people: dict[str, Any], document: Any
) -> None:
    kind, _ = assert_same(document)
    assert kind == "error"


@pytest.mark.parametrize("document", GOOD_BODIES)
def test_good_bodies_give_what_the_serializer_gave(people: dict[str, Any], document: Any) -> None:
    kind, _ = assert_same(document)
    assert kind == "ok"


def test_names_resolve_to_sorted_unique_ids(people: dict[str, Any]) -> None:
    dev = people["dev"]
    project = people["project"]
    item = assert_same(
        body(
            audience={
                "users": [dev.pk, dev.pk],
                "usernames": ["staff", "gone", "dev"],
                "projects": [project.pk, project.pk],
                "roles": ["developer"],
            }
        )
    )[1]
    from backend.users.models import User

    ids = sorted(
        User.objects.filter(username__in=["dev", "staff", "gone"]).values_list("id", flat=True)
    )
    assert item.audience == Audience(
        users=tuple(ids), projects=(project.pk,), roles=("developer",), everyone=False
    )


def test_unknown_audience_lists_every_missing_name(people: dict[str, Any]) -> None:
    _, error = assert_same(
        body(audience={"users": [people["dev"].pk, 999_999], "usernames": ["dev", "ghost"]})
    )
    assert error["error"]["code"] == "unknown_audience"
    assert error["error"]["detail"] == {"unknown": {"users": [999_999], "usernames": ["ghost"]}}


def test_many_answers_each_body_as_parse_publish_would(people: dict[str, Any]) -> None:
    documents = [*BAD_BODIES, *GOOD_BODIES]
    many = parse_publish_many(documents)
    assert len(many) == len(documents)
    for document, result in zip(documents, many, strict=True):
        answer = ("error", rendered(result)) if isinstance(result, InvalidInput) else ("ok", result)
        assert answer == new_path(document), document


def test_many_looks_names_up_once_for_all(
    people: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    documents = [
        body(audience={"usernames": ["dev"], "users": [people["dev"].pk]}),
        body(audience={"projects": [people["project"].pk], "roles": ["developer"]}),
    ] * 200
    with django_assert_max_num_queries(4):
        results = parse_publish_many(documents)
    assert all(isinstance(result, PublishItem) for result in results)


# The fuzz: bodies near the valid ones, so that most of them get past the first check.

_texts = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "ok",
            " ok ",
            "Ok",
            "high",
            "low",
            "normal",
            "urgent",
            "dev",
            "developer",
            "ghost",
            "a.b-c_d",
            "https://a.example/x",
            "/path",
            "//host",
            "javascript:x",
            "\x00",
            "\ud800",
            "\u200d",
            "\t\n",
        ]
    ),
    st.text(max_size=8),
    st.text(alphabet="ab ._-\x00Z/:", min_size=45, max_size=60),
    st.text(alphabet="x ", min_size=195, max_size=210),
)
_numbers = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([MAX_INT64, MAX_INT64 + 1, 2**64, 999_999]),
    st.floats(allow_nan=False, allow_infinity=False),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _texts)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "users"]), inner)
    ),
    max_leaves=6,
)
_audiences = st.one_of(
    _values,
    st.dictionaries(
        st.sampled_from(["users", "usernames", "projects", "roles", "everyone", "user"]),
        st.one_of(st.lists(st.one_of(_numbers, _texts, st.none()), max_size=4), _scalars),
        max_size=4,
    ),
)
_bodies = st.one_of(
    _values,
    st.fixed_dictionaries(
        {},
        optional={
            "audience": _audiences,
            "title": _scalars,
            "message": _scalars,
            "priority": _scalars,
            "url": _scalars,
            "event_type": _scalars,
            "idempotency_key": _scalars,
            "mesage": _scalars,
        },
    ),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=_bodies)
def test_fuzz_same_answer_as_the_serializer(people: dict[str, Any], document: Any) -> None:
    assert_same(document)
