"""The key file of the ``jwt-guard`` command: a local issuer's private keys, kept as JSON.

A new process generates new keys, so ``jwt-guard issuer`` and ``jwt-guard mint`` share their keys
through a file::

    {"issuer": "http://127.0.0.1:8765", "audience": "https://api.example.test",
     "keys": [{"kty": "RSA", "kid": "Hx3u...", "alg": "RS256", "n": ..., "d": ..., ...}]}

``keys`` are private JWKs (RFC 7517/7518/8037). A new file names each key by its RFC 7638
thumbprint, so regenerated keys never reuse a kid (a verifier that cached the old set then
refetches instead of failing on the old key); a ``kid`` edited into the file is kept, and a key
without one gets its thumbprint. The file holds secrets: it is written with mode 0600 and is
meant for local testing only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .._codec import b64url_decode, b64url_encode, b64url_uint
from ..errors import ConfigurationError
from ..keys.algorithms import ALGORITHMS, EC_CURVES
from ..testing import SigningKey, generate_key

__all__ = ["KeyFile", "private_jwk", "signing_key"]


def _int(jwk: Mapping[str, Any], name: str) -> int:
    return int.from_bytes(_bytes(jwk, name), "big")


def _bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"member {name!r} is missing")
    return b64url_decode(value)


def private_jwk(key: SigningKey) -> dict[str, Any]:
    """The private JWK of ``key``: its public JWK plus the private members."""
    jwk = key.public_jwk()
    private = key.private_key
    if isinstance(private, rsa.RSAPrivateKey):
        nums = private.private_numbers()
        jwk.update(
            d=b64url_uint(nums.d),
            p=b64url_uint(nums.p),
            q=b64url_uint(nums.q),
            dp=b64url_uint(nums.dmp1),
            dq=b64url_uint(nums.dmq1),
            qi=b64url_uint(nums.iqmp),
        )
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        jwk["d"] = b64url_uint(private.private_numbers().private_value, size)
    elif isinstance(private, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raw = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        jwk["d"] = b64url_encode(raw)
    return jwk  # oct: the public JWK already holds the secret as "k"


def _rsa_private_key(jwk: Mapping[str, Any], name: str) -> rsa.RSAPrivateKey:
    """The RSA key of a private JWK whose members fit together.

    The members are checked here with integer arithmetic (``n = pq``, the CRT exponents and
    coefficient, ``ed = 1`` modulo ``p - 1`` and ``q - 1``), not by OpenSSL, whose check also
    tests ``p`` and ``q`` for primality: 40 ms, which every ``mint``/``verify --key-file``
    paid, for files this command wrote from keys it generated.
    """
    e, n, d, p, q = (_int(jwk, m) for m in ("e", "n", "d", "p", "q"))
    dp, dq, qi = _int(jwk, "dp"), _int(jwk, "dq"), _int(jwk, "qi")
    if not (
        p > 2
        and q > 2
        and e > 2
        and p * q == n
        and (e * d) % (p - 1) == 1
        and (e * d) % (q - 1) == 1
        and dp == d % (p - 1)
        and dq == d % (q - 1)
        and (qi * q) % p == 1
    ):
        raise ValueError(f"key {name!r}: its RSA members do not fit together")
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def signing_key(jwk: Mapping[str, Any]) -> SigningKey:
    """A :class:`SigningKey` from a private JWK with ``alg`` (and ``kid``, else its thumbprint);
    ``ValueError`` if bad."""
    kid, alg, kty = jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise ValueError("every key needs a string 'alg' (and 'kid', if it has one)")
    private: Any
    if kty == "oct":
        private = _bytes(jwk, "k")
    elif kty == "RSA":
        private = _rsa_private_key(jwk, kid or alg)
    elif kty == "EC" and jwk.get("crv") in EC_CURVES:
        private = ec.derive_private_key(_int(jwk, "d"), EC_CURVES[jwk["crv"]].curve())
    elif kty == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448"):
        okp = ed25519.Ed25519PrivateKey if jwk["crv"] == "Ed25519" else ed448.Ed448PrivateKey
        private = okp.from_private_bytes(_bytes(jwk, "d"))
    else:
        raise ValueError(f"key {kid or alg!r}: unsupported kty/crv {kty!r}/{jwk.get('crv')!r}")
    try:
        return SigningKey(kid, alg, private)
    except ConfigurationError as exc:
        raise ValueError(f"key {kid or alg!r}: {exc}") from exc


@dataclass
class KeyFile:
    """A persisted local issuer: its ``iss``, default audience and private signing keys."""

    issuer: str
    audience: str
    keys: list[SigningKey]

    @classmethod
    def create(cls, issuer: str, audience: str, algorithms: Sequence[str]) -> KeyFile:
        """Fresh keys, one per algorithm, each named by its RFC 7638 thumbprint."""
        for alg in algorithms:  # a name that is no algorithm fails before any key is made
            if alg not in ALGORITHMS:
                raise ConfigurationError(
                    f"unknown algorithm {alg!r}; use one of {sorted(ALGORITHMS)}"
                )
        keys = [generate_key(alg) for alg in dict.fromkeys(algorithms)]
        return cls(issuer, audience, keys)

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        """Read a key file; ``ConfigurationError`` with a one-line reason if it is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError("not a jwt-guard key file (no 'keys' list)")
            issuer, audience = data.get("issuer"), data.get("audience")
            if not isinstance(issuer, str) or not isinstance(audience, str):
                raise ValueError("'issuer' and 'audience' must be strings")
            keys = [signing_key(jwk) for jwk in data["keys"]]
            if not keys:
                raise ValueError("the key file holds no keys")
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"key file {str(path)!r}: {exc}") from exc
        return cls(issuer, audience, keys)

    def save(self, path: Path) -> None:
        """Write the file, readable by its owner only."""
        document = {
            "issuer": self.issuer,
            "audience": self.audience,
            "keys": [private_jwk(key) for key in self.keys],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set of the keys (secrets included for HS* keys: local use only)."""
        return {"keys": [key.public_jwk() for key in self.keys]}

    @property
    def port(self) -> int:
        """The port of the ``issuer`` URL (0 if it names none)."""
        return urlsplit(self.issuer).port or 0
