"""The store protocols: what the verifier, DPoP and the JWKS client ask of shared state.

Each use has its own answer to "the shared backend does not answer", chosen for what a wrong
answer would cost:

============================  ===============================  ====================================
protocol                      request path                     when the backend fails
============================  ===============================  ====================================
:class:`RevocationStore`      ``is_revoked``: a lookup in a    keeps answering from the replica for
                              local replica, no I/O            ``max_staleness`` seconds, then
                                                               refuses (``StoreUnavailable``, 503;
                                                               the default) or keeps answering from
                                                               the replica (``on_stale="accept"``)
:class:`ReplayStore`          ``first_use``: one atomic        fails closed: ``StoreUnavailable``
                              operation                        (503 with ``Retry-After``)
:class:`KeySetStore`          not on it: refresh and           ``get`` answers ``None`` and ``put``
                              cold start only                  ``False``; the caller fetches the
                                                               JWKS itself. ``try_lock``/``unlock``
                                                               raise ``StoreUnavailable``
============================  ===============================  ====================================

Times: ``until``, ``issued_before``, ``iat`` and ``fetched_at`` are wall-clock seconds since the
epoch (the scale of ``exp``); ``ttl`` and ``max_staleness`` are durations in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["KeySetStore", "ReplayStore", "Revocation", "RevocationStore", "StoredKeySet"]


@dataclass(frozen=True)
class Revocation:
    """One entry of the deny-list.

    Attributes:
        kind: ``"jti"`` (one token, by its ``jti``) or ``"sub"`` (every token of a subject
            issued before ``issued_before``).
        value: the ``jti`` or the ``sub``.
        until: when the entry lapses (epoch seconds): for a ``jti``, the token's ``exp``; for a
            subject, the ``exp`` of the longest-lived token it may hold.
        issued_before: for ``"sub"``: tokens with an ``iat`` before this (or without ``iat``) are
            revoked; ``None`` for ``"jti"``.
    """

    kind: Literal["jti", "sub"]
    value: str
    until: float
    issued_before: float | None = None


@dataclass(frozen=True)
class StoredKeySet:
    """A key set as a store gives it back: authenticated, parsed, not yet trusted as keys.

    ``document`` is the JWKS JSON object exactly as it was stored; the caller still builds its
    keys through every key check (``KeySet.from_jwks``), like a document fetched from the wire.
    """

    issuer: str
    document: dict[str, Any]
    fetched_at: float
    lifetime: float


class RevocationStore(Protocol):
    """A deny-list of tokens, shared by every worker that uses the same store.

    Writes (``revoke`` ...) go to the store; ``is_revoked`` reads a local replica and does no
    I/O, so it can sit on the cached-token path of every request.
    """

    def revoke(self, jti: str, until: float) -> None:
        """Refuse the token with this ``jti`` until ``until`` (its ``exp``)."""
        ...

    def revoke_subject(self, sub: str, issued_before: float, until: float) -> None:
        """Refuse every token of ``sub`` issued before ``issued_before``, until ``until``."""
        ...

    def unrevoke(self, jti: str) -> bool:
        """Drop the entry for ``jti``; ``True`` if there was one."""
        ...

    def unrevoke_subject(self, sub: str) -> bool:
        """Drop the entry for ``sub``; ``True`` if there was one."""
        ...

    def list(self) -> tuple[Revocation, ...]:
        """The entries in force, read from the store itself (not the replica)."""
        ...

    def is_revoked(self, jti: str | None, sub: str | None, iat: float | None) -> bool:
        """Whether the local replica refuses a token with these claims (no I/O).

        Raises ``StoreUnavailable`` when the replica is older than its bound and the store was
        configured to refuse then.
        """
        ...

    def staleness(self) -> float:
        """Seconds since the replica last agreed with the store (``inf`` before the first)."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for health endpoints and logs."""
        ...

    def close(self) -> None:
        """Stop background work and drop connections."""
        ...


class ReplayStore(Protocol):
    """First use of a key within a time window, atomically across everything sharing the store.

    ``first_use`` answers ``True`` the first time ``key`` is seen within ``ttl`` seconds and
    ``False`` for every later call until it expires. A store that cannot answer raises
    ``StoreUnavailable``: a replay check fails closed.
    """

    def first_use(self, key: str, ttl: float) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl`` seconds, else ``False``."""
        ...

    async def afirst_use(self, key: str, ttl: float) -> bool:
        """:meth:`first_use` for async code (never blocks the event loop)."""
        ...


class KeySetStore(Protocol):
    """The last good JWKS document per issuer, shared by a fleet, and short fetch locks.

    The store is a trust boundary: whoever can write it must not be able to inject keys. Stored
    documents are authenticated with a secret the operator gives every worker; without one,
    ``enabled`` is ``False``, ``get`` answers ``None`` and ``put`` stores nothing.
    """

    @property
    def enabled(self) -> bool:
        """Whether key sets are shared (a secret is configured)."""
        ...

    def get(self, issuer: str) -> StoredKeySet | None:
        """The stored key set of ``issuer`` if there is an authentic, fresh one, else ``None``."""
        ...

    def put(
        self, issuer: str, document: Mapping[str, Any], fetched_at: float, lifetime: float
    ) -> bool:
        """Store ``document`` (a JWKS just fetched for ``issuer``); ``True`` if it was stored."""
        ...

    def try_lock(self, name: str, ttl: float) -> str | None:
        """A token if the lock ``name`` was free (it expires after ``ttl``), else ``None``."""
        ...

    def unlock(self, name: str, token: str) -> bool:
        """Release ``name`` if ``token`` still holds it; ``True`` if it did."""
        ...
