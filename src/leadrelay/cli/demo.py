"""``leadrelay demo``: the whole story against local demo CRMs, in well under a minute."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.text import Text

from .leads import render_deliveries
from .output import console, print_json, print_table

if TYPE_CHECKING:
    from leadrelay.demo import DemoStory, Progress


@click.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo's ledger here (default: a temporary directory, removed "
                   "at the end).")
@click.option("--page", is_flag=True,
              help="Serve a sample landing page with the browser embed instead, until "
                   "Ctrl-C: open it, submit, and watch the developer console.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="With --page: the port on 127.0.0.1 (0: any free port).")
def demo(home: Path | None, page: bool, port: int) -> None:
    """Run the story on the embedded default against demo CRMs it starts itself.

    Three integrations on one form, each a real HTTP endpoint on 127.0.0.1: a
    Pipedrive-like CRM that accepts (201, success=true, its lead id kept as
    the CRM reference), an Odoo-like CRM that answers HTTP 200 with an error
    body (caught by an expectation rule), and a CRM that is down (retried,
    then not integrated). Three leads go in; worker and sweeper run with
    retry delays of seconds; then the deliveries, the failed collection and
    the inspect output of one failed delivery are printed.

    With --page, the same form and CRMs stay up behind a sample landing page
    with the browser embed, http://127.0.0.1:PORT/demo: submit it and the
    developer console shows what happened at each CRM (the accepting CRM in
    real time, the others once their retries settle).

    Ignores LEADRELAY_* settings: a SQLite ledger under --home (or a temporary
    directory) and the in-process broker.
    """
    from leadrelay.demo import DemoStory

    temporary = home is None
    where = Path(tempfile.mkdtemp(prefix="leadrelay-demo-")) if home is None else home
    try:
        with DemoStory(where) as story:
            if page:
                _serve_page(story, port)
                return
            problems = _tell(story)
    finally:
        if temporary:
            shutil.rmtree(where, ignore_errors=True)
    if problems:
        from . import CliFailure

        raise CliFailure(f"the demo did not end as it should: {'; '.join(problems)}")


def _serve_page(story: DemoStory, port: int) -> None:
    """Serve the API and its demo landing page over the story's engine until stopped."""
    from leadrelay.api import create_app
    from leadrelay.api.server import bind, serve_app, url_of
    from leadrelay.demo import set_up_page

    sock = bind("127.0.0.1", port)
    url = url_of(sock)
    form_key = set_up_page(story, url)
    out = console()
    out.rule("leadrelay demo --page")
    out.print(f"Landing page: {url}/demo  (open the developer console, then submit)")
    out.print(f"Form key {form_key}; the embed script: {url}/v1/embed.js")
    out.print(f"Demo CRMs: {story.crms.pipedrive_url} (real time), {story.crms.odoo_url}, "
              f"{story.crms.down_url} (down)")
    out.print("Ctrl-C stops.")
    serve_app(create_app(story.app, demo_form_key=form_key), sock)
    click.echo("leadrelay demo: stopped", err=True)


def _tell(story: DemoStory) -> list[str]:
    """Run the story, printing each step; how its end differs from the one told."""
    out = console()
    out.rule("leadrelay demo")
    out.print(f"Ledger: {story.home / 'leadrelay.db'} (SQLite), in-process broker and worker")
    out.print("Demo CRMs on 127.0.0.1:")
    out.print(f"  accepts        {story.crms.pipedrive_url} (Pipedrive-like: 201, success=true)")
    out.print(f"  error at 200   {story.crms.odoo_url} (Odoo-like JSON-RPC error at HTTP 200)")
    out.print(f"  down           {story.crms.down_url} (nobody listens)")
    out.print()

    ids = story.set_up()
    waits = " then ".join(story.retry["delays"])
    retry = f"{story.retry['max_attempts']} attempts, waiting {waits}"
    print_table(["id", "integration", "retry"],
                ([i, name, retry] for name, i in ids.items()),
                title=f"Form {story.form_id}: active integrations")
    leads = story.submit()
    out.print(f"Submitted {len(leads)} leads (ids {', '.join(map(str, leads))}): "
              f"one delivery per lead and integration, written with the lead.")
    out.print()

    with _ProgressDisplay() as show:
        finished = story.run(show)
    result = story.result(finished)
    out.print()

    names = {i: name for name, i in ids.items()}
    render_deliveries(result.deliveries, names, title="Deliveries")
    out.print()
    render_deliveries(result.failed, names, title="Failed collection (not integrated)")
    out.print()
    if result.inspected:
        delivery_id = result.inspected["delivery"]["id"]
        out.print(Text(f"$ leadrelay inspect {delivery_id}", style="bold"))
        print_json(result.inspected)
        out.print()
    delivered = sum(1 for r in result.deliveries if r["state"] == "delivered")
    out.print(
        f"Done in {result.elapsed:.1f}s: {delivered} delivered, {len(result.failed)} not "
        "integrated. With --home DIR the ledger stays, and LEADRELAY_HOME=DIR leadrelay "
        "replay --dry-run shows what a replay would send."
    )
    return result.problems()


class _ProgressDisplay:
    """Shows the deliveries moving: a live bar on a terminal, a line per change elsewhere."""

    def __init__(self) -> None:
        self.out = console()
        self.bar: Bar | None = None
        self.task: TaskID | None = None
        self._last = ""

    def __enter__(self) -> _ProgressDisplay:
        if self.out.is_terminal:
            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), console=self.out)
            self.bar.__enter__()
            self.task = self.bar.add_task("waiting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def __call__(self, progress: Progress) -> None:
        counts = " · ".join(f"{progress.states[s]} {s}"
                            for s in ("pending", "sending", "delivered", "not_integrated")
                            if progress.states[s])
        line = f"{counts}; {progress.attempts} attempts made"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=line, total=progress.total,
                            completed=progress.settled)
        elif line != self._last:
            self.out.print(f"{progress.elapsed:5.1f}s  {line}")
        self._last = line
