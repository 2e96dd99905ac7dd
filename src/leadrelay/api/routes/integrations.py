"""Integrations of the calling account's forms, with the CLI's validation (the engine's):
create, change, switch on and off, test-send, config history, held deliveries, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from leadrelay.engine.report import describe_integration
from leadrelay.engine.testsend import SAMPLE

from ..deps import Account, Actor, Engine
from ..errors import RESPONSES, ApiError, ErrorBody
from ..models import (
    DiscardIn,
    DiscardOut,
    HistoryOut,
    IdPath,
    IdQuery,
    IntegrationIn,
    IntegrationOut,
    IntegrationPatch,
    TestIn,
)

router = APIRouter(prefix="/integrations", tags=["integrations"], responses=RESPONSES)
_PLAN: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The account's plan allows no more active "
          "integrations (the error names plan, limit and active count)"},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IntegrationOut,
             responses=_PLAN)
def create_integration(body: IntegrationIn, engine: Engine, account: Account,
                       actor: Actor) -> dict[str, Any]:
    """Add an integration to a form (inactive unless ``active``)."""
    fields = body.model_dump()
    form_id = fields.pop("form_id")
    integration = engine.manage.create_integration(form_id, scope=account, actor=actor,
                                                   **fields)
    return describe_integration(integration)


@router.get("", response_model=list[IntegrationOut])
def list_integrations(
    engine: Engine, account: Account, form_id: IdQuery = None, archived: bool = False
) -> list[dict[str, Any]]:
    """The account's integrations, or one form's; deleted ones too with ``archived``."""
    return [describe_integration(i)
            for i in engine.manage.integrations(form_id, scope=account, archived=archived)]


@router.get("/{integration_id}", response_model=IntegrationOut)
def show_integration(integration_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """One integration, its config's secrets redacted."""
    return describe_integration(engine.manage.get_integration(integration_id, scope=account))


@router.patch("/{integration_id}", response_model=IntegrationOut)
def update_integration(
    integration_id: IdPath, body: IntegrationPatch, engine: Engine, account: Account,
    actor: Actor,
) -> dict[str, Any]:
    """Change an integration (a new revision); workers use the change from its next
    delivery, one in flight finishes with the revision it claimed."""
    changes = body.model_dump(exclude_unset=True)
    return describe_integration(
        engine.manage.update_integration(integration_id, scope=account, actor=actor,
                                         **changes))


@router.post("/{integration_id}/activate", response_model=IntegrationOut, responses=_PLAN)
def activate(integration_id: IdPath, engine: Engine, account: Account,
             actor: Actor) -> dict[str, Any]:
    """Switch the integration on (already on: nothing changes); its held deliveries are
    released at once, in order. Refused with 409 beyond the plan's cap."""
    return describe_integration(engine.manage.set_active(integration_id, True, scope=account,
                                                         actor=actor))


@router.post("/{integration_id}/deactivate", response_model=IntegrationOut)
def deactivate(integration_id: IdPath, engine: Engine, account: Account,
               actor: Actor) -> dict[str, Any]:
    """Switch the integration off: new leads no longer go to it, and its pending and
    retrying deliveries are held (state ``held``) until it is activated again."""
    return describe_integration(engine.manage.set_active(integration_id, False, scope=account,
                                                         actor=actor))


@router.delete("/{integration_id}", response_model=IntegrationOut)
def delete_integration(integration_id: IdPath, engine: Engine, account: Account,
                       actor: Actor) -> dict[str, Any]:
    """Delete (archive) the integration: it leaves its form, its held and pending
    deliveries are discarded ("integration deleted"); history, deliveries and attempts
    stay inspectable."""
    return describe_integration(engine.manage.delete_integration(
        integration_id, scope=account, actor=actor))


@router.post("/{integration_id}/held/discard", response_model=DiscardOut)
def discard_held(integration_id: IdPath, body: DiscardIn, engine: Engine, account: Account,
                 actor: Actor) -> dict[str, Any]:
    """Discard the integration's held deliveries (or the ``delivery_ids`` given) with a
    reason: never sent, still inspectable (state ``discarded``)."""
    count = engine.manage.discard_held(integration_id, body.reason,
                                       delivery_ids=body.delivery_ids, scope=account,
                                       actor=actor)
    return {"integration_id": integration_id, "discarded": count}


@router.get("/{integration_id}/history", response_model=HistoryOut)
def history(integration_id: IdPath, engine: Engine, account: Account,
            diff_from: Annotated[int | None, Query(alias="from", ge=1)] = None,
            diff_to: Annotated[int | None, Query(alias="to", ge=1)] = None) -> dict[str, Any]:
    """Every revision (who, when, which change, the settings with secrets masked),
    newest first; with ``from`` and ``to``, the diff between those two revisions (a
    secret only as changed or unchanged)."""
    if (diff_from is None) != (diff_to is None):
        raise ApiError(422, "invalid", "from: give both from and to for a diff",
                       field="from" if diff_from is None else "to")
    pair = (diff_from, diff_to) if diff_from is not None else None
    return engine.manage.history(integration_id, scope=account, diff=pair)


@router.post("/{integration_id}/test")
def test_send(integration_id: IdPath, body: TestIn, engine: Engine, account: Account,
              actor: Actor) -> dict[str, Any]:
    """Try the integration with a lead (or the sample lead), active or not. Without
    ``send``: the request exactly as it would go out, secrets redacted, nothing written.
    With ``send``: the CRM's answer, outcome, deciding rule and trace, recorded as a test
    attempt apart from deliveries (never in the failed collection, digest or metrics)."""
    lead = body.lead if "lead" in body.model_fields_set else SAMPLE
    return engine.manage.test_integration(integration_id, lead, sample=body.sample,
                                          send=body.send, scope=account, actor=actor)


@router.get("/{integration_id}/tests")
def test_sends(integration_id: IdPath, engine: Engine, account: Account) -> list[dict[str, Any]]:
    """The integration's recorded test-sends, newest first."""
    return engine.manage.test_attempts(integration_id, scope=account)
