"""Project rules on a scanned archive: the main file, the language, dependency files.

Works only on what the scan recorded (the tree of names and the few root files
it kept), so it never touches the archive again.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from daemon.archive.functions import list_functions_javascript, list_functions_python
from daemon.archive.requirements import check_requirements
from daemon.archive.scan import KEEP_MAX, ScanResult
from daemon.archive.steps import STEP_FILE, StepSpec, StepSpecError, parse_step_toml
from daemon.archive.types import Findings
from daemon.core.models import MAIN_FILES

DEPENDENCY_FILES = {"python": "requirements.txt", "javascript": "package.json"}
# Folders that macOS and others add next to the project; ignored when looking
# for "the project is inside a single folder".
JUNK_TOP = frozenset({"__MACOSX", ".DS_Store"})
BUNDLED_DEPENDENCIES = {
    "node_modules": "package.json",
    ".venv": "requirements.txt",
    "venv": "requirements.txt",
}


@dataclass
class ProjectResult:
    language: str | None
    functions: tuple[str, ...]
    step: StepSpec | None = None  # a code step's declaration (a valid step.toml)


def check_project(scan: ScanResult, language: str | None, out: Findings) -> ProjectResult:
    """Adds the project findings; returns the language used and the exposed functions."""
    if language is not None and language not in MAIN_FILES:
        out.error(
            "unknown_language",
            f"Unknown language {language!r}.",
            "language",
            "Choose python or javascript.",
        )
        return ProjectResult(None, ())
    chosen = _choose_language(scan, language, out)
    if chosen is None:
        return ProjectResult(language, ())
    _check_bundled(scan, out)
    check = _check_python if chosen == "python" else _check_javascript
    functions = check(scan, out)
    if STEP_FILE in scan.kept:  # a code step: main is its body, it exposes no function
        return ProjectResult(chosen, (), _check_step(scan.kept[STEP_FILE], out))
    if not out.has_errors() and not functions:
        main = MAIN_FILES[chosen]
        out.warning(
            "no_functions",
            f"{main} defines no function that can be called (public names do not start with '_').",
            main,
            f"Define at least one function in {main}; see the sample project.",
        )
    return ProjectResult(chosen, functions)


def _check_step(data: bytes, out: Findings) -> StepSpec | None:
    try:
        return parse_step_toml(data)
    except StepSpecError as exc:
        for problem in exc.problems:
            out.error(
                "step_spec",
                f"{problem}.",
                STEP_FILE,
                'Declare [inputs] and [outputs] as name = "type code" (see the step sample).',
            )
        return None


def _has_file(scan: ScanResult, path: str) -> bool:
    return path in scan.tree.files


def _choose_language(scan: ScanResult, language: str | None, out: Findings) -> str | None:
    present = [lang for lang, main in MAIN_FILES.items() if _has_file(scan, main)]
    if language is not None:
        if language in present:
            return language
        other = [lang for lang in present if lang != language]
        main = MAIN_FILES[language]
        if other:
            out.error(
                "language_mismatch",
                f"The language is {language} but the archive has {MAIN_FILES[other[0]]} "
                f"and no {main}.",
                main,
                f"Choose the language {other[0]}, or add {main} at the root of the archive.",
            )
        else:
            _missing_main(scan, [main], out)
        return None
    if len(present) == 1:
        return present[0]
    if len(present) > 1:
        out.error(
            "ambiguous_language",
            "The archive has both main.py and main.js at its root.",
            "archive",
            "Choose the language explicitly, or remove the main file you do not use.",
        )
        return None
    _missing_main(scan, list(MAIN_FILES.values()), out)
    return None


def _missing_main(scan: ScanResult, mains: list[str], out: Findings) -> None:
    if not scan.complete:
        return  # the archive could not be read to the end: that error says it all
    top = _single_top_folder(scan)
    nested = [f"{top}/{m}" for m in mains if top and _has_file(scan, f"{top}/{m}")]
    if nested:
        out.error(
            "project_in_folder",
            f"The project is inside the folder '{top}/': {nested[0]} must be at the root of "
            f"the archive, as {nested[0].split('/')[-1]}. This is the most common mistake.",
            nested[0],
            f"Archive the contents of the folder, not the folder itself: "
            f"`cd {top} && zip -r ../project.zip .`",
        )
        return
    wanted = " or ".join(mains)
    out.error(
        "missing_main",
        f"There is no {wanted} at the root of the archive.",
        "archive",
        f"Add {wanted} at the root of the archive (see the sample project).",
    )


def _single_top_folder(scan: ScanResult) -> str | None:
    tops = {p.split("/")[0] for p in scan.tree.files | scan.tree.dirs} - JUNK_TOP
    if len(tops) == 1:
        top = next(iter(tops))
        if top in scan.tree.dirs:
            return top
    return None


def _check_bundled(scan: ScanResult, out: Findings) -> None:
    for folder, deps in BUNDLED_DEPENDENCIES.items():
        if folder in scan.tree.dirs:
            out.warning(
                "bundled_dependencies",
                f"The archive includes {folder}/; dependencies are installed at deploy "
                f"from {deps}, so it only makes the upload bigger.",
                f"{folder}/",
                f"Leave {folder}/ out of the archive and list dependencies in {deps}.",
            )


def _main_text(scan: ScanResult, main: str, out: Findings) -> bytes | None:
    data = scan.kept.get(main)
    if data is None:
        if scan.complete:
            out.warning(
                "not_checked",
                f"{main} is larger than {KEEP_MAX} bytes and was not checked.",
                main,
                "Move code into helper modules and keep the main file small.",
            )
        return None
    if not data.strip():
        out.error(
            "empty_main",
            f"{main} is empty.",
            main,
            f"Define the functions to expose in {main} (see the sample project).",
        )
        return None
    return data


def _check_python(scan: ScanResult, out: Findings) -> tuple[str, ...]:
    data = _main_text(scan, "main.py", out)
    if "requirements.txt" in scan.kept:
        check_requirements(scan.kept["requirements.txt"], out)
    if data is None:
        return ()
    try:
        ast.parse(data, filename="main.py")
    except SyntaxError as e:
        where = f"main.py:{e.lineno or 1}" + (f":{e.offset}" if e.offset else "")
        out.error(
            "syntax_error",
            f"main.py has a syntax error at line {e.lineno}: {e.msg}.",
            where,
            "Fix the line (run `python3 -m py_compile main.py` to check).",
        )
        return ()
    except ValueError as e:  # null bytes, bad encoding cookie
        out.error(
            "syntax_error",
            f"main.py cannot be parsed: {e}.",
            "main.py",
            "Save main.py as plain UTF-8 text.",
        )
        return ()
    return tuple(list_functions_python(data.decode("utf-8", "replace")))


def _check_javascript(scan: ScanResult, out: Findings) -> tuple[str, ...]:
    data = _main_text(scan, "main.js", out)
    if "package.json" in scan.kept:
        check_package_json(scan.kept["package.json"], out)
    if data is None:
        return ()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        out.error(
            "encoding",
            f"main.js is not UTF-8 text (byte {e.start}).",
            "main.js",
            "Save main.js as UTF-8.",
        )
        return ()
    return tuple(list_functions_javascript(text))


DEPENDENCY_KEYS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
# A registry spec: a version, range or dist-tag (`1.2.3`, `^1 || >=3 <4`, `latest`),
# optionally as an alias `npm:<name>@<range>`. Everything else npm accepts names a
# source of its own: `file:`, `link:`, `workspace:`, paths (`./x`, `/x`, `~/x`),
# `git+...`, `github:`, `user/repo` shorthands and tarball URLs (`https://...`);
# builds take packages from the registry only, so those are refused.
_RANGE = re.compile(r"^(?![.])[\w\s.^~<>=|*+-]*$")
_ALIAS = re.compile(r"^npm:(@[\w.-]+/)?[\w.-]+(@(?P<range>.*))?$")


def check_package_json(data: bytes, out: Findings) -> None:
    fix = "Make package.json a JSON object like the sample project's (check it with `npm pkg get`)."
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        out.error("package_json_invalid", "package.json is not UTF-8 text.", "package.json", fix)
        return
    except json.JSONDecodeError as e:
        out.error(
            "package_json_invalid",
            f"package.json is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.",
            f"package.json:{e.lineno}:{e.colno}",
            fix,
        )
        return
    if not isinstance(doc, dict):
        out.error(
            "package_json_invalid", "package.json must hold a JSON object.", "package.json", fix
        )
        return
    for key in DEPENDENCY_KEYS:
        deps = doc.get(key)
        if deps is None:
            continue
        if not isinstance(deps, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in deps.items()
        ):
            out.error(
                "package_json_invalid",
                f'"{key}" in package.json must map package names to version strings.',
                f"package.json: {key}",
                'Write it like {"left-pad": "^1.3.0"}.',
            )
            continue
        for name, spec in deps.items():
            _check_spec(f"{key}.{name}", spec, out)
    for path, spec in _override_specs(doc.get("overrides"), "overrides"):
        if not spec.startswith("$"):  # "$name": the spec of that direct dependency
            _check_spec(path, spec, out)
    if doc.get("type") not in (None, "module", "commonjs"):
        out.error(
            "package_json_invalid",
            '"type" in package.json must be "module" or "commonjs".',
            "package.json: type",
            fix,
        )


def registry_spec(spec: str) -> bool:
    """Whether npm would take `spec` from the registry (a range, a tag or an npm: alias)."""
    alias = _ALIAS.match(spec.strip())
    if alias:
        return bool(_RANGE.match(alias.group("range") or ""))
    return bool(_RANGE.match(spec.strip()))


def _check_spec(where: str, spec: str, out: Findings) -> None:
    if registry_spec(spec):
        return
    out.error(
        "package_json_source",
        f'package.json: {where} is "{spec}", which is not a registry version: file:, link:, '
        "paths, git and URL dependencies are not installed (packages come from the registry only).",
        f"package.json: {where}",
        'Use a version from the registry, like "^1.3.0", or copy the code into the project.',
    )


def _override_specs(node: Any, path: str) -> list[tuple[str, str]]:
    """Every version string below "overrides" (it nests), with its path."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        found: list[tuple[str, str]] = []
        for key, value in node.items():
            found += _override_specs(value, f"{path}.{key}")
        return found
    return []
