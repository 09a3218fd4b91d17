"""Commands the finance service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from shared.commands import CommandTime
from shared.contracts.base import Money, is_iso_currency
from shared.contracts.finance import PerLearnerRate
from shared.contracts.requests import (  # the fields the HTTP bodies share with the Kafka requests
    AllocateBudgetFields,
    RecordCostFields,
    SetPerLearnerRatesFields,
)


EARLIEST_PERIOD, LATEST_PERIOD = 1970, 2199


def _check_period(period: str) -> None:
    if not EARLIEST_PERIOD <= int(period) <= LATEST_PERIOD:
        raise ValueError(f"period must be a year between {EARLIEST_PERIOD} and {LATEST_PERIOD}")


def _check_currency(code: str) -> None:
    if not is_iso_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency")


class _PlausiblePeriodAndCurrency(BaseModel):
    """A year between 1970 and 2199 and an ISO 4217 currency (mixed into the commands that have both)."""

    period: str
    amount: Money

    @field_validator("period")
    @classmethod
    def _period(cls, period: str) -> str:
        _check_period(period)
        return period

    @field_validator("amount")
    @classmethod
    def _currency(cls, amount: Money) -> Money:
        _check_currency(amount.currency)
        return amount


class AllocateBudget(AllocateBudgetFields, _PlausiblePeriodAndCurrency, CommandTime):
    """Add money to a cost centre's budget for a period (see ``AllocateBudgetFields``)."""


class SetPerLearnerRates(SetPerLearnerRatesFields, CommandTime):
    """Replace the per-learner rates of a cost centre (applied to enrollments processed from now on)."""

    @field_validator("rates")
    @classmethod
    def _currencies(cls, rates: list[PerLearnerRate]) -> list[PerLearnerRate]:
        for rate in rates:
            _check_currency(rate.amount.currency)
        return rates


class RecordCost(RecordCostFields, _PlausiblePeriodAndCurrency, CommandTime):
    """An invoice (actual cost). Negative amounts are credit notes and need ``credit_note: true``."""
