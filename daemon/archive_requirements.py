"""requirements.txt checks: each line a PEP 508 requirement (via `packaging`).

Installer options (`-r`, `--index-url`, `-e`, ...) are legal for pip and uv, so
they pass with a warning; a trailing `--hash=...` is allowed after a requirement.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from daemon.archive_types import Findings

FILE = "requirements.txt"
_COMMENT = re.compile(r"(^|\s)#.*$")
_HASH = re.compile(r"\s+--hash[=\s]\S+")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments removed and `\\` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            lines.append((start, full))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def check_requirements(data: bytes, out: Findings) -> None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        out.error(
            "requirements_invalid",
            f"requirements.txt is not UTF-8 text (byte {e.start}).",
            FILE,
            "Save requirements.txt as UTF-8.",
        )
        return
    seen: dict[str, int] = {}
    for number, line in logical_lines(text):
        where = f"{FILE}:{number}"
        if line.startswith("-"):
            out.warning(
                "requirements_option",
                f"Line {number} is an installer option ({line.split()[0]}); it is passed to "
                "the installer as written.",
                where,
                "Make sure it works without files outside the archive and without private indexes.",
            )
            continue
        try:
            req = Requirement(_HASH.sub("", line))
        except InvalidRequirement as e:
            out.error(
                "requirements_invalid",
                f"Line {number} is not a valid requirement: {_first_line(str(e))}",
                where,
                "Write one package per line, like `requests==2.32.3` or `numpy>=1.26`.",
            )
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            out.warning(
                "requirements_duplicate",
                f"{req.name} is listed twice (lines {seen[name]} and {number}).",
                where,
                "Keep one line per package.",
            )
        seen.setdefault(name, number)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid syntax"
