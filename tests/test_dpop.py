"""DPoP proofs at the binding layer (RFC 9449 4.3): ``DPoPVerifier``, ``htu`` normalisation,
the thumbprint, the challenge, the client helper, and proofs from an independent implementation
(PyJWT) both ways. Clocks are injected; nothing sleeps."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _common import parse_challenge
from _core_helpers import make_key as cached_key
from _edwards import CURVES, small_order_encodings
from _hostile import bump_last_char, small_order_forgery
from jwt_guard import InvalidToken, JWTGuardError, TokenVerifier
from jwt_guard._codec import b64url_encode, b64url_uint
from jwt_guard.binding.dpop import (
    DEFAULT_DPOP_ALGORITHMS,
    DPoPProof,
    DPoPVerifier,
    access_token_hash,
    confirmation_jkt,
    dpop_challenge,
    jwk_thumbprint,
    public_base_url,
    request_url,
)
from jwt_guard.errors import (
    ConfigurationError,
    DPoPBindingMismatch,
    DPoPProofExpired,
    DPoPProofMismatch,
    DPoPProofReplayed,
    InsufficientScope,
    InvalidDPoPProof,
    InvalidRequest,
    StoreUnavailable,
)
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key
from jwt_guard.testing._keys import compact_jws
from jwt_guard.testing.dpop import DPoPKey

URL = "https://api.example.com/items/42"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl"  # ath hashes any token
NOW = 1_700_000_000.0

# RFC 9449 figure 3 (section 4.1): a proof made by the RFC's authors, checked at its own iat.
RFC_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0"
    "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10"
    "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoi"
    "UE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-"
    "GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
)
RFC_IAT = 1562262616
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # RFC 9449 6.1, the same key


class Clock:
    """A wall clock and a monotonic clock that move only when told."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@dataclass
class Ctx:
    """One client key (ES256), another key, a clock and a verifier trusting nothing else."""

    clock: Clock = field(default_factory=Clock)
    key: DPoPKey = field(init=False)
    other: DPoPKey = field(init=False)
    store: MemoryReplayStore = field(init=False)
    verifier: DPoPVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.key = DPoPKey.generate("ES256", clock=self.clock)
        self.other = DPoPKey.generate("ES256", clock=self.clock)
        self.store = MemoryReplayStore(clock=self.clock.monotonic)
        self.verifier = DPoPVerifier(clock=self.clock, replay_store=self.store)

    def proof(self, key: DPoPKey | None = None, **changes: Any) -> str:
        options: dict[str, Any] = {"method": "GET", "url": URL, "access_token": TOKEN}
        options.update(changes)
        return (key or self.key).proof(options.pop("method"), options.pop("url"), **options)

    def sign(self, header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes) -> str:
        return compact_jws(header, payload, self.key.signing_key)

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.jwk}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def claims(self, **changes: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "jti": "jti-1",
            "htm": "GET",
            "htu": URL,
            "iat": int(self.clock.now),
            "ath": access_token_hash(TOKEN),
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def verify(self, proof: Any, **changes: Any) -> DPoPProof:
        options: dict[str, Any] = {
            "method": "GET",
            "url": URL,
            "access_token": TOKEN,
            "expected_jkt": self.key.jkt,
        }
        options.update(changes)
        return self.verifier.verify(proof, **options)


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


def test_a_fresh_proof_is_accepted_and_described(ctx: Ctx) -> None:
    proof = ctx.verify(ctx.proof(jti="abc"))
    assert proof.jkt == ctx.key.jkt
    assert proof.jti == "abc"
    assert proof.iat == NOW
    assert (proof.htm, proof.htu, proof.alg, proof.nonce) == ("GET", URL, "ES256", None)
    assert dict(proof.jwk) == ctx.key.jwk
    assert "d" not in proof.jwk
    with pytest.raises(TypeError):
        proof.jwk["x"] = "changed"  # type: ignore[index]


def test_the_rfc_9449_example_proof_verifies_at_its_own_time() -> None:
    verifier = DPoPVerifier(clock=lambda: RFC_IAT)
    proof = verifier.verify(RFC_PROOF, method="POST", url="https://server.example.com/token")
    assert (proof.jkt, proof.jti, proof.htm) == (RFC_JKT, "-BwC3ESc6acc2lTc", "POST")
    with pytest.raises(DPoPProofExpired):  # and not a day later
        DPoPVerifier(clock=lambda: RFC_IAT + 86400).verify(
            RFC_PROOF, method="POST", url="https://server.example.com/token"
        )


def test_thumbprint_and_ath_match_the_rfc_examples() -> None:
    # RFC 7638 3.1: the thumbprint of its example RSA key
    rsa_jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
        "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rsa_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    # RFC 9449 7.1: the ath of its example access token
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    with pytest.raises(ValueError, match="kty"):
        jwk_thumbprint({"kty": "nope"})
    with pytest.raises(ValueError, match="member"):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "AA"})


# -- every algorithm, and an independent implementation both ways ---------------------------


def _keys_for_every_algorithm(clock: Clock) -> list[DPoPKey]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [
        DPoPKey(SigningKey(None, alg, rsa_key), clock=clock)
        for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    ]
    keys += [DPoPKey.generate(a, clock=clock) for a in ("ES256", "ES384", "ES512", "ES256K")]
    keys += [DPoPKey.generate(a, clock=clock) for a in ("EdDSA", "Ed25519", "Ed448")]
    keys.append(DPoPKey.generate("EdDSA", clock=clock, curve="Ed448"))
    return keys


