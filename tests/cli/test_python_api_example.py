"""The Python API example of docs/operating.md ("Many leads from a script") runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from leadrelay.engine.app import Leadrelay

from .helpers import Cli, add_integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def example() -> str:
    """The Python block under the ``python-api-example`` marker."""
    after = DOC.read_text().split("<!-- python-api-example -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_scripted_feed_stores_every_lead_with_its_deliveries(
    cli: Cli, form: int, engine: Leadrelay, tmp_path: Path
) -> None:
    # Given the docs' form 1 with an active integration
    assert form == 1
    add_integration(cli, form, "https://crm.example/leads")
    script = tmp_path / "feed.py"
    script.write_text(example())
    # When the example runs as a script with the CLI's settings
    ran = subprocess.run([sys.executable, str(script)], env=cli.environ(),
                         capture_output=True, text=True, timeout=300)
    # Then it printed each batch, and every lead is stored with its delivery, its
    # external id kept
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "5000 leads stored, the last lead 5000"
    leads = engine.deliveries()
    assert len(leads) == 5000
    assert engine.lead(leads[0]["lead_id"])["external_id"] == "row-4999"
