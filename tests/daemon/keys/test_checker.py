"""KeyChecker: refusals without argon2, argon2 off the loop and bounded, the
cache and its invalidation, throttling with a fake clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.keys.api_key import KeyRecord, MintedKey, mint_key, verify_secret
from daemon.keys.checker import KeyChecker, KeyOk, KeyRefused, Refusal
from daemon.keys.throttle import FailureThrottle

CLIENT = "192.0.2.10"


@pytest.fixture(scope="module")
def minted() -> list[MintedKey]:
    return [mint_key() for _ in range(8)]


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, KeyRecord] = {}
        self.lookups = 0

    def add(self, minted: MintedKey, script: str = "hello", name: str = "Secret Key") -> str:
        self.rows[minted.key_id] = KeyRecord(minted.key_id, script, name, minted.hash)
        return f"Bearer {minted.key}"

    def get(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        return self.rows.get(key_id)


class VerifySpy:
    """Wraps the real argon2 verify: counts calls, threads and concurrency;
    can hold each call on a gate so a test can act while argon2 'runs'."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self.delay = delay
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, stored_hash: str, secret: str) -> bool:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.add(threading.get_ident())
        self.entered.set()
        try:
            if self.gate is not None:
                self.gate.wait(10)
            time.sleep(self.delay)
            return verify_secret(stored_hash, secret)
        finally:
            with self._lock:
                self.active -= 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def spy() -> VerifySpy:
    return VerifySpy()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def checker(store: FakeStore, spy: VerifySpy, clock: FakeClock) -> AsyncIterator[KeyChecker]:
    checker = KeyChecker(
        store.get,
        verify=spy,
        throttle=FailureThrottle(burst=5, window_s=10.0, clock=clock),
        wall_clock=lambda: 1_700_000_000.0,
    )
    yield checker
    checker.close()


def wrong_secret(header: str) -> str:
    # Another canonical secret for the same id: flip one middle character.
    i = len("Bearer sk_") + 13 + 10
    return header[:i] + ("B" if header[i] != "B" else "C") + header[i + 1 :]


async def test_a_good_key_passes_with_argon2_in_another_thread(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0], script="hello", name="prod")
    result = await checker.check(header, CLIENT)
    assert result == KeyOk("hello", "prod", minted[0].key_id)
    assert spy.calls == 1
    assert threading.get_ident() not in spy.threads


async def test_a_cached_key_costs_no_lookup_and_no_argon2(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    first = await checker.check(header, CLIENT)
    for _ in range(100):
        assert await checker.check(header, "198.51.100.1") == first
    assert (store.lookups, spy.calls) == (1, 1)
    assert checker.stats["cache_hit"] == 100


async def test_the_raw_header_fast_path_answers_only_what_check_cached(
    checker: KeyChecker, store: FakeStore, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0], script="hello", name="prod")
    raw = header.encode()
    assert checker.cached(raw) is None  # not verified yet: check() decides
    first = await checker.check(header, CLIENT)
    checker.take_last_used()
    assert checker.cached(raw) == first
    assert list(checker.take_last_used()) == [minted[0].key_id]  # its use is written too
    for other in (
        raw.replace(b"Bearer", b"bearer"),
        raw + b" ",
        raw[:-1] + b"x",
        wrong_secret(header).encode(),
        b"Bearer " + "é".encode() * 29 + b"x",
    ):
        assert checker.cached(other) is None
    checker.invalidate_script("hello")
    assert checker.cached(raw) is None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, Refusal.MISSING),
        ("Basic dXNlcjpwYXNz", Refusal.MALFORMED),
        ("Bearer", Refusal.MALFORMED),
        ("Bearer nope", Refusal.MALFORMED),
        ("Bearer sk_abcdefghijkl_" + "A" * 42 + "B", Refusal.MALFORMED),
        ("Bearer sk_abcdefghijkl_" + "A" * 42 + "\udcff", Refusal.MALFORMED),
        ("Bearer sk_abcdefghijkl_" + "A" * 43, Refusal.UNKNOWN),
    ],
)
async def test_refusals_before_argon2(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, header: str | None, reason: Refusal
) -> None:
    result = await checker.check(header, CLIENT)
    assert result == KeyRefused(reason)
    assert result.status == 401
    assert spy.calls == 0
    assert store.lookups == (1 if reason is Refusal.UNKNOWN else 0)


