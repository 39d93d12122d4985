"""The verified-token cache: a repeated token answers without parsing or cryptography.

Bounded (a cachetools ``FIFOCache``), keyed on the exact token. An entry never outlives the token's
``exp`` (plus leeway, on the wall clock) nor the cache lifetime (on the monotonic clock, so a step
of the wall clock cannot stretch it), and answers only while the key source still holds
the key that verified it (compared by RFC 7638 thumbprint, so a refetch that keeps the key keeps
the entry); ``nbf`` and the maximum age are re-checked on every use. Reads take no lock (a FIFO
read only looks the key up); writes do.
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import FIFOCache

from ._issuers import IssuerState
from ._singleflight import reset_after_fork
from .claims import Claims
from .errors import NotYetValid, TokenTooOld
from .keys import KeySet

__all__ = ["TokenCache"]


class _Entry:
    __slots__ = (
        "alg",
        "claims",
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
        max_age = state.rules.max_age
        self.max_age = None if max_age is None else max_age + leeway


def _float(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) else default


class TokenCache:
    """Verified tokens, each with the deadline and key it was verified under."""

    def __init__(self, maxsize: int, ttl: float, leeway: float) -> None:
        self._entries: FIFOCache[str, _Entry] = FIFOCache(maxsize=maxsize)
        self._lock = threading.Lock()
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
        now: float,
        monotonic: float,
    ) -> None:
        """Remember a token just verified at ``now`` (wall clock; ``monotonic`` the same moment)."""
        entry = _Entry(claims, state, kid, alg, keyset, payload, self.leeway, monotonic + self.ttl)
        if now < entry.until and self.ttl > 0:
            with self._lock:
                self._entries[token] = entry

    def get(self, token: str, now: float, monotonic: float) -> Claims | None:
        """The claims of ``token`` if it may be answered from the cache at ``now`` (wall clock;
        ``monotonic``: the same moment on the monotonic clock).

        Raises ``NotYetValid`` or ``TokenTooOld`` when a time-based claim refuses it now.
        """
        try:
            entry = self._entries[token]
        except KeyError:
            return None
        if now >= entry.until or monotonic >= entry.retire_at:  # past exp or the lifetime
            self._drop(token)
            return None
        keyset = entry.source.current(monotonic if entry.state.same_clock else None)
        if keyset is not entry.keyset:
            if keyset is None or not keyset.still_verifies(entry.kid, entry.alg, entry.fingerprint):
                self._drop(token)
                return None
            entry.keyset = keyset  # a refetch kept the key: no need to look it up again
        if now < entry.valid_from:
            raise NotYetValid("token not valid yet (cached)")
        if entry.max_age is not None and now - entry.iat > entry.max_age:
            raise TokenTooOld("token too old (cached)")
        return entry.claims

    def _drop(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)
