"""Python harness: load a project's main.py once, serve calls on a worker socket.

Two ways in:
- fork mode: the supervisor loads this file, calls load_project() and
  list_functions() once, forks, and each child runs Worker(...).serve();
- spawn mode (main started threads, so fork is unsafe): one fresh interpreter
  per worker runs this file as a program:
  `python -I harness.py --fd N --status-fd M --source DIR [--main main.py]
  [--max-output BYTES] [--max-frame BYTES]`; it loads main, writes one JSON
  line ({"t":"ready",...} or {"t":"load_error",...}) to the status fd, closes
  it and serves.

The project is loaded as the submodule `main` of a synthetic package
(_scriptd_project, whose __path__ is the source dir), so `from . import x`
works between project files; the source dir also goes first on sys.path so
that `import x` of a sibling works (such a module then exists twice, once per
name). Frame format: see protocol.py. Standard library only.
"""

from __future__ import annotations

import os
import resource
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs milliseconds to import
    import types
    from typing import Any

# importlib's machinery as the interpreter loaded it at start: importlib.util re-exports
# these but costs milliseconds to import, and every replica start waits for this file.
_bootstrap = sys.modules["_frozen_importlib"]
_external = sys.modules["_frozen_importlib_external"]
ModuleSpec = _bootstrap.ModuleSpec
module_from_spec = _bootstrap.module_from_spec
spec_from_file_location = _external.spec_from_file_location
ModuleType = type(sys)
FunctionType = type(lambda: None)

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "_scriptd_project"


def _sibling(path: str, name: str) -> types.ModuleType:
    """Load one of our own files under a private name: user modules called
    `protocol` or `capture` must not be shadowed, nor shadow ours."""
    if name in sys.modules:
        return sys.modules[name]
    spec = spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


protocol = _sibling(os.path.join(os.path.dirname(HERE), "protocol.py"), "_scriptd_protocol")
capture = _sibling(os.path.join(HERE, "capture.py"), "_scriptd_capture")
errors = _sibling(os.path.join(HERE, "errors.py"), "_scriptd_errors")
# Also read by the arbiter (error_info) and concurrently.py (harness_error, call_error).
error_info = errors.error_info
harness_error = errors.harness_error
call_error = errors.call_error
_HarnessError = errors.HarnessError
KINDS = ("functions", "step")


def runtime_version() -> str:
    return ".".join(str(n) for n in sys.version_info[:3])


def load_project(source: str, main: str = "main.py") -> types.ModuleType:
    """Import main once; raises whatever the import raises."""
    source = os.path.realpath(source)
    path = os.path.join(source, main)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the project has no {main} (looked in {source})")
    _install_package(source)
    name = f"{PACKAGE}.{os.path.splitext(main)[0]}"
    spec = spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _install_package(source: str) -> None:
    """The synthetic package whose __path__ is the source dir, for relative imports."""
    if source not in sys.path:
        sys.path.insert(0, source)
    package = ModuleType(PACKAGE)
    package.__path__ = [source]
    package.__package__ = PACKAGE
    package.__spec__ = ModuleSpec(PACKAGE, None, is_package=True)
    package.__spec__.submodule_search_locations = [source]
    sys.modules[PACKAGE] = package


def load_step(source: str, main: str, spec_text: str | None) -> Any:
    """A code step: main compiled (not run) and its declared inputs/outputs;
    raises SyntaxError, FileNotFoundError or StepSpecError."""
    step = _sibling(os.path.join(HERE, "step.py"), "_scriptd_step")
    typed = _sibling(os.path.join(HERE, "typed.py"), "_scriptd_typed")
    spec = step.parse_spec(spec_text, typed, protocol.loads)
    protocol.loads_exact("[1.5]")  # its scanner and decimal made now, before workers fork
    code = step.compile_body(source, main)
    _install_package(os.path.realpath(source))
    return step.Step(code, spec, typed, PACKAGE, protocol)


def list_functions(module: types.ModuleType) -> dict[str, Any]:
    """Public functions defined in main itself, in definition order.

    `def` and `async def` alike, also behind decorators that keep
    `__wrapped__` (functools.wraps, lru_cache); an imported function (its
    __module__ is another module), a class and a name starting with `_` are
    not exposed.
    """
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, type)
        and isinstance(_unwrap(obj), FunctionType)
        and _unwrap(obj).__module__ == module.__name__
    }


