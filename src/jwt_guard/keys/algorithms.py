"""Signing algorithms: name -> key family, curve, hash and the python-jose ``Key`` class.

This is the only module that imports python-jose. Every algorithm goes through the python-jose
``Key`` interface (``verify(msg, sig) -> bool``, ``sign(msg) -> bytes``): the ones python-jose
ships (HS*, RS*, ES256/384/512) through thin subclasses of its ``cryptography`` backend classes that
keep the per-call work minimal, and the ones it lacks (PS*, ES256K, EdDSA and the RFC 9864 names
Ed25519 and Ed448) through new subclasses of its ``Key``. Keys are built once from ``cryptography``
key objects (see :mod:`jwt_guard.keys.jwk`), never from raw JWK dicts per call.

Nothing is registered in python-jose's process-wide algorithm registry (``jose.jwk.register_key``):
other code in the same process keeps python-jose exactly as it ships. Only python-jose's
``cryptography`` backend is imported, never its pure-Python fallbacks (``ecdsa``, ``rsa``,
``pyasn1``).
"""

from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

try:
    from jose.backends.base import Key as JoseKey
    from jose.backends.cryptography_backend import (
        CryptographyECKey,
        CryptographyHMACKey,
        CryptographyRSAKey,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jwt_guard needs python-jose with its cryptography backend: "
        "pip install 'python-jose[cryptography]>=3.5'"
    ) from exc

