"""How the supervisor starts: its command line, site-packages, our files by path.

runtimes/supervisor.py (the program, pid 1 of the sandbox) loads this file and
calls `main`; runtimes/arbiter.py then runs the pool (`Supervisor`). The
protocol.py docstring has every option and every message.

Every replica start waits for this before its first call, so it imports
little: argparse, re, enum, typing or shutil cost milliseconds each on a small
machine. So argv is parsed by hand and our files are loaded by path from
cached bytecode (a program's own file is compiled at every run: that is why
supervisor.py is a few lines). Under -S (no site), a python supervisor puts
its venv's site-packages on sys.path itself, which is all site does for a
venv made by the builder; anything more (a .pth file, a sitecustomize, system
site-packages) makes it run site as usual.
Standard library only, Python 3.8+.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))  # the runtimes dir
USAGE = (
    "usage: supervisor.py --language python|javascript --source DIR [--workers K]\n"
    "       [--harness-dir DIR] [--node PATH] [--main FILE] [--max-output BYTES]\n"
    "       [--max-frame BYTES] [--mode auto|fork|spawn] [--spares N] [--control-fd N]\n"
    "       [--egress-socket PATH] [--egress-port N] [--node-heap-mb MB]\n"
    "       [--kind functions|step] [--step-spec JSON] [--concurrency N]\n"
)
# option -> (attribute, type, default); choices are checked in parse_args.
OPTIONS = {
    "--language": ("language", str, None),
    "--workers": ("workers", int, 1),
    "--source": ("source", str, None),
    "--harness-dir": ("harness_dir", str, HERE),
    "--node": ("node", str, None),
    "--main": ("main", str, None),
    "--max-output": ("max_output", int, 1024 * 1024),
    "--max-frame": ("max_frame", int, 16 * 1024 * 1024),
    "--mode": ("mode", str, "auto"),
    "--spares": ("spares", int, None),  # 0 in fork mode, 1 in spawn mode
    "--control-fd": ("control_fd", int, 3),
    "--egress-socket": ("egress_socket", str, None),  # the replica's proxy socket
    "--egress-port": ("egress_port", int, 3128),  # its relay on the sandbox's loopback
    "--kind": ("kind", str, "functions"),
    "--step-spec": ("step_spec", str, None),
    "--node-heap-mb": ("node_heap_mb", int, None),  # node --max-old-space-size
    "--concurrency": ("concurrency", int, 1),  # calls in flight per worker
}


class Options:
    """The parsed command line (attributes named as in OPTIONS)."""

    def __init__(self) -> None:
        for attribute, _, default in OPTIONS.values():
            setattr(self, attribute, default)


def _usage_error(message: str) -> None:
    sys.stderr.write(f"{USAGE}supervisor.py: error: {message}\n")
    sys.exit(2)


def parse_args(argv: list[str]) -> Options:
    args = Options()
    items = iter(argv)
    for item in items:
        if item in ("-h", "--help"):
            sys.stdout.write(USAGE)
            sys.exit(0)
        name, eq, value = item.partition("=")
        if name not in OPTIONS:
            _usage_error(f"unrecognized argument: {item}")
        if not eq:
            value = next(items, None)  # type: ignore[assignment]
            if value is None:
                _usage_error(f"argument {name}: expected one argument")
        attribute, kind, _ = OPTIONS[name]
        try:
            setattr(args, attribute, kind(value))
        except ValueError:
            _usage_error(f"argument {name}: invalid {kind.__name__} value: {value!r}")
    _check(args)
    return args


def _check(args: Any) -> None:
    if args.language not in ("python", "javascript"):
        _usage_error("argument --language: python or javascript is required")
    if args.source is None:
        _usage_error("the following arguments are required: --source")
    if args.mode not in ("auto", "fork", "spawn"):
        _usage_error(f"argument --mode: invalid choice: {args.mode!r}")
    if args.kind not in ("functions", "step"):
        _usage_error(f"argument --kind: invalid choice: {args.kind!r}")
    args.workers = max(1, args.workers)
    args.concurrency = max(1, args.concurrency)
    args.harness_dir = os.path.abspath(args.harness_dir)
    args.source = os.path.abspath(args.source)
    if args.main is None:
        args.main = "main.py" if args.language == "python" else _node_main(args.source)
    if args.node is None and args.language == "javascript":
        args.node = _which("node") or "/usr/bin/node"


def _node_main(source: str) -> str:
    for name in ("main.js", "main.mjs", "main.cjs"):
        if os.path.exists(os.path.join(source, name)):
            return name
    return "main.js"


def _which(program: str) -> str | None:
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(folder, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def add_venv_site_packages() -> None:
    """What site does for a builder's venv, without importing site (run under -S).

    The venv is the one this interpreter was started from (<venv>/bin/python);
    anything site would do beyond adding its site-packages, or no venv at all,
    runs site itself."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    version = "python{}.{}".format(*sys.version_info[:2])
    packages = os.path.join(venv, "lib", version, "site-packages")
    if _plain_venv(venv, packages):
        sys.path.append(packages)
        sys.prefix = sys.exec_prefix = venv
        import _sitebuiltins
        import builtins

        builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")  # type: ignore[attr-defined]
        builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")  # type: ignore[attr-defined]
        builtins.help = _sitebuiltins._Helper()  # type: ignore[attr-defined]
        return
    import site

    site.main()


def _plain_venv(venv: str, packages: str) -> bool:
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as f:
            config = f.read().replace(" ", "").lower()
        names = os.listdir(packages)
    except OSError:
        return False
    if "include-system-site-packages=true" in config:
        return False
    hooks = ("sitecustomize", "usercustomize")
    return not any(
        (n.endswith(".pth") and n != "_virtualenv.pth") or n.startswith(hooks) for n in names
    )


def load(path: str, name: str) -> Any:
    """Import a file of ours under a private name, through __pycache__, with
    importlib's machinery as the interpreter loaded it at start (importlib.util
    re-exports these two functions but costs milliseconds to import)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = sys.modules["_frozen_importlib_external"].spec_from_file_location(name, path)
    module = sys.modules["_frozen_importlib"].module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.language == "python" and sys.flags.no_site:
        add_venv_site_packages()
    import _socket

    control = _socket.socket(fileno=args.control_fd)
    arbiter = load(os.path.join(args.harness_dir, "arbiter.py"), "_scriptd_arbiter")
    supervisor = arbiter.Supervisor(args, control, load)
    supervisor.launch.become_subreaper()
    supervisor.run()
    os._exit(0)
