"""In-process stores: the default for one process. Nothing to install, nothing shared.

Failure policy: there is no backend that could fail. What remains is the bound every store
keeps so that nothing grows without limit:

- :class:`MemoryRevocationStore` holds at most ``max_entries`` entries of each kind; entries
  lapse at their ``until``. A new entry when the list is full of live ones raises ``StoreFull``
  (dropping a revocation would let a revoked token back in).
- :class:`MemoryReplayStore` holds at most ``max_entries`` keys; keys lapse after their ``ttl``.
  A new key when full raises ``StoreFull``, a 503: forgetting a live key would let a proof be
  replayed, so the check fails closed.
- :class:`MemoryKeySetStore` holds the last key set of at most ``max_issuers`` issuers for
  ``max_age`` seconds (the oldest is dropped first: it is only a cache), and at most
  ``max_locks`` locks, each for its ``ttl``.

Clocks: ``ttl`` and ``max_age`` run on the injectable ``monotonic`` clock (a wall-clock step
cannot stretch them); a revocation's ``until`` is a token time (its ``exp``) and lapses on the
injectable wall ``clock``, the one the verifier checks ``exp`` with. Every store is
thread-safe and starts afresh (new locks, same entries) in a forked child.
"""

from __future__ import annotations

import heapq
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._options import duration, positive_int
from ..errors import ConfigurationError, StoreFull
from ._replica import Lookup, Replica
from ._support import check_value, digest, instant, logger, reset_after_fork, ttl_seconds
from .base import (
    KeySetStore,
    ReplayStore,
    Revocation,
    RevocationStore,
    StoredKeySet,
)

__all__ = ["MemoryKeySetStore", "MemoryReplayStore", "MemoryRevocationStore"]

DAY = 86400.0
_FULL_LOG_INTERVAL = 60.0


def _check_until(owner: str, until: object, now: float, max_ttl: float) -> float | None:
    """``until`` as epoch seconds; ``None`` if it has passed (nothing to store)."""
    seconds = instant(owner, "until", until)
    if seconds <= now:
        return None
    if seconds - now > max_ttl:
        raise ConfigurationError(
            f"{owner}(until=...): {seconds - now:.0f}s ahead, more than max_ttl={max_ttl:g}s; "
            "raise max_ttl if tokens really live that long"
        )
    return seconds


class MemoryRevocationStore:
    """The deny-list of one process (the default :class:`~jwt_guard.stores.base.RevocationStore`).

    Args:
        max_entries: the most entries of each kind (``jti``, ``sub``) in force at once.
        max_ttl: the furthest ahead an entry's ``until`` may be, in seconds (default 30 days).
        clock: ``time.time``-like wall clock; entries lapse at their ``until`` on it.

    Example::

        store = MemoryRevocationStore()
        store.revoke("token-id-1", until=claims["exp"])
        store.revoke_subject("alice", issued_before=time.time(), until=time.time() + 3600)
        store.is_revoked("token-id-1", "bob", iat=time.time())  # True
    """

    _OWNER = "MemoryRevocationStore"

    is_revoked: Lookup
    """``is_revoked(jti, sub, iat) -> bool``: whether a token with these claims is refused (a
    dictionary lookup or two; the replica's own method, so no extra call on the request path)."""

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_ttl: float = 30 * DAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = positive_int(self._OWNER, "max_entries", max_entries, minimum=1)
        self.max_ttl = duration(self._OWNER, "max_ttl", max_ttl, allow_zero=False)
        self._clock = clock
        self._replica = Replica(self._OWNER, max_entries=self.max_entries, clock=clock)
        self._replica.replace("memory", 0, {}, {})
        self.is_revoked = self._replica.is_revoked

    def revoke(self, jti: str, until: float) -> None:
        """Refuse the token with this ``jti`` until ``until`` (epoch seconds, or an aware
        ``datetime``). An ``until`` already past stores nothing: that token has expired."""
        value = check_value(f"{self._OWNER}.revoke", "jti", jti)
        lapse = _check_until(f"{self._OWNER}.revoke", until, self._clock(), self.max_ttl)
        if lapse is not None:
            self._replica.write("add", Revocation("jti", value, lapse))

    def revoke_subject(self, sub: str, issued_before: float, until: float) -> None:
        """Refuse every token of ``sub`` with an ``iat`` before ``issued_before`` (or none),
        until ``until``. A later call for the same subject replaces the entry."""
        owner = f"{self._OWNER}.revoke_subject"
        value = check_value(owner, "sub", sub)
        before = instant(owner, "issued_before", issued_before)
        lapse = _check_until(owner, until, self._clock(), self.max_ttl)
        if lapse is not None:
            self._replica.write("add", Revocation("sub", value, lapse, before))

    def unrevoke(self, jti: str) -> bool:
        """Drop the entry for ``jti``; ``True`` if one was in force."""
        return self._drop("jti", check_value(f"{self._OWNER}.unrevoke", "jti", jti))

    def unrevoke_subject(self, sub: str) -> bool:
        """Drop the entry for ``sub``; ``True`` if one was in force."""
        return self._drop("sub", check_value(f"{self._OWNER}.unrevoke_subject", "sub", sub))

    def _drop(self, kind: str, value: str) -> bool:
        entry = Revocation("jti" if kind == "jti" else "sub", value, 0.0)
        held = self._replica.holds(entry.kind, value)
        if held:
            self._replica.write("del", entry)
        return held

    def list(self) -> tuple[Revocation, ...]:
        """The entries in force, sorted by kind and value."""
        self._replica.purge()
        return self._replica.entries()

    def staleness(self) -> float:
        """Always ``0.0``: this list is the store."""
        return 0.0

    def status(self) -> dict[str, Any]:
        """``{"store": "memory", "entries": {...}, "staleness": 0.0}``."""
        return {"store": "memory", "entries": self._replica.counts(), "staleness": 0.0}

    def close(self) -> None:
        """Nothing to release."""


