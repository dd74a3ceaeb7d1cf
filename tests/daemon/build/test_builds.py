"""Real builds: a venv with a package from PyPI, node_modules from npm, the cache.

The environments land in the session's build cache (tests/helpers.build_cache),
so within one run the second build of the same dependencies is a reuse.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import AdminClient, DaemonProcess, make_zip

PY_MAIN = "import six\n\ndef version():\n    return six.__version__\n"
JS_MAIN = "const isNumber = require('is-number');\nfunction check(p) { return isNumber(p.x); }\n"
JS_MAIN += "module.exports = { check };\n"
PACKAGE_JSON = json.dumps({"name": "t", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})


def env_dir(daemon: DaemonProcess, admin: AdminClient, name: str) -> Path:
    """The built environment of the script's current version (from its build log)."""
    number = admin.script(name)["current_version"]
    log = admin.request("GET", f"/v1/scripts/{name}/versions/{number}/log").body.decode()
    cache = Path(daemon.config_path.read_text().split('cache_dir = "')[1].split('"')[0])
    keys = [p for p in (cache / "envs").iterdir() if p.name in log or f"{p.name}.tmp" in log]
    assert keys, log
    return keys[0]


def test_python_requirements_install_and_cache(admin: AdminClient, daemon: DaemonProcess) -> None:
    archive = make_zip({"main.py": PY_MAIN, "requirements.txt": "six==1.16.0\n"})
    admin.create("pydeps", archive, deploy=True)
    first = admin.wait_status("pydeps")
    assert first["status"] == "Deployed", first["deployment"]
    venv = env_dir(daemon, admin, "pydeps")
    out = subprocess.run(
        [venv / "bin" / "python", "-c", "import six; print(six.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "1.16.0"
    # unchanged dependencies: the redeploy builds nothing
    admin.action("pydeps", "redeploy", {"description": "same deps"})
    second = admin.wait_status("pydeps")
    log = admin.request("GET", "/v1/scripts/pydeps/versions/2/log").body.decode()
    assert "reused" in log and "pip install" not in log
    assert second["deployment"]["duration_s"] < 5


def test_node_dependencies_install(admin: AdminClient, daemon: DaemonProcess) -> None:
    archive = make_zip({"main.js": JS_MAIN, "package.json": PACKAGE_JSON})
    admin.create("jsdeps", archive, language="javascript", deploy=True)
    script = admin.wait_status("jsdeps")
    assert script["status"] == "Deployed", script["deployment"]
    modules = env_dir(daemon, admin, "jsdeps") / "node_modules"
    assert (modules / "is-number" / "package.json").is_file()
    src = daemon.state_dir / "scripts"
    main = next(src.glob("*/versions/1/src/main.js"))
    probe = f"console.log(require({json.dumps(str(main))}).check({{x: 5}}))"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "NODE_PATH": str(modules)}
    out = subprocess.run(["node", "-e", probe], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "true"
