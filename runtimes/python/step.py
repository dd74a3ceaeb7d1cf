"""Code steps in Python: a main.py body run per call with `inputs` and `outputs`.

The body is compiled once (by the supervisor before it forks, or by a spawned
worker at boot) and executed for each `run` frame in fresh globals, as the
module `_scriptd_project.main`, so relative imports of project files work and
nothing a call defines leaks into the next. The declared inputs and outputs
(the step spec) come from the supervisor's --step-spec; values are checked
with typed.py. `outputs.log(message)` keeps timestamped messages within the
limits written in protocol.py. Standard library only.
"""

from __future__ import annotations

import builtins
import keyword
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Any


class StepSpecError(ValueError):
    """The declared inputs/outputs are not valid."""


class Spec:
    """Declared inputs and outputs: name -> TypeCode, in declaration order."""

    def __init__(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.inputs, self.outputs = inputs, outputs

    def describe(self) -> dict[str, dict[str, str]]:
        return {
            "inputs": {name: code.text for name, code in self.inputs.items()},
            "outputs": {name: code.text for name, code in self.outputs.items()},
        }


def parse_spec(text: str | None, typed: Any, loads: Any) -> Spec:
    """The spec from its JSON text ({"inputs": {name: code}, "outputs": {...}});
    every problem at once in one StepSpecError."""
    try:
        data = loads(text) if text else {}
    except ValueError as exc:
        raise StepSpecError(f"--step-spec is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StepSpecError("--step-spec must be a JSON object with inputs and outputs")
    problems: list[str] = []
    sides = {}
    for side in ("inputs", "outputs"):
        declared = data.get(side) or {}
        if not isinstance(declared, dict):
            problems.append(f"{side} must be an object of name: type code")
            declared = {}
        sides[side] = _parse_side(side, declared, typed, problems)
    if problems:
        raise StepSpecError("; ".join(problems))
    return Spec(sides["inputs"], sides["outputs"])


def _parse_side(side: str, declared: dict[str, Any], typed: Any, problems: list[str]) -> dict:
    codes = {}
    for name, text in declared.items():
        problem = name_problem(name, side)
        if problem:
            problems.append(problem)
            continue
        try:
            codes[name] = typed.parse_type(text)
        except ValueError as exc:
            problems.append(f'{side[:-1]} "{name}": {exc}')
    return codes


def name_problem(name: str, side: str) -> str | None:
    """Why `name` cannot be an input/output name, or None."""
    if not (name.isidentifier() and name.isascii()) or keyword.iskeyword(name):
        return f'{side[:-1]} name "{name}" is not an identifier (letters, digits, _)'
    if name.startswith("_") or (side == "outputs" and name == "log"):
        return f'{side[:-1]} name "{name}" is reserved'
    return None


def compile_body(source: str, main: str) -> types.CodeType:
    """main.py compiled once; raises SyntaxError (or FileNotFoundError)."""
    path = os.path.join(os.path.realpath(source), main)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the project has no {main} (looked in {source})")
    with open(path, "rb") as f:
        text = f.read()
    return compile(text, path, "exec", dont_inherit=True)


class Inputs:
    """The decoded inputs: `inputs.name` or `inputs["name"]`; read-only."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            declared = ", ".join(self._values) or "none"
            raise AttributeError(f"no input {name!r} (declared inputs: {declared})") from None

    __getitem__ = __getattr__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("inputs are read-only: write to outputs")

    def __iter__(self) -> Any:
        return iter(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        return f"inputs({self._values!r})"


class Outputs:
    """What the step writes: declared names only, each value checked on write;
    `outputs.log(message)` for the execution's log."""

    __slots__ = ("_codes", "_encoded", "_log", "_typed", "_values")

    def __init__(self, codes: dict[str, Any], typed: Any, log: Log) -> None:
        fields = {"_codes": codes, "_typed": typed, "_log": log, "_values": {}, "_encoded": {}}
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def log(self, message: object) -> None:
        self._log.add(message)

    def __setattr__(self, name: str, value: Any) -> None:
        code = self._codes.get(name)
        if code is None:
            declared = ", ".join(self._codes) or "none"
            raise OutputError(f'output "{name}" is not declared (declared outputs: {declared})')
        try:
            encoded = self._typed.encode(code, value, name)
        except self._typed.TypedValueError as exc:
            raise OutputError(str(exc)) from None
        self._values[name] = value
        self._encoded[name] = encoded

    __setitem__ = __setattr__

    def __getattr__(self, name: str) -> Any:
        if name in self._codes:
            return self._values.get(name)
        raise AttributeError(f"no output {name!r} (declared outputs: {', '.join(self._codes)})")

    __getitem__ = __getattr__

    def encoded(self, every: bool) -> tuple[dict[str, Any], list[str]]:
        """(typed outputs, problems): all declared ones (unset = null) when
        `every`, else only those written; a value changed into a wrong type
        after it was written is a problem and left out."""
        out, problems = {}, []
        for name, code in self._codes.items():
            if name not in self._values and not every:
                continue
            value = self._values.get(name)
            if name in self._encoded and not isinstance(value, (list, dict)):
                out[name] = self._encoded[name]  # immutable: as it was when written
                continue
            try:  # unset, or a list the step may have changed since
                out[name] = self._typed.encode(code, value, name)
            except self._typed.TypedValueError as exc:
                problems.append(str(exc))
        return out, problems


class OutputError(TypeError):
    """An output that is not declared or does not fit its declared type."""


class Log:
    """outputs.log(): timestamped messages, cut per message and per execution
    (limits: LOG_* of protocol.py)."""

    def __init__(self, limits: Any) -> None:
        self.message_max, self.total_max = limits.LOG_MESSAGE_MAX, limits.LOG_TOTAL_MAX
        self.marker = limits.LOG_MARKER
        self.entries: list[dict[str, str]] = []
        self.kept_bytes = 0
        self.discarded = 0

    def add(self, message: object) -> None:
        if self.discarded:  # past the execution's budget: everything later goes
            self.discarded += 1
            return
        data = self._truncate(str(message).encode("utf-8", "replace"))
        if self.kept_bytes + len(data) > self.total_max:
            self.discarded = 1
            return
        self.kept_bytes += len(data)
        self.entries.append({"ts": _timestamp(), "message": data.decode("utf-8")})

    def _truncate(self, data: bytes) -> bytes:
        """At most message_max bytes, the marker included, cut on a character boundary."""
        if len(data) <= self.message_max:
            return data
        room = self.message_max - len(self.marker.format(dropped=len(data)).encode())
        while room > 0 and data[room] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            room -= 1
        return data[:room] + self.marker.format(dropped=len(data) - room).encode()


def _timestamp() -> str:
    now = time.time()
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((now - seconds) * 1e6):06d}Z"
    )