def test_every_default_algorithm_makes_acceptable_proofs() -> None:
    clock = Clock()
    verifier = DPoPVerifier(clock=clock)
    keys = _keys_for_every_algorithm(clock)
    assert {k.alg for k in keys} == set(DEFAULT_DPOP_ALGORITHMS)
    for key in keys:
        proof = key.proof("POST", URL, access_token=TOKEN)
        checked = verifier.verify(
            proof, method="POST", url=URL, access_token=TOKEN, expected_jkt=key.jkt
        )
        assert (checked.alg, checked.jkt) == (key.alg, key.jkt)


def _rsa(name: str) -> Any:
    """An RSA private key generated once per process (``_core_helpers`` caches it by ``name``):
    generating one takes ~0.1 s, and which RSA key signs is no part of these tests."""
    return cached_key("RS256", name=name).private


def _pyjwt_jwk(private_key: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return dict(pyjwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(pyjwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True))
    return dict(pyjwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True))


@pytest.mark.parametrize(
    ("alg", "make_key"),
    [
        pytest.param("ES256", lambda _: ec.generate_private_key(ec.SECP256R1()), id="ES256"),
        pytest.param("ES384", lambda _: ec.generate_private_key(ec.SECP384R1()), id="ES384"),
        pytest.param("RS256", _rsa, id="RS"),
        pytest.param("PS256", _rsa, id="PS"),
        pytest.param("EdDSA", lambda _: ed25519.Ed25519PrivateKey.generate(), id="EdDSA"),
    ],
)
def test_proofs_made_by_pyjwt_are_accepted(alg: str, make_key: Callable[[str], Any]) -> None:
    clock = Clock()
    verifier = DPoPVerifier(clock=clock)
    private_key = make_key("a")
    jwk = _pyjwt_jwk(private_key)
    jwk.pop("alg", None)
    payload = {
        "jti": "pyjwt-1",
        "htm": "DELETE",
        "htu": "https://api.example.com/items/42?force=1",
        "iat": int(NOW),
        "ath": base64.urlsafe_b64encode(__import__("hashlib").sha256(TOKEN.encode()).digest())
        .decode()
        .rstrip("="),
    }
    proof = pyjwt.encode(
        payload, private_key, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": jwk}
    )
    checked = verifier.verify(
        proof,
        method="DELETE",
        url=URL,
        access_token=TOKEN,
        expected_jkt=jwk_thumbprint(jwk),
    )
    assert checked.jti == "pyjwt-1"
    # PyJWT's proof for another method, or one it signed with another key, is refused
    other = pyjwt.encode(
        {**payload, "jti": "pyjwt-2"},
        make_key("other"),
        algorithm=alg,
        headers={"typ": "dpop+jwt", "jwk": jwk},
    )
    with pytest.raises(InvalidDPoPProof, match="signature"):
        verifier.verify(other, method="DELETE", url=URL, access_token=TOKEN)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA", "ES384"])
