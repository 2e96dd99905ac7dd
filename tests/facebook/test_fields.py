"""The field map: from Graph's ``field_data`` to lead fields, defaults and overrides."""

from __future__ import annotations

import pytest

from leadrelay.engine.errors import BadInput, ValidationError
from leadrelay.facebook.fields import check_field_map, lead_fields

from .conftest import fixture


def test_the_defaults_split_the_name_and_rename_the_phone() -> None:
    fields = lead_fields(fixture("graph_lead.json")["field_data"], {})
    assert fields == {
        "first_name": "Amira", "last_name": "Haddad", "email": "amira.haddad@example.com",
        "phone": "+33612345678", "city": "Lyon",
        "which_product_are_you_interested_in?": "Solar panels",
    }


@pytest.mark.parametrize(("field_map", "data", "expected"), [
    ({"city": "town"}, [{"name": "city", "values": ["Lyon"]}], {"town": "Lyon"}),
    ({"city": None}, [{"name": "city", "values": ["Lyon"]}], {}),
    ({}, [{"name": "full_name", "values": ["Cher"]}], {"first_name": "Cher", "last_name": ""}),
    ({}, [{"name": "full_name", "values": ["Jean  Paul Sartre"]}],
     {"first_name": "Jean", "last_name": "Paul Sartre"}),
    ({}, [{"name": "colours", "values": ["red", "blue"]}], {"colours": ["red", "blue"]}),
    ({}, [{"name": "empty", "values": []}], {}),
    ({"full_name": "name"}, [{"name": "full_name", "values": ["A B"]}], {"name": "A B"}),
    ({}, [{"name": "facebook_ad_id", "values": ["x"]}], {"answer_facebook_ad_id": "x"}),
])
def test_a_field_map_over_the_defaults(field_map: dict[str, object], data: list[object],
                                       expected: dict[str, object]) -> None:
    assert lead_fields(data, check_field_map(field_map)) == expected


def test_a_graph_answer_without_field_data_is_refused() -> None:
    with pytest.raises(ValidationError, match="field_data"):
        lead_fields(None, {})
    with pytest.raises(ValidationError, match=r"field_data\[0\]"):
        lead_fields([{"values": ["x"]}], {})


@pytest.mark.parametrize(("field_map", "field"), [
    ({"city": "the town"}, "field_map.city"),
    ({"city": "1st"}, "field_map.city"),
    ({"city": "facebook_leadgen_id"}, "field_map.city"),
    ({"city": 3}, "field_map.city"),
    ({"full_name": ["a", "b", "c"]}, "field_map.full_name"),
    ({"": "a"}, "field_map"),
    ([], "field_map"),
])
def test_a_mapping_to_an_unknown_field_is_refused(field_map: object, field: str) -> None:
    with pytest.raises(BadInput) as error:
        check_field_map(field_map)
    assert error.value.field == field
