"""Capability flags: what a connector can do, so the contract skips what it can't.

The idea is SQLAlchemy's dialect ``Requirements``: each check of the contract
names the capabilities it needs (``@requires.throttling``); a connector that
cannot do something says so once, in its adoption file, and those checks are
reported as skipped with the reason instead of failing::

    class TestWebToLeadContract(ConnectorContract):
        requirements = Requirements(rejection=False)  # the servlet always answers 200

Every flag defaults to True: opting out is a visible, reviewed decision.
Whether the idempotency key is checked follows the connector's own
``supports_idempotency_key`` class attribute, not a flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["REQUIRES_ATTRIBUTE", "Requirements", "requires"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The attribute a ``@requires.flag`` decorator sets on a test function.
REQUIRES_ATTRIBUTE = "__leadrelay_requires__"


@dataclass(frozen=True)
class Requirements:
    """What a connector can do. A False flag skips the checks that need it."""

    secrets: bool = True
    """The config carries at least one secret (a ``SecretStr`` field) in the sample
    config, so redaction is checked. Opt out only if the connector has no secret."""
    rejection: bool = True
    """The CRM can say "no" in a way the connector tells apart from success (a
    rejection body). Web-to-lead servlets that answer 200 to everything cannot."""
    server_errors: bool = True
    """A 5xx answer is transient (retried), not judged by the expectations."""
    throttling: bool = True
    """A 429 answer is throttled and waits for ``Retry-After``."""
    retry_after: bool = True
    """``Retry-After`` on a 429 or 5xx sets the next attempt's time."""
    timeouts: bool = True
    """A CRM that never answers is cut off by the transport's read timeout."""
    connection_errors: bool = True
    """A refused or dropped connection is transient."""
    deterministic_render: bool = True
    """``render(lead)`` gives the same request every time, and that request is what
    is sent. Opt out for connectors that add a nonce or a timestamp of their own."""

    @classmethod
    def flags(cls) -> tuple[str, ...]:
        """The names of every flag."""
        return tuple(f.name for f in dataclasses.fields(cls))


class _Requires:
    """``@requires.throttling`` marks a contract check as needing that capability."""

    def __getattr__(self, flag: str) -> Callable[[_F], _F]:
        if flag.startswith("__") or flag not in Requirements.flags():
            raise AttributeError(f"no capability flag {flag!r} (known: "
                                 f"{', '.join(Requirements.flags())})")

        def mark(func: _F) -> _F:
            needed = set(getattr(func, REQUIRES_ATTRIBUTE, ())) | {flag}
            setattr(func, REQUIRES_ATTRIBUTE, frozenset(needed))
            return func

        return mark


#: Decorators for contract checks: ``@requires.server_errors``.
requires = _Requires()