async def test_wrong_secret_runs_argon2_and_reads_like_unknown(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    result = await checker.check(wrong_secret(header), CLIENT)
    assert result == KeyRefused(Refusal.WRONG_SECRET)
    assert spy.calls == 1
    assert result.message == KeyRefused(Refusal.UNKNOWN).message
    assert await checker.check(header, CLIENT) == KeyOk("hello", "Secret Key", minted[0].key_id)


async def test_deleted_key_is_refused_at_once(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    assert isinstance(await checker.check(header, CLIENT), KeyOk)
    del store.rows[minted[0].key_id]
    checker.invalidate_key(minted[0].key_id)
    assert await checker.check(header, CLIENT) == KeyRefused(Refusal.UNKNOWN)
    assert spy.calls == 1
    checker.invalidate_key("unknownkeyid")  # harmless


async def test_invalidate_script_drops_only_that_scripts_keys(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    a1 = store.add(minted[0], script="alpha", name="one")
    a2 = store.add(minted[1], script="alpha", name="two")
    b1 = store.add(minted[2], script="beta")
    for header in (a1, a2, b1):
        assert isinstance(await checker.check(header, CLIENT), KeyOk)
    assert spy.calls == 3
    checker.invalidate_script("alpha")
    checker.invalidate_script("never-deployed")
    assert isinstance(await checker.check(b1, CLIENT), KeyOk)
    assert spy.calls == 3
    for header in (a1, a2):
        assert isinstance(await checker.check(header, CLIENT), KeyOk)
    assert spy.calls == 5


async def test_failures_throttle_the_client_without_argon2(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, clock: FakeClock, minted: list[MintedKey]
) -> None:
    good = store.add(minted[0])
    assert isinstance(await checker.check(good, CLIENT), KeyOk)  # cached before the attack
    bad = wrong_secret(store.add(minted[1]))
    unknown = "Bearer sk_abcdefghijkl_" + "A" * 43
    for header in (bad, bad, bad, unknown, "Bearer garbage"):
        assert (await checker.check(header, CLIENT)).status == 401
    calls = spy.calls
    lookups = store.lookups
    for _ in range(50):
        result = await checker.check(bad, CLIENT)
        assert result.reason is Refusal.THROTTLED
        assert result.status == 429
        assert result.retry_after == pytest.approx(2.0)
    assert (spy.calls, store.lookups) == (calls, lookups)
    # A cached good key from the same address still passes; other addresses are untouched.
    assert isinstance(await checker.check(good, CLIENT), KeyOk)
    assert (await checker.check(bad, "192.0.2.11")).reason is Refusal.WRONG_SECRET
    clock.now += 2.0
    assert (await checker.check(bad, CLIENT)).reason is Refusal.WRONG_SECRET
    assert (await checker.check(bad, CLIENT)).reason is Refusal.THROTTLED


async def test_a_burst_of_concurrent_guesses_starts_at_most_burst_verifies(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    store.add(minted[0])
    base = f"Bearer {minted[0].key}"
    guesses = {wrong_secret(base[:30] + c + base[31:]) for c in "ABCDEFGHIJKLMNOPQRST"}
    results = await asyncio.gather(*(checker.check(g, CLIENT) for g in guesses))
    assert spy.calls == 5
    assert sum(r.reason is Refusal.THROTTLED for r in results if isinstance(r, KeyRefused)) == (
        len(guesses) - 5
    )


async def test_concurrent_verifies_are_bounded(
    store: FakeStore, minted: list[MintedKey], clock: FakeClock
) -> None:
    spy = VerifySpy(delay=0.05)
    checker = KeyChecker(store.get, verify=spy, max_concurrent_verifies=2)
    headers = [store.add(m, name=f"k{i}") for i, m in enumerate(minted[:6])]
    try:
        results = await asyncio.gather(
            *(checker.check(h, f"192.0.2.{i}") for i, h in enumerate(headers))
        )
    finally:
        checker.close()
    assert all(isinstance(r, KeyOk) for r in results)
    assert spy.calls == 6
    assert spy.max_active == 2
    assert threading.get_ident() not in spy.threads


async def test_the_same_new_key_in_a_burst_is_verified_once(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    results = await asyncio.gather(*(checker.check(header, CLIENT) for _ in range(32)))
    assert {type(r) for r in results} == {KeyOk}
    assert spy.calls == 1


async def test_too_many_pending_verifies_are_refused(
    store: FakeStore, minted: list[MintedKey]
) -> None:
    spy = VerifySpy()
    spy.gate = threading.Event()
    checker = KeyChecker(store.get, verify=spy, max_concurrent_verifies=1, max_pending_verifies=2)
    headers = [store.add(m, name=f"k{i}") for i, m in enumerate(minted[:3])]
    try:
        tasks = [
            asyncio.ensure_future(checker.check(h, f"192.0.2.{i}"))
            for i, h in enumerate(headers[:2])
        ]
        await asyncio.sleep(0)
        overloaded = await checker.check(headers[2], "192.0.2.99")
        assert overloaded == KeyRefused(Refusal.THROTTLED, 1.0)
        spy.gate.set()
        assert all(isinstance(r, KeyOk) for r in await asyncio.gather(*tasks))
        assert isinstance(await checker.check(headers[2], "192.0.2.99"), KeyOk)
    finally:
        spy.gate.set()
        checker.close()


async def wait_entered(spy: VerifySpy) -> None:
    for _ in range(500):
        if spy.entered.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("verify never started")


async def test_key_deleted_while_argon2_runs_is_refused_and_not_cached(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    spy.gate = threading.Event()
    task = asyncio.ensure_future(checker.check(header, CLIENT))
    await wait_entered(spy)
    del store.rows[minted[0].key_id]
    checker.invalidate_key(minted[0].key_id)
    spy.gate.set()
    assert await task == KeyRefused(Refusal.UNKNOWN)
    assert await checker.check(header, CLIENT) == KeyRefused(Refusal.UNKNOWN)


async def test_unrelated_invalidation_while_argon2_runs_passes_but_is_not_cached(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    spy.gate = threading.Event()
    task = asyncio.ensure_future(checker.check(header, CLIENT))
    await wait_entered(spy)
    checker.invalidate_script("hello")  # e.g. undeployed while the key was checked
    spy.gate.set()
    assert isinstance(await task, KeyOk)
    assert isinstance(await checker.check(header, CLIENT), KeyOk)
    assert spy.calls == 2


async def test_a_cancelled_caller_does_not_stop_the_shared_verify(
    checker: KeyChecker, store: FakeStore, spy: VerifySpy, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    spy.gate = threading.Event()
    first = asyncio.ensure_future(checker.check(header, CLIENT))
    await wait_entered(spy)
    second = asyncio.ensure_future(checker.check(header, CLIENT))
    await asyncio.sleep(0)
    first.cancel()
    spy.gate.set()
    assert isinstance(await second, KeyOk)
    assert spy.calls == 1


async def test_defaults_use_the_real_argon2(minted: list[MintedKey]) -> None:
    store = FakeStore()
    header = store.add(minted[0])
    checker = KeyChecker(store.get)
    try:
        assert isinstance(await checker.check(header, CLIENT), KeyOk)
        refused = await checker.check(wrong_secret(store.add(minted[1])), CLIENT)
        assert refused == KeyRefused(Refusal.WRONG_SECRET)
    finally:
        checker.close()


async def test_async_lookup_is_supported(spy: VerifySpy, minted: list[MintedKey]) -> None:
    store = FakeStore()
    header = store.add(minted[0])

    async def lookup(key_id: str) -> KeyRecord | None:
        return await asyncio.to_thread(store.get, key_id)

    checker = KeyChecker(lookup, verify=spy)
    try:
        assert isinstance(await checker.check(header, CLIENT), KeyOk)
        unknown = "Bearer sk_abcdefghijkl_" + "A" * 43
        assert await checker.check(unknown, CLIENT) == KeyRefused(Refusal.UNKNOWN)
    finally:
        checker.close()


async def test_last_used_is_handed_out_once(
    checker: KeyChecker, store: FakeStore, minted: list[MintedKey]
) -> None:
    header = store.add(minted[0])
    await checker.check(header, CLIENT)
    await checker.check(header, CLIENT)
    assert checker.take_last_used() == {minted[0].key_id: 1_700_000_000.0}
    assert checker.take_last_used() == {}


def run_check(header: str, lookups: list[str], calls: list[str]) -> KeyOk | KeyRefused:
    def lookup(key_id: str) -> KeyRecord | None:
        lookups.append(key_id)
        return None

    def verify(stored_hash: str, secret: str) -> bool:
        calls.append(secret)
        return False

    async def go() -> KeyOk | KeyRefused:
        checker = KeyChecker(lookup, verify=verify)
        try:
            return await checker.check(header, CLIENT)
        finally:
            checker.close()

    return asyncio.run(go())


HEADERS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda t: "Bearer " + t, st.text(max_size=70)),
    st.builds(
        lambda i, s: f"Bearer sk_{i}_{s}",
        st.text("abcAB0_-", min_size=10, max_size=14),
        st.text("abcAB0_-=+/", min_size=40, max_size=46),
    ),
)


@settings(max_examples=150, deadline=None)
@given(HEADERS)
def test_random_headers_never_reach_argon2(header: str) -> None:
    lookups: list[str] = []
    calls: list[str] = []
    result = run_check(header, lookups, calls)
    assert isinstance(result, KeyRefused)
    assert result.reason in (Refusal.MALFORMED, Refusal.UNKNOWN)
    assert calls == []
    assert len(lookups) == (1 if result.reason is Refusal.UNKNOWN else 0)
