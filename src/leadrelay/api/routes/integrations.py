"""Integrations of the calling account's forms, with the CLI's validation (the engine's)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from leadrelay.engine.report import describe_integration

from ..deps import Account, Engine
from ..errors import RESPONSES, ErrorBody
from ..models import IdPath, IdQuery, IntegrationIn, IntegrationOut, IntegrationPatch

router = APIRouter(prefix="/integrations", tags=["integrations"], responses=RESPONSES)
_PLAN: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The account's plan allows no more active "
          "integrations (the error names plan, limit and active count)"},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IntegrationOut,
             responses=_PLAN)
def create_integration(body: IntegrationIn, engine: Engine, account: Account) -> dict[str, Any]:
    """Add an integration to a form (inactive unless ``active``)."""
    fields = body.model_dump()
    form_id = fields.pop("form_id")
    integration = engine.manage.create_integration(form_id, scope=account, **fields)
    return describe_integration(integration)


@router.get("", response_model=list[IntegrationOut])
def list_integrations(
    engine: Engine, account: Account, form_id: IdQuery = None
) -> list[dict[str, Any]]:
    """The account's integrations, or one form's."""
    return [describe_integration(i)
            for i in engine.manage.integrations(form_id, scope=account)]


@router.get("/{integration_id}", response_model=IntegrationOut)
def show_integration(integration_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """One integration, its config's secrets redacted."""
    return describe_integration(engine.manage.get_integration(integration_id, scope=account))


@router.patch("/{integration_id}", response_model=IntegrationOut)
def update_integration(
    integration_id: IdPath, body: IntegrationPatch, engine: Engine, account: Account
) -> dict[str, Any]:
    """Change an integration; workers use the change from its next delivery."""
    changes = body.model_dump(exclude_unset=True)
    return describe_integration(
        engine.manage.update_integration(integration_id, scope=account, **changes))


@router.post("/{integration_id}/activate", response_model=IntegrationOut, responses=_PLAN)
def activate(integration_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """Switch the integration on; refused with 409 beyond the plan's cap."""
    return describe_integration(engine.manage.set_active(integration_id, True, scope=account))


@router.post("/{integration_id}/deactivate", response_model=IntegrationOut)
def deactivate(integration_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """Switch the integration off: new leads no longer go to it."""
    return describe_integration(engine.manage.set_active(integration_id, False, scope=account))
