"""One definition of a valid lead, the same on SQLite and PostgreSQL (issue 10, case 6).

A payload is either stored and reads back equal, or refused with a ValidationError naming
the field, before anything is written — never a raw database error, never a lead that
every later attempt fails to encode.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import ValidationError
from leadrelay.engine.intake import LeadIn
from leadrelay.engine.leads import MAX_DEPTH, MAX_SAFE_INTEGER, validate_payload
from leadrelay.engine.ledger import Delivery, Lead


def count(app: Leadrelay, model: type) -> int:
    with app.ledger.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def stored(app: Leadrelay, lead_id: int) -> Any:
    with app.ledger.session() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None
        return lead.payload


def nested(depth: int) -> dict[str, Any]:
    """A lead whose innermost value sits ``depth`` levels deep (the lead is level 1)."""
    value: Any = "x"
    for _ in range(depth - 1):
        value = {"in": value}
    return {"deep": value} if depth > 1 else {"deep": "x"}


@pytest.fixture
def active_form(app: Leadrelay, form_id: int) -> int:
    """A form with an active integration: a refused lead must leave no delivery either."""
    app.manage.create_integration(form_id, name="CRM", connector="http_post",
                                  config={"url": "https://crm.example/leads"}, active=True)
    return form_id


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"first_name": "Ja\x00ne"}, "payload.first_name: contains a NUL character"),
        ({"address": {"city": "Pa\x00ris"}}, "payload.address.city: contains a NUL character"),
        ({"tags": ["ok", "b\ud800d"]},
         "payload.tags[1]: contains a lone surrogate (U+D800): not valid Unicode"),
        # What surrogateescape makes of a non-UTF-8 byte (0xE9) read from a Latin-1 file.
        ({"city": "Montr\udce9al"},
         "payload.city: contains a lone surrogate (U+DCE9): not valid Unicode"),
        ({"na\x00me": "x"}, 'payload["na\\u0000me"]: the field name contains a NUL character'),
        ({"a": {"\udcff": 1}},
         'payload.a["\\udcff"]: the field name contains a lone surrogate (U+DCFF)'),
        ({"id": MAX_SAFE_INTEGER + 1},
         "payload.id: a number of 16 digits is outside JSON's safe range "
         "(±9007199254740991); send it as a string"),
        ({"id": -(10**20)}, "payload.id: a number of 21 digits is outside JSON's safe range"),
        ({"id": 10**5000}, "payload.id: a number of 5001 digits is outside JSON's safe range"),
        ({"score": 1e300}, "payload.score: 1e+300 is outside JSON's safe range"),
        ({"score": math.nan}, "payload.score: NaN is not a JSON number"),
        ({"score": math.inf}, "payload.score: Infinity is not a JSON number"),
        ({"list": [1, [2, [-math.inf]]]}, "payload.list[1][1][0]: -Infinity is not a JSON number"),
        ({"odd key": {"b": b"bytes"}}, 'payload["odd key"].b: bytes is not a JSON value'),
        ({"when": {1, 2}}, "payload.when: set is not a JSON value"),
        ({"a": {"b": {7: "x"}}}, "payload.a.b: field names must be strings, got int"),
        (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ],
)
def test_a_lead_no_backend_can_keep_as_given_is_refused_naming_the_field(
    app: Leadrelay, active_form: int, payload: dict[str, Any], message: str
) -> None:
    # When a lead holding such a value is submitted
    with pytest.raises(ValidationError) as caught:
        app.submit(active_form, payload)

    # Then it is refused, naming the field path, and nothing is written on either backend
    assert message in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(f"{caught.value.field}: ")
    assert count(app, Lead) == 0 and count(app, Delivery) == 0


def test_a_batch_is_refused_whole_naming_the_lead(app: Leadrelay, active_form: int) -> None:
    leads = [LeadIn(active_form, {"n": 1}), LeadIn(active_form, {"n": "\x00"})]
    with pytest.raises(ValidationError, match=r"^leads\[1\]\.payload\.n: contains a NUL"):
        app.submit_many(leads)
    assert count(app, Lead) == 0


def test_a_lead_nested_far_too_deep_is_refused_without_recursion(
    app: Leadrelay, form_id: int
) -> None:
    value: Any = []
    for _ in range(200_000):
        value = [value]
    with pytest.raises(ValidationError, match=r"nested deeper than"):
        app.submit(form_id, {"deep": value})


@pytest.mark.parametrize(
    "payload",
    [
        {"first_name": "Zoë", "city": "Zürich", "note": "💡 idée — 東京", "empty": ""},
        {"id": MAX_SAFE_INTEGER, "low": -MAX_SAFE_INTEGER, "zero": 0, "neg": -1},
        {"price": 19.99, "tiny": 5e-324, "big": 9007199254740990.0, "minus": -0.5},
        {"flags": [True, False, None], "nested": {"list": [{"a": [1, 2, {"b": "c"}]}]}},
        nested(MAX_DEPTH),
        {"odd key": 1, "dotted.key": 2, "with space": {"ünïcode": "ok"}, "tab\there": "x"},
        {"controls": "line\nbreak\ttab\x01\x1f\x7f", "bom": "\ufeff", "max": "\U0010ffff"},
    ],
)
def test_a_valid_lead_reads_back_as_given_on_every_backend(
    app: Leadrelay, active_form: int, payload: dict[str, Any]
) -> None:
    accepted = app.submit(active_form, payload)
    assert stored(app, accepted.lead_id) == payload
    assert len(accepted.delivery_ids) == 1


def test_tuples_and_mappings_are_stored_as_json_shapes(app: Leadrelay, form_id: int) -> None:
    from types import MappingProxyType

    accepted = app.submit(form_id, {"t": (1, (2, "x")), "m": MappingProxyType({"k": "v"})})
    assert stored(app, accepted.lead_id) == {"t": [1, [2, "x"]], "m": {"k": "v"}}


def test_the_definition_does_not_depend_on_the_backend() -> None:
    # The check runs before any statement: the same payload gets the same answer anywhere.
    with pytest.raises(ValidationError) as caught:
        validate_payload({"a": ["ok", {"b": "\x00"}]}, field="leads[2].payload")
    assert caught.value.field == "leads[2].payload.a[1].b"


# -- any payload: stored equal, or refused with ValidationError --------------------------


_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
    max_size=12,
)
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e15, max_value=1e15),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_TEXT, children, max_size=4),
    ),
    max_leaves=12,
)
_PAYLOADS = st.dictionaries(_TEXT, _VALUES, min_size=1, max_size=6)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=_PAYLOADS)
def test_any_payload_is_stored_equal_or_refused_with_a_validation_error(
    app: Leadrelay, form_id: int, payload: dict[str, Any]
) -> None:
    # Given any JSON-like payload: any code point (NUL and lone surrogates included), integers
    # past the safe range, NaN and infinities, nested objects and lists
    before = count(app, Lead)
    try:
        accepted = app.submit(form_id, payload)
    except ValidationError:
        # Then either it is refused as bad input, and nothing is written...
        assert count(app, Lead) == before
        return
    # ...or it is stored, and reads back equal (never a DataError or another exception)
    assert stored(app, accepted.lead_id) == payload
