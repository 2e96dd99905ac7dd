"""Building engines for the scenarios, feeding them leads and watching the ledger drain.

Everything here goes through the engine's public Python API (``Leadrelay``,
``manage``, ``submit``/``submit_many``, ``start_worker``) as a deployment would;
only the progress probe reads the ledger directly (a ``count(*)``, read-only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.intake import LeadIn
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings

from .servers import stop_process

ROOT = Path(__file__).resolve().parents[1]


def lead(i: int) -> dict[str, Any]:
    """The ``i``-th lead: a typical web-form lead, ~200 bytes."""
    return {
        "first_name": "Jane",
        "last_name": f"Doe-{i}",
        "email": f"jane.doe+{i}@example.com",
        "company": "ACME Corp",
        "phone": "+33 6 12 34 56 78",
        "country": "FR",
        "message": "Please call me back about the enterprise plan.",
    }


def form_body(i: int) -> bytes:
    """The body the ``http_post`` connector sends for lead ``i`` (form-encoded, unmapped)."""
    return urlencode(list(lead(i).items())).encode()


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine process needs: picklable, passed to worker processes as JSON."""

    home: str
    database_url: str
    broker_url: str | None
    secret_key: str
    plugins_file: str | None = None
    worker_threads: int = 8

    @classmethod
    def new(
        cls,
        home: Path,
        database_url: str,
        broker_url: str | None = None,
        *,
        plugins_file: Path | None = None,
        threads: int = 8,
    ) -> EngineSpec:
        """A spec with a fresh secrets key."""
        home.mkdir(parents=True, exist_ok=True)
        return cls(
            str(home),
            database_url,
            broker_url,
            SecretBox.generate_key(),
            str(plugins_file) if plugins_file else None,
            threads,
        )

    def settings(self) -> Settings:
        """The engine settings (nothing read from the environment)."""
        return Settings(
            home=Path(self.home),
            database_url=self.database_url,
            broker_url=self.broker_url,
            secret_key=self.secret_key,
            plugins_file=Path(self.plugins_file) if self.plugins_file else None,
            worker_threads=self.worker_threads,
            egress_allow=("127.0.0.1",),  # the bench's CRMs are on loopback
        )

    def build(self) -> Leadrelay:
        """A ``Leadrelay`` for this spec."""
        return Leadrelay(self.settings())


def setup_form(app: Leadrelay, *integrations: Mapping[str, Any], account: str = "Acme") -> int:
    """A fresh account and form with the given active integrations; returns the form id.

    Each integration is ``create_integration`` keywords; ``url`` alone means http_post.
    """
    acct = app.manage.create_account(account, "owner@acme.test", plan="scale")
    form = app.manage.create_form(acct.id, "Contact us")
    for n, spec in enumerate(integrations):
        kw = dict(spec)
        if "url" in kw:
            kw["config"] = {"url": kw.pop("url"), **kw.get("config", {})}
        kw.setdefault("connector", "http_post")
        kw.setdefault("name", f"CRM {n + 1}")
        app.manage.create_integration(form.id, active=True, **kw)
    return form.id


