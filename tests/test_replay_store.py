"""``MemoryReplayStore``: first use wins, entries expire by the monotonic clock, the store is
bounded and fails closed when full (never evicting an unexpired entry), and concurrent callers
get exactly one ``True``. Clocks are injected; nothing sleeps."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from jwt_guard.binding._replay import ReplayStore
from jwt_guard.binding.errors import ReplayCheckUnavailable, ReplayStoreFull
from jwt_guard.binding.memory import DEFAULT_MAX_ENTRIES, MemoryReplayStore
from jwt_guard.errors import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_it_is_a_replay_store() -> None:
    assert isinstance(MemoryReplayStore(), ReplayStore)
    assert MemoryReplayStore().max_entries == DEFAULT_MAX_ENTRIES


def test_first_use_then_replay_then_expiry(clock: Clock) -> None:
    store = MemoryReplayStore(monotonic=clock)
    assert store.first_use("a", 10) is True
    assert store.first_use("a", 10) is False
    assert store.first_use("b", 10) is True
    clock.now += 9.999
    assert store.first_use("a", 10) is False
    clock.now += 0.001
    assert store.first_use("a", 10) is True  # expired, so new again
    assert len(store) == 1  # "b" left at the same moment


def test_the_async_twin_gives_the_same_answers(clock: Clock) -> None:
    store = MemoryReplayStore(monotonic=clock)

    async def run() -> list[bool]:
        return [await store.afirst_use("k", 5), await store.afirst_use("k", 5)]

    assert asyncio.run(run()) == [True, False]
    assert store.first_use("k", 5) is False


def test_different_ttls_expire_each_on_time(clock: Clock) -> None:
    store = MemoryReplayStore(monotonic=clock)
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
    caplog.set_level(logging.WARNING, logger="jwt_guard.dpop")
    store = MemoryReplayStore(max_entries=3, monotonic=clock)
    for key in ("a", "b", "c"):
        assert store.first_use(key, 30)
        clock.now += 5
    with pytest.raises(ReplayStoreFull) as info:
        store.first_use("d", 30)
    exc = info.value
    assert isinstance(exc, ReplayCheckUnavailable)
    assert (exc.status, exc.error, exc.code) == (
        503,
        "temporarily_unavailable",
        "replay_store_full",
    )
    assert exc.retry_after == 15  # "a" expires at 1030, now is 1015
    # nothing was evicted: every remembered key is still a replay
    assert [store.first_use(k, 30) for k in ("a", "b", "c")] == [False, False, False]
    with pytest.raises(ReplayStoreFull):
        store.first_use("e", 30)
    assert len([r for r in caplog.records if "replay store full" in r.getMessage()]) == 1
    clock.now += 15  # "a" expires: room for one
    assert store.first_use("d", 30)
    with pytest.raises(ReplayStoreFull):
        store.first_use("e", 30)


def test_expired_entries_leave_so_the_store_stays_bounded(clock: Clock) -> None:
    store = MemoryReplayStore(max_entries=100, monotonic=clock)
    for i in range(10_000):  # 100 a second, each kept 1 s: never more than 100 held
        clock.now += 0.01
        assert store.first_use(f"k{i}", 0.999)
        assert len(store) <= 100


def test_concurrent_first_use_is_true_exactly_once(clock: Clock) -> None:
    store = MemoryReplayStore(monotonic=clock)
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
    ("options", "message"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": "10"}, "max_entries"),
        ({"max_entries": 10.0}, "max_entries"),
        ({"monotonic": 5}, "monotonic"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MemoryReplayStore(**options)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
def test_a_ttl_must_be_positive_and_finite(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        MemoryReplayStore().first_use("k", ttl)
