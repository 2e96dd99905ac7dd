"""An imported row is validated like any lead: ``validate_payload``'s quick check of a flat
object of strings (every CSV row) accepts exactly what its full check accepts, and
refuses the rest with the same message."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadrelay.engine.errors import ValidationError
from leadrelay.engine.leads import MAX_FIELDS, MAX_PAYLOAD_BYTES, validate_payload


def outcome(payload: Any) -> tuple[str, Any]:
    try:
        return "ok", validate_payload(payload, field="row")
    except ValidationError as exc:
        return "refused", str(exc)


def both(payload: dict[str, Any]) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """What the quick check (a dict) and the full check (the same fields in a mapping that
    is not a dict) make of ``payload``."""
    return outcome(payload), outcome(MappingProxyType(payload))


TEXT = st.text(alphabet=st.sampled_from(list("ab é☃𝄞 \t\n\"\\\x00\ud800\udfff")), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT, TEXT, max_size=6))
def test_the_quick_check_agrees_with_the_full_check(payload: dict[str, str]) -> None:
    quick, full = both(payload)
    assert quick == full


@pytest.mark.parametrize("char", ["a", "é", "☃", "𝄞", "\x01", '"'])
@pytest.mark.parametrize("margin", [-7, -6, -1, 0, 1, 6])
def test_the_size_limit_is_the_same_to_the_byte(char: str, margin: int) -> None:
    # {"v":"..."}: 8 bytes around the value, each character as long as JSON escapes it.
    escaped = {"a": 1, "é": 6, "☃": 6, "𝄞": 12, "\x01": 6, '"': 2}[char]
    count = (MAX_PAYLOAD_BYTES - 8) // escaped
    value = char * count + "a" * (MAX_PAYLOAD_BYTES - 8 - count * escaped + margin)
    quick, full = both({"v": value})
    assert quick == full
    assert quick[0] == ("ok" if margin <= 0 else "refused")


def test_too_many_fields_and_blank_names_are_refused_alike() -> None:
    many = {f"f{i}": "x" for i in range(MAX_FIELDS + 1)}
    for payload in (many, {" ": "x"}, {"": "x"}, {"a": "x\x00"}, {"a\ud800": "x"}):
        quick, full = both(payload)
        assert quick == full and quick[0] == "refused"
