"""Plans as configuration: a plan's cap on active integrations, and the plans file.

A plan caps how many integrations an account may have *active*, or is unlimited
(``None``). Plans are made with ``leadrelay plans create`` / ``POST /v1/plans``, or
declared in a TOML file (``LEADRELAY_PLANS_FILE``, else ``plans.toml`` in
``LEADRELAY_HOME`` when there is one)::

    [plans]
    free = 1
    starter = 5
    enterprise = "unlimited"

The file's plans are created, or given the file's limit, when the engine next reads
plans; plans the file does not name are left as they are.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput, ConfigError

#: Plans every new ledger starts with (name → max active integrations).
DEFAULT_PLANS: dict[str, int | None] = {"free": 1, "starter": 5, "growth": 25, "scale": 250}
#: The word for a plan without a cap, in the file, the CLI and the API.
UNLIMITED = "unlimited"
#: The largest cap a plan may have.
MAX_LIMIT = 1_000_000
#: The environment variable naming the plans file.
PLANS_FILE_ENV = "LEADRELAY_PLANS_FILE"


def check_limit(value: Any, field: str = "max_active_integrations") -> int | None:
    """A plan's cap: a whole number from 0, or ``None`` / ``"unlimited"`` for no cap."""
    if value is None or value == UNLIMITED:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LIMIT:
        raise BadInput(f"{field}: a whole number from 0 to {MAX_LIMIT}, or "
                       f"{UNLIMITED!r}; got {value!r}", field=field)
    return value


def check_plan_name(value: Any, field: str = "name") -> str:
    """A plan's name: 1 to 64 characters, no surrounding spaces."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{field}: required", field=field)
    if len(value) > 64 or value != value.strip():
        raise BadInput(f"{field}: 1 to 64 characters without surrounding spaces", field=field)
    return value


def describe_limit(limit: int | None) -> int | str:
    """A cap as shown: the number, or ``unlimited``."""
    return UNLIMITED if limit is None else limit


@dataclass(frozen=True)
class PlansFile:
    """The plans a file declares (name → cap, ``None``: unlimited)."""

    path: Path
    plans: Mapping[str, int | None]

    @classmethod
    def load(cls, path: Path) -> PlansFile:
        """Read and check ``path``; :class:`ConfigError` naming the file and the key."""
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{PLANS_FILE_ENV}: cannot read {path}: {exc.strerror}",
                              field=PLANS_FILE_ENV) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not TOML: {exc}", field=PLANS_FILE_ENV) from None
        unknown = sorted(set(data) - {"plans"})
        if unknown:
            raise ConfigError(f"{path}: {unknown[0]}: unknown key (only [plans])",
                              field=unknown[0])
        table = data.get("plans", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: plans: must be a table of name = limit",
                              field="plans")
        plans: dict[str, int | None] = {}
        for name, limit in table.items():
            try:
                check_plan_name(name, f"plans.{name}")
                plans[name] = check_limit(limit, f"plans.{name}")
            except BadInput as exc:
                raise ConfigError(f"{path}: {exc}", field=exc.field) from None
        return cls(path, plans)


def plans_file_path(home: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """The plans file of this deployment: ``LEADRELAY_PLANS_FILE`` (which must exist),
    else ``plans.toml`` in ``home`` if there is one, else none."""
    env = os.environ if env is None else env
    named = env.get(PLANS_FILE_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{PLANS_FILE_ENV}: no file at {path}", field=PLANS_FILE_ENV)
        return path
    default = home / "plans.toml"
    return default if default.is_file() else None


class PlansSource:
    """The plans file, re-read only when it changed since it was last applied."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._applied: tuple[float, int] | None = None

    def changed(self) -> PlansFile | None:
        """The file's plans if it changed since :meth:`applied` was last called."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        if self._applied == (st.st_mtime, st.st_size):
            return None
        return PlansFile.load(self.path)

    def applied(self) -> None:
        """Note that the file as it is now has been applied."""
        if self.path is not None:
            st = self.path.stat()
            self._applied = (st.st_mtime, st.st_size)
