"""The remote key source: fetch, cache, refresh ahead, cool down, single flight, serve stale.

``JWKSClient.keys_for(kid)`` answers from the current key set whenever it can; it waits on the
network only when there is no usable key set yet, or when the token names a kid the set lacks and
the cool-down allows one refetch. All callers, threads and asyncio tasks alike, share one fetch in
flight. A failed fetch keeps the last good key set serving for ``max_stale`` seconds past its
expiry, with retries backing off; a successful fetch replaces the set (removed kids stop
verifying). ``akeys_for`` runs the fetch in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import requests

from ._fetch import FetchError, HTTPFetcher, check_url, ttl
from .errors import ConfigurationError, KeysUnavailable
from .events import GuardObserver, emit
from .keys import KeySet

__all__ = ["FetchError", "JWKSClient", "check_url"]

logger = logging.getLogger("jwt_guard.jwks")

_DONE: Future[None] = Future()
_DONE.set_result(None)


@dataclass(frozen=True)
class _Entry:
    keyset: KeySet
    fetched_at: float
    refresh_at: float
    expires_at: float


class JWKSClient:
    """Fetches and caches one remote JWK Set (directly, or via OpenID discovery).

    Args:
        url: the JWKS URL; or ``None`` with ``discovery_issuer`` set.
        discovery_issuer: fetch ``{issuer}/.well-known/openid-configuration`` and use its
            ``jwks_uri``; the document's ``issuer`` must equal this value exactly.
        algorithms: the algorithms keys may be bound to.
        allow_oct: accept symmetric keys from this remote source (off: RFC 8725 3.1).
        allow_http: allow plain HTTP to non-loopback hosts (off).
        allow_link_local: allow link-local and cloud metadata addresses (169.254.0.0/16,
            fe80::/10, fd00:ec2::254) in the URL, a discovered ``jwks_uri`` or a redirect (off).
        session: the ``requests.Session`` to use (the I/O seam; one is made if omitted).
        timeout: ``(connect, read)`` seconds; ``total_timeout`` bounds a whole fetch.
        max_bytes: the largest response body accepted.
        default_ttl / min_ttl / max_ttl: cache lifetime when ``Cache-Control: max-age`` is absent,
            and the bounds it is clamped to.
        refresh_ahead: fraction of the lifetime after which a background refresh starts.
        cooldown: at most one refetch for unknown kids per this many seconds.
        max_stale: how long past expiry the last good set keeps serving while fetches fail.
        clock: ``time.time``-like callable (inject one in tests).
        observer: a :class:`~jwt_guard.events.GuardObserver` told of fetches, failures,
            stale serving and unknown kids.

    Example::

        client = JWKSClient("https://idp.example.com/.well-known/jwks.json")
        keyset = client.keys_for("key-2024")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        discovery_issuer: str | None = None,
        algorithms: Iterable[str] | None = None,
        allow_oct: bool = False,
        allow_http: bool = False,
        allow_link_local: bool = False,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.0, 5.0),
        total_timeout: float = 10.0,
        max_bytes: int = 512 * 1024,
        default_ttl: float = 300.0,
        min_ttl: float = 30.0,
        max_ttl: float = 86400.0,
        refresh_ahead: float = 0.8,
        cooldown: float = 30.0,
        max_stale: float = 3600.0,
        backoff: tuple[float, float] = (1.0, 60.0),
        clock: Callable[[], float] = time.time,
        observer: GuardObserver | None = None,
    ) -> None:
        if (url is None) == (discovery_issuer is None):
            raise ConfigurationError("give exactly one of url= or discovery_issuer=")
        target = url if url is not None else str(discovery_issuer)
        problem = check_url(target, allow_http=allow_http, allow_link_local=allow_link_local)
        if problem:
            raise ConfigurationError(f"JWKS source {target!r}: {problem}")
        if not 0 < min_ttl <= default_ttl <= max_ttl:
            raise ConfigurationError("need 0 < min_ttl <= default_ttl <= max_ttl")
        if not 0 < refresh_ahead <= 1:
            raise ConfigurationError("refresh_ahead must be in (0, 1]")
        self.url = url
        self.discovery_issuer = discovery_issuer
        self.algorithms = tuple(algorithms) if algorithms is not None else None
        self.allow_oct, self.allow_http = allow_oct, allow_http
        self.allow_link_local = allow_link_local
        self.session = session if session is not None else requests.Session()
        self.timeout, self.total_timeout, self.max_bytes = timeout, total_timeout, max_bytes
        self.default_ttl, self.min_ttl, self.max_ttl = default_ttl, min_ttl, max_ttl
        self.refresh_ahead, self.cooldown, self.max_stale = refresh_ahead, cooldown, max_stale
        self.backoff, self.clock, self.observer = backoff, clock, observer
        self._stale_logged = False
        self._lock = threading.Lock()
        self._entry: _Entry | None = None
        self._inflight: Future[None] | None = None
        self._jwks_uri: str | None = url
        self._last_attempt = float("-inf")
        self._attempts = 0
        self._retry_at = float("-inf")
        self._failures = 0
        self.last_error: str | None = None
        self.fetch_count = 0

    # -- answering -------------------------------------------------------------------------

    def keys_for(self, kid: str | None) -> KeySet:
        """The key set to verify a token with ``kid``, fetching only when it must (blocking)."""
        seen = self._attempts
        keyset = self._answer(kid)
        if keyset is not None:
            return keyset
        self._wait_for_fetch(seen)
        return self._after_fetch(kid)

    async def akeys_for(self, kid: str | None) -> KeySet:
        """Like :meth:`keys_for`, but the fetch runs in a worker thread, off the event loop."""
        seen = self._attempts
        keyset = self._answer(kid)
        if keyset is not None:
            return keyset
        await self._await_fetch(seen)
        return self._after_fetch(kid)

    def _wait_for_fetch(self, seen: int | None = None) -> None:
        future, owner = self._claim(seen)
        if owner:
            # In a worker thread, so this request waits no longer than any other does: a fetch
            # can outlive total_timeout (requests cannot bound trickled headers or DNS).
            self._spawn(future)
        with contextlib.suppress(Exception):  # the outcome is read from the state afterwards
            future.result(timeout=self.total_timeout + 1.0)

    async def _await_fetch(self, seen: int | None = None) -> None:
        future, owner = self._claim(seen)
        if owner:
            self._spawn(future)
        with contextlib.suppress(Exception):  # the outcome is read from the state afterwards
            # shield: a waiter that times out must not cancel the fetch all others wait on
            # (wrap_future passes cancellation on; the next waiter then got CancelledError).
            await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(future)), self.total_timeout + 1.0
            )

    def _due(self) -> bool:
        """Whether a prefetch should fetch: the set is not fresh and no back-off holds."""
        entry = self._entry
        now = self.clock()
        return (entry is None or now >= entry.refresh_at) and now >= self._retry_at

    def _answer(self, kid: str | None) -> KeySet | None:
        now = self.clock()
        entry = self._entry
        if entry is None or now >= entry.expires_at + self.max_stale:
            if now < self._retry_at:
                raise self._unavailable(now)
            return None
        if kid is not None and kid not in entry.keyset:
            if now >= self._last_attempt + self.cooldown and now >= self._retry_at:
                return None
            self._unknown_kid(kid)
            return entry.keyset
        if now >= entry.refresh_at:
            if now >= self._retry_at and self._inflight is None:
                future, owner = self._claim()
                if owner:
                    self._spawn(future)
            if now >= entry.expires_at:
                self._serving_stale(now - entry.fetched_at)
        return entry.keyset

    def _unknown_kid(self, kid: str) -> None:
        logger.info(
            "jwks unknown kid source=%s kid=%r (no refetch inside the cool-down)",
            self.name,
            kid[:64],
        )
        if self.observer is not None:
            emit(self.observer.unknown_kid, self.name, kid)

    def _serving_stale(self, age: float) -> None:
        if not self._stale_logged:
            self._stale_logged = True
            logger.warning(
                "jwks serving stale keys source=%s age=%.0fs last_error=%s",
                self.name,
                age,
                self.last_error,
            )
        if self.observer is not None:
            emit(self.observer.keys_stale, self.name, age)

    def current(self, now: float | None = None) -> KeySet | None:
        """The usable key set without waiting on the network (``None`` if there is none).

        Starts a background refresh when the set is due for one. ``now``: the caller's reading
        of this client's clock, if it has one.
        """
        entry = self._entry  # fast path (every token-cache hit): a set not yet due for refresh
        if entry is not None and (self.clock() if now is None else now) < entry.refresh_at:
            return entry.keyset
        try:
            return self._answer(None)
        except KeysUnavailable:
            return None

    def _after_fetch(self, kid: str | None) -> KeySet:
        now = self.clock()
        entry = self._entry
        if entry is not None and now < entry.expires_at + self.max_stale:
            if now >= entry.expires_at:
                self._serving_stale(now - entry.fetched_at)
            if kid is not None and kid not in entry.keyset:
                self._unknown_kid(kid)
            return entry.keyset
        raise self._unavailable(now)

    def _unavailable(self, now: float) -> KeysUnavailable:
        retry = max(1, int(self._retry_at - now + 0.999)) if self._retry_at > now else 1
        return KeysUnavailable(
            f"no usable keys from {self.name}: {self.last_error}", retry_after=retry
        )

    @property
    def name(self) -> str:
        """The configured source, for logs and metrics: the JWKS URL or the discovery issuer."""
        return self.url or f"discovery:{self.discovery_issuer}"

    # -- single flight ---------------------------------------------------------------------

    def _claim(self, seen: int | None = None) -> tuple[Future[None], bool]:
        """Join the fetch in flight or start one (``owner`` True: the caller must run it).

        With ``seen`` (the attempt count read before deciding to fetch), a fetch that started
        since then is taken as the answer and none is started: two threads that both saw an
        unknown kid cannot make two fetches in one cool-down.
        """
        with self._lock:
            if self._inflight is not None:
                return self._inflight, False
            if seen is not None and seen != self._attempts:
                return _DONE, False
            future: Future[None] = Future()
            self._inflight = future
            self._attempts += 1
            self._last_attempt = self.clock()
            return future, True

    def _spawn(self, future: Future[None]) -> None:
        threading.Thread(
            target=self._run, args=(future,), name="jwt_guard-jwks", daemon=True
        ).start()

    def _run(self, future: Future[None]) -> None:
        try:
            self.refresh()
        except BaseException as exc:  # handed to the waiters
            with self._lock:
                self._inflight = None
            future.set_exception(exc)
        else:
            with self._lock:
                self._inflight = None
            future.set_result(None)

    def refresh(self) -> None:
        """Fetch now and update the state; on failure keep the last good set and back off."""
        started = time.monotonic()
        now = self.clock()
        try:
            keyset, ttl = self._fetch()
        except Exception as exc:
            self._failures += 1
            base, cap = self.backoff
            now = self.clock()  # the back-off counts from the failure: a fetch can take seconds
            self._retry_at = now + min(cap, base * 2 ** (self._failures - 1))
            self.last_error = str(exc)
            stale = self._entry is not None and now < self._entry.expires_at + self.max_stale
            logger.warning(
                "jwks fetch failed source=%s error=%s failures=%d ms=%.1f serving=%s",
                self.name,
                exc,
                self._failures,
                (time.monotonic() - started) * 1000,
                "stale" if stale else "none",
            )
            if self.observer is not None:
                emit(self.observer.keys_failed, self.name, str(exc))
            raise
        old = self._entry
        self._entry = _Entry(keyset, now, now + ttl * self.refresh_ahead, now + ttl)
        self._failures, self._retry_at, self.last_error = 0, float("-inf"), None
        self.fetch_count += 1
        self._stale_logged = False
        seconds = time.monotonic() - started
        if self.observer is not None:
            emit(self.observer.keys_fetched, self.name, len(keyset), seconds)
        added = keyset.kids - (old.keyset.kids if old else frozenset())
        removed = (old.keyset.kids if old else frozenset()) - keyset.kids
        logger.info(
            "jwks fetched source=%s keys=%d ttl=%.0fs ms=%.1f added=%s removed=%s",
            self.name,
            len(keyset),
            ttl,
            (time.monotonic() - started) * 1000,
            sorted(added),
            sorted(removed),
        )

    # -- HTTP ------------------------------------------------------------------------------

    def _fetch(self) -> tuple[KeySet, float]:
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
            self._jwks_uri = http.discover(self.discovery_issuer, deadline)
        try:
            document, headers = http.get_json(self._jwks_uri, deadline)
            keyset = KeySet.from_jwks(
                document,
                algorithms=self.algorithms,
                allow_oct=self.allow_oct,
                source=self._jwks_uri,
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
        return keyset, lifetime

    # -- health ----------------------------------------------------------------------------

    def prefetch(self) -> None:
        """Fetch now unless a fresh set is held; raise ``KeysUnavailable`` if none can be had.

        For start-up and readiness: unlike a request, it waits for the fetch even when older
        keys could still serve. After a failure it does not retry before the back-off ends.
        """
        if self._due():
            self._wait_for_fetch()
        self._after_fetch(None)

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        if self._due():
            await self._await_fetch()
        self._after_fetch(None)

    def status(self) -> dict[str, Any]:
        """A snapshot for health checks: age of the keys, staleness, last error."""
        now = self.clock()
        entry = self._entry
        return {
            "source": self.name,
            "jwks_uri": self._jwks_uri,
            "keys": len(entry.keyset) if entry else 0,
            "kids": sorted(entry.keyset.kids) if entry else [],
            "fetched_at": entry.fetched_at if entry else None,
            "age": (now - entry.fetched_at) if entry else None,
            "stale": bool(entry and now >= entry.expires_at),
            "usable": bool(entry and now < entry.expires_at + self.max_stale),
            "last_error": self.last_error,
            "failures": self._failures,
        }
