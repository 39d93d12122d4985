"""Key sets shared through a fleet's store: one fetch per refresh for the whole fleet, and a cold
worker that serves while the provider is down.

The steps of one fetch when a :class:`~jwt_guard.stores.base.KeySetStore` is configured, written
as a generator of effects (:class:`Sleep`, :class:`Fetch`): the JWKS client runs them with real
waits and HTTP (:func:`run`), and the stampede simulation (``benchmarks/stampede_bench.py``) runs
the very same steps on a simulated clock.

1. Read the store. A set newer than the one held and still within its lifetime: take it; fetch
   nothing.
2. Otherwise take the fleet's fetch lock (``try_lock``, expiring after ``lock_ttl``), and read
   the store once more (the holder before us may just have stored a set). Held by another
   worker: poll the store for a newer set, briefly when this worker can answer meanwhile, up to
   the attempt's deadline when it cannot; nothing new: a failed attempt (the back-off applies).
3. With the lock, or when the store does not answer (no coordination: fetch directly): fetch
   from the provider, store the document, release the lock. A failed fetch keeps the lock until
   it expires: the fleet's next attempt waits that long, whoever makes it, so a fleet makes
   about one attempt per ``lock_ttl`` while the provider is down.
4. A failed attempt hands over the stored set when it is newer than the one held, even past its
   lifetime (:class:`Failed` ``.fallback``): a cold worker serves like its warm neighbours.

The store is a trust boundary: what it gives back is a document that passed its seal
(:mod:`jwt_guard.stores._envelope`), and ``build`` still puts it through every key check
(``KeySet.from_jwks``), like a document fetched from the wire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .._logsafe import safe
from ..stores._support import LogOnce
from ..stores.base import KeySetStore, StoredKeySet

__all__ = ["Failed", "Fetch", "Fetched", "Obtained", "Sleep", "lock_name", "obtain", "run"]

logger = logging.getLogger("jwt_guard.jwks")

K = TypeVar("K")

POLL = 0.1
"""Seconds between looks at the store while another worker holds the fetch lock."""
BRIEF = 1.0
"""How long a worker that can answer meanwhile waits for another worker's fetch."""

_LOG = LogOnce()


@dataclass(frozen=True)
class Sleep:
    """Effect: wait ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Fetch:
    """Effect: fetch from the provider. The runner sends back a :class:`Fetched`, or throws the
    failure into the steps."""


@dataclass(frozen=True)
class Fetched(Generic[K]):
    """What a fetch from the provider brought: the key set, the document to share (``None``:
    not shareable), and the lifetime the provider gave it."""

    keyset: K
    document: Mapping[str, Any] | None
    lifetime: float


@dataclass(frozen=True)
class Obtained(Generic[K]):
    """A key set this attempt obtained: from the provider (``age`` 0) or from the store.

    ``fetched_at``: wall-clock time the provider gave it out; ``age``: seconds since then.
    """

    keyset: K
    lifetime: float
    age: float
    fetched_at: float
    origin: Literal["provider", "store"]


class Failed(Exception):
    """The attempt obtained nothing fresh; ``fallback`` is a stored set newer than the one held
    (perhaps past its lifetime) that may serve meanwhile, or ``None``."""

    def __init__(self, message: str, fallback: Obtained[Any] | None = None) -> None:
        super().__init__(message)
        self.fallback = fallback


Steps = Generator["Sleep | Fetch", "Fetched[K] | None", "Obtained[K]"]


def lock_name(name: str) -> str:
    """The fleet's fetch lock for the key source ``name``."""
    return f"jwks:{name}"


