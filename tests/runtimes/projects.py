"""The same small project written for each harness, for the conformance suite.

Every variant exposes the same functions with the same behaviour, so one test
runs unchanged against all of them; `Variant` holds what legitimately differs
(the language's own exception names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FUNCTIONS = {
    "add",
    "greet_async",
    "uses_plain",
    "shout",
    "flood",
    "boom",
    "nonjson",
    "die",
    "echo",
    "sleep",
    "huge_error",
}

PYTHON = {
    "main.py": """
import os
import time
from os.path import join  # imported: must not be exposed

import plainmod
from .lib.helpers import greet  # relative import between project files


def add(a, b):
    return a + b


async def greet_async(name):
    import asyncio
    await asyncio.sleep(0.001)
    return greet(name)


def uses_plain():
    return plainmod.VALUE


def shout(text, times):
    for _ in range(times):
        print(text)
    print("err", file=__import__("sys").stderr)
    return times


def flood(n):
    print("x" * n, end="")
    return n


def _inner():
    raise ValueError("bad input")


def boom():
    _inner()


def nonjson():
    return {1, 2}


def die(code):
    os._exit(code)


def echo(**payload):
    return payload


def sleep(s):
    time.sleep(s)
    return s


def huge_error(n):
    raise ValueError("e" * n)


def _private():
    return "hidden"
""",
    "lib/__init__.py": "",
    "lib/helpers.py": 'def greet(name):\n    return "hello " + name\n',
    "plainmod.py": "VALUE = 42\n",
}

_JS_BODY = """
function inner() {
  throw new TypeError('bad input');
}

const functions = {
  add: ({ a, b }) => a + b,
  greet_async: async ({ name }) => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return greet(name);
  },
  uses_plain: () => plain.VALUE,
  shout: ({ text, times }) => {
    for (let i = 0; i < times; i += 1) console.log(text);
    console.error('err');
    return times;
  },
  flood: ({ n }) => {
    process.stdout.write('x'.repeat(n));
    return n;
  },
  boom: () => inner(),
  nonjson: () => 10n,
  die: ({ code }) => process.exit(code),
  echo: (payload) => payload,
  sleep: ({ s }) => new Promise((resolve) => setTimeout(() => resolve(s), s * 1000)),
  huge_error: ({ n }) => {
    throw new Error('e'.repeat(n));
  },
};
"""

NODE_CJS = {
    "main.js": "const { greet } = require('./lib/helpers');\n"
    "const plain = require('./plain.js');\n" + _JS_BODY + "\nmodule.exports = functions;\n",
    "lib/helpers.js": "exports.greet = (name) => 'hello ' + name;\n",
    "plain.js": "exports.VALUE = 42;\n",
}

NODE_ESM = {
    "package.json": '{"name": "conformance", "type": "module"}\n',
    "main.js": "import { greet } from './lib/helpers.js';\n"
    "import * as plain from './plain.js';\n"
    + _JS_BODY
    + "\nexport const { add, greet_async, uses_plain, shout, flood, boom, nonjson, die, echo,"
    " sleep, huge_error } = functions;\nexport const notAFunction = 1;\n",
    "lib/helpers.js": "export const greet = (name) => 'hello ' + name;\n",
    "plain.js": "export const VALUE = 42;\n",
}


@dataclass(frozen=True)
class Variant:
    name: str
    language: str
    files: dict[str, str]
    main: str
    error_type: str  # what boom() raises
    main_file: str  # how main appears in a traceback
    load_errors: dict[str, tuple[str, str, str]]  # kind -> (source of main, type, text)


VARIANTS = [
    Variant(
        "python",
        "python",
        PYTHON,
        "main.py",
        "ValueError",
        "main.py",
        {
            "syntax": ("def f(:\n    pass\n", "SyntaxError", "main.py"),
            "missing": (
                "import nonexistent_pkg_xyz\n",
                "ModuleNotFoundError",
                "nonexistent_pkg_xyz",
            ),
            "raises": (
                "def f():\n    pass\n\nraise RuntimeError('boom at import')\n",
                "RuntimeError",
                "boom at import",
            ),
        },
    ),
    Variant(
        "node-cjs",
        "javascript",
        NODE_CJS,
        "main.js",
        "TypeError",
        "main.js",
        {
            "syntax": ("exports.f = (;\n", "SyntaxError", "main.js"),
            "missing": ("require('nonexistent-pkg-xyz');\n", "Error", "nonexistent-pkg-xyz"),
            "raises": (
                "exports.f = () => 1;\nthrow new Error('boom at import');\n",
                "Error",
                "boom at import",
            ),
        },
    ),
    Variant(
        "node-esm",
        "javascript",
        NODE_ESM,
        "main.js",
        "TypeError",
        "main.js",
        {
            "syntax": ("export function f( {\n", "SyntaxError", "main.js"),
            "missing": ("import 'nonexistent-pkg-xyz';\n", "Error", "nonexistent-pkg-xyz"),
            "raises": (
                "export const f = () => 1;\nthrow new Error('boom at import');\n",
                "Error",
                "boom at import",
            ),
        },
    ),
]


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"))
    return root
