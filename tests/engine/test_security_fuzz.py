"""Property-based fuzzing of what accounts and visitors control: URLs and hosts under the
egress policy, integration configs (field mapping), expectations, and redaction. A crash
is anything but the project's clear error."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadrelay.connectors.http_post.connector import HttpPostConnector
from leadrelay.engine.egress import EgressPolicy
from leadrelay.engine.errors import BadInput, RefusedTarget
from leadrelay.engine.expectations import Expectations
from leadrelay.engine.plugins import Plugins
from leadrelay.engine.secrets import MASK, Redactor, derived_forms


def _nowhere(host: str) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


POLICY = EgressPolicy(resolver=_nowhere)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
HOSTISH = st.text(alphabet="0123456789abcdefx.:[]%@/", max_size=40)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(HOSTISH, st.text(max_size=40)))
def test_any_host_is_refused_or_resolved_never_a_crash(host: str) -> None:
    try:
        found = POLICY.addresses(host)
    except (RefusedTarget, socket.gaierror, UnicodeError, ValueError):
        return
    assert found and all(POLICY.refusal(a) is None for a in found)


@settings(max_examples=100)
@given(st.builds(lambda scheme, rest: scheme + rest,
                 st.sampled_from(["http://", "https://", "", "ftp://", "http:///"]),
                 st.one_of(HOSTISH, st.text(max_size=40))))
def test_any_url_is_a_config_error_at_worst(url: str) -> None:
    try:
        POLICY.check_url(url, field="config.url")
    except BadInput as exc:
        assert str(exc).startswith("config.url: ")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=10), JSON, max_size=4))
def test_any_field_mapping_is_a_config_error_at_worst(fields: dict[str, Any]) -> None:
    with contextlib.suppress(BadInput):
        HttpPostConnector.parse_config({"url": "https://crm.example/", "fields": fields})


KINDS = Plugins(load_entry_points=False).expectation_kinds


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.fixed_dictionaries(
    {"rules": st.lists(st.dictionaries(st.sampled_from(["kind", "in", "path", "equals",
                                                        "matches", "final"]), JSON,
                                       max_size=4), max_size=3)},
    optional={"combine": JSON, "reference": JSON})))
def test_any_expectations_are_a_config_error_at_worst(raw: Any) -> None:
    with contextlib.suppress(BadInput):
        Expectations.parse(raw, KINDS)


@settings(max_examples=60)
@given(st.text(min_size=3, max_size=24), st.text(max_size=30), st.text(max_size=30))
def test_a_secret_in_any_of_its_forms_never_survives_redaction(
    secret: str, before: str, after: str,
) -> None:
    redactor = Redactor([secret])
    for form in derived_forms(secret):
        shown = redactor.text(before + form + after)
        assert form not in shown or form in MASK
