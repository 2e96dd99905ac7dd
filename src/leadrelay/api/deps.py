"""What a route is handed: the engine, and who is asking.

Routes declare what they need with these ``Annotated`` types; authentication,
the account scope and the operator check happen here, once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from leadrelay.engine.apikeys import Principal
from leadrelay.engine.app import Leadrelay

from .errors import ApiError

_bearer = HTTPBearer(
    auto_error=False,
    description="An account key (`leadrelay keys create --account ID`) or an operator key "
    "(`leadrelay keys create --operator`).",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="leadrelay"'}


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency
# in its thread pool, a hand-over there and back on every request for nothing.


async def get_engine(request: Request) -> Leadrelay:
    """The engine this app serves."""
    engine: Leadrelay = request.app.state.engine
    return engine


Engine = Annotated[Leadrelay, Depends(get_engine)]


def get_principal(
    request: Request,
    engine: Engine,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The holder of the request's bearer key; 401 without a valid one."""
    if credentials is None:
        raise ApiError(401, "unauthorized",
                       "Authorization: give an API key as 'Authorization: Bearer KEY'",
                       field="Authorization", headers=_CHALLENGE)
    principal = engine.keys.authenticate(credentials.credentials)
    if principal is None:
        raise ApiError(401, "unauthorized", "Authorization: the API key is unknown or revoked",
                       field="Authorization", headers=_CHALLENGE)
    request.state.account_id = principal.account_id  # for the access log
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


async def get_actor(principal: Caller) -> str:
    """Who the changes of this request are made by: the API key's name."""
    return f"key {principal.name}" if principal.name in ("cli", "plans file") else principal.name


#: The actor of the request's changes (audit trail, config history): its key's name.
Actor = Annotated[str, Depends(get_actor)]


async def get_account(principal: Caller) -> int:
    """The id of the calling account; 403 for an operator key (it belongs to none)."""
    if principal.operator or principal.account_id is None:
        raise ApiError(403, "account_key_required",
                       "Authorization: this route acts for one account: use an account key, "
                       "not an operator key", field="Authorization")
    return principal.account_id


#: The id of the account whose key made the request; every object a route touches
#: must be this account's, or it is not found.
Account = Annotated[int, Depends(get_account)]


async def get_operator(principal: Caller) -> Principal:
    """The caller, if it holds an operator key; 403 otherwise."""
    if not principal.operator:
        raise ApiError(403, "operator_key_required",
                       "Authorization: only an operator key may do this", field="Authorization")
    return principal


Operator = Annotated[Principal, Depends(get_operator)]
