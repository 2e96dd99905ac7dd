"""Forms of the calling account: create, list, show, change, rotate the public key, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from leadrelay.engine.forms import describe_form

from ..deps import Account, Actor, Engine
from ..errors import RESPONSES
from ..models import FormIn, FormOut, FormPatch, IdPath

router = APIRouter(prefix="/forms", tags=["forms"], responses=RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FormOut)
def create_form(body: FormIn, engine: Engine, account: Account, actor: Actor) -> dict[str, Any]:
    """Add a form; its public key is what its pages post to."""
    form = engine.manage.create_form(
        account, body.name, allowed_origins=body.allowed_origins,
        required_fields=body.required_fields, thank_you_url=body.thank_you_url,
        thank_you_message=body.thank_you_message, actor=actor,
    )
    return describe_form(form)


@router.get("", response_model=list[FormOut])
def list_forms(engine: Engine, account: Account) -> list[dict[str, Any]]:
    """The account's forms."""
    return [describe_form(f) for f in engine.manage.forms(account)]


@router.get("/{form_id}", response_model=FormOut)
def show_form(form_id: IdPath, engine: Engine, account: Account) -> dict[str, Any]:
    """One form."""
    return describe_form(engine.manage.get_form(form_id, scope=account))


@router.patch("/{form_id}", response_model=FormOut)
def update_form(
    form_id: IdPath, body: FormPatch, engine: Engine, account: Account, actor: Actor
) -> dict[str, Any]:
    """Change a form's name, allowed origins, required fields, thank-you URL or message, or
    its state."""
    changes = body.model_dump(exclude_unset=True)
    return describe_form(engine.manage.update_form(form_id, scope=account, actor=actor,
                                                   **changes))


@router.post("/{form_id}/rotate-key", response_model=FormOut)
def rotate_key(form_id: IdPath, engine: Engine, account: Account, actor: Actor) -> dict[str, Any]:
    """Give the form a new public key; posts to the old one are refused from now on."""
    return describe_form(engine.manage.rotate_form_key(form_id, scope=account, actor=actor))


@router.delete("/{form_id}", response_model=FormOut)
def delete_form(form_id: IdPath, engine: Engine, account: Account, actor: Actor) -> dict[str, Any]:
    """Delete (archive) the form: it accepts no more leads and its integrations are
    deleted; its leads, deliveries and attempts stay inspectable."""
    return describe_form(engine.manage.delete_form(form_id, scope=account, actor=actor))