def test_our_proofs_verify_with_pyjwt(alg: str) -> None:
    if alg in ("RS256", "PS256"):
        key = DPoPKey(SigningKey(None, alg, _rsa("a")))
    else:
        key = DPoPKey.generate(alg)
    proof = key.proof("PATCH", URL, access_token=TOKEN, nonce="n-1")
    header = pyjwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    assert set(header) == {"typ", "alg", "jwk"}
    public = pyjwt.PyJWK(header["jwk"], algorithm=alg).key
    claims = pyjwt.decode(proof, public, algorithms=[alg])
    assert claims["htm"] == "PATCH"
    assert claims["htu"] == URL
    assert claims["nonce"] == "n-1"
    assert set(claims) == {"jti", "htm", "htu", "iat", "ath", "nonce"}
    digest = __import__("hashlib").sha256(TOKEN.encode("ascii")).digest()
    assert claims["ath"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(claims["jti"]) >= 16  # at least 96 random bits (RFC 9449 4.2)


def test_proofs_of_the_same_key_get_distinct_jtis() -> None:
    key = DPoPKey.generate("ES256")
    jtis = {
        pyjwt.decode(key.proof("GET", URL), options={"verify_signature": False})["jti"]
        for _ in range(50)
    }
    assert len(jtis) == 50


# -- the hostile corpus ----------------------------------------------------------------------


def _ec_private_d(key: DPoPKey) -> str:
    private = key.signing_key.private_key
    return b64url_uint(private.private_numbers().private_value, 32)


def _dup_json(first: str, second: str, **members: Any) -> bytes:
    """A JSON object naming ``first`` then ``second`` (the same name twice, different values)."""
    body = json.dumps(members)[1:-1]
    return f"{{{first}, {second}, {body}}}".encode()


def _bumped_signature(proof: str) -> str:
    head, payload, sig = proof.split(".")
    return f"{head}.{payload}.{bump_last_char(sig)}"


Make = Callable[[Ctx], dict[str, Any]]


def _p(**changes: Any) -> Make:
    """Verify a proof of ``ctx.key`` made with ``changes`` (method, url, header, claims...)."""
    return lambda c: {"proof": c.proof(**changes)}


def _req(proof_changes: dict[str, Any], **request: Any) -> Make:
    """Verify a proof made with ``proof_changes`` against a request changed by ``request``."""
    return lambda c: {"proof": c.proof(**proof_changes), **request}


HOSTILE: list[Any] = [
    # the DPoP header itself
    pytest.param(lambda c: {"proof": []}, InvalidDPoPProof, id="no-dpop-header"),
    pytest.param(lambda c: {"proof": [c.proof(), c.proof()]}, InvalidDPoPProof, id="two-headers"),
    pytest.param(
        lambda c: {"proof": f"{c.proof()}, {c.proof()}"}, InvalidDPoPProof, id="two-joined"
    ),
    pytest.param(lambda c: {"proof": ["  "]}, InvalidDPoPProof, id="empty-header"),
    pytest.param(lambda c: {"proof": [None]}, InvalidDPoPProof, id="header-not-text"),
    pytest.param(_p(claims={"pad": "x" * 9000}), InvalidDPoPProof, id="oversize-proof"),
    pytest.param(lambda c: {"proof": c.proof() + ".x.y"}, InvalidDPoPProof, id="five-segments"),
    pytest.param(lambda c: {"proof": "not.a.jws"}, InvalidDPoPProof, id="junk"),
    # strict JWS parsing, as for the access token
    pytest.param(
        lambda c: {"proof": c.proof().replace(".", "=.", 1)}, InvalidDPoPProof, id="padded-b64"
    ),
    pytest.param(
        lambda c: {"proof": _bumped_signature(c.proof())},
        InvalidDPoPProof,
        id="non-canonical-signature",
    ),
    pytest.param(
        lambda c: {
            "proof": c.sign(
                _dup_json('"typ": "JWT"', '"typ": "dpop+jwt"', alg="ES256", jwk=c.key.jwk),
                c.claims(),
            )
        },
        InvalidDPoPProof,
        id="duplicate-header-member",
    ),
    pytest.param(
        lambda c: {
            "proof": c.sign(
                c.header(),
                _dup_json(
                    '"htu": "https://evil.example/x"',
                    f'"htu": "{URL}"',
                    jti="j",
                    htm="GET",
                    iat=int(c.clock.now),
                    ath=access_token_hash(TOKEN),
                ),
            )
        },
        InvalidDPoPProof,
        id="duplicate-payload-member",
    ),
    pytest.param(
        lambda c: {"proof": c.sign(c.header(), b"[1, 2]")},
        InvalidDPoPProof,
        id="payload-not-object",
    ),
    # typ
    pytest.param(_p(header={"typ": None}), InvalidDPoPProof, id="typ-missing"),
    pytest.param(_p(header={"typ": "JWT"}), InvalidDPoPProof, id="typ-jwt"),
    pytest.param(_p(header={"typ": "at+jwt"}), InvalidDPoPProof, id="typ-access-token"),
    pytest.param(_p(header={"typ": "DPOP+JWT"}), InvalidDPoPProof, id="typ-other-case"),
    pytest.param(_p(header={"typ": ["dpop+jwt"]}), InvalidDPoPProof, id="typ-not-string"),
    # alg
    pytest.param(
        lambda c: {"proof": c.sign(c.header(alg="none"), c.claims()).rsplit(".", 1)[0] + "."},
        InvalidDPoPProof,
        id="alg-none-empty-signature",
    ),
    pytest.param(
        lambda c: {"proof": c.sign(c.header(alg="none"), c.claims())},
        InvalidDPoPProof,
        id="alg-none",
    ),
    pytest.param(
        lambda c: {
            "proof": compact_jws(
                c.header(alg="HS256", jwk={"kty": "oct", "k": b64url_encode(b"k" * 32)}),
                c.claims(),
                SigningKey("hs", "HS256", b"k" * 32),
            )
        },
        InvalidDPoPProof,
        id="alg-hmac-with-oct-jwk",
    ),
    pytest.param(_p(header={"alg": "ES384"}), InvalidDPoPProof, id="alg-not-the-keys"),
    pytest.param(_p(header={"alg": "RS256"}), InvalidDPoPProof, id="alg-other-family"),
    pytest.param(_p(header={"alg": None}), InvalidDPoPProof, id="alg-missing"),
    pytest.param(_p(header={"crit": ["exp"]}), InvalidDPoPProof, id="crit-header"),
    pytest.param(_p(header={"b64": False}), InvalidDPoPProof, id="unencoded-payload"),
    # the key: the embedded jwk, public, sound
    pytest.param(_p(header={"jwk": None, "kid": "k1"}), InvalidDPoPProof, id="kid-only-key"),
    pytest.param(_p(header={"jku": "https://evil.example/jwks"}), InvalidDPoPProof, id="jku"),
    pytest.param(_p(header={"x5u": "https://evil.example/cert"}), InvalidDPoPProof, id="x5u"),
    pytest.param(_p(header={"x5c": ["MIIB"]}), InvalidDPoPProof, id="x5c"),
    pytest.param(_p(header={"jwk": "eyJrdHkiOiJFQyJ9"}), InvalidDPoPProof, id="jwk-not-object"),
    pytest.param(
        lambda c: {"proof": c.proof(header={"jwk": {**c.key.jwk, "d": _ec_private_d(c.key)}})},
        InvalidDPoPProof,
        id="private-key-in-jwk",
    ),
    pytest.param(
        _p(header={"jwk": {"kty": "oct", "k": b64url_encode(b"k" * 32)}}),
        InvalidDPoPProof,
        id="symmetric-jwk",
    ),
    pytest.param(
        lambda c: {"proof": c.proof(header={"jwk": {**c.key.jwk, "y": c.key.jwk["x"]}})},
        InvalidDPoPProof,
        id="ec-point-off-curve",
    ),
    pytest.param(
        lambda c: {"proof": c.proof(header={"jwk": {**c.key.jwk, "use": "enc"}})},
        InvalidDPoPProof,
        id="jwk-for-encryption",
    ),
    pytest.param(
        lambda c: {"proof": c.proof(header={"jwk": {**c.key.jwk, "alg": "ES384"}})},
        InvalidDPoPProof,
        id="jwk-pinned-to-other-alg",
    ),
    pytest.param(
        lambda c: {"proof": c.proof(c.other, header={"jwk": c.key.jwk})},
        InvalidDPoPProof,
        id="signed-by-another-key-than-its-jwk",
    ),
    # claims present and typed
    pytest.param(_p(claims={"jti": None}), InvalidDPoPProof, id="jti-missing"),
    pytest.param(_p(claims={"jti": ""}), InvalidDPoPProof, id="jti-empty"),
    pytest.param(_p(claims={"jti": 12345}), InvalidDPoPProof, id="jti-number"),
    pytest.param(_p(claims={"jti": "j" * 257}), InvalidDPoPProof, id="jti-too-long"),
    pytest.param(_p(claims={"htm": None}), InvalidDPoPProof, id="htm-missing"),
    pytest.param(_p(claims={"htu": None}), InvalidDPoPProof, id="htu-missing"),
    pytest.param(
        _p(claims={"htu": ["https://api.example.com/items/42"]}),
        InvalidDPoPProof,
        id="htu-not-string",
    ),
    pytest.param(_p(claims={"iat": None}), InvalidDPoPProof, id="iat-missing"),
    pytest.param(_p(claims={"iat": str(int(NOW))}), InvalidDPoPProof, id="iat-string"),
    pytest.param(_p(claims={"iat": True}), InvalidDPoPProof, id="iat-bool"),
    pytest.param(
        lambda c: {
            "proof": c.sign(
                c.header(), json.dumps(c.claims()).replace(str(int(NOW)), "1e400").encode()
            )
        },
        InvalidDPoPProof,
        id="iat-infinite",
    ),
    pytest.param(_p(claims={"ath": None}), InvalidDPoPProof, id="ath-missing"),
    # a proof made for another request or token
    pytest.param(_p(method="get"), DPoPProofMismatch, id="htm-lower-case"),
    pytest.param(_p(method="POST"), DPoPProofMismatch, id="htm-other-method"),
    pytest.param(_p(url="https://api.example.com/items/43"), DPoPProofMismatch, id="htu-other-url"),
    pytest.param(_p(access_token="another-token"), DPoPProofMismatch, id="ath-other-token"),
    pytest.param(_req({}, access_token="another-token"), DPoPProofMismatch, id="other-token-sent"),
    pytest.param(_p(claims={"ath": "\ud800"}), DPoPProofMismatch, id="ath-lone-surrogate"),
    # iat window: 60 s + 5 s leeway either way
    pytest.param(_p(iat=NOW - 66), DPoPProofExpired, id="iat-past"),
    pytest.param(_p(iat=NOW + 66), DPoPProofExpired, id="iat-future"),
    pytest.param(_p(iat=0), DPoPProofExpired, id="iat-epoch"),
    pytest.param(_p(iat=NOW + 10**12), DPoPProofExpired, id="iat-far-future"),
    pytest.param(_p(iat=10**400), DPoPProofExpired, id="iat-huge-integer"),
    pytest.param(_p(iat=-(10**400)), DPoPProofExpired, id="iat-huge-negative-integer"),
    pytest.param(_p(iat=1e300), DPoPProofExpired, id="iat-huge-float"),
    # the token's binding
    pytest.param(
        lambda c: {"proof": c.proof(), "expected_jkt": c.other.jkt},
        DPoPBindingMismatch,
        id="jkt-of-another-key",
    ),
    pytest.param(
        lambda c: {"proof": c.proof(), "expected_jkt": 42}, DPoPBindingMismatch, id="jkt-not-str"
    ),
    pytest.param(
        lambda c: {"proof": c.proof(c.other)}, DPoPBindingMismatch, id="proof-by-token-thief"
    ),
]


@pytest.mark.parametrize(("make", "error"), HOSTILE)
def test_hostile_proofs_are_refused(ctx: Ctx, make: Make, error: type[JWTGuardError]) -> None:
    call = make(ctx)
    with pytest.raises(error) as info:
        ctx.verify(call.pop("proof"), **call)
    exc = info.value
    assert type(exc) is error, (type(exc).__name__, str(exc))
    assert exc.status == 401
    expected_error = "invalid_token" if error is DPoPBindingMismatch else "invalid_dpop_proof"
    assert exc.error == expected_error
    assert "\n" not in str(exc)
    assert len(ctx.store) == 0  # a refused proof is never remembered


def test_a_refused_proof_is_not_remembered_so_the_honest_retry_works(ctx: Ctx) -> None:
    proof = ctx.proof(jti="same")
    with pytest.raises(DPoPProofMismatch):
        ctx.verify(proof, access_token="not-the-token")
    assert ctx.verify(proof).jti == "same"


def test_small_order_ed25519_jwk_cannot_forge_proofs() -> None:
    """A small-order Ed25519 key accepts ``R = x, S = 0`` for any message: raw ``cryptography``
    takes the forgery, the key gate refuses the jwk before any signature is checked."""
    clock = Clock()
    verifier = DPoPVerifier(clock=clock)
    raw_accepted = 0
    # Claim sets are tried for the canonical encodings (as in test_attacks); the non-canonical
    # ones (nearly all of Ed448's 772) get one forgery each, which the gate refuses like any other.
    canonical = {curve.canonical(pt) for curve in CURVES.values() for pt in curve.torsion_points()}
    for curve_name, alg in (("Ed25519", "EdDSA"), ("Ed25519", "Ed25519"), ("Ed448", "Ed448")):
        for raw in small_order_encodings(CURVES[curve_name]):
            jwk = {"kty": "OKP", "crv": curve_name, "x": b64url_encode(raw)}
            header = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk}

            def claims(n: int) -> dict[str, Any]:
                return {"jti": f"forged-{n}", "htm": "GET", "htu": URL, "iat": int(NOW)}

            tries = 16 if raw in canonical else 1
            forged, accepted = small_order_forgery(header, claims, curve_name, raw, tries)
            raw_accepted += accepted
            with pytest.raises(InvalidDPoPProof, match="jwk"):
                verifier.verify(forged, method="GET", url=URL)
    assert raw_accepted  # the attack is real where the gate is missing