def obtain(
    store: KeySetStore | None,
    name: str,
    build: Callable[[Mapping[str, Any]], K],
    *,
    held_at: float | None,
    serving: bool,
    wall: Callable[[], float],
    mono: Callable[[], float],
    deadline: float,
    lock_ttl: float,
    poll: float = POLL,
    brief: float = BRIEF,
) -> Steps[K]:
    """The steps of one attempt (module docstring).

    Args:
        store: the fleet's key-set store; ``None`` or not ``enabled``: fetch directly.
        name: the key source's name (the store key and the lock name).
        build: ``document -> key set`` (raises ``ValueError`` for a document it refuses).
        held_at: wall-clock fetch time of the set this worker holds (``None``: none).
        serving: whether this worker can answer from what it holds while it waits.
        wall: the wall clock (fetch times are shared between hosts).
        mono: the monotonic clock ``deadline`` is on.
        deadline: when this attempt counts as failed (``mono``).
        lock_ttl: how long the fetch lock is held at most (and after a failed fetch).
    """
    if store is None or not _enabled(store):
        return (yield from _direct(wall))
    first = _newer(store, name, build, held_at, wall)
    if first is not None and first.age < first.lifetime:
        return first
    token: str | None = None
    try:
        token = store.try_lock(lock_name(name), lock_ttl)
        coordinated = True
    except Exception as exc:  # a store that does not answer: fetch without coordination
        _told("lock", f"{type(exc).__name__}: {exc}", name)
        coordinated = False
    if coordinated and token is None:  # another worker is fetching: wait for its set
        budget = min(brief, deadline - mono()) if serving or first else deadline - mono()
        for _ in range(max(0, math.floor(budget / poll) - 1)):
            yield Sleep(poll)
            found = _newer(store, name, build, held_at, wall)
            if found is not None:
                first = found
                if found.age < found.lifetime:
                    return found
        raise Failed("another worker holds the fetch lock and no newer key set arrived", first)
    if token is not None:  # the holder before us may have stored a set just now
        found = _newer(store, name, build, held_at, wall)
        if found is not None and found.age < found.lifetime:
            _unlock(store, name, token)
            return found
        first = found or first
    try:
        fetched = yield Fetch()
    except Exception as exc:
        # The lock stays held until it expires: the fleet's back-off after a failed fetch.
        raise Failed(str(exc) or type(exc).__name__, first) from exc
    if fetched is None:  # pragma: no cover - the runner always sends a Fetched
        raise Failed("the fetch brought nothing", first)
    at = wall()
    if fetched.document is not None:
        try:
            store.put(name, fetched.document, at, fetched.lifetime)
        except Exception as exc:
            _told("put", f"{type(exc).__name__}: {exc}", name)
    if token is not None:
        _unlock(store, name, token)
    return Obtained(fetched.keyset, fetched.lifetime, 0.0, at, "provider")


def _direct(wall: Callable[[], float]) -> Steps[K]:
    fetched = yield Fetch()
    if fetched is None:  # pragma: no cover - the runner always sends a Fetched
        raise Failed("the fetch brought nothing")
    return Obtained(fetched.keyset, fetched.lifetime, 0.0, wall(), "provider")


def _enabled(store: KeySetStore) -> bool:
    try:
        return bool(store.enabled)
    except Exception:
        return False


def _newer(
    store: KeySetStore,
    name: str,
    build: Callable[[Mapping[str, Any]], K],
    held_at: float | None,
    wall: Callable[[], float],
) -> Obtained[K] | None:
    """The stored set if it is newer than the one held (built through every key check)."""
    try:
        stored = store.get(name)
    except Exception as exc:  # a store of one's own that raises: as if it held nothing
        _told("get", f"{type(exc).__name__}: {exc}", name)
        return None
    if not isinstance(stored, StoredKeySet):
        return None
    if held_at is not None and stored.fetched_at <= held_at:
        return None  # nothing newer: no key is built
    try:
        keyset = build(stored.document)
    except ValueError as exc:
        # Authentic (sealed) yet unusable here: its keys failed the checks of this worker.
        _LOG.problem(
            f"build:{name}",
            str(stored.fetched_at),
            "jwks shared key set refused source=%s: %s (fetching directly)",
            safe(name),
            safe(exc),
        )
        return None
    age = max(0.0, wall() - stored.fetched_at)
    return Obtained(keyset, stored.lifetime, age, stored.fetched_at, "store")


def _unlock(store: KeySetStore, name: str, token: str) -> None:
    try:
        store.unlock(lock_name(name), token)
    except Exception as exc:  # it expires by itself
        _told("unlock", f"{type(exc).__name__}: {exc}", name)


def _told(operation: str, error: str, name: str) -> None:
    # The store logs its own outages (once per episode); this says what the JWKS client did.
    logger.debug(
        "jwks shared key-set store: %s failed source=%s error=%s (fetching directly)",
        operation,
        safe(name),
        safe(error),
    )


def run(
    steps: Steps[K], fetch: Callable[[], Fetched[K]], sleep: Callable[[float], object]
) -> Obtained[K]:
    """Run ``steps`` for real: ``Sleep`` sleeps, ``Fetch`` calls ``fetch`` (its exception is
    thrown into the steps). Returns what they obtained; raises what they raise."""
    reply: Fetched[K] | None = None
    error: Exception | None = None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        if isinstance(effect, Sleep):
            sleep(effect.seconds)
            continue
        try:
            reply = fetch()
        except Exception as exc:
            error = exc
