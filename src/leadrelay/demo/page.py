"""The demo's form behind a landing page: what ``leadrelay demo --page`` sets up.

The story's form and three integrations (``story.py``), made for a browser: the CRM
that accepts answers in real time (inside the visitor's submission, 2 s budget), the
other two are retried in the background; the form takes pages of the API's own origin
(by its address and as ``localhost``) and requires an email, so a field error can be
seen too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .story import ACCEPTS, DemoStory

#: The real-time budget of the demo's accepting CRM.
DEMO_BUDGET = 2.0


def page_origins(url: str) -> list[str]:
    """The origins a browser may open the demo page from: ``url``'s, and ``localhost``."""
    parts = urlsplit(url)
    origins = [f"{parts.scheme}://{parts.netloc}"]
    if parts.hostname in ("127.0.0.1", "::1") and parts.port is not None:
        origins.append(f"{parts.scheme}://localhost:{parts.port}")
    return origins


def set_up_page(story: DemoStory, url: str) -> str:
    """Set the story's form up for the landing page served at ``url``; start the worker
    and the sweeper. Returns the form's public key."""
    ids = story.set_up()
    manage = story.app.manage
    form = manage.update_form(story.form_id, allowed_origins=page_origins(url),
                              required_fields=["email"])
    manage.update_integration(ids[ACCEPTS], realtime=True, realtime_budget=DEMO_BUDGET)
    story.app.start_worker(threads=story.threads)
    story.app.start_sweeper()
    return form.public_key
