"""JWK -> verification key, built once per key-set fetch; ``KeySet`` finds the key for a token.

:func:`build_key` is the one gate every key passes, whatever its source (a static set given in
code, a JWKS fetched over HTTP, the CLI's key file): a JWK is parsed strictly (member types,
canonical base64url, exact lengths) and its key material judged before any token sees it:

* RSA: 2048 to 8192 bits, odd modulus, odd exponent from 3 to 2**32 - 1;
* EC: the point must lie on its curve;
* OKP (Ed25519, Ed448): canonical encoding, a point on the curve, not of small order (such a
  key accepts forged signatures);
* oct: at least as long as the hash of each HS* algorithm it verifies.

A python-jose Key is then built for each allowed algorithm the key may verify. A key that cannot
be used is skipped with a reason (values escaped for logs); it does not poison the rest of the
set, and a set's build logs one summary line however many keys it skips.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .._codec import b64url_decode, b64url_encode
from .._logsafe import safe
from ..errors import AlgorithmNotAllowed, ConfigurationError, UnknownKey
from .algorithms import ALGORITHMS, EC_CURVES

__all__ = ["KeySet", "VerificationKey", "thumbprint"]

logger = logging.getLogger("jwt_guard.keys")

MAX_RSA_BITS = 8192
"""Largest RSA modulus accepted: each bit costs verify time, and no provider publishes more."""
MAX_RSA_EXPONENT_BITS = 32
"""Largest RSA public exponent accepted, in bits (65537 has 17; Go allows 31, BoringSSL 33)."""
LOGGED_REASONS = 3
"""Skip reasons quoted in the one log line a key-set build writes."""
KEPT_REASONS = 20
"""Skip reasons kept on ``KeySet.skipped`` (the count is always exact)."""

_HMAC_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}
_THUMB_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


class KeyRejected(ValueError):
    """Raised when a JWK cannot be used for verification: malformed or weak. The message says
    why; a static set given in code fails at construction for it."""


class KeyNotUsed(KeyRejected):
    """Raised for a well-formed JWK this verifier does not use (outside the algorithm allowlist,
    not a signature key, symmetric from a remote source): skipped, never fatal."""


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


def _shown(value: Any) -> str:
    """A JWK member value for a skip reason: short; the whole reason is escaped once, later."""
    if isinstance(value, str):
        return f"'{value[:40]}...'" if len(value) > 40 else f"'{value}'"
    if value is None:
        return "null"
    return f"a JSON {type(value).__name__}"


# -- Edwards curves (RFC 8032): canonical encoding, on the curve, not of small order -------------


@dataclass(frozen=True)
class _Edwards:
    size: int  # encoded bytes
    p: int
    a: int
    d: int
    cofactor: int


_P25519 = 2**255 - 19
_P448 = 2**448 - 2**224 - 1
_EDWARDS = {
    "Ed25519": _Edwards(32, _P25519, -1, -121665 * pow(121666, -1, _P25519) % _P25519, 8),
    "Ed448": _Edwards(57, _P448, 1, -39081 % _P448, 4),
}


def _jacobi(a: int, n: int) -> int:
    """The Jacobi symbol (a/n) for odd n > 0: for a prime n, 1 if a is a square mod n, -1 if
    not, 0 if n divides a. Much cheaper than Euler's criterion (a modular power) in Python."""
    a %= n
    result = 1
    while a:
        while not a & 1:
            a >>= 1
            if n & 7 in (3, 5):
                result = -result
        a, n = n, a
        if a & 3 == 3 and n & 3 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


