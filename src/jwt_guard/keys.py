"""JWK -> verification key, built once per key-set fetch; ``KeySet`` finds the key for a token.

A JWK is parsed strictly (canonical base64url, exact lengths, points on the curve) into a
``cryptography`` public key, and a python-jose Key is built for each algorithm the key may verify.
A key that cannot be used is skipped with a reason; it does not poison the rest of the set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ._codec import b64url_decode, b64url_encode
from .algorithms import ALGORITHMS
from .errors import AlgorithmNotAllowed, ConfigurationError, UnknownKey

__all__ = ["KeySet", "VerificationKey", "thumbprint"]

logger = logging.getLogger("jwt_guard.keys")

_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
    "secp256k1": (ec.SECP256K1(), 32),
}
_OKP_CURVES = {"Ed25519": 32, "Ed448": 57}
_HMAC_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}
_THUMB_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


class KeyRejected(ValueError):
    """Raised when a JWK cannot be used for verification; the message says why."""


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a safe fingerprint for logs."""
    members = _THUMB_MEMBERS.get(str(jwk.get("kty")), ())
    canonical = json.dumps({m: jwk.get(m) for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())[:16]


@dataclass(frozen=True)
class VerificationKey:
    """One usable key: its ``kid``, type, and a python-jose Key per algorithm it may verify."""

    kid: str | None
    kty: str
    crv: str | None
    fingerprint: str
    verifiers: Mapping[str, Any] = field(repr=False)

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms this key verifies."""
        return frozenset(self.verifiers)


def _b64_field(jwk: Mapping[str, Any], name: str, size: int | None = None) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise KeyRejected(f"missing or non-string {name!r}")
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise KeyRejected(f"{name!r} is not canonical base64url") from exc
    if size is not None and len(raw) != size:
        raise KeyRejected(f"{name!r} has {len(raw)} bytes, expected {size}")
    return raw


def _public_key(jwk: Mapping[str, Any], kty: str, min_rsa_bits: int) -> tuple[Any, str | None]:
    if kty == "RSA":
        n = int.from_bytes(_b64_field(jwk, "n"), "big")
        e = int.from_bytes(_b64_field(jwk, "e"), "big")
        if n.bit_length() < min_rsa_bits:
            raise KeyRejected(f"RSA key of {n.bit_length()} bits is under {min_rsa_bits}")
        if e < 3 or e % 2 == 0:
            raise KeyRejected("RSA public exponent is invalid")
        return rsa.RSAPublicNumbers(e, n).public_key(), None
    crv = jwk.get("crv")
    if kty == "EC" and isinstance(crv, str) and crv in _EC_CURVES:
        curve, size = _EC_CURVES[crv]
        x = int.from_bytes(_b64_field(jwk, "x", size), "big")
        y = int.from_bytes(_b64_field(jwk, "y", size), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key(), crv
    if kty == "OKP" and isinstance(crv, str) and crv in _OKP_CURVES:
        x_bytes = _b64_field(jwk, "x", _OKP_CURVES[crv])
        cls = ed25519.Ed25519PublicKey if crv == "Ed25519" else ed448.Ed448PublicKey
        return cls.from_public_bytes(x_bytes), crv
    if kty == "oct":
        return _b64_field(jwk, "k"), None
    raise KeyRejected(f"unsupported key type/curve {kty!r}/{crv!r}")


def _usable_algorithms(
    jwk: Mapping[str, Any], kty: str, crv: str | None, key: Any, allowed: Iterable[str]
) -> list[str]:
    specs = [ALGORITHMS[a] for a in allowed]
    fitting = [s.name for s in specs if s.kty == kty and (not s.curves or crv in s.curves)]
    if kty == "oct":
        fitting = [a for a in fitting if len(key) >= _HMAC_MIN[a]]
    pinned = jwk.get("alg")
    if pinned is not None:
        if not isinstance(pinned, str) or pinned not in ALGORITHMS:
            raise KeyRejected(f"key 'alg' {pinned!r} is not supported")
        fitting = [a for a in fitting if a == pinned]
    if not fitting:
        raise KeyRejected("no allowed algorithm fits this key")
    return fitting


def build_key(
    jwk: Any, *, allowed: Iterable[str], allow_oct: bool, min_rsa_bits: int = 2048
) -> VerificationKey:
    """Turn one JWK into a ``VerificationKey``; raise ``KeyRejected`` if it cannot be used."""
    if not isinstance(jwk, Mapping):
        raise KeyRejected("JWK is not a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise KeyRejected("missing 'kty'")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyRejected("'kid' is not a string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise KeyRejected(f"key 'use' is {use!r}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise KeyRejected("key 'key_ops' does not include 'verify'")
    if kty == "oct" and not allow_oct:
        raise KeyRejected("symmetric ('oct') keys are not allowed from this source")
    try:
        key, crv = _public_key(jwk, kty, min_rsa_bits)
    except (ValueError, TypeError, OverflowError) as exc:  # cryptography: point not on curve...
        raise KeyRejected(f"invalid key parameters: {exc}") from exc
    algs = _usable_algorithms(jwk, kty, crv, key, allowed)
    verifiers = {alg: ALGORITHMS[alg].key_class(key, alg) for alg in algs}
    return VerificationKey(kid, kty, crv, thumbprint(jwk), verifiers)


_MISSING: Any = object()


class KeySet:
    """An immutable set of verification keys with kid lookup and algorithm binding.

    Build it with :meth:`from_jwks`; ``KeySet.from_jwks({"keys": [...]}, algorithms=["RS256"])``.
    A kid present twice is ambiguous: tokens naming it are refused. Without a kid, a token is
    verified only when exactly one key in the set fits its algorithm.
    """

    __slots__ = ("_by_kid", "_sole", "_sole_keys", "keys", "skipped")

    def __init__(self, keys: Iterable[VerificationKey], skipped: Iterable[str] = ()) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        self.skipped: tuple[str, ...] = tuple(skipped)
        by_kid: dict[str, VerificationKey | None] = {}
        per_alg: dict[str, list[VerificationKey]] = {}
        for k in self.keys:
            if k.kid is not None:
                by_kid[k.kid] = None if k.kid in by_kid else k
            for alg in k.verifiers:
                per_alg.setdefault(alg, []).append(k)
        self._by_kid = by_kid
        self._sole_keys = {alg: ks[0] for alg, ks in per_alg.items() if len(ks) == 1}
        self._sole = {alg: k.verifiers[alg] for alg, k in self._sole_keys.items()}

    @classmethod
    def from_jwks(
        cls,
        jwks: Any,
        *,
        algorithms: Iterable[str] | None = None,
        allow_oct: bool = True,
        min_rsa_bits: int = 2048,
        source: str = "static",
        strict: bool = False,
    ) -> KeySet:
        """Build a key set from a JWK Set (``{"keys": [...]}``).

        Unusable keys are skipped and logged; with ``strict=True`` (static sets given in code)
        they raise ``ConfigurationError`` instead, so a typo fails at start-up.
        """
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise ValueError("a JWK Set must be a JSON object with a 'keys' array")
        allowed = tuple(algorithms) if algorithms is not None else tuple(ALGORITHMS)
        keys: list[VerificationKey] = []
        skipped: list[str] = []
        for index, jwk in enumerate(jwks["keys"]):
            try:
                keys.append(
                    build_key(jwk, allowed=allowed, allow_oct=allow_oct, min_rsa_bits=min_rsa_bits)
                )
            except KeyRejected as exc:
                kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
                reason = f"key #{index} (kid={kid!r}) skipped: {exc}"
                if strict:
                    raise ConfigurationError(f"{source} JWKS: {reason}") from exc
                skipped.append(reason)
                logger.warning("jwks %s: %s", source, reason)
        return cls(keys, skipped)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    @property
    def kids(self) -> frozenset[str]:
        """The key ids in this set."""
        return frozenset(self._by_kid)

    def find(self, kid: str | None, alg: str) -> Any:
        """Return the python-jose Key that verifies ``alg`` for ``kid``.

        Raises ``UnknownKey`` when no such key exists (or the kid is ambiguous) and
        ``AlgorithmNotAllowed`` when the key exists but is bound to other algorithms.
        """
        if kid is None:
            verifier = self._sole.get(alg)
            if verifier is None:
                raise UnknownKey(f"token has no kid and no single key fits {alg}")
            return verifier
        vk = self._by_kid.get(kid, _MISSING)
        if vk is _MISSING:
            raise UnknownKey("no key with the token's kid")
        if vk is None:
            raise UnknownKey("the token's kid names more than one key")
        verifier = vk.verifiers.get(alg)
        if verifier is None:
            raise AlgorithmNotAllowed(f"algorithm {alg} does not fit key {vk.fingerprint}")
        return verifier

    def fingerprint_for(self, kid: str | None, alg: str) -> str | None:
        """The RFC 7638 thumbprint of the key this set picks for ``kid`` and ``alg``, if any."""
        vk = self._sole_keys.get(alg) if kid is None else self._by_kid.get(kid)
        return vk.fingerprint if vk is not None and alg in vk.verifiers else None

    def still_verifies(self, kid: str | None, alg: str, fingerprint: str | None) -> bool:
        """Whether this set still picks the key with ``fingerprint`` for ``kid`` and ``alg``.

        True across a refetch that kept the key (new objects, same key material); false once
        the key left, changed, or no longer admits ``alg``.
        """
        return fingerprint is not None and self.fingerprint_for(kid, alg) == fingerprint
