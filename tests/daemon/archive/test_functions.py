"""Exposed-function listing: Python by ast, JavaScript by a static scan."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.archive.functions import (
    list_functions_javascript,
    list_functions_python,
    tokenize_javascript,
)
from tests.conftest import require
from tests.helpers import REPO

SAMPLES = REPO / "runtimes" / "samples"


def test_python_top_level_defs_only() -> None:
    src = """
import os
from .helpers import imported_fn
from json import loads as parse

def a(x=1): pass
async def b(**kw): pass
def _private(): pass
class C:
    def method(self): pass
if True:
    def conditional(): pass
def outer():
    def inner(): pass
lam = lambda: 1
def parse(): pass
"""
    assert list_functions_python(src) == ["a", "b", "outer", "parse"]


def test_python_def_rebound_by_a_later_import_is_dropped() -> None:
    assert list_functions_python("def f(): pass\nfrom x import f\ndef g(): pass\n") == ["g"]


def test_python_syntax_error_raises() -> None:
    with pytest.raises(SyntaxError):
        list_functions_python("def (:")


JS_ESM = """
import { helper } from './lib/helper.js';
import * as util from './util.js';
export function plain(a) { return a; }
export async function later({ x }) { await null; }
export function* gen() {}
export const arrow = (x) => x * 2;
export const asyncArrow = async ({ y }) => y;
export let single = x => x;
export const notFn = 42;
export const called = wrap(plain);
function local1() {}
const local2 = function () {};
export { local1, local2 as renamed, helper, notFn as alsoNot };
export { fromElsewhere } from './other.js';
export default function main() {}
export function _hidden() {}
"""


def test_javascript_esm_exports() -> None:
    assert list_functions_javascript(JS_ESM) == [
        "plain",
        "later",
        "gen",
        "arrow",
        "asyncArrow",
        "single",
        "local1",
        "renamed",
    ]


JS_CJS = """
'use strict';
const { helper } = require('./lib/helper');
const other = require('./other');
function one() {}
async function two() {}
const three = async () => 3;
module.exports = {
  one,
  two,
  three,
  helper,              // imported: not defined here
  four: function () {},
  five: (a, b) => a + b,
  async six() {},
  seven() { return { nested() {} }; },
  eight: other.thing,
  'nine': async x => x,
  ...other,
  [computed]: () => 1,
  get prop() { return 1; },
  ten: one,
  _private() {},
};
module.exports.eleven = function () {};
exports.twelve = async () => {};
exports.thirteen = other.fn;
module.exports.fourteen = one;
"""


def test_javascript_commonjs_exports() -> None:
    assert list_functions_javascript(JS_CJS) == [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fourteen",
    ]


def test_hoisted_function_used_before_its_definition() -> None:
    src = "module.exports = { later };\nfunction later() {}\n"
    assert list_functions_javascript(src) == ["later"]


def test_fake_exports_in_comments_strings_templates_regexes_and_blocks() -> None:
    src = r"""
// export function inComment() {}
/* module.exports = { inBlockComment() {} } */
const s = "export function inString() {}";
const t = `export function inTemplate() {} ${ `nested ${"}"}` } module.exports.x = () => 1`;
const re = /export function inRegex\/ { [}] /g;
const q = a / b / c;
if (true) { module.exports.inBlock = () => 1; }
function f() { exports.inFunction = () => 1; }
export function real() {}
"""
    assert list_functions_javascript(src) == ["real"]


def test_member_access_is_not_module_exports() -> None:
    src = "foo.module.exports = { a() {} };\nbar.exports.b = () => 1;\nexports.c = () => 1;\n"
    assert list_functions_javascript(src) == ["c"]


def test_tokenizer_depths() -> None:
    toks = tokenize_javascript("a({b: `x${ {c} }y`}); d")
    assert [(t.text, t.depth) for t in toks if t.kind == "id"] == [
        ("a", 0),
        ("b", 2),
        ("c", 4),
        ("d", 0),
    ]


@pytest.mark.parametrize(
    "src",
    [
        "",
        "#!/usr/bin/env node\n",
        "'unterminated",
        "`open ${",
        "/* open",
        "module.exports = {",
        "export {",
        "}}}))",
    ],
)
def test_javascript_scan_survives_broken_input(src: str) -> None:
    assert list_functions_javascript(src) == []


def test_static_scan_agrees_with_node_on_the_sample(tmp_path: Path) -> None:
    """Node loads our own sample (not user code) to confirm the scan's answer."""
    node = shutil.which("node")
    require(node is not None, "needs node")
    assert node is not None
    main = SAMPLES / "javascript" / "main.js"
    script = (
        f"const m = require({json.dumps(str(main))});"
        "console.log(JSON.stringify(Object.keys(m).filter("
        "k => typeof m[k] === 'function' && !k.startsWith('_'))))"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    assert list_functions_javascript(main.read_text()) == json.loads(out.stdout)
