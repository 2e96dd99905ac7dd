"""Long-running processes: ``serve``, ``worker`` and ``scheduler``.

Each runs until Ctrl-C or SIGTERM, then stops gracefully: the sweeper loop
ends, the worker finishes the attempts it has in flight, connections close.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from .context import close_engine, engine, safe_url

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay

_THREADS = click.option(
    "--threads", type=click.IntRange(min=1, max=256), default=None,
    help="Worker threads [default: LEADRELAY_WORKER_THREADS, else 8].",
)
_LOG_LEVEL = click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
    default="info", show_default=True, help="What to log on standard error.",
)


_HOST = click.option("--host", default="127.0.0.1", show_default=True,
                     help="The address the HTTP API listens on.")
_PORT = click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
                     help="The port the HTTP API listens on (0: any free port).")


@click.command()
@_HOST
@_PORT
@_THREADS
@_LOG_LEVEL
def serve(host: str, port: int, threads: int | None, log_level: str) -> None:
    """Run the HTTP API, the worker and the scheduler in one process (the embedded default).

    On the embedded default (no LEADRELAY_BROKER_URL) this is the whole
    service: the API (forms and external systems post leads to it), a SQLite
    ledger, an in-process broker, worker threads and the sweeper loop. With
    LEADRELAY_BROKER_URL set it uses Redis, like `api`, `worker` and
    `scheduler` together. Prints the URL the API answers on.
    """
    from leadrelay.api.server import serve_engine

    _logging(log_level)
    app = engine()
    count = threads or app.settings.worker_threads
    app.start_worker(threads=count)
    app.start_scheduler()
    _announce(f"serve: {count} worker threads and the scheduler ({_digest_note(app)})")

    def ready(url: str) -> None:
        click.echo(f"leadrelay serve: API at {url} (docs at {url}/docs)", err=True)

    serve_engine(app, host, port, ready=ready)
    click.echo("leadrelay: stopping (finishing attempts in flight)", err=True)
    close_engine()
    click.echo("leadrelay: stopped", err=True)


@click.command()
@_HOST
@_PORT
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="API processes sharing the port.")
@_LOG_LEVEL
def api(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the HTTP API alone, for production (needs LEADRELAY_BROKER_URL=redis://…).

    Run as many as you like behind a load balancer, beside `leadrelay worker`
    processes and one `leadrelay scheduler`, all on the same database and Redis.
    Any ASGI server can run it too: the app factory is leadrelay.api:create_app.
    On the embedded default, `leadrelay serve` runs the API instead.
    """
    from leadrelay.api.server import serve_processes

    from .context import settings

    _require_broker("api")
    _logging(log_level)
    settings_now = settings()

    def ready(url: str) -> None:
        broker = safe_url(settings_now.broker_url)
        click.echo(f"leadrelay api: {workers} process(es) at {url} on "
                   f"{safe_url(settings_now.database_url)} with {broker}; "
                   "Ctrl-C or SIGTERM stops", err=True)

    serve_processes(host, port, workers=workers, ready=ready)
    click.echo("leadrelay: stopped", err=True)


@click.command()
@_THREADS
@_LOG_LEVEL
def worker(threads: int | None, log_level: str) -> None:
    """Consume the delivery queue (needs LEADRELAY_BROKER_URL=redis://…).

    Run as many as you like, on as many machines as you like, against the
    same database and Redis. On the embedded default, `leadrelay serve` runs
    the worker instead.
    """
    _require_broker("worker")
    _logging(log_level)
    app = engine()
    count = threads or app.settings.worker_threads
    app.start_worker(threads=count)
    _announce(f"worker: {count} threads")
    _until_stopped()


@click.command()
@_LOG_LEVEL
def scheduler(log_level: str) -> None:
    """Run the periodic jobs: the sweeper and the failure digest.

    The sweeper re-sends due and lost deliveries from the ledger every
    LEADRELAY_SWEEP_INTERVAL seconds; the digest job sends each account owner
    the failures of every window that closed (LEADRELAY_DIGEST_HOURS, through
    LEADRELAY_SMTP_URL). Production runs one beside any number of workers (needs
    LEADRELAY_BROKER_URL=redis://…); several are safe, each digest is claimed in
    the ledger and sent once. On the embedded default, `leadrelay serve` runs it.
    """
    _require_broker("scheduler")
    _logging(log_level)
    app = engine()
    app.start_scheduler()
    _announce(f"scheduler: sweeping every {app.settings.sweep_interval:g}s, "
              f"{_digest_note(app)}")
    _until_stopped()


def _digest_note(app: Leadrelay) -> str:
    smtp = app.digests.smtp
    if smtp is None:
        return "no failure digest: LEADRELAY_SMTP_URL is unset"
    return (f"failure digests of {app.settings.digest_hours:g} h windows "
            f"through {smtp.safe_url()}")


def _require_broker(verb: str) -> None:
    from .context import settings

    if settings().broker_url is None:
        raise click.UsageError(
            f"{verb} needs LEADRELAY_BROKER_URL=redis://… to share work with other processes; "
            "on the embedded default run `leadrelay serve`"
        )


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from leadrelay.engine.secrets import install_log_filter

    # Every record the service writes is redacted, the libraries' DEBUG lines included.
    install_log_filter(*logging.getLogger().handlers)
    if level != "debug":
        # Alembic narrates every start at INFO, APScheduler every job run: noise in a
        # service log.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _announce(what: str) -> None:
    app = engine()
    broker = safe_url(app.settings.broker_url) or "in-process broker"
    click.echo(f"leadrelay {what} on {safe_url(app.settings.database_url)} with {broker}; "
               "Ctrl-C or SIGTERM stops", err=True)


def _until_stopped() -> None:
    """Block until SIGINT or SIGTERM, then stop the engine gracefully."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
        click.echo("leadrelay: stopping (finishing attempts in flight)", err=True)
        close_engine()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("leadrelay: stopped", err=True)
