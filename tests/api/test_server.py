"""The API on a real uvicorn over a loopback socket: ``leadrelay serve`` and ``leadrelay api``
as their own processes, end to end against a loopback CRM."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.settings import Settings

from .conftest import LEAD


class Process:
    """A ``leadrelay`` command running as its own process, its standard error collected."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "leadrelay.cli", *args], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def url(self, timeout: float = 30) -> str:
        """The URL the process says its API answers on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", self.stderr)
            if found:
                return found.group(1)
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"no URL printed:\n{self.stderr}")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, and the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"did not stop within {timeout:g}s of SIGTERM:\n{self.stderr}")
        self._reader.join(5)
        return code


@pytest.fixture
def prepared(environ: dict[str, str]) -> Iterator[Callable[[str], tuple[str, int, str]]]:
    """``prepare(crm_url)``: an account key, a form id and its public key, made through an
    engine on the same ledger (as an operator would with the CLI)."""
    engines: list[Leadrelay] = []

    def prepare(crm_url: str) -> tuple[str, int, str]:
        engine = Leadrelay(Settings.from_env(environ))
        engines.append(engine)
        account = engine.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = engine.manage.create_form(account.id, "Contact",
                                         allowed_origins=["https://acme.example"])
        engine.manage.create_integration(form.id, name="CRM", connector="http_post",
                                         config={"url": crm_url}, active=True)
        return engine.keys.create(account.id).secret, form.id, form.public_key

    try:
        yield prepare
    finally:
        for engine in engines:
            engine.close()


def wait_until(check: Callable[[], bool], what: str, process: Process,
               timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            process.stop()
            pytest.fail(f"timed out waiting for {what}:\n{process.stderr}")
        time.sleep(0.1)


def test_serve_accepts_a_form_post_and_delivers_it(
    environ: dict[str, str], prepared: Callable[[str], tuple[str, int, str]],
    httpserver: HTTPServer,
) -> None:
    # Given a CRM, a form with an integration to it, and `leadrelay serve` on port 0
    httpserver.expect_request("/leads").respond_with_json({"id": "crm-77"})
    key, _, form_key = prepared(httpserver.url_for("/leads"))
    serve = Process(["serve", "--port", "0", "--threads", "2"], environ)
    try:
        url = serve.url()
        with httpx.Client(base_url=url, timeout=10) as http:
            # When a page posts a lead over a real socket
            answer = http.post(f"/v1/forms/{form_key}/leads", json=LEAD,
                               headers={"Origin": "https://acme.example"})
            assert answer.status_code == 202, answer.text
            delivery = answer.json()["deliveries"][0]["delivery_id"]
            auth = {"Authorization": f"Bearer {key}"}

            # Then the worker of the same process delivers it
            def delivered() -> bool:
                got = http.get(f"/v1/deliveries/{delivery}", headers=auth).json()
                return bool(got["delivery"]["state"] == "delivered")

            wait_until(delivered, "the delivery", serve)
            assert len(httpserver.log) == 1
            # and the service reports itself healthy, with its figures
            assert http.get("/healthz").json()["status"] == "ok"
            metrics = http.get("/metrics").text
            assert 'leadrelay_leads_received_total{source="form"} 1.0' in metrics
            assert 'leadrelay_deliveries{outcome="accepted",state="delivered"} 1.0' in metrics
            assert re.search(r'leadrelay_attempt_duration_seconds_count\{connector="http_post",'
                             r'lane="worker",outcome="accepted"\} 1\.0', metrics), metrics
            assert http.get("/docs").status_code == 200
    finally:
        code = serve.stop()
    assert code == 0, serve.stderr
    assert "leadrelay serve: 2 worker threads and the scheduler" in serve.stderr
    assert "leadrelay: stopped" in serve.stderr and "Traceback" not in serve.stderr
    # The access log names routes, never the form's key, the API key or the lead
    access = [line for line in serve.lines if "leadrelay.api.access" in line]
    assert any("POST /v1/forms/{form_key}/leads" in line and " 202 " in line
               for line in access), access
    for secret in (form_key, key, LEAD["email"]):
        assert secret not in serve.stderr


def test_api_runs_several_processes_on_one_port(
    environ: dict[str, str], prepared: Callable[[str], tuple[str, int, str]],
    redis_url: str, httpserver: HTTPServer,
) -> None:
    # Given the production shape: a broker, and `leadrelay api --workers 2`
    key, form_id, _ = prepared(httpserver.url_for("/leads"))
    environ["LEADRELAY_BROKER_URL"] = redis_url
    api = Process(["api", "--port", "0", "--workers", "2"], environ)
    try:
        url = api.url()
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_until(lambda: _healthy(http), "the API to answer", api)
            # When an external system posts a batch
            answer = http.post(f"/v1/forms/{form_id}/leads",
                               headers={"Authorization": f"Bearer {key}"},
                               json={"leads": [{"fields": LEAD}, {"fields": LEAD}]})
            # Then it is stored and queued for the workers
            assert answer.status_code == 202, answer.text
            assert [e["deliveries"][0]["state"] for e in answer.json()["leads"]] == [
                "queued", "queued"]
    finally:
        code = api.stop()
    assert code == 0, api.stderr
    assert "leadrelay api: 2 process(es)" in api.stderr and "Traceback" not in api.stderr


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_api_needs_a_broker(environ: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "leadrelay.cli", "api", "--port", "0"],
                          env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "LEADRELAY_BROKER_URL" in done.stderr and "leadrelay serve" in done.stderr
