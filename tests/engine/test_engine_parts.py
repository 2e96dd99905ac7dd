"""The engine's parts are built on first use, once, whatever the threads asking at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.posting import Posts


def test_parts_not_used_are_not_built(app: Leadrelay, form_id: int) -> None:
    # Given a new engine on a ledger with a form, that only stores a lead (what
    # `leadrelay submit` does)
    fresh = Leadrelay(app.settings, clock=app.clock)
    try:
        fresh.submit(form_id, {"email": "a@example.com"})
        # Then no connector, broker or digest machinery was built for it
        assert not {"plugins", "broker", "dispatcher", "runner", "manage", "digests",
                    "facebook"} & set(vars(fresh))
    finally:
        fresh.close()


def test_a_part_asked_for_by_many_threads_at_once_is_built_once(
    app: Leadrelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a part whose building takes a while (as a first import does)
    built: list[Posts] = []
    real_init = Posts.__init__

    def slow_init(self: Posts, engine: Any) -> None:
        time.sleep(0.05)
        real_init(self, engine)
        built.append(self)

    monkeypatch.setattr(Posts, "__init__", slow_init)
    # When eight threads (eight first API requests) ask for it at once (on Python 3.11 the
    # standard cached_property also holds a lock; from 3.12 on only the engine's does)
    start = threading.Barrier(8)
    seen: list[Posts] = []

    def ask() -> None:
        start.wait()
        seen.append(app.posts)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Then one was built, and every thread got that one
    assert len(built) == 1
    assert len(seen) == 8 and all(p is built[0] for p in seen)
