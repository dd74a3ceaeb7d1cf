"""Value types of archive validation: findings, the report and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.core.models import StepSpec

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem: what is wrong, where (entry name or `file:line[:col]`), how to fix it."""

    level: Level
    code: str
    message: str
    where: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {
            "level": self.level,
            "code": self.code,
            "message": self.message,
            "where": self.where,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found; `ok` is true when there is no error (warnings allowed)."""

    ok: bool
    language: str | None
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    functions: tuple[str, ...]
    entries: int
    unpacked_bytes: int
    step: StepSpec | None = None  # a code step's declared inputs and outputs

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "functions" if self.step is None else "step",
            "step": self.step.to_json() if self.step else None,
            "ok": self.ok,
            "language": self.language,
            "errors": [f.to_json() for f in self.errors],
            "warnings": [f.to_json() for f in self.warnings],
            "functions": list(self.functions),
            "entries": self.entries,
            "unpacked_bytes": self.unpacked_bytes,
        }


class ArchiveError(Exception):
    """An archive was refused; `report` holds every finding."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        first = report.errors[0].message if report.errors else "invalid archive"
        more = len(report.errors) - 1
        super().__init__(first + (f" (and {more} more error(s))" if more > 0 else ""))


# Beyond this many findings of one code, the rest are summed up in one finding,
# so a hostile archive of 10,000 bad names gives a readable report.
MAX_FINDINGS_PER_CODE = 20


@dataclass
class Findings:
    """Collects findings in order, capping repeats of the same code."""

    items: list[Finding] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def add(self, level: Level, code: str, message: str, where: str, fix: str) -> None:
        n = self._counts.get(code, 0) + 1
        self._counts[code] = n
        if n <= MAX_FINDINGS_PER_CODE:
            self.items.append(Finding(level, code, message, where, fix))

    def error(self, code: str, message: str, where: str, fix: str) -> None:
        self.add("error", code, message, where, fix)

    def warning(self, code: str, message: str, where: str, fix: str) -> None:
        self.add("warning", code, message, where, fix)

    def has_errors(self) -> bool:
        return any(f.level == "error" for f in self.items)

    def finish(self) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
        """(errors, warnings), with one summary finding per code that overflowed."""
        out = list(self.items)
        for code, n in self._counts.items():
            if n > MAX_FINDINGS_PER_CODE:
                first = next(f for f in self.items if f.code == code)
                extra = n - MAX_FINDINGS_PER_CODE
                out.append(
                    Finding(
                        first.level,
                        code,
                        f"{extra} more finding(s) like this one were left out",
                        "archive",
                        first.fix,
                    )
                )
        errors = tuple(f for f in out if f.level == "error")
        warnings = tuple(f for f in out if f.level == "warning")
        return errors, warnings
