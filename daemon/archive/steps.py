"""Code steps: the step.toml that makes a project a step, and its checks.

A project with a `step.toml` at its root is a code step (seed 004): its main.py
(main.js) is the step's body, run for each call with `inputs` and `outputs` in
scope (runtimes/python/step.py). step.toml declares the names and type codes:

    [inputs]
    name = "s"

    [outputs]
    greeting = "s"

The spec travels to the supervisor as JSON (`--kind step --step-spec`); the
runtime's codec (runtimes/python/typed.py) owns what each code means, this
module only checks the grammar, so a bad spec is refused at validation rather
than at the replica's start.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from pathlib import Path

from daemon.core.models import StepSpec

__all__ = ["STEP_FILE", "StepSpec", "StepSpecError", "parse_step_toml", "read_step_spec"]

STEP_FILE = "step.toml"
SCALAR_CODES = frozenset({"b", "d", "dt", "n", "p", "s", "u"})
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ITEM = re.compile(rf"(?:b|d|dt|n|p|s|u|e<\s*{_UUID}\s*>|o<\s*{_UUID}\s*,\s*{_UUID}\s*>)")
_CODE = re.compile(rf"{_ITEM.pattern}|a\[{_ITEM.pattern}\]|l|a\[\"f\"\]|a\[f\]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KNOWN_CODES = 'b, d, dt, n, p, s, u, e<uuid>, o<uuid,uuid>, a[T], l, a["f"]'


class StepSpecError(ValueError):
    """step.toml is not a valid step spec; `problems` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def name_problem(name: str, side: str) -> str | None:
    """Why `name` cannot be an input/output name (the runtime's rule), or None."""
    what = side[:-1]
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        return f'{what} name "{name}" is not an identifier (letters, digits, _)'
    if name.startswith("_") or (side == "outputs" and name == "log"):
        return f'{what} name "{name}" is reserved'
    return None


def parse_step_toml(data: bytes) -> StepSpec:
    """The spec of a step.toml; StepSpecError naming every problem."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StepSpecError([f"{STEP_FILE} is not valid TOML: {exc}"]) from None
    problems = [
        f'{STEP_FILE} has an unknown section "{key}" (allowed: inputs, outputs)'
        for key in doc
        if key not in ("inputs", "outputs")
    ]
    sides = {side: _side(side, doc.get(side, {}), problems) for side in ("inputs", "outputs")}
    if problems:
        raise StepSpecError(problems)
    return StepSpec(sides["inputs"], sides["outputs"])


def _side(side: str, table: object, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        problems.append(f"[{side}] must be a table of name = type code")
        return ()
    declared = []
    for name, code in table.items():
        problem = name_problem(name, side)
        if problem is None and not (isinstance(code, str) and _CODE.fullmatch(code)):
            problem = f'{side[:-1]} "{name}": unknown type code {code!r} (known: {KNOWN_CODES})'
        if problem:
            problems.append(problem)
        else:
            declared.append((name, code))
    return tuple(declared)


def read_step_spec(source_dir: Path) -> str | None:
    """The --step-spec JSON of an unpacked project, or None when it is not a step.
    Raises StepSpecError (validation refused such a project already)."""
    path = source_dir / STEP_FILE
    if not path.is_file():
        return None
    return parse_step_toml(path.read_bytes()).json_text()
