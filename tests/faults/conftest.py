"""Fixtures of the fault suite: a hostile CRM per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .hostile_crm import HostileCrm


@pytest.fixture
def hostile_crm() -> Iterator[HostileCrm]:
    """A started hostile CRM in mode ``ok``; pick a mode per request by path
    (``crm.url_for("/drip/leads")``) or for all with ``crm.set_mode("drip")``."""
    with HostileCrm("ok") as crm:
        yield crm


@pytest.fixture
def make_hostile_crm() -> Iterator[Callable[..., HostileCrm]]:
    """``make_hostile_crm(mode, **options)``: more started hostile CRMs, all stopped after."""
    started: list[HostileCrm] = []

    def make(mode: str = "ok", **options: Any) -> HostileCrm:
        crm = HostileCrm(mode, **options).start()
        started.append(crm)
        return crm

    try:
        yield make
    finally:
        for crm in started:
            crm.stop()