def test_weak_rsa_jwk_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    key = DPoPKey(SigningKey(None, "RS256", weak))
    with pytest.raises(InvalidDPoPProof, match="1024 bits"):
        DPoPVerifier().verify(key.proof("GET", URL), method="GET", url=URL)


def test_allowlist_narrows_the_algorithms(ctx: Ctx) -> None:
    verifier = DPoPVerifier(algorithms=["EdDSA"], clock=ctx.clock)
    with pytest.raises(InvalidDPoPProof, match="not allowed"):
        verifier.verify(ctx.proof(), method="GET", url=URL, access_token=TOKEN)
    ed = DPoPKey.generate("EdDSA", clock=ctx.clock)
    assert verifier.verify(ed.proof("GET", URL), method="GET", url=URL).alg == "EdDSA"


def test_proof_size_limit_is_configurable(ctx: Ctx) -> None:
    proof = ctx.proof(claims={"pad": "x" * 600})
    with pytest.raises(InvalidDPoPProof, match="exceeds 512"):
        DPoPVerifier(max_proof_size=512, clock=ctx.clock).verify(proof, method="GET", url=URL)
    assert DPoPVerifier(clock=ctx.clock).verify(proof, method="GET", url=URL, access_token=TOKEN)


def test_a_cached_header_still_gets_every_check_of_the_rest(ctx: Ctx) -> None:
    """The second proof of a key reuses what its header decided; its payload and signature are
    still parsed strictly and checked."""
    ctx.verify(ctx.proof())
    good = ctx.proof()
    head, payload, sig = good.split(".")
    for bad in (
        f"{head}.{payload}=.{sig}",
        f"{head}.{payload}.{sig}=",
        f"{head}.{payload}.{bump_last_char(sig)}",
        f"{head}.{payload}.",
        f"{head}.{payload}.{sig}.x.y",
        f"{head}.{payload}",
        f"{head}.{ctx.proof(url='https://api.example.com/other').split('.')[1]}.{sig}",
        good + "A" * 9000,
    ):
        with pytest.raises(InvalidDPoPProof):
            ctx.verify(bad)
    assert ctx.verify(good)


