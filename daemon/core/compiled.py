"""The egress relay compiled to C with mypyc, used only while it matches its sources.

`./dev.sh setup` builds it (`python -m daemon.core.compiled --build`) into
`build/mypyc/` of the checkout: the shared library of the group at the top, each
module's extension below `daemon/egress/`, and a manifest naming the interpreter's
extension suffix and each source's SHA-256. `daemon/egress/__init__.py` asks `plan`
before any of its modules is imported: when every source matches, the build's folder
goes first on the package's `__path__` (the extensions shadow the `.py` files),
else the package runs as Python and `status()` says why. So an edited source is never
shadowed by a stale build, whoever imports it (a test run straight from pytest, a
bench), and nothing is half compiled: the group's modules call each other directly, so
they are used all together or not at all. `SCRIPTD_PURE_PYTHON=1` asks for Python.

Why these modules (README, "The egress relay, compiled"): compiled, the proxy's CPU
per intercepted HTTPS request falls 10-18 % and the intercepted rate moves from about
0.50 x the direct rate to 0.55 x. The gateway's call path gained 6 % of the daemon's
CPU per call compiled and stays Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The checkout's root (daemon/core/compiled.py → two folders up).
ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "mypyc"
MANIFEST = "manifest.json"
PURE_ENV = "SCRIPTD_PURE_PYTHON"

# The relay's hot path and what it calls per request (a cProfile of
# bench/egress_relay.py), plus the proxy's meter, which a call's log reaches.
_RELAY = ("accounting", "exchange", "framing", "gate", "httplog", "inline", "messages",
          "pool", "proxy", "targets", "tunnel", "upstreams", "wire")  # fmt: skip
MODULES = (*(f"daemon.egress.{name}" for name in _RELAY), "daemon.metrics.instruments")


@dataclass(frozen=True)
class Plan:
    """Whether to use the build: its folders for sys.path and each package's
    __path__, or the reason it is not used."""

    compiled: bool
    reason: str
    group_dir: Path | None = None
    package_dirs: dict[str, Path] | None = None


def source_of(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan(build: Path = BUILD, root: Path = ROOT, environ: dict[str, str] | None = None) -> Plan:
    """What the build in `build` is good for, checked against the sources in `root`."""
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV, "") not in ("", "0"):
        return Plan(False, f"pure Python ({PURE_ENV} is set)")
    try:
        manifest = json.loads((build / MANIFEST).read_text())
    except FileNotFoundError:
        return Plan(False, "pure Python (not built: ./dev.sh setup builds it)")
    except (OSError, ValueError) as exc:
        return Plan(False, f"pure Python (unreadable build manifest: {exc})")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if manifest.get("ext_suffix") != suffix:
        return Plan(
            False, f"pure Python (built for {manifest.get('ext_suffix')}, this is {suffix})"
        )
    built = manifest.get("modules", {})
    if sorted(built) != sorted(MODULES):
        return Plan(False, "pure Python (the build has other modules: ./dev.sh setup rebuilds it)")
    for module, expected in built.items():
        try:
            if digest(source_of(module, root)) != expected:
                return Plan(
                    False,
                    f"pure Python ({module} changed since the build: ./dev.sh setup rebuilds it)",
                )
        except OSError as exc:
            return Plan(False, f"pure Python ({module}: {exc})")
        if not _extension(build, module, suffix).is_file():
            return Plan(False, f"pure Python (the build lacks {module})")
    packages = {m.rpartition(".")[0] for m in MODULES}
    dirs = {p: build.joinpath(*p.split(".")) for p in sorted(packages)}
    return Plan(True, "compiled with mypyc", build, dirs)


def _extension(build: Path, module: str, suffix: str) -> Path:
    return build.joinpath(*module.split(".")).with_name(module.rpartition(".")[2] + suffix)


_PLAN: Plan | None = None  # decided once per process, by the first package to ask


def use_for(package: str, package_path: list[str]) -> None:
    """Called by a package's __init__ with its __path__: put the build's folder first
    when the build matches its sources."""
    global _PLAN
    if _PLAN is None:
        _PLAN = plan()
        if _PLAN.compiled and _PLAN.group_dir is not None:
            sys.path.append(str(_PLAN.group_dir))  # the group's library: a top-level module
    if _PLAN.compiled and _PLAN.package_dirs and package in _PLAN.package_dirs:
        package_path.insert(0, str(_PLAN.package_dirs[package]))


def status() -> str:
    """For the daemon's first log line: 'compiled with mypyc', or why it runs as Python."""
    return (_PLAN or plan()).reason


# --- the build (./dev.sh setup) ------------------------------------------------------


def build(out: Path = BUILD, root: Path = ROOT) -> None:
    """Compile MODULES from a copy of the sources (so no extension ever lands beside a
    source in the checkout) and replace `out` with the result in one rename."""
    with tempfile.TemporaryDirectory(prefix="scriptd-mypyc-") as tmp:
        work = Path(tmp)
        for package in ("daemon", "sandbox"):  # sandbox: daemon's types come from it too
            shutil.copytree(root / package, work / package, ignore=_no_caches)
        shutil.copy2(root / "pyproject.toml", work / "pyproject.toml")
        files = [str(source_of(m, work).relative_to(work)) for m in MODULES]
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *files], cwd=work, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BuildFailed((done.stdout + done.stderr)[-3000:])
        staged = out.with_name(out.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        _collect(work, staged)
        manifest = {
            "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
            "python": sys.version.split()[0],
            "modules": {m: digest(source_of(m, root)) for m in MODULES},
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)


class BuildFailed(Exception):
    pass


def _no_caches(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".so", ".pyc"))]


def _collect(work: Path, staged: Path) -> None:
    """The extensions mypyc wrote beside the copied sources, and the group's library
    at the copy's root, into `staged` in the same layout."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    staged.mkdir(parents=True)
    for library in work.glob(f"*__mypyc{suffix}"):
        shutil.copy2(library, staged / library.name)
    for module in MODULES:
        made = _extension(work, module, suffix)
        target = _extension(staged, module, suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(made, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.core.compiled", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--build", action="store_true", help="build unless the build matches the sources"
    )
    parser.add_argument("--force", action="store_true", help="build even if it matches")
    args = parser.parse_args(argv)
    current = plan(environ={})
    if not (args.build or args.force):
        print(current.reason)
        return 0
    if current.compiled and not args.force:
        print(f"compile: the egress relay is built and matches its sources ({BUILD})")
        return 0
    print(f"compile: the egress relay with mypyc ({len(MODULES)} modules, about a minute)")
    try:
        build()
    except (BuildFailed, OSError, subprocess.SubprocessError) as exc:
        print(
            f"compile: WARNING: the build failed, the relay runs as Python:\n{exc}", file=sys.stderr
        )
        return 1
    print(f"compile: done: {plan(environ={}).reason} ({BUILD})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
