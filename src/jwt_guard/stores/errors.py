"""The errors of the stores layer, in the one exception tree of :mod:`jwt_guard.errors`.

Each carries its HTTP meaning as class data, like every ``JWTGuardError``::

    JWTGuardError
    └── StoreUnavailable          503 (a check that must fail closed could not be made)
        └── StoreFull                 a bounded store has no room for an entry it must keep

``str(exc)`` holds the detail (which store, what failed); the response carries only the fixed
``description`` and a ``Retry-After``.
"""

from __future__ import annotations

from ..errors import JWTGuardError

__all__ = ["StoreFull", "StoreUnavailable"]


class StoreUnavailable(JWTGuardError):
    """Raised when a store cannot answer a check that fails closed (HTTP 503, ``Retry-After``).

    A DPoP replay check whose store does not answer in time, a revocation replica older than
    its ``max_staleness`` (with ``on_stale="refuse"``), a shared store's reply that is not what
    the protocol allows.
    """

    status = 503
    error = "temporarily_unavailable"
    code = "store_unavailable"
    description = "Token verification is temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreFull(StoreUnavailable):
    """Raised when a bounded store is full of live entries and dropping one would be unsafe.

    A replay store that forgot a live key would let a proof be replayed, a deny-list that forgot
    an entry would let a revoked token back in: both refuse the new entry instead.
    """

    code = "store_full"
