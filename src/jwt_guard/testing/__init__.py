"""Test support: a real local token issuer with a JWKS + discovery server on 127.0.0.1.

::

    from jwt_guard.testing import JWKSFault, LocalIssuer

    with LocalIssuer(algorithms=("RS256", "EdDSA")) as issuer:
        token = issuer.mint(scopes=["read"])          # iss=issuer.issuer, aud=issuer.audience
        ...                                           # point a verifier at issuer.jwks_url
        issuer.set_fault(JWKSFault.ERROR_500)         # and watch it cope (or "error_500")

``ManualClock`` is time a test moves by hand: the verifier's ``clock`` and the websocket
watcher's ``sleep`` (``JWTGuard(websocket_sleep=clock.sleep)``), so a test decides when a
connection's token expires.

It needs only the standard library, ``cryptography`` and jwt_guard's token core (no web framework).
DPoP clients for tests (``DPoPKey``, ``DPoPClient``) are in :mod:`jwt_guard.testing.dpop`.
"""

from __future__ import annotations

from ._clock import ManualClock
from ._faults import JWKSFault
from ._issuer import IssuerSnapshot, LocalIssuer
from ._keys import SigningKey, generate_key

__all__ = [
    "IssuerSnapshot",
    "JWKSFault",
    "LocalIssuer",
    "ManualClock",
    "SigningKey",
    "generate_key",
]
