"""What reporting does with each consumed event (handlers run by the shared ``EventConsumer``, one transaction each).

Every event type of the public catalogue has an entry, so every event is deliberately applied or deliberately
ignored (a unit test checks the table against the catalogue: a new event type cannot slip by unnoticed). The
consumer records every event id in the inbox, with the checkpoint, in the same transaction as the view change.
"""

from __future__ import annotations

from shared.contracts.base import IntegrationEvent
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope
from shared.store.port import UnitOfWork

from ..projections import budgets, occupancy


async def ignore(uow: UnitOfWork, envelope: Envelope) -> None:
    """An event reporting has no figure for: only tracked in the inbox."""


HANDLERS: dict[type[IntegrationEvent], Handler] = {
    # scheduling: the plan of a session (course, venue, time, capacity) and its cancellation
    SessionScheduled: occupancy.apply,
    SessionRescheduled: occupancy.apply,
    SessionCancelled: occupancy.apply,
    # enrollment: seats, waitlist, attendance
    LearnerEnrolled: occupancy.apply,
    LearnerWaitlisted: occupancy.apply,
    EnrollmentCancelled: occupancy.apply,
    AttendanceRecorded: occupancy.apply,
    # finance: budget lines
    BudgetAllocated: budgets.apply,
    CostIncurred: budgets.apply,
    CostPolicySet: ignore,  # rates for future costs; the costs themselves arrive as CostIncurred
}


def handlers() -> dict[type[IntegrationEvent], Handler]:
    return dict(HANDLERS)
