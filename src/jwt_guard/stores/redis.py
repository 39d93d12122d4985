"""Redis stores: one truth for every worker of a fleet (``pip install "jwt_guard[redis]"``).

Built on the official ``redis`` client (``redis.Redis``, and ``redis.asyncio`` for
:meth:`RedisReplayStore.afirst_use`). Works with Redis and Valkey.

**Connection.** :class:`RedisConnection` takes a URL: ``redis://[user:password@]host:port/db``,
``rediss://...`` (TLS; certificate options as URL parameters, e.g. ``?ssl_ca_certs=...``) or
``unix:///path/to/redis.sock``. Every call has a timeout (``timeout``, default 1 s) on connecting
and on each reply, and a broken connection is retried once, so a call on a dead, unreachable or
paused (SIGSTOPped) Redis returns within about twice ``timeout``; an async call is bounded by
``asyncio.wait_for`` as well. No call waits without a bound.

**Keys.** Everything lives under ``<namespace>:<purpose>:...`` (namespace ``jwt_guard`` by
default; purposes ``revoked``, ``replay``, ``keyset``, ``lock``), every key has a TTL, and
outside text (a DPoP ``jti``, an issuer URL, a lock name) appears in a key name only as its
SHA-256. The deny-list is two hashes (``revoked:jti``, ``revoked:sub``) with a sorted set each
indexing expiry (``revoked:jti:expiry``...), a version hash (``revoked:version``: an ``epoch``
that is new whenever the list starts over, and a counter ``n``) and a channel
(``revoked:changes``). Changes are Lua scripts: the entry, the version bump and the
notification happen together or not at all.

**The store is a trust boundary.** Whatever comes back is checked like input from the wire:
replies of the wrong type are errors, deny-list entries and notifications are parsed strictly
(a bad one is skipped or causes a resync, and is logged once), stored key sets must carry a
valid HMAC (:mod:`jwt_guard.stores._envelope`).

**When Redis fails** (a policy per use):

- *revocation* (:class:`RedisRevocationStore`): requests are answered from the local replica.
  A background thread follows the notifications and confirms the version every
  ``check_interval``; after a reconnect, a version gap, a bad notification or a changed epoch
  (Redis restarted or flushed) it reloads the whole list, so nothing is missed. While it cannot
  reach Redis it reconnects with jittered exponential back-off (up to 5 s), and the replica ages:
  past ``max_staleness`` (default 30 s) ``is_revoked`` raises ``StoreUnavailable`` (503,
  ``on_stale="refuse"``, the default) or keeps answering from the replica
  (``on_stale="accept"``). Writes (``revoke`` ...) raise ``StoreUnavailable``.
- *replay* (:class:`RedisReplayStore`): fails closed. ``first_use`` raises ``StoreUnavailable``
  (503 with ``Retry-After``): an unanswered check never lets a proof through.
- *key sets* (:class:`RedisKeySetStore`): ``get`` answers ``None`` and ``put`` ``False`` (logged
  once per outage): the caller fetches the JWKS itself. ``try_lock``/``unlock`` raise
  ``StoreUnavailable``: the caller proceeds without coordination.

Run Redis with persistence (AOF or RDB) if revocations must survive its restart: a replica
follows the store, and an empty store after a restart means an empty deny-list.

**Observability.** Each store has an ``observer`` (a ``GuardObserver``, ``None`` by default;
``Stores`` gives it the verifier's): ``store_latency`` for every call that answered,
``store_error`` for every one that did not, and for the deny-list ``replica_lag`` (from a change
in Redis to this process's replica) and ``replica_resync``. ``status()`` gives the same picture
for health endpoints.

**Fork safety.** Connections, locks and the subscriber thread are per process: in a child
forked from a process that used a store (gunicorn ``--preload``), each is rebuilt on first use.
The replica's entries are inherited and age from the parent's last sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from .._codec import loads_object
from .._logsafe import safe
from .._options import duration, positive_int
from ..errors import ConfigurationError, StoreFull, StoreUnavailable
from ..events import GuardObserver, emit
from ._envelope import check_secrets, open_sealed, seal
from ._replica import Lookup, Replica
from ._support import (
    MAX_VALUE_LENGTH,
    Backoff,
    LogOnce,
    check_namespace,
    check_on_stale,
    check_value,
    digest,
    instant,
    logger,
    reset_after_fork,
    ttl_seconds,
)
from .base import (
    KeySetStore,
    ReplayStore,
    Revocation,
    RevocationStore,
    StoredKeySet,
)
from .memory import DAY, _check_until

__all__ = ["RedisConnection", "RedisKeySetStore", "RedisReplayStore", "RedisRevocationStore"]

_SCHEMES = ("redis", "rediss", "unix")
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class RedisConnection:
    """Connections to one Redis, shared by the stores built on it.

    Args:
        url: ``redis://...``, ``rediss://...`` or ``unix://...`` (see the module docstring).
        namespace: the first part of every key and channel (``jwt_guard``); give two
            applications sharing a Redis different namespaces.
        timeout: seconds allowed for connecting and for each reply (default 1.0).

    Example::

        connection = RedisConnection("redis://redis.internal:6379/0", timeout=0.5)
        replay = RedisReplayStore(connection)
        revocations = RedisRevocationStore(connection)
    """

    _OWNER = "RedisConnection"

    def __init__(self, url: str, *, namespace: str = "jwt_guard", timeout: float = 1.0) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(
                f"{self._OWNER}(url=...): must be a string, not {type(url).__name__!r}"
            )
        scheme = url.partition("://")[0].lower()
        if scheme not in _SCHEMES or "://" not in url:
            raise ConfigurationError(
                f"{self._OWNER}(url=...): must start with redis://, rediss:// or unix://, "
                f"got {safe(_redacted(url))!r}"
            )
        self.url = url
        self.namespace = check_namespace(self._OWNER, namespace)
        self.timeout = duration(self._OWNER, "timeout", timeout, allow_zero=False)
        self.display = _redacted(url)
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._listener: redis.Redis | None = None
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.Redis
        ] = weakref.WeakKeyDictionary()
        self._scripts: dict[str, Script] = {}
        try:
            self._client = self._build(retries=1)  # no I/O: parses the URL, makes the pool
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{self._OWNER}(url=...): {safe(self.display)} is not a usable Redis URL: "
                f"{safe(exc)}"
            ) from exc
        reset_after_fork(self)

    def __repr__(self) -> str:
        return f"RedisConnection({self.display!r}, namespace={self.namespace!r})"

    def _build(self, retries: int) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # One retry, only for a connection found broken (a restarted Redis): a timeout is
            # never retried, so a paused Redis costs one timeout, not several.
            retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        )

    def key(self, purpose: str, *parts: str) -> str:
        """``<namespace>:<purpose>:<parts...>``."""
        return ":".join((self.namespace, purpose, *parts))

    def client(self) -> redis.Redis:
        """The synchronous client of this process."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build(retries=1)
                client = self._client
        return client

    def listener(self) -> redis.Redis:
        """A client for a subscriber: no retry, so a dropped connection is seen, not hidden."""
        client = self._listener
        if client is None:
            with self._lock:
                if self._listener is None:
                    self._listener = self._build(retries=0)
                client = self._listener
        return client

    def aclient(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = redis.asyncio.Redis.from_url(
                    self.url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=redis.asyncio.retry.Retry(
                        NoBackoff(), 1, supported_errors=(RedisConnectionError,)
                    ),
                )
                self._aclients[loop] = client
        return client

    @property
    def bound(self) -> float:
        """The longest one call may take: a connect and a reply, or a retry of them."""
        return 2 * self.timeout

    def script(self, source: str) -> Script:
        """``source`` registered with this process's client (sent by SHA, loaded on demand)."""
        client = self.client()
        with self._lock:
            script = self._scripts.get(source)
            if script is None or script.registered_client is not client:
                script = self._scripts[source] = client.register_script(source)
        return script

    def close(self) -> None:
        """Close this process's synchronous connections (the stores reconnect on next use)."""
        with self._lock:
            clients, self._client, self._listener = (self._client, self._listener), None, None
            self._scripts.clear()
        for client in clients:
            if client is not None:
                client.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio client."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def _after_fork(self) -> None:
        # The parent's pools are dropped, not closed: redis-py shuts a socket down only in the
        # process that opened it, so the parent's connections keep working.
        self._lock = threading.Lock()
        self._client = self._listener = None
        self._aclients = weakref.WeakKeyDictionary()
        self._scripts = {}


def _redacted(url: str) -> str:
    """``url`` without its password, for logs and status."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return "<an unparsable URL>"


def _connection(owner: str, value: object) -> tuple[RedisConnection, bool]:
    """``(connection, owned)``: a URL gets a connection of its own, closed with the store."""
    if isinstance(value, RedisConnection):
        return value, False
    if isinstance(value, str):
        return RedisConnection(value), True
    raise ConfigurationError(
        f"{owner}(connection=...): must be a RedisConnection or a redis:// URL, "
        f"not {type(value).__name__!r}"
    )


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Observed:
    """The observer hooks of a store: one ``is None`` test when nobody listens."""

    _KIND = ""
    observer: GuardObserver | None = None

    def _took(self, operation: str, started: float) -> None:
        observer = self.observer
        if observer is not None:
            emit(observer.store_latency, self._KIND, operation, time.perf_counter() - started)

    def _erred(self, operation: str, exc: BaseException) -> None:
        observer = self.observer
        if observer is not None:
            emit(observer.store_error, self._KIND, operation, f"{type(exc).__name__}: {safe(exc)}")


# -- replay -----------------------------------------------------------------------------------


class RedisReplayStore(_Observed):
    """First use of a key within ``ttl`` seconds, across every worker sharing a Redis.

    One atomic ``SET <namespace>:replay:<sha256(key)> 1 NX PX <ttl>`` per check. Fails
    closed: when Redis does not answer in time, ``first_use`` raises ``StoreUnavailable``.

    Args:
        connection: a :class:`RedisConnection`, or a URL for one of its own.

    Example::

        replay = RedisReplayStore("redis://redis.internal:6379/0")
        if not await replay.afirst_use(proof_jti, ttl=300):
            ...  # a replayed proof
    """

    _OWNER = "RedisReplayStore"
    _KIND = "replay"

    def __init__(self, connection: RedisConnection | str) -> None:
        self._conn, self._owned = _connection(self._OWNER, connection)
        self._log = LogOnce()
        self._failing = False
        self._last_error: str | None = None

    def _name(self, key: str, ttl: float) -> tuple[str, int]:
        seconds = ttl_seconds(f"{self._OWNER}.first_use", ttl)
        if not isinstance(key, str):
            raise ConfigurationError(
                f"{self._OWNER}.first_use(key=...): must be a string, not {type(key).__name__!r}"
            )
        return self._conn.key("replay", digest(key)), _ms(seconds)

    def first_use(self, key: str, ttl: float) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl`` seconds, else ``False``."""
        name, ms = self._name(key, ttl)
        started = time.perf_counter()
        try:
            reply = self._conn.client().set(name, b"1", nx=True, px=ms)
        except _FAILURES as exc:
            raise self._unavailable(exc) from exc
        self._took("first_use", started)
        return self._answer(reply)

    async def afirst_use(self, key: str, ttl: float) -> bool:
        """:meth:`first_use` on the asyncio client (bounded by ``asyncio.wait_for`` too)."""
        name, ms = self._name(key, ttl)
        started = time.perf_counter()
        try:
            client = self._conn.aclient()
            reply = await asyncio.wait_for(client.set(name, b"1", nx=True, px=ms), self._conn.bound)
        except _FAILURES as exc:
            raise self._unavailable(exc) from exc
        self._took("first_use", started)
        return self._answer(reply)

    def _answer(self, reply: object) -> bool:
        if reply is True or reply is None:
            if self._failing:
                self._failing = False
                self._log.recovered("replay", "replay store %s answers again", self._conn.display)
            return reply is True
        raise self._unavailable(ValueError(f"SET NX answered {safe(reply, 40)}"))

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        self._failing = True
        self._last_error = f"{type(exc).__name__}: {safe(exc)}"
        detail = f"replay store {self._conn.display}: {self._last_error}"
        self._log.problem("replay", type(exc).__name__, "%s; replay checks fail closed", detail)
        self._erred("first_use", exc)
        return StoreUnavailable(detail)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary: whether the last check was answered, and the last error."""
        return {
            "store": "redis",
            "url": self._conn.display,
            "failing": self._failing,
            "last_error": self._last_error,
        }

    async def aclose(self) -> None:
        """Close the running event loop's connections (and the sync ones if the store owns
        its connection)."""
        await self._conn.aclose()
        if self._owned:
            self._conn.close()

    def close(self) -> None:
        """Close the synchronous connections if the store owns its connection."""
        if self._owned:
            self._conn.close()


# -- key sets ---------------------------------------------------------------------------------

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisKeySetStore(_Observed):
    """The last good JWKS document per issuer, sealed with a fleet secret, and fetch locks.

    Without ``secret`` key-set sharing is off (``enabled`` is false, ``get`` answers ``None``,
    ``put`` stores nothing): whoever can write Redis must not be able to hand the fleet keys.

    Args:
        connection: a :class:`RedisConnection`, or a URL for one of its own.
        secret: the fleet secret (at least 32 bytes), or a list of secrets: the first seals,
            any one opens (rotate by putting the new one first, then dropping the old).
        max_age: seconds after its fetch that a stored key set is still served (default one
            day; the key in Redis expires then too). An old set sealed with a valid secret is
            still refused past it, so a rolled-back value cannot bring back retired keys.
        max_bytes: the largest stored value accepted (default 1 MiB).
        clock: ``time.time``-like wall clock (fetch times are shared between hosts).

    Example::

        keysets = RedisKeySetStore(connection, secret=os.environ["JWT_GUARD_STORE_SECRET"])
    """

    _OWNER = "RedisKeySetStore"
    _KIND = "keysets"

    def __init__(
        self,
        connection: RedisConnection | str,
        *,
        secret: bytes | str | list[bytes | str] | tuple[bytes | str, ...] | None = None,
        max_age: float = DAY,
        max_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = check_secrets(self._OWNER, secret)
        self.max_age = duration(self._OWNER, "max_age", max_age, allow_zero=False)
        self.max_bytes = positive_int(self._OWNER, "max_bytes", max_bytes, minimum=1024)
        self._clock = clock
        self._conn, self._owned = _connection(self._OWNER, connection)
        self._log = LogOnce()
        self._last_error: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"RedisKeySetStore({self._conn.display!r}, enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        """Whether key sets are shared (a secret is configured)."""
        return bool(self._secrets)

    def _key(self, issuer: str) -> str:
        if not isinstance(issuer, str):
            raise ConfigurationError(
                f"{self._OWNER}(issuer=...): must be a string, not {type(issuer).__name__!r}"
            )
        return self._conn.key("keyset", digest(issuer))

    def get(self, issuer: str) -> StoredKeySet | None:
        """The stored key set of ``issuer`` if it is authentic and within ``max_age``.

        ``None`` when there is none, when sharing is off, when Redis fails (logged once per
        outage) and when the stored value is refused (logged once per distinct value).
        """
        if not self._secrets:
            return None
        key = self._key(issuer)
        started = time.perf_counter()
        try:
            raw = self._conn.client().get(key)
        except _FAILURES as exc:
            self._outage(exc, "get")
            return None
        self._took("get", started)
        self._recovered()
        if raw is None:
            return None
        try:
            found = open_sealed(
                raw,
                self._secrets,
                issuer,
                now=self._clock(),
                max_age=self.max_age,
                max_bytes=self.max_bytes,
            )
        except ValueError as exc:
            fingerprint = digest(raw.hex()) if isinstance(raw, bytes) else type(raw).__name__
            self._log.problem(
                f"value:{key}",
                fingerprint,
                "key-set store %s: the stored key set for issuer %s was refused: %s",
                self._conn.display,
                safe(issuer),
                safe(exc),
            )
            return None
        self._log.recovered(f"value:{key}")
        return found

    def put(
        self, issuer: str, document: Mapping[str, Any], fetched_at: float, lifetime: float
    ) -> bool:
        """Seal and store ``document`` for ``issuer``; ``False`` if nothing was stored.

        ``fetched_at`` is when it was fetched (epoch seconds), ``lifetime`` how long the
        provider said it is good for (seconds). The Redis key expires ``max_age`` after
        ``fetched_at``.
        """
        if not self._secrets:
            return False
        key = self._key(issuer)
        at = instant(f"{self._OWNER}.put", "fetched_at", fetched_at)
        ttl = duration(f"{self._OWNER}.put", "lifetime", lifetime)
        remaining = at + self.max_age - self._clock()
        if remaining <= 0:
            return False
        try:
            raw = seal(self._secrets[0], issuer, document, at, ttl)
        except ValueError as exc:
            logger.warning(
                "key-set store: not storing the key set of %s: %s", safe(issuer), safe(exc)
            )
            return False
        if len(raw) > self.max_bytes:
            logger.warning(
                "key-set store: the key set of %s is %d bytes sealed, more than max_bytes=%d",
                safe(issuer),
                len(raw),
                self.max_bytes,
            )
            return False
        started = time.perf_counter()
        try:
            reply = self._conn.client().set(key, raw, px=_ms(remaining))
        except _FAILURES as exc:
            self._outage(exc, "put")
            return False
        self._took("put", started)
        self._recovered()
        return reply is True

    def try_lock(self, name: str, ttl: float) -> str | None:
        """A token if the lock ``name`` was free (it expires after ``ttl``), else ``None``.

        Raises ``StoreUnavailable`` when Redis does not answer: proceed without the lock.
        """
        ms = _ms(ttl_seconds(f"{self._OWNER}.try_lock", ttl))
        token = secrets.token_urlsafe(18)
        started = time.perf_counter()
        try:
            reply = self._conn.client().set(self._lock_key(name), token, nx=True, px=ms)
        except _FAILURES as exc:
            raise self._outage(exc, "try_lock") from exc
        self._took("try_lock", started)
        self._recovered()
        if reply is True:
            return token
        if reply is None:
            return None
        raise StoreUnavailable(
            f"key-set store {self._conn.display}: SET NX answered {safe(reply, 40)}"
        )

    def unlock(self, name: str, token: str) -> bool:
        """Release ``name`` if ``token`` still holds it (compare and delete, atomically)."""
        started = time.perf_counter()
        try:
            reply = self._conn.script(_UNLOCK)(keys=[self._lock_key(name)], args=[token])
        except _FAILURES as exc:
            raise self._outage(exc, "unlock") from exc
        self._took("unlock", started)
        return bool(reply == 1)

    def _lock_key(self, name: str) -> str:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{self._OWNER}.try_lock(name=...): must be a string, not {type(name).__name__!r}"
            )
        return self._conn.key("lock", digest(name))

    def _outage(self, exc: BaseException, operation: str) -> StoreUnavailable:
        self._last_error = f"{type(exc).__name__}: {safe(exc)}"
        detail = f"key-set store {self._conn.display}: {self._last_error}"
        self._log.problem("outage", type(exc).__name__, "%s; fetching key sets directly", detail)
        self._erred(operation, exc)
        return StoreUnavailable(detail)

    def _recovered(self) -> None:
        if self._last_error is not None:
            self._last_error = None
            self._log.recovered("outage", "key-set store %s answers again", self._conn.display)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary: whether sharing is on, whether Redis answered last time."""
        return {
            "store": "redis",
            "url": self._conn.display,
            "enabled": self.enabled,
            "failing": self._last_error is not None,
            "last_error": self._last_error,
        }

    def close(self) -> None:
        """Close the connections if the store owns its connection."""
        if self._owned:
            self._conn.close()


