"""The stores of a fleet, built together from one URL, and the deny-list's facade.

:class:`Stores` holds the three stores a verifier and its checks use (revocation, DPoP replay,
shared key sets). ``TokenVerifier(store=...)`` takes one, a URL, or a dict of
:meth:`Stores.from_url` options (what ``JWT_GUARD_STORE_URL`` and the other ``JWT_GUARD_STORE_*``
variables build). One process needs none of this: without ``store=`` the verifier keeps its own
deny-list in memory, made on first use.

:class:`Revocations` is what an application (or ``jwt-guard revoke``) writes to a deny-list with:
``revoke(jti, until=exp)``, ``revoke_subject(sub, issued_before=t)`` ("sign out everywhere"),
``list()``, ``unrevoke(jti)``, ``unrevoke_subject(sub)``.

What each store does when Redis fails is in :mod:`jwt_guard.stores.redis`; the README's
"Running a fleet" section has the table.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._logsafe import safe
from ..errors import ConfigurationError
from ..events import GuardObserver
from ._support import instant
from .base import KeySetStore, ReplayStore, Revocation, RevocationStore
from .memory import DAY, MemoryReplayStore, MemoryRevocationStore

if TYPE_CHECKING:
    from .redis import RedisConnection

__all__ = ["Revocations", "Stores"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_MEMORY = ("memory://", "memory:")
# Stores.from_url's options (the JWT_GUARD_STORE_* variables set all but the clock).
_URL_OPTIONS = frozenset(
    {"secret", "namespace", "timeout", "max_staleness", "on_stale", "check_interval", "clock"}
)


class Stores:
    """The stores one verifier uses: a deny-list, a DPoP replay store, shared key sets.

    Build them with :meth:`memory` (one process: the default), :meth:`redis` (a fleet on one
    Redis or Valkey) or :meth:`from_url`; or give your own objects of the
    :mod:`jwt_guard.stores.base` protocols.

    Args:
        revocation: a ``RevocationStore`` (default: a ``MemoryRevocationStore``).
        replay: a ``ReplayStore`` for DPoP proofs (default: a ``MemoryReplayStore``).
        keysets: a ``KeySetStore`` the remote key sources share key sets through, or ``None``
            (each worker fetches for itself).

    Example::

        stores = Stores.redis(
            "redis://redis.internal:6379/0", secret=os.environ["JWT_GUARD_FLEET_SECRET"]
        )
        verifier = TokenVerifier(issuer=..., audience=..., store=stores)
        verifier.revocations.revoke(claims["jti"], until=claims["exp"])
    """

    def __init__(
        self,
        *,
        revocation: RevocationStore | None = None,
        replay: ReplayStore | None = None,
        keysets: KeySetStore | None = None,
    ) -> None:
        _check("revocation", revocation, ("is_revoked", "revoke", "revoke_subject", "list"))
        _check("replay", replay, ("first_use", "afirst_use"))
        _check("keysets", keysets, ("get", "put", "try_lock", "unlock"))
        self.revocation: RevocationStore = (
            revocation if revocation is not None else MemoryRevocationStore()
        )
        self.replay: ReplayStore = replay if replay is not None else MemoryReplayStore()
        self.keysets: KeySetStore | None = keysets
        self.kind = "custom"
        self._connection: RedisConnection | None = None  # closed with the stores (redis())

    def __repr__(self) -> str:
        where = f" {self._connection.display!r}" if self._connection is not None else ""
        shared = "on" if self.keysets is not None and self.keysets.enabled else "off"
        return f"Stores({self.kind}{where}, key-set sharing {shared})"

    @classmethod
    def memory(cls, *, clock: Callable[[], float] = time.time) -> Stores:
        """In this process only: a deny-list and a replay store in memory, no key sharing."""
        built = cls(revocation=MemoryRevocationStore(clock=clock), replay=MemoryReplayStore())
        built.kind = "memory"
        return built

    @classmethod
    def redis(
        cls,
        url: str,
        *,
        secret: bytes | str | list[bytes | str] | tuple[bytes | str, ...] | None = None,
        namespace: str = "jwt_guard",
        timeout: float = 1.0,
        max_staleness: float = 30.0,
        on_stale: str = "refuse",
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> Stores:
        """All three on one Redis (``pip install "jwt_guard[redis]"``), over one connection.

        Args:
            url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS) or
                ``unix:///path/to/redis.sock``.
            secret: the fleet secret (32 bytes or more; a list to rotate: the first seals, any
                opens) that authenticates shared key sets. ``None``: key sets are not shared
                (whoever can write Redis must not be able to hand the fleet keys).
            namespace: the prefix of every key (give two apps on one Redis their own).
            timeout: seconds for connecting and for each reply (no call waits longer than
                about twice this).
            max_staleness: seconds the deny-list replica may go without confirming it is
                current before ``on_stale`` applies.
            on_stale: ``"refuse"`` (503 while the replica is too old: the default) or
                ``"accept"`` (keep answering from the replica: availability over revocation).
            check_interval: seconds between confirmations of the replica's version (at most
                half of ``max_staleness``).
            clock: ``time.time``-like wall clock (deny-list entries lapse on it).
        """
        try:
            from .redis import (
                RedisConnection,
                RedisKeySetStore,
                RedisReplayStore,
                RedisRevocationStore,
            )
        except ImportError as exc:
            raise ConfigurationError(
                f"a Redis store needs the redis client: pip install 'jwt_guard[redis]' ({exc})"
            ) from exc
        connection = RedisConnection(url, namespace=namespace, timeout=timeout)
        built = cls(
            revocation=RedisRevocationStore(
                connection,
                max_staleness=max_staleness,
                on_stale=on_stale,
                check_interval=check_interval,
                clock=clock,
            ),
            replay=RedisReplayStore(connection),
            keysets=RedisKeySetStore(connection, secret=secret, clock=clock),
        )
        built.kind = "redis"
        built._connection = connection
        return built

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Stores:
        """:meth:`redis` for a ``redis://``, ``rediss://`` or ``unix://`` URL (``options`` are
        its keyword arguments), :meth:`memory` for ``memory://``."""
        if not isinstance(url, str):
            raise ConfigurationError(
                f"store URL: must be a string such as 'redis://host:6379/0', "
                f"not {type(url).__name__!r}"
            )
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"store options: unknown {unknown}; known: {sorted(_URL_OPTIONS)}"
            )
        lowered = url.lower()
        if lowered in _MEMORY:
            clock = options.pop("clock", time.time)
            if options:
                raise ConfigurationError(
                    f"store {url!r}: {sorted(options)} apply to a Redis store only"
                )
            return cls.memory(clock=clock)
        if lowered.startswith(_REDIS_SCHEMES):
            return cls.redis(url, **options)
        raise ConfigurationError(
            f"store URL: must start with redis://, rediss://, unix:// or be memory://, "
            f"got {safe(_scheme(url))!r}"
        )

    @classmethod
    def coerce(
        cls, owner: str, value: object, *, clock: Callable[[], float] = time.time
    ) -> Stores | None:
        """``store=``: a ``Stores``, a URL, a dict (``{"url": ..., **from_url options}``) or
        ``None``. Stores built here run on ``clock`` (the verifier's) unless the dict says."""
        if value is None or isinstance(value, Stores):
            return value
        if isinstance(value, str):
            try:
                return cls.from_url(value, clock=clock)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{owner}(store=...): {exc}") from None
        if isinstance(value, Mapping):
            spec = {"clock": clock, **value}
            url = spec.pop("url", None)
            if url is None:
                raise ConfigurationError(
                    f"{owner}(store=...): a dict of store options needs 'url' (JWT_GUARD_STORE_URL)"
                )
            try:
                return cls.from_url(url, **spec)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{owner}(store=...): {exc}") from None
        raise ConfigurationError(
            f"{owner}(store=...): must be a Stores(...), a URL such as 'redis://host:6379/0' or "
            f"a dict of store options, not {type(value).__name__!r}"
        )

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start background work now (the deny-list replica follows Redis); never blocks."""
        start = getattr(self.revocation, "start", None)
        if callable(start):
            start()

    def wait_ready(self, timeout: float) -> bool:
        """Start, and wait until the deny-list replica is current (at most ``timeout`` s).

        ``True`` when it is (at once for a store in this process)."""
        wait = getattr(self.revocation, "wait_synced", None)
        bound = getattr(self.revocation, "max_staleness", math.inf)
        if not callable(wait) or self.revocation.staleness() < bound:
            return True
        return bool(wait(timeout))

    def observe(self, observer: GuardObserver | None) -> None:
        """Give every store that reports events (the Redis ones) ``observer``, unless it has
        one already."""
        if observer is None:
            return
        for store in (self.revocation, self.replay, self.keysets):
            if store is not None and hasattr(store, "observer") and store.observer is None:
                with contextlib.suppress(AttributeError):
                    store.observer = observer

    def refusing(self) -> bool:
        """Whether the deny-list refuses requests now (its replica too old, ``on_stale=
        "refuse"``): the process is not ready."""
        status = self.revocation.status()
        return bool(status.get("stale")) and status.get("on_stale", "refuse") == "refuse"

    def status(self) -> dict[str, Any]:
        """A JSON-ready report for health endpoints: ``ok`` (false while the deny-list refuses)
        and each store's own status. Never a secret: URLs lose their password."""
        report: dict[str, Any] = {"kind": self.kind}
        for name, store in (
            ("revocation", self.revocation),
            ("replay", self.replay),
            ("keysets", self.keysets),
        ):
            if store is None:
                continue
            status = getattr(store, "status", None)
            try:
                report[name] = status() if callable(status) else {"store": type(store).__name__}
            except Exception as exc:  # a store of one's own: its report fails, not the probe
                report[name] = {"error": f"{type(exc).__name__}: {safe(exc)}"}
        if self.keysets is not None:
            report.setdefault("keysets", {})["enabled"] = bool(self.keysets.enabled)
        try:
            report["ok"] = not self.refusing()
        except Exception:
            report["ok"] = False
        return report

    def close(self) -> None:
        """Stop background work and close connections (the ones :meth:`redis` made)."""
        for store in (self.revocation, self.replay, self.keysets):
            close = getattr(store, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        if self._connection is not None:
            self._connection.close()


def _check(name: str, value: object, members: tuple[str, ...]) -> None:
    if value is None:
        return
    missing = [m for m in members if not callable(getattr(value, m, None))]
    if missing:
        raise ConfigurationError(
            f"Stores({name}=...): {type(value).__name__!r} lacks {', '.join(missing)} "
            "(see jwt_guard.stores.base)"
        )


def _scheme(url: str) -> str:
    """What a message may show of a URL: its scheme only (the rest can hold a password)."""
    return url.partition("://")[0][:20] + "://..." if "://" in url else url[:20]


class Revocations:
    """Revoke tokens and subjects in a deny-list; every verifier sharing it refuses them.

    ``TokenVerifier.revocations`` gives the one of its ``store`` (with a Redis store, every
    worker of the fleet refuses a revoked token within milliseconds; the request path reads a
    local replica, no round trip). Times are epoch seconds or aware ``datetime``s.

    Args:
        store: the ``RevocationStore`` to write to.
        clock: ``time.time``-like wall clock (for the defaults below).

    Example::

        revocations = verifier.revocations
        revocations.revoke(claims["jti"], until=claims["exp"])   # this token
        revocations.revoke_subject("alice")                      # every token alice holds now
        revocations.list()
        revocations.unrevoke_subject("alice")
    """

    def __init__(self, store: RevocationStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def __repr__(self) -> str:
        return f"Revocations({self.store!r})"

    @property
    def max_ttl(self) -> float:
        """The furthest ahead an entry may lapse: the store's ``max_ttl`` (30 days)."""
        value = getattr(self.store, "max_ttl", 30 * DAY)
        return float(value) if isinstance(value, (int, float)) else 30 * DAY

    def _default_until(self) -> float:
        return self._clock() + self.max_ttl - 1.0

    def revoke(self, jti: str, until: float | None = None) -> None:
        """Refuse the token whose ``jti`` this is until ``until`` (give its ``exp``).

        Without ``until`` the entry stays for ``max_ttl``: long enough for any token, at the
        cost of an entry that outlives it.
        """
        self.store.revoke(jti, self._default_until() if until is None else until)

    def revoke_subject(
        self, sub: str, issued_before: float | None = None, until: float | None = None
    ) -> None:
        """Refuse every token of ``sub`` issued before ``issued_before`` (default: now), and
        every token of ``sub`` without ``iat``, until ``until``.

        ``until`` should be when the last of those tokens expires (``issued_before`` plus your
        longest token lifetime); without it the entry stays for ``max_ttl``. Tokens issued
        after ``issued_before`` (the user signed in again) are accepted.
        """
        if issued_before is None:
            before = self._clock()
        else:
            before = instant("Revocations.revoke_subject", "issued_before", issued_before)
        self.store.revoke_subject(sub, before, self._default_until() if until is None else until)

    def unrevoke(self, jti: str) -> bool:
        """Take the token ``jti`` off the list; ``True`` if it was on it."""
        return self.store.unrevoke(jti)

    def unrevoke_subject(self, sub: str) -> bool:
        """Take the subject ``sub`` off the list; ``True`` if it was on it."""
        return self.store.unrevoke_subject(sub)

    def list(self) -> tuple[Revocation, ...]:
        """The entries in force, read from the store itself, sorted by kind and value."""
        return self.store.list()

    def status(self) -> dict[str, Any]:
        """The store's status (staleness, version, entries, connection)."""
        return self.store.status()
