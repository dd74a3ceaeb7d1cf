"""SIGKILL the real daemon at random points and check what the next start finds,
through public interfaces only (admin API over the unix socket, the gateway over HTTP
on loopback, the store file read-only with apsw, /proc and the cgroup mounts).

Each round (--rounds, default 10; the kinds are spread evenly, in a random order):
- deploy: a new script is created with deploy=true, killed a random time into it;
- load: only the calls below run, killed at a random time;
- redeploy: a Deployed script is redeployed with a new version, killed a random time into it.
Calls of a Deployed script run from two threads through every round; the execution
ids the gateway returns are kept with the time of the answer.

After each kill: `PRAGMA integrity_check` on scriptd.db (read-only, before the restart),
then the restart, and
- every script is in a status of the status table;
- every Deployed script answers a call within 10 s of the restart;
- no process or cgroup of the killed daemon remains (by identity: a cgroup by path and
  inode, a process by pid and start time), taken just before the kill;
- no execution answered more than one recorder flush (0.5 s) before the kill is lost.
Prints a row per round and PASS/FAIL per criterion (exit status 1 on a FAIL); writes
bench/results/crash.json.

Run as root:  .venv/bin/python -m bench.crash [--rounds 10] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.crash_checks import (
    STATUSES,
    CallRecorder,
    answer_times,
    integrity,
    lost_executions,
)
from bench.leftovers import Leftovers, find_leftovers, identities, survivors
from tests.helpers import AdminClient, DaemonProcess, create_key, make_zip

RESULTS = Path(__file__).resolve().parent / "results" / "crash.json"
MAIN = "VERSION = {version}\n\n\ndef ok():\n    return VERSION\n"
PROFILE = {
    "name": "crash", "label": "crash bench", "nominal_vcpus": 1, "nominal_memory_gib": 1,
    "vcpus": 0.5, "memory_gib": 0.25, "credits_per_hour": 0.01, "default": True,
}  # fmt: skip
KINDS = ("deploy", "load", "redeploy")


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.cgroup_name = f"scriptd-crash-{os.getpid()}"
        self.root = root
        config = {"profiles": [PROFILE], "sandbox": {"cgroup_name": self.cgroup_name}}
        self.cache = args.cache or root / "cache"
        self.daemon = DaemonProcess(root, config, self.cache)
        self.rng = random.Random(args.seed)
        self.keys: dict[str, str] = {}
        self.deploy_s = 1.0
        self.version = 0

    @property
    def admin(self) -> AdminClient:
        return self.daemon.client()

    def setup(self) -> None:
        self.daemon.start()
        started = time.monotonic()
        for name in ("steady", "redeployed"):
            self.admin.create(name, make_zip({"main.py": MAIN.format(version=0)}), deploy=True)
            if self.admin.wait_status(name)["status"] != "Deployed":
                raise RuntimeError(f"{name} did not deploy:\n{self.daemon.log()[-3000:]}")
            self.keys[name] = create_key(self.admin, name)
        self.deploy_s = (time.monotonic() - started) / 2

    def provoke(self, kind: str, round_no: int) -> float:
        """Start the round's action; the delay after which the daemon is killed."""
        delay = self.rng.uniform(0.05, 1.2 * self.deploy_s)
        if kind == "deploy":
            archive = self.admin.upload(make_zip({"main.py": MAIN.format(version=round_no)}))
            self.admin.create(f"new-{round_no}", archive_id=archive, deploy=True)
        elif kind == "redeploy":
            self.version += 1
            archive = self.admin.upload(make_zip({"main.py": MAIN.format(version=self.version)}))
            # Refused while the previous round's redeploy is still being resumed: then
            # this round kills the resumed one.
            self.admin.request("POST", "/v1/scripts/redeployed/redeploy", {"archive_id": archive})
        elif kind == "load":
            delay = self.rng.uniform(0.5, 3.0)
        return delay

    def round(self, round_no: int, kind: str) -> dict[str, Any]:
        recorder = CallRecorder(self.daemon.port, self.keys["steady"], "steady")
        recorder.start()
        try:
            delay = self.provoke(kind, round_no)
            time.sleep(delay)  # the random point of the kill is the purpose of this bench
            pid = self.daemon.proc.pid if self.daemon.proc else -1
            before = {
                i for i in identities(self.leftovers()) if not i.startswith(f"process {pid} ")
            }
            killed_at = time.monotonic()
            self.daemon.kill()
        finally:
            recorder.stop()
        store = integrity(self.daemon.state_dir / "scriptd.db")
        self.daemon.start()
        up = time.monotonic()
        orphans_at_start = survivors(before, self.leftovers())
        scripts = self.admin.get("/v1/scripts")["scripts"]
        for s in scripts:
            if s["name"] not in self.keys:
                self.keys[s["name"]] = create_key(self.admin, s["name"])
        answers = answer_times(self.admin, self.daemon.port, self.keys, up)
        checked, lost, recent, recent_lost = lost_executions(
            self.admin, recorder.answered, killed_at
        )
        return {
            "round": round_no, "kind": kind, "kill_after_s": round(delay, 2),
            "restart_s": round(up - killed_at, 2), "integrity": store,
            "statuses": {s["name"]: s["status"] for s in scripts},
            "answer_s": answers, "before_kill": sorted(before),
            "orphans_at_start": orphans_at_start,
            "orphans_after_checks": survivors(before, self.leftovers()),
            "calls": {str(k): v for k, v in recorder.statuses.items()},
            "executions_checked": checked, "executions_lost": lost,
            "recent_checked": recent, "recent_lost": recent_lost,
        }  # fmt: skip

    def leftovers(self) -> Leftovers:
        return find_leftovers(self.cgroup_name, (str(self.root), str(self.cache)))

    def close(self) -> None:
        self.daemon.stop(30)


