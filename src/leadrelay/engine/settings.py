"""Deployment settings: ``LEADRELAY_*`` environment variables and ``plugins.toml``.

The embedded default needs none of them: a SQLite file and a generated secrets
key under ``LEADRELAY_HOME`` (``./.leadrelay``), and the in-process broker.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .limits import DEFAULT_LEASE_SECONDS, LEASE_MARGIN, MAX_ATTEMPT_SECONDS, MIN_LEASE_SECONDS

if TYPE_CHECKING:
    from .egress import EgressPolicy

#: Top-level tables ``plugins.toml`` may have.
PLUGINS_TOML_TABLES = frozenset({"connectors", "proxies"})
#: ``LEADRELAY_SWEEP_INTERVAL``'s bounds, in seconds: more often hammers the ledger for
#: nothing, less often leaves a lost delivery waiting for an hour.
SWEEP_INTERVAL_RANGE = (0.1, 3600.0)
#: ``LEADRELAY_WORKER_THREADS``'s bounds (those of ``--threads``).
WORKER_THREADS_RANGE = (1, 256)
#: The longest ``LEADRELAY_LEASE_SECONDS``: a delivery whose worker died waits that long.
MAX_LEASE_SECONDS = 86_400.0


@dataclass(frozen=True)
class PluginsFile:
    """The parsed ``plugins.toml``: per-connector settings and static-IP proxy pools."""

    connectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    proxies: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> PluginsFile:
        """Read ``path``; a missing default file means "all defaults"."""
        if path is None or not path.exists():
            return cls()
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", field=str(path)) from None
        for key in data:
            if key not in PLUGINS_TOML_TABLES:
                known = ", ".join(sorted(PLUGINS_TOML_TABLES))
                raise ConfigError(f"{path}: unknown table [{key}] (known: {known})", field=key)
        connectors = data.get("connectors", {})
        for name, table in connectors.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{path}: [connectors.{name}] must be a table", field=f"connectors.{name}"
                )
            enabled = table.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(
                    f"{path}: connectors.{name}.enabled must be true or false",
                    field=f"connectors.{name}.enabled",
                )
        return cls(connectors=connectors, proxies=data.get("proxies", {}), path=path)


@dataclass(frozen=True)
class Settings:
    """Everything a leadrelay process needs to know about its deployment."""

    home: Path
    database_url: str
    broker_url: str | None
    secret_key: str
    plugins_file: Path | None
    #: Seconds between two passes of the sweeper.
    sweep_interval: float = 1.0
    #: Seconds a claimed delivery may be in flight before the sweeper reclaims it; from
    #: the environment, at least :data:`~.limits.MIN_LEASE_SECONDS` (see :mod:`.limits`).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    worker_threads: int = 8
    #: The failure digest's SMTP server (see :mod:`.digest.smtp`); unset: no digest is sent.
    smtp_url: str | None = None
    #: Hours each failure digest covers, unless an account sets its own.
    digest_hours: float = 6.0
    #: Tries of a digest the SMTP server refuses before it is given up.
    digest_attempts: int = 3
    #: The digest's sender address.
    digest_from: str = "leadrelay@localhost.localdomain"
    #: The HTTP API's base URL as its users reach it, for the digest's links.
    public_url: str | None = None
    #: Addresses and networks of refused ranges (loopback, private...) integrations may
    #: still reach (``LEADRELAY_EGRESS_ALLOW``; see :mod:`.egress`). Empty: public only;
    #: None: what ``LEADRELAY_EGRESS_ALLOW`` of this process's environment says.
    egress_allow: tuple[str, ...] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``LEADRELAY_*`` variables, with the embedded defaults for what is unset."""
        env = os.environ if env is None else env
        home = Path(env.get("LEADRELAY_HOME", ".leadrelay")).resolve()
        database_url = env.get("LEADRELAY_DATABASE_URL") or f"sqlite:///{home / 'leadrelay.db'}"
        broker_url = env.get("LEADRELAY_BROKER_URL") or None
        if broker_url is not None and not broker_url.startswith(("redis://", "rediss://")):
            raise ConfigError(
                "LEADRELAY_BROKER_URL must be a redis:// URL (unset it for the in-process broker)",
                field="LEADRELAY_BROKER_URL",
            )
        secret_key = env.get("LEADRELAY_SECRET_KEY")
        if not secret_key and not database_url.startswith("sqlite"):
            # A shared database read by several machines needs one shared key; a
            # key generated per machine would make every other machine's secrets
            # unreadable.
            raise ConfigError(
                "LEADRELAY_SECRET_KEY is required with a shared database "
                "(generate one with: leadrelay secret-key)",
                field="LEADRELAY_SECRET_KEY",
            )
        plugins = env.get("LEADRELAY_PLUGINS_FILE")
        plugins_file = Path(plugins) if plugins else Path("plugins.toml")
        if plugins and not plugins_file.exists():
            raise ConfigError(
                f"LEADRELAY_PLUGINS_FILE: {plugins} does not exist", field="LEADRELAY_PLUGINS_FILE"
            )
        return cls(
            home=home,
            database_url=database_url,
            broker_url=broker_url,
            secret_key=secret_key or _embedded_key(home),
            plugins_file=plugins_file,
            sweep_interval=_number(env, "LEADRELAY_SWEEP_INTERVAL", 1.0,
                                   SWEEP_INTERVAL_RANGE, unit="seconds"),
            lease_seconds=_lease(env),
            worker_threads=_whole(env, "LEADRELAY_WORKER_THREADS", 8, WORKER_THREADS_RANGE),
            egress_allow=_egress_allow(env),
            **_digest_settings(env),
        )

    def egress(self) -> EgressPolicy:
        """The egress policy of :attr:`egress_allow`."""
        from .egress import EgressPolicy, default_policy

        if self.egress_allow is None:
            return default_policy()
        return EgressPolicy(self.egress_allow)

    def plugins(self) -> PluginsFile:
        """The parsed ``plugins.toml``."""
        return PluginsFile.load(self.plugins_file)


