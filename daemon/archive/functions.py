"""The functions a project exposes, found by reading main.py / main.js, never running them.

Python (`ast`): functions (`def` and `async def`) at the top level of main.py
whose names do not start with `_`. A name later rebound by a top-level import is
dropped (it is the imported object that would be called).

JavaScript (a static scan of main.js with a small tokenizer that skips comments,
strings, template literals and regular expressions, and tracks bracket depth;
only top-level statements count). Exposed names come from:
  export function f / export async function f / export function* f
  export const|let|var f = <function expression or arrow>   (first declarator)
  export { a, b as c }            (a and b must be functions defined in main.js)
  module.exports = { a, b: c, d() {}, e: async () => {} }
  module.exports.f = ... / exports.f = ...   (a function value or local function)
`export default` is not exposed: it has no name to call by. Re-exports
(`export { x } from './y'`) and names bound by require()/import are not functions
defined in main.js, so they are not exposed. Limits: computed keys, getters,
`Object.assign(module.exports, ...)`, objects built elsewhere and assigned to
module.exports, and values wrapped in calls (`f: wrap(g)`) are not recognised.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["list_functions_javascript", "list_functions_python"]


def list_functions_python(source: str) -> list[str]:
    """Public top-level functions of main.py, in source order. Raises SyntaxError."""
    names: dict[str, None] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.pop((alias.asname or alias.name).split(".")[0], None)
    return [n for n in names if not n.startswith("_")]


# ---- JavaScript ------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    kind: str  # "id", "str", "num", "punc", "tmpl", "regex"
    text: str
    depth: int  # bracket depth before the token; closers share their opener's depth


_ID_START = re.compile(r"[A-Za-z_$\u0080-\uffff]")
_ID_REST = re.compile(r"[\w$\u0080-\uffff]*")
_NAME = re.compile(r"^[A-Za-z_$][\w$]*$")
_PUNCT = ("===", "!==", "...", "=>", "==", "!=", "?.", "**")
_REGEX_AFTER_WORDS = frozenset(
    {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case"}
    | {"do", "else", "yield", "await"}
)


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 2 if src.startswith("#!") else 0
        self.depth = 0
        self.templates: list[int] = []  # open `${` substitutions: braces open inside each
        self.toks: list[Tok] = []
        if self.i:
            self._skip_to("\n")

    def run(self) -> list[Tok]:
        src, n = self.src, len(self.src)
        while self.i < n:
            c = src[self.i]
            if c.isspace():
                self.i += 1
            elif src.startswith("//", self.i):
                self._skip_to("\n")
            elif src.startswith("/*", self.i):
                end = src.find("*/", self.i + 2)
                self.i = n if end < 0 else end + 2
            elif c in "'\"":
                self._string(c)
            elif c == "`":
                self.i += 1
                self._template()
            elif _ID_START.match(c):
                m = _ID_REST.match(src, self.i + 1)
                end = m.end() if m else self.i + 1
                self._emit("id", src[self.i : end])
                self.i = end
            elif c.isdigit() or (c == "." and src[self.i + 1 : self.i + 2].isdigit()):
                m = re.compile(r"[\w.]+").match(src, self.i)
                self.i = m.end() if m else self.i + 1
                self._emit("num", "0")
            elif c == "/" and self._regex_allowed():
                self._regex()
            else:
                self._punct(c)
        return self.toks

    def _emit(self, kind: str, text: str) -> None:
        self.toks.append(Tok(kind, text, self.depth))

    def _skip_to(self, s: str) -> None:
        end = self.src.find(s, self.i)
        self.i = len(self.src) if end < 0 else end + len(s)

    def _string(self, quote: str) -> None:
        src, j = self.src, self.i + 1
        while j < len(src) and src[j] not in (quote, "\n"):
            j += 2 if src[j] == "\\" else 1
        self._emit("str", src[self.i + 1 : j])
        self.i = j + 1

    def _template(self) -> None:
        """From inside a template literal to its end or to a `${` (then back to code)."""
        src, j = self.src, self.i
        while j < len(src):
            if src[j] == "\\":
                j += 2
            elif src[j] == "`":
                self._emit("tmpl", "")
                self.i = j + 1
                return
            elif src.startswith("${", j):
                self._emit("tmpl", "")
                self.templates.append(0)
                self.depth += 1
                self.i = j + 2
                return
            else:
                j += 1
        self.i = j

    def _regex_allowed(self) -> bool:
        if not self.toks:
            return True
        prev = self.toks[-1]
        if prev.kind == "id":
            return prev.text in _REGEX_AFTER_WORDS
        return prev.kind == "punc" and prev.text not in (")", "]", "}")

    def _regex(self) -> None:
        src, j, in_class = self.src, self.i + 1, False
        while j < len(src) and src[j] != "\n":
            c = src[j]
            if c == "\\":
                j += 1
            elif c == "[":
                in_class = True
            elif c == "]":
                in_class = False
            elif c == "/" and not in_class:
                break
            j += 1
        m = _ID_REST.match(src, j + 1)
        self.i = m.end() if m else j + 1
        self._emit("regex", "")

    def _punct(self, c: str) -> None:
        for p in _PUNCT:
            if self.src.startswith(p, self.i):
                self._emit("punc", p)
                self.i += len(p)
                return
        self.i += 1
        if c in "([{":
            self._emit("punc", c)
            self.depth += 1
            if self.templates and c == "{":
                self.templates[-1] += 1
        elif c in ")]}":
            if c == "}" and self.templates and self.templates[-1] == 0:
                self.templates.pop()
                self.depth = max(0, self.depth - 1)
                self._template()  # back inside the template literal
                return
            if c == "}" and self.templates:
                self.templates[-1] -= 1
            self.depth = max(0, self.depth - 1)
            self._emit("punc", c)
        else:
            self._emit("punc", c)


def tokenize_javascript(source: str) -> list[Tok]:
    return _Lexer(source).run()


class _Scan:
    def __init__(self, toks: list[Tok]) -> None:
        self.t = toks
        self.local: set[str] = set()
        self.exposed: dict[str, None] = {}

    def at(self, i: int, *texts: str) -> bool:
        return i < len(self.t) and self.t[i].kind in ("id", "punc") and self.t[i].text in texts

    def name_at(self, i: int) -> str | None:
        if i < len(self.t) and self.t[i].kind == "id":
            return self.t[i].text
        return None

    def close_of(self, i: int) -> int:
        """Index of the bracket closing the one at i (or the end)."""
        d = self.t[i].depth
        for j in range(i + 1, len(self.t)):
            if self.t[j].depth == d and self.t[j].kind == "punc" and self.t[j].text in ")]}":
                return j
        return len(self.t)

    def is_function_value(self, i: int) -> bool:
        if self.at(i, "function"):
            return True
        if self.at(i, "async"):
            return self.at(i + 1, "function", "(") or (
                self.name_at(i + 1) is not None and self.at(i + 2, "=>")
            )
        if self.at(i, "("):
            return self.at(self.close_of(i) + 1, "=>")
        return self.name_at(i) is not None and self.at(i + 1, "=>")

    def is_local_ref(self, i: int) -> bool:
        name = self.name_at(i)
        return name in self.local and (i + 1 >= len(self.t) or self.at(i + 1, ",", "}", ";"))

    def function_decl_name(self, i: int) -> str | None:
        """`[async] function [*] NAME` starting at i."""
        if self.at(i, "async"):
            i += 1
        if not self.at(i, "function"):
            return None
        if self.at(i + 1, "*"):
            i += 1
        return self.name_at(i + 1)

    def var_function_name(self, i: int) -> str | None:
        """`const|let|var NAME = <function value>` starting at i."""
        if self.at(i, "const", "let", "var") and self.at(i + 2, "="):
            name = self.name_at(i + 1)
            if name and self.is_function_value(i + 3):
                return name
        return None

    def top(self) -> list[int]:
        return [i for i, tok in enumerate(self.t) if tok.depth == 0]

    def collect_locals(self) -> None:
        for i in self.top():
            if self.at(i - 1, ".") and i > 0:
                continue
            name = self.function_decl_name(i) or self.var_function_name(i)
            if name:
                self.local.add(name)

    def collect_exports(self) -> None:
        for i in self.top():
            if i > 0 and self.at(i - 1, "."):
                continue
            if self.at(i, "export"):
                self.export_statement(i + 1)
            elif self.at(i, "module") and self.at(i + 1, ".") and self.at(i + 2, "exports"):
                self.commonjs(i + 3)
            elif self.at(i, "exports"):
                self.commonjs(i + 1)

    def expose(self, name: str | None) -> None:
        if name and _NAME.match(name) and not name.startswith("_"):
            self.exposed.setdefault(name, None)

    def export_statement(self, i: int) -> None:
        name = self.function_decl_name(i) or self.var_function_name(i)
        if name:
            self.expose(name)
        elif self.at(i, "{"):
            end = self.close_of(i)
            if self.at(end + 1, "from"):
                return  # a re-export: defined elsewhere
            for local, exported in self.export_list(i + 1, end):
                if local in self.local and exported != "default":
                    self.expose(exported)

    def export_list(self, i: int, end: int) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        while i < end:
            local = self.name_at(i)
            if local and self.at(i + 1, "as"):
                pairs.append((local, self.name_at(i + 2) or self.t[i + 2].text))
                i += 3
            elif local:
                pairs.append((local, local))
                i += 1
            i += 1  # the comma
        return pairs

    def commonjs(self, i: int) -> None:
        if self.at(i, "=") and self.at(i + 1, "{"):
            self.object_literal(i + 1)
        elif (
            self.at(i, ".")
            and self.at(i + 2, "=")
            and (self.is_function_value(i + 3) or self.is_local_ref(i + 3))
        ):
            self.expose(self.name_at(i + 1))

    def object_literal(self, start: int) -> None:
        end = self.close_of(start)
        inner = self.t[start].depth + 1
        i = start + 1
        while i < end:
            j = i
            while j < end and not (self.t[j].depth == inner and self.at(j, ",")):
                j += 1
            self.property(i, j)
            i = j + 1

    def property(self, i: int, end: int) -> None:
        if i >= end or self.at(i, "...", "["):
            return
        if self.at(i, "get", "set") and self.name_at(i + 1) and self.at(i + 2, "("):
            return  # accessors are not callable functions
        key_at = i + 1 if self.at(i, "async") and i + 1 < end else i
        if self.at(key_at, "*"):
            key_at += 1
        tok = self.t[key_at] if key_at < end else None
        if tok is None or tok.kind not in ("id", "str"):
            return
        if key_at + 1 == end and tok.kind == "id" and tok.text in self.local:
            self.expose(tok.text)  # shorthand `{ f }`
        elif self.at(key_at + 1, "("):
            self.expose(tok.text)  # method `f() {}`
        elif self.at(key_at + 1, ":") and (
            self.is_function_value(key_at + 2)
            or (key_at + 3 == end and self.name_at(key_at + 2) in self.local)
        ):
            self.expose(tok.text)


def list_functions_javascript(source: str) -> list[str]:
    """Public functions main.js exports and defines itself (see the module docstring)."""
    scan = _Scan(tokenize_javascript(source))
    scan.collect_locals()
    scan.collect_exports()
    return list(scan.exposed)
