"""The remote key source's cache policy: a pure state machine, driven by a monotonic clock.

No threads, no I/O, no clock of its own: every call takes ``now``, a reading of a monotonic clock
(``time.monotonic`` in production, a hand-advanced one in tests), and the outcome of each fetch is
told to it as an event (:meth:`JWKSPolicy.fetched`, :meth:`JWKSPolicy.failed`). From that it
answers what a request should do with a :class:`Decision`:

* ``SERVE`` the key set now (and maybe ``start`` a refresh in the background);
* ``WAIT`` for the fetch in flight (which the decision may just have started), then ask again;
* ``UNAVAILABLE``: no usable key set, and none may be fetched before ``retry_after``;
* ``MISS`` (only from :meth:`JWKSPolicy.poll`, which never waits): no answer without waiting.

The rules, in the words of the README:

* a set lives ``ttl`` seconds (the caller clamps ``Cache-Control``); after ``refresh_ahead`` of
  that, requests still answer from it while one background refresh runs;
* past its lifetime a set never answers alone: requests wait for the refresh (bounded by the
  fetch deadline) and fall back to the stale set only when the refresh failed, for up to
  ``max_stale`` seconds past the lifetime;
* single flight: while a fetch is in flight, every request that needs one waits for it instead of
  starting another; a fetch past its deadline (``fetch_timeout``) counts as failed for everyone;
* a token naming a kid the set lacks may cause one refetch per ``cooldown``: only those refetches
  start the cool-down (a routine refresh or a start-up fetch does not), and a refresh that is due
  anyway is started whatever the cool-down says;
* failed fetches back off (``backoff(n)`` seconds after the n-th failure in a row);
* a request waits for at most one fetch that started after it arrived: once one has completed,
  it is answered from what there is.

**Jitter** (so that a fleet started together does not fetch together): given a random source
``rand`` (``[0, 1)``; injected, so tests and simulations are deterministic), each set's refresh
point is drawn uniformly from the last quarter of its refresh-ahead interval (``refresh_ahead``
x ``ttl`` x ``[0.75, 1]``); :class:`FullJitter` wraps the back-off schedule so a failure waits
``uniform(0, backoff(n))`` ("full jitter"); and a failure while a set still answers (fresh, or
stale within ``max_stale``) backs off over the longest wait, not from the first step: nothing
waits on that fetch, and 2,000 workers retrying 1, 2, 4 ... s into an outage would make the
provider's busiest seconds (``benchmarks/stampede_bench.py``). Without ``rand`` the schedule is
exact.

**Shared key sets** (a fleet's store, see ``jwks.py``): a set another worker fetched arrives with
its ``age`` (:meth:`JWKSPolicy.fetched`), so its lifetime runs from the provider's answer, not
from when this worker read it; and a fetch that failed while the store held an older set can
still hand that set over (:meth:`JWKSPolicy.adopt`) without counting as a success.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "PACED",
    "REFRESH_SPREAD",
    "Action",
    "Attempt",
    "Backoff",
    "Decision",
    "Entry",
    "FullJitter",
    "JWKSPolicy",
    "Reason",
]

K = TypeVar("K", bound=Container[str])

REFRESH_SPREAD = 0.25
"""With jitter, a refresh falls uniformly within the last quarter of the refresh-ahead interval."""
PACED = 64
"""With jitter, a failure while a set still answers backs off as after this many: the longest
wait (full jitter over it); only a worker with nothing to answer with retries from the first."""


class Reason(enum.Enum):
    """Why a fetch started."""

    COLD = "cold"  # no usable key set
    REFRESH = "refresh"  # the set is due for a refresh, or past its lifetime
    UNKNOWN_KID = "unknown_kid"  # a token named a kid a fresh set lacks: starts the cool-down
    EXPLICIT = "explicit"  # refresh() or a start-up prefetch


class Action(enum.Enum):
    """What a request does next."""

    SERVE = "serve"
    WAIT = "wait"
    UNAVAILABLE = "unavailable"
    MISS = "miss"


@dataclass(frozen=True)
class Attempt:
    """One fetch: its number (1, 2, ...), why it started, when, and when it counts as failed."""

    number: int
    reason: Reason
    started: float
    deadline: float


@dataclass(frozen=True)
class Entry(Generic[K]):
    """A key set and its schedule (monotonic times)."""

    keyset: K
    fetched: float
    refresh_at: float
    expires_at: float
    attempt: int


@dataclass(frozen=True)
class Decision(Generic[K]):
    """The policy's answer to one request.

    ``keyset``: the set to answer with (``SERVE``). ``attempt``: the fetch to wait for
    (``WAIT``). ``start``: a fetch this decision started, which the caller must now run (with
    ``WAIT``, or in the background with ``SERVE``). ``stale``: the set's age when it is served
    past its lifetime. ``unknown_kid``: the kid asked for is not in the set and no refetch will
    be made for it now. ``retry_after``: whole seconds until a fetch may be tried
    (``UNAVAILABLE``). ``expired``: a fetch this call found past its deadline and counted as
    failed (the caller logs it).
    """

    action: Action
    keyset: K | None = None
    attempt: Attempt | None = None
    start: Attempt | None = None
    stale: float | None = None
    unknown_kid: bool = False
    retry_after: int = 1
    expired: Attempt | None = None


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th failed fetch in a row: ``base`` doubling up to ``cap``."""

    base: float
    cap: float

    def __call__(self, failures: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(failures - 1, 64))


