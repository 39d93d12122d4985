"""Shared helpers for the verification-core tests: keys, independent signing, tokens, a clock.

Tokens here are signed with ``cryptography`` and ``hmac`` directly, not through
``jwt_guard.keys.algorithms``: a bug shared by signer and verifier would otherwise cancel out.
Key generation is cached per process (RSA is the slow part), so every module shares the keys.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import hashlib
import hmac
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# Every algorithm jwt_guard verifies, as (alg, curve) with the EdDSA curves listed separately
# (and the RFC 9864 fully specified names Ed25519 and Ed448, each with its own curve).
ALG_CASES: list[tuple[str, str | None]] = [
    ("HS256", None),
    ("HS384", None),
    ("HS512", None),
    ("RS256", None),
    ("RS384", None),
    ("RS512", None),
    ("PS256", None),
    ("PS384", None),
    ("PS512", None),
    ("ES256", None),
    ("ES384", None),
    ("ES512", None),
    ("ES256K", None),
    ("EdDSA", "Ed25519"),
    ("EdDSA", "Ed448"),
    ("Ed25519", "Ed25519"),
    ("Ed448", "Ed448"),
]
ALG_IDS = [f"{alg}-{crv}" if crv and crv != alg else alg for alg, crv in ALG_CASES]
EDDSA_NAMES = ("EdDSA", "Ed25519", "Ed448")

_EC = {
    "ES256": ("P-256", ec.SECP256R1, 32),
    "ES384": ("P-384", ec.SECP384R1, 48),
    "ES512": ("P-521", ec.SECP521R1, 66),
    "ES256K": ("secp256k1", ec.SECP256K1, 32),
}
_EC_BY_CRV = {crv: (cls, size) for crv, cls, size in _EC.values()}
_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(value: int, size: int | None = None) -> str:
    size = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64e(value.to_bytes(size, "big"))


@dataclass
class Key:
    """A private key of one algorithm with its kid; signs independently of jwt_guard."""

    alg: str
    kid: str | None
    private: Any  # cryptography private key, or the HMAC secret bytes

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK (the secret for ``oct``); ``extra`` members are added (None drops)."""
        priv = self.private
        jwk: dict[str, Any]
        if isinstance(priv, bytes):
            jwk = {"kty": "oct", "k": b64e(priv)}
        elif isinstance(priv, rsa.RSAPrivateKey):
            nums = priv.public_key().public_numbers()
            jwk = {"kty": "RSA", "n": _uint(nums.n), "e": _uint(nums.e)}
        elif isinstance(priv, ec.EllipticCurvePrivateKey):
            pt = priv.public_key().public_numbers()
            crv = next(c for c, (cls, _) in _EC_BY_CRV.items() if isinstance(priv.curve, cls))
            size = _EC_BY_CRV[crv][1]
            jwk = {"kty": "EC", "crv": crv, "x": _uint(pt.x, size), "y": _uint(pt.y, size)}
        else:
            raw = priv.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            crv = "Ed25519" if isinstance(priv, ed25519.Ed25519PrivateKey) else "Ed448"
            jwk = {"kty": "OKP", "crv": crv, "x": b64e(raw)}
        if self.kid is not None:
            jwk["kid"] = self.kid
        jwk.update(extra)
        return {k: v for k, v in jwk.items() if v is not None}

    def jwks(self, **extra: Any) -> dict[str, Any]:
        return {"keys": [self.public_jwk(**extra)]}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def with_kid(self, kid: str | None) -> Key:
        return Key(self.alg, kid, self.private)

    def sign(self, msg: bytes, alg: str | None = None) -> bytes:
        return sign(alg or self.alg, self.private, msg)


