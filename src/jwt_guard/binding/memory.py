"""``MemoryReplayStore``: the bounded, expiring, thread-safe in-memory :class:`ReplayStore`.

It protects one process. Behind a load balancer with several workers or hosts, a proof replayed
to another worker is not caught: use a shared store there (Redis).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from .._options import positive_int
from ..errors import ConfigurationError
from .errors import ReplayStoreFull

__all__ = ["DEFAULT_MAX_ENTRIES", "MemoryReplayStore"]

logger = logging.getLogger("jwt_guard.dpop")

DEFAULT_MAX_ENTRIES = 200_000
"""Unexpired entries held at most: about 45 MB, or 1500 proofs a second for the 130 s a proof is
remembered by default (2 x (60 s window + 5 s leeway))."""
_FULL_LOG_INTERVAL = 60.0


class MemoryReplayStore:
    """A :class:`~jwt_guard.binding._replay.ReplayStore` in a dict, for one process.

    Parameters:
        max_entries: the most unexpired keys held (default 200,000, about 45 MB when full).
            When that many are held, a new key raises
            :class:`~jwt_guard.binding.errors.ReplayStoreFull` (a 503 with ``Retry-After``)
            until entries expire. Evicting an unexpired entry instead would let the proof it
            remembers be replayed, so the store fails closed; size it for the peak rate of
            proofs times the time each is remembered.
        monotonic: the ``time.monotonic``-like clock the entries expire by (inject it in
            tests); wall-clock steps move nothing.

    Each call is O(1) amortised: entries sit in one queue per distinct ``ttl`` (a
    ``DPoPVerifier`` uses one), in expiry order, and expired ones leave from the front of the
    queues on every call. Thread-safe (one lock, held for a few dictionary operations).

    Example::

        store = MemoryReplayStore(max_entries=500_000)
        DPoPVerifier(replay_store=store)
    """

    __slots__ = ("_expiry", "_full_logged", "_lock", "_monotonic", "_queues", "max_entries")

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = positive_int("MemoryReplayStore", "max_entries", max_entries, minimum=1)
        if not callable(monotonic):
            raise ConfigurationError(
                "MemoryReplayStore(monotonic=...): must be a time.monotonic-like callable, "
                f"not {type(monotonic).__name__!r}"
            )
        self._monotonic = monotonic
        self._expiry: dict[str, float] = {}
        self._queues: dict[float, deque[tuple[float, str]]] = {}
        self._lock = threading.Lock()
        self._full_logged = -math.inf

    def __len__(self) -> int:
        return len(self._expiry)

    def first_use(self, key: str, ttl: float) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl`` seconds, ``False`` after.

        Raises ``ReplayStoreFull`` when ``max_entries`` unexpired keys are held.
        """
        if not 0 < ttl < math.inf:
            raise ValueError(f"ttl must be a positive finite number of seconds, not {ttl!r}")
        now = self._monotonic()
        with self._lock:
            self._purge(now)
            expiry = self._expiry.get(key)
            if expiry is not None and expiry > now:
                return False
            if expiry is None and len(self._expiry) >= self.max_entries:
                raise self._full(now)
            expires = now + ttl
            self._expiry[key] = expires
            queue = self._queues.get(ttl)
            if queue is None:
                queue = self._queues[ttl] = deque()
            queue.append((expires, key))
            return True

    async def afirst_use(self, key: str, ttl: float) -> bool:
        """The same as :meth:`first_use` (it never waits on I/O, only on a brief lock)."""
        return self.first_use(key, ttl)

    def _purge(self, now: float) -> None:
        expiry = self._expiry
        for queue in self._queues.values():  # empty queues stay: one per distinct ttl
            while queue and queue[0][0] <= now:
                expires, key = queue.popleft()
                if expiry.get(key) == expires:
                    del expiry[key]

    def _full(self, now: float) -> ReplayStoreFull:
        soonest = min((q[0][0] for q in self._queues.values() if q), default=now + 1)
        retry_after = max(1, math.ceil(soonest - now))
        if now - self._full_logged >= _FULL_LOG_INTERVAL:
            self._full_logged = now
            logger.warning(
                "DPoP replay store full (%d unexpired entries): new proofs are refused (503) "
                "for about %d s; raise MemoryReplayStore(max_entries=...) or use a shared store",
                len(self._expiry),
                retry_after,
            )
        return ReplayStoreFull(
            f"replay store holds its maximum of {self.max_entries} unexpired entries",
            retry_after=retry_after,
        )