class MemoryReplayStore:
    """First use of a key within a time window, in one process (DPoP ``jti`` replay).

    Args:
        max_entries: the most keys remembered at once; a new key when every one is still live
            raises ``StoreFull`` (a 503 whose ``Retry-After`` is when the first key lapses: the
            check fails closed, since evicting a live key would let its proof be replayed).
            Size it for the peak rate of proofs times the time each is remembered (a
            ``DPoPVerifier`` remembers a proof for ``2 * (iat_window + leeway)``, 130 s by
            default: 100,000 keys hold about 770 proofs a second).
        clock: ``time.monotonic``-like clock the ``ttl`` runs on.

    Example::

        store = MemoryReplayStore()
        store.first_use("proof-jti", ttl=300)  # True
        store.first_use("proof-jti", ttl=300)  # False: a replay
    """

    _OWNER = "MemoryReplayStore"

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = positive_int(self._OWNER, "max_entries", max_entries, minimum=1)
        self._clock = clock
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (deadline, key): one per live key
        self._lock = threading.Lock()
        self._full_logged = -math.inf
        reset_after_fork(self)

    def first_use(self, key: str, ttl: float) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl`` seconds, else ``False``."""
        seconds = ttl_seconds(f"{self._OWNER}.first_use", ttl)
        if not isinstance(key, str):
            raise ConfigurationError(
                f"{self._OWNER}.first_use(key=...): must be a string, not {type(key).__name__!r}"
            )
        name = digest(key)  # fixed size, whatever the key's length
        with self._lock:
            now = self._clock()
            heap, deadlines = self._heap, self._deadlines
            while heap and heap[0][0] <= now:
                _, old = heapq.heappop(heap)
                del deadlines[old]
            if name in deadlines:
                return False
            if len(deadlines) >= self.max_entries:
                raise self._full(now)
            deadline = now + seconds
            deadlines[name] = deadline
            heapq.heappush(heap, (deadline, name))
            return True

    async def afirst_use(self, key: str, ttl: float) -> bool:
        """:meth:`first_use` (in memory: no I/O, a short lock)."""
        return self.first_use(key, ttl)

    def __len__(self) -> int:
        return len(self._deadlines)

    def _full(self, now: float) -> StoreFull:
        """The refusal of a new key when full: ``Retry-After`` is when the first key lapses;
        logged at most once a minute (a flood must not flood the log too)."""
        retry_after = max(1, math.ceil(self._heap[0][0] - now))
        if now - self._full_logged >= _FULL_LOG_INTERVAL:
            self._full_logged = now
            logger.warning(
                "%s full (%d live keys): new keys are refused (503) for about %d s; "
                "raise max_entries or use a shared store",
                self._OWNER,
                len(self._deadlines),
                retry_after,
            )
        return StoreFull(
            f"{self._OWNER}: {len(self._deadlines)} live keys (max_entries={self.max_entries})",
            retry_after=retry_after,
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


class MemoryKeySetStore:
    """The last key set per issuer and short fetch locks, in one process.

    Nothing crosses a trust boundary here, so no secret is needed (``enabled`` is always
    true). A stored document is a deep copy: later changes to the caller's dict do not reach it.

    Args:
        max_issuers: the most issuers whose key set is kept (the oldest is dropped first).
        max_age: seconds a stored key set is served after it was stored.
        max_locks: the most locks held at once; ``try_lock`` answers ``None`` when full.
        monotonic: ``time.monotonic``-like clock for ``max_age`` and lock ``ttl``.
    """

    _OWNER = "MemoryKeySetStore"

    def __init__(
        self,
        *,
        max_issuers: int = 256,
        max_age: float = DAY,
        max_locks: int = 1024,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_issuers = positive_int(self._OWNER, "max_issuers", max_issuers, minimum=1)
        self.max_age = duration(self._OWNER, "max_age", max_age, allow_zero=False)
        self.max_locks = positive_int(self._OWNER, "max_locks", max_locks, minimum=1)
        self._monotonic = monotonic
        self._sets: dict[str, tuple[float, bytes, float, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        reset_after_fork(self)

    @property
    def enabled(self) -> bool:
        """Always ``True``: one process needs no secret."""
        return True

    def get(self, issuer: str) -> StoredKeySet | None:
        """The key set stored for ``issuer`` within ``max_age``, else ``None``."""
        with self._lock:
            held = self._sets.get(issuer)
            if held is None:
                return None
            stored_at, body, fetched_at, lifetime = held
            if self._monotonic() - stored_at > self.max_age:
                del self._sets[issuer]
                return None
        document = json.loads(body)
        return StoredKeySet(issuer, document, fetched_at, lifetime)

    def put(
        self, issuer: str, document: Mapping[str, Any], fetched_at: float, lifetime: float
    ) -> bool:
        """Keep a copy of ``document``; ``False`` if it is not plain JSON."""
        try:
            body = json.dumps(document, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            return False
        with self._lock:
            self._sets.pop(issuer, None)
            while len(self._sets) >= self.max_issuers:
                self._sets.pop(next(iter(self._sets)))  # the oldest: dicts keep insertion order
            self._sets[issuer] = (self._monotonic(), body, float(fetched_at), float(lifetime))
        return True

    def try_lock(self, name: str, ttl: float) -> str | None:
        """A token if ``name`` was free (held for ``ttl`` seconds), else ``None``."""
        seconds = ttl_seconds(f"{self._OWNER}.try_lock", ttl)
        with self._lock:
            now = self._monotonic()
            held = self._locks.get(name)
            if held is not None and held[1] > now:
                return None
            if held is None and len(self._locks) >= self.max_locks:
                for other in [n for n, (_, until) in self._locks.items() if until <= now]:
                    del self._locks[other]
                if len(self._locks) >= self.max_locks:
                    return None
            token = secrets.token_urlsafe(18)
            self._locks[name] = (token, now + seconds)
            return token

    def unlock(self, name: str, token: str) -> bool:
        """Release ``name`` if ``token`` still holds it (compare and delete)."""
        with self._lock:
            held = self._locks.get(name)
            if held is None or held[0] != token or held[1] <= self._monotonic():
                return False
            del self._locks[name]
            return True

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


if TYPE_CHECKING:  # mypy checks each class against its protocol here; nothing runs

    def _conforms(
        revocations: MemoryRevocationStore, replay: MemoryReplayStore, keysets: MemoryKeySetStore
    ) -> tuple[RevocationStore, ReplayStore, KeySetStore]:
        return revocations, replay, keysets