def feed(
    app: Leadrelay,
    form_ids: list[int],
    count: int,
    *,
    batch: int = 1,
    feeders: int = 1,
    start: int = 0,
    deadline: float | None = None,
) -> None:
    """Submit ``count`` leads round-robin over ``form_ids``, ``batch`` per call, from
    ``feeders`` threads at once (as an API server's request threads would)."""
    lock = threading.Lock()
    cursor = {"next": start}
    end = start + count
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            with lock:
                i = cursor["next"]
                n = min(max(batch, 1), end - i)
                cursor["next"] = i + n
            if n <= 0:
                return
            if deadline is not None and time.monotonic() > deadline:
                errors.append(TimeoutError(f"feeding stopped at lead {i - start} of {count}"))
                return
            try:
                if batch <= 1:
                    app.submit(form_ids[i % len(form_ids)], lead(i))
                else:
                    app.submit_many(
                        [LeadIn(form_ids[(i + k) % len(form_ids)], lead(i + k)) for k in range(n)]
                    )
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, name=f"feeder-{k}") for k in range(feeders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Probe:
    """Read-only progress counters on the ledger, on a connection of its own.

    Only rows created after the probe was opened are counted (a range scan on the
    primary key), so a ledger that already holds a million rows costs nothing more.
    """

    def __init__(self, database_url: str) -> None:
        from .services import psycopg_url

        self.engine = sa.create_engine(psycopg_url(database_url), poolclass=sa.NullPool)
        self.conn = self.engine.connect()
        self.first_delivery = self._scalar("select coalesce(max(id), 0) from deliveries")
        self.first_attempt = self._scalar("select coalesce(max(id), 0) from attempts")

    def _scalar(self, query: str, **params: Any) -> int:
        value = self.conn.execute(sa.text(query), params).scalar_one()
        self.conn.commit()
        return int(value)

    def delivered(self, integration_id: int | None = None) -> int:
        """New deliveries in state ``delivered`` (of one integration, or all)."""
        q = "select count(*) from deliveries where id > :d and state = 'delivered'"
        if integration_id is None:
            return self._scalar(q, d=self.first_delivery)
        return self._scalar(q + " and integration_id = :i", d=self.first_delivery, i=integration_id)

    def attempts(self) -> int:
        """New attempts, whatever their outcome."""
        return self._scalar("select count(*) from attempts where id > :a", a=self.first_attempt)

    def failed_attempts(self, integration_id: int | None = None) -> tuple[int, str]:
        """New attempts judged other than ``accepted`` (of one integration), and a reason.

        An attempt still ``sending`` has no verdict yet: its row is written before its
        request leaves, so it is not a failure.
        """
        q = (
            "select count(*), min(a.reason) from attempts a join deliveries d"
            " on d.id = a.delivery_id where a.id > :a"
            " and a.outcome not in ('accepted', 'sending')"
        )
        params: dict[str, Any] = {"a": self.first_attempt}
        if integration_id is not None:
            q += " and d.integration_id = :i"
            params["i"] = integration_id
        n, reason = self.conn.execute(sa.text(q), params).one()
        self.conn.commit()
        return int(n), reason or ""

    def wait_delivered(
        self,
        count: int,
        deadline: float,
        *,
        integration_id: int | None = None,
        poll: float = 0.1,
        check_failures: bool = True,
    ) -> int:
        """Wait until ``count`` new deliveries are delivered; returns how many are."""
        while True:
            done = self.delivered(integration_id)
            if done >= count:
                return done
            if check_failures:
                failed, reason = self.failed_attempts(integration_id)
                if failed:
                    raise RuntimeError(f"{failed} attempts failed during the run: {reason}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {count} deliveries delivered in time")
            time.sleep(poll)

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()
        self.engine.dispose()


@contextmanager
def probe(database_url: str) -> Iterator[Probe]:
    """A :class:`Probe`, closed at the end."""
    p = Probe(database_url)
    try:
        yield p
    finally:
        p.close()


def integration_ids(app: Leadrelay) -> dict[str, int]:
    """Integration ids by name."""
    from leadrelay.engine.ledger import Integration

    with app.ledger.session() as s:
        return {name: iid for iid, name in s.execute(sa.select(Integration.id, Integration.name))}


# -- worker processes -------------------------------------------------------------------


class ChildProcess:
    """A ``python -m bench.<module>`` child that says ``ready`` and then waits for a line."""

    def __init__(self, module: str, payload: dict[str, Any], *, log: Path | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.module = module
        self.stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"bench.{module}", json.dumps(payload)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=str(ROOT),
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the child printed its ``ready`` line."""
        return self._read_json(timeout)

    def say(self, line: str) -> None:
        """Send one line to the child."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line."""
        return self._read_json(timeout)

    def _read_json(self, timeout: float) -> dict[str, Any]:
        import select

        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"child {self.module} said nothing in {timeout:g}s")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(remaining, 1.0))
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"child {self.module} exited (code {self.proc.wait()})")
                return dict(json.loads(line))

    def stop(self) -> None:
        """Ask the child to stop (stdin closed), then end it if it does not."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            stop_process(self.proc)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            if hasattr(self.stderr, "close"):
                self.stderr.close()


def spec_json(spec: EngineSpec) -> dict[str, Any]:
    """A spec as the worker child reads it."""
    return asdict(spec)


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), in MiB."""
    path = f"/proc/{pid or 'self'}/status"
    with open(path) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in " + path)


def new_key() -> str:
    """A unique value (idempotency keys of raw requests)."""
    return uuid.uuid4().hex


# -- CPU accounting ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")
#: Server processes whose CPU counts toward the engine in the PostgreSQL + Redis shape.
SERVICES = frozenset({"postgres", "redis-server"})


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _service_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().strip() in SERVICES:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds used by some processes (and, optionally, PostgreSQL and Redis) since
    it was made. Server processes are shared with anything else using them: an upper bound.
    """

    def __init__(self, pids: list[int], *, services: bool = False) -> None:
        self.pids, self.services = list(pids), services
        self.start = self._snapshot()

    def _snapshot(self) -> dict[int, float]:
        pids = self.pids + (_service_pids() if self.services else [])
        return {pid: _cpu_of(pid) for pid in pids}

    def seconds(self) -> float:
        """CPU seconds since the meter was made."""
        end = self._snapshot()
        return sum(max(0.0, t - self.start.get(pid, 0.0)) for pid, t in end.items())
