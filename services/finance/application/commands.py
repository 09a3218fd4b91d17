"""Commands the finance service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from shared.commands import CommandTime
from shared.contracts.requests import (  # the fields the HTTP bodies share with the Kafka requests
    AllocateBudgetFields,
    RecordCostFields,
    SetPerLearnerRatesFields,
)


class AllocateBudget(AllocateBudgetFields, CommandTime):
    """Add money to a cost centre's budget for a period (see ``AllocateBudgetFields``)."""


class SetPerLearnerRates(SetPerLearnerRatesFields, CommandTime):
    """Replace the per-learner rates of a cost centre (applied to enrollments processed from now on)."""


class RecordCost(RecordCostFields, CommandTime):
    """An invoice (actual cost). Negative amounts are credit notes and need ``credit_note: true``."""
