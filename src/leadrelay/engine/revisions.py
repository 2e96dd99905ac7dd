"""Config history: a revision of an integration per change, and the diff of two.

Each change (settings, expectations, retry policy, real-time flag and budget, static-IP
pool, rate limit, activation, deletion) bumps ``Integration.revision`` and stores the settings it
left behind, with who made it and when. Attempts record the revision they were sent
with (``Attempt.revision``), so an attempt can be read against the settings it used.

Secrets are stored as keyed fingerprints, never as values or ciphertext: a diff says a
secret *changed* or is *unchanged*, and shows neither value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import NotFound
from .ledger import Integration, IntegrationRevision
from .secrets import MASK, SecretBox, is_fingerprint, mask_fingerprints

#: The change of a revision stored for an integration older than its history.
BASELINE = "baseline"
#: The settings a revision keeps, in the order a diff lists them.
FIELDS = ("name", "connector", "config", "expectations", "retry", "realtime",
          "realtime_budget", "static_ip_pool", "rate_limit", "active", "archived")


def snapshot(integration: Integration, box: SecretBox) -> dict[str, Any]:
    """The integration's settings as a revision stores them (secrets fingerprinted)."""
    return {
        "name": integration.name,
        "connector": integration.connector,
        "config": box.fingerprinted(integration.config),
        "expectations": integration.expectations,
        "retry": integration.retry_policy,
        "realtime": integration.realtime,
        "realtime_budget": integration.realtime_budget,
        "static_ip_pool": integration.static_ip_pool,
        "rate_limit": integration.rate_limit,
        "active": integration.active,
        "archived": integration.archived_at is not None,
    }


def shown(settings: dict[str, Any]) -> dict[str, Any]:
    """Stored settings as shown to people: every secret masked."""
    return {k: mask_fingerprints(v) for k, v in settings.items()}


def new_revision(
    s: Session, integration: Integration, change: str, *, actor: str, at: datetime,
    box: SecretBox, bump: bool = True, previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bump the integration's revision (unless ``bump``: its first) and store it; the
    settings stored.

    An integration made before history was kept (ledger revision 0007) has no stored
    revision: its first change stores ``previous`` (its settings before the change) as
    a ``baseline`` of its current revision, by actor ``unknown``, so the change can be
    diffed too.
    """
    if bump and previous is not None and s.scalar(
        select(IntegrationRevision.id)
        .where(IntegrationRevision.integration_id == integration.id).limit(1)
    ) is None:
        s.add(IntegrationRevision(integration_id=integration.id, revision=integration.revision,
                                  change=BASELINE, actor="unknown", created_at=at,
                                  settings=previous))
    if bump:
        integration.revision += 1
    integration.updated_at = at
    settings = snapshot(integration, box)
    s.add(IntegrationRevision(integration_id=integration.id, revision=integration.revision,
                              change=change, actor=actor, created_at=at, settings=settings))
    return settings


def describe_revision(r: IntegrationRevision) -> dict[str, Any]:
    """One revision as shown (API, CLI)."""
    return {
        "revision": r.revision,
        "change": r.change,
        "actor": r.actor,
        "at": r.created_at.isoformat(),
        "settings": shown(r.settings),
    }


def revisions(s: Session, integration_id: int) -> list[IntegrationRevision]:
    """Every stored revision of one integration, oldest first."""
    return list(s.scalars(
        select(IntegrationRevision)
        .where(IntegrationRevision.integration_id == integration_id)
        .order_by(IntegrationRevision.revision)
    ))


def pick(history: list[IntegrationRevision], number: Any, integration_id: int,
         field: str) -> IntegrationRevision:
    """The revision ``number`` of ``history``; :class:`NotFound` naming ``field``."""
    for r in history:
        if r.revision == number and not isinstance(number, bool):
            return r
    known = ", ".join(str(r.revision) for r in history) or "none"
    raise NotFound(f"{field}: integration {integration_id} has no revision {number!r} "
                   f"(revisions: {known})", field=field)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed from ``old`` to ``new`` settings: one entry per changed value, by
    path (``config.auth.token``). A secret's entry says ``changed`` with both sides
    masked; an unchanged secret is not listed."""
    out: list[dict[str, Any]] = []
    for key in FIELDS:
        _diff(key, old.get(key), new.get(key), out)
    return out


def unchanged_secrets(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Paths of the secrets present and equal on both sides."""
    found: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if is_fingerprint(a) and is_fingerprint(b):
            if a == b:
                found.append(path)
        elif isinstance(a, dict) and isinstance(b, dict):
            for k in a.keys() & b.keys():
                walk(f"{path}.{k}", a[k], b[k])

    walk("config", old.get("config"), new.get("config"))
    return sorted(found)


def _diff(path: str, a: Any, b: Any, out: list[dict[str, Any]]) -> None:
    if is_fingerprint(a) or is_fingerprint(b):
        if a != b:
            out.append({"path": path, "secret": True, "change": "changed",
                        "before": MASK if a is not None else None,
                        "after": MASK if b is not None else None})
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            _diff(f"{path}.{k}", a.get(k), b.get(k), out)
        return
    if a != b:
        out.append({"path": path, "before": mask_fingerprints(a),
                    "after": mask_fingerprints(b)})
