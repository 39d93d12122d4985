"""``jwt_guard.stores.memory.MemoryReplayStore`` as DPoP uses it, beyond the basics in
``tests/test_stores_memory.py``: entries of different ttls expire each on time, a full store
answers 503 with the ``Retry-After`` of its first lapsing key (logged once, never evicting a
live key), expired entries make room, and many threads get exactly one ``True`` per key.
Clocks are injected; nothing sleeps."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from jwt_guard.errors import ConfigurationError, StoreFull, StoreUnavailable
from jwt_guard.stores.memory import MemoryReplayStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_different_ttls_expire_each_on_time(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock)
    store.first_use("long", 100)
    store.first_use("short", 1)
    clock.now += 0.999
    assert store.first_use("short", 1) is False
    clock.now += 0.001
    assert store.first_use("short", 1) is True
    assert store.first_use("long", 100) is False
    assert len(store) == 2
    clock.now += 99
    assert store.first_use("long", 100) is True
    assert len(store) == 1  # "short" (again at 1001, for 1 s) left


def test_a_full_store_refuses_new_keys_and_keeps_catching_replays(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jwt_guard.stores")
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for key in ("a", "b", "c"):
        assert store.first_use(key, 30)
        clock.now += 5
    with pytest.raises(StoreFull) as info:
        store.first_use("d", 30)
    exc = info.value
    assert isinstance(exc, StoreUnavailable)
    assert (exc.status, exc.error, exc.code) == (503, "temporarily_unavailable", "store_full")
    assert exc.retry_after == 15  # "a" expires at 1030, now is 1015
    # nothing was evicted: every remembered key is still a replay
    assert [store.first_use(k, 30) for k in ("a", "b", "c")] == [False, False, False]
    with pytest.raises(StoreFull):
        store.first_use("e", 30)
    assert len([r for r in caplog.records if "full" in r.getMessage()]) == 1  # once a minute
    clock.now += 15  # "a" expires: room for one
    assert store.first_use("d", 30)
    with pytest.raises(StoreFull):
        store.first_use("e", 30)


def test_expired_entries_leave_so_the_store_stays_bounded(clock: Clock) -> None:
    store = MemoryReplayStore(max_entries=100, clock=clock)
    for i in range(10_000):  # 100 a second, each kept 1 s: never more than 100 held
        clock.now += 0.01
        assert store.first_use(f"k{i}", 0.999)
        assert len(store) <= 100


def test_concurrent_first_use_is_true_exactly_once_per_key(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock)
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for i in range(200):
            results.append(store.first_use(f"key-{i}", 60))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 200
    assert results.count(False) == 200 * 15


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_entries": 0}, id="zero"),
        pytest.param({"max_entries": "10"}, id="text"),
        pytest.param({"max_entries": 10.0}, id="float"),
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryReplayStore(**options)