class Step:
    """A compiled step and its spec; run() executes it for one `run` frame."""

    def __init__(
        self, code: types.CodeType, spec: Spec, typed: Any, package: str, protocol: Any
    ) -> None:
        self.code, self.spec, self.typed, self.package = code, spec, typed, package
        self.protocol = protocol

    def decode_inputs(self, wire: Any) -> dict[str, Any]:
        """Every declared input (missing = None); InputError naming each bad one."""
        if wire is None:
            wire = {}
        if not isinstance(wire, dict):
            raise InputError("inputs must be a JSON object of name: typed value")
        problems = [
            f'input "{name}" is not declared (declared inputs: {", ".join(self.spec.inputs)})'
            for name in wire
            if name not in self.spec.inputs
        ]
        values = {}
        for name, code in self.spec.inputs.items():
            try:
                values[name] = self.typed.decode(code, wire.get(name), name)
            except self.typed.TypedValueError as exc:
                problems.append(str(exc))
        if problems:
            raise InputError("; ".join(problems))
        return values

    def run(self, inputs: dict[str, Any], outputs: Outputs) -> None:
        scope = {
            "__name__": f"{self.package}.main",
            "__package__": self.package,
            "__file__": self.code.co_filename,
            "__builtins__": builtins,
            "inputs": Inputs(inputs),
            "outputs": outputs,
        }
        exec(self.code, scope)

    def new_outputs(self, log: Log) -> Outputs:
        return Outputs(self.spec.outputs, self.typed, log)


class InputError(ValueError):
    """Inputs that do not fit the declared ones: the step did not run."""


def execute(step: Step, wire: Any, result: dict[str, Any], error_info: Any) -> None:
    """Run the step for one frame's inputs; fills result's ok, error, outputs
    (partial ones after an error), logs and logs_discarded."""
    log = Log(step.protocol)
    outputs = step.new_outputs(log)
    result["ok"] = False
    try:
        step.run(step.decode_inputs(wire), outputs)
        result["ok"] = True
    except InputError as exc:
        result["error"] = {"type": "InputError", "message": str(exc), "traceback": ""}
    except BaseException as exc:  # the user's SystemExit stops the step too
        result["error"] = error_info(exc)
    values, problems = outputs.encoded(every=result["ok"])
    if problems and result["ok"]:
        result["ok"] = False
        result["error"] = {"type": "OutputError", "message": "; ".join(problems), "traceback": ""}
    result.update(outputs=values, logs=log.entries, logs_discarded=log.discarded)


def result_text(result: dict[str, Any], typed: Any, dumps: Any, max_frame: int) -> str:
    """The result frame's JSON: the outputs travel as JSON text in "outputs_json"
    (exact numbers that a daemon can forward without parsing them); past
    max_frame the outputs are dropped for a ResultTooLarge error."""
    result["outputs_json"] = typed.dumps(result.pop("outputs", {}), dumps)
    text = dumps(result)
    size = len(text.encode("utf-8"))
    if size <= max_frame:
        return text
    result["ok"] = False
    result["error"] = {
        "type": "ResultTooLarge",
        "traceback": "",
        "message": f"the step's result is {size} bytes as JSON, over the {max_frame} allowed",
    }
    result.update(logs=[], outputs_json="{}")
    return dumps(result)  # type: ignore[no-any-return]
