"""Accounts, their plans and their API keys.

An operator key creates and lists accounts and plans. An account key sees its own
account only, and may make and revoke its own keys; any other account answers 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from leadrelay.engine.apikeys import Principal
from leadrelay.engine.ledger import Account as AccountRow
from leadrelay.engine.management import describe_plan

from ..deps import Actor, Caller, Engine, Operator
from ..errors import RESPONSES
from ..models import (
    AccountIn,
    AccountOut,
    AccountPatch,
    AuditPage,
    IdPath,
    IdQuery,
    KeyCreated,
    KeyIn,
    KeyOut,
    PlanIn,
    PlanOut,
    PlanPatch,
)

router = APIRouter(tags=["accounts"], responses=RESPONSES)


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=AccountOut)
def create_account(body: AccountIn, engine: Engine, _operator: Operator,
                   actor: Actor) -> dict[str, Any]:
    """Add an account (operator key)."""
    account = engine.manage.create_account(body.name, body.owner_email, plan=body.plan,
                                           actor=actor)
    return _account(account, body.plan)


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    """Every account (operator key); an account key sees only its own."""
    return [_account(a) for a in engine.manage.accounts()
            if caller.operator or a.id == caller.account_id]


@router.get("/accounts/{account_id}", response_model=AccountOut)
def show_account(account_id: IdPath, engine: Engine, caller: Caller) -> dict[str, Any]:
    """One account, with its plan, the plan's limit and how many integrations are active
    (over the limit after a downgrade, ``over_limit`` and ``note`` say so)."""
    return engine.manage.account_status(account_id, scope=caller.scope())


@router.patch("/accounts/{account_id}", response_model=AccountOut)
def update_account(account_id: IdPath, body: AccountPatch, engine: Engine, _operator: Operator,
                   actor: Actor) -> dict[str, Any]:
    """Change an account's name, owner email or plan (operator key). A plan below the
    active count deactivates nothing: nothing new is activated until it is under."""
    changes = body.model_dump(exclude_unset=True)
    engine.manage.update_account(account_id, actor=actor, **changes)
    return engine.manage.account_status(account_id)


@router.get("/accounts/{account_id}/audit", response_model=AuditPage)
def account_audit(
    account_id: IdPath, engine: Engine, caller: Caller, limit: int = 100,
    cursor: str | None = None, object_type: str | None = None, object_id: IdQuery = None,
) -> dict[str, Any]:
    """The account's management changes, newest first: actor (the API key's name or
    ``cli``), action, object, before and after (secrets masked), time."""
    items, next_cursor = engine.manage.audit_trail(
        account_id, scope=caller.scope(), limit=limit, cursor=cursor,
        object_type=object_type, object_id=object_id)
    return {"items": items, "next_cursor": next_cursor}


@router.post("/accounts/{account_id}/keys", status_code=status.HTTP_201_CREATED,
             response_model=KeyCreated)
def create_key(account_id: IdPath, body: KeyIn, engine: Engine, caller: Caller,
               actor: Actor) -> dict[str, Any]:
    """Make an API key for the account; the key is in this answer only."""
    _own(engine, account_id, caller)
    new = engine.keys.create(account_id, name=body.name, actor=actor)
    return {**new.description, "key": new.secret}


@router.get("/accounts/{account_id}/keys", response_model=list[KeyOut])
def list_keys(account_id: IdPath, engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    """The account's keys, without their secrets."""
    _own(engine, account_id, caller)
    return engine.keys.keys(account_id)


@router.delete("/accounts/{account_id}/keys/{key_id}", response_model=KeyOut)
def revoke_key(
    account_id: IdPath, key_id: IdPath, engine: Engine, caller: Caller, actor: Actor
) -> dict[str, Any]:
    """Revoke one of the account's keys: it stops working at once."""
    _own(engine, account_id, caller)
    return engine.keys.revoke(key_id, account_id=account_id, actor=actor)


@router.get("/plans", response_model=list[PlanOut])
def list_plans(engine: Engine, _caller: Caller) -> list[dict[str, Any]]:
    """The plans and their caps on active integrations."""
    return [_plan(p) for p in engine.manage.plans()]


@router.post("/plans", status_code=status.HTTP_201_CREATED, response_model=PlanOut)
def create_plan(body: PlanIn, engine: Engine, _operator: Operator,
                actor: Actor) -> dict[str, Any]:
    """Add a plan (operator key); ``max_active_integrations`` ``"unlimited"`` for no cap."""
    return _plan(engine.manage.create_plan(body.name, body.max_active_integrations,
                                           actor=actor))


@router.patch("/plans/{name}", response_model=PlanOut)
def update_plan(name: str, body: PlanPatch, engine: Engine, _operator: Operator,
                actor: Actor) -> dict[str, Any]:
    """Change a plan's cap (operator key). Lowering it deactivates nothing."""
    return _plan(engine.manage.update_plan(name, body.max_active_integrations, actor=actor))


@router.get("/plans/audit", response_model=AuditPage)
def plans_audit(engine: Engine, _operator: Operator, limit: int = 100,
                cursor: str | None = None) -> dict[str, Any]:
    """Changes to plans (operator key), newest first."""
    items, next_cursor = engine.manage.audit_trail(None, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


def _own(engine: Any, account_id: int, caller: Principal) -> None:
    engine.manage.get_account(account_id, scope=caller.scope())


def _account(a: AccountRow, plan: str | None = None) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "owner_email": a.owner_email,
            "plan": plan or a.plan.name, "created_at": a.created_at}


def _plan(p: Any) -> dict[str, Any]:
    return describe_plan(p)
