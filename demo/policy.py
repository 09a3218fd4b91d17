"""The demo's policy (demo/policy.toml): every number the data does not hold, loaded and checked once."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")


class PolicyError(ValueError):
    """The policy file is incomplete or wrong (named field, reason)."""


@dataclass(frozen=True)
class Course:
    code: str
    title: str
    days: int
    capacity: int
    cost_centre: str


@dataclass(frozen=True)
class Cost:
    category: str
    amount: Decimal


@dataclass(frozen=True)
class Rate:
    category: str
    amount: Decimal
    per: str  # "day" | "session"


@dataclass(frozen=True)
class Policy:
    currency: str
    day_start: time
    day_end: time
    setup_as_of: datetime
    budget_allocated_on: tuple[int, int]  # (month, day) of the year before the budget's period
    schedule_days_before: int
    enroll_days_before: int
    invoice_days_after: int
    course_tag_priority: tuple[str, ...]
    default_course: str
    online_tags: frozenset[str]
    online_countries: frozenset[str]
    online_time_zone: str
    courses: dict[str, Course]
    invoice_planned_costs: bool
    planned_costs: dict[str, tuple[Cost, ...]]  # "classroom" | "virtual" | "carpentrycon"
    rates: dict[str, tuple[Rate, ...]]  # per cost centre
    budgets: dict[str, dict[str, Decimal]]  # cost centre -> period "YYYY" -> amount
    time_zones: dict[str, str]  # country code -> IANA zone
    it_course: str
    it_tag_ids: dict[str, str]
    it_venue_prefix: str
    ccon_course: str
    ccon_time_zone: str
    ccon_room_prefix: str
    ccon_session_prefix: str
    raw: dict[str, Any]  # the file as read, for the report

    def time_zone_of(self, country: str) -> str | None:
        return self.time_zones.get(country)

    def budget_as_of(self, period: str) -> datetime:
        month, day = self.budget_allocated_on
        return datetime(int(period) - 1, month, day, tzinfo=UTC)

    def money(self, amount: Decimal) -> dict[str, str]:
        return {"amount": f"{amount:.2f}", "currency": self.currency}


def load_policy(path: Path | str = DEFAULT_POLICY) -> Policy:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    return parse_policy(raw)


def parse_policy(raw: dict[str, Any]) -> Policy:
    try:
        return _parse(raw)
    except KeyError as exc:
        raise PolicyError(f"policy: missing setting {exc.args[0]!r}") from exc


def _parse(raw: dict[str, Any]) -> Policy:
    currency = raw["currency"]
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
        raise PolicyError("currency: an ISO 4217 code such as USD")
    times, history, ws = raw["times"], raw["history"], raw["workshops"]
    day_start, day_end = _time("times.day_start", times["day_start"]), _time("times.day_end", times["day_end"])
    if day_end <= day_start:
        raise PolicyError("times.day_end: must be after day_start")
    courses = {}
    for code, c in raw["courses"].items():
        days, capacity = c["days"], c["capacity"]
        if not isinstance(days, int) or days < 1:
            raise PolicyError(f"courses.{code}.days: a whole number of days >= 1")
        if not isinstance(capacity, int) or capacity < 1:
            raise PolicyError(f"courses.{code}.capacity: a whole number >= 1")
        courses[code] = Course(code, c["title"], days, capacity, c["cost_centre"])
    it, ccon = raw["instructor_training"], raw["carpentrycon"]
    for name, code in (("workshops.default_course", ws["default_course"]), ("instructor_training.course", it["course"]),
                       ("carpentrycon.course", ccon["course"]), *(
                           (f"workshops.course_tag_priority[{n}]", c) for n, c in enumerate(ws["course_tag_priority"]))):
        if code not in courses:
            raise PolicyError(f"{name}: no [courses.{code}] in the policy")
    pc = raw["planned_costs"]
    planned = {kind: tuple(Cost(c["category"], _amount(f"planned_costs.{kind}", c["amount"])) for c in pc[kind])
               for kind in ("classroom", "virtual", "carpentrycon")}
    rates = {}
    for cc, items in raw["per_learner_rates"].items():
        out = []
        for r in items:
            if r["per"] not in ("day", "session"):
                raise PolicyError(f"per_learner_rates.{cc}.per: 'day' or 'session'")
            out.append(Rate(r["category"], _amount(f"per_learner_rates.{cc}", r["amount"]), r["per"]))
        rates[cc] = tuple(out)
    budgets = {}
    for cc, years in raw["budgets"].items():
        budgets[cc] = {}
        for year, amount in years.items():
            if not (len(str(year)) == 4 and str(year).isdigit()):
                raise PolicyError(f"budgets.{cc}.{year}: the period is a year YYYY")
            budgets[cc][str(year)] = _amount(f"budgets.{cc}.{year}", amount)
    zones = {str(k): _zone(f"time_zones.{k}", v) for k, v in raw["time_zones"].items()}
    setup = datetime.fromisoformat(history["setup_as_of"])
    if setup.tzinfo is None:
        raise PolicyError("history.setup_as_of: needs a UTC offset")
    return Policy(
        currency=currency,
        day_start=day_start,
        day_end=day_end,
        setup_as_of=setup,
        budget_allocated_on=_month_day("history.budget_allocated_on", history["budget_allocated_on"]),
        schedule_days_before=_days("history.schedule_days_before", history["schedule_days_before"]),
        enroll_days_before=_days("history.enroll_days_before", history["enroll_days_before"]),
        invoice_days_after=_days("history.invoice_days_after", history["invoice_days_after"], minimum=0),
        course_tag_priority=tuple(ws["course_tag_priority"]),
        default_course=ws["default_course"],
        online_tags=frozenset(ws["online_tags"]),
        online_countries=frozenset(ws["online_countries"]),
        online_time_zone=_zone("workshops.online_time_zone", ws["online_time_zone"]),
        courses=courses,
        invoice_planned_costs=bool(pc["invoice_planned_costs"]),
        planned_costs=planned,
        rates=rates,
        budgets=budgets,
        time_zones=zones,
        it_course=it["course"],
        it_tag_ids={str(k): v for k, v in it["tag_ids"].items()},
        it_venue_prefix=it["venue_prefix"],
        ccon_course=ccon["course"],
        ccon_time_zone=_zone("carpentrycon.time_zone", ccon["time_zone"]),
        ccon_room_prefix=ccon["room_prefix"],
        ccon_session_prefix=ccon["session_prefix"],
        raw=raw,
    )


def _month_day(name: str, value: Any) -> tuple[int, int]:
    try:
        month, day = (int(p) for p in str(value).split("-"))
        datetime(2001, month, day)
    except ValueError as exc:
        raise PolicyError(f"{name}: a day of the year MM-DD") from exc
    return month, day


def _time(name: str, value: str) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{name}: a local time HH:MM") from exc


def _amount(name: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise PolicyError(f"{name}: amounts are strings such as \"1200.00\" (never floats)")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise PolicyError(f"{name}: {value!r} is not an amount") from exc
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise PolicyError(f"{name}: {value!r} must be >= 0 with at most two decimals")
    return amount


def _zone(name: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise PolicyError(f"{name}: {value!r} is not an IANA time zone") from exc
    return value


def _days(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or value < minimum:
        raise PolicyError(f"{name}: a whole number of days >= {minimum}")
    return value
