"""Every benchmark scenario runs once at a tiny size, so the suite cannot rot.

Not a measurement: the figures of a smoke run mean nothing. Each scenario takes a
few seconds; none needs wrk. Scenarios that need PostgreSQL or Redis follow the
suite's policy: skipped when unreachable, a failure under CI (``CI=true``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``bench`` lives beside ``src``, not inside the package
    sys.path.insert(0, str(ROOT))

from bench.core import SCENARIOS, Context, Sizes, run_scenario, select  # noqa: E402
from bench.servers import CrmServer, crm_server  # noqa: E402
from bench.services import postgres_problem, redis_problem  # noqa: E402

from conftest import POSTGRES_URL, REDIS_URL, REQUIRE_SERVICES  # noqa: E402

select(None)  # registers every scenario

#: Every scenario the harness knows; a new one is smoke-tested without editing this file.
NAMES = list(SCENARIOS)


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    """The benchmark's CRM responder, shared by the module's tests."""
    with crm_server() as server:
        yield server


def test_every_issue_scenario_is_registered() -> None:
    # Given the seven scenarios of the benchmark issue, then each has at least one entry
    prefixes = ["throughput-", "intake-", "isolation", "soap", "proxy", "growth-", "memory"]
    assert all(any(n.startswith(p) for n in NAMES) for p in prefixes), NAMES


@pytest.mark.parametrize("name", NAMES)
def test_scenario_runs_once_at_smoke_size(name: str, crm: CrmServer, tmp_path: Path) -> None:
    sc = SCENARIOS[name]
    for need in sc.needs:
        problem = (
            postgres_problem(POSTGRES_URL)
            if need == "postgres"
            else redis_problem(REDIS_URL.rsplit("/", 1)[0] + "/14")
        )
        if problem:
            if REQUIRE_SERVICES:
                pytest.fail(f"{problem}; CI requires it", pytrace=False)
            pytest.skip(problem)
    ctx = Context(
        sizes=Sizes.smoke(),
        crm=crm,
        scratch=tmp_path,
        postgres_url=POSTGRES_URL,
        redis_url=REDIS_URL.rsplit("/", 1)[0] + "/14",
        smoke=True,
        verbose=False,
    )

    # When it runs once
    outcome = run_scenario(sc, ctx, reps=1, raise_errors=True)

    # Then it produced its headline figure, finite and positive (or says why it is pending)
    if outcome.status == "pending":  # a dependency missing here; CI installs them all
        if REQUIRE_SERVICES:
            pytest.fail(f"{name}: {outcome.reason}; CI requires it", pytrace=False)
        pytest.skip(f"{name}: {outcome.reason}")
    assert outcome.status == "ok", outcome.reason
    value = outcome.stats()[sc.headline]["median"]
    assert math.isfinite(value) and value >= 0
