"""The systemd files: the unit passes `systemd-analyze verify` and keeps its exposure
score, installed in a temporary root (never the host's /etc); sysusers.d and
tmpfiles.d apply to such a root; and the daemon serves (build, deploy, calls, a
backup with workspaces, undeploy, delete) with only the unit's capability bounding
set and no_new_privs, as systemd would start it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require, require_root
from tests.helpers import REPO, DaemonProcess, create_key, make_zip

UNIT = REPO / "systemd" / "scriptd.service"
SYSUSERS = REPO / "systemd" / "scriptd.sysusers"
TMPFILES = REPO / "systemd" / "scriptd.tmpfiles.conf"
MAX_EXPOSURE = 5.0  # 9.6 before the hardening; 4.6 with it (systemd 252)


def tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"needs {name} (Debian package systemd; ./dev.sh setup)")
    assert path is not None
    return path


def installed(root: Path, unit_text: str) -> Path:
    """A root with systemd's own units (the targets ours names), the unit in
    /etc/systemd/system, and an executable where ExecStart points."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "scriptd.service").write_text(unit_text)
    exec_start = re.search(r"^ExecStart=(\S+)", unit_text, re.M)
    assert exec_start is not None
    binary = root / exec_start.group(1).lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    argv = [tool("systemd-analyze"), "verify", f"--root={root}", "scriptd.service"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool("systemd-analyze")
    require(Path("/usr/lib/systemd/system").is_dir(), "needs systemd's units")
    return installed(tmp_path_factory.mktemp("root"), UNIT.read_text())


def test_the_installed_unit_passes_verify(unit_root: Path, tmp_path: Path) -> None:
    done = verify(unit_root)
    # verify exits 0 on a value it ignores: only silence is a pass
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    broken = UNIT.read_text().replace("ProtectClock=yes", "ProtectClock=sometimes")
    caught = verify(installed(tmp_path / "broken", broken))
    assert "ignoring: sometimes" in caught.stderr  # the check does see a bad line


def test_the_units_exposure_stays_low(unit_root: Path) -> None:
    argv = [tool("systemd-analyze"), "security", "--offline=true", f"--root={unit_root}",
            "--no-pager", "scriptd.service"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for scriptd.service: ([\d.]+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def test_sysusers_and_tmpfiles_apply_to_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    done = subprocess.run([tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    assert "scriptd-build:x:199999:199999:" in passwd
    assert re.search(r"^scriptd-admin:x:\d+:", (tmp_path / "etc/group").read_text(), re.M)
    done = subprocess.run([tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create",
                           str(TMPFILES)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var/lib/scriptd").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "run/scriptd").stat().st_mode & 0o777 == 0o750
    # ProtectSystem=strict leaves only these writable: tmpfiles.d must make each one
    # (a "-" path that is missing is skipped at start, and the bytecode goes unwritten)
    for line in UNIT.read_text().splitlines():
        if line.startswith("ReadWritePaths="):
            for path in line.split("=", 1)[1].split():
                assert (tmp_path / path.lstrip("-").lstrip("/")).is_dir(), path


def unit_capabilities() -> list[str]:
    """The unit's CapabilityBoundingSet (every line of it), as setpriv names them."""
    caps: list[str] = []
    for line in UNIT.read_text().splitlines():
        if line.startswith("CapabilityBoundingSet="):
            caps += line.split("=", 1)[1].split()
    return [c.removeprefix("CAP_").lower() for c in caps]


def capability_mask(names: list[str]) -> int:
    numbers = {"chown": 0, "dac_override": 1, "fowner": 3, "kill": 5, "setgid": 6,
               "setuid": 7, "setpcap": 8, "net_admin": 12, "sys_admin": 21,
               "sys_resource": 24}  # fmt: skip
    return sum(1 << numbers[n] for n in names)


def own_bounding_set() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^CapBnd:\s*([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]


def test_the_daemon_serves_with_only_the_units_capabilities(tmp_path: Path) -> None:
    require_root()
    setpriv = tool("setpriv")
    caps = unit_capabilities()
    wrapper = tmp_path / "python-as-the-unit"
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {setpriv} --inh-caps=-all --bounding-set={bounding} --no-new-privs -- "
        f'{sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    (tmp_path / "d").mkdir()
    daemon = DaemonProcess(tmp_path / "d", {}, cache_dir=tmp_path / "cache")
    daemon.python = str(wrapper)
    daemon.start(timeout=120)
    try:
        assert daemon.proc is not None
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]
        # the unit's set, less what this host withholds from us (a container's bounds)
        assert effective == capability_mask(caps) & own_bounding_set()
        serve_a_script(daemon)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


def serve_a_script(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    main = (
        "import os\n\n\ndef save(text):\n"
        "    with open(os.path.join(os.environ['WORKSPACE_DIR'], 'n.txt'), 'w') as f:\n"
        "        f.write(text)\n    return text\n"
    )
    admin.create("capped", make_zip({"main.py": main}), deploy=True)
    assert admin.wait_status("capped", timeout=300)["status"] == "Deployed", daemon.log()
    answer = daemon.gateway(create_key(admin, "capped")).call("capped", "save", {"text": "hi"})
    assert answer.status == 200 and answer.json() == {"result": "hi"}
    backup = admin.request("GET", "/v1/backup?workspaces=true")
    assert backup.status == 200 and len(backup.body) > 0, backup.body[:300]
    assert admin.action("capped", "undeploy", expect=200)["status"] == "Ready to Deploy"
    admin.call("DELETE", "/v1/scripts/capped")
    assert os.listdir(daemon.state_dir / "scripts") == []
