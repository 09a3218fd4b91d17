"""Commands the enrollment service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.commands import CommandTime
from shared.contracts.enrollment import AttendanceStatus

MAX_BATCH = 1000

LearnerId = Annotated[str, Field(
    min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
    description="Opaque learner id issued by the client system (no names or e-mail addresses).",
    examples=["learner-0042"],
)]


class EnrollLearner(CommandTime):
    model_config = ConfigDict(extra="forbid")

    learner_id: LearnerId


class EnrollLearners(CommandTime):
    """Bulk import: every learner in one transaction, in the order given (seats first, then the waitlist)."""

    model_config = ConfigDict(extra="forbid")

    learners: list[LearnerId] = Field(min_length=1, max_length=MAX_BATCH)


class CancelEnrollment(CommandTime):
    model_config = ConfigDict(extra="forbid")


class RecordAttendance(CommandTime):
    model_config = ConfigDict(extra="forbid")

    status: AttendanceStatus


class AttendanceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrollment_id: str = Field(min_length=1, max_length=128, description="An enrollment of this session.")
    status: AttendanceStatus


class RecordAttendances(CommandTime):
    """Bulk import of one session's attendance: every record in one transaction, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    records: list[AttendanceRecord] = Field(min_length=1, max_length=MAX_BATCH)
