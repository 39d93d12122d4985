"""The local replica of a deny-list: what a request asks, with no I/O and no lock.

Two dictionaries (``jti -> until`` and ``sub -> (issued_before, until)``) read without a lock:
a dictionary lookup is atomic, a full resync swaps in new dictionaries, and a single change is
one item assignment under the writers' lock. The replica knows which version of the store it
mirrors (an ``epoch`` that changes whenever the store starts over, and a counter within it) and
when it last agreed with the store (``synced_at``, monotonic), which gives its staleness.

Entries lapse on the wall clock, like the tokens they name: an entry's ``until`` is a token's
``exp``, and the verifier refuses that token on the same clock once it has passed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from .._logsafe import safe
from ..errors import StoreFull, StoreUnavailable
from ._support import reset_after_fork
from .base import Revocation

__all__ = ["Lookup", "Replica"]

Outcome = Literal["applied", "old", "gap"]


class Lookup(Protocol):
    """The request-path check: ``(jti, sub, iat) -> revoked?``, no I/O."""

    def __call__(self, jti: str | None, sub: str | None, iat: float | None) -> bool: ...


class Replica:
    """A deny-list held in this process, with its version and its staleness."""

    def __init__(
        self,
        owner: str,
        *,
        max_entries: int,
        max_staleness: float | None = None,
        refuse_when_stale: bool = True,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owner = owner
        self._max_entries = max_entries
        # The bound that makes is_revoked refuse; None when nothing refuses (no clock read).
        self._refuse_after = max_staleness if refuse_when_stale else None
        self._clock = clock
        self._monotonic = monotonic
        self._jti: dict[str, float] = {}
        self._sub: dict[str, tuple[float, float]] = {}
        self.epoch: str | None = None  # None: never synced
        self.version = 0
        self.synced_at = -math.inf
        self.syncs = 0  # how many times the replica was confirmed or reloaded
        # Called before each read while set: the Redis store starts its subscriber through it
        # (lazily, also in a forked child) and clears it once running.
        self._before_read: Callable[[], object] | None = None
        # The request path's one comparison: past this (monotonic) instant, look closer (run
        # the hook, refuse when stale): synced_at + max_staleness when refusing, -inf while a
        # hook is set. _watch: whether there is anything to compare at all (no clock read for
        # a replica that never refuses, like the in-process store's).
        self._fresh_until = -math.inf
        self._watch = True
        self._cond = threading.Condition()
        reset_after_fork(self)
        self._reckon()

    # -- the request path ------------------------------------------------------------------

    def is_revoked(self, jti: str | None, sub: str | None, iat: float | None) -> bool:
        """Whether a token with these claims is refused. A dictionary lookup or two.

        Raises ``StoreUnavailable`` when the replica is older than ``max_staleness`` and the
        store refuses then; with ``on_stale="accept"`` it answers from what it holds.
        """
        if self._watch and self._monotonic() > self._fresh_until:  # in bound: one comparison
            self._look_closer()
        try:
            if jti is not None:
                until = self._jti.get(jti)
                if until is not None and until > self._clock():
                    return True
            if sub is not None:
                entry = self._sub.get(sub)
                if entry is not None and entry[1] > self._clock():
                    # No iat: nothing shows the token was issued after the sign-out.
                    return iat is None or iat < entry[0]
        except TypeError:  # an unhashable claim value can match no entry
            return False
        return False

    def _look_closer(self) -> None:
        hook = self._before_read
        if hook is not None:
            hook()
        limit = self._refuse_after
        if limit is not None and self._monotonic() - self.synced_at > limit:
            raise StoreUnavailable(
                f"{self._owner}: the revocation list was last confirmed "
                f"{self.staleness():.1f}s ago (max_staleness={limit:g}s)"
            )

    @property
    def before_read(self) -> Callable[[], object] | None:
        """A hook run before reads while set (see ``__init__``)."""
        return self._before_read

    @before_read.setter
    def before_read(self, hook: Callable[[], object] | None) -> None:
        self._before_read = hook
        self._reckon()

    def _reckon(self) -> None:
        """Recompute ``_fresh_until`` after ``synced_at`` or the hook changed."""
        if self._before_read is not None:
            self._fresh_until, self._watch = -math.inf, True
        elif self._refuse_after is None:
            self._fresh_until, self._watch = math.inf, False
        else:
            self._fresh_until, self._watch = self.synced_at + self._refuse_after, True

    def staleness(self) -> float:
        """Seconds since the replica last agreed with the store (``inf`` before the first)."""
        return max(0.0, self._monotonic() - self.synced_at)

    # -- writers ---------------------------------------------------------------------------

    def mark_synced(self) -> None:
        """The store was just seen to hold exactly this version."""
        with self._cond:
            self.synced_at = self._monotonic()
            self._reckon()
            self.syncs += 1
            self._cond.notify_all()

    def replace(
        self,
        epoch: str,
        version: int,
        jti: Mapping[str, float],
        sub: Mapping[str, tuple[float, float]],
    ) -> None:
        """A full resync: the store's entries at ``epoch``/``version``, swapped in at once."""
        now = self._clock()
        fresh_jti = {value: until for value, until in jti.items() if until > now}
        fresh_sub = {value: entry for value, entry in sub.items() if entry[1] > now}
        for kind, held in (("jti", fresh_jti), ("sub", fresh_sub)):
            if len(held) > self._max_entries:
                raise StoreFull(
                    f"{self._owner}: the store holds {len(held)} {kind} entries, more than "
                    f"max_entries={self._max_entries}"
                )
        with self._cond:
            self._jti, self._sub = fresh_jti, fresh_sub
            self.epoch, self.version = epoch, version
            self.synced_at = self._monotonic()
            self._reckon()
            self.syncs += 1
            self._cond.notify_all()

    def agrees(self, epoch: str, version: int) -> bool:
        """Whether the replica holds the store's ``epoch`` up to ``version`` (or beyond)."""
        return self.epoch == epoch and self.version >= version

    def apply(self, epoch: str, version: int, op: str, entry: Revocation) -> Outcome:
        """One change published by the store: ``"applied"``, ``"old"`` (already held) or
        ``"gap"`` (a change is missing, or the store started over: resync)."""
        with self._cond:
            if self.epoch == "" and self.version == 0 and version == 1:
                self.epoch = epoch  # the first change to a store that held no version at all
            if epoch != self.epoch or version > self.version + 1:
                return "gap"
            if version <= self.version:
                return "old"
            self._write(op, entry)
            self.version = version
            self._cond.notify_all()
            return "applied"

    def write(self, op: str, entry: Revocation) -> None:
        """A change made in this process (the memory store: the replica is the store)."""
        with self._cond:
            self._write(op, entry)
            self.version += 1
            self._cond.notify_all()

    def _write(self, op: str, entry: Revocation) -> None:
        table: dict[str, float] | dict[str, tuple[float, float]]
        table = self._jti if entry.kind == "jti" else self._sub
        if op == "del":
            table.pop(entry.value, None)
            return
        if entry.value not in table and len(table) >= self._max_entries:
            self._purge()
            if len(table) >= self._max_entries:
                raise StoreFull(
                    f"{self._owner}: {len(table)} {entry.kind} entries in force "
                    f"(max_entries={self._max_entries}); not adding {safe(entry.value, 64)}"
                )
        if entry.kind == "jti":
            self._jti[entry.value] = entry.until
        else:
            self._sub[entry.value] = (entry.issued_before or 0.0, entry.until)

    def purge(self) -> int:
        """Drop the entries whose ``until`` has passed; how many."""
        with self._cond:
            return self._purge()

    def _purge(self) -> int:
        now = self._clock()
        gone = [value for value, until in self._jti.items() if until <= now]
        for value in gone:
            del self._jti[value]
        lapsed = [value for value, (_, until) in self._sub.items() if until <= now]
        for value in lapsed:
            del self._sub[value]
        return len(gone) + len(lapsed)

    # -- reading the whole list ------------------------------------------------------------

    def entries(self) -> tuple[Revocation, ...]:
        """The entries in force, sorted by kind and value."""
        now = self._clock()
        jti, sub = self._jti, self._sub
        found = [Revocation("jti", value, until) for value, until in jti.items() if until > now]
        found += [
            Revocation("sub", value, until, before)
            for value, (before, until) in sub.items()
            if until > now
        ]
        return tuple(sorted(found, key=lambda r: (r.kind, r.value)))

    def holds(self, kind: str, value: str) -> bool:
        """Whether an entry for ``value`` of ``kind`` is in force."""
        if kind == "jti":
            until = self._jti.get(value)
        else:
            entry = self._sub.get(value)
            until = None if entry is None else entry[1]
        return until is not None and until > self._clock()

    def counts(self) -> dict[str, int]:
        """How many entries of each kind the replica holds (lapsed ones included)."""
        return {"jti": len(self._jti), "sub": len(self._sub)}

    # -- waiting for a change (start-up, tests) --------------------------------------------

    def notify(self) -> None:
        """Wake :meth:`wait_for` callers to look again (the store's state changed)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true (checked after every change), at most ``timeout``."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def _after_fork(self) -> None:
        self._cond = threading.Condition()