def _edwards_point(crv: str, raw: bytes) -> None:
    """Refuse a non-canonical, off-curve or small-order encoded public point (RFC 8032 5.1.3,
    5.2.3). A small-order key lets ``R = x, S = 0`` (and like forgeries) verify for any message.

    Only ``y`` and ``x**2`` are needed: ``x**2 = (y**2 - 1) / (d y**2 - a)`` must be a square
    (the point is on the curve), and the ``y`` of ``[cofactor]P`` must be 1 (the identity) for a
    point of small order. ``y`` of a doubled point depends on ``y`` and ``x**2`` alone, so the
    doublings run on ``y = Y/Z`` without a square root or an inversion.
    """
    c = _EDWARDS[crv]
    value = int.from_bytes(raw, "little")
    sign, y = value >> (8 * c.size - 1), value & ((1 << (8 * c.size - 1)) - 1)
    if y >= c.p:  # for Ed448 this also catches the unused bits of the last byte
        raise KeyRejected(f"{crv} public key is not canonically encoded")
    p, a, d = c.p, c.a, c.d
    num, den = (y * y - 1) % p, (d * y * y - a) % p  # x**2 = num / den; den is never 0
    if num == 0 and sign:  # x = 0 has no negative
        raise KeyRejected(f"{crv} public key is not canonically encoded")
    if _jacobi(num * den, p) < 0:
        raise KeyRejected(f"{crv} public key is not a point on the curve")
    big_y, z = y, 1
    for _ in range(c.cofactor.bit_length() - 1):
        # y(2P) = (y**2 - a x**2) / (1 - d x**2 y**2), with y = Y/Z and x**2 = N/D
        yy, zz = big_y * big_y % p, z * z % p
        n, dd = (yy - zz) % p, (d * yy - a * zz) % p
        big_y, z = (yy * dd - a * n * zz) % p, (zz * dd - d * n * yy) % p
    if big_y == z:
        raise KeyRejected(f"{crv} public key is a point of small order (it would accept forgeries)")


# -- JWK members -----------------------------------------------------------------------------


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


def _rsa_key(jwk: Mapping[str, Any], min_bits: int) -> rsa.RSAPublicKey:
    n = int.from_bytes(_b64_field(jwk, "n"), "big")
    e = int.from_bytes(_b64_field(jwk, "e"), "big")
    bits = n.bit_length()
    if bits < min_bits:
        raise KeyRejected(f"RSA key of {bits} bits is under {min_bits}")
    if bits > MAX_RSA_BITS:
        raise KeyRejected(f"RSA key of {bits} bits is over {MAX_RSA_BITS}")
    if n % 2 == 0:
        raise KeyRejected("RSA modulus is even")
    if e < 3 or e % 2 == 0 or e >= n or e.bit_length() > MAX_RSA_EXPONENT_BITS:
        raise KeyRejected(
            f"RSA public exponent is invalid: it must be odd, from 3 to 2**{MAX_RSA_EXPONENT_BITS}"
        )
    return rsa.RSAPublicNumbers(e, n).public_key()


def _public_key(jwk: Mapping[str, Any], kty: str, crv: str | None, min_rsa_bits: int) -> Any:
    if kty == "RSA":
        return _rsa_key(jwk, min_rsa_bits)
    if kty == "EC":
        curve = EC_CURVES[str(crv)]
        x = int.from_bytes(_b64_field(jwk, "x", curve.size), "big")
        y = int.from_bytes(_b64_field(jwk, "y", curve.size), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve.curve()).public_key()
    if kty == "OKP":
        raw = _b64_field(jwk, "x", _EDWARDS[str(crv)].size)
        _edwards_point(str(crv), raw)
        cls = ed25519.Ed25519PublicKey if crv == "Ed25519" else ed448.Ed448PublicKey
        return cls.from_public_bytes(raw)
    return _b64_field(jwk, "k")  # oct


def _key_type(jwk: Mapping[str, Any]) -> tuple[str, str | None]:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if not isinstance(kty, str):
        raise KeyRejected("missing 'kty'")
    if kty in ("RSA", "oct"):
        return kty, None
    if isinstance(crv, str) and (
        (kty == "EC" and crv in EC_CURVES) or (kty == "OKP" and crv in _EDWARDS)
    ):
        return kty, crv
    raise KeyRejected(f"unsupported key type/curve {_shown(kty)}/{_shown(crv)}")