def _unwrap(obj: Any) -> Any:
    for _ in range(100):  # a decorator chain, never a cycle
        inner = getattr(obj, "__wrapped__", None)
        if inner is None:
            break
        obj = inner
    return obj


def warm_up(functions: dict[str, Any], concurrency: int = 1) -> None:
    """Import asyncio before forking when main has async functions (or calls run
    concurrently), so the first call in each worker does not pay for the import."""
    if concurrency > 1:
        _sibling(os.path.join(HERE, "concurrently.py"), "_scriptd_concurrently")
    elif any(is_async(fn) for fn in functions.values()):
        import asyncio  # noqa: F401


def is_async(fn: Any) -> bool:
    """An `async def` function (behind decorators that keep __wrapped__ too)."""
    code = getattr(_unwrap(fn), "__code__", None)
    return code is not None and bool(code.co_flags & CO_COROUTINE)


def serve_concurrently(worker: Worker, concurrency: int) -> int:
    """Serve up to `concurrency` calls at once (runtimes/python/concurrently.py)."""
    module = _sibling(os.path.join(HERE, "concurrently.py"), "_scriptd_concurrently")
    return int(module.serve(worker, concurrency, sys.modules[__name__]))


CO_COROUTINE = 0x80


class Worker:
    """Serves frames from one socket, one at a time, until EOF."""

    def __init__(
        self,
        sock: Any,
        functions: dict[str, Any],
        max_output: int,
        max_frame: int,
        step: Any = None,
    ) -> None:
        prefer_oom_victim()
        self.sock = sock
        self.functions = functions
        self.step = step  # a step.Step for a code step: it takes `run` frames, not `call`
        self.max_frame = max_frame
        self.capture = capture.Capture(max_output, protocol.TRUNCATION_MARKER)
        self._loop: Any = None
        # Children's CPU changes only when the worker reaps a child, in a call: the
        # reading at the end of one call is the start of the next (a syscall saved).
        self._children_cpu = _children_cpu_seconds()

    def serve(self) -> int:
        """Returns the exit code: 0 when the daemon closes the socket, 2 on a protocol error."""
        frames = protocol.FrameReader(self.sock, self.max_frame, self.step is not None)
        while True:
            try:
                message = frames.read()
            except (protocol.ProtocolError, OSError) as exc:
                print(f"scriptd worker: {exc}", file=sys.stderr)
                return 2
            if message is None:
                return 0
            if message["t"] == "call":
                reply = self.call(message)
            elif message["t"] == "run":
                reply = self.run(message)
            elif message["t"] == "ping":
                reply = protocol.encode({"t": "pong", "id": message.get("id"), "pid": os.getpid()})
            else:
                print(f"scriptd worker: unknown frame {message['t']!r}", file=sys.stderr)
                continue
            try:
                self.sock.sendall(reply)
            except OSError:  # the daemon went away mid-call
                return 0

    def call(self, message: dict[str, Any]) -> bytes:
        name = message.get("function")
        result: dict[str, Any] = {"t": "result", "id": message.get("id")}
        self.capture.start()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            result["value"] = self._run(name, message.get("payload"))
            result["ok"] = True
        except BaseException as exc:  # the user's SystemExit is an error too
            result["ok"] = False
            result["error"] = call_error(exc)
        finally:
            self._measured(result, wall0, cpu0)
        return self._encode(result, name)

    def run(self, message: dict[str, Any]) -> bytes:
        """A code step's execution for one `run` frame."""
        result: dict[str, Any] = {"t": "result", "id": message.get("id")}
        if self.step is None:
            result.update(ok=False, error=harness_error("WrongKind", WRONG_KIND["run"]))
            return protocol.encode(result)
        step = sys.modules["_scriptd_step"]
        self.capture.start()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            step.execute(self.step, message.get("inputs"), result, error_info)
        finally:
            self._measured(result, wall0, cpu0)
        text = step.result_text(result, self.step.typed, protocol.dumps, self.max_frame)
        return protocol.encode_text(text)

    def _measured(self, result: dict[str, Any], wall0: float, cpu0: float) -> None:
        """Ends the capture; the call's output, CPU and wall time go into `result`."""
        result["stdout"], result["stderr"], result["truncated"] = self.capture.stop()
        children = _children_cpu_seconds()
        cpu = time.process_time() - cpu0 + children - self._children_cpu
        self._children_cpu = children
        result["cpu_ms"] = round(cpu * 1000, 3)
        result["wall_ms"] = round((time.perf_counter() - wall0) * 1000, 3)

    def _run(self, name: Any, payload: Any) -> Any:
        fn, payload = self.resolve(name, payload)
        value = fn(**payload)
        if hasattr(value, "__await__"):
            value = self._event_loop().run_until_complete(value)
        return value

    def resolve(self, name: Any, payload: Any) -> tuple[Any, dict[str, Any]]:
        """The function a call names and its keyword arguments; raises _HarnessError."""
        if self.step is not None:
            raise _HarnessError(harness_error("WrongKind", WRONG_KIND["call"]))
        fn = self.functions.get(name) if isinstance(name, str) else None
        if fn is None:
            known = ", ".join(self.functions) or "none"
            raise _HarnessError(
                harness_error(
                    "FunctionNotFound", f"main.py has no function {name!r} (has: {known})"
                )
            )
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise _HarnessError(
                harness_error(
                    "BadPayload", f"the payload must be a JSON object, not {_json_kind(payload)}"
                )
            )
        return fn, payload

    def _event_loop(self) -> Any:
        # One loop per worker, made lazily (after fork) and kept across calls.
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop

    def _encode(self, result: dict[str, Any], name: Any) -> bytes:
        try:
            frame = protocol.encode(result)
        except (TypeError, ValueError, RecursionError, OverflowError) as exc:
            result.pop("value", None)
            result["ok"] = False
            result["error"] = harness_error(
                "SerializationError", f"the value returned by {name}() is not JSON: {exc}"
            )
            frame = protocol.encode(result)
        if len(frame) - 4 > self.max_frame:
            size = len(frame) - 4
            result.pop("value", None)
            result["ok"] = False
            result["error"] = harness_error(
                "ResultTooLarge",
                f"the result of {name}() is {size} bytes as JSON, "
                f"over the {self.max_frame} allowed",
            )
            frame = protocol.encode(result)
        return frame


