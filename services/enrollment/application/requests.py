"""Requests taken from Kafka (``ilt.enrollment.requests``): the same command handlers as the HTTP API, run in the
consumer's transaction. Each ends with a request-accepted or request-rejected event (``shared.commands``).

Unlike HTTP, a request for a session enrollment has not heard of does not wait: it is rejected at once with
``unknown_session`` and ``retryable`` true (the consumer must not hold up the records behind it)."""

from __future__ import annotations

from typing import Any

from shared.commands import Trace, request_handlers
from shared.contracts.requests import CancelEnrollmentRequested, EnrollLearnerRequested, RecordAttendanceRequested
from shared.store.port import UnitOfWork

from . import handlers
from .commands import CancelEnrollment, EnrollLearner, RecordAttendance


async def enroll(uow: UnitOfWork, request: EnrollLearnerRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = EnrollLearner.model_validate(request.model_dump(exclude={"session_id"}))
    return await handlers.decide_enroll(uow, request.session_id, cmd, trace)


async def cancel(uow: UnitOfWork, request: CancelEnrollmentRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = CancelEnrollment.model_validate(request.model_dump(exclude={"enrollment_id"}))
    return await handlers.decide_cancel(uow, request.enrollment_id, cmd, trace)


async def attendance(uow: UnitOfWork, request: RecordAttendanceRequested,
                     trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = RecordAttendance.model_validate(request.model_dump(exclude={"enrollment_id"}))
    return await handlers.decide_attendance(uow, request.enrollment_id, cmd, trace)


HANDLERS = request_handlers({
    EnrollLearnerRequested: enroll,
    CancelEnrollmentRequested: cancel,
    RecordAttendanceRequested: attendance,
})
