"""leadrelay's HTTP API: a thin FastAPI layer over :class:`~leadrelay.engine.app.Leadrelay`.

One router module per resource (:mod:`.routes`), the request context in :mod:`.deps`,
the shapes in :mod:`.models`, and the engine's errors mapped to HTTP once, in
:mod:`.errors`.
"""

from .app import create_app

__all__ = ["create_app"]
