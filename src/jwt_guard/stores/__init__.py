"""Stores: the state a fleet of workers shares, with an in-process default and Redis.

Three uses, each behind a protocol in :mod:`jwt_guard.stores.base`:

- **revocation** (:class:`~jwt_guard.stores.base.RevocationStore`): a deny-list of token ids and
  of subjects signed out before a time. The request path asks a local replica (a dictionary
  lookup, no I/O); a shared store keeps every worker's replica current.
- **replay** (:class:`~jwt_guard.stores.base.ReplayStore`): "first use of this key within ttl",
  atomically across the fleet (DPoP proof ``jti``).
- **key sets** (:class:`~jwt_guard.stores.base.KeySetStore`): the last good JWKS document per
  issuer, authenticated with a fleet secret, and short locks so one worker fetches for all.

:mod:`jwt_guard.stores.memory` holds the in-process implementations (the default, nothing to
install); :mod:`jwt_guard.stores.redis` the Redis ones (``pip install "jwt_guard[redis]"``). Each
module's docstring gives its failure policy. The errors (``StoreUnavailable``, ``StoreFull``)
are in :mod:`jwt_guard.errors`, the one exception tree.

May import: ``core`` and the foundation modules (``errors``, ``_logsafe``, ``_options``, ...).
"""
