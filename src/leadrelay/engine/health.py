"""Is this process able to work? The database and the broker, each reached or not.

``GET /healthz`` answers from here: a load balancer takes an API process out of
rotation when either is unreachable, and the answer names which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from .app import Leadrelay


def check(app: Leadrelay) -> dict[str, str | None]:
    """``{"database": problem, "broker": problem}``, each ``None`` when reachable.

    A problem is one line naming the error's kind, never a URL or a password.
    """
    return {"database": _database(app), "broker": _broker(app)}


def _database(app: Leadrelay) -> str | None:
    try:
        with app.ledger.engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # whatever the driver raises, the answer is "unreachable"
        return _line(exc)
    return None


def _broker(app: Leadrelay) -> str | None:
    client = getattr(app.broker, "client", None)  # the Redis broker's; none in-process
    if client is None:
        return None
    try:
        client.ping()
    except Exception as exc:
        return _line(exc)
    return None


def _line(exc: Exception) -> str:
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    # Drivers' messages name host and port, never the password of the URL.
    return f"{type(cause).__name__}: {first}"[:300]
