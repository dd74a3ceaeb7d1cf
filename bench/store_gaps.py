"""How long the event loop's thread stands still while another thread writes to the
store: the commit that fills the write-ahead log to its checkpoint threshold.

A store gets `--batches` batches of 200 execution records with no checkpoint (about
22 log pages each; 46 batches reach SQLite's 1,000-page threshold as ~9,000 records
do), then one more batch from a thread while the main thread spins and times its
own longest gap: with SQLite's autocheckpoint (it runs inside the commit, which apsw
makes holding the GIL) and with the Store's own (a statement after the commit, run
without the GIL). The two take turns round after round; printed per mode: the
batch's time and the main thread's longest gap, and their medians.

    .venv/bin/python -m bench.store_gaps [--rounds 6] [--batches 46]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon.store.database import Store
from tests.daemon.store.test_database import a_script

_ids = itertools.count()
MODES = ("autocheckpoint", "after the commit")


def records(script_id: int, n: int = 200) -> list[tuple[object, ...]]:
    """A batch as the recorder hands it over (store.insert_executions' unix-ms tuples)."""
    now = int(time.time() * 1000)
    return [(f"g{next(_ids):012d}", script_id, 1, "noop", "k", "ok", now, now, now + 1,
             0.05, 0.2, 0.1, None, 2, '{"ok":true}', None, None, None, None)
            for _ in range(n)]  # fmt: skip


def longest_gap(write: Callable[[], object]) -> tuple[float, float]:
    """`write` in a thread while this thread spins: (its ms, this thread's longest gap ms)."""
    done = threading.Event()
    took: list[float] = []

    def run() -> None:
        start = time.perf_counter()
        write()
        took.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=run)
    gap, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
    thread.join()
    return took[0] * 1000, gap * 1000


def one(mode: str, batches: int, folder: Path) -> tuple[float, float]:
    store = Store(folder / "db")
    try:
        script_id = store.insert_script(a_script()).id
        store._db.set_wal_hook(None)  # no checkpoint while the log fills
        for _ in range(batches):
            store.insert_executions(records(script_id))
        if mode == "autocheckpoint":
            store._db.wal_autocheckpoint(1000)
        else:
            store._db.set_wal_hook(store._count_wal_pages)
        batch = records(script_id)
        return longest_gap(lambda: store.insert_executions(batch))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=46)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    load = os.getloadavg()[0]
    for i in range(args.rounds):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
                results[mode].append(one(mode, args.batches, Path(tmp)))
    print(f"{args.rounds} rounds, load average {load:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end")  # fmt: skip
    for mode, runs in results.items():
        writes, gaps = [w for w, _ in runs], [g for _, g in runs]
        print(f"{mode:17} batch {statistics.median(writes):7.1f} ms  main thread's longest "
              f"gap {statistics.median(gaps):7.2f} ms (rounds: "
              f"{' '.join(f'{g:.1f}' for g in gaps)})")  # fmt: skip


if __name__ == "__main__":
    main()
