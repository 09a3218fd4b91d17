"""Commands the finance service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from shared.commands import CommandTime
from shared.contracts.base import Money
from shared.contracts.finance import PERIOD_PATTERN, PerLearnerRate

ID_FIELD = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
PERIOD_FIELD = Field(pattern=PERIOD_PATTERN, description="Calendar year, YYYY.", examples=["2030"])


class AllocateBudget(CommandTime):
    """Add money to a cost centre's budget for a period. The first allocation fixes the currency.

    With ``allocation_id`` (chosen by the client) the allocation is idempotent: the same id with the same content
    again returns the allocation made the first time and adds nothing; the same id with other content is a
    conflict. Without it every request is a new allocation."""

    model_config = ConfigDict(extra="forbid")

    allocation_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
        description="Client-chosen id that makes a retry safe: the same id and content again allocates nothing "
        "more (200 with the first allocation); the same id with other content is 409 allocation_exists.",
        examples=["budget-CC-1-2030"],
    )
    cost_centre: str = ID_FIELD
    period: str = PERIOD_FIELD
    amount: Money


class SetPerLearnerRates(CommandTime):
    """Replace the per-learner rates of a cost centre (applied to enrollments processed from now on)."""

    model_config = ConfigDict(extra="forbid")

    rates: list[PerLearnerRate] = Field(max_length=50)


class RecordCost(CommandTime):
    """An invoice (actual cost). Negative amounts are credit notes and need ``credit_note: true``."""

    model_config = ConfigDict(extra="forbid")

    invoice_ref: str = ID_FIELD
    cost_centre: str = ID_FIELD
    period: str = PERIOD_FIELD
    category: str = Field(min_length=1, max_length=64)
    amount: Money
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    credit_note: bool = Field(default=False, description="Declares a negative amount as a credit note.")


