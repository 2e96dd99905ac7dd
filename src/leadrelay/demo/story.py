"""The demo's story, as steps a CLI narrates and a test asserts on.

On the embedded default (SQLite under ``home``, in-process broker and worker),
against the demo CRMs: a form with three active integrations — one CRM that
accepts, one that answers 200 with an error body, one that is down — gets a
few leads. Worker and sweeper run until every delivery is settled: delivered,
or not integrated after three attempts. Retry delays are seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.report import DeliveryFilter
from leadrelay.engine.settings import Settings

from .crms import PIPEDRIVE_TOKEN, DemoCrms

#: Three attempts, 2 s then 3 s apart, no jitter: the whole story takes seconds.
DEMO_RETRY: dict[str, Any] = {"max_attempts": 3, "delays": ["2s", "3s"], "jitter": 0}

DEMO_LEADS: tuple[dict[str, Any], ...] = (
    {"first_name": "Jane", "last_name": "Doe", "email": " Jane.Doe@Example.com ",
     "company": "ACME Corp", "phone": "+1 415 555 0100"},
    {"first_name": "Ravi", "last_name": "Patel", "email": "ravi@patel.example",
     "company": "Patel & Sons"},
    {"first_name": "Léa", "last_name": "Martin", "email": "lea.martin@example.fr",
     "company": "Atelier Martin", "phone": "+33 1 23 45 67 89"},
)

#: The demo's integrations: a CRM that accepts, one that answers 200 with an error, one down.
ACCEPTS, ERROR_AT_200, DOWN = "Pipedrive-like", "Odoo-like", "Down CRM"

#: Delivery states in which nothing more will happen without a replay.
SETTLED = frozenset({"delivered", "not_integrated"})


@dataclass(frozen=True)
class Progress:
    """Where the story's deliveries stand, at one moment."""

    elapsed: float
    states: Counter[str]
    attempts: int
    total: int

    @property
    def settled(self) -> int:
        """Deliveries that are delivered or not integrated."""
        return sum(n for state, n in self.states.items() if state in SETTLED)


@dataclass(frozen=True)
class DemoResult:
    """The story's end: every delivery, the failed collection, one inspected delivery."""

    integrations: dict[str, int]
    lead_ids: list[int]
    deliveries: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    inspected: dict[str, Any]
    elapsed: float
    finished: bool

    def problems(self) -> list[str]:
        """How the story's end differs from the one told; empty when it went as it should."""
        expected = {ACCEPTS: ("delivered", 1), ERROR_AT_200: ("not_integrated", 3),
                    DOWN: ("not_integrated", 3)}
        found = []
        if not self.finished:
            found.append("the deliveries did not settle in time")
        for name, (state, attempts) in expected.items():
            for row in self.deliveries:
                if row["integration_id"] == self.integrations.get(name) and (
                        row["state"], row["attempts"]) != (state, attempts):
                    found.append(f"delivery {row['id']} to {name} is {row['state']} after "
                                 f"{row['attempts']} attempts, not {state} after {attempts}")
        return found


def demo_settings(home: Path) -> Settings:
    """The embedded default under ``home``, whatever the environment says.

    The ledger and the secrets key live in ``home``; the broker is in-process;
    ``plugins.toml`` is not read (the demo needs only the built-in ``http_post``).
    """
    base = Settings.from_env({"LEADRELAY_HOME": str(home)})
    # The demo's CRMs listen on 127.0.0.1: the one address it allows besides public ones.
    return dataclasses.replace(base, plugins_file=None, sweep_interval=0.5,
                               egress_allow=("127.0.0.1",))


