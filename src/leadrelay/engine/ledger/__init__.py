"""The ledger: the database that is the truth about every lead and delivery."""

from .db import Ledger
from .models import (
    IN_DOUBT,
    SENDING,
    Account,
    Attempt,
    AttemptLane,
    Delivery,
    DeliveryState,
    Digest,
    DigestState,
    FacebookLead,
    FacebookPage,
    FacebookReadState,
    Form,
    Integration,
    Lead,
    Plan,
)

__all__ = [
    "IN_DOUBT",
    "SENDING",
    "Account",
    "Attempt",
    "AttemptLane",
    "Delivery",
    "DeliveryState",
    "Digest",
    "DigestState",
    "FacebookLead",
    "FacebookPage",
    "FacebookReadState",
    "Form",
    "Integration",
    "Lead",
    "Ledger",
    "Plan",
]
