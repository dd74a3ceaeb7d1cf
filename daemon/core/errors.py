"""Domain errors of scriptd.

Every refusal the lifecycle, the store or the builder can make is one of these.
Each carries a machine-readable `type` and the HTTP status it maps to; the admin
API turns them into `{"error": {"type", "message", ...}}` at one boundary
(daemon/admin/app.py), so nothing below it knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class ScriptdError(Exception):
    """Base of the errors a caller is meant to see."""

    type: str = "internal"
    http_status: int = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.extra}


class BadRequest(ScriptdError):
    type = "bad_request"
    http_status = 400


class NotFound(ScriptdError):
    type = "not_found"
    http_status = 404


class Conflict(ScriptdError):
    """Name taken, or an action the script's current status does not allow."""

    type = "conflict"
    http_status = 409


class PayloadTooLarge(ScriptdError):
    type = "payload_too_large"
    http_status = 413


class InvalidArchive(ScriptdError):
    """The project archive failed validation; `report` is the whole report."""

    type = "invalid_archive"
    http_status = 422

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message, report=report)


class ConfigError(Exception):
    """A bad config file: the message names the key, the value and what is allowed."""


class BuildError(Exception):
    """A build step failed; the message is the failure reason shown in the history."""
