"""One code step written for each harness, for the step conformance suite.

The body does what its `mode` input says, so one running supervisor per
language serves every case: greet (the seed's example), echo (each x_<k>
input copied to the y_<k> output: every type code in and out), kinds (the
type the body sees for each input), flood/big (outputs.log limits), fail (an
exception after some outputs were written), wrong_out/undeclared (bad writes),
print (stdout/stderr beside the log), leak (nothing survives between calls).
"""

from __future__ import annotations

from dataclasses import dataclass

OBJECT = "6f1c0c6e-8d4b-4a51-9a4e-0b7c8e1d2f30"
FIELD = "a3b2c1d0-1111-4222-8333-944455556666"

# key -> type code; the step has an input x_<key> and an output y_<key> for each.
TYPED = {
    "b": "b",
    "d": "d",
    "dt": "dt",
    "n": "n",
    "p": "p",
    "s": "s",
    "u": "u",
    "e": f"e<{OBJECT}>",
    "o": f"o<{OBJECT},{FIELD}>",
    "ab": "a[b]",
    "ad": "a[d]",
    "adt": "a[dt]",
    "an": "a[n]",
    "ap": "a[p]",
    "a_s": "a[s]",
    "au": "a[u]",
    "ae": f"a[e<{OBJECT}>]",
    "ao": f"a[o<{OBJECT},{FIELD}>]",
    "l": "l",
    "f": 'a["f"]',
}

SPEC = {
    "inputs": {
        "mode": "s",
        "name": "s",
        "count": "n",
        "size": "n",
        **{f"x_{key}": code for key, code in TYPED.items()},
    },
    "outputs": {
        "greeting": "s",
        "wrong": "s",
        "kinds": "l",
        "leaked": "b",
        **{f"y_{key}": code for key, code in TYPED.items()},
    },
}

PYTHON_STEP = """
from .helpers import salute  # a relative import of a project file

mode = inputs.mode
if mode == "greet":
    outputs.greeting = salute(inputs.name)
elif mode == "echo":
    for key in inputs:
        if key.startswith("x_") and inputs[key] is not None:
            outputs["y_" + key[2:]] = inputs[key]
elif mode == "kinds":
    outputs.kinds = [
        [key, type(inputs[key]).__name__] for key in inputs
        if key.startswith("x_") and inputs[key] is not None
    ]
elif mode == "flood":
    for i in range(int(inputs.count)):
        outputs.log(str(i).ljust(int(inputs.size), "x"))
elif mode == "big":
    outputs.log("z" * int(inputs.size))
elif mode == "fail":
    outputs.greeting = "partial"
    outputs.log("before the error")
    raise ValueError("name is required")
elif mode == "wrong_out":
    outputs.wrong = 42
elif mode == "undeclared":
    outputs.nope = 1
elif mode == "print":
    import sys
    print("to stdout")
    print("to stderr", file=sys.stderr)
    outputs.log("to the log")
elif mode == "leak":
    outputs.leaked = "left_behind" in globals()
    left_behind = True
"""

NODE_STEP = """
const { salute } = require('./helpers.js');

switch (inputs.mode) {
  case 'greet':
    outputs.greeting = salute(inputs.name);
    break;
  case 'echo':
    for (const key of Object.keys(inputs)) {
      if (key.startsWith('x_') && inputs[key] !== null) outputs[`y_${key.slice(2)}`] = inputs[key];
    }
    break;
  case 'kinds': {
    const kind = (v) => (typeof v === 'object' ? v.constructor.name : typeof v);
    outputs.kinds = Object.keys(inputs)
      .filter((key) => key.startsWith('x_') && inputs[key] !== null)
      .map((key) => [key, kind(inputs[key])]);
    break;
  }
  case 'flood':
    for (let i = 0; i < Number(inputs.count); i += 1) {
      outputs.log(String(i).padEnd(Number(inputs.size), 'x'));
    }
    break;
  case 'big':
    outputs.log('z'.repeat(Number(inputs.size)));
    break;
  case 'fail':
    outputs.greeting = 'partial';
    outputs.log('before the error');
    throw new RangeError('name is required');
  case 'wrong_out':
    outputs.wrong = 42;
    break;
  case 'undeclared':
    outputs.nope = 1;
    break;
  case 'print':
    console.log('to stdout');
    console.error('to stderr');
    outputs.log('to the log');
    break;
  case 'leak':
    outputs.leaked = module.exports.leftBehind === true; // module is fresh per call
    module.exports.leftBehind = true;
    break;
  default:
    throw new Error(`unknown mode ${inputs.mode}`);
}
"""


@dataclass(frozen=True)
class StepVariant:
    name: str
    language: str
    files: dict[str, str]
    main: str
    error_type: str  # what mode "fail" raises
    kinds: dict[str, str]  # x_<key> -> the type the body sees (echo inputs of EXAMPLES)
    number_kinds: dict[str, str]  # the JSON text of an n -> the type the body sees
    syntax_error: str  # a body that does not parse


PY_KINDS = {"b": "bool", "d": "date", "dt": "datetime", "n": "int", "p": "str", "s": "str",
            "u": "UUID", "e": "EntityRecord", "o": "FieldOption", "l": "list",
            "f": "list"}  # fmt: skip
JS_KINDS = {"b": "boolean", "d": "string", "dt": "Date", "n": "number", "p": "string",
            "s": "string", "u": "string", "e": "EntityRecord", "o": "FieldOption", "l": "Array",
            "f": "Array"}  # fmt: skip

STEP_VARIANTS = [
    StepVariant(
        "python",
        "python",
        {"main.py": PYTHON_STEP, "helpers.py": "def salute(name):\n    return f'Hello, {name}!'\n"},
        "main.py",
        "ValueError",
        PY_KINDS,
        {"3": "int", "2.5": "Decimal", "1" + "0" * 30: "int", "0." + "1" * 25: "Decimal"},
        "outputs.greeting = (\n",
    ),
    StepVariant(
        "node",
        "javascript",
        {"main.js": NODE_STEP, "helpers.js": "exports.salute = (name) => `Hello, ${name}!`;\n"},
        "main.js",
        "RangeError",
        JS_KINDS,
        {"3": "number", "2.5": "number", "1" + "0" * 30: "bigint", "0." + "1" * 25: "Decimal"},
        "outputs.greeting = (;\n",
    ),
]
