"""The single-flight helper: one worker thread, joined by threads and asyncio tasks, bounded
waits, abandoned flights, fork safety. Work is held on ``threading.Event``s, never on sleeps."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import warnings
from collections.abc import Iterator

import pytest

from jwt_guard.sources._singleflight import Flight, SingleFlight

LONG = 30.0  # a bound no passing test comes near: the events decide, not the clock


class Gate:
    """Work that runs until released, counting its runs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = threading.Event()
        self.runs = 0

    def __call__(self) -> None:
        self.runs += 1
        self.running.set()
        self.release.wait(LONG)


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate()
    yield made
    made.release.set()  # never leave a worker behind


def test_callers_join_the_flight_in_progress(gate: Gate) -> None:
    flights = SingleFlight("test-flight")
    first, started = flights.join_or_start(gate)
    assert started
    assert gate.running.wait(LONG)
    again, started_again = flights.join_or_start(gate)
    assert again is first
    assert not started_again
    assert flights.current is first
    gate.release.set()
    assert first.wait(LONG)
    assert gate.runs == 1
    assert flights.current is None  # done: the next caller starts a new one
    _, started = flights.join_or_start(lambda: None)
    assert started


def test_many_threads_wait_for_one_run(gate: Gate) -> None:
    flights = SingleFlight("test-flight")
    barrier = threading.Barrier(17)
    seen: list[tuple[Flight, bool]] = []

    def caller() -> None:
        flight, _ = flights.join_or_start(gate)
        barrier.wait(LONG)
        seen.append((flight, flight.wait(LONG)))

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    barrier.wait(LONG)  # everyone holds the flight before it may end
    gate.release.set()
    for thread in threads:
        thread.join(LONG)
    assert len(seen) == 16
    assert len({id(flight) for flight, _ in seen}) == 1
    assert all(done for _, done in seen)
    assert gate.runs == 1


def test_a_wait_is_bounded(gate: Gate) -> None:
    flight, _ = SingleFlight("test-flight").join_or_start(gate)
    assert flight.wait(0.01) is False  # the work never ends by itself here
    assert flight.wait(-5) is False  # a deadline already passed: no wait at all
    assert not flight.done


def test_an_abandoned_flight_no_longer_counts_but_still_wakes_its_waiters(gate: Gate) -> None:
    flights = SingleFlight("test-flight")
    stuck, _ = flights.join_or_start(gate)
    assert flights.abandon(stuck)
    assert not flights.abandon(stuck)  # once
    fresh, started = flights.join_or_start(lambda: None)
    assert started
    assert fresh is not stuck
    assert fresh.wait(LONG)
    gate.release.set()
    assert stuck.wait(LONG)


def test_start_replaces_the_flight_in_progress(gate: Gate) -> None:
    flights = SingleFlight("test-flight")
    old = flights.start(gate, key=1)
    new = flights.start(lambda: None, key=2)
    assert new.key == 2
    assert new.wait(LONG)
    assert flights.current is None or flights.current is new
    gate.release.set()
    assert old.wait(LONG)


def test_the_flight_ends_even_when_the_work_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work is meant to handle its own errors; one that escapes still ends the flight and goes
    to ``threading.excepthook`` like any thread's."""
    hooked: list[type[BaseException] | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_type))

    def boom() -> None:
        raise ValueError("boom")

    flight = SingleFlight("test-flight-raises").start(boom)
    assert flight.wait(LONG)
    for thread in threading.enumerate():
        if thread.name == "test-flight-raises":
            thread.join(LONG)
    assert hooked == [ValueError]


async def test_tasks_wait_without_blocking_the_loop(gate: Gate) -> None:
    flight, _ = SingleFlight("test-flight").join_or_start(gate)
    waiters = [asyncio.create_task(flight.wait_async(LONG)) for _ in range(50)]
    ticked = asyncio.Event()

    async def tick() -> None:
        ticked.set()

    await asyncio.wait_for(asyncio.create_task(tick()), LONG)  # the loop runs meanwhile
    assert ticked.is_set()
    assert not any(w.done() for w in waiters)
    gate.release.set()  # from this thread; the worker finishes and wakes the loop
    assert await asyncio.wait_for(asyncio.gather(*waiters), LONG) == [True] * 50


async def test_an_async_wait_is_bounded_and_cancellable(gate: Gate) -> None:
    flight, _ = SingleFlight("test-flight").join_or_start(gate)
    assert await flight.wait_async(0.01) is False
    cancelled = asyncio.create_task(flight.wait_async(LONG))
    patient = asyncio.create_task(flight.wait_async(LONG))
    await asyncio.sleep(0)  # both are registered
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release.set()
    assert await asyncio.wait_for(patient, LONG) is True  # one task's cancel is not everyone's


def test_waiters_on_several_event_loops(gate: Gate) -> None:
    flight, _ = SingleFlight("test-flight").join_or_start(gate)
    barrier = threading.Barrier(5)
    results: list[bool] = []

    def loop_thread() -> None:
        async def main() -> bool:
            task = asyncio.create_task(flight.wait_async(LONG))
            await asyncio.sleep(0)
            barrier.wait(LONG)
            return await task

        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=loop_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    barrier.wait(LONG)
    gate.release.set()
    for thread in threads:
        thread.join(LONG)
    assert results == [True] * 4


async def test_an_async_wait_on_a_finished_flight_returns_at_once() -> None:
    flight = Flight()
    flight.finish()
    assert await flight.wait_async(0) is True
    assert flight.wait(0) is True


def test_a_forked_child_starts_with_no_flight_and_a_free_lock() -> None:
    """A real fork of this process (no interpreter to start): a flight in progress and the lock
    held by another thread at that moment; the child sees neither and starts its own."""
    flights = SingleFlight("fork-test")
    stuck = Gate()
    parent_flight, _ = flights.join_or_start(stuck)
    assert stuck.running.wait(LONG)
    flights._lock.acquire()  # as if another thread held it at the moment of the fork
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        pid = os.fork()
    if pid == 0:  # the child: it answers by its exit status and never returns into pytest
        status = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(20)  # a hang (a lock the fork kept held) kills it: a failure
            if flights.current is None:
                flight, started = flights.join_or_start(lambda: None)
                status = 0 if started and flight.wait(10) else 1
        finally:
            os._exit(status)
    flights._lock.release()
    _, status = os.waitpid(pid, 0)
    stuck.release.set()
    assert parent_flight.wait(LONG)
    assert os.waitstatus_to_exitcode(status) == 0
