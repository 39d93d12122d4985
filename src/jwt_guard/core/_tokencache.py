"""The verified-token cache: a repeated token answers without parsing or cryptography.

Bounded twice, first in first out: by the number of tokens and by an estimate of the memory they
hold (``entry_cost``, an upper bound worked out from sizes the parser already knows), so a flood
of large, bracket-heavy tokens cannot grow the process beyond the byte budget. Keyed on the exact
token. An entry never outlives the token's ``exp`` (plus leeway, on the wall clock) nor the cache
lifetime (on the monotonic clock, so a step of the wall clock cannot stretch it), and answers
only while the key source still holds the key that verified it (compared by RFC 7638 thumbprint,
so a refetch that keeps the key keeps the entry); ``nbf`` and the maximum age are re-checked on
every use. Reads take no lock (one dictionary lookup); writes do.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ..errors import NotYetValid, TokenTooOld
from ..keys.jwk import KeySet
from ..sources._singleflight import reset_after_fork
from ..sources.base import KeySource
from ._issuers import IssuerState
from .claims import Claims

__all__ = ["DEFAULT_CACHE_BYTES", "TokenCache", "entry_cost"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
"""Default memory budget of the token cache (``token_cache_bytes``): 64 MiB, which holds 4096
typical 1 KB tokens (about 12 KB each by ``entry_cost``)."""

# Upper bounds, in bytes, of what one cached token holds (CPython, 64-bit), checked by
# tests/test_tokencache.py on the worst shapes a token can take: one-member objects, arrays of
# small numbers and strings, wide objects, long scope strings, non-ASCII text. Empty objects and
# arrays cost nothing: every one of them is the same shared read-only object.
_FIXED = 2048  # the entry, the Claims and its memo (an adapter's user object), the index slots
_PER_TOKEN_CHAR = 1  # the token itself, the cache's key
_PER_PAYLOAD_BYTE = 4  # string text (up to 4 bytes a character), numbers
_PER_OBJECT = 240  # each non-empty { of the payload: a dict and its read-only wrapper
_PER_ARRAY = 72  # each non-empty [ of the payload: a tuple
_PER_ITEM = 112  # each , of the payload: a slot in a dict or tuple and a small object in it
_PER_SCOPE = 128  # each distinct scope: a string object (its slot is in getsizeof(scopes))


def entry_cost(
    token: str, payload: bytes, scopes: frozenset[str], members: int | None = None
) -> int:
    """An upper bound of the memory a cache entry for ``token`` holds, in bytes.

    Counts what the JSON parser turns into objects: brackets become containers (``{}`` and
    ``[]`` none: they are shared), commas separate the items in them. Bytes inside strings
    count too, so this errs high, never low. ``members``: for a payload that holds no nested
    object or array (one ``{`` or ``[`` in all, as ``_codec.loads_counted`` counts), its number
    of members; its one container and its items are then known without counting bytes (its
    commas outside strings are ``members - 1``; those inside strings are text, paid for as
    payload bytes like every other character).
    """
    if members is None:
        count = payload.count
        structure = (
            _PER_OBJECT * (count(b"{") - count(b"{}"))
            + _PER_ARRAY * (count(b"[") - count(b"[]"))
            + _PER_ITEM * count(b",")
        )
    else:
        structure = _PER_OBJECT + _PER_ITEM * (members - 1) if members else 0
    return (
        _FIXED
        + _PER_TOKEN_CHAR * len(token)
        + _PER_PAYLOAD_BYTE * len(payload)
        + structure
        + scopes.__sizeof__()
        + _GC_HEADER  # with __sizeof__(), what sys.getsizeof(scopes) gives, at a fifth the cost
        + _PER_SCOPE * len(scopes)
    )


_GC_HEADER = sys.getsizeof(frozenset()) - frozenset().__sizeof__()
_INF = float("inf")


_Entry = tuple[
    Claims, float, float, float, float, float, KeySource, bool, KeySet, "str | None", str, int
]
"""One verified token: ``(claims, until, retire, valid_from, iat, max_age, source, mono,
keyset, kid, alg, cost)``, worked out once when the token is stored and built in one step (a
tuple: no object to fill in on the path of every new token).

``until`` (wall clock) is the token's ``exp + leeway``, ``retire`` (monotonic) the end of the
cache lifetime, ``valid_from`` (wall clock) ``nbf - leeway``: the same float operations the claim
checks do. ``max_age`` is infinite when none is set (``now - iat > inf`` never holds, whatever
``iat``; no leeway, as in the claim check). ``mono``: ``source`` reads the verifier's
monotonic clock, so it is handed the reading. ``keyset`` is the set the token was verified with:
while the source still serves this very set, the key is known to be in it; after a refetch,
``still_verifies`` decides, with the thumbprint asked of this set (a ``KeySet`` never changes).
"""
_COST: Final = 11


class TokenCache:
    """Verified tokens, each with the deadline and key it was verified under.

    At most ``maxsize`` tokens whose estimated memory (``entry_cost``) adds up to at most
    ``maxbytes``; the oldest go first. ``clock`` and ``monotonic`` are the verifier's clocks,
    read only when a lookup finds the token (a miss costs one dictionary lookup).
    """

    def __init__(
        self,
        maxsize: int,
        maxbytes: int,
        ttl: float,
        leeway: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        if ttl <= 0:
            raise ValueError("the token cache needs a positive lifetime")
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.holds = self._entries.__contains__
        """Whether ``token`` is held (expired or not): one dictionary lookup, for a caller that
        skips :meth:`get` (and reading the clocks) on a miss."""
        self._lock = threading.Lock()
        self.maxsize, self.maxbytes = maxsize, maxbytes
        self.bytes = 0  # the estimated memory of the entries held
        self.ttl, self.leeway = ttl, leeway
        self.clock, self.monotonic = clock, monotonic
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # A forked child: another thread of the parent may have held the lock at the fork.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def put(
        self,
        token: str,
        claims: Claims,
        scopes: frozenset[str],
        state: IssuerState,
        kid: str | None,
        alg: str,
        keyset: KeySet,
        times: tuple[float, float, float],
        raw_payload: bytes,
        members: int | None,
        now: float,
    ) -> None:
        """Remember a token just verified at ``now`` (wall clock) with ``keyset``.

        ``scopes``: those of ``claims``; ``times``: its ``exp``, ``nbf`` and ``iat`` as the claim
        checks read them (infinite, minus infinite and NaN when absent); ``raw_payload``: its
        JSON text; ``members``: see :func:`entry_cost`.
        """
        exp, nbf, iat = times
        leeway = self.leeway
        until = exp + leeway
        if now >= until:  # (the claim checks refused such a token already)
            return
        cost = entry_cost(token, raw_payload, scopes, members)
        if cost > self.maxbytes:
            return  # larger than the whole budget: verified every time instead
        max_age = state.rules.max_age
        entry: _Entry = (
            claims,
            until,
            self.monotonic() + self.ttl,
            nbf - leeway,
            iat,
            _INF if max_age is None else max_age,
            state.source,
            state.same_clock,
            keyset,
            kid,
            alg,
            cost,
        )
        entries = self._entries
        lock = self._lock
        lock.acquire()  # not `with`: half the cost, on the path of every new token
        try:
            # Held already only when another thread verified the same token meanwhile: then
            # its entry, as good as this one, stays (one dictionary operation either way).
            if entries.setdefault(token, entry) is entry:
                total = self.bytes + cost
                while len(entries) > self.maxsize:  # once at most: one entry per put
                    total -= entries.popitem(False)[1][_COST]  # the oldest (last=False)
                while total > self.maxbytes:  # never this entry: cost <= maxbytes
                    total -= entries.popitem(False)[1][_COST]
                self.bytes = total
        finally:
            lock.release()

    def get(
        self, token: str, now: float | None = None, monotonic: float | None = None
    ) -> Claims | None:
        """The claims of ``token`` if it may be answered from the cache at ``now`` (wall clock;
        ``monotonic``: the same moment on the monotonic clock; each read from the clocks given
        at construction when left out, and only if the token is held).

        Raises ``NotYetValid`` or ``TokenTooOld`` when a time-based claim refuses it now.
        """
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now is None:
            now = self.clock()
        if monotonic is None:
            monotonic = self.monotonic()
        claims, until, retire, valid_from, iat, max_age, source, mono, then, kid, alg, cost = entry
        if now >= until or monotonic >= retire:  # past exp or the lifetime
            self._drop(token, entry)
            return None
        keyset = source.current(monotonic if mono else None)
        if keyset is not then:
            if keyset is None or not keyset.still_verifies(
                kid, alg, then.fingerprint_for(kid, alg)
            ):
                self._drop(token, entry)
                return None
            # A refetch kept the key: remember the new set, so the next hit need not look.
            new = claims, until, retire, valid_from, iat, max_age, source, mono, keyset
            self._replace(token, entry, (*new, kid, alg, cost))
        if now < valid_from:
            raise NotYetValid("token not valid yet (cached)")
        if now - iat > max_age:
            raise TokenTooOld("token too old (cached)")
        return claims

    def costs(self) -> list[int]:
        """The estimated memory (``entry_cost``) of each entry, oldest first."""
        return [entry[_COST] for entry in self._entries.values()]

    def _replace(self, token: str, entry: _Entry, new: _Entry) -> None:
        with self._lock:
            if self._entries.get(token) is entry:  # still there: same place, same cost
                self._entries[token] = new

    def _drop(self, token: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(token) is entry:  # not a newer entry put meanwhile
                del self._entries[token]
                self.bytes -= entry[_COST]
