"""The failure throttle: token bucket per client, /64 grouping, bounded LRU."""

from __future__ import annotations

import pytest

from daemon.keys.throttle import FailureThrottle, client_bucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_five_failures_are_free_then_one_every_two_seconds(clock: FakeClock) -> None:
    throttle = FailureThrottle(burst=5, window_s=10.0, clock=clock)
    for _ in range(5):
        assert throttle.retry_after("1.2.3.4") == 0.0
        throttle.record_failure("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == pytest.approx(2.0)
    clock.now += 1.5
    assert throttle.retry_after("1.2.3.4") == pytest.approx(0.5)
    clock.now += 0.5
    assert throttle.retry_after("1.2.3.4") == 0.0
    throttle.record_failure("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == pytest.approx(2.0)
    assert throttle.retry_after("5.6.7.8") == 0.0


def test_bucket_refills_to_the_burst_and_no_more(clock: FakeClock) -> None:
    throttle = FailureThrottle(burst=5, window_s=10.0, clock=clock)
    throttle.record_failure("a")
    clock.now += 3600
    for _ in range(5):
        assert throttle.retry_after("a") == 0.0
        throttle.record_failure("a")
    assert throttle.retry_after("a") > 0


def test_refund_gives_back_one_failure(clock: FakeClock) -> None:
    throttle = FailureThrottle(burst=1, window_s=10.0, clock=clock)
    throttle.record_failure("a")
    assert throttle.retry_after("a") == pytest.approx(10.0)
    throttle.refund("a")
    assert throttle.retry_after("a") == 0.0
    throttle.refund("a")  # capped at the burst
    throttle.record_failure("a")
    assert throttle.retry_after("a") > 0
    throttle.refund("never-seen")  # no entry is created
    assert len(throttle) == 1


def test_memory_is_bounded_by_an_lru(clock: FakeClock) -> None:
    throttle = FailureThrottle(burst=1, window_s=10.0, max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        throttle.record_failure(client)
    throttle.record_failure("a")  # "a" is now the most recent, "b" the oldest
    throttle.record_failure("d")
    assert len(throttle) == 3
    assert throttle.retry_after("b") == 0.0  # forgotten: a fresh bucket
    assert throttle.retry_after("a") > 0
    assert throttle.retry_after("d") > 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        FailureThrottle(burst=0)
    with pytest.raises(ValueError):
        FailureThrottle(window_s=0)


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("/run/scriptd/gw.sock", "/run/scriptd/gw.sock"),
        (None, ""),
        ("", ""),
    ],
)
def test_client_bucket(address: str | None, bucket: str) -> None:
    assert client_bucket(address) == bucket