def _check_members(jwk: Mapping[str, Any]) -> None:
    """Member types (RFC 7517 4): present members must be what the RFC says, never null."""
    if "kid" in jwk and not isinstance(jwk["kid"], str):
        raise KeyRejected("'kid' is not a string")
    if "alg" in jwk:
        pinned = jwk["alg"]
        if not isinstance(pinned, str) or pinned not in ALGORITHMS:
            raise KeyRejected(f"key 'alg' {_shown(pinned)} is not supported")
    if "use" in jwk:
        use = jwk["use"]
        if not isinstance(use, str):
            raise KeyRejected(f"key 'use' is {_shown(use)}, not a string")
        if use != "sig":
            raise KeyNotUsed(f"key 'use' is {_shown(use)}, not 'sig'")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if (
            not isinstance(ops, list)
            or not all(isinstance(op, str) for op in ops)
            or len(set(ops)) != len(ops)
        ):
            raise KeyRejected("key 'key_ops' is not an array of unique strings (RFC 7517 4.3)")
        if "verify" not in ops:
            raise KeyNotUsed("key 'key_ops' does not include 'verify'")


def _algorithms_for(
    jwk: Mapping[str, Any], kty: str, crv: str | None, allowed: Iterable[str]
) -> list[str]:
    family = [
        a for a, s in ALGORITHMS.items() if s.kty == kty and (not s.curves or crv in s.curves)
    ]
    pinned = jwk.get("alg")
    if pinned is not None:
        if pinned not in family:
            raise KeyRejected(f"key 'alg' {pinned} does not fit a {crv or kty} key")
        family = [pinned]
    allowed = frozenset(allowed)
    fitting = [a for a in family if a in allowed]
    if not fitting:
        raise KeyNotUsed(f"no allowed algorithm fits this key (it verifies {', '.join(family)})")
    return fitting


def build_key(
    jwk: Any, *, allowed: Iterable[str], allow_oct: bool, min_rsa_bits: int = 2048
) -> VerificationKey:
    """Turn one JWK into a ``VerificationKey``; raise ``KeyRejected`` if it cannot be used.

    ``KeyNotUsed`` (a ``KeyRejected``) means a well-formed key this verifier does not use. The
    algorithms are chosen before the key material is decoded, so keys nobody will use cost
    nothing.
    """
    if not isinstance(jwk, Mapping):
        raise KeyRejected("JWK is not a JSON object")
    _check_members(jwk)
    kty, crv = _key_type(jwk)
    if kty == "oct" and not allow_oct:
        raise KeyNotUsed("symmetric ('oct') keys are not allowed from this source")
    algs = _algorithms_for(jwk, kty, crv, allowed)
    try:
        key = _public_key(jwk, kty, crv, min_rsa_bits)
    except (ValueError, TypeError, OverflowError) as exc:  # cryptography: point not on curve...
        if isinstance(exc, KeyRejected):
            raise
        raise KeyRejected(f"invalid key parameters: {exc}") from exc
    if kty == "oct":
        strong = [a for a in algs if len(key) >= _HMAC_MIN[a]]
        if not strong:
            weakest = min(algs, key=_HMAC_MIN.__getitem__)
            raise KeyRejected(
                f"HMAC key of {len(key)} bytes is shorter than the hash of {weakest} "
                f"({_HMAC_MIN[weakest]} bytes)"
            )
        algs = strong
    verifiers = {alg: ALGORITHMS[alg].key_class(key, alg) for alg in algs}
    return VerificationKey(jwk.get("kid"), kty, crv, thumbprint(jwk), verifiers)


_MISSING: Any = object()