def test_a_flood_of_new_client_keys_keeps_the_key_cache_bounded(ctx: Ctx) -> None:
    """What a header decided is kept per header, at most 1024 of them (oldest out first): a flood
    of proofs with fresh keys costs a key check each, never memory without bound."""
    keys = [DPoPKey.generate("ES256", clock=ctx.clock) for _ in range(1100)]
    for key in keys:
        ctx.verifier.verify(key.proof("GET", URL), method="GET", url=URL)
    cache = ctx.verifier._keys  # the private cache: its size is the property under test
    assert len(cache) == 1024
    assert keys[0].proof("GET", URL).split(".")[0] not in cache
    assert ctx.verifier.verify(keys[0].proof("GET", URL), method="GET", url=URL)


# -- iat window -------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-65, -64.5, 0, 64.9, 65])
def test_iat_at_the_edges_of_the_window_is_accepted(ctx: Ctx, offset: float) -> None:
    assert ctx.verify(ctx.proof(iat=NOW + offset))


def test_iat_window_and_leeway_are_configurable(ctx: Ctx) -> None:
    import datetime

    verifier = DPoPVerifier(iat_window=datetime.timedelta(seconds=10), leeway=0, clock=ctx.clock)
    assert verifier.verify(ctx.proof(iat=NOW - 10), method="GET", url=URL)
    with pytest.raises(DPoPProofExpired):
        verifier.verify(ctx.proof(iat=NOW - 11), method="GET", url=URL)
    assert verifier.replay_ttl == 20


# -- replay -----------------------------------------------------------------------------------


def test_the_same_proof_twice_is_a_replay(ctx: Ctx) -> None:
    proof = ctx.proof()
    ctx.verify(proof)
    with pytest.raises(DPoPProofReplayed) as info:
        ctx.verify(proof)
    assert info.value.error == "invalid_dpop_proof"