__all__ = [
    "ALGORITHMS",
    "EC_CURVES",
    "AlgorithmSpec",
    "ECCurve",
    "EdDSAKey",
    "PSSKey",
    "SECP256K1Key",
    "make_key",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


@dataclass(frozen=True)
class ECCurve:
    """One elliptic curve of JWK ``kty: EC``: its JWK ``crv`` name, ``cryptography`` class and
    coordinate size in bytes."""

    name: str
    curve: type[ec.EllipticCurve]
    size: int


EC_CURVES: dict[str, ECCurve] = {
    c.name: c
    for c in (
        ECCurve("P-256", ec.SECP256R1, 32),
        ECCurve("P-384", ec.SECP384R1, 48),
        ECCurve("P-521", ec.SECP521R1, 66),
        ECCurve("secp256k1", ec.SECP256K1, 32),
    )
}
"""The EC curves jwt_guard knows, by JWK ``crv`` name (RFC 7518 6.2.1.1, RFC 8812)."""


class _HMACKey(CryptographyHMACKey):  # type: ignore[misc]
    """HS256/384/512 over a prebuilt secret; constant-time comparison."""

    def __init__(self, key: bytes, algorithm: str) -> None:
        super().__init__(key, algorithm)
        self._digest = self._hash_alg.name

    def verify(self, msg: bytes, sig: bytes) -> bool:
        expected = _hmac.digest(self.prepared_key, msg, self._digest)
        return _hmac.compare_digest(expected, sig)

    def sign(self, msg: bytes) -> bytes:
        return _hmac.digest(self.prepared_key, msg, self._digest)


class _RSAKey(CryptographyRSAKey):  # type: ignore[misc]
    """RS256/384/512 (PKCS#1 v1.5) over a prebuilt ``cryptography`` key."""

    def __init__(self, key: Any, algorithm: str) -> None:
        super().__init__(key, algorithm)
        self._hash = self.hash_alg()
        self._padding = self._make_padding()
        pk = self.prepared_key
        self._public = pk if isinstance(pk, rsa.RSAPublicKey) else pk.public_key()

    def _make_padding(self) -> padding.AsymmetricPadding:
        return padding.PKCS1v15()

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._public.verify(sig, msg, self._padding, self._hash)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def sign(self, msg: bytes) -> bytes:
        return cast(bytes, self.prepared_key.sign(msg, self._padding, self._hash))


class PSSKey(_RSAKey):
    """PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt = hash length), RFC 7518 3.5."""

    def __init__(self, key: Any, algorithm: str) -> None:
        # CryptographyRSAKey only knows RS*; hand it the RS alg of the same hash, then fix up.
        super().__init__(key, "RS" + algorithm[2:])
        self._algorithm = algorithm

    def _make_padding(self) -> padding.AsymmetricPadding:
        return padding.PSS(mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size)


class _ECKey(CryptographyECKey):  # type: ignore[misc]
    """ES256/384/512 over a prebuilt key; raw R||S signatures of the exact length only."""

    def __init__(self, key: Any, algorithm: str) -> None:
        super().__init__(key, algorithm)
        self._setup()

    def _setup(self) -> None:
        pk = self.prepared_key
        self._public = pk if isinstance(pk, ec.EllipticCurvePublicKey) else pk.public_key()
        self._size = (self._public.curve.key_size + 7) // 8
        self._ecdsa = ec.ECDSA(self.hash_alg())

    def verify(self, msg: bytes, sig: bytes) -> bool:
        size = self._size
        if len(sig) != 2 * size:
            return False
        r = int.from_bytes(sig[:size], "big")
        s = int.from_bytes(sig[size:], "big")
        if r == 0 or s == 0:
            return False
        try:
            self._public.verify(encode_dss_signature(r, s), msg, self._ecdsa)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def sign(self, msg: bytes) -> bytes:
        r, s = decode_dss_signature(self.prepared_key.sign(msg, self._ecdsa))
        return r.to_bytes(self._size, "big") + s.to_bytes(self._size, "big")


class SECP256K1Key(_ECKey):
    """ES256K: ECDSA over secp256k1 with SHA-256 (RFC 8812)."""

    def __init__(self, key: Any, algorithm: str) -> None:
        # CryptographyECKey rejects algorithms it does not know; set up the same state directly.
        self._algorithm = algorithm
        self.hash_alg = hashes.SHA256
        self.cryptography_backend = None
        self.prepared_key = key
        self._setup()


class EdDSAKey(JoseKey):  # type: ignore[misc]
    """EdDSA over Ed25519 or Ed448 (RFC 8037; also under the RFC 9864 names Ed25519, Ed448)."""

    def __init__(self, key: Any, algorithm: str) -> None:
        self._algorithm = algorithm
        self.prepared_key = key
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            self._public: Any = key.public_key()
        else:
            self._public = key

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._public.verify(sig, msg)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def sign(self, msg: bytes) -> bytes:
        return cast(bytes, self.prepared_key.sign(msg))

    def public_key(self) -> EdDSAKey:
        return EdDSAKey(self._public, self._algorithm)


@dataclass(frozen=True)
class AlgorithmSpec:
    """What a JWS ``alg`` needs of a key: its ``kty``, allowed curves, and the Key class."""

    name: str
    kty: str
    curves: frozenset[str]
    key_class: type[Any]


def _spec(name: str, kty: str, key_class: type[Any], *curves: str) -> AlgorithmSpec:
    return AlgorithmSpec(name, kty, frozenset(curves), key_class)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        *(_spec(f"HS{n}", "oct", _HMACKey) for n in _HASHES),
        *(_spec(f"RS{n}", "RSA", _RSAKey) for n in _HASHES),
        *(_spec(f"PS{n}", "RSA", PSSKey) for n in _HASHES),
        _spec("ES256", "EC", _ECKey, "P-256"),
        _spec("ES384", "EC", _ECKey, "P-384"),
        _spec("ES512", "EC", _ECKey, "P-521"),
        _spec("ES256K", "EC", SECP256K1Key, "secp256k1"),
        _spec("EdDSA", "OKP", EdDSAKey, "Ed25519", "Ed448"),
        _spec("Ed25519", "OKP", EdDSAKey, "Ed25519"),  # RFC 9864 fully specified names
        _spec("Ed448", "OKP", EdDSAKey, "Ed448"),
    )
}
"""Every algorithm jwt_guard verifies, by JWS ``alg`` name."""


def make_key(algorithm: str, key: Any) -> Any:
    """Build the python-jose Key for ``algorithm`` around a ``cryptography`` key or HMAC secret."""
    return ALGORITHMS[algorithm].key_class(key, algorithm)
