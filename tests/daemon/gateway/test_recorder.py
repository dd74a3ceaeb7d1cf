"""The execution recorder: batches, the bounded buffer, the flush at close, rows as
the store gets them (times, cut outputs), and the keys' last-used times."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from daemon.core.models import ArchiveRef, Resources, Script, Settings
from daemon.gateway.recorder import Call, ExecutionRecorder, Values
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.rows: list[Values] = []
        self.used: dict[str, float] = {}
        self.batches = 0
        self.fail = fail

    def insert_executions(self, rows: list[Values]) -> int:
        if self.fail:
            raise OSError("disk full")
        self.batches += 1
        self.rows += rows
        return len(rows)

    def touch_api_keys_last_used(self, used: dict[str, float]) -> None:
        self.used.update(used)


class FakeKeys:
    def __init__(self) -> None:
        self.used: dict[str, float] = {}

    def take_last_used(self) -> dict[str, float]:
        used, self.used = self.used, {}
        return used


def call(n: int, **changes: Any) -> Call:
    fields: dict[str, Any] = dict(
        id=f"c{n}", script_id=1, version=2, function="f", key_name="k", status="ok",
        received_at=1_700_000_000.0, queue_ms=1.5, run_ms=2.5, cpu_ms=0.5, input_bytes=2,
    )  # fmt: skip
    fields.update(changes)
    return Call(**fields)


def real_store(path: Path) -> tuple[Store, int]:
    store = Store(path / "db")
    script = Script(
        0, "s", "", "python", "3.11", "Draft", "me", "t", "t", Settings((), 30),
        Resources(1, 1, 75, "p"), ArchiveRef("a.zip", "0" * 64, 1, "/x"), ("f",), None,
    )  # fmt: skip
    return store, store.insert_script(script).id


def test_values_are_the_rows_fields_in_order() -> None:
    assert Values._fields == tuple(f.name for f in fields(ExecutionRow))


async def test_row_times_and_logs(tmp_path: Path) -> None:
    # The store formats the times (SQLite, in the INSERT): read them back from it.
    store, sid = real_store(tmp_path)
    rec = ExecutionRecorder(store, None, output_bytes=10)
    rec.record(call(1, script_id=sid, stdout="out", stderr="oops", result={"x": 1}))
    rec.record(call(3, script_id=sid, status="rejected", queue_ms=None, run_ms=None))
    await rec.flush()
    row, rejected = store.get_execution("c1"), store.get_execution("c3")
    assert row is not None and rejected is not None
    assert row.received_at == "2023-11-14T22:13:20.000Z"
    assert row.started_at == "2023-11-14T22:13:20.001Z"  # 1.5 ms later (truncated to ms)
    assert row.ended_at == "2023-11-14T22:13:20.004Z"
    assert row.logs == "out\n[stderr]\noops"
    assert row.result == {"x": 1}
    assert rejected.started_at is None and rejected.ended_at is None and rejected.logs is None
    store.close()


async def test_times_read_as_iso_from_unix(tmp_path: Path) -> None:
    # Sub-millisecond fractions that datetime rounds to the microsecond first.
    from daemon.store.keys_table import iso_from_unix

    store, sid = real_store(tmp_path)
    rec = ExecutionRecorder(store, None)
    times = [1_609_547_404.7449996, 1_887_714_544.3689995, 1_700_000_000.9999996, 1.7e9 + 0.0005]
    for n, t in enumerate(times):
        rec.record(call(n, script_id=sid, received_at=t, queue_ms=0.0004, run_ms=None))
    await rec.flush()
    for n, t in enumerate(times):
        got = store.get_execution(f"c{n}")
        assert got is not None and got.received_at == iso_from_unix(t)
        assert got.started_at == iso_from_unix(t + 0.0004 / 1000)
    store.close()


async def test_outputs_are_cut_when_recorded_and_big_results_not_kept() -> None:
    store = FakeStore()
    rec = ExecutionRecorder(store, None, output_bytes=10)
    c = call(1, stdout="a" * 50, stderr="b" * 5)
    rec.record(c)
    assert c.stdout.startswith("a" * 10 + "\n[cut: 40 more") and c.stderr == "b" * 5


async def test_inputs_and_results_have_caps_of_their_own_and_say_when_cut() -> None:
    rec = ExecutionRecorder(FakeStore(), None, output_bytes=10, inputs_bytes=5, outputs_bytes=8)
    small = call(1)
    rec.keep_inputs(small, [1], 3)
    rec.keep_result(small, [2], 3)
    assert small.details == {"inputs": [1]} and small.result == [2]
    big = call(2)
    rec.keep_inputs(big, "y" * 10, 12)
    rec.keep_result(big, "z" * 10, 12)
    assert big.details is not None and big.details["cut"] == {
        "inputs": {"bytes": 12, "limit": 5},
        "outputs": {"bytes": 12, "limit": 8},
    }
    assert "executions.inputs_bytes" in big.details["inputs"]["not_kept"]
    assert "executions.outputs_bytes" in big.result["not_kept"]


async def test_buffer_bytes_are_bounded() -> None:
    rec = ExecutionRecorder(FakeStore(), None, max_buffer_bytes=10_000, output_bytes=4000)
    for n in range(10):
        rec.record(call(n, stdout="x" * 4000))
    assert rec.pending == 2 and rec.dropped == 8


async def test_batches_by_size_and_by_time() -> None:
    store, keys = FakeStore(), FakeKeys()
    rec = ExecutionRecorder(store, keys, every_s=0.05, batch=10)  # type: ignore[arg-type]
    rec.start()
    for n in range(25):
        rec.record(call(n))
    keys.used["key1"] = 123.0
    deadline = time.monotonic() + 10  # the last 5 wait for the 0.05 s timer
    while (len(store.rows) < 25 or not store.used) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [r.id for r in store.rows] == [f"c{n}" for n in range(25)]
    assert store.used == {"key1": 123.0}
    await rec.close()


async def test_buffer_is_bounded_and_drops_the_oldest() -> None:
    store = FakeStore()
    rec = ExecutionRecorder(store, None, every_s=60, batch=1000, max_buffer=100)
    for n in range(150):
        rec.record(call(n))
    assert rec.pending == 100 and rec.dropped == 50
    await rec.flush()
    assert store.rows[0].id == "c50" and len(store.rows) == 100


async def test_close_writes_what_is_left() -> None:
    store = FakeStore()
    rec = ExecutionRecorder(store, None, every_s=60, batch=1000)
    rec.start()
    rec.record(call(1))
    await rec.close()
    assert [r.id for r in store.rows] == ["c1"]


async def test_a_flush_during_a_write_returns_once_its_calls_are_written() -> None:
    """The admin API flushes before it reads: a flush that starts while the timer's
    write is in its thread must not return before that write, nor leave out what was
    recorded since."""
    store, entered, go_on = FakeStore(), threading.Event(), threading.Event()
    write = store.insert_executions

    def slow_insert(rows: list[Values]) -> int:
        if rows[0].id == "c1":  # only the first write is slow
            entered.set()
            assert go_on.wait(10)
        return write(rows)

    store.insert_executions = slow_insert  # type: ignore[method-assign]
    rec = ExecutionRecorder(store, None, every_s=60)
    rec.record(call(1))
    first = asyncio.create_task(rec.flush())
    assert await asyncio.to_thread(entered.wait, 10)  # c1 is being written
    rec.record(call(2))
    second = asyncio.create_task(rec.flush())
    await asyncio.sleep(0.05)  # (room for a wrong flush to write c2 and return)
    assert not second.done()
    go_on.set()
    await second
    assert first.done() and [r.id for r in store.rows] == ["c1", "c2"]


async def test_a_failing_store_loses_the_batch_but_not_the_task() -> None:
    store = FakeStore(fail=True)
    rec = ExecutionRecorder(store, None, every_s=0.02)
    rec.start()
    rec.record(call(1))
    deadline = time.monotonic() + 10
    while rec.dropped == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert rec.dropped == 1
    store.fail = False
    rec.record(call(2))
    await rec.close()
    assert [r.id for r in store.rows] == ["c2"]


async def test_rows_fit_the_real_store(tmp_path: Path) -> None:
    store, sid = real_store(tmp_path)
    rec = ExecutionRecorder(store, None)
    rec.record(call(1, script_id=sid, status="error", error={"type": "E", "message": "m"}))
    await rec.flush()
    got = store.get_execution("c1")
    assert got is not None and got.status == "error" and got.error == {"type": "E", "message": "m"}
    store.close()


def test_secret_values_are_masked_in_every_text_and_an_encoded_result_kept_as_it_is() -> None:
    import orjson

    from daemon.gateway.recorder import to_values

    secret = 'pa"ss-1234'
    record = call(1, secrets=(secret, "abc"), stdout=f"out {secret}", stderr="",
                  result=orjson.Fragment(orjson.dumps({"token": secret, "n": 1.50})),
                  error={"type": "E", "message": f"bad {secret}"})  # fmt: skip
    values = to_values(record, 100)
    assert values.logs == "out ********"  # "abc" is too short to mask
    assert values.result == '{"token":"********","n":1.5}'
    assert values.error == '{"type":"E","message":"bad ********"}'
    plain = to_values(call(2, result=orjson.Fragment(b'{"n":1.50}')), 100)
    assert plain.result == '{"n":1.50}' and plain.error is None and plain.logs is None