# -- revocation -------------------------------------------------------------------------------

# KEYS: entries hash, expiry index, version hash.
# ARGV: value, field, until, now, entry-keys ttl ms, max entries, epoch candidate,
#       version ttl ms, channel, payload.
_REVOKE = """
local purge = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 256)
if #purge > 0 then
  redis.call('HDEL', KEYS[1], unpack(purge))
  redis.call('ZREM', KEYS[2], unpack(purge))
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then
  return {'full'}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local ttl = tonumber(ARGV[5])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[7])
local n = redis.call('HINCRBY', KEYS[3], 'n', 1)
local epoch = redis.call('HGET', KEYS[3], 'epoch')
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('PUBLISH', ARGV[9], epoch .. ' ' .. n .. ' ' .. ARGV[10])
return {'ok', epoch, n}
"""

# KEYS: entries hash, expiry index, version hash.
# ARGV: value, epoch candidate, version ttl ms, channel, payload.
_UNREVOKE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 0 then return {'none'} end
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[2])
local n = redis.call('HINCRBY', KEYS[3], 'n', 1)
local epoch = redis.call('HGET', KEYS[3], 'epoch')
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[4], epoch .. ' ' .. n .. ' ' .. ARGV[5])
return {'ok', epoch, n}
"""

_EPOCH = re.compile(r"[A-Za-z0-9]{1,64}")
_COUNTER = re.compile(r"[0-9]{1,18}")
_TIME = r"[0-9]{1,11}(?:\.[0-9]{1,6})?"
_JTI_FIELD = re.compile(_TIME)
_SUB_FIELD = re.compile(f"({_TIME}) ({_TIME})")
_MESSAGE = re.compile(rb"([A-Za-z0-9]{1,64}) ([0-9]{1,18}) ")
_MAX_MESSAGE = 16384
# The subscriber looks at its stop flag at least this often (close() returns within it).
_SLICE = 0.1


class _Refused(ValueError):
    """A value from Redis that the protocol does not allow."""


def _text(raw: object, what: str) -> str:
    if not isinstance(raw, bytes):
        raise _Refused(f"{what}: a {type(raw).__name__}, not bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"{what}: not UTF-8") from exc


def _version(raw: object) -> tuple[str, int]:
    """The ``(epoch, n)`` of an ``HMGET version epoch n`` reply; ``("", 0)`` for none."""
    if not isinstance(raw, list) or len(raw) != 2:
        raise _Refused(f"version: {raw!r:.80}")
    epoch = "" if raw[0] is None else _text(raw[0], "version epoch")
    counter = "0" if raw[1] is None else _text(raw[1], "version counter")
    if (epoch and not _EPOCH.fullmatch(epoch)) or not _COUNTER.fullmatch(counter):
        raise _Refused(f"version: {epoch!r:.80} {counter!r:.40}")
    return epoch, int(counter)


def _number(body: Mapping[str, Any], name: str) -> float:
    value = body.get(name)
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value < 1e11
    ):
        raise _Refused(f"{name}: {value!r:.40}")
    return float(value)


def _message(data: object) -> tuple[str, int, str, Revocation, float | None]:
    """``(epoch, n, op, entry, published_at)`` of a change notification."""
    if not isinstance(data, bytes) or len(data) > _MAX_MESSAGE:
        raise _Refused("a notification that is not bytes, or too long")
    head = _MESSAGE.match(data)
    if head is None:
        raise _Refused(f"notification header {data[:60]!r}")
    try:
        body = loads_object(data[head.end() :])
    except ValueError as exc:
        raise _Refused(f"notification body: {exc}") from exc
    op, kind, value = body.get("op"), body.get("kind"), body.get("value")
    if op not in ("add", "del") or kind not in ("jti", "sub"):
        raise _Refused(f"notification op={op!r:.40} kind={kind!r:.40}")
    if not isinstance(value, str) or not 0 < len(value.encode("utf-8", "replace")) <= (
        MAX_VALUE_LENGTH
    ):
        raise _Refused("notification value: not a string of 1 to 1024 bytes")
    until = _number(body, "until") if op == "add" else 0.0
    before = _number(body, "before") if op == "add" and kind == "sub" else None
    at = _number(body, "at") if "at" in body else None
    entry = Revocation("jti" if kind == "jti" else "sub", value, until, before)
    return head.group(1).decode("ascii"), int(head.group(2)), op, entry, at


class RedisRevocationStore(_Observed):
    """A deny-list shared through Redis, answered from a local replica in every process.

    ``is_revoked`` is a dictionary lookup; a daemon thread (started on first use, or by
    :meth:`start`) keeps the replica current through pub/sub, confirms its version every
    ``check_interval`` and reloads the list after anything that could have hidden a change.

    Args:
        connection: a :class:`RedisConnection`, or a URL for one of its own.
        max_staleness: seconds the replica may go without agreeing with Redis before
            ``on_stale`` applies (default 30).
        on_stale: ``"refuse"`` (the default: ``is_revoked`` raises ``StoreUnavailable``, a 503)
            or ``"accept"`` (keep answering from the replica: availability over revocation).
        check_interval: seconds between version checks (default 1): the bound on how long a
            flush, a restart or a lost notification can go unnoticed while Redis answers; at
            most half of ``max_staleness``.
        max_entries: the most entries of each kind in force (the same on every worker).
        max_ttl: the furthest ahead an entry's ``until`` may be (default 30 days).
        clock: ``time.time``-like wall clock (entries lapse at ``until`` on it).
        monotonic: ``time.monotonic``-like clock the staleness is measured on.

    Until the first sync the replica is stale: call :meth:`start` and :meth:`wait_synced` at
    start-up, or the first requests get 503 for the few milliseconds the first load takes.

    Example::

        store = RedisRevocationStore("redis://redis.internal:6379/0")
        store.start()
        store.wait_synced(timeout=5)
        store.revoke(claims["jti"], until=claims["exp"])  # every worker refuses it within ~ms
    """

    _OWNER = "RedisRevocationStore"
    _KIND = "revocation"

    is_revoked: Lookup
    """``is_revoked(jti, sub, iat) -> bool``: whether the local replica refuses a token with
    these claims (no I/O; the replica's own method, so no extra call on the request path). The
    first call in a process starts the subscriber. Raises ``StoreUnavailable`` once the replica
    is older than ``max_staleness`` with ``on_stale="refuse"``."""

    def __init__(
        self,
        connection: RedisConnection | str,
        *,
        max_staleness: float = 30.0,
        on_stale: str = "refuse",
        check_interval: float = 1.0,
        max_entries: int = 100_000,
        max_ttl: float = 30 * DAY,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        owner = self._OWNER
        self.max_staleness = duration(owner, "max_staleness", max_staleness, allow_zero=False)
        self.on_stale = on_stale
        refuse = check_on_stale(owner, on_stale)
        self.check_interval = duration(owner, "check_interval", check_interval, allow_zero=False)
        if self.check_interval > self.max_staleness / 2:
            raise ConfigurationError(
                f"{owner}(check_interval=...): {self.check_interval:g}s is more than half of "
                f"max_staleness={self.max_staleness:g}s; a quiet, healthy replica is confirmed "
                "only every check_interval, so it would go stale between checks"
            )
        self.max_entries = positive_int(owner, "max_entries", max_entries, minimum=1)
        self.max_ttl = duration(owner, "max_ttl", max_ttl, allow_zero=False)
        self._clock = clock
        self._conn, self._owned = _connection(owner, connection)
        key = self._conn.key
        self._hashes = {"jti": key("revoked", "jti"), "sub": key("revoked", "sub")}
        self._expiry = {kind: key("revoked", kind, "expiry") for kind in ("jti", "sub")}
        self._version_key = key("revoked", "version")
        self._channel = key("revoked", "changes")
        self._replica = Replica(
            owner,
            max_entries=self.max_entries,
            max_staleness=self.max_staleness,
            refuse_when_stale=refuse,
            clock=clock,
            monotonic=monotonic,
        )
        self._log = LogOnce()
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._closed = False
        self._connected = False
        self._resyncs = 0
        self._failures = 0
        self._last_error: str | None = None
        self._lag: float | None = None
        self.is_revoked = self._replica.is_revoked
        self._replica.before_read = self.start  # until the subscriber runs
        reset_after_fork(self)

    def __repr__(self) -> str:
        return f"RedisRevocationStore({self._conn.display!r})"

    # -- the request path ------------------------------------------------------------------

    def staleness(self) -> float:
        """Seconds since the replica last agreed with Redis (``inf`` before the first sync)."""
        return self._replica.staleness()

    # -- writes (go to Redis; this process's replica takes them at once) -------------------

    def revoke(self, jti: str, until: float) -> None:
        """Refuse the token with this ``jti`` until ``until`` (epoch seconds or an aware
        ``datetime``; usually its ``exp``). An ``until`` already past stores nothing."""
        owner = f"{self._OWNER}.revoke"
        value = check_value(owner, "jti", jti)
        lapse = _check_until(owner, until, self._clock(), self.max_ttl)
        if lapse is not None:
            self._add(Revocation("jti", value, lapse))

    def revoke_subject(self, sub: str, issued_before: float, until: float) -> None:
        """Refuse every token of ``sub`` with an ``iat`` before ``issued_before`` (or none),
        until ``until``. A later call for the same subject replaces the entry."""
        owner = f"{self._OWNER}.revoke_subject"
        value = check_value(owner, "sub", sub)
        before = instant(owner, "issued_before", issued_before)
        lapse = _check_until(owner, until, self._clock(), self.max_ttl)
        if lapse is not None:
            self._add(Revocation("sub", value, lapse, before))

    def unrevoke(self, jti: str) -> bool:
        """Drop the entry for ``jti``; ``True`` if there was one."""
        return self._drop(Revocation("jti", check_value(f"{self._OWNER}.unrevoke", "jti", jti), 0))

    def unrevoke_subject(self, sub: str) -> bool:
        """Drop the entry for ``sub``; ``True`` if there was one."""
        value = check_value(f"{self._OWNER}.unrevoke_subject", "sub", sub)
        return self._drop(Revocation("sub", value, 0))

    def _payload(self, op: str, entry: Revocation, now: float) -> str:
        body: dict[str, Any] = {"op": op, "kind": entry.kind, "value": entry.value, "at": now}
        if op == "add":
            body["until"] = entry.until
            if entry.kind == "sub":
                body["before"] = entry.issued_before
        return json.dumps(body, separators=(",", ":"))

    def _add(self, entry: Revocation) -> None:
        now = self._clock()
        if entry.kind == "jti":
            field = f"{entry.until:.6f}"
        else:
            field = f"{entry.issued_before or 0.0:.6f} {entry.until:.6f}"
        args = [
            entry.value,
            field,
            f"{entry.until:.6f}",
            f"{now:.6f}",
            _ms(entry.until - now + 60),
            self.max_entries,
            secrets.token_hex(8),
            _ms(self.max_ttl + DAY),
            self._channel,
            self._payload("add", entry, now),
        ]
        reply = self._run_script(_REVOKE, entry.kind, args)
        if reply is None:
            raise StoreFull(
                f"revocation store {self._conn.display}: {self.max_entries} {entry.kind} "
                f"entries in force (max_entries); not adding {safe(entry.value, 64)}"
            )
        self._take_own(reply, "add", entry)

    def _drop(self, entry: Revocation) -> bool:
        now = self._clock()
        args = [
            entry.value,
            secrets.token_hex(8),
            _ms(self.max_ttl + DAY),
            self._channel,
            self._payload("del", entry, now),
        ]
        reply = self._run_script(_UNREVOKE, entry.kind, args)
        if reply is None:
            return False
        self._take_own(reply, "del", entry)
        return True

    def _run_script(self, source: str, kind: str, args: list[Any]) -> tuple[str, int] | None:
        keys = [self._hashes[kind], self._expiry[kind], self._version_key]
        operation = "revoke" if source is _REVOKE else "unrevoke"
        started = time.perf_counter()
        try:
            reply = self._conn.script(source)(keys=keys, args=args)
        except _FAILURES as exc:
            self._erred(operation, exc)
            raise StoreUnavailable(
                f"revocation store {self._conn.display}: {type(exc).__name__}: {safe(exc)}"
            ) from exc
        self._took(operation, started)
        if isinstance(reply, list) and reply and reply[0] in (b"full", b"none"):
            return None
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"ok":
            try:
                return _version([reply[1], str(reply[2]).encode()])
            except _Refused:
                pass
        raise StoreUnavailable(
            f"revocation store {self._conn.display}: unexpected reply {safe(reply, 80)}"
        )

    def _take_own(self, version: tuple[str, int], op: str, entry: Revocation) -> None:
        # Read-your-writes: this process's replica takes the change now if it is the next one
        # (otherwise the subscriber catches up, as for any other change).
        with contextlib.suppress(StoreFull):
            self._replica.apply(version[0], version[1], op, entry)

    def list(self) -> tuple[Revocation, ...]:
        """The entries in force, read from Redis (not the replica), sorted by kind and value."""
        try:
            _, jti, sub = self._snapshot(self._conn.client())
        except (*_FAILURES, _Refused) as exc:
            raise StoreUnavailable(
                f"revocation store {self._conn.display}: {type(exc).__name__}: {safe(exc)}"
            ) from exc
        now = self._clock()
        found = [Revocation("jti", value, until) for value, until in jti.items() if until > now]
        found += [
            Revocation("sub", value, until, before)
            for value, (before, until) in sub.items()
            if until > now
        ]
        return tuple(sorted(found, key=lambda r: (r.kind, r.value)))

    # -- the subscriber --------------------------------------------------------------------

    def start(self) -> None:
        """Start following Redis in a daemon thread (once per process; idempotent)."""
        with self._state:
            if self._running or self._closed:
                return
            stop = self._stop = threading.Event()
            thread = threading.Thread(
                target=self._follow, args=(stop,), name="jwt_guard-revocations", daemon=True
            )
            self._thread, self._running = thread, True
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: stay stale (503), try again later
            with self._state:
                self._running = False
            self._failed(exc)
            return
        self._replica.before_read = None

    def wait_synced(self, timeout: float) -> bool:
        """Start if needed and wait until the replica agrees with Redis (at most ``timeout``).

        ``True`` when a sync completed after this call; ``False`` on timeout.
        """
        self.start()
        replica = self._replica
        seen = replica.syncs
        return replica.wait_for(lambda: replica.syncs > seen, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true, checked after every change of the replica or of
        the connection, at most ``timeout`` seconds. For start-up scripts and tests."""
        return self._replica.wait_for(predicate, timeout)

    def close(self) -> None:
        """Stop the subscriber (and close the connection if the store owns it)."""
        with self._state:
            self._closed, self._running = True, False
            thread, stop = self._thread, self._stop
        self._replica.before_read = None
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_SLICE + 2 * self._conn.bound + 1)
        if self._owned:
            self._conn.close()

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary: connection, version, entries, staleness, resyncs, failures."""
        replica = self._replica
        staleness = replica.staleness()
        return {
            "store": "redis",
            "url": self._conn.display,
            "connected": self._connected,
            "version": None if replica.epoch is None else f"{replica.epoch}:{replica.version}",
            "entries": replica.counts(),
            "staleness": None if math.isinf(staleness) else round(staleness, 3),
            "max_staleness": self.max_staleness,
            "on_stale": self.on_stale,
            "stale": staleness > self.max_staleness,
            "resyncs": self._resyncs,
            "failures": self._failures,
            "last_error": self._last_error,
            "lag": self._lag,
        }

    def _follow(self, stop: threading.Event) -> None:
        backoff = Backoff(0.05, 5.0)
        while not stop.is_set():
            pubsub: PubSub | None = None
            try:
                client = self._conn.listener()
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self._channel)
                confirmed = pubsub.get_message(timeout=self._conn.timeout)
                if not isinstance(confirmed, dict) or confirmed.get("type") != "subscribe":
                    raise _Refused(f"no subscription confirmed: {confirmed!r:.80}")
                # Subscribed first, loaded second: a change after the load is in the channel.
                self._resync(client, "connected")
                self._connected = True
                self._log.recovered(
                    "subscriber", "revocation store %s: in sync again", self._conn.display
                )
                backoff.reset()
                self._listen(stop, client, pubsub)
            except Exception as exc:  # whatever failed, the answer is to reconnect and reload
                self._failed(exc)
            finally:
                self._connected = False
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # a broken connection may fail to close
                        pubsub.close()
            stop.wait(backoff.next())

    def _listen(self, stop: threading.Event, client: redis.Redis, pubsub: PubSub) -> None:
        next_check = time.monotonic() + self.check_interval
        while not stop.is_set():
            wait = min(_SLICE, max(0.0, next_check - time.monotonic()))
            message = pubsub.get_message(timeout=wait)
            if message is not None:
                self._handle(client, message)
            if time.monotonic() >= next_check:
                self._check(client, pubsub)
                next_check = time.monotonic() + self.check_interval

    def _handle(self, client: redis.Redis, message: object) -> None:
        if not isinstance(message, dict) or message.get("type") != "message":
            return  # a (re)subscription confirmation or a pong
        try:
            epoch, n, op, entry, at = _message(message.get("data"))
        except _Refused as exc:
            self._log.problem(
                "message",
                "refused",
                "revocation store %s: a change notification was refused (%s); reloading",
                self._conn.display,
                safe(exc),
            )
            self._resync(client, "a notification was refused")
            return
        try:
            outcome = self._replica.apply(epoch, n, op, entry)
        except StoreFull:
            outcome = "gap"
        if outcome == "gap":
            self._resync(client, "a change was missed or the store started over")
            return
        self._replica.mark_synced()
        if at is not None and outcome == "applied":
            self._lag = round(max(0.0, self._clock() - at), 6)
            observer = self.observer
            if observer is not None:
                emit(observer.replica_lag, self._KIND, self._lag)

    def _check(self, client: redis.Redis, pubsub: PubSub) -> None:
        epoch, n = _version(client.hmget(self._version_key, ["epoch", "n"]))
        replica = self._replica
        if not replica.agrees(epoch, n):
            # A notification may be on its way: take what has arrived, then compare again.
            while (message := pubsub.get_message(timeout=0)) is not None:
                self._handle(client, message)
        if replica.agrees(epoch, n):
            replica.mark_synced()
        else:
            self._resync(client, "the version moved without a notification")
        replica.purge()

    def _snapshot(
        self, client: redis.Redis
    ) -> tuple[tuple[str, int], dict[str, float], dict[str, tuple[float, float]]]:
        pipe = client.pipeline(transaction=True)
        pipe.hmget(self._version_key, ["epoch", "n"])
        pipe.hgetall(self._hashes["jti"])
        pipe.hgetall(self._hashes["sub"])
        raw_version, raw_jti, raw_sub = pipe.execute()
        version = _version(raw_version)
        jti: dict[str, float] = {}
        sub: dict[str, tuple[float, float]] = {}
        for kind, raw in (("jti", raw_jti), ("sub", raw_sub)):
            if not isinstance(raw, dict):
                raise _Refused(f"{kind} entries: a {type(raw).__name__}")
            if len(raw) > self.max_entries * 2:  # lapsed ones not purged yet are allowed for
                raise StoreFull(f"{kind} entries: {len(raw)} in Redis (max_entries)")
            bad = 0
            for raw_value, raw_field in raw.items():
                try:
                    value = check_value(self._OWNER, kind, _text(raw_value, "value"))
                    field = _text(raw_field, "field")
                    if kind == "jti":
                        if not _JTI_FIELD.fullmatch(field):
                            raise _Refused("field")
                        jti[value] = float(field)
                    else:
                        match = _SUB_FIELD.fullmatch(field)
                        if match is None:
                            raise _Refused("field")
                        sub[value] = (float(match.group(1)), float(match.group(2)))
                except (_Refused, ConfigurationError):
                    bad += 1
            if bad:
                self._log.problem(
                    f"entries:{kind}",
                    str(bad),
                    "revocation store %s: %d malformed %s entries skipped",
                    self._conn.display,
                    bad,
                    kind,
                )
        return version, jti, sub

    def _resync(self, client: redis.Redis, reason: str) -> None:
        started = time.perf_counter()
        (epoch, n), jti, sub = self._snapshot(client)
        self._replica.replace(epoch, n, jti, sub)
        self._resyncs += 1
        self._took("resync", started)
        observer = self.observer
        if observer is not None:
            emit(observer.replica_resync, self._KIND, reason)
        logger.debug(
            "revocation store %s: reloaded (%s): version %s:%d, %d jti, %d sub",
            self._conn.display,
            reason,
            epoch,
            n,
            len(jti),
            len(sub),
        )

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {safe(exc)}"
        self._erred("follow", exc)
        staleness = self._replica.staleness()
        self._log.problem(
            "subscriber",
            type(exc).__name__,
            "revocation store %s: %s; answering from the local replica (last in sync %s), "
            "reconnecting",
            self._conn.display,
            self._last_error,
            "never" if math.isinf(staleness) else f"{staleness:.1f}s ago",
        )
        self._replica.notify()

    def _after_fork(self) -> None:
        # The subscriber thread does not exist in the child: the next is_revoked starts one.
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._running = False
        self._connected = False
        if not self._closed:
            self._replica.before_read = self.start


if TYPE_CHECKING:  # mypy checks each class against its protocol here; nothing runs

    def _conforms(
        revocations: RedisRevocationStore, replay: RedisReplayStore, keysets: RedisKeySetStore
    ) -> tuple[RevocationStore, ReplayStore, KeySetStore]:
        return revocations, replay, keysets
