"""The engine behind a CLI invocation: built on first use, closed when the command ends.

Verbs that never touch the ledger (``--help``, ``plugins``) never open it, so
they stay fast and work without a database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

if TYPE_CHECKING:
    from leadrelay.engine.app import Leadrelay
    from leadrelay.engine.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

_APP = "leadrelay.app"


def settings() -> Settings:
    """The deployment settings from the ``LEADRELAY_*`` environment."""
    from leadrelay.engine.settings import Settings

    return Settings.from_env()


def engine() -> Leadrelay:
    """The engine of the running command, built from the environment on first use."""
    from leadrelay.engine.app import Leadrelay

    root = click.get_current_context().find_root()
    app: Leadrelay | None = root.meta.get(_APP)
    if app is None:
        app = Leadrelay(settings())
        root.meta[_APP] = app
        root.call_on_close(close_engine)
    return app


def close_engine() -> None:
    """Stop and close the command's engine, if one was built (idempotent)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    app = ctx.find_root().meta.pop(_APP, None)
    if app is not None:
        app.close()


def pass_engine(f: Callable[Concatenate[Leadrelay, P], R]) -> Callable[P, R]:
    """Decorate a verb so it receives the engine as its first argument."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return f(engine(), *args, **kwargs)

    return wrapper


def safe_url(url: str | None) -> str:
    """A database or broker URL fit to print: any password replaced by ``***``."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
