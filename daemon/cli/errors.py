"""The errors scriptctl reports, each rendered as one `scriptctl: error: ...` line."""

from __future__ import annotations

from typing import Any

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error that ends the command: `message` is the one line shown to the user.

    `details` are optional extra lines (indented under the error line), `body` is
    the JSON the daemon answered, printed on stdout under --json.
    """

    def __init__(
        self,
        message: str,
        *,
        details: tuple[str, ...] = (),
        body: Any = None,
        exit_code: int = EXIT_ERROR,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.body = body
        self.exit_code = exit_code


class UnreachableError(CliError):
    """The admin socket could not be reached, or the connection broke mid-request."""


class ApiError(CliError):
    """The daemon answered with an error (HTTP status >= 400)."""

    def __init__(self, status: int, body: Any, fallback: str) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.type = str(error.get("type") or f"http_{status}")
        message = str(error.get("message") or fallback)
        super().__init__(message, details=report_lines(error.get("report")), body=body)


def report_lines(report: Any) -> tuple[str, ...]:
    """The findings of a validation report as indented lines (errors first)."""
    if not isinstance(report, dict):
        return ()
    lines = []
    for level in ("errors", "warnings"):
        for finding in report.get(level) or ():
            lines.append("  " + finding_line(finding))
    return tuple(lines)


def finding_line(finding: Any) -> str:
    """One finding: `error [code] where: message (fix: ...)`."""
    if not isinstance(finding, dict):
        return str(finding)
    level = finding.get("level", "error")
    code = finding.get("code", "")
    where = finding.get("where") or ""
    text = f"{level} [{code}]" if code else str(level)
    if where:
        text += f" {where}"
    text += f": {finding.get('message', '')}"
    if finding.get("fix"):
        text += f" (fix: {finding['fix']})"
    return text
