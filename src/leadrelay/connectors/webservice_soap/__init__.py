"""The ``webservice_soap`` connector: leads delivered to SOAP CRMs through zeep, by their WSDL.

Registered through the ``leadrelay.connectors`` entry point like any
third-party connector. It also contributes the ``soap_fault`` expectation
kind, through the ``register_expectation_kinds`` broadcast hook, to every
integration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadrelay.engine.hookspecs import hookimpl

from .config import FaultPolicy, LoginStep, SoapConfig
from .connector import SoapConnector
from .faults import SoapFaultRule
from .reply import SoapResponse

__all__ = [
    "FaultPolicy",
    "LoginStep",
    "SoapConfig",
    "SoapConnector",
    "SoapFaultRule",
    "SoapResponse",
    "register_connectors",
    "register_expectation_kinds",
]


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`SoapConnector`."""
    register(SoapConnector)


@hookimpl
def register_expectation_kinds(register: Callable[[type[Any]], None]) -> None:
    """Register the ``soap_fault`` expectation kind."""
    register(SoapFaultRule)