def prefer_oom_victim() -> None:
    """Past the memory limit, the kernel should kill a worker (which the
    supervisor replaces), not the supervisor that holds the replica up.
    Raising one's own oom_score_adj needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(OOM_SCORE_ADJ))
    except OSError:
        pass


OOM_SCORE_ADJ = 500


WRONG_KIND = {
    "run": "this script is a set of functions: call one of them (a `call` frame), not `run`",
    "call": "this script is a code step: run it (a `run` frame), it has no functions",
}


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _children_cpu_seconds() -> float:
    """User+system CPU of the children the worker waited for (python counts them)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def _write_status(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (protocol.dumps(message) + "\n").encode())
    os.close(fd)


def main(argv: list[str]) -> int:
    """Spawn-mode entry: one fresh interpreter serving one worker socket."""
    import argparse
    import socket

    parser = argparse.ArgumentParser(prog="harness.py")
    parser.add_argument("--fd", type=int, default=3)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--main", default="main.py")
    parser.add_argument("--max-output", type=int, default=protocol.MAX_OUTPUT_DEFAULT)
    parser.add_argument("--max-frame", type=int, default=protocol.MAX_FRAME_DEFAULT)
    parser.add_argument("--kind", choices=KINDS, default="functions")
    parser.add_argument("--step-spec", default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    functions: dict[str, Any] = {}
    step = None
    try:
        if args.kind == "step":
            step = load_step(args.source, args.main, args.step_spec)
        else:
            functions = list_functions(load_project(args.source, args.main))
    except BaseException as exc:
        _write_status(args.status_fd, {"t": "load_error", "error": error_info(exc)})
        return protocol.LOAD_ERROR_EXIT
    load_ms = round((time.perf_counter() - t0) * 1000, 3)
    _write_status(args.status_fd, {"t": "ready", "pid": os.getpid(), "load_ms": load_ms})
    sock = socket.socket(fileno=args.fd)
    worker = Worker(sock, functions, args.max_output, args.max_frame, step)
    if args.concurrency > 1 and step is None:
        code = serve_concurrently(worker, args.concurrency)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # threads of calls that never ended must not hold the exit
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
