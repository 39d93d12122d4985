"""Signing keys for the local issuer: generation, public JWKs and signing via ``make_key``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from jwt_guard._codec import b64url_encode as b64url
from jwt_guard._codec import b64url_uint
from jwt_guard.errors import ConfigurationError
from jwt_guard.keys.algorithms import ALGORITHMS, EC_CURVES, make_key
from jwt_guard.keys.jwk import thumbprint

__all__ = ["SigningKey", "b64url", "compact_jws", "generate_key"]

_EC_CURVE_NAMES = {c.curve().name: name for name, c in EC_CURVES.items()}


class SigningKey:
    """One private signing key with its ``kid`` and ``alg``, as the local issuer holds it.

    ``private_key`` is a ``cryptography`` private key object, or the secret ``bytes`` for HS*.
    ``kid=None`` names the key by its RFC 7638 thumbprint (:func:`jwt_guard.keys.jwk.thumbprint`),
    so different keys never share a kid. Signing goes through
    :func:`jwt_guard.keys.algorithms.make_key`, so tokens are signed by the same primitives
    jwt_guard verifies with.

    Example::

        key = generate_key("ES256", kid="k1")
        key.public_jwk()   # {"kty": "EC", "crv": "P-256", "x": ..., "y": ..., "kid": "k1", ...}
        sig = key.sign(b"header.payload")
    """

    __slots__ = ("_jwk", "_signer", "alg", "kid", "private_key")

    def __init__(self, kid: str | None, alg: str, private_key: Any) -> None:
        if alg not in ALGORITHMS:
            raise ConfigurationError(f"unknown algorithm {alg!r}; use one of {sorted(ALGORITHMS)}")
        self.alg = alg
        self.private_key = private_key
        self._signer: Any = make_key(alg, private_key)
        self._jwk: dict[str, Any] | None = None
        self.kid: str = kid if kid is not None else thumbprint(self._key_params())

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    @property
    def kty(self) -> str:
        """The JWK key type of this key: ``oct``, ``RSA``, ``EC`` or ``OKP``."""
        return ALGORITHMS[self.alg].kty

    def public_key(self) -> Any:
        """The ``cryptography`` public key (the secret ``bytes`` for HS*)."""
        if isinstance(self.private_key, bytes):
            return self.private_key
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """The RFC 7517 public JWK (a fresh dict); for HS* it holds the secret as ``k``."""
        if self._jwk is None:
            jwk = self._key_params()
            jwk.update(kid=self.kid, alg=self.alg, use="sig")
            self._jwk = jwk
        return dict(self._jwk)

    def _key_params(self) -> dict[str, Any]:
        key = self.private_key
        if isinstance(key, bytes):
            return {"kty": "oct", "k": b64url(key)}
        if isinstance(key, rsa.RSAPrivateKey):
            numbers = key.public_key().public_numbers()
            return {"kty": "RSA", "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}
        if isinstance(key, ec.EllipticCurvePrivateKey):
            point = key.public_key().public_numbers()
            curve = EC_CURVES[_EC_CURVE_NAMES[key.curve.name]]
            return {
                "kty": "EC",
                "crv": curve.name,
                "x": b64url_uint(point.x, curve.size),
                "y": b64url_uint(point.y, curve.size),
            }
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            crv = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return {"kty": "OKP", "crv": crv, "x": b64url(raw)}
        raise TypeError(f"unsupported key type {type(key).__name__}")

    def sign(self, signing_input: bytes) -> bytes:
        """Sign ``signing_input`` (``b64(header) + b"." + b64(payload)``) with this key."""
        return bytes(self._signer.sign(signing_input))


def generate_key(
    alg: str, kid: str | None = None, *, rsa_bits: int = 2048, curve: str | None = None
) -> SigningKey:
    """Generate a fresh :class:`SigningKey` for ``alg``, any name in ``ALGORITHMS``.

    HS* get a random secret as long as the hash; RS*/PS* an RSA key of ``rsa_bits``;
    ES* their RFC 7518 curve; EdDSA Ed25519, or Ed448 with ``curve="Ed448"``; the RFC 9864
    names Ed25519 and Ed448 their own curve. ``kid`` defaults to the key's RFC 7638 thumbprint,
    so a regenerated key always has a new kid (and a verifier that cached the old key set
    refetches instead of failing on the old key).
    """
    spec = ALGORITHMS.get(alg)
    if spec is None:
        raise ConfigurationError(f"unknown algorithm {alg!r}; use one of {sorted(ALGORITHMS)}")
    if curve is not None and curve not in spec.curves:
        raise ConfigurationError(
            f"curve {curve!r} does not fit {alg}; use one of {sorted(spec.curves) or 'none'}"
        )
    if curve is None:  # the algorithm's own curve; EdDSA's first is Ed25519
        curve = "Ed25519" if alg == "EdDSA" else next(iter(spec.curves), None)
    private_key: Any
    if spec.kty == "oct":
        private_key = secrets.token_bytes(int(alg[2:]) // 8)
    elif spec.kty == "RSA":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    elif spec.kty == "EC":
        private_key = ec.generate_private_key(EC_CURVES[str(curve)].curve())
    elif curve == "Ed448":
        private_key = ed448.Ed448PrivateKey.generate()
    else:
        private_key = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid or None, alg, private_key)


def _bytes(part: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    return json.dumps(dict(part), separators=(",", ":")).encode()


def compact_jws(
    header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes | str, key: SigningKey
) -> str:
    """``b64(header).b64(payload).b64(signature)``: mappings as compact JSON, bytes as given."""
    signing_input = f"{b64url(_bytes(header))}.{b64url(_bytes(payload))}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"
