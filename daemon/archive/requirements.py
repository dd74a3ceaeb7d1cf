"""requirements.txt checks: each line a PEP 508 requirement (via `packaging`).

Builds take packages from the configured index only, by name and version, and
the daemon decides how (wheels only unless build.allow_source_builds). So every
installer option is an error (`-r`, `-c`, `-e`, `--index-url`, `--find-links`,
`--only-binary`, ...: they would read files of the host or pick another index),
except a `--hash=...` after a requirement. So is a requirement that names its
source (`pkg @ file:///...`, `pkg @ https://...`, `git+...`, a local path or
archive file): only registry packages are installed.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from daemon.archive.types import Findings

FILE = "requirements.txt"
_COMMENT = re.compile(r"(^|\s)#.*$")
_HASH = re.compile(r"\s+--hash[=\s]\S+")
# What pip would read as a path or URL rather than a name: ./x, ../x, /x, ~/x,
# scheme://..., git+..., or a file name of a wheel or source archive.
_LOCAL = re.compile(
    r"^(\.{1,2}[/\\]|[/\\~]|[a-z][a-z0-9+.-]*:|\S+\.(whl|zip|tar\.gz|tgz|tar\.bz2)(\s|$))",
    re.IGNORECASE,
)


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
            option = line.split()[0].split("=")[0]
            out.error(
                "requirements_option",
                f"Line {number} is an installer option ({option}); options are not allowed: "
                "packages come from the configured index only.",
                where,
                "Remove the line and list each package by name and version "
                "(`--hash=...` after a requirement is fine).",
            )
            continue
        if _LOCAL.match(line):
            _refuse_source(out, number, where, "a local path or file")
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
        if req.url is not None:
            kind = "a local file" if req.url.startswith("file:") else f"the URL {req.url}"
            _refuse_source(out, number, where, kind)
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


def _refuse_source(out: Findings, number: int, where: str, what: str) -> None:
    out.error(
        "requirements_source",
        f"Line {number} installs from {what}; packages come from the configured index only.",
        where,
        "Publish the package to the index and name it with a version, like `mypkg==1.2.0`, "
        "or copy its code into the project as a module.",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid syntax"
