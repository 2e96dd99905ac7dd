"""``leadrelay demo --page``: a newcomer opens the landing page, submits, and the console
shows what happened at each demo CRM."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .conftest import Console, Page


def test_the_demo_page_submits_and_the_console_shows_each_crm(
    browser: Any, tmp_path: Path
) -> None:
    # Given `leadrelay demo --page` running on a free port
    process = subprocess.Popen(
        [sys.executable, "-m", "leadrelay.cli", "demo", "--page", "--port", "0",
         "--home", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Landing page: (\S+/demo)", "".join(lines))):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        browser.get_log("browser")

        # When the newcomer opens the page and sends the pre-filled form
        page = Page(browser, found.group(1), Console(browser)).open()
        page.submit()

        # Then the thank-you shows, the real-time CRM's result is in the console at once
        page.wait(lambda: page.text_of(".leadrelay-thank-you"), "the thank-you")
        sub = page.last()
        states = {d["integration"]: d["state"] for d in sub["deliveries"]}
        assert states == {"Pipedrive-like": "delivered", "Odoo-like": "queued",
                          "Down CRM": "queued"}
        assert "Pipedrive-like [http_post]: delivered" in page.console.text()
        # and once the retries are over, the failures with their reasons
        settled = page.wait(lambda: (s := page.last())["settled"] and s, "the retries",
                            timeout=40)
        assert {d["integration"]: (d["state"], d["attempts"]) for d in
                settled["deliveries"]} == {"Pipedrive-like": ("delivered", 1),
                                           "Odoo-like": ("not_integrated", 3),
                                           "Down CRM": ("not_integrated", 3)}
        assert "Odoo-like [http_post]: not_integrated · outcome rejected" in (
            page.console.text())
    finally:
        process.terminate()
        assert process.wait(20) == 0, "".join(lines)
        reader.join(5)
