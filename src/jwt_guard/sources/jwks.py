"""The remote key source: fetch, cache, refresh ahead, cool down, single flight, serve stale.

Three parts, composed by :class:`JWKSClient`:

* the policy (``_jwks_policy.JWKSPolicy``), a pure state machine on a monotonic clock that decides
  whether a request is answered from the key set in memory, waits for a fetch, or is refused;
* single flight (``_singleflight.SingleFlight``): the fetch runs in a worker thread that every
  waiting thread and asyncio task shares, each wait bounded by the fetch's deadline;
* HTTP (``_fetch.HTTPFetcher``): discovery, redirects, size and time limits;
* with a shared key-set store (``keyset_store``), the steps of ``_sharing``: one fetch per
  refresh for a whole fleet, the stored set for a cold worker while the provider is down.

Refreshes and back-offs are jittered (``jitter``) so that workers started together spread their
fetches instead of making them in the same second.

Every interval (lifetime, refresh-ahead, cool-down, back-off, staleness, ages) is measured on the
monotonic clock, so a step of the wall clock (NTP, a resumed VM) changes none of them; the wall
clock only stamps ``fetched_at`` in :meth:`JWKSClient.status`. ``keys_for`` answers from memory
while the set is within its lifetime; it waits on the network when there is no usable set, when
the set is past its lifetime (falling back to it, stale, only if the refresh fails), or when the
token names a kid the set lacks and the cool-down allows a refetch. ``akeys_for`` waits without
blocking the event loop. After ``os.fork`` the child starts with fresh locks and no fetch in
flight.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import requests

from .._logsafe import safe
from ..errors import ConfigurationError, KeysUnavailable
from ..events import emit
from ..keys.jwk import KeySet
from ._http import FetchError, HTTPFetcher, check_url, ttl
from ._policy import Action, Attempt, Backoff, Decision, Entry, FullJitter, JWKSPolicy
from ._sharing import Failed, Fetched, Obtained, obtain, run
from ._singleflight import Flight, SingleFlight, reset_after_fork
from .options import JWKSOptions

__all__ = ["JWKSClient"]

logger = logging.getLogger("jwt_guard.jwks")

_OWNER = "JWKSClient"
# A request waits for at most one fetch that was in flight when it arrived and one that started
# after: two waits; the rest is slack against a bug turning into a loop.
_MAX_STEPS = 6


class JWKSClient:
    """Fetches and caches one remote JWK Set (directly, or via OpenID discovery): a
    :class:`~jwt_guard.sources.base.KeySource`.

    Args:
        url: the JWKS URL; or ``None`` with ``discovery_issuer`` set.
        discovery_issuer: fetch ``{issuer}/.well-known/openid-configuration`` and use its
            ``jwks_uri``; the document's ``issuer`` must equal this value exactly, or one of
            ``discovery_templates``.
        discovery_templates: issuer templates (``IssuerTemplate``) the discovery document may
            name as its ``issuer`` instead, a placeholder matching one of any name (Entra's
            ``common`` document names ``https://login.microsoftonline.com/{tenantid}/v2.0``).
        algorithms: the algorithms keys may be bound to.
        allow_oct: accept symmetric keys from this remote source (off: RFC 8725 3.1).
        options: a :class:`~jwt_guard.sources.options.JWKSOptions` (timeouts, lifetimes,
            cool-down, back-off, ``max_stale``, ``allow_http``, ``session``, clocks...).
        **settings: fields of ``JWKSOptions`` given one by one, over ``options`` (a misspelt
            name is a ``ConfigurationError`` naming the closest field).

    Every interval is measured on ``monotonic``; ``clock`` only stamps ``fetched_at`` in
    :meth:`status`. Durations are seconds or ``datetime.timedelta``.

    Example::

        client = JWKSClient("https://idp.example.com/.well-known/jwks.json", cooldown=60.0)
        keyset = client.keys_for("key-2024")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        discovery_issuer: str | None = None,
        discovery_templates: Iterable[str] = (),
        algorithms: Iterable[str] | None = None,
        allow_oct: bool = False,
        options: JWKSOptions | None = None,
        **settings: Any,
    ) -> None:
        if (url is None) == (discovery_issuer is None):
            raise ConfigurationError("give exactly one of url= or discovery_issuer=")
        if options is not None and not isinstance(options, JWKSOptions):
            raise ConfigurationError(
                f"{_OWNER}(options=...): must be a JWKSOptions, not {type(options).__name__!r}"
            )
        if settings:
            base = (
                {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
                if options is not None
                else {}
            )
            options = JWKSOptions.coerce(f"{_OWNER}(...)", {**base, **settings})
        opts = options if options is not None else JWKSOptions()
        target = url if url is not None else str(discovery_issuer)
        problem = check_url(
            target, allow_http=opts.allow_http, allow_link_local=opts.allow_link_local
        )
        if problem:
            raise ConfigurationError(f"JWKS source {target!r}: {problem}")
        self.options = opts
        self.timeout = (_seconds(opts.timeout[0]), _seconds(opts.timeout[1]))
        self.total_timeout = _seconds(opts.total_timeout)
        self.max_bytes = opts.max_bytes
        self.default_ttl = _seconds(opts.default_ttl)
        self.min_ttl = _seconds(opts.min_ttl)
        self.max_ttl = _seconds(opts.max_ttl)
        self.refresh_ahead = opts.refresh_ahead
        self.cooldown = _seconds(opts.cooldown)
        self.max_stale = _seconds(opts.max_stale)
        self.backoff = (_seconds(opts.backoff[0]), _seconds(opts.backoff[1]))
        clock = opts.clock if opts.clock is not None else time.time
        monotonic = opts.monotonic if opts.monotonic is not None else time.monotonic
        session, observer = opts.session, opts.observer
        allow_http, allow_link_local = opts.allow_http, opts.allow_link_local
        self.url = url
        self.discovery_issuer = discovery_issuer
        self.discovery_templates = tuple(discovery_templates)
        if not all(isinstance(t, str) and t for t in self.discovery_templates):
            raise ConfigurationError(
                f"{_OWNER}(discovery_templates=...): must be a list of non-empty strings"
            )
        self.algorithms = tuple(algorithms) if algorithms is not None else None
        self.allow_oct, self.allow_http = allow_oct, allow_http
        self.allow_link_local = allow_link_local
        self.session = session if session is not None else requests.Session()
        self.clock, self.monotonic, self.observer = clock, monotonic, observer
        self.keyset_store, self.jitter = opts.keyset_store, opts.jitter
        rand = _random_source(opts.jitter)
        schedule: Callable[[int], float] = Backoff(*self.backoff)
        self._policy: JWKSPolicy[KeySet] = JWKSPolicy(
            refresh_ahead=self.refresh_ahead,
            cooldown=self.cooldown,
            max_stale=self.max_stale,
            fetch_timeout=self.total_timeout,
            backoff=schedule if rand is None else FullJitter(schedule, rand),
            rand=rand,
        )
        self._flights = SingleFlight("jwt_guard-jwks")
        self._lock = threading.Lock()
        # The policy's entry, mirrored for the lock-free fast path (written under the lock).
        self._entry: Entry[KeySet] | None = None
        self._fetched_at: float | None = None  # wall clock, for status() only
        self._jwks_uri: str | None = url
        self._stale_logged = False
        self.fetch_count = 0
        reset_after_fork(self)

    @property
    def name(self) -> str:
        """The configured source, for logs and metrics: the JWKS URL or the discovery issuer."""
        return self.url or f"discovery:{self.discovery_issuer}"

    @property
    def last_error(self) -> str | None:
        """Why the last fetch failed (``None`` after a success)."""
        return self._policy.last_error

    # -- answering -------------------------------------------------------------------------

    def keys_for(self, kid: str | None) -> KeySet:
        """The key set to verify a token with ``kid``, fetching only when it must (blocking).

        Raises ``KeysUnavailable`` when no usable key set can be had.
        """
        entry = self._entry  # fast path: a set not yet due for refresh that knows the kid
        if (
            entry is not None
            and self.monotonic() < entry.refresh_at
            and (kid is None or kid in entry.keyset)
        ):
            return entry.keyset
        return self._resolve(kid)

    async def akeys_for(self, kid: str | None) -> KeySet:
        """Like :meth:`keys_for`; a fetch runs in a worker thread, never on the event loop."""
        entry = self._entry
        if (
            entry is not None
            and self.monotonic() < entry.refresh_at
            and (kid is None or kid in entry.keyset)
        ):
            return entry.keyset
        return await self._aresolve(kid)

    def current(self, now: float | None = None) -> KeySet | None:
        """The key set that may answer now without waiting on the network (``None`` if none).

        Starts a background refresh when the set is due for one. ``None`` too when the set is
        past its lifetime and a refresh must be waited for (use :meth:`keys_for`). ``now``: the
        caller's reading of this client's ``monotonic`` clock, if it has one.
        """
        entry = self._entry  # fast path (every token-cache hit): a set not yet due for refresh
        if entry is not None and (self.monotonic() if now is None else now) < entry.refresh_at:
            return entry.keyset
        with self._lock:
            decision = self._policy.poll(self.monotonic())
            launch = self._begin(decision)
        launch()
        self._expired(decision)
        if decision.action is not Action.SERVE:
            return None
        if decision.stale is not None:
            self._serving_stale(decision.stale)
        return decision.keyset

    def _resolve(self, kid: str | None, *, eager: bool = False) -> KeySet:
        until: float | None = None  # this request's own deadline, set at its first wait
        arrival: int | None = None
        for _ in range(_MAX_STEPS):
            decision, flight, arrival = self._step(kid, arrival, eager)
            if decision.action is not Action.WAIT:
                return self._answer(decision, kid)
            attempt, timeout, until, own = self._waiting(decision, until)
            if flight is not None and flight.wait(timeout):
                continue
            if own:  # the request's deadline, not the fetch's: it answers, the fetch runs on
                break
            self._timed_out(attempt, flight)
        return self._answer(self._settle(kid), kid)

    async def _aresolve(self, kid: str | None, *, eager: bool = False) -> KeySet:
        until: float | None = None
        arrival: int | None = None
        for _ in range(_MAX_STEPS):
            decision, flight, arrival = self._step(kid, arrival, eager)
            if decision.action is not Action.WAIT:
                return self._answer(decision, kid)
            attempt, timeout, until, own = self._waiting(decision, until)
            if flight is not None and await flight.wait_async(timeout):
                continue
            if own:
                break
            self._timed_out(attempt, flight)
        return self._answer(self._settle(kid), kid)

    def _step(
        self, kid: str | None, arrival: int | None, eager: bool
    ) -> tuple[Decision[KeySet], Flight | None, int]:
        """One decision under the lock: start the fetch it asks for, find the flight to wait on."""
        with self._lock:
            policy = self._policy
            if arrival is None:
                arrival = policy.started
            decision = policy.decide(self.monotonic(), kid, arrival, eager=eager)
            launch = self._begin(decision)
            flight = None
            if decision.action is Action.WAIT:
                flight = self._flights.current
                if flight is not None and decision.attempt is not None:
                    flight = flight if flight.key == decision.attempt.number else None
        launch()
        self._expired(decision)
        return decision, flight, arrival

    def _waiting(
        self, decision: Decision[KeySet], until: float | None
    ) -> tuple[Attempt, float, float, bool]:
        """The attempt a ``WAIT`` decision names, the seconds to wait for it, the request's own
        deadline, and whether that deadline (rather than the fetch's) bounds this wait.

        A request waits ``total_timeout`` in all from its first wait, or until the deadline of
        the fetch it first waits for if that is later (one it starts itself ends a moment
        after): so the first wait always runs to the fetch's deadline.
        """
        attempt = decision.attempt
        if attempt is None:  # pragma: no cover - the policy never says WAIT without one
            raise KeysUnavailable(f"no fetch to wait for from {self.name}")
        now = self.monotonic()
        if until is None:
            until = max(now + self.total_timeout, attempt.deadline)
        return attempt, min(until, attempt.deadline) - now, until, until < attempt.deadline

    def _settle(self, kid: str | None = None) -> Decision[KeySet]:
        with self._lock:
            decision = self._policy.settle(self.monotonic(), kid)
        self._expired(decision)
        return decision

    def _answer(self, decision: Decision[KeySet], kid: str | None) -> KeySet:
        if decision.action is Action.SERVE and decision.keyset is not None:
            if decision.stale is not None:
                self._serving_stale(decision.stale)
            if decision.unknown_kid and kid is not None:
                self._unknown_kid(kid)
            return decision.keyset
        raise KeysUnavailable(
            f"no usable keys from {self.name}: {self.last_error}",
            retry_after=decision.retry_after,
        )

    # -- fetching --------------------------------------------------------------------------

    def _begin(self, decision: Decision[KeySet]) -> Callable[[], None]:
        """Register the fetch ``decision`` started (under the lock, so waiters find its flight);
        the caller calls the result after releasing the lock, which starts the worker thread."""
        attempt = decision.start
        if attempt is None:
            return _nothing
        flight = self._flights.register(key=attempt.number)
        return lambda: self._launch(flight, attempt)

    def _launch(self, flight: Flight, attempt: Attempt) -> None:
        try:
            self._flights.launch(flight, lambda: self._run(attempt))
        except RuntimeError as exc:  # no thread could be started: a failed fetch, not a crash
            error = f"could not start a fetch: {exc}"
            with self._lock:
                counted = self._policy.failed(self.monotonic(), attempt, error)
                serving = self._policy.usable(self.monotonic())
                self._flights.abandon(flight)
            flight.finish()
            if counted:
                self._failed(error, 0.0, serving)

    def _run(self, attempt: Attempt) -> None:
        """The worker thread of one fetch: tell the policy how it went, then log it."""
        started = time.perf_counter()
        try:
            got = self._obtain(attempt)
        except BaseException as exc:
            error = str(exc) or type(exc).__name__
            fallback = exc.fallback if isinstance(exc, Failed) else None
            with self._lock:
                now = self.monotonic()
                counted = self._policy.failed(now, attempt, error)
                adopted = fallback is not None and self._policy.adopt(
                    now, attempt, fallback.keyset, fallback.lifetime, fallback.age
                )
                if adopted and fallback is not None:
                    self._entry = self._policy.entry
                    self._fetched_at = fallback.fetched_at
                serving = self._policy.usable(now)
            if counted:
                self._failed(error, time.perf_counter() - started, serving)
            if adopted and fallback is not None:
                self._shared(fallback, adopted=True)
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            old = self._policy.entry
            applied = self._policy.fetched(
                self.monotonic(), attempt, got.keyset, got.lifetime, age=got.age
            )
            if applied:
                self._entry = self._policy.entry
                self._fetched_at = got.fetched_at
                if got.origin == "provider":
                    self.fetch_count += 1
                self._stale_logged = False
        if applied and got.origin == "provider":
            self._fetched(got.keyset, got.lifetime, time.perf_counter() - started, old)
        elif applied:
            self._shared(got, adopted=False)

    def _obtain(self, attempt: Attempt) -> Obtained[KeySet]:
        """Fetch from the provider, or through the fleet's key-set store when there is one."""
        store = self.keyset_store
        if store is None:
            keyset, _, lifetime = self._fetch()
            return Obtained(keyset, lifetime, 0.0, self.clock(), "provider")
        with self._lock:
            held = self._policy.entry
            held_at = self._fetched_at if held is not None else None
            serving = self._policy.usable(self.monotonic())
        steps = obtain(
            store,
            self.name,
            self._build_shared,
            held_at=held_at,
            serving=serving,
            wall=self.clock,
            mono=self.monotonic,
            deadline=attempt.deadline,
            lock_ttl=self.total_timeout,
        )
        return run(steps, self._fetch_shareable, time.sleep)

    def _fetch_shareable(self) -> Fetched[KeySet]:
        keyset, document, lifetime = self._fetch()
        return Fetched(keyset, document, lifetime)

    def _build_shared(self, document: Mapping[str, Any]) -> KeySet:
        """A stored document, through every key check a fetched one goes through."""
        keyset = KeySet.from_jwks(
            document,
            algorithms=self.algorithms,
            allow_oct=self.allow_oct,
            source=f"{self.name} (shared store)",
        )
        if len(keyset) == 0:
            raise ValueError("the stored JWKS holds no usable key")
        return keyset

    def _timed_out(self, attempt: Attempt, flight: Flight | None) -> None:
        """A waiter reached the fetch's deadline: it failed, for everyone."""
        error = f"fetch took longer than {self.total_timeout:g}s"
        with self._lock:
            now = self.monotonic()
            counted = self._policy.failed(now, attempt, error)
            serving = self._policy.usable(now)
            if flight is not None:
                self._flights.abandon(flight)
        if counted:
            self._failed(error, self.total_timeout, serving)

    def _expired(self, decision: Decision[KeySet]) -> None:
        if decision.expired is not None:
            with self._lock:
                serving = self._policy.usable(self.monotonic())
            error = f"fetch took longer than {self.total_timeout:g}s"
            self._failed(error, self.total_timeout, serving)

    def _fetch(self) -> tuple[KeySet, dict[str, Any], float]:
        http = HTTPFetcher(
            self.session,
            self.timeout,
            self.total_timeout,
            self.max_bytes,
            self.allow_http,
            allow_link_local=self.allow_link_local,
        )
        deadline = time.monotonic() + self.total_timeout
        if self._jwks_uri is None:
            self._jwks_uri = http.discover(
                self.discovery_issuer, deadline, templates=self.discovery_templates
            )
        jwks_uri = self._jwks_uri
        try:
            document, headers = http.get_json(jwks_uri, deadline)
            keyset = KeySet.from_jwks(
                document,
                algorithms=self.algorithms,
                allow_oct=self.allow_oct,
                source=jwks_uri,
            )
        except (FetchError, ValueError) as exc:
            if self.url is None:
                self._jwks_uri = None  # rediscover next time
            raise FetchError(str(exc)) from exc
        if len(keyset) == 0:
            raise FetchError("the JWKS holds no usable key")
        cache_control = headers.get("Cache-Control")
        lifetime = ttl(
            cache_control, default=self.default_ttl, minimum=self.min_ttl, maximum=self.max_ttl
        )
        return keyset, document, lifetime

    # -- start-up, explicit refresh, health ------------------------------------------------

    def prefetch(self) -> None:
        """Fetch now unless a fresh set is held; raise ``KeysUnavailable`` if none can be had.

        For start-up and readiness: unlike a request, it waits for a due refresh even when the
        current keys could still answer. After a failure it does not retry before the back-off
        ends. It never starts the unknown-kid cool-down.
        """
        self._resolve(None, eager=True)

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        await self._aresolve(None, eager=True)

    def refresh(self) -> None:
        """Fetch now, whatever the schedule and the back-off, and wait for it (at most
        ``total_timeout``); join the fetch in flight if there is one.

        Raises ``KeysUnavailable`` (its ``retry_after`` the back-off now in force) when the fetch
        fails; the last good key set keeps serving as for any failed fetch.
        """
        with self._lock:
            decision = self._policy.refresh(self.monotonic())
            launch = self._begin(decision)
            flight = self._flights.current
        launch()
        self._expired(decision)
        attempt, timeout, _, _ = self._waiting(decision, math.inf)  # to the fetch's deadline
        if flight is None or flight.key != attempt.number or not flight.wait(timeout):
            self._timed_out(attempt, flight)
        with self._lock:
            entry = self._policy.entry
            if entry is not None and entry.attempt >= attempt.number:
                return
            retry = self._policy.retry_after(self.monotonic())
        raise KeysUnavailable(
            f"refreshing {self.name} failed: {self.last_error}", retry_after=retry
        )

    def status(self) -> dict[str, Any]:
        """A snapshot for health checks: age of the keys, staleness, last error.

        ``age`` is measured on the monotonic clock (never negative); ``fetched_at`` is the wall
        clock time of the fetch, for people reading it.
        """
        with self._lock:
            policy = self._policy
            now = self.monotonic()
            entry = policy.entry
            return {
                "source": self.name,
                "jwks_uri": self._jwks_uri,
                "keys": len(entry.keyset) if entry else 0,
                "kids": sorted(entry.keyset.kids) if entry else [],
                "fetched_at": self._fetched_at if entry else None,
                "age": max(0.0, now - entry.fetched) if entry else None,
                "stale": policy.stale(now),
                "usable": policy.usable(now),
                "last_error": policy.last_error,
                "failures": policy.failures,
            }

    def _after_fork(self) -> None:
        # In a forked child: the parent's fetch thread is not here and its lock may be held.
        self._lock = threading.Lock()
        self._policy.forget_fetch()

    # -- logs and events -------------------------------------------------------------------

    def _fetched(
        self, keyset: KeySet, lifetime: float, seconds: float, old: Entry[KeySet] | None
    ) -> None:
        if self.observer is not None:
            emit(self.observer.keys_fetched, self.name, len(keyset), seconds)
        before = old.keyset.kids if old is not None else frozenset()
        logger.info(
            "jwks fetched source=%s keys=%d ttl=%.0fs ms=%.1f added=%s removed=%s",
            safe(self.name),
            len(keyset),
            lifetime,
            seconds * 1000,
            safe(sorted(keyset.kids - before)),
            safe(sorted(before - keyset.kids)),
        )

    def _shared(self, got: Obtained[KeySet], *, adopted: bool) -> None:
        logger.info(
            "jwks key set from the shared store source=%s keys=%d age=%.0fs ttl=%.0fs%s",
            safe(self.name),
            len(got.keyset),
            got.age,
            got.lifetime,
            " (the provider could not be reached: serving it meanwhile)" if adopted else "",
        )

    def _failed(self, error: str, seconds: float, serving: bool) -> None:
        logger.warning(
            "jwks fetch failed source=%s error=%s failures=%d ms=%.1f serving=%s",
            safe(self.name),
            safe(error),
            self._policy.failures,
            seconds * 1000,
            "stale" if serving else "none",
        )
        if self.observer is not None:
            emit(self.observer.keys_failed, self.name, error)

    def _unknown_kid(self, kid: str) -> None:
        logger.info(
            "jwks unknown kid source=%s kid='%s' (no refetch now)",
            safe(self.name),
            safe(kid, 64),
        )
        if self.observer is not None:
            emit(self.observer.unknown_kid, self.name, kid)

    def _serving_stale(self, age: float) -> None:
        if not self._stale_logged:
            self._stale_logged = True
            logger.warning(
                "jwks serving stale keys source=%s age=%.0fs last_error=%s",
                safe(self.name),
                age,
                safe(self.last_error),
            )
        if self.observer is not None:
            emit(self.observer.keys_stale, self.name, age)


def _nothing() -> None:
    return None


def _random_source(jitter: bool | Callable[[], float]) -> Callable[[], float] | None:
    if jitter is False:
        return None
    if jitter is True:
        return random.SystemRandom().random  # independent in every worker, forked or not
    return jitter


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