class DemoStory:
    """The demo, step by step. Use as a context manager: it starts the CRMs and the engine."""

    def __init__(
        self,
        home: Path,
        *,
        retry: dict[str, Any] | None = None,
        leads: tuple[dict[str, Any], ...] = DEMO_LEADS,
        threads: int = 4,
        timeout: float = 60.0,
    ) -> None:
        self.home = home
        self.retry = retry or DEMO_RETRY
        self.leads = leads
        self.threads = threads
        self.timeout = timeout
        self.crms = DemoCrms()
        self._app: Leadrelay | None = None
        self.form_id = 0
        self.integrations: dict[str, int] = {}
        self.lead_ids: list[int] = []
        self._started = 0.0

    @property
    def app(self) -> Leadrelay:
        """The running engine."""
        assert self._app is not None, "use DemoStory as a context manager"
        return self._app

    def __enter__(self) -> DemoStory:
        self.crms.start()
        try:
            self._app = Leadrelay(demo_settings(self.home))
        except BaseException:
            self.crms.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._app is not None:
                self._app.close()
        finally:
            self._app = None
            self.crms.stop()

    # -- the steps ------------------------------------------------------------------

    def set_up(self) -> dict[str, int]:
        """An account, a form, and its three active integrations; returns name → id."""
        manage = self.app.manage
        account = manage.create_account("Demo Co", "owner@demo.example", plan="starter")
        self.form_id = manage.create_form(account.id, "Contact us").id
        common: dict[str, Any] = {"connector": "http_post", "retry": self.retry, "active": True}
        self.integrations = {
            ACCEPTS: manage.create_integration(
                self.form_id, name=ACCEPTS, **common,
                config={
                    "url": self.crms.pipedrive_url, "body": "json",
                    "fields": {"title": {"template": "{first_name} {last_name}"},
                               "email": {"from": "email", "transform": ["strip", "lower"]},
                               "organization": "company",
                               "source": {"const": "leadrelay demo"}},
                    "secret_query": {"api_token": PIPEDRIVE_TOKEN},
                },
                expectations={"combine": "all",
                              "rules": [{"kind": "status", "in": [201]},
                                        {"kind": "json_field", "path": "success",
                                         "equals": True}],
                              "reference": {"json": "data.id"}},
            ).id,
            ERROR_AT_200: manage.create_integration(
                self.form_id, name=ERROR_AT_200, **common,
                config={"url": self.crms.odoo_url, "body": "json"},
                expectations={"combine": "all",
                              "rules": [{"kind": "status", "in": [200]},
                                        {"kind": "json_field", "path": "error",
                                         "exists": False},
                                        {"kind": "json_field", "path": "result"}]},
            ).id,
            DOWN: manage.create_integration(
                self.form_id, name=DOWN, **common,
                config={"url": self.crms.down_url, "connect_timeout": 2},
            ).id,
        }
        return self.integrations

    def submit(self) -> list[int]:
        """Submit the demo leads to the form; returns their lead ids."""
        self._started = time.monotonic()
        self.lead_ids = [self.app.submit(self.form_id, lead).lead_id for lead in self.leads]
        return self.lead_ids

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> bool:
        """Run worker and sweeper until every delivery is settled; False on timeout."""
        self.app.start_worker(threads=self.threads)
        self.app.start_sweeper()
        deadline = time.monotonic() + self.timeout
        while True:
            progress = self.progress()
            if on_progress is not None:
                on_progress(progress)
            if progress.settled == progress.total:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def progress(self) -> Progress:
        """Where the deliveries of the demo form stand now."""
        rows = self.app.deliveries(DeliveryFilter(form_id=self.form_id))
        return Progress(
            elapsed=time.monotonic() - self._started,
            states=Counter(r["state"] for r in rows),
            attempts=sum(r["attempts"] for r in rows),
            total=len(rows),
        )

    def result(self, finished: bool = True) -> DemoResult:
        """The end of the story, read back from the ledger."""
        rows = self.app.deliveries(DeliveryFilter(form_id=self.form_id))
        failed = self.app.deliveries(DeliveryFilter(form_id=self.form_id,
                                                    state="not_integrated"))
        odoo = self.integrations.get(ERROR_AT_200)
        pick = next((r for r in failed if r["integration_id"] == odoo), None)
        pick = pick or (failed[0] if failed else rows[0] if rows else None)
        return DemoResult(
            integrations=dict(self.integrations),
            lead_ids=list(self.lead_ids),
            deliveries=rows,
            failed=failed,
            inspected=self.app.inspect(pick["id"]) if pick else {},
            elapsed=time.monotonic() - self._started,
            finished=finished,
        )


def run_demo(
    home: Path, *, on_progress: Callable[[Progress], None] | None = None, **options: Any
) -> DemoResult:
    """The whole story in one call (what ``leadrelay demo`` narrates)."""
    with DemoStory(home, **options) as story:
        story.set_up()
        story.submit()
        finished = story.run(on_progress)
        return story.result(finished)
