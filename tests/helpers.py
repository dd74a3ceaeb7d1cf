"""Test helpers: the real scriptd process on a temp state dir, and a client for it.

    daemon = start_daemon(tmp_path, cache_dir=...)   # python -m daemon.main ... (a real process)
    admin = daemon.client()                          # HTTP/JSON over the real unix socket
    archive_id = admin.upload(make_zip({"main.py": "def f():\\n    return 1\\n"}))
    admin.create("demo", archive_id=archive_id, deploy=True)
    admin.wait_status("demo")                        # until Deployed / Deployment Failed
    daemon.kill(); daemon.start()                    # SIGKILL and restart on the same state
    with running_daemon(tmp_dir) as daemon: ...      # for module-scoped fixtures

Fixtures (import them in a conftest.py, as tests/daemon and tests/e2e do):
`build_cache` (session: uv/npm caches and built environments shared by every
daemon of the run; set SCRIPTD_TEST_CACHE=/some/dir to keep it across runs),
`daemon` (a started DaemonProcess, stopped after the test) and `admin` (its
AdminClient). `daemon_config` may be overridden in a test module to add config
keys (a dict in the TOML layout, e.g. {"build": {"timeout_s": 5}}).

Calls through the gateway (real HTTP on 127.0.0.1):

    key = create_key(admin, "demo")                  # POST /v1/scripts/demo/keys
    gw = daemon.gateway(key)                         # one keep-alive connection
    r = gw.call("demo", "hello", {"name": "x"})      # Response(status, headers, body)

Each daemon gets a cgroup root of its own name (sandbox.cgroup_name, or the name
the daemon derives from its state dir with derived_cgroup=True), so daemons
running side by side never remove each other's replicas as "leftovers".
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_root

REPO = Path(__file__).resolve().parent.parent
FINAL_STATUSES = frozenset({"Deployed", "Deployment Failed"})
# Small timeouts so tests can exercise them; everything else is the default.
# The metrics listener is off: daemons side by side would all want its default port
# (a test that scrapes gives its daemon a free one). The console is off too unless a
# test asks for it (its default port is likewise one for all daemons).
TEST_CONFIG: dict[str, Any] = {
    "settings": {"timeout_min_s": 1, "timeout_default_s": 30},
    "metrics": {"listen": ""},
    "console": {"enabled": False},
}
# One small profile (half a vCPU, one worker, 256 MiB) for tests that run replicas:
# an out-of-memory test then allocates 256 MiB, not the default profile's 1.1 GiB.
TINY_PROFILES: dict[str, Any] = {
    "profiles": [
        {"name": "tiny", "label": "tiny (tests)", "nominal_vcpus": 1, "nominal_memory_gib": 1,
         "vcpus": 0.5, "memory_gib": 0.25, "credits_per_hour": 0.01, "default": True},
    ]
}  # fmt: skip

# --- archives -------------------------------------------------------------------------


def make_zip(files: Mapping[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(files: Mapping[str, str | bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(raw), 0o644, 1_700_000_000
            tf.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


PY_MAIN = "def hello(name='world'):\n    return 'hello ' + name\n"
JS_MAIN = "function hello(p) { return 'hello ' + p.name; }\nmodule.exports = { hello };\n"

# --- the client -----------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class AdminError(AssertionError):
    def __init__(self, response: Response, expected: int) -> None:
        super().__init__(
            f"expected HTTP {expected}, got {response.status}: {response.body[:2000]!r}"
        )
        self.response = response


class AdminClient:
    """A small synchronous client of the admin API (stdlib only)."""

    def __init__(self, socket_path: Path, timeout: float = 60) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
            hdrs = dict(headers or {})
            if raw is not None and not isinstance(body, bytes):
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=raw, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """The JSON answer; AdminError when the status is not `expect`."""
        r = self.request(method, path, body)
        if r.status != expect:
            raise AdminError(r, expect)
        return (
            r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.body
        )

    def get(self, path: str, expect: int = 200) -> Any:
        return self.call("GET", path, expect=expect)

    def upload(self, data: bytes, filename: str = "project.zip") -> str:
        r = self.request("POST", "/v1/archives", data, {"X-Filename": filename})
        if r.status != 201:
            raise AdminError(r, 201)
        return str(r.json()["archive_id"])

    def create(
        self,
        name: str,
        archive: bytes | None = None,
        *,
        language: str = "python",
        expect: int = 201,
        **fields: Any,
    ) -> Any:
        """Create a script; `archive` (bytes of a zip) is uploaded first, else
        fields must hold archive_id. A default Python project when neither."""
        if "archive_id" not in fields:
            main = {"python": {"main.py": PY_MAIN}, "javascript": {"main.js": JS_MAIN}}
            fields["archive_id"] = self.upload(archive or make_zip(main[language]))
        body = {"name": name, "language": language, **fields}
        return self.call("POST", "/v1/scripts", body, expect=expect)

    def script(self, name: str) -> Any:
        return self.get(f"/v1/scripts/{name}")

    def action(self, name: str, verb: str, body: Any = None, expect: int = 202) -> Any:
        return self.call("POST", f"/v1/scripts/{name}/{verb}", body or {}, expect=expect)

    def history(self, name: str) -> Any:
        return self.get(f"/v1/scripts/{name}/history")

    def wait_status(
        self, name: str, until: frozenset[str] = FINAL_STATUSES, timeout: float = 180
    ) -> Any:
        """Poll until the script's status is in `until` and no deploy runs."""
        deadline = time.monotonic() + timeout
        while True:
            script = self.script(name)
            dep = script.get("deployment") or {}
            if script["status"] in until and dep.get("status") != "Deploying":
                return script
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still {script['status']} after {timeout} s: {script}")
            time.sleep(0.1)

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            script = self.script(name)
            if (script.get("deployment") or {}).get("phase") == phase:
                return script
            time.sleep(0.05)
        raise AssertionError(f"{name} never reached phase {phase}")


