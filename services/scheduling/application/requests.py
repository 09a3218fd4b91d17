"""Requests taken from Kafka (``ilt.scheduling.requests``): the same command handlers as the HTTP API, run in the
consumer's transaction. Each ends with a request-accepted or request-rejected event (``shared.commands``)."""

from __future__ import annotations

from typing import Any

from shared.commands import Trace, request_handlers
from shared.contracts.requests import CancelSessionRequested, RescheduleSessionRequested, ScheduleSessionRequested
from shared.store.port import UnitOfWork

from . import handlers
from .commands import CancelSession, RescheduleSession, ScheduleSession


async def schedule(uow: UnitOfWork, request: ScheduleSessionRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = ScheduleSession.model_validate(request.model_dump())
    return await handlers.decide_schedule(uow, cmd, trace, request.session_id)


async def reschedule(uow: UnitOfWork, request: RescheduleSessionRequested,
                     trace: Trace) -> tuple[dict[str, Any], bool]:
    # only the fields the sender gave: the others keep their current value
    cmd = RescheduleSession.model_validate(request.model_dump(exclude_unset=True, exclude={"session_id"}))
    return await handlers.decide_reschedule(uow, request.session_id, cmd, trace)


async def cancel(uow: UnitOfWork, request: CancelSessionRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = CancelSession.model_validate(request.model_dump(exclude={"session_id"}))
    return await handlers.decide_cancel(uow, request.session_id, cmd, trace)


HANDLERS = request_handlers({
    ScheduleSessionRequested: schedule,
    RescheduleSessionRequested: reschedule,
    CancelSessionRequested: cancel,
})
