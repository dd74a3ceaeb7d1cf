"""What a log line is about: the script, version, replica and execution it concerns.

Held in context variables, so a task binds them once and every log line of that task,
and of the tasks it creates afterwards (asyncio copies the context), carries them: the
runner binds script and version before a version's replicas start, the pool binds the
replica around each start, the gateway binds the execution for a call. A log call can
also pass them as `extra={"script": ..., "execution_id": ...}`. The journal handler
(daemon/core/journal_log.py) turns them into fields; the text log ignores them.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

__all__ = ["FIELDS", "ContextFields", "bind", "current"]

# the attribute of a record (and of `extra=`) -> the journal field
FIELDS = {
    "script": "SCRIPTD_SCRIPT",
    "version": "SCRIPTD_VERSION",
    "replica": "SCRIPTD_REPLICA",
    "execution_id": "SCRIPTD_EXECUTION_ID",
}
_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"scriptd_log_{name}", default=None) for name in FIELDS
}


def bind(**fields: object) -> None:
    """Set fields (script, version, replica, execution_id) for the current task and
    the tasks it creates from now on."""
    for name, value in fields.items():
        _VARS[name].set(None if value is None else str(value))


def current() -> dict[str, str]:
    """The fields bound in this context."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


class ContextFields(logging.Filter):
    """Puts the bound fields on each record as journal field attributes (upper case,
    which systemd.journal.JournalHandler sends as fields); `extra=` values win."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current()
        for name, field in FIELDS.items():
            value = getattr(record, name, None)
            value = fields.get(name) if value is None else str(value)
            if value is not None:
                setattr(record, field, value)
        return True