# --- the gateway ---------------------------------------------------------------------


class GatewayClient:
    """Calls over one keep-alive HTTP connection to the gateway (reopened on error)."""

    def __init__(self, port: int, key: str | None = None, timeout: float = 60) -> None:
        self.port = port
        self.key = key
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None,
        headers: Mapping[str, str] | None = None, key: str | None = None,
    ) -> Response:  # fmt: skip
        hdrs = dict(headers or {})
        key = key if key is not None else self.key
        if key:
            hdrs.setdefault("Authorization", f"Bearer {key}")
        reused = self._conn is not None
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body=body, headers=hdrs)
            resp = self._conn.getresponse()
            out = Response(resp.status, dict(resp.getheaders()), resp.read())
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            stale = isinstance(exc, ConnectionError | http.client.RemoteDisconnected)
            if reused and stale:  # the server closed a kept-alive connection: once more
                return self.request(method, path, body, headers, key)
            raise
        if out.headers.get("Connection", "").lower() == "close":
            self.close()
        return out

    def call(
        self, script: str, function: str, payload: Any = None, *, raw: bytes | None = None,
        key: str | None = None,
    ) -> Response:  # fmt: skip
        body = raw if raw is not None else json.dumps(payload or {}).encode()
        path = f"/v1/scripts/{script}/functions/{function}"
        return self.request("POST", path, body, {"Content-Type": "application/json"}, key)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def create_key(admin: AdminClient, script: str, name: str | None = None) -> str:
    """A new API key of `script` through the admin API; the whole key."""
    body = {} if name is None else {"name": name}
    return str(admin.call("POST", f"/v1/scripts/{script}/keys", body, expect=201)["key"])


# --- the daemon process -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to_toml(doc: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configs: nested tables of strings, numbers, bools, lists."""
    lines, tables, arrays = [], [], []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((key, value))  # an array of tables, such as [[profiles]]
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(lines) + "\n"
    for key, value in tables:
        name = f"{prefix}{key}"
        out += f"\n[{name}]\n" + to_toml(value, name + ".")
    for key, items in arrays:
        for item in items:
            out += f"\n[[{prefix}{key}]]\n" + to_toml(item, f"{prefix}{key}.")
    return out


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
        )
    return out


