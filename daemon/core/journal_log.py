"""Logs to journald with structured fields, through systemd's own Python binding.

systemd.journal.JournalHandler (PyPI systemd-python, built against libsystemd) writes
the journal's native protocol to /run/systemd/journal/socket: MESSAGE, PRIORITY,
SYSLOG_IDENTIFIER=scriptd, LOGGER, CODE_FILE/LINE/FUNC, and the fields of
daemon/core/log_context.py (SCRIPTD_SCRIPT, SCRIPTD_VERSION, SCRIPTD_REPLICA,
SCRIPTD_EXECUTION_ID), so `journalctl -u scriptd SCRIPTD_SCRIPT=hello` selects one
script's lines. `logs.journal`: "auto" (default) uses it when stderr is the journal
(systemd sets JOURNAL_STREAM to its device:inode), "yes" always, "no" never.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import IO, Any

from daemon.core.log_context import ContextFields

__all__ = [
    "JOURNAL_MODES",
    "journal_handler",
    "log_to_journal",
    "stderr_is_journal",
    "wants_journal",
]

JOURNAL_MODES = ("auto", "yes", "no")
IDENTIFIER = "scriptd"
# journald keeps only fields named like this (upper case, digits, _; not leading _)
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")


def stderr_is_journal(stream: IO[str] | None = None) -> bool:
    """systemd's test: JOURNAL_STREAM names the device and inode of our stderr."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return bool(expected) and expected == f"{st.st_dev}:{st.st_ino}"


def wants_journal(mode: str) -> bool:
    return mode == "yes" or (mode == "auto" and stderr_is_journal())


def journal_handler() -> logging.Handler:
    """The journal handler with the context fields; ImportError without systemd-python."""
    import systemd.journal as journal

    def send(message: str, /, **fields: Any) -> None:  # a record has "message" too
        # JournalHandler passes every attribute of the record; journald would drop
        # the lower-case ones (msg, args, levelname...): they are not sent at all.
        kept = {k: v for k, v in fields.items() if _FIELD_NAME.fullmatch(k) and v is not None}
        journal.send(message, **kept)

    handler = journal.JournalHandler(sender_function=send, SYSLOG_IDENTIFIER=IDENTIFIER)
    handler.addFilter(ContextFields())
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def log_to_journal(mode: str, level: str) -> None:
    """Under systemd (or logs.journal = "yes"): the daemon's log goes to journald with
    fields (script, version, replica, execution id) instead of plain lines on stderr."""
    if not wants_journal(mode):
        return
    try:
        handler = journal_handler()
    except ImportError as exc:
        logging.getLogger("scriptd").warning(
            "logs.journal = %s, but systemd-python is missing (%s): logging to stderr; "
            "install scriptd[journal]", mode, exc,
        )  # fmt: skip
        return
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler.setLevel(level)
    root.addHandler(handler)