def test_a_new_proof_reusing_a_jti_is_a_replay_but_not_for_another_key(ctx: Ctx) -> None:
    ctx.verify(ctx.proof(jti="j-1"))
    with pytest.raises(DPoPProofReplayed):
        ctx.verify(ctx.proof(jti="j-1", iat=NOW + 1, url=URL + "?page=2"))
    # the replay key is (jkt, jti): another client may pick the same jti
    other = ctx.proof(ctx.other, jti="j-1")
    assert ctx.verify(other, expected_jkt=ctx.other.jkt).jti == "j-1"


def test_a_jti_is_remembered_for_as_long_as_its_proof_would_be_accepted(ctx: Ctx) -> None:
    """A proof dated at the far future edge stays acceptable for 2 x 65 s: so long is its jti
    remembered, and then it is too old anyway."""
    proof = ctx.proof(iat=NOW + 65)
    ctx.verify(proof)
    ctx.clock.now += 129.9
    with pytest.raises(DPoPProofReplayed):
        ctx.verify(proof)
    ctx.clock.now += 0.2
    with pytest.raises(DPoPProofExpired):
        ctx.verify(proof)


def test_concurrent_replays_accept_exactly_one(ctx: Ctx) -> None:
    proof = ctx.proof()
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        try:
            ctx.verify(proof)
            outcomes.append("ok")
        except DPoPProofReplayed:
            outcomes.append("replayed")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["replayed"] * 7


async def test_averify_uses_the_async_store(ctx: Ctx) -> None:
    calls: list[tuple[str, float]] = []

    class AsyncOnly:
        def first_use(self, key: str, ttl: float) -> bool:
            raise AssertionError("averify must not call the blocking method")

        async def afirst_use(self, key: str, ttl: float) -> bool:
            calls.append((key, ttl))
            return len(calls) == 1

    verifier = DPoPVerifier(clock=ctx.clock, replay_store=AsyncOnly())
    proof = ctx.proof()
    checked = await verifier.averify(proof, method="GET", url=URL, access_token=TOKEN)
    assert checked.jkt == ctx.key.jkt
    with pytest.raises(DPoPProofReplayed):
        await verifier.averify(proof, method="GET", url=URL, access_token=TOKEN)
    key, ttl = calls[0]
    assert ttl == 130.0
    assert key.startswith("dpop:")
    assert len(key) <= 64
    assert key.isascii()
    assert ctx.key.jkt not in key  # a hash: no outside bytes reach the store


@pytest.mark.parametrize("answer", ["no-bool", None, 1])
def test_a_store_answer_other_than_true_is_not_new(ctx: Ctx, answer: Any) -> None:
    class Odd:
        def first_use(self, key: str, ttl: float) -> Any:
            return answer

        async def afirst_use(self, key: str, ttl: float) -> Any:
            return answer

    verifier = DPoPVerifier(clock=ctx.clock, replay_store=Odd())
    with pytest.raises(DPoPProofReplayed):
        verifier.verify(ctx.proof(), method="GET", url=URL)


def test_a_failing_store_refuses_with_503_never_accepts(ctx: Ctx) -> None:
    class Down:
        def first_use(self, key: str, ttl: float) -> bool:
            raise ConnectionError("redis://10.0.0.1 refused\nFAKE LOG LINE")

        async def afirst_use(self, key: str, ttl: float) -> bool:
            raise TimeoutError("slow")

    verifier = DPoPVerifier(clock=ctx.clock, replay_store=Down())
    with pytest.raises(StoreUnavailable) as info:
        verifier.verify(ctx.proof(), method="GET", url=URL)
    assert info.value.status == 503
    assert "\n" not in str(info.value)
    with pytest.raises(StoreUnavailable):
        asyncio.run(verifier.averify(ctx.proof(), method="GET", url=URL))


# -- htu: RFC 3986 normalisation, and what is never equal ---------------------------------


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://API.EXAMPLE.COM/items/42",
        "https://Api.Example.Com/items/42",
        "https://api.example.com:443/items/42",
        "https://api.example.com:0443/items/42",
        "https://api.example.com:/items/42",
        "https://api.example.com/items/42?q=1",
        "https://api.example.com/items/42#top",
        "https://api.example.com/items/42?q=1#top",
        "https://api.example.com/items/./42",
        "https://api.example.com/items/x/../42",
        "https://api.example.com/a/b/../../items/42",
        "https://api.example.com/%69tems/42",
        "https://api.example.com/items/%34%32",
        "https://api.example.com/items/%2E/42",
    ],
)
def test_htu_equal_after_normalisation_is_accepted(ctx: Ctx, htu: str) -> None:
    assert ctx.verify(ctx.proof(url=htu)).htu == htu


@pytest.mark.parametrize(
    "htu",
    [
        "https://api.example.com./items/42",  # a trailing-dot host is another name
        "http://api.example.com/items/42",
        "https://api.example.com:8443/items/42",
        "https://api.example.com:80/items/42",
        "https://evil.example/items/42",  # absolute-form naming another host
        "https://api.example.com.evil.example/items/42",
        "https://api.example.com@evil.example/items/42",
        "https://user@api.example.com/items/42",
        "https://api.example.com/Items/42",
        "https://api.example.com/items/42/",
        "https://api.example.com/items%2F42",
        "https://api.example.com/items/../../42",
        "https://api.example.com//items/42",
        "//api.example.com/items/42",
        "/items/42",
        "api.example.com/items/42",
        "https://api.example.com/items/42 ",
        "https://api.example.com/items/4%32%",
        "https://api.example.com:99999/items/42",
        "https://api.example.com:-443/items/42",
        "https://[::1]/items/42",
        "https://api.example.com\\@evil.example/items/42",
        "https://api.exa%6Dple.com/items/42",
        "https://api.example.com/items/\uff14\uff12",  # full-width digits
        "wss://api.example.com/items/42",
        "",
    ],
)
def test_htu_for_another_url_is_refused(ctx: Ctx, htu: str) -> None:
    with pytest.raises(DPoPProofMismatch):
        ctx.verify(ctx.proof(url=htu))