class KeySet:
    """An immutable set of verification keys with kid lookup and algorithm binding.

    Built only by :meth:`from_jwks` (``KeySet.from_jwks({"keys": [...]}, algorithms=["RS256"])``),
    so every key in a set has passed :func:`build_key`, whichever source built it (a custom key
    source included): calling ``KeySet(...)`` raises ``ConfigurationError``, and the class cannot
    be subclassed. A kid present twice is ambiguous: tokens naming it are refused. Without a kid,
    a token is verified only when exactly one key in the set fits its algorithm. ``skipped``
    holds the reasons of the first skipped keys (at most ``KEPT_REASONS``), ``skipped_count``
    their number.
    """

    __slots__ = (
        "_by_kid",
        "_skipped_kids",
        "_sole",
        "_sole_keys",
        "keys",
        "skipped",
        "skipped_count",
    )

    keys: tuple[VerificationKey, ...]
    skipped: tuple[str, ...]
    skipped_count: int
    _by_kid: dict[str, VerificationKey | None]
    _skipped_kids: dict[str, str]
    _sole: dict[str, Any]
    _sole_keys: dict[str, VerificationKey]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ConfigurationError(
            "a KeySet is built only by KeySet.from_jwks(...), so that every key in it has "
            "passed the key checks"
        )

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("KeySet cannot be subclassed: a key source returns KeySet.from_jwks(...)")

    @classmethod
    def _gated(
        cls,
        keys: list[VerificationKey],
        skipped: list[str],
        skipped_count: int,
        skipped_kids: dict[str, str],
    ) -> KeySet:
        """The one constructor, called by :meth:`from_jwks` with keys ``build_key`` made."""
        self = object.__new__(cls)
        self.keys = tuple(keys)
        self.skipped = tuple(skipped)
        self.skipped_count = skipped_count
        self._skipped_kids = skipped_kids
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
        return self

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

        Unusable keys are skipped; one log line per build gives the counts and the first
        reasons (WARNING when a key is malformed or weak, INFO when keys are only outside the
        algorithm allowlist or not signature keys). With ``strict=True`` (static sets given in
        code) a malformed or weak key, or a set without any usable key, raises
        ``ConfigurationError`` instead, so a typo fails at start-up; keys outside the allowlist
        are skipped there too.
        """
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise ValueError("a JWK Set must be a JSON object with a 'keys' array")
        allowed = frozenset(algorithms) if algorithms is not None else frozenset(ALGORITHMS)
        keys: list[VerificationKey] = []
        reasons: list[str] = []
        skipped_kids: dict[str, str] = {}
        broken = unused = 0
        for index, jwk in enumerate(jwks["keys"]):
            try:
                keys.append(
                    build_key(jwk, allowed=allowed, allow_oct=allow_oct, min_rsa_bits=min_rsa_bits)
                )
                continue
            except KeyRejected as exc:
                kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
                reason = safe(f"key #{index} (kid={_shown(kid)}) skipped: {exc}", 300)
                if strict and not isinstance(exc, KeyNotUsed):
                    raise ConfigurationError(f"{safe(source)} JWKS: {reason}") from exc
                if isinstance(exc, KeyNotUsed):
                    unused += 1
                else:
                    broken += 1
            if len(reasons) < KEPT_REASONS:
                reasons.append(reason)
                if isinstance(kid, str):
                    skipped_kids.setdefault(kid, reason)
        if strict and not keys:
            raise ConfigurationError(
                f"{safe(source)} JWKS holds no key for the algorithms "
                f"{', '.join(sorted(allowed))}" + (f": {'; '.join(reasons[:3])}" if reasons else "")
            )
        if reasons:
            logger.log(
                logging.WARNING if broken else logging.INFO,
                "jwks %s: %d of %d keys usable; skipped %d malformed or weak, %d not used here; "
                "first: %s",
                safe(source),
                len(keys),
                len(keys) + broken + unused,
                broken,
                unused,
                " | ".join(reasons[:LOGGED_REASONS]),
            )
        return cls._gated(keys, reasons, broken + unused, skipped_kids)

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
        ``AlgorithmNotAllowed`` when the key exists but is bound to other algorithms. The
        detail names the skip reason when the set skipped the key the token wanted.
        """
        if kid is None:
            verifier = self._sole.get(alg)
            if verifier is None:
                raise UnknownKey(f"token has no kid and no single key fits {alg}{self._hint()}")
            return verifier
        vk = self._by_kid.get(kid, _MISSING)
        if vk is _MISSING:
            reason = self._skipped_kids.get(kid)
            if reason is not None:
                raise UnknownKey(f"the key with the token's kid was not usable: {reason}")
            raise UnknownKey("no key with the token's kid")
        if vk is None:
            raise UnknownKey("the token's kid names more than one key")
        verifier = vk.verifiers.get(alg)
        if verifier is None:
            raise AlgorithmNotAllowed(f"algorithm {alg} does not fit key {vk.fingerprint}")
        return verifier

    def _hint(self) -> str:
        if not self.skipped:
            return ""
        return f" ({self.skipped_count} skipped; first: {self.skipped[0]})"

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