@dataclass(frozen=True)
class FullJitter:
    """A back-off schedule with full jitter: ``uniform(0, schedule(n))`` seconds, drawn from
    ``rand`` (``[0, 1)``). A fleet whose fetches all failed together retries spread over the
    whole interval instead of all at once when the provider comes back."""

    schedule: Callable[[int], float]
    rand: Callable[[], float]

    def __call__(self, failures: int) -> float:
        return self.rand() * self.schedule(failures)


class JWKSPolicy(Generic[K]):
    """When to answer, fetch, wait or refuse (module docstring); not thread-safe: lock around it.

    Args:
        refresh_ahead: fraction of a set's lifetime after which a background refresh starts.
        cooldown: seconds between refetches caused by unknown kids.
        max_stale: seconds past its lifetime a set serves while refreshes fail.
        fetch_timeout: seconds after which a fetch in flight counts as failed.
        backoff: ``f(failures) -> seconds`` until the next fetch may start after a failure
            (wrap it in :class:`FullJitter` for jitter).
        rand: a random source in ``[0, 1)`` that spreads each set's refresh point over the last
            quarter of its refresh-ahead interval; ``None``: exactly at ``refresh_ahead``.
    """

    def __init__(
        self,
        *,
        refresh_ahead: float,
        cooldown: float,
        max_stale: float,
        fetch_timeout: float,
        backoff: Callable[[int], float],
        rand: Callable[[], float] | None = None,
    ) -> None:
        self.refresh_ahead, self.cooldown, self.max_stale = refresh_ahead, cooldown, max_stale
        self.fetch_timeout, self.backoff = fetch_timeout, backoff
        self.rand = rand
        self.entry: Entry[K] | None = None
        self.fetching: Attempt | None = None
        self.started = 0  # the number of the last attempt started
        self.failures = 0  # failed attempts since the last success
        self.retry_at = -math.inf  # no fetch may start before (after a failure)
        self.last_error: str | None = None
        self._delay = 0.0  # the back-off now in force
        self._done = 0  # the highest attempt number that has completed (or timed out)
        self._unknown_at = -math.inf  # when the last unknown-kid refetch started

    # -- questions -----------------------------------------------------------------------------

    def decide(
        self, now: float, kid: str | None, arrival: int, *, eager: bool = False
    ) -> Decision[K]:
        """What a request for ``kid`` does at ``now``; it may wait.

        ``arrival``: :attr:`started` as the request read it first, so a request waits for at
        most one fetch that started after it arrived. ``eager`` (start-up, readiness): in the
        refresh-ahead window, wait for the refresh instead of answering from the current set.
        """
        expired = self._expire(now)
        entry = self.entry
        settled = self._done > arrival  # a fetch that started after the request has completed
        if entry is None or now >= entry.expires_at + self.max_stale:  # nothing usable
            if not settled:
                if self.fetching is not None:
                    return self._wait(self.fetching, expired)
                if now >= self.retry_at:
                    return self._wait(self.start(now, Reason.COLD), expired, started=True)
            return self._unavailable(now, expired)
        known = kid is None or kid in entry.keyset
        if now >= entry.expires_at:  # past its lifetime: the set does not answer alone
            if not settled:
                if self.fetching is not None:
                    return self._wait(self.fetching, expired)
                if now >= self.retry_at:
                    return self._wait(self.start(now, Reason.REFRESH), expired, started=True)
            return self._serve(entry, expired, stale=now - entry.fetched, unknown_kid=not known)
        due = now >= entry.refresh_at
        if known:
            if due and eager and not settled:
                if self.fetching is not None:
                    return self._wait(self.fetching, expired)
                if now >= self.retry_at:
                    return self._wait(self.start(now, Reason.EXPLICIT), expired, started=True)
            return self._serve(entry, expired, start=self._background(now) if due else None)
        if not settled:  # a kid the set lacks: the provider may just have rotated
            if self.fetching is not None:
                return self._wait(self.fetching, expired)
            if now >= self.retry_at:
                if due:
                    return self._wait(self.start(now, Reason.REFRESH), expired, started=True)
                if now >= self._unknown_at + self.cooldown:
                    attempt = self.start(now, Reason.UNKNOWN_KID)
                    return self._wait(attempt, expired, started=True)
        return self._serve(entry, expired, unknown_kid=True)

    def poll(self, now: float) -> Decision[K]:
        """Like :meth:`decide` for a request without a kid that cannot wait (``MISS`` then).

        May start a background refresh (``start``) when the set is due for one.
        """
        expired = self._expire(now)
        entry = self.entry
        if entry is None or now >= entry.expires_at + self.max_stale:
            return Decision(Action.MISS, expired=expired)
        if now >= entry.expires_at:
            if self.fetching is not None or now >= self.retry_at:
                return Decision(Action.MISS, expired=expired)  # a refresh must be waited for
            return self._serve(entry, expired, stale=now - entry.fetched)
        start = self._background(now) if now >= entry.refresh_at else None
        return self._serve(entry, expired, start=start)

    def refresh(self, now: float) -> Decision[K]:
        """An explicit refresh: join the fetch in flight or start one, whatever the back-off."""
        expired = self._expire(now)
        if self.fetching is not None:
            return self._wait(self.fetching, expired)
        return self._wait(self.start(now, Reason.EXPLICIT), expired, started=True)

    def settle(self, now: float, kid: str | None = None) -> Decision[K]:
        """Answer with what there is, fetching nothing: the usable set (stale or not), or none
        (for a request whose own deadline has passed, or a prefetch that waited)."""
        expired = self._expire(now)
        entry = self.entry
        if entry is None or now >= entry.expires_at + self.max_stale:
            return self._unavailable(now, expired)
        stale = now - entry.fetched if now >= entry.expires_at else None
        unknown = kid is not None and kid not in entry.keyset
        return self._serve(entry, expired, stale=stale, unknown_kid=unknown)

    def usable(self, now: float) -> bool:
        """Whether a set may answer at ``now`` (fresh, or stale within ``max_stale``)."""
        entry = self.entry
        return entry is not None and now < entry.expires_at + self.max_stale

    def stale(self, now: float) -> bool:
        """Whether the set is past its lifetime at ``now``."""
        entry = self.entry
        return entry is not None and now >= entry.expires_at

    def retry_after(self, now: float) -> int:
        """Whole seconds until a fetch may start: at least 1, at most the back-off in force."""
        wait = min(self.retry_at - now, self._delay)
        return max(1, math.ceil(wait)) if wait > 0 else 1

    # -- events --------------------------------------------------------------------------------

    def start(self, now: float, reason: Reason) -> Attempt:
        """A fetch starts at ``now`` for ``reason`` (the questions above call this themselves
        when they start one); only ``UNKNOWN_KID`` starts the cool-down."""
        self.started += 1
        attempt = Attempt(self.started, reason, now, now + self.fetch_timeout)
        self.fetching = attempt
        if reason is Reason.UNKNOWN_KID:
            self._unknown_at = now
        return attempt

    def fetched(
        self, now: float, attempt: Attempt, keyset: K, ttl: float, *, age: float = 0.0
    ) -> bool:
        """``attempt`` brought ``keyset``, to live ``ttl`` seconds. False if it was superseded.

        ``age``: how long ago the provider gave out this set (a set another worker fetched and
        shared); its lifetime and refresh point run from then. A fetch that completes after its
        deadline still brings good keys: they are taken unless a later fetch has brought newer
        ones.
        """
        current = self.fetching is not None and self.fetching.number == attempt.number
        if current:
            self.fetching = None
            self._done = max(self._done, attempt.number)
        elif self.entry is not None and self.entry.attempt > attempt.number:
            return False
        self.entry = self._entry(now - max(0.0, age), keyset, ttl, attempt.number)
        self.failures, self.retry_at, self._delay, self.last_error = 0, -math.inf, 0.0, None
        return True

    def adopt(self, now: float, attempt: Attempt, keyset: K, ttl: float, age: float) -> bool:
        """A set fetched ``age`` seconds ago by another worker, handed over while ``attempt``
        failed (the caller reports that failure too): it serves like this worker's own last
        good set would, stale past its lifetime and for ``max_stale`` more. Taken only if it is
        newer than the set held; nothing else changes (the back-off stays in force). Whether
        it was taken."""
        fetched = now - max(0.0, age)
        entry = self.entry
        if entry is not None and entry.fetched >= fetched:
            return False
        self.entry = self._entry(fetched, keyset, ttl, attempt.number)
        return True

    def _entry(self, fetched: float, keyset: K, ttl: float, number: int) -> Entry[K]:
        ahead = ttl * self.refresh_ahead
        if self.rand is not None:
            ahead *= 1.0 - REFRESH_SPREAD * self.rand()
        return Entry(keyset, fetched, fetched + ahead, fetched + ttl, number)

    def failed(self, now: float, attempt: Attempt, error: str) -> bool:
        """``attempt`` failed with ``error``. False (nothing counted) if it no longer counted:
        it was past its deadline, and so already counted as failed."""
        if self.fetching is None or self.fetching.number != attempt.number:
            return False
        self.fetching = None
        self._done = max(self._done, attempt.number)
        self.failures += 1
        steps = self.failures
        if self.rand is not None and self.usable(now):
            steps = PACED  # keys still answer: no hurry, a fleet must not hammer a provider
        self._delay = max(0.0, self.backoff(steps))
        self.retry_at = now + self._delay  # counted from the failure: a fetch can take seconds
        self.last_error = error
        return True

    def forget_fetch(self) -> None:
        """The fetch in flight is gone without an outcome (the process forked): none counts."""
        self.fetching = None

    # -- internals -----------------------------------------------------------------------------

    def _expire(self, now: float) -> Attempt | None:
        attempt = self.fetching
        if attempt is None or now < attempt.deadline:
            return None
        self.failed(now, attempt, f"fetch took longer than {self.fetch_timeout:g}s")
        return attempt

    def _background(self, now: float) -> Attempt | None:
        if self.fetching is None and now >= self.retry_at:
            return self.start(now, Reason.REFRESH)
        return None

    def _wait(
        self, attempt: Attempt, expired: Attempt | None, *, started: bool = False
    ) -> Decision[K]:
        return Decision(
            Action.WAIT, attempt=attempt, start=attempt if started else None, expired=expired
        )

    def _serve(
        self,
        entry: Entry[K],
        expired: Attempt | None,
        *,
        start: Attempt | None = None,
        stale: float | None = None,
        unknown_kid: bool = False,
    ) -> Decision[K]:
        return Decision(
            Action.SERVE,
            keyset=entry.keyset,
            start=start,
            stale=stale,
            unknown_kid=unknown_kid,
            expired=expired,
        )

    def _unavailable(self, now: float, expired: Attempt | None) -> Decision[K]:
        return Decision(Action.UNAVAILABLE, retry_after=self.retry_after(now), expired=expired)
