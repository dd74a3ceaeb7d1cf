"""How online the backup is: the store's write latency while a backup runs, against the
same writes without one, in the same run.

A store of `--rows` execution records (about 0.5 kB each) gets batches of 100 new
records every 10 ms from a thread, as the gateway's recorder writes them; meanwhile
`write_backup` streams the whole state into a sink that only counts bytes. Printed:
the batch latency (median, p99, max) without and with the backup, the backup's time,
size and rate. JSON to bench/results/backup.json.

    .venv/bin/python -m bench.backup --rows 200000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from daemon.config.daemon_config import Config
from daemon.core.models import ArchiveRef, now_iso
from daemon.lifecycle.backup import BackupOptions, write_backup
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow
from daemon.store.state_dir import StateDir
from tests.daemon.store.test_database import a_script

RESULTS = Path(__file__).parent / "results"


class CountingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.bytes += len(data)
        return len(data)


def rows(script_id: int, start: int, count: int) -> list[ExecutionRow]:
    now = now_iso()
    return [
        ExecutionRow(f"b{start + i:012x}", script_id, 1, "f", "k", "ok", now, now, now,
                     1.0, 2.0, 1.5, 1 << 20, 20, {"value": "x" * 300}, None, "log line\n")
        for i in range(count)
    ]  # fmt: skip


def write_batches(store: Store, script_id: int, stop: threading.Event, out: list[float]) -> None:
    n = 10_000_000
    while not stop.is_set():
        batch = rows(script_id, n, 100)
        t0 = time.perf_counter()
        store.insert_executions(batch)
        out.append((time.perf_counter() - t0) * 1000)
        n += 100
        time.sleep(0.01)


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "batches": len(ms),
        "median_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "max_ms": round(ordered[-1], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--baseline-s", type=float, default=5.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(state_dir=Path(tmp))
        state = StateDir(config.state_dir)
        state.prepare()
        store = Store(state.db)
        archive = state.archives / ("ab" * 32 + ".zip")
        archive.write_bytes(b"PK\x03\x04" + os.urandom(64 << 10))
        ref = ArchiveRef("p.zip", "ab" * 32, archive.stat().st_size, str(archive))
        script = store.insert_script(replace(a_script("bench"), archive=ref))
        for start in range(0, args.rows, 10_000):
            store.insert_executions(rows(script.id, start, min(10_000, args.rows - start)))
        db_bytes = state.db.stat().st_size + Path(f"{state.db}-wal").stat().st_size

        def measure(during: bool) -> tuple[dict[str, float], dict[str, float]]:
            stop, latencies = threading.Event(), []  # type: ignore[var-annotated]
            writer = threading.Thread(target=write_batches,
                                      args=(store, script.id, stop, latencies))  # fmt: skip
            writer.start()
            backup: dict[str, float] = {}
            try:
                if during:
                    sink, t0 = CountingSink(), time.perf_counter()
                    write_backup(store, state, config, sink, BackupOptions(), "bench")  # type: ignore[arg-type]
                    took = time.perf_counter() - t0
                    backup = {"seconds": round(took, 2), "bytes": sink.bytes,
                              "mb_per_s_of_store": round(db_bytes / took / 1e6, 1)}  # fmt: skip
                else:
                    time.sleep(args.baseline_s)
            finally:
                stop.set()
                writer.join()
            return summary(latencies), backup

        baseline, _ = measure(during=False)
        during, backup = measure(during=True)
        store.close()
    load = os.getloadavg()[0]
    print(f"store: {args.rows} records, {db_bytes / 1e6:.0f} MB; load average {load:.1f}")
    print(
        f"{'writes of 100 records':<26}{'median ms':>10}{'p99 ms':>10}{'max ms':>10}{'batches':>9}"
    )
    for name, s in (("without a backup", baseline), ("during the backup", during)):
        print(f"{name:<26}{s['median_ms']:>10}{s['p99_ms']:>10}{s['max_ms']:>10}{s['batches']:>9}")
    print(f"backup: {backup['seconds']} s, {backup['bytes'] / 1e6:.1f} MB gzip, "
          f"{backup['mb_per_s_of_store']} MB/s of store")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    doc = {"rows": args.rows, "store_bytes": db_bytes, "load_average": load,
           "baseline": baseline, "during": during, "backup": backup}  # fmt: skip
    (RESULTS / "backup.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
