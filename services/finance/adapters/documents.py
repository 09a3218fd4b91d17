"""Finance's own state in its store: the costs of each session, the rates in force, parked enrollment events.

All of it is written in the transaction that handles the command or consumed event that changed it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contracts.base import Money, catalogue
from shared.contracts.finance import PerLearnerRate
from shared.contracts.scheduling import PlannedCost
from shared.messaging.envelope import Envelope
from shared.store.port import UnitOfWork

from ..domain.model import Commitment, OpenCommitment, Seat, SessionCosts, SessionFacts

SESSIONS = "sessions"  # one document per session: facts, seats, open commitments, stream version
RATES = "rates"  # one document per cost centre: the per-learner rates in force
PARKED = "parked"  # one document per session finance has not seen yet: enrollment events waiting for it


def session_stream(session_id: str) -> str:
    return f"session-costs-{session_id}"


def cost_centre_stream(cost_centre: str) -> str:
    return f"cost-centre-{cost_centre}"


# sessions -------------------------------------------------------------------------------------------------------
def _money(doc: dict[str, Any]) -> Money:
    return Money(amount=doc["amount"], currency=doc["currency"])


def _commitment_doc(c: Commitment) -> dict[str, Any]:
    return {"key": c.key, "cost_centre": c.cost_centre, "period": c.period, "category": c.category,
            "amount": c.amount.model_dump(mode="json"), "reason": c.reason, "enrollment_id": c.enrollment_id}


def _commitment(doc: dict[str, Any]) -> Commitment:
    return Commitment(key=doc["key"], cost_centre=doc["cost_centre"], period=doc["period"],
                      category=doc["category"], amount=_money(doc["amount"]), reason=doc["reason"],
                      enrollment_id=doc.get("enrollment_id"))


def session_to_doc(costs: SessionCosts, version: int) -> dict[str, Any]:
    facts = costs.facts
    return {
        "session_id": costs.session_id,
        "version": version,
        "facts": None if facts is None else {
            "cost_centre": facts.cost_centre,
            "period": facts.period,
            "teaching_days": facts.teaching_days,
            "planned_costs": [c.model_dump(mode="json") for c in facts.planned_costs],
            "cancelled": facts.cancelled,
        },
        "seats": {eid: {"status": s.status, "rates": [r.model_dump(mode="json") for r in s.rates]}
                  for eid, s in costs.seats.items()},
        "open": [{"cost_id": o.cost_id, **_commitment_doc(o.commitment)} for o in costs.open.values()],
    }


def session_from_doc(session_id: str, doc: dict[str, Any] | None) -> tuple[SessionCosts, int]:
    """(the session's costs, the version of its cost stream)."""
    if doc is None:
        return SessionCosts(session_id), 0
    f = doc["facts"]
    facts = None if f is None else SessionFacts(
        cost_centre=f["cost_centre"], period=f["period"], teaching_days=f["teaching_days"],
        planned_costs=tuple(PlannedCost.model_validate(c) for c in f["planned_costs"]), cancelled=f["cancelled"])
    seats = {eid: Seat(s["status"], tuple(PerLearnerRate.model_validate(r) for r in s["rates"]))
             for eid, s in doc["seats"].items()}
    open_ = {o["key"]: OpenCommitment(o["cost_id"], _commitment(o)) for o in doc["open"]}
    return SessionCosts(session_id, facts, seats, open_), doc["version"]


async def load_session(uow: UnitOfWork, session_id: str) -> tuple[SessionCosts, int]:
    """The session's costs and stream version. Within one transaction (a consumed batch) the document is read
    once: the object stays in the unit of work's ``memo`` and its write is deferred to the commit, so a batch of
    1,000 enrollments into one session reads and writes its document once, not once per event (the document
    grows with the seats: per event that was quadratic in the size of the session)."""
    found: tuple[SessionCosts, int] | None = uow.memo.get((SESSIONS, session_id))
    if found is None:
        found = session_from_doc(session_id, await uow.get(SESSIONS, session_id))
        uow.memo[(SESSIONS, session_id)] = found
    return found


async def save_session(uow: UnitOfWork, costs: SessionCosts, version: int) -> None:
    key = (SESSIONS, costs.session_id)
    uow.memo[key] = (costs, version)
    uow.defer(key, lambda: uow.put(SESSIONS, costs.session_id, session_to_doc(costs, version)))


# rates ----------------------------------------------------------------------------------------------------------
async def rates_in_force(uow: UnitOfWork, cost_centre: str) -> list[PerLearnerRate]:
    doc = await uow.get(RATES, cost_centre)
    return [PerLearnerRate.model_validate(r) for r in doc["rates"]] if doc else []


async def save_rates(uow: UnitOfWork, cost_centre: str, rates: list[PerLearnerRate], set_at: datetime) -> None:
    await uow.put(RATES, cost_centre, {"rates": [r.model_dump(mode="json") for r in rates],
                                       "set_at": set_at.isoformat()})


# parked enrollment events ---------------------------------------------------------------------------------------
async def park(uow: UnitOfWork, envelope: Envelope) -> int:
    """Keep an enrollment event for a session finance has not seen yet. Returns how many are parked for it."""
    session_id = envelope.data.aggregate_id()
    doc = await uow.get(PARKED, session_id) or {"events": []}
    if any(e["id"] == envelope.id for e in doc["events"]):
        return len(doc["events"])
    doc["events"].append({
        "id": envelope.id,
        "type": envelope.type,
        "time": envelope.time.isoformat(),
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "data": envelope.data.model_dump(mode="json"),
    })
    await uow.put(PARKED, session_id, doc)
    return len(doc["events"])


async def unpark(uow: UnitOfWork, session_id: str) -> list[Envelope]:
    """Take the parked events of a session (in the order they arrived) and forget them."""
    doc = await uow.get(PARKED, session_id)
    if doc is None:
        return []
    await uow.delete(PARKED, session_id)
    out = []
    for e in doc["events"]:
        cls = catalogue.resolve(e["type"])
        if cls is None:  # pragma: no cover - only known types are parked
            raise LookupError(f"parked event {e['id']} has unknown type {e['type']}")
        out.append(Envelope(data=cls.model_validate(e["data"]), id=e["id"], time=datetime.fromisoformat(e["time"]),
                            correlation_id=e["correlation_id"], causation_id=e["causation_id"]))
    return out
