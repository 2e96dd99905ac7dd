"""The periodic jobs of a leadrelay process, run by APScheduler: the sweeper and the digest.

Why APScheduler rather than a Dramatiq periodic task: the jobs are not deliveries. A
periodic *message* needs something that sends it on time anyway (a scheduler process),
then costs a broker round trip and a worker thread that deliveries need, and on the
embedded default there is no second process to send it. The ledger already makes the
jobs safe to run in several places at once (claims, conditional updates), so the
schedule can live in each process that runs it.

Each job runs at most once at a time (``max_instances=1``), with runs missed while it
was busy folded into one (``coalesce``): as the sweeper's own loop did, a slow sweep
delays the next, it never stacks. Each job has its own thread, so an SMTP server that
hangs for its whole timeout does not hold the sweeper back, nor the workers. A job's
error is logged and the job keeps its schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

#: Seconds between two digest runs: a window's digest leaves within a minute of its end.
DIGEST_EVERY = 60.0


class _NoSkipNotices(logging.Filter):
    """APScheduler warns on every run skipped because the previous one is still going;
    that is the intended behaviour here (see the module), not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_SCHEDULER_LOG = logging.getLogger("leadrelay.engine.scheduler.apscheduler")
_SCHEDULER_LOG.addFilter(_NoSkipNotices())


class Scheduler:
    """Named jobs, each run every so many seconds in a thread of its own."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            logger=_SCHEDULER_LOG,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._jobs: list[str] = []

    def every(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        """Run ``job`` now and then every ``seconds``; its errors are logged, not raised."""

        def run() -> None:
            try:
                job()
            except Exception:  # a database hiccup must not end the schedule
                log.exception("%s failed", name)

        self._jobs.append(name)
        # One executor per job: a job stuck in I/O never delays another.
        self._scheduler.add_executor(ThreadPoolExecutor(max_workers=1), alias=name)
        self._scheduler.add_job(run, IntervalTrigger(seconds=seconds, timezone=UTC), id=name,
                                name=name, executor=name, next_run_time=datetime.now(UTC))

    @property
    def jobs(self) -> list[str]:
        """The names of the jobs, in the order they were added."""
        return list(self._jobs)

    @property
    def running(self) -> bool:
        """Whether it was started and not stopped."""
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start running the jobs in background threads."""
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling and wait for the runs in progress to end."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
