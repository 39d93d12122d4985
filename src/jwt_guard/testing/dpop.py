"""A DPoP client for tests: a key pair that makes RFC 9449 proofs.

::

    from jwt_guard.testing import LocalIssuer
    from jwt_guard.testing.dpop import DPoPKey

    key = DPoPKey.generate("ES256")
    with LocalIssuer() as issuer:
        token = issuer.mint(claims={"cnf": key.cnf})          # a DPoP-bound access token
        proof = key.proof("GET", "https://api.example.com/me", access_token=token)
        # send: Authorization: DPoP <token>, DPoP: <proof>

Proofs are signed through the same primitives jwt_guard verifies with; the test suite also
checks them against an independent implementation (PyJWT).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from jwt_guard.binding.dpop import access_token_hash, jwk_thumbprint
from jwt_guard.errors import ConfigurationError

from ._keys import SigningKey, compact_jws, generate_key

__all__ = ["DPoPKey"]

_NOT_KEY_PARAMS = ("kid", "alg", "use", "key_ops")


class DPoPKey:
    """A client's DPoP key pair: makes proofs, and names itself by its ``jkt`` thumbprint.

    Build one with :meth:`generate` (``"ES256"``, ``"EdDSA"``, ``"RS256"``, ``"PS256"``...), or
    around a :class:`~jwt_guard.testing.SigningKey`. ``jwk`` is the public JWK put into each
    proof (key parameters only), ``jkt`` its RFC 7638 thumbprint and ``cnf`` the claim that binds
    an access token to it (``issuer.mint(claims={"cnf": key.cnf})``). ``clock`` gives each
    proof's default ``iat``.
    """

    __slots__ = ("_clock", "_jwk", "jkt", "signing_key")

    def __init__(self, signing_key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        if signing_key.kty == "oct":
            raise ConfigurationError("a DPoP key is asymmetric; HMAC keys cannot make proofs")
        self.signing_key = signing_key
        self._clock = clock
        public = signing_key.public_jwk()
        self._jwk = {k: v for k, v in public.items() if k not in _NOT_KEY_PARAMS}
        self.jkt = jwk_thumbprint(self._jwk)

    @classmethod
    def generate(
        cls, alg: str = "ES256", *, clock: Callable[[], float] = time.time, **options: Any
    ) -> DPoPKey:
        """A fresh key for ``alg`` (``options`` as :func:`~jwt_guard.testing.generate_key`)."""
        return cls(generate_key(alg, **options), clock=clock)

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    @property
    def alg(self) -> str:
        """The proof signing algorithm."""
        return self.signing_key.alg

    @property
    def jwk(self) -> dict[str, Any]:
        """The public JWK that goes into each proof's header (a fresh dict)."""
        return dict(self._jwk)

    @property
    def cnf(self) -> dict[str, str]:
        """The ``cnf`` claim of an access token bound to this key: ``{"jkt": ...}``."""
        return {"jkt": self.jkt}

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A DPoP proof for one request: ``htm`` = ``method``, ``htu`` = ``url``.

        ``ath`` is added for ``access_token``, ``nonce`` when given; ``iat`` defaults to the
        clock (whole seconds) and ``jti`` to 128 random bits. ``claims`` and ``header`` change
        or add members after that (a ``None`` value removes one), to build odd proofs in tests.
        """
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        payload: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16) if jti is None else jti,
            "htm": method,
            "htu": url,
            "iat": int(self._clock()) if iat is None else iat,
        }
        if access_token is not None:
            payload["ath"] = access_token_hash(access_token)
        if nonce is not None:
            payload["nonce"] = nonce
        _merge(head, header)
        _merge(payload, claims)
        return compact_jws(head, payload, self.signing_key)


def _merge(target: dict[str, Any], changes: Mapping[str, Any] | None) -> None:
    for name, value in (changes or {}).items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
