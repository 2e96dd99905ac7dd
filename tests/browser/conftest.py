"""A real browser against a real API: headless Chromium driven by Selenium.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``/usr/bin/chromium``
and ``/usr/bin/chromedriver``; ``LEADRELAY_TEST_CHROMIUM`` and
``LEADRELAY_TEST_CHROMEDRIVER`` name others); nothing is downloaded. Without them the
tests skip, saying so — except under CI or ``LEADRELAY_REQUIRE_SERVICES=1``, where they
fail (``.ci/run`` installs both).

The API runs on uvicorn on a loopback socket over the test's engine; the landing page
with the embed is served by another loopback server, so the page and the API are of
different origins, as on a real site. CRMs are loopback HTTP servers.
"""

from __future__ import annotations

import html
import http.client
import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

from conftest import REQUIRE_SERVICES  # tests/conftest.py
from leadrelay.api import create_app
from leadrelay.api.server import bind, url_of
from leadrelay.engine.app import Leadrelay

CHROMIUM = os.environ.get("LEADRELAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LEADRELAY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def _no_browser(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; CI requires it", pytrace=False)
    pytest.skip(f"{message}: the browser tests are skipped (Debian: apt-get install "
                "chromium chromium-driver; LEADRELAY_REQUIRE_SERVICES=1 makes this a failure)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (each test opens its own pages)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        _no_browser(f"selenium is not installed ({exc})")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            _no_browser(f"no browser: {path} is missing")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    except Exception as exc:
        _no_browser(f"Chromium did not start ({type(exc).__name__}: {exc})")
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """The browser console's messages, gathered as the test goes."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.entries: list[dict[str, Any]] = []

    def read(self) -> list[str]:
        """Every message so far (the driver hands each one out once)."""
        self.entries.extend(self.driver.get_log("browser"))
        return [str(e["message"]) for e in self.entries]

    def text(self) -> str:
        """All messages, one a line."""
        return "\n".join(self.read())


@dataclass
class Page:
    """A landing page served on loopback: one form and the embed's script tag."""

    driver: Any
    url: str
    console: Console
    opened: float = field(default=0.0)

    def open(self) -> Page:
        self.driver.get(self.url)
        self.wait(lambda: self.js("return !!document.querySelector('[data-leadrelay-bound]')"),
                  "the embed to take over the form")
        return self

    def js(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def fill(self, **fields: str) -> None:
        for name, value in fields.items():
            self.js("document.querySelector(`[name='${arguments[0]}']`).value = arguments[1]",
                    name, value)

    def submit(self) -> float:
        """Click the submit button; when it was clicked (monotonic)."""
        started = time.monotonic()
        self.driver.find_element("css selector", "button[type=submit]").click()
        return started

    def last(self) -> Any:
        return self.js("return window.leadrelay && window.leadrelay.lastSubmission")

    def text_of(self, selector: str) -> str:
        return str(self.js("const e = document.querySelector(arguments[0]);"
                           "return e && !e.hidden ? e.textContent : ''", selector))

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}; console:\n"
                                     + self.console.text())
            time.sleep(0.05)


class _Pages(http.server.ThreadingHTTPServer):
    pages: dict[str, bytes]


def page_html(api_url: str, form_key: str, title: str = "Contact us",
              thank_you: str | None = "Thanks, we will call you back.") -> str:
    """A landing page as a site would write it: a plain form, one script tag."""
    thanks = f' data-thank-you="{html.escape(thank_you)}"' if thank_you else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<form id="contact" action="{api_url}/v1/forms/{form_key}/leads" method="post">
  <label>First name <input name="first_name"></label>
  <label>Email <input name="email"></label>
  <label>Phone <input name="phone"></label>
  <button type="submit">Send</button>
</form>
<script src="{api_url}/v1/embed.js" data-form-key="{html.escape(form_key)}"{thanks}></script>
</body></html>
"""


@pytest.fixture
def site() -> Iterator[_Pages]:
    """A loopback web server for landing pages (``site.pages[path] = html``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body = server.pages.get(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_args: Any) -> None:
            pass

    server = _Pages(("127.0.0.1", 0), Handler)
    server.pages = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api(app: Leadrelay) -> Iterator[str]:
    """The API over the test's engine, on uvicorn on a loopback socket: its URL."""
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(create_app(app), log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def open_page(browser: Any, site: _Pages, api: str) -> Callable[..., Page]:
    """``open_page(form_key, host="127.0.0.1", api_url=None)``: serve a landing page for
    the form and open it in the browser (``host="localhost"`` gives the same page another
    origin; ``api_url`` points its script tag at another server than the API)."""
    browser.get_log("browser")  # drop what earlier tests left

    def open_(form_key: str, *, host: str = "127.0.0.1", api_url: str | None = None,
              **page: Any) -> Page:
        path = f"/landing-{len(site.pages)}.html"
        site.pages[path] = page_html(api_url or api, form_key, **page).encode()
        port = site.server_address[1]
        return Page(browser, f"http://{host}:{port}{path}", Console(browser)).open()

    return open_


@pytest.fixture
def site_origin(site: _Pages) -> str:
    """The origin of the landing pages (as the browser sends it in ``Origin``)."""
    return f"http://127.0.0.1:{site.server_address[1]}"


class Crm:
    """A loopback CRM that answers ``{"id": "crm-N"}`` after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                crm.requests += 1
                number = crm.requests
                time.sleep(crm.delay)
                body = json.dumps({"id": f"crm-{number}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/leads"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[Callable[[float], Crm]]:
    """``crm(delay)``: a loopback CRM, closed at the end of the test."""
    made: list[Crm] = []

    def make(delay: float = 0.0) -> Crm:
        made.append(Crm(delay))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    """SQLite only: these tests are about the page, and every backend is tested below it."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


class LossyFront:
    """A loopback reverse proxy in front of the API that loses answers to lead posts.

    Every request reaches the API; ``plan`` says, for each lead post in turn, what
    becomes of the API's answer: ``"pass"``, ``"drop"`` (a ``502`` the page may not read:
    its fetch fails as on a network error) or ``"hold"`` (kept past the embed's timeout,
    then dropped). Posts beyond the plan pass.
    """

    def __init__(self, api_url: str, plan: list[str], hold: float = 7.5) -> None:
        self.plan = list(plan)
        self.posts = 0
        target = urlsplit(api_url)
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                fate = "pass"
                if self.command == "POST":
                    front.posts += 1
                    fate = front.plan.pop(0) if front.plan else "pass"
                if fate == "hold":
                    time.sleep(hold)
                if fate != "pass":
                    # A gateway error without CORS headers: the page cannot read it, its
                    # fetch fails as on a network error. (A connection simply closed is
                    # retried by the browser itself, the same request again.)
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_OPTIONS = _forward

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lossy_front(api: str) -> Iterator[Callable[[list[str]], LossyFront]]:
    """``lossy_front(plan)``: a :class:`LossyFront` before the test's API."""
    made: list[LossyFront] = []

    def make(plan: list[str]) -> LossyFront:
        made.append(LossyFront(api, plan))
        return made[-1]

    try:
        yield make
    finally:
        for front in made:
            front.close()
