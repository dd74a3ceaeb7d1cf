"""The whole script lifecycle through `scriptctl --json`, run as a subprocess
against the real daemon (tests.helpers starts it on a temporary state dir).

Projects are tiny and have no dependencies, so builds stay fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import running_daemon

REPO = Path(__file__).resolve().parents[2]
STATUSES = ("Draft", "Deploying", "Ready to Deploy", "Deployed", "Deployment Failed")

MAIN_V1 = """\
from .helpers import polite


def greet(name="world"):
    return polite(f"hello {name}")


def add(a, b):
    return a + b


def _hidden():
    return None
"""
MAIN_V2 = (
    MAIN_V1
    + """

def shout(text):
    return text.upper()
"""
)
HELPERS = """\
def polite(text):
    return text + ", please"
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ctl:
    """Runs `python -m daemon.cli --socket SOCK --json ...` as a subprocess."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def run(self, *argv: str, timeout: float = 300, json_output: bool = True) -> Result:
        env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
        mode = ["--json"] if json_output else []
        proc = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "--socket", self.socket_path, *mode, *argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *argv: str) -> Any:
        """The command's JSON; fails the test with scriptctl's stderr if it failed."""
        result = self.run(*argv)
        assert result.code == 0, f"scriptctl {' '.join(argv)} failed:\n{result.err}"
        return result.json()

    def refused(self, *argv: str) -> Result:
        """A command that must fail with one `scriptctl: error:` line (plus details)."""
        result = self.run(*argv)
        assert result.code != 0, f"scriptctl {' '.join(argv)} should have failed:\n{result.out}"
        assert result.err.startswith("scriptctl: error: "), result.err
        return result


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[Ctl]:
    """One daemon for the module: the tests use distinct script names."""
    root = tmp_path_factory.mktemp("scriptd")
    with running_daemon(root, cache_dir=build_cache) as daemon:
        yield Ctl(str(daemon.admin_socket))


def write_project(folder: Path, main: str = MAIN_V1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main)
    (folder / "helpers.py").write_text(HELPERS)
    return folder


def zip_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def error_line(result: Result) -> str:
    return result.err.splitlines()[0]


def test_validate_lists_functions_or_every_error(ctl: Ctl, tmp_path: Path) -> None:
    good = write_project(tmp_path / "good")
    report = ctl.ok("validate", str(good), "--language", "python")
    assert report["ok"] is True and report["language"] == "python"
    assert sorted(report["functions"]) == ["add", "greet"]

    bad = tmp_path / "nested.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("project/main.py", MAIN_V1)
        zf.writestr("project/helpers.py", HELPERS)
    result = ctl.refused("validate", str(bad), "--language", "python")
    report = result.json()
    assert report["ok"] is False and report["errors"]
    for finding in report["errors"]:
        assert finding["message"] and finding["fix"]
    assert "project" in json.dumps(report["errors"])  # names the top folder

    ctl.refused("validate", str(tmp_path / "missing.zip"))


def test_whole_lifecycle(ctl: Ctl, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1")
    v2 = write_project(tmp_path / "v2", MAIN_V2)

    # Create a draft, then update it (the name too: allowed while Draft).
    script = ctl.ok(
        "create",
        "cli-draft",
        "--language",
        "python",
        "--archive",
        str(v1),
        "--description",
        "first words",
        "--env",
        "GREETING=hi",
        "--secret-env",
        "TOKEN=s3cret",
    )
    assert script["status"] == "Draft" and script["name"] == "cli-draft"
    env = {e["key"]: e for e in script["settings"]["env"]}
    assert env["GREETING"]["value"] == "hi"
    assert env["TOKEN"]["secret"] and env["TOKEN"]["value"] != "s3cret"
    script = ctl.ok(
        "update",
        "cli-draft",
        "--new-name",
        "cli-life",
        "--description",
        "second",
        "--timeout",
        "45",
        "--max-replicas",
        "2",
    )
    assert (script["name"], script["description"]) == ("cli-life", "second")
    assert script["settings"]["timeout_s"] == 45
    assert script["resources"]["max_replicas"] == 2
    # Editing one variable keeps the others, the secret included.
    script = ctl.ok("update", "cli-life", "--env", "GREETING=hello", "--env", "EXTRA=1")
    env = {e["key"]: e for e in script["settings"]["env"]}
    assert set(env) == {"GREETING", "TOKEN", "EXTRA"} and env["GREETING"]["value"] == "hello"
    assert env["TOKEN"]["secret"] is True
    script = ctl.ok("update", "cli-life", "--unset-env", "EXTRA")
    assert {e["key"] for e in script["settings"]["env"]} == {"GREETING", "TOKEN"}

    # The summary list and its search.
    names = {s["name"]: s for s in ctl.ok("list")["scripts"]}
    assert names["cli-life"]["status"] == "Draft" and "cli-draft" not in names
    assert set(names["cli-life"]) >= {"name", "status", "added_by", "updated_at"}
    assert [s["name"] for s in ctl.ok("list", "--search", "life")["scripts"]] == ["cli-life"]
    assert ctl.ok("list", "--search", "no-such-thing")["scripts"] == []

    overview = ctl.ok("show", "cli-life")
    assert overview["status"] == "Draft" and overview["language"] == "python"
    assert overview["current_version"] is None

    # Deploy and wait: v1 with its default display name.
    script = ctl.ok("deploy", "cli-life", "--wait")
    assert script["status"] == "Deployed"
    assert script["deployment"]["number"] == 1 and script["deployment"]["status"] == "Deployed"
    assert sorted(script["functions"]) == ["add", "greet"]
    history = ctl.ok("history", "cli-life")
    (first,) = history["versions"]
    assert (first["number"], first["display_name"], first["status"]) == (
        1,
        "cli-life-v1",
        "Deployed",
    )
    assert first["deployed_by"] and first["duration_s"] is not None
    assert history["events"]

    # Rename a version: a good name, then a bad one.
    version = ctl.ok("rename-version", "cli-life", "1", "first-light")
    assert version["display_name"] == "first-light"
    bad = ctl.refused("rename-version", "cli-life", "1", "Not A Name!")
    assert bad.json()["error"]["type"] == "bad_request"
    assert ctl.ok("history", "cli-life")["versions"][0]["display_name"] == "first-light"

    # Refused while Deployed, each naming the status.
    for argv in (
        ("delete", "cli-life", "--yes"),
        ("update", "cli-life", "--description", "x"),
        ("deploy", "cli-life"),
    ):
        result = ctl.refused(*argv)
        assert "Deployed" in error_line(result), result.err
        assert result.json()["error"]["type"] == "conflict"

    # Redeploy with a changed archive -> v2.
    script = ctl.ok("redeploy", "cli-life", "--archive", str(v2), "--wait")
    assert script["status"] == "Deployed" and script["deployment"]["number"] == 2
    assert "shout" in script["functions"]
    versions = {v["number"]: v for v in ctl.ok("history", "cli-life")["versions"]}
    assert versions[2]["status"] == "Deployed" and versions[2]["display_name"] == "cli-life-v2"
    assert versions[1]["status"] != "Deployed"

    # Undeploy -> Ready to Deploy; then what that status refuses and allows.
    assert ctl.ok("undeploy", "cli-life")["status"] == "Ready to Deploy"
    result = ctl.refused("redeploy", "cli-life", "--wait")
    assert "Ready to Deploy" in error_line(result)
    result = ctl.refused("update", "cli-life", "--new-name", "cli-other")
    assert "Ready to Deploy" in error_line(result) or "Draft" in error_line(result)
    assert ctl.ok("update", "cli-life", "--description", "resting")["description"] == "resting"

    # Export round trip: the zip holds the project of v2.
    out = tmp_path / "exported.zip"
    exported = ctl.ok("export", "cli-life", "-o", str(out))
    assert exported["bytes"] == out.stat().st_size
    assert zip_files(out) == folder_files(v2)

    # Delete: refused without a terminal or --yes, then gone.
    result = ctl.refused("delete", "cli-life")
    assert "--yes" in error_line(result)
    assert ctl.ok("show", "cli-life")["status"] == "Ready to Deploy"
    assert ctl.ok("delete", "cli-life", "--yes") == {"deleted": "cli-life"}
    result = ctl.refused("show", "cli-life")
    assert result.json()["error"]["type"] == "not_found"
    assert "cli-life" not in {s["name"] for s in ctl.ok("list")["scripts"]}


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_sample_projects_validate(ctl: Ctl, tmp_path: Path, language: str) -> None:
    sample = tmp_path / f"sample-{language}.zip"
    written = ctl.ok("sample", "--language", language, "-o", str(sample))
    assert written["bytes"] == sample.stat().st_size > 0
    report = ctl.ok("validate", str(sample), "--language", language)
    assert report["ok"] is True and report["language"] == language
    assert report["functions"]


def test_up_creates_then_redeploys(ctl: Ctl, tmp_path: Path) -> None:
    folder = write_project(tmp_path / "proj")
    script = ctl.ok("up", str(folder), "--name", "cli-up", "--description", "from up")
    assert script["status"] == "Deployed" and script["deployment"]["number"] == 1
    (folder / "main.py").write_text(MAIN_V2)
    script = ctl.ok("up", str(folder), "--name", "cli-up")
    assert script["status"] == "Deployed" and script["deployment"]["number"] == 2
    assert "shout" in script["functions"]
    assert [v["number"] for v in ctl.ok("history", "cli-up")["versions"]] in ([1, 2], [2, 1])
    ctl.ok("undeploy", "cli-up")
    ctl.ok("delete", "cli-up", "--yes")


def test_tables_for_people(ctl: Ctl, tmp_path: Path) -> None:
    folder = write_project(tmp_path / "proj")
    up = ctl.run("up", str(folder), "--name", "cli-tables", json_output=False)
    assert up.code == 0, up.err
    assert up.out == "cli-tables v1 (cli-tables-v1) is Deployed; functions: greet, add\n"
    assert "Deployed v1 (cli-tables-v1)" in up.err  # the progress lines
    listing = ctl.run("list", "--search", "cli-tables", json_output=False).out.splitlines()
    assert listing[0].split() == ["SCRIPT", "NAME", "STATUS", "ADDED", "BY", "UPDATED", "ON",
                                  "(UTC)", "LANGUAGE"]  # fmt: skip
    assert listing[1].split()[:2] == ["cli-tables", "Deployed"]
    ctl.ok("undeploy", "cli-tables")
    listing = ctl.run("list", "--search", "cli-tables", json_output=False).out
    assert "  Ready to Deploy  " in listing
    overview = ctl.run("show", "cli-tables", json_output=False).out
    assert "Status:           Ready to Deploy" in overview
    history = ctl.run("history", "cli-tables", json_output=False).out.splitlines()
    assert history[1].split()[:3] == ["v1", "cli-tables-v1", "Undeployed"]
    ctl.ok("delete", "cli-tables", "--yes")


def test_failed_deploy_exits_non_zero_with_the_reason(ctl: Ctl, tmp_path: Path) -> None:
    folder = write_project(tmp_path / "broken")
    # A name no index has: validation passes, the build fails.
    (folder / "requirements.txt").write_text("no-such-package-scriptd-cli-test==9.9\n")
    result = ctl.run("up", str(folder), "--name", "cli-broken")
    assert result.code != 0
    assert result.json()["deployment"]["status"] == "Deployment Failed"
    assert "Deployment Failed" in result.err.splitlines()[-1]
    ctl.ok("delete", "cli-broken", "--yes")


def test_profiles_and_runtimes(ctl: Ctl) -> None:
    profiles = ctl.ok("profiles")["profiles"]
    assert [p["name"] for p in profiles] == [
        "1vcpu-2gb",
        "2vcpu-4gb",
        "2vcpu-8gb",
        "4vcpu-8gb",
        "4vcpu-16gb",
    ]
    assert sum(1 for p in profiles if p["default"]) == 1
    runtimes = ctl.ok("runtimes")["runtimes"]
    assert {"python", "javascript"} <= {r["language"] for r in runtimes}


def test_unreachable_daemon_is_one_clear_line(tmp_path: Path) -> None:
    result = Ctl(str(tmp_path / "nobody.sock")).run("list")
    assert result.code == 1 and result.out == ""
    assert result.err.count("\n") == 1
    assert "cannot reach scriptd at" in result.err and "is --socket right?" in result.err
