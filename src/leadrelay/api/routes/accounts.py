"""Accounts, their plans and their API keys.

An operator key creates and lists accounts and plans. An account key sees its own
account only, and may make and revoke its own keys; any other account answers 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from leadrelay.engine.apikeys import Principal
from leadrelay.engine.ledger import Account as AccountRow

from ..deps import Caller, Engine, Operator
from ..errors import RESPONSES
from ..models import AccountIn, AccountOut, IdPath, KeyCreated, KeyIn, KeyOut, PlanIn, PlanOut

router = APIRouter(tags=["accounts"], responses=RESPONSES)


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=AccountOut)
def create_account(body: AccountIn, engine: Engine, _operator: Operator) -> dict[str, Any]:
    """Add an account (operator key)."""
    account = engine.manage.create_account(body.name, body.owner_email, plan=body.plan)
    return _account(account, body.plan)


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    """Every account (operator key); an account key sees only its own."""
    return [_account(a) for a in engine.manage.accounts()
            if caller.operator or a.id == caller.account_id]


@router.get("/accounts/{account_id}", response_model=AccountOut)
def show_account(account_id: IdPath, engine: Engine, caller: Caller) -> dict[str, Any]:
    """One account."""
    return _account(engine.manage.get_account(account_id, scope=caller.scope()))


@router.post("/accounts/{account_id}/keys", status_code=status.HTTP_201_CREATED,
             response_model=KeyCreated)
def create_key(account_id: IdPath, body: KeyIn, engine: Engine, caller: Caller) -> dict[str, Any]:
    """Make an API key for the account; the key is in this answer only."""
    _own(engine, account_id, caller)
    new = engine.keys.create(account_id, name=body.name)
    return {**new.description, "key": new.secret}


@router.get("/accounts/{account_id}/keys", response_model=list[KeyOut])
def list_keys(account_id: IdPath, engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    """The account's keys, without their secrets."""
    _own(engine, account_id, caller)
    return engine.keys.keys(account_id)


@router.delete("/accounts/{account_id}/keys/{key_id}", response_model=KeyOut)
def revoke_key(
    account_id: IdPath, key_id: IdPath, engine: Engine, caller: Caller
) -> dict[str, Any]:
    """Revoke one of the account's keys: it stops working at once."""
    _own(engine, account_id, caller)
    return engine.keys.revoke(key_id, account_id=account_id)


@router.get("/plans", response_model=list[PlanOut])
def list_plans(engine: Engine, _caller: Caller) -> list[dict[str, Any]]:
    """The plans and their caps on active integrations."""
    return [_plan(p) for p in engine.manage.plans()]


@router.post("/plans", status_code=status.HTTP_201_CREATED, response_model=PlanOut)
def create_plan(body: PlanIn, engine: Engine, _operator: Operator) -> dict[str, Any]:
    """Add a plan (operator key)."""
    return _plan(engine.manage.create_plan(body.name, body.max_active_integrations))


def _own(engine: Any, account_id: int, caller: Principal) -> None:
    engine.manage.get_account(account_id, scope=caller.scope())


def _account(a: AccountRow, plan: str | None = None) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "owner_email": a.owner_email,
            "plan": plan or a.plan.name, "created_at": a.created_at}


def _plan(p: Any) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "max_active_integrations": p.max_active_integrations}
