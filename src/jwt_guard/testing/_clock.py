"""``ManualClock``: time that moves only when a test says so, for the verifier and for sleeps."""

from __future__ import annotations

import asyncio
import time

__all__ = ["ManualClock"]


class ManualClock:
    """A wall clock and an ``asyncio.sleep`` that move only when :meth:`advance` is called.

    Give it to the verifier as ``clock=`` (and ``monotonic=clock.monotonic``) and to
    ``JWTGuard`` as ``websocket_sleep=clock.sleep``: a test then decides when a websocket's
    token expires or is re-checked, with no real waiting.

    Example::

        clock = ManualClock()
        verifier = TokenVerifier(issuer=..., audience=..., clock=clock, monotonic=clock.monotonic)
        app = JWTGuard(app, verifier=verifier, websocket_sleep=clock.sleep)
        ...                                 # open a websocket with a token expiring in 60 s
        await clock.sleepers()              # the guard's watcher is waiting
        clock.advance(120)                  # the token expires: the guard closes with 1008

    Args:
        start: the initial wall-clock time (default: now).
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)
        self._start = self.now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed: asyncio.Event | None = None

    def __call__(self) -> float:
        """The current wall-clock time (``time.time``-like)."""
        return self.now

    def monotonic(self) -> float:
        """The seconds advanced since the start (``time.monotonic``-like)."""
        return self.now - self._start

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep that is due (on its own event loop)."""
        self.now += seconds
        due = [entry for entry in self._sleepers if entry[0] <= self.now]
        self._sleepers = [entry for entry in self._sleepers if entry[0] > self.now]
        for _, future in due:
            future.get_loop().call_soon_threadsafe(_wake, future)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by ``seconds`` (at once when <= 0)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, future)
        self._sleepers.append(entry)
        if self._changed is not None:
            self._changed.set()
        try:
            await future
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def sleepers(self, count: int = 1) -> None:
        """Wait (on the event loop the sleeps run on) until ``count`` sleeps are pending."""
        while len(self._sleepers) < count:
            self._changed = asyncio.Event()
            await self._changed.wait()

    @property
    def pending(self) -> int:
        """How many sleeps are waiting for the clock."""
        return len(self._sleepers)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
