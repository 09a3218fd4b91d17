"""Older versions of event types that stay readable, and the upcasters that turn them into the current model.

When a published type changes in a way that would break its readers (a field removed or renamed, a type changed,
an optional field made required, an enum value removed), its version is raised (``...v1`` -> ``...v2``): the new
model takes the type name, the old model moves here (its JSON Schema stays in the catalogue under ``contracts/``),
and an upcaster rewrites the old data into the new shape. Every place that reads events (``decode`` for Kafka
records, the stores for stored events) goes through ``EventCatalogue.load``, which applies the upcasters one
version step at a time, so a record or a stored event of an older version is read as the current model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .base import CURRENCY_PATTERN, catalogue
from .finance import PERIOD_PATTERN, CostIncurred


class CostIncurredV0(BaseModel):
    """``ilt.finance.cost-incurred.v0``, published by the 2025 pilot: the amount was a bare decimal string with its
    currency beside it, and there was no ``reason``. v1 carries ``Money`` and a required ``reason``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    occurred_at: AwareDatetime
    cost_id: str
    cost_centre: str
    period: str = Field(pattern=PERIOD_PATTERN)
    kind: Literal["committed", "actual"]
    category: str
    amount: str = Field(pattern=r"^-?\d+(\.\d{1,2})?$", description="Decimal string, e.g. 1250.00")
    currency: str = Field(pattern=CURRENCY_PATTERN)
    session_id: str | None = None
    enrollment_id: str | None = None
    invoice_ref: str | None = None
    reverses: str | None = None


def cost_incurred_v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Money becomes an object; the reason is what v0 could only mean: an invoice for an actual cost; for a
    commitment the per-learner cost of an enrollment or a planned cost of the session, and for a reversal (the
    pilot reversed only on cancellation) the cancellation of the enrollment or of the session."""
    out = dict(data)
    out["amount"] = {"amount": out.pop("amount"), "currency": out.pop("currency")}
    if out["kind"] == "actual":
        out["reason"] = "invoice"
    elif out.get("reverses"):
        out["reason"] = "enrollment_cancelled" if out.get("enrollment_id") else "session_cancelled"
    else:
        out["reason"] = "per_learner" if out.get("enrollment_id") else "planned_cost"
    return out


catalogue.supersede("ilt.finance.cost-incurred.v0", CostIncurred.event_type, cost_incurred_v0_to_v1,
                    model=CostIncurredV0)
