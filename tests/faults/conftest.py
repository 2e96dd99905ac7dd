"""Fixtures of the fault suite: hostile CRMs, deployments of real processes, sizes, and
the figures ``docs/reliability.md`` is regenerated from.

Options (give them with the suite's path, ``pytest tests/faults --full``: pytest reads
a directory's options only when it is named on the command line):

- ``--full``: the issue's sizes (a 20 s database cut, a backlog of 5,000 leads, …);
- ``--reliability-report``: rewrite the figures of ``docs/reliability.md`` from this run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from .hostile_crm import HostileCrm
from .promises import Findings
from .report import FigureBook
from .stack import cut_stack, faults_redis, pg_stack, scratch_postgres, sizes, stack

__all__ = ["cut_stack", "faults_redis", "pg_stack", "scratch_postgres", "sizes", "stack"]

_BOOK = pytest.StashKey[FigureBook]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "leadrelay fault suite (tests/faults)")
    group.addoption("--full", action="store_true", default=False,
                    help="run tests/faults at the issue's sizes (minutes, not seconds)")
    group.addoption("--reliability-report", action="store_true", default=False,
                    help="rewrite the figures table of docs/reliability.md from this run")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BOOK] = FigureBook()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.config.stash[_BOOK].failed.append(item.name)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("reliability_report", False):
        book = config.stash[_BOOK]
        if book.rows or book.failed:
            book.write(full=bool(config.getoption("full", False)))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(order, scenario, backend, findings, policy, measured)``: keep the row of
    this scenario for the report (call it after the scenario's assertions)."""
    book = request.config.stash[_BOOK]

    def record(order: int, scenario: str, backend: str, findings: Findings, policy: int,
               measured: str, **extra: Any) -> None:
        book.add({
            "order": order, "scenario": scenario, "backend": backend,
            "leads": findings.leads, **findings.row(),
            "ended": f"{findings.delivered} delivered, {findings.not_integrated} failed"
                     + (f", {findings.pending} pending (due)" if findings.pending else ""),
            "attempts": f"{findings.max_attempts} ({policy})",
            "measured": measured, **extra,
        })

    return record


@pytest.fixture
def hostile_crm() -> Iterator[HostileCrm]:
    """A started hostile CRM in mode ``ok``; pick a mode per request by path
    (``crm.url_for("/drip/leads")``) or for all with ``crm.set_mode("drip")``."""
    with HostileCrm("ok") as crm:
        yield crm


@pytest.fixture
def make_hostile_crm() -> Iterator[Callable[..., HostileCrm]]:
    """``make_hostile_crm(mode, **options)``: more started hostile CRMs, all stopped after."""
    started: list[HostileCrm] = []

    def make(mode: str = "ok", **options: Any) -> HostileCrm:
        crm = HostileCrm(mode, **options).start()
        started.append(crm)
        return crm

    try:
        yield make
    finally:
        for crm in started:
            crm.stop()
