"""The ledger: the database that is the truth about every lead and delivery."""

from .db import Ledger
from .models import Account, Attempt, Delivery, DeliveryState, Form, Integration, Lead, Plan

__all__ = [
    "Account",
    "Attempt",
    "Delivery",
    "DeliveryState",
    "Form",
    "Integration",
    "Lead",
    "Ledger",
    "Plan",
]
