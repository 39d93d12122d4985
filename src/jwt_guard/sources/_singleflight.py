"""Single flight: one piece of work in a worker thread, joined by any number of threads and tasks.

:class:`SingleFlight` runs at most one flight at a time: :meth:`SingleFlight.join_or_start`
either hands back the flight in progress or starts the work in a daemon thread. Waiting is
always bounded: :meth:`Flight.wait` (threads) and :meth:`Flight.wait_async` (asyncio, any number
of event loops; the loop is never blocked) take a timeout, and a waiter that gives up can
:meth:`SingleFlight.abandon` the flight, which then no longer counts: the next caller starts a
new one even if the abandoned worker is still stuck.

Fork safety: a child process starts with one thread, and whatever the parent's other threads
held at the moment of the fork (a lock, a flight whose worker does not exist in the child) would
stay held forever. Every ``SingleFlight`` (and every object given to :func:`reset_after_fork`)
is reset in the child by ``os.register_at_fork``: new locks, no flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Flight", "SingleFlight", "reset_after_fork"]


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: _ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child process forked from now on (weakly held)."""
    _FORK_AWARE.add(obj)


def _reset_all() -> None:
    for obj in list(_FORK_AWARE):
        with contextlib.suppress(Exception):  # one broken object must not break the others
            obj._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_reset_all)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Flight:
    """One piece of work in progress; :meth:`finish` wakes every waiter, thread or task."""

    __slots__ = ("_done", "_lock", "_tasks", "key")

    def __init__(self, key: object = None) -> None:
        self.key = key
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._tasks: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def done(self) -> bool:
        """Whether the work has finished."""
        return self._done.is_set()

    def finish(self) -> None:
        """Mark the work finished and wake every waiter."""
        with self._lock:
            self._done.set()
            tasks, self._tasks = self._tasks, []
        for loop, future in tasks:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
                loop.call_soon_threadsafe(_wake, future)

    def wait(self, timeout: float) -> bool:
        """Block until the work finishes or ``timeout`` seconds pass; whether it finished."""
        return self._done.wait(max(0.0, timeout))

    async def wait_async(self, timeout: float) -> bool:
        """Like :meth:`wait` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return True
            self._tasks.append((loop, future))
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
        except asyncio.TimeoutError:
            return self._done.is_set()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._tasks.remove((loop, future))
        return True


class SingleFlight:
    """At most one flight at a time; callers join the one in progress.

    ``name`` names the worker threads (``threading.Thread.name``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._flight: Flight | None = None
        reset_after_fork(self)

    @property
    def current(self) -> Flight | None:
        """The flight that counts now, if any."""
        flight = self._flight
        return flight if flight is not None and not flight.done else None

    def join_or_start(self, work: Callable[[], object], key: object = None) -> tuple[Flight, bool]:
        """The flight in progress, or a new one running ``work`` in a daemon thread.

        ``started`` (the second item) is True when this call started it.
        """
        with self._lock:
            flight = self.current
            if flight is not None:
                return flight, False
            flight = self._flight = Flight(key)
        self.launch(flight, work)
        return flight, True

    def start(self, work: Callable[[], object], key: object = None) -> Flight:
        """A new flight running ``work``, replacing the one in progress (which then no longer
        counts: its waiters still wake when it ends)."""
        flight = self.register(key)
        self.launch(flight, work)
        return flight

    def register(self, key: object = None) -> Flight:
        """The first half of :meth:`start`: the new flight counts (callers find it) from now.

        For a caller that decides under its own lock: register under it, :meth:`launch` after
        releasing it (starting a thread can take a while on a loaded machine).
        """
        flight = Flight(key)
        with self._lock:
            self._flight = flight
        return flight

    def abandon(self, flight: Flight) -> bool:
        """Stop counting ``flight`` (its deadline passed); whether it was the current one."""
        with self._lock:
            if self._flight is flight:
                self._flight = None
                return True
            return False

    def launch(self, flight: Flight, work: Callable[[], object]) -> None:
        """Run ``work`` for ``flight`` in a daemon thread; the flight finishes when it returns."""

        def run() -> None:
            try:
                work()
            finally:
                flight.finish()

        threading.Thread(target=run, name=self.name, daemon=True).start()

    def _after_fork(self) -> None:
        # The parent's worker does not exist here: its flight would never finish.
        self._lock = threading.Lock()
        self._flight = None
