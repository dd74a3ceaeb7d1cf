"""Recovery at start, in-process: a runner that raises something unexpected for
one script neither stops the reconcile nor the other scripts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.build.builder import DONE_MARKER, Builder
from daemon.build.catalogue import Catalogue, discover_runtimes
from daemon.config.daemon_config import Config
from daemon.core.models import (
    DEPLOYED,
    DRAFT,
    V_DEPLOYED,
    ArchiveRef,
    Event,
    Resources,
    Script,
    Settings,
    Version,
    VersionSnapshot,
    now_iso,
)
from daemon.lifecycle.context import Context
from daemon.lifecycle.deployer import Deployer
from daemon.lifecycle.recovery import Recovery
from daemon.serving.target import RunTarget
from daemon.store.database import Store
from daemon.store.state_dir import StateDir


class SurprisingRunner:
    """Starts every script but "broken", for which it raises what no one expects."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, target: RunTarget) -> None:
        if target.script == "broken":
            raise KeyError("a bug in the runner")
        self.started.append(target.script)

    async def stop(self, script: str) -> None:
        pass

    async def close(self) -> None:
        pass


def deployed(store: Store, catalogue: Catalogue, name: str) -> Script:
    runtime = catalogue.pick("python", None)
    assert runtime is not None
    now = now_iso()
    script = Script(
        0, name, "", "python", runtime.version, DRAFT, "root", now, now, Settings((), 30),
        Resources(1, 1, 75, "1vcpu-2gb"), ArchiveRef("p.zip", "ab" * 32, 1, "/x/p.zip"),
        ("f",), None,
    )  # fmt: skip
    script = store.insert_script(script)
    version = Version(
        0, script.id, 1, f"{name}-v1", V_DEPLOYED, "done", "root", now, now, None,
        VersionSnapshot.of(script, runtime.path), env_key="k",
    )  # fmt: skip
    event = Event(0, script.id, now, "deployed", "root", {})
    store.begin_version(replace(script, status=DEPLOYED, current_version=1), version, event)
    return script


def on_disk(ctx: Context, script: Script) -> None:
    """What a deployed version has on disk: its source and its built environment (a
    version lacking either is unpacked and built again first)."""
    ctx.state.source_dir(script.id, 1).mkdir(parents=True)
    env = ctx.builder.env_dir("k")
    env.mkdir(parents=True, exist_ok=True)
    (env / DONE_MARKER).write_text("done\n")


async def test_unexpected_error_is_recorded_and_the_others_start(tmp_path: Path) -> None:
    config = Config(state_dir=tmp_path)
    state = StateDir(tmp_path)
    state.prepare()
    store = Store(state.db)
    catalogue = discover_runtimes(config)
    runner = SurprisingRunner()
    ctx = Context(config, store, state, catalogue, Builder(config), runner)
    for name in ("broken", "fine"):
        on_disk(ctx, deployed(store, catalogue, name))

    await Recovery(ctx, Deployer(ctx)).reconcile()

    assert runner.started == ["fine"]
    broken = store.get_script("broken")
    assert broken is not None and broken.status == DEPLOYED
    v = store.get_version(broken.id, 1)
    assert v is not None and v.failure_reason is not None
    assert "internal error: KeyError('a bug in the runner')" in v.failure_reason
    kinds = [(e.kind, e.detail.get("reason")) for e in store.list_events(broken.id)]
    assert ("restart_failed", "internal error: KeyError('a bug in the runner')") in kinds
    fine = store.get_script("fine")
    assert fine is not None
    assert all(e.kind != "restart_failed" for e in store.list_events(fine.id))
