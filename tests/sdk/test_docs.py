"""Meta-tests keeping docs/connectors.md honest (datasette's ``tests/test_docs.py`` idea).

A hook, a Connector member, a capability flag or a contract check that the
docs do not describe fails here; so does a hook without a test.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from leadrelay.engine import hookspecs
from leadrelay.engine.connector import Connector
from leadrelay.engine.testing import ConnectorContract, Requirements

ROOT = Path(__file__).parents[2]
DOCS = (ROOT / "docs" / "connectors.md").read_text()
TESTS = ROOT / "tests"


def hooks() -> list[str]:
    """Every hook the engine declares."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in vars(hookspecs).items()
                  if inspect.isfunction(obj) and hasattr(obj, marker))


def section(heading: str) -> str:
    """The docs section under ``heading`` with its subsections, up to the next of its rank."""
    match = re.search(rf"^(#+) {re.escape(heading)}\n", DOCS, re.M)
    assert match, f"docs/connectors.md has no section {heading!r}"
    rank = len(match.group(1))
    end = re.compile(rf"^#{{1,{rank}}} ", re.M).search(DOCS, match.end())
    return DOCS[match.end():end.start() if end else len(DOCS)]


def test_the_engine_declares_hooks() -> None:
    assert hooks() == ["register_connectors", "register_expectation_kinds",
                       "register_template_functions"]


@pytest.mark.parametrize("hook", hooks())
def test_every_hook_is_documented_with_its_arguments(hook: str) -> None:
    # Given the hook's signature in hookspecs.py
    params = list(inspect.signature(getattr(hookspecs, hook)).parameters)

    # Then the docs have a section for it, headed by its call, describing each argument
    text = section(f"`{hook}({', '.join(params)})`")
    for param in params:
        assert f"**`{param}`**" in text, f"{hook}: argument {param} is not described"
    assert "Returns" in text, f"{hook}: the return contract is not described"


@pytest.mark.parametrize("hook", hooks())
def test_every_hook_has_a_test(hook: str) -> None:
    # A test function named test_hook_<hook> somewhere under tests/ (datasette's convention)
    pattern = re.compile(rf"^def test_hook_{hook}\b", re.M)
    assert any(pattern.search(p.read_text()) for p in TESTS.rglob("test_*.py")), (
        f"no test_hook_{hook} under tests/")


@pytest.mark.parametrize("member", ["name", "Config", "default_expectations",
                                    "supports_idempotency_key", "parse_config", "check",
                                    "render", "send", "judge", "close"])
def test_every_connector_member_is_documented(member: str) -> None:
    assert f"| `{member}" in section("The Connector class"), f"Connector.{member} is undocumented"


def test_the_documented_members_are_the_connector_api() -> None:
    # Every public name of Connector is one the docs list (a new one must be documented too)
    public = {n for n in dir(Connector) if not n.startswith("_")}
    public |= {n for n in Connector.__annotations__ if not n.startswith("_")}
    assert public == {"name", "Config", "default_expectations", "supports_idempotency_key",
                      "parse_config", "check", "render", "send", "judge", "close",
                      "settle_expectations", "targets"}


@pytest.mark.parametrize("flag", Requirements.flags())
def test_every_capability_flag_is_documented(flag: str) -> None:
    assert f"| `{flag}` |" in section("Capability flags")


@pytest.mark.parametrize("check", sorted(n for n in dir(ConnectorContract)
                                         if n.startswith("test_")))
def test_every_contract_check_is_documented(check: str) -> None:
    assert f"| `{check}` |" in section("What it checks")


def test_the_adoption_example_is_the_generated_one() -> None:
    # The docs' adoption snippet and the template's test file name the same pieces
    template = (ROOT / "src" / "leadrelay" / "templates" / "test_contract.py.tmpl").read_text()
    for piece in ("pytest_plugins = [\"leadrelay.engine.testing.plugin\"]",
                  "connector_name =", "sample_lead =", "success_reply =", "rejection_reply =",
                  "def connector_config(self, fake_crm: FakeCrm)"):
        assert piece in DOCS and piece in template
