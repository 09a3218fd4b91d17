"""Commands the enrollment service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.commands import CommandTime
from shared.contracts.enrollment import AttendanceStatus
from shared.contracts.requests import (  # the fields the HTTP bodies share with the Kafka requests
    EnrollLearnerFields,
    LearnerId,
    RecordAttendanceFields,
)

MAX_BATCH = 1000


class EnrollLearner(EnrollLearnerFields, CommandTime):
    model_config = ConfigDict(extra="forbid")


class EnrollLearners(CommandTime):
    """Bulk import: every learner in one transaction, in the order given (seats first, then the waitlist)."""

    model_config = ConfigDict(extra="forbid")

    learners: list[LearnerId] = Field(min_length=1, max_length=MAX_BATCH)


class CancelEnrollment(CommandTime):
    model_config = ConfigDict(extra="forbid")


class RecordAttendance(RecordAttendanceFields, CommandTime):
    model_config = ConfigDict(extra="forbid")


class AttendanceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrollment_id: str = Field(min_length=1, max_length=128, description="An enrollment of this session.")
    status: AttendanceStatus


class RecordAttendances(CommandTime):
    """Bulk import of one session's attendance: every record in one transaction, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    records: list[AttendanceRecord] = Field(min_length=1, max_length=MAX_BATCH)
