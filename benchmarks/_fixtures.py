"""Keys, issuers and token pools shared by the sections."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from jwt_guard.testing import LocalIssuer, SigningKey, generate_key

MAIN_ALGS = ("RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256")
"""The algorithms with a target (HS256 at 1.5x, the others at 1.25x)."""
INFO_ALGS = ("RS384", "RS512", "PS384", "PS512", "ES512", "ES256K", "EdDSA-Ed448", "HS384", "HS512")
"""The rest, for information."""


@dataclass(frozen=True)
class Mode:
    """Sizes of one run: ``full`` (minutes at most) or ``quick`` (seconds, for the test suite)."""

    quick: bool
    rounds: int  # rounds of interleaved micro batches
    batch_seconds: float  # target length of one micro batch
    pool: int  # distinct tokens cycled in micro batches
    app_rounds: int
    app_requests: int  # requests per app batch (repeating tokens)
    app_new_tokens: int  # distinct tokens per app batch (every token new)
    cold_start: int  # concurrent averify calls at a cold start
    unknown_kids: int  # tokens with random unknown kids inside one cool-down
    slow_delay: float  # seconds the JWKS endpoint takes in the SLOW fault
    decoys: int  # extra keys in the "many keys" JWKS
    algorithms: tuple[str, ...] = (*MAIN_ALGS, *INFO_ALGS)  # the verify section's rows

    @classmethod
    def make(cls, quick: bool, algorithms: list[str] | None = None) -> Mode:
        algs = tuple(algorithms) if algorithms else (*MAIN_ALGS, *INFO_ALGS)
        unknown = set(algs) - {*MAIN_ALGS, *INFO_ALGS}
        if unknown:
            raise SystemExit(f"unknown algorithms {sorted(unknown)}")
        if quick:
            return cls(True, 2, 0.002, 8, 2, 40, 12, 50, 200, 0.15, 99, algs)
        return cls(False, 21, 0.03, 64, 25, 1000, 600, 500, 10_000, 2.0, 99, algs)


def alg_of(name: str) -> str:
    """``EdDSA-Ed448`` -> ``EdDSA``."""
    return name.split("-", 1)[0]


class Bench:
    """One started ``LocalIssuer`` holding a key per benchmarked algorithm, and token pools.

    Every RS*/PS* name signs with one 2048-bit RSA key under a kid of its own: a check costs
    the same whichever RSA key of that size it is, and generating one costs more than a quick
    run's timing of it. The sections' issuers of their own (:meth:`rsa_issuer`) use it too.
    """

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        algs = [alg_of(n) for n in (*MAIN_ALGS, *INFO_ALGS) if n != "EdDSA-Ed448"]
        rsa = generate_key("RS256").private_key
        keys = [
            SigningKey(f"bench-{a.lower()}", a, rsa)
            if a.startswith(("RS", "PS"))
            else generate_key(a)
            for a in algs
        ]
        self.issuer = LocalIssuer(keys=keys, include_secret_keys=True).start()
        self.keys: dict[str, SigningKey] = {a: self.issuer.key(a) for a in algs}
        self.keys["EdDSA-Ed448"] = self.issuer.add_key("EdDSA", kid="eddsa-ed448", curve="Ed448")

    def close(self) -> None:
        self.issuer.stop()

    def rsa_issuer(self) -> LocalIssuer:
        """A started ``LocalIssuer`` of its own (its JWKS and request counts) with the RS256 key."""
        return LocalIssuer(keys=[self.keys["RS256"]]).start()

    def mint(self, name: str, n: int, **kw: Any) -> list[str]:
        """``n`` distinct tokens (each has its own ``jti``) signed with the key of ``name``."""
        key = self.keys[name]
        kw.setdefault("scopes", ["read", "write"])
        kw.setdefault("expires_in", 3600)
        return [self.issuer.mint(key=key, **kw) for _ in range(n)]

    def jwks_for(self, *names: str) -> dict[str, Any]:
        return {"keys": [self.keys[n].public_jwk() for n in names]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unknown_kid_token(issuer: str, audience: str, alg: str = "RS256", sig_len: int = 256) -> str:
    """A well-formed token naming a random kid; its signature is never reached, so it is random."""
    header = {"alg": alg, "typ": "JWT", "kid": "unknown-" + secrets.token_hex(8)}
    payload = {"iss": issuer, "aud": audience, "sub": "x", "exp": 4102444800, "iat": 1700000000}
    parts = [
        json.dumps(header).encode(),
        json.dumps(payload).encode(),
        secrets.token_bytes(sig_len),
    ]
    return ".".join(b64url(p) for p in parts)