def test_the_request_url_is_normalised_too(ctx: Ctx) -> None:
    proof = ctx.proof(url="https://api.example.com/")
    assert ctx.verify(proof, url="https://API.example.com:443")
    proof = ctx.proof(url="https://[2001:DB8::1]:8443/x")
    assert ctx.verify(proof, url="https://[2001:db8::1]:8443/x")


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithms": ["HS256"]}, "HMAC"),
        ({"algorithms": ["ES256", "HS512"]}, "HMAC"),
        ({"algorithms": ["none"]}, "never"),
        ({"algorithms": []}, "at least one"),
        ({"algorithms": 256}, "list"),
        ({"algorithms": [256]}, "string"),
        ({"iat_window": 0}, "iat_window"),
        ({"iat_window": "60"}, "iat_window"),
        ({"leeway": -1}, "leeway"),
        ({"max_proof_size": 10}, "max_proof_size"),
        ({"max_proof_size": 1.5}, "max_proof_size"),
        ({"min_rsa_bits": 1024}, "min_rsa_bits"),
        ({"replay_store": {}}, "first_use"),
        ({"nonces": "secret"}, "DPoPNonces"),
        ({"clock": 5}, "clock"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DPoPVerifier(**options)


def test_a_single_algorithm_name_is_accepted() -> None:
    assert DPoPVerifier(algorithms="ES256").algorithms == ("ES256",)


# -- the challenge ---------------------------------------------------------------------------


def test_challenge_lists_algs_and_the_fixed_description(ctx: Ctx) -> None:
    with pytest.raises(InvalidDPoPProof) as info:
        ctx.verify(ctx.proof(header={"typ": "evil\r\nSet-Cookie: x"}))
    value = ctx.verifier.challenge(info.value)
    assert "\n" not in value
    assert "evil" not in value
    scheme, params = parse_challenge(value)
    assert scheme == "DPoP"
    assert params == {
        "realm": "api",
        "error": "invalid_dpop_proof",
        "error_description": "The DPoP proof is invalid",
        "algs": " ".join(DEFAULT_DPOP_ALGORITHMS),
    }
    assert parse_challenge(dpop_challenge(None, ["ES256"], realm=None)) == (
        "DPoP",
        {"algs": "ES256"},
    )


def test_challenge_for_binding_and_scope_errors() -> None:
    _, params = parse_challenge(dpop_challenge(DPoPBindingMismatch("x"), ["ES256"]))
    assert params["error"] == "invalid_token"
    assert params["error_description"] == "Invalid DPoP key binding"  # RFC 9449 7.1's example
    _, params = parse_challenge(
        dpop_challenge(InsufficientScope(scopes=("read", 'wr"ite\n')), ["ES256"], 'r"e\\alm')
    )
    assert params["scope"] == 'read wr"ite?'
    assert params["realm"] == 'r"e\\alm'


# -- the token's cnf.jkt ----------------------------------------------------------------------


def test_confirmation_jkt_reads_and_checks_cnf(ctx: Ctx) -> None:
    assert confirmation_jkt({"sub": "x"}) is None
    assert confirmation_jkt({"cnf": {"x5t#S256": "a" * 43}}) is None
    assert confirmation_jkt({"cnf": ctx.key.cnf}) == ctx.key.jkt
    for bad in ({"cnf": "jkt"}, {"cnf": {"jkt": 5}}, {"cnf": {"jkt": "short"}}):
        with pytest.raises(DPoPBindingMismatch):
            confirmation_jkt(bad)


def test_a_dpop_bound_token_from_the_local_issuer_and_its_proof(ctx: Ctx) -> None:
    with LocalIssuer() as issuer:
        token = issuer.mint(claims={"cnf": ctx.key.cnf})
        verifier = TokenVerifier(issuer=issuer.issuer, audience=issuer.audience, jwks=issuer.jwks())
        claims = verifier.verify(token)
        proof = ctx.key.proof("GET", URL, access_token=token)
        checked = ctx.verifier.verify(
            proof,
            method="GET",
            url=URL,
            access_token=token,
            expected_jkt=confirmation_jkt(claims),
        )
        assert checked.jkt == claims["cnf"]["jkt"]
        # a proof is not an access token, an access token is not a proof
        with pytest.raises(InvalidToken):
            verifier.verify(proof)
        with pytest.raises(InvalidToken):
            TokenVerifier(
                issuer=issuer.issuer, audience=issuer.audience, jwks=issuer.jwks(), typ="at+jwt"
            ).verify(proof)
        with pytest.raises(InvalidDPoPProof, match="typ"):
            ctx.verifier.verify(token, method="GET", url=URL, access_token=token)
        with pytest.raises(InvalidDPoPProof, match="typ"):  # even with the jwk a proof has
            ctx.verifier.verify(
                issuer.mint(headers={"jwk": issuer.key().public_jwk()}), method="GET", url=URL
            )


# -- the client helper ----------------------------------------------------------------------


def test_dpop_key_helper() -> None:
    clock = Clock(1234.9)
    key = DPoPKey.generate("ES256", clock=clock)
    assert key.alg == "ES256"
    assert key.cnf == {"jkt": key.jkt}
    assert set(key.jwk) == {"kty", "crv", "x", "y"}
    assert repr(key).startswith("DPoPKey(alg='ES256'")
    claims = pyjwt.decode(key.proof("GET", URL), options={"verify_signature": False})
    assert claims["iat"] == 1234
    assert set(claims) == {"jti", "htm", "htu", "iat"}
    odd = key.proof("GET", URL, header={"typ": None, "kid": "k"}, claims={"htm": None, "x": 1})
    assert "typ" not in pyjwt.get_unverified_header(odd)
    assert pyjwt.decode(odd, options={"verify_signature": False})["x"] == 1
    with pytest.raises(ConfigurationError):
        DPoPKey(generate_key("HS256"))


# -- the request's public URL: from configuration, never from Host ---------------------------


@pytest.mark.parametrize(
    ("configured", "base"),
    [
        ("https://api.example.com", "https://api.example.com"),
        ("https://API.example.com:443/", "https://api.example.com"),
        ("https://api.example.com/v1/", "https://api.example.com/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_public_base_url_is_checked_once(configured: str, base: str) -> None:
    assert public_base_url(configured) == base


@pytest.mark.parametrize(
    "configured",
    [
        "api.example.com",
        "ftp://api.example.com",
        "https://api.example.com/?x=1",
        "https://api.example.com/#top",
        "https://user@api.example.com",
        "https:///path",
        "https://api example.com",
        5,
    ],
)
def test_bad_public_urls_are_configuration_errors(configured: Any) -> None:
    with pytest.raises(ConfigurationError, match="public_url"):
        public_base_url(configured)


def test_request_url_appends_the_raw_path() -> None:
    base = public_base_url("https://api.example.com/v1")
    assert request_url(base, "/items/42?x=1#f") == "https://api.example.com/v1/items/42"
    assert request_url(base, b"/caf\xc3\xa9") == "https://api.example.com/v1/caf%C3%A9"
    assert request_url(base, "/café") == "https://api.example.com/v1/caf%C3%A9"
    assert request_url(base, "/a%2Fb") == "https://api.example.com/v1/a%2Fb"
    for target in ("https://evil.example/items/42", "*", "", "items/42"):
        with pytest.raises(InvalidRequest):
            request_url(base, target)


def test_absolute_form_and_host_tricks_never_move_the_htu(ctx: Ctx) -> None:
    """Whatever a request line or Host header names, the URL compared is the configured one plus
    the path: a proof made for another host never matches."""
    base = public_base_url("https://api.example.com")
    for path, htu in (
        ("//evil.example/items/42", "https://evil.example/items/42"),
        ("/items/42", "https://evil.example/items/42"),
        ("/items/42", "https://api.example.com.evil.example/items/42"),
    ):
        with pytest.raises(DPoPProofMismatch):
            ctx.verify(ctx.proof(url=htu), url=request_url(base, path))
    assert ctx.verify(ctx.proof(), url=request_url(base, "/items/42?page=2"))


# -- fuzzing: whatever comes, a verified proof or a JWTGuardError, never anything else ---------

FUZZ = settings(
    max_examples=int(os.environ.get("JWT_GUARD_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_members = st.dictionaries(
    st.sampled_from(
        [
            "typ",
            "alg",
            "jwk",
            "kid",
            "crit",
            "b64",
            "jti",
            "htm",
            "htu",
            "iat",
            "ath",
            "nonce",
            "x5c",
            "jku",
        ]
    )
    | st.text(max_size=8),
    _json_values,
    max_size=4,
)


def _refused_or_verified(call: Callable[[], Any]) -> Any:
    refusal: JWTGuardError | None = None
    try:
        return call()
    except JWTGuardError as exc:
        refusal = exc
    assert refusal.status in (401, 503)
    assert "\n" not in str(refusal)
    return None


@FUZZ
@given(values=st.lists(st.text(max_size=300), max_size=3))
def test_arbitrary_dpop_header_values(values: list[str]) -> None:
    ctx = Ctx()
    assert _refused_or_verified(lambda: ctx.verify(values)) is None


@FUZZ
@given(header=_members, claims=_members)
def test_validly_signed_arbitrary_headers_and_claims(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    ctx = Ctx()
    proof = ctx.sign({**ctx.header(), **header}, {**ctx.claims(), **claims})
    _refused_or_verified(lambda: ctx.verify(proof))


@FUZZ
@given(data=st.data())
def test_single_byte_mutations_of_a_valid_proof(data: st.DataObject) -> None:
    ctx = Ctx()
    original = ctx.proof()
    at = data.draw(st.integers(0, len(original) - 1), label="at")
    char = data.draw(st.characters(codec="latin-1"), label="char")
    mutated = original[:at] + char + original[at + 1 :]
    result = _refused_or_verified(lambda: ctx.verify(mutated))
    assert result is None or mutated == original


@FUZZ
@given(
    htu=st.text(max_size=60) | st.sampled_from(["https://api.example.com/", URL]),
    url=st.text(max_size=60) | st.just(URL),
)
def test_arbitrary_htu_and_request_urls(htu: str, url: str) -> None:
    ctx = Ctx()
    _refused_or_verified(lambda: ctx.verify(ctx.proof(url=htu), url=url))