def _number(env: Mapping[str, str], name: str, default: float,
            bounds: tuple[float, float], *, unit: str) -> float:
    """A finite number of ``unit`` within ``bounds`` (inclusive); ``default`` when unset.

    ``nan``, ``inf`` and anything outside the bounds are a :class:`ConfigError` naming
    ``name``, as is text that is no number.
    """
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit}, got {_shown(raw)}",
                          field=name) from None
    low, high = bounds
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number of {unit} from {low:g} to {high:g}, "
                          f"got {_shown(raw)}", field=name)
    return value


def _whole(env: Mapping[str, str], name: str, default: int, bounds: tuple[int, int]) -> int:
    """A whole number within ``bounds`` (inclusive); ``default`` when unset."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    low, high = bounds
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, "
                          f"got {_shown(raw)}", field=name)
    return int(text)


def _shown(raw: str) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _egress_allow(env: Mapping[str, str]) -> tuple[str, ...]:
    """``LEADRELAY_EGRESS_ALLOW``, each entry checked (a bad one named)."""
    if not env.get("LEADRELAY_EGRESS_ALLOW", "").strip():
        return ()  # the usual case, without loading the egress machinery (requests, sockets)
    from .egress import ENV_VAR, EgressPolicy

    policy = EgressPolicy.parse(env.get(ENV_VAR))
    return tuple(str(n) for n in policy.allow)


def _digest_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The failure digest's variables, each checked (a bad one names itself)."""
    from .digest.settings import (
        DEFAULT_SENDER,
        check_attempts,
        check_hours,
        check_public_url,
        check_sender,
        check_smtp_url,
    )

    return {
        "smtp_url": check_smtp_url(env.get("LEADRELAY_SMTP_URL") or None),
        "digest_hours": check_hours(env.get("LEADRELAY_DIGEST_HOURS") or "6",
                                    "LEADRELAY_DIGEST_HOURS"),
        "digest_attempts": check_attempts(env.get("LEADRELAY_DIGEST_ATTEMPTS") or "3"),
        "digest_from": check_sender(env.get("LEADRELAY_DIGEST_FROM") or DEFAULT_SENDER),
        "public_url": check_public_url(env.get("LEADRELAY_PUBLIC_URL") or None),
    }


def _lease(env: Mapping[str, str]) -> float:
    """``LEADRELAY_LEASE_SECONDS``: long enough that no claim is taken back from a batch
    still sending (see :mod:`.limits`: no renewal is needed then)."""
    name = "LEADRELAY_LEASE_SECONDS"
    try:
        return _number(env, name, DEFAULT_LEASE_SECONDS, (MIN_LEASE_SECONDS, MAX_LEASE_SECONDS),
                       unit="seconds")
    except ConfigError:
        raise ConfigError(
            f"{name} must be a finite number of seconds, at least {MIN_LEASE_SECONDS:g}: a "
            f"batch starts attempts until half its lease and an attempt may last "
            f"{MAX_ATTEMPT_SECONDS:g} s, plus {LEASE_MARGIN:g} s to record; and at most "
            f"{MAX_LEASE_SECONDS:g} (a delivery whose worker died waits that long); got "
            f"{_shown(env.get(name, ''))}",
            field=name,
        ) from None


def _embedded_key(home: Path) -> str:
    """The embedded deployment's secrets key: generated once, kept beside the database."""
    path = home / "secret.key"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    from .secrets import SecretBox

    key = SecretBox.generate_key()
    # Written with owner-only permissions: this key unlocks every stored secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
