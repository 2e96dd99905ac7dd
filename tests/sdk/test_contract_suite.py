"""The contract suite itself: it catches a sloppy connector, and honours capability flags.

Run with pytester (the way pytest tests its own plugins) on a connector that
is installed through a real entry point, registers fine, delivers fine — and
forgets ``Retry-After``, leaks its key into a log line on rejection (where the
engine cannot redact it), and claims an idempotency key it never sends.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

SLOPPY = """
import dataclasses
import logging

import pydantic

from leadrelay.engine import Connector, ConnectorConfig, Outcome, RenderedRequest, hookimpl


class Config(ConnectorConfig):
    url: str
    api_key: pydantic.SecretStr


class SloppyConnector(Connector):
    name = "sloppy"
    Config = Config
    supports_idempotency_key = True  # claimed, never sent

    def render(self, lead):
        key = self.config.api_key.get_secret_value()
        return RenderedRequest("POST", self.config.url, {"X-Api-Key": key}, b"{}")

    def send(self, lead, http):
        return http.send(self.render(lead))

    def judge(self, response, expectations):
        verdict = super().judge(response, expectations)
        verdict = dataclasses.replace(verdict, retry_after=None)  # forgets Retry-After
        if verdict.outcome is Outcome.REJECTED:  # leaks the key where the engine cannot redact
            key = self.config.api_key.get_secret_value()
            logging.getLogger("lrtest_sloppy").warning("rejected, key %s", key)
        return verdict


@hookimpl
def register_connectors(register):
    register(SloppyConnector)
"""

ADOPTION = """
import pytest

from leadrelay.engine.testing import ConnectorContract, Reply, Requirements

pytest_plugins = ["leadrelay.engine.testing.plugin"]


class TestSloppy(ConnectorContract):
    connector_name = "sloppy"
    sample_lead = {"email": "jane.doe@example.com"}
    success_reply = Reply(201, {"id": "lead-1"})
    rejection_reply = Reply(422, {"error": "email is invalid"})

    @pytest.fixture
    def connector_config(self, fake_crm):
        return {"url": fake_crm.url_for("/leads"), "api_key": "sloppy-key-0001"}


class TestSloppyOptingOut(TestSloppy):
    requirements = Requirements(retry_after=False, rejection=False, secrets=False)


class TestUnfinished(ConnectorContract):
    pass
"""

#: The checks this run selects: those the sloppy connector's defects touch.
SELECTED = "retry_after or rejection or secret or idempotency"


@pytest.fixture
def sloppy_installed(pytester: pytest.Pytester) -> pytest.Pytester:
    """The sloppy connector installed as pip would: a module and a dist-info on sys.path."""
    site = pytester.mkdir("site")
    (site / "lrtest_sloppy.py").write_text(textwrap.dedent(SLOPPY))
    info = site / "lrtest_sloppy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lrtest-sloppy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[leadrelay.connectors]\nsloppy = lrtest_sloppy\n")
    pytester.syspathinsert(site)
    pytester.makepyfile(test_sloppy_contract=ADOPTION)
    return pytester


def test_the_contract_fails_a_sloppy_connector_on_exactly_its_defects(
    sloppy_installed: pytest.Pytester,
) -> None:
    # When the contract runs on the sloppy connector
    result = sloppy_installed.inline_run("-p", "no:cacheprovider", "-k", SELECTED)

    # Then exactly the checks its defects break fail, with a reason that says why
    passed, skipped, failed = result.listoutcomes()
    failed_names = sorted(r.nodeid.split("::", 1)[1] for r in failed
                          if "TestUnfinished" not in r.nodeid)
    assert failed_names == [
        "TestSloppy::test_no_secret_in_any_attempt_record",
        "TestSloppy::test_retry_after_is_honoured[429-date]",
        "TestSloppy::test_retry_after_is_honoured[429-seconds]",
        "TestSloppy::test_retry_after_is_honoured[503-date]",
        "TestSloppy::test_retry_after_is_honoured[503-seconds]",
        "TestSloppy::test_sends_the_idempotency_key",
        "TestSloppyOptingOut::test_sends_the_idempotency_key",
    ]
    reports = {r.nodeid.split("::", 1)[1]: str(r.longrepr) for r in failed}
    assert "a secret (sl…, 15 chars) appears in the engine's log" in reports[
        "TestSloppy::test_no_secret_in_any_attempt_record"]
    assert "Retry-After was not honoured" in reports[
        "TestSloppy::test_retry_after_is_honoured[429-seconds]"]
    assert "the idempotency key was not sent" in reports[
        "TestSloppy::test_sends_the_idempotency_key"]
    # A reason quoting the key is redacted by the engine itself, so that check passes.
    assert [r.nodeid.split("::", 1)[1] for r in passed] == [
        "TestSloppy::test_a_rejection_is_rejected", "TestSloppy::test_redacts_its_secrets"]

    # and what the connector opted out of is skipped, saying so
    reasons = {r.nodeid.split("::", 1)[1]: r.longrepr[2] for r in skipped}  # type: ignore[index]
    assert reasons["TestSloppyOptingOut::test_a_rejection_is_rejected"] == (
        "Skipped: sloppy opts out: Requirements(rejection=False)")
    assert reasons["TestSloppyOptingOut::test_retry_after_is_honoured[503-date]"] == (
        "Skipped: sloppy opts out: Requirements(retry_after=False)")
    assert reasons["TestSloppyOptingOut::test_redacts_its_secrets"] == (
        "Skipped: sloppy opts out: Requirements(secrets=False)")
    assert len(skipped) == 7


def test_an_unfinished_adoption_says_what_is_missing(sloppy_installed: pytest.Pytester) -> None:
    # When a test class adopts the contract without declaring anything
    result = sloppy_installed.runpytest_inprocess("-p", "no:cacheprovider",
                                                  "-k", "TestUnfinished and accepts")

    # Then its checks error out, naming what to declare
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestUnfinished: set connector_name (a str) to adopt the "
                                 "connector contract*"])
