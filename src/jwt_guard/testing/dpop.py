"""A DPoP client for tests: a key pair that makes RFC 9449 proofs, and a client around it.

::

    from jwt_guard.testing import LocalIssuer
    from jwt_guard.testing.dpop import DPoPClient, DPoPKey

    key = DPoPKey.generate("ES256")
    with LocalIssuer() as issuer:
        token = issuer.mint(dpop_key=key)                     # a DPoP-bound access token
        proof = key.proof("GET", "https://api.example.com/me", access_token=token)
        # send: Authorization: DPoP <token>, DPoP: <proof>

        client = DPoPClient(issuer=issuer, public_url="https://api.example.com")
        token = client.mint(scopes=["read:items"])
        headers = client.headers("GET", "/items", token)      # both headers, a fresh proof

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

__all__ = ["DPoPClient", "DPoPKey"]

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


class DPoPClient:
    """A DPoP client for tests of an API: a key, tokens bound to it, and the request headers.

    ``headers(method, url, token)`` gives ``Authorization: DPoP <token>`` and a fresh ``DPoP``
    proof (a new ``jti`` each time, ``ath`` of the token); a ``url`` starting with ``/`` is
    appended to ``public_url``. Like a real client it keeps the server's nonce: hand it each
    response's headers (:meth:`remember`) and the next proofs carry the ``DPoP-Nonce`` it got.

    Parameters:
        key: the client's :class:`DPoPKey` (default: a fresh ES256 one).
        issuer: the :class:`~jwt_guard.testing.LocalIssuer` :meth:`mint` asks for tokens
            (anything with its ``mint(claims, dpop_key=..., **options)``).
        public_url: the API's public URL, as the guard's ``public_url`` says it.

    Example (the ``dpop_client`` fixture of the pytest plugin is one of these)::

        token = dpop_client.mint(scopes=["read:items"])
        response = client.get("/items", headers=dpop_client.headers("GET", "/items", token))
        if dpop_client.remember(response.headers):   # the server asked for a nonce: retry
            response = client.get("/items", headers=dpop_client.headers("GET", "/items", token))
    """

    def __init__(
        self,
        key: DPoPKey | None = None,
        *,
        issuer: Any = None,
        public_url: str = "https://api.example.com",
    ) -> None:
        self.key = key if key is not None else DPoPKey.generate("ES256")
        self.issuer = issuer
        self.public_url = public_url.rstrip("/")
        self.nonce: str | None = None

    def __repr__(self) -> str:
        return f"DPoPClient({self.key!r}, public_url={self.public_url!r})"

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint of the client's key (a bound token's ``cnf.jkt``)."""
        return self.key.jkt

    def mint(self, claims: Mapping[str, Any] | None = None, **options: Any) -> str:
        """A token from ``issuer`` bound to this client's key (``LocalIssuer.mint`` keywords)."""
        if self.issuer is None:
            raise ConfigurationError("DPoPClient(issuer=...) is needed to mint tokens")
        token: str = self.issuer.mint(claims, dpop_key=self.key, **options)
        return token

    def url(self, url: str) -> str:
        """``url``, or ``public_url`` + ``url`` for a path."""
        return self.public_url + url if url.startswith("/") else url

    def proof(self, method: str, url: str, token: str | None = None, **options: Any) -> str:
        """A fresh proof for ``method`` and ``url`` (``DPoPKey.proof`` keywords), with the
        remembered nonce unless ``nonce=`` is given."""
        options.setdefault("nonce", self.nonce)
        return self.key.proof(method, self.url(url), access_token=token, **options)

    def headers(self, method: str, url: str, token: str, **options: Any) -> dict[str, str]:
        """``{"Authorization": "DPoP <token>", "DPoP": <a fresh proof>}`` for one request."""
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, url, token, **options)}

    def remember(self, headers: Mapping[str, str]) -> bool:
        """Keep the ``DPoP-Nonce`` of a response's headers; ``True`` if it is a new one."""
        found = next((v for k, v in headers.items() if k.lower() == "dpop-nonce"), None)
        if found is None or found == self.nonce:
            return False
        self.nonce = found
        return True


def _merge(target: dict[str, Any], changes: Mapping[str, Any] | None) -> None:
    for name, value in (changes or {}).items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