def sign(alg: str, private: Any, msg: bytes) -> bytes:
    """Sign ``msg`` for ``alg`` with ``cryptography``/``hmac`` (RFC 7518, 8037, 8812)."""
    if alg.startswith("HS"):
        return hmac.new(private, msg, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return bytes(private.sign(msg, padding.PKCS1v15(), _HASH[alg[2:]]()))
    if alg.startswith("PS"):
        h = _HASH[alg[2:]]()
        return bytes(private.sign(msg, padding.PSS(padding.MGF1(h), h.digest_size), h))
    if alg in _EC:
        size = (private.curve.key_size + 7) // 8
        h = hashes.SHA256() if alg == "ES256K" else _HASH[alg[2:]]()
        r, s = decode_dss_signature(private.sign(msg, ec.ECDSA(h)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg in EDDSA_NAMES:
        return bytes(private.sign(msg))
    raise ValueError(alg)


@functools.cache
def _private(alg: str, crv: str | None, name: str, bits: int) -> Any:
    if alg.startswith("HS"):
        return hashlib.sha512(f"{alg}-{name}".encode()).digest()[: int(alg[2:]) // 8]
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if alg in _EC:
        curve = crv or _EC[alg][0]
        return ec.generate_private_key(_EC_BY_CRV[curve][0]())
    if "Ed448" in (crv, alg):
        return ed448.Ed448PrivateKey.generate()
    return ed25519.Ed25519PrivateKey.generate()


def make_key(
    alg: str, kid: str | None = "k1", *, crv: str | None = None, name: str = "a", bits: int = 2048
) -> Key:
    """A cached key: the same ``(alg family, crv, name, bits)`` gives the same key material.

    All RS*/PS* share one RSA key per ``name``: RSA generation is the slow part of the suite.
    """
    family = "RS" if alg[:2] in ("RS", "PS") else alg
    return Key(alg, kid, _private(family, crv, name, bits))


def token(
    key: Key,
    claims: Mapping[str, Any] | bytes | None = None,
    *,
    header: Mapping[str, Any] | bytes | None = None,
    alg: str | None = None,
) -> str:
    """A compact JWS: header ``{"alg", "kid"?, "typ": "JWT"}`` updated by ``header`` (a ``None``
    value removes a member; bytes are used verbatim), payload ``claims`` (bytes verbatim)."""
    if isinstance(header, bytes):
        header_bytes = header
    else:
        h: dict[str, Any] = {"alg": alg or key.alg, "typ": "JWT"}
        if key.kid is not None:
            h["kid"] = key.kid
        h.update(header or {})
        header_bytes = json.dumps({k: v for k, v in h.items() if v is not None}).encode()
    payload_bytes = claims if isinstance(claims, bytes) else json.dumps(dict(claims or {})).encode()
    signing_input = f"{b64e(header_bytes)}.{b64e(payload_bytes)}"
    sig = key.sign(signing_input.encode("ascii"), alg)
    return f"{signing_input}.{b64e(sig)}"


def resign(key: Key, tok: str) -> str:
    """Re-sign the header and payload segments of ``tok`` with ``key``."""
    head, payload, _ = tok.split(".")
    return f"{head}.{payload}.{b64e(key.sign(f'{head}.{payload}'.encode()))}"


def tamper_payload(tok: str, **changes: Any) -> str:
    """Change claims in the payload, keeping the original signature."""
    head, payload, sig = tok.split(".")
    data = json.loads(b64d(payload))
    data.update(changes or {"sub": "someone-else"})
    return f"{head}.{b64e(json.dumps(data).encode())}.{sig}"


def flip_signature_bit(tok: str, bit: int = 0) -> str:
    """Flip one bit of the decoded signature and re-encode it canonically."""
    head, payload, sig = tok.split(".")
    raw = bytearray(b64d(sig))
    raw[bit // 8] ^= 1 << (bit % 8)
    return f"{head}.{payload}.{b64e(bytes(raw))}"


class Clock:
    """A hand-advanced wall clock (call it: the ``time.time`` replacement) with its monotonic
    clock (:meth:`monotonic`: the ``time.monotonic`` replacement).

    :meth:`advance` moves both, as time passing does; :meth:`step_wall` moves the wall clock
    alone, as NTP or a resumed VM does. Pass ``clock=clock, monotonic=clock.monotonic``.
    """

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.ticks = 1_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            self.ticks += seconds
            return self.now

    def step_wall(self, seconds: float) -> float:
        """Step the wall clock alone, forwards or backwards."""
        with self._lock:
            self.now += seconds
            return self.now


def claims_at(now: float, **extra: Any) -> dict[str, Any]:
    """A valid claim set for ``ISSUER``/``AUDIENCE`` issued at ``now``, expiring in 5 minutes."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": int(now),
        "exp": int(now) + 300,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


ISSUER = "https://idp.example.test/"
AUDIENCE = "https://api.example.test"


def settle_jwks_threads(timeout: float = 10.0) -> None:
    """Wait for background JWKS refreshes jwt_guard started (so request counts are final)."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name in ("jwt_guard-jwks", "jwt_guard-fetch"):
            thread.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def traced_memory() -> Iterator[Callable[[], int]]:
    """Trace allocations (tracemalloc) inside the block; the callable collects garbage and
    returns the bytes traced now, so ``after() - before()`` is what the code between kept.

    Everything that exists on entry, garbage included, is frozen out of the collector
    (``gc.freeze``) for the block: a collection then walks only what the block made, not the
    whole test session's heap (0.1-0.2 s a collection late in the suite). What existed before
    was allocated before tracing started, so it counts for nothing either way.
    """
    gc.freeze()
    tracemalloc.start()

    def traced() -> int:
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0])

    try:
        yield traced
    finally:
        tracemalloc.stop()
        gc.unfreeze()