def row_line(r: dict[str, Any]) -> str:
    bad_status = [n for n, s in r["statuses"].items() if s not in STATUSES]
    times = [t for t in r["answer_s"].values() if t is not None]
    late = [n for n, t in r["answer_s"].items() if t is None]
    return (
        f"{r['round']:>3} {r['kind']:<9} {r['kill_after_s']:>6.2f} {r['restart_s']:>7.2f} "
        f"{r['integrity'][:10]:<10} {len(r['statuses']):>3}/{len(bad_status):<3} "
        f"{len(r['answer_s']):>3} {max(times, default=0):>6.2f} {len(late):>4} "
        f"{len(r['before_kill']):>5} {len(r['orphans_at_start']):>5} "
        f"{r['executions_checked']:>6} {len(r['executions_lost']):>4} "
        f"{r['recent_checked']:>4}/{r['recent_lost']:<3}"
    )


def criteria(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    bad_store = [r["round"] for r in rows if r["integrity"] != "ok"]
    bad_status = [(r["round"], n, s) for r in rows for n, s in r["statuses"].items()
                  if s not in STATUSES]  # fmt: skip
    slow = [(r["round"], n) for r in rows for n, t in r["answer_s"].items() if t is None]
    worst = max((t for r in rows for t in r["answer_s"].values() if t is not None), default=0)
    orphans = [(r["round"], o) for r in rows for o in r["orphans_after_checks"]]
    lost = [(r["round"], e) for r in rows for e in r["executions_lost"]]
    checked = sum(r["executions_checked"] for r in rows)
    return [
        ("store passes integrity_check", f"{len(rows) - len(bad_store)}/{len(rows)} ok",
         not bad_store),
        ("every status is in the table", f"{bad_status[:3] or 'all'}", not bad_status),
        ("Deployed scripts answer in 10 s", f"worst {worst:.2f} s; late {slow[:3]}", not slow),
        ("no orphan process or cgroup", f"{len(orphans)} {orphans[:2]}", not orphans),
        ("no execution older than 0.5 s lost", f"{len(lost)} of {checked} {lost[:2]}",
         not lost),
    ]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--cache", type=Path, default=None, help="build cache dir to reuse")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/crash.py needs root (real sandboxes)", file=sys.stderr)
        return 2
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scriptd-crash-") as tmp:
        bench = Bench(Path(tmp), args)
        kinds = [KINDS[i % len(KINDS)] for i in range(args.rounds)]
        bench.rng.shuffle(kinds)
        print(f"crash bench: {args.rounds} rounds, seed {args.seed}; round: kind, kill after "
              f"s, restart s, integrity, scripts/bad status, Deployed, slowest answer s, late, "
              f"procs+cgroups before kill, orphans at start, executions checked, lost, "
              f"recent (< 0.5 s) checked/lost")  # fmt: skip
        try:
            bench.setup()
            for n, kind in enumerate(kinds, 1):
                rows.append(bench.round(n, kind))
                print(row_line(rows[-1]), flush=True)
        finally:
            bench.close()
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.with_suffix(".log").write_text(bench.daemon.log())
    print(f"\n{'criterion':<38} {'figure':<50} result")
    results = criteria(rows)
    for name, figure, ok in results:
        print(f"{name:<38} {figure:<50} {'PASS' if ok else 'FAIL'}")
    args.json.write_text(
        json.dumps({"seed": args.seed, "rounds": rows, "criteria": results}, indent=1)
    )
    passed = all(ok for _, _, ok in results)
    print(f"\nwritten: {args.json}\n{'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
