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
from typing import Any

from ..errors import NotYetValid, TokenTooOld
from ..keys.jwk import KeySet
from ..sources._singleflight import reset_after_fork
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


def entry_cost(token: str, payload: bytes, scopes: frozenset[str]) -> int:
    """An upper bound of the memory a cache entry for ``token`` holds, in bytes.

    Counts what the JSON parser turns into objects: brackets become containers (``{}`` and
    ``[]`` none: they are shared), commas separate the items in them. Bytes inside strings
    count too, so this errs high, never low. A few ``bytes.count`` calls: cheap next to the
    signature check that precedes it.
    """
    count = payload.count
    return (
        _FIXED
        + _PER_TOKEN_CHAR * len(token)
        + _PER_PAYLOAD_BYTE * len(payload)
        + _PER_OBJECT * (count(b"{") - count(b"{}"))
        + _PER_ARRAY * (count(b"[") - count(b"[]"))
        + _PER_ITEM * count(b",")
        + sys.getsizeof(scopes)
        + _PER_SCOPE * len(scopes)
    )


class _Entry:
    __slots__ = (
        "alg",
        "claims",
        "cost",
        "exp",
        "fingerprint",
        "iat",
        "keyset",
        "kid",
        "max_age",
        "nbf",
        "retire_at",
        "source",
        "state",
        "until",
        "valid_from",
    )

    def __init__(
        self,
        claims: Claims,
        state: IssuerState,
        kid: str | None,
        alg: str,
        keyset: KeySet,
        payload: dict[str, Any],
        leeway: float,
        retire_at: float,
    ) -> None:
        self.claims, self.state, self.source = claims, state, state.source
        self.kid, self.alg = kid, alg
        # The key set the token was verified with: while the source still serves this very
        # set, the key is known to be in it; after a refetch, still_verifies() decides.
        self.keyset, self.fingerprint = keyset, keyset.fingerprint_for(kid, alg)
        self.exp = _float(payload.get("exp"), float("inf"))
        self.nbf = _float(payload.get("nbf"), float("-inf"))
        self.iat = _float(payload.get("iat"), float("nan"))
        # The bounds the time checks compare with, computed once (the same float operations).
        # Served until `until` (wall clock: the token's exp + leeway) and `retire_at`
        # (monotonic: the cache lifetime), never later.
        self.until = self.exp + leeway
        self.retire_at = retire_at
        self.valid_from = self.nbf - leeway
        self.max_age = state.rules.max_age  # no leeway: validate_claims adds none either
        self.cost = 0


def _float(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) else default


class TokenCache:
    """Verified tokens, each with the deadline and key it was verified under.

    At most ``maxsize`` tokens whose estimated memory (``entry_cost``) adds up to at most
    ``maxbytes``; the oldest go first.
    """

    def __init__(self, maxsize: int, maxbytes: int, ttl: float, leeway: float) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize, self.maxbytes = maxsize, maxbytes
        self.bytes = 0  # the estimated memory of the entries held
        self.ttl, self.leeway = ttl, leeway
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
        state: IssuerState,
        kid: str | None,
        alg: str,
        keyset: KeySet,
        payload: dict[str, Any],
        raw_payload: bytes,
        now: float,
        monotonic: float,
    ) -> None:
        """Remember a token just verified at ``now`` (wall clock; ``monotonic`` the same moment;
        ``raw_payload``: its JSON text)."""
        entry = _Entry(claims, state, kid, alg, keyset, payload, self.leeway, monotonic + self.ttl)
        if now >= entry.until or self.ttl <= 0:
            return
        entry.cost = entry_cost(token, raw_payload, claims.scopes)
        if entry.cost > self.maxbytes:
            return  # larger than the whole budget: verified every time instead
        entries = self._entries
        with self._lock:
            old = entries.pop(token, None)
            if old is not None:
                self.bytes -= old.cost
            entries[token] = entry
            self.bytes += entry.cost
            while len(entries) > self.maxsize or self.bytes > self.maxbytes:
                self.bytes -= entries.popitem(last=False)[1].cost

    def get(self, token: str, now: float, monotonic: float) -> Claims | None:
        """The claims of ``token`` if it may be answered from the cache at ``now`` (wall clock;
        ``monotonic``: the same moment on the monotonic clock).

        Raises ``NotYetValid`` or ``TokenTooOld`` when a time-based claim refuses it now.
        """
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry.until or monotonic >= entry.retire_at:  # past exp or the lifetime
            self._drop(token, entry)
            return None
        keyset = entry.source.current(monotonic if entry.state.same_clock else None)
        if keyset is not entry.keyset:
            if keyset is None or not keyset.still_verifies(entry.kid, entry.alg, entry.fingerprint):
                self._drop(token, entry)
                return None
            entry.keyset = keyset  # a refetch kept the key: no need to look it up again
        if now < entry.valid_from:
            raise NotYetValid("token not valid yet (cached)")
        if entry.max_age is not None and now - entry.iat > entry.max_age:
            raise TokenTooOld("token too old (cached)")
        return entry.claims

    def _drop(self, token: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(token) is entry:  # not a newer entry put meanwhile
                del self._entries[token]
                self.bytes -= entry.cost
