"""Errors a command can end with. The HTTP layer turns them into JSON bodies with the matching status."""

from __future__ import annotations

from typing import Any


class CommandRejected(Exception):
    status_code = 409
    code = "rejected"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update(self.details)
        if self.retry_after is not None:
            body["retryable"] = True
        return body


class Conflict(CommandRejected):
    status_code = 409
    code = "conflict"


class NotFound(CommandRejected):
    status_code = 404
    code = "not_found"


class Invalid(CommandRejected):
    """Input that is well-formed JSON but breaks a rule: 422 naming the field."""

    status_code = 422
    code = "invalid"

    def __init__(self, field: str, reason: str, **kwargs: Any) -> None:
        super().__init__(f"{field}: {reason}", **kwargs)
        self.details = {"detail": [{"field": field, "reason": reason}], **self.details}