class DaemonProcess:
    """`python -m daemon.main` on a temp state dir; start, stop (SIGTERM), kill (SIGKILL)."""

    # free_port() only finds a port that was free a moment ago: another process may
    # bind it before the daemon does, so a start that fails on it tries a new port.
    # The same holds for the cgroup name that carries the port: another test process
    # (pytest-xdist) may have picked the same port a moment before.
    PORT_ATTEMPTS = 5

    def __init__(
        self,
        root: Path,
        config: Mapping[str, Any],
        cache_dir: Path | None,
        derived_cgroup: bool = False,
    ) -> None:
        self.root = root
        self.derived_cgroup = derived_cgroup  # no sandbox.cgroup_name: the daemon derives it
        self.state_dir = root / "state"
        self.socket = root / "admin.sock"
        self.config_path = root / "scriptd.toml"
        self.log_path = root / "scriptd.log"
        self._config = config
        self._cache_dir = cache_dir
        # Real sandboxes need root. In CI a non-root run is an error; on a developer's
        # machine the daemon falls back to --dev-no-sandbox, and the tests that need
        # real sandboxes call require_root() first, so they skip with the reason.
        if IN_CI:
            require_root()
        self.sandboxed = os.geteuid() == 0
        self.port = 0
        self._new_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.python = sys.executable  # the interpreter the daemon runs on
        self.repo = REPO  # the tree whose daemon runs (bench/invoke_ab.py runs another)
        self._notify: socket.socket | None = None
        self._notify_name = ""
        self.notices: list[str] = []  # sd_notify states of the last start ("READY=1", ...)

    def _new_port(self) -> None:
        """Pick a free port and write the config (the cgroup name carries the port)."""
        self.port = free_port()
        own = {"sandbox": {"cgroup_name": f"scriptd-test-{self.port}"}}
        full = _merge(TEST_CONFIG, {} if self.derived_cgroup else own)
        full = _merge(full, self._config)
        if self._cache_dir is not None:
            full = _merge({"build": {"cache_dir": str(self._cache_dir)}}, full)
        self.config_path.write_text(to_toml(full))

    @property
    def admin_socket(self) -> Path:
        return self.socket

    def gateway(self, key: str | None = None, timeout: float = 60) -> GatewayClient:
        return GatewayClient(self.port, key, timeout)

    @property
    def argv(self) -> list[str]:
        argv = [self.python, "-m", "daemon.main", "--config", str(self.config_path),
                "--state-dir", str(self.state_dir), "--admin-socket", str(self.socket),
                "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        return argv if self.sandboxed else [*argv, "--dev-no-sandbox"]

    def start(self, timeout: float = 30) -> DaemonProcess:
        for _ in range(self.PORT_ATTEMPTS - 1):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once(timeout)
            except RuntimeError:
                this_run = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                if not self._port_was_taken(this_run.lower()):
                    raise
            self._new_port()
        return self._start_once(timeout)

    def _port_was_taken(self, log: str) -> bool:
        """Whether a failed start's log says its port, or the cgroup name that carries
        the port (not one the test's config names), was another process's."""
        if "address already in use" in log:
            return True
        named = "cgroup_name" in self._config.get("sandbox", {})
        return not (self.derived_cgroup or named) and "is in use by another process" in log

    def _start_once(self, timeout: float) -> DaemonProcess:
        """Start and wait for READY=1 on a notify socket of our own, as systemd does: the
        daemon says it only once both sockets serve and its Deployed scripts' replicas
        have started (or their failure is recorded)."""
        self._open_notify_socket()
        env = {**os.environ, "NOTIFY_SOCKET": "@" + self._notify_name}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.repo, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY=1" in self._read_notices(0.05):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"scriptd exited with {self.proc.returncode}:\n{self.log()}")
        self.kill()
        raise RuntimeError(f"scriptd did not say READY within {timeout} s:\n{self.log()}")

    def _open_notify_socket(self) -> None:
        if self._notify is not None:
            self._notify.close()
        self._notify_name = f"scriptd-test-{os.getpid()}-{self.port}-{time.monotonic_ns()}"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.bind("\0" + self._notify_name)
        self.notices = []

    def _read_notices(self, wait: float) -> list[str]:
        """The states the daemon sent since the start (waiting up to `wait` for more)."""
        if self._notify is None:
            return self.notices
        self._notify.settimeout(wait)
        try:
            while True:
                self.notices.append(self._notify.recv(4096).decode(errors="replace"))
                self._notify.settimeout(0)
        except (TimeoutError, BlockingIOError):
            pass
        return self.notices

    def answers(self) -> bool:
        try:
            return self.client(timeout=2).request("GET", "/v1/profiles").status == 200
        except OSError:
            return False

    def client(self, timeout: float = 60) -> AdminClient:
        return AdminClient(self.socket, timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
            self._read_notices(0)
            return code
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"scriptd ignored SIGTERM for {timeout} s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_daemon(
    root: Path,
    config: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    derived_cgroup: bool = False,
) -> DaemonProcess:
    """A started daemon; with `derived_cgroup`, its cgroup root is named after its
    state dir by the daemon itself (no sandbox.cgroup_name in its config)."""
    root.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(root, config or {}, cache_dir, derived_cgroup).start()


@contextmanager
def running_daemon(
    root: Path, config: Mapping[str, Any] | None = None, cache_dir: Path | None = None
) -> Iterator[DaemonProcess]:
    """A started daemon for the `with` block (for module-scoped fixtures); stopped after."""
    d = start_daemon(root, config, cache_dir or _session_cache())
    try:
        yield d
    finally:
        d.stop()


def _session_cache() -> Path | None:
    kept = os.environ.get("SCRIPTD_TEST_CACHE")
    return Path(kept) if kept else None


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("SCRIPTD_TEST_CACHE")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under pytest-xdist each worker's temp root lies below the run's: one cache for
        # all workers, so an environment is built once per run, not once per worker (the
        # builder locks each environment with an flock: daemons share it side by side).
        shared = tmp_path_factory.getbasetemp().parent / "build-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("build-cache")


@pytest.fixture(autouse=True)
def unmounted_workspaces(tmp_path: Path) -> Iterator[None]:
    """After each test: no workspace image stays mounted below its tmp folder (tests
    that launch replicas without a daemon have no shutdown that unmounts them)."""
    yield
    if os.geteuid() == 0:
        from daemon.serving.workspace_image import unmount_all

        unmount_all(tmp_path)


@pytest.fixture
def daemon_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def daemon(
    tmp_path: Path, build_cache: Path, daemon_config: dict[str, Any]
) -> Iterator[DaemonProcess]:
    d = start_daemon(tmp_path / "scriptd", daemon_config, build_cache)
    try:
        yield d
    finally:
        code = d.stop()
        assert code in (0, None, -9), f"scriptd exited with {code}:\n{d.log()}"


@pytest.fixture
def admin(daemon: DaemonProcess) -> AdminClient:
    return daemon.client()
