"""The failure digest of an account: its preview, its history, and who gets it how often.

An account key sees its own account's digest; an operator key any account's. Another
account answers 404, like a missing one. The preview is what ``leadrelay digest
--preview --account ID`` prints: nothing is sent, nothing recorded.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from ..deps import Actor, Caller, Engine
from ..errors import RESPONSES
from ..models import IdPath

router = APIRouter(tags=["digests"], responses=RESPONSES)


class DigestPreview(BaseModel):
    """The digest the account would get for the current window, up to now."""

    account_id: int
    account_name: str
    recipient: str
    window_start: str
    window_end: str
    failures: int
    given_up: int
    retrying: int
    integrations: list[dict[str, Any]]
    subject: str | None
    text: str | None
    html: str | None
    replay_command: str | None
    replay_api: dict[str, Any] | None


class DigestOut(BaseModel):
    """One digest claimed for a window: where it went and how it ended."""

    id: int
    account_id: int
    window_start: str
    window_end: str
    state: str
    recipient: str
    message_id: str
    failures: int
    attempts: int
    refusals: int
    claimed_at: str
    sent_at: str | None
    next_try_at: str | None
    last_error: str | None


class DigestSettingsIn(BaseModel):
    """Who receives the account's digest, and how many hours each covers (null: the
    deployment's ``LEADRELAY_DIGEST_HOURS``)."""

    model_config = ConfigDict(extra="forbid")

    owner_email: str | None = None
    digest_hours: float | None = None


class DigestSettingsOut(BaseModel):
    """The account's digest settings; ``digest_hours`` null: the deployment's."""

    account_id: int
    owner_email: str
    digest_hours: float | None


@router.get("/accounts/{account_id}/digest/preview", response_model=DigestPreview)
def preview_digest(account_id: IdPath, engine: Engine, caller: Caller) -> dict[str, Any]:
    """What the account's digest would say now; sends and records nothing."""
    engine.manage.get_account(account_id, scope=caller.scope())
    [preview] = engine.digests.preview(account_id)
    return preview.as_dict()


@router.get("/accounts/{account_id}/digests", response_model=list[DigestOut])
def digest_history(
    account_id: IdPath, engine: Engine, caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The account's digests, newest window first."""
    engine.manage.get_account(account_id, scope=caller.scope())
    return engine.digests.history(account_id, limit=limit)


@router.patch("/accounts/{account_id}/digest", response_model=DigestSettingsOut)
def update_digest_settings(
    account_id: IdPath, body: DigestSettingsIn, engine: Engine, caller: Caller, actor: Actor
) -> dict[str, Any]:
    """Change who receives the digest or how often; checked whole before it is written."""
    changes = body.model_dump(exclude_unset=True)
    if "owner_email" in changes and changes["owner_email"] is None:
        changes.pop("owner_email")
    account = engine.manage.update_account(account_id, scope=caller.scope(), actor=actor,
                                           **changes)
    return {"account_id": account.id, "owner_email": account.owner_email,
            "digest_hours": account.digest_hours}
