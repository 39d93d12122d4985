"""The replay-store protocol: "have I seen this key within ``ttl`` seconds?", answered atomically.

DPoP (RFC 9449 11.1) needs each proof's ``jti`` remembered for as long as the proof would be
accepted, so that a captured proof cannot be sent again. The in-memory implementation is
:class:`jwt_guard.binding.memory.MemoryReplayStore` (one process); a shared store (Redis) makes
the check hold across workers and hosts.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ReplayStore"]


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers keys for a time; the one question is whether a key is new.

    The contract every implementation keeps:

    * ``first_use(key, ttl)`` is atomic: it returns ``True`` for the first call with ``key``
      within ``ttl`` seconds and ``False`` for every later one until the entry expires, however
      many threads, processes or hosts ask at once (a shared store uses one atomic operation,
      such as Redis ``SET key 1 NX EX ttl``);
    * ``afirst_use`` is the same answer for async callers; it never blocks the event loop;
    * a store that cannot answer raises (any exception); the caller refuses the request with a
      503 (:class:`~jwt_guard.binding.errors.ReplayCheckUnavailable`), it never treats the key
      as new;
    * ``key`` is printable ASCII of at most 64 characters, built by the caller from a hash (no
      outside bytes reach the store); ``ttl`` is a positive, finite number of seconds.
    """

    def first_use(self, key: str, ttl: float) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl`` seconds, ``False`` after."""
        ...

    async def afirst_use(self, key: str, ttl: float) -> bool:
        """The async twin of :meth:`first_use`."""
        ...
