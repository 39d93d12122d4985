"""The algorithm table: every alg verifies independent signatures and refuses forged ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from _core_helpers import ALG_CASES, ALG_IDS, EDDSA_NAMES, make_key, sign
from jwt_guard.keys.algorithms import ALGORITHMS
from jwt_guard.keys.algorithms import make_key as make_verifier

MSG = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ"


def _public(private: Any) -> Any:
    return private if isinstance(private, bytes) else private.public_key()


def test_the_table_lists_every_supported_algorithm() -> None:
    assert set(ALGORITHMS) == {
        *(f"{fam}{n}" for fam in ("HS", "RS", "PS") for n in (256, 384, 512)),
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
        "EdDSA",
        "Ed25519",  # RFC 9864 fully specified names
        "Ed448",
    }
    assert "none" not in {a.lower() for a in ALGORITHMS}


@pytest.mark.parametrize(
    ("alg", "kty", "curves"),
    [
        pytest.param("HS256", "oct", set(), id="HS256"),
        pytest.param("RS256", "RSA", set(), id="RS256"),
        pytest.param("PS512", "RSA", set(), id="PS512"),
        pytest.param("ES256", "EC", {"P-256"}, id="ES256"),
        pytest.param("ES384", "EC", {"P-384"}, id="ES384"),
        pytest.param("ES512", "EC", {"P-521"}, id="ES512"),
        pytest.param("ES256K", "EC", {"secp256k1"}, id="ES256K"),
        pytest.param("EdDSA", "OKP", {"Ed25519", "Ed448"}, id="EdDSA"),
        pytest.param("Ed25519", "OKP", {"Ed25519"}, id="Ed25519"),
        pytest.param("Ed448", "OKP", {"Ed448"}, id="Ed448"),
    ],
)
def test_each_algorithm_is_bound_to_its_key_family(alg: str, kty: str, curves: set[str]) -> None:
    assert ALGORITHMS[alg].kty == kty
    assert ALGORITHMS[alg].curves == curves


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_verifies_an_independent_signature_and_refuses_a_flipped_bit(
    alg: str, crv: str | None
) -> None:
    key = make_key(alg, crv=crv)
    verifier = make_verifier(alg, _public(key.private))
    sig = sign(alg, key.private, MSG)
    assert verifier.verify(MSG, sig) is True
    flipped = bytes([sig[0] ^ 0x01]) + sig[1:]
    assert verifier.verify(MSG, flipped) is False
    assert verifier.verify(MSG + b"x", sig) is False


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_signs_what_an_independent_verifier_accepts(alg: str, crv: str | None) -> None:
    key = make_key(alg, crv=crv)
    signature = make_verifier(alg, key.private).sign(MSG)
    if alg.startswith("HS") or alg in EDDSA_NAMES:  # deterministic: the exact bytes must match
        assert signature == sign(alg, key.private, MSG)
    else:
        assert make_verifier(alg, key.private.public_key()).verify(MSG, signature)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s + b"\x00", id="extended"),
        pytest.param(lambda s: b"\x00" * len(s), id="zeros"),
    ],
)
@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_wrong_length_signatures_return_false_not_raise(
    alg: str, crv: str | None, mangle: Callable[[bytes], bytes]
) -> None:
    key = make_key(alg, crv=crv)
    verifier = make_verifier(alg, _public(key.private))
    assert verifier.verify(MSG, mangle(sign(alg, key.private, MSG))) is False


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "ES256K"])
def test_ecdsa_accepts_only_raw_r_s_not_der(alg: str) -> None:
    key = make_key(alg)
    h = hashes.SHA256() if alg == "ES256K" else getattr(hashes, "SHA" + alg[2:])()
    der = key.private.sign(MSG, ec.ECDSA(h))
    assert make_verifier(alg, key.private.public_key()).verify(MSG, der) is False


@pytest.mark.parametrize("alg", ["ES256", "ES256K"])
def test_ecdsa_refuses_zero_r_or_s(alg: str) -> None:
    verifier = make_verifier(alg, make_key(alg).private.public_key())
    assert verifier.verify(MSG, b"\x00" * 32 + b"\x01" * 32) is False
    assert verifier.verify(MSG, b"\x01" * 32 + b"\x00" * 32) is False


@pytest.mark.parametrize(
    ("alg", "other"),
    [
        pytest.param("RS256", "PS256", id="pkcs1-signature-as-pss"),
        pytest.param("PS256", "RS256", id="pss-signature-as-pkcs1"),
        pytest.param("RS256", "RS512", id="other-hash"),
        pytest.param("PS384", "PS256", id="pss-other-hash"),
        pytest.param("HS256", "HS512", id="hmac-other-hash"),
    ],
)
def test_a_signature_verifies_under_its_own_algorithm_only(alg: str, other: str) -> None:
    key = make_key(alg)
    sig = sign(alg, key.private, MSG)
    assert make_verifier(other, _public(key.private)).verify(MSG, sig) is False


def test_pss_uses_a_salt_as_long_as_the_hash() -> None:
    # RFC 7518 3.5: salt length = hash output length. A max-length salt is another scheme.
    key = make_key("PS256").private
    h = hashes.SHA256()
    sig = key.sign(MSG, padding.PSS(padding.MGF1(h), padding.PSS.MAX_LENGTH), h)
    assert make_verifier("PS256", key.public_key()).verify(MSG, sig) is False


def test_python_jose_cryptography_backend_is_the_one_in_use() -> None:
    from jose.backends import ECKey, HMACKey, RSAKey
    from jose.backends.base import Key as JoseKey
    from jose.backends.cryptography_backend import (
        CryptographyECKey,
        CryptographyHMACKey,
        CryptographyRSAKey,
    )

    # python-jose picked its cryptography backend, not the pure-Python fallbacks...
    assert (RSAKey, ECKey, HMACKey) == (CryptographyRSAKey, CryptographyECKey, CryptographyHMACKey)
    # ...and every jwt_guard key class is a python-jose Key (HS/RS/PS/ES on that backend).
    for name, spec in ALGORITHMS.items():
        assert issubclass(spec.key_class, JoseKey), name
        if spec.kty in ("oct", "RSA", "EC"):
            assert issubclass(
                spec.key_class, (CryptographyHMACKey, CryptographyRSAKey, CryptographyECKey)
            ), name


# A fresh interpreter: snapshot python-jose's registry, import jwt_guard, verify a token of every
# algorithm (static keys, TokenVerifier, verify_jws, the local issuer serving the RS256, ES256 and
# Ed25519 ones), then report what changed.
_ISOLATED = r"""
import json, sys, time
from jose import jwk
from jose.constants import ALGORITHMS as JOSE
before = (dict(JOSE.KEYS), set(JOSE.SUPPORTED), {a: jwk.get_key(a) for a in ("PS256", "EdDSA")})

import jwt_guard
from jwt_guard import TokenVerifier
from jwt_guard.core.jws import verify_jws
from jwt_guard.keys.algorithms import ALGORITHMS
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key
from jwt_guard.testing._keys import compact_jws

verified, first, rsa = [], {}, None
for alg, spec in ALGORITHMS.items():
    curves = sorted(spec.curves) or [None]
    for crv in curves:
        if spec.kty == "RSA":  # one RSA key for every RS*/PS* name: a new one costs 0.1 s
            rsa = rsa or generate_key(alg).private_key
            key = SigningKey("k-" + alg, alg, rsa)
        else:
            key = generate_key(alg, "k-" + alg, curve=crv)
        first.setdefault(alg, key)
        now = int(time.time())
        claims = {"iss": "https://i.test", "aud": "a", "iat": now, "exp": now + 60}
        tok = compact_jws({"alg": alg, "kid": key.kid}, json.dumps(claims), key)
        jwks = {"keys": [key.public_jwk()]}
        verify_jws(tok, jwks, algorithms=[alg])
        TokenVerifier(issuer="https://i.test", audience="a", jwks=jwks).verify(tok)
        verified.append(f"{alg}/{crv}")
with LocalIssuer(keys=[first["RS256"], first["ES256"], first["EdDSA"]]) as issuer:
    remote = TokenVerifier(issuer=issuer.issuer, audience=issuer.audience, jwks_url=issuer.jwks_url)
    for alg in ("RS256", "ES256", "EdDSA"):
        remote.verify(issuer.mint(alg=alg))

after = (dict(JOSE.KEYS), set(JOSE.SUPPORTED), {a: jwk.get_key(a) for a in ("PS256", "EdDSA")})
print(json.dumps({
    "verified": verified,
    "registry_unchanged": before == after,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("ecdsa", "rsa", "pyasn1")
                      or m in ("jose.backends.rsa_backend", "jose.backends.ecdsa_backend")),
}))
"""


@pytest.fixture(scope="module")
def isolated() -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _ISOLATED], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_a_fresh_process_verifies_every_algorithm(isolated: dict[str, Any]) -> None:
    expected = [
        f"{alg}/{crv}" for alg, s in ALGORITHMS.items() for crv in sorted(s.curves) or [None]
    ]
    assert isolated["verified"] == expected


def test_python_jose_pure_python_backends_are_never_imported(isolated: dict[str, Any]) -> None:
    # python-jose depends on ecdsa (CVE-2024-23342, unfixed), rsa and pyasn1; jwt_guard uses its
    # cryptography backend only, so none of them is ever loaded.
    assert isolated["modules"] == []


def test_python_jose_registry_is_left_as_it_ships(isolated: dict[str, Any]) -> None:
    # Other code in the process using python-jose sees python-jose as it ships: jwt_guard's
    # PS*/ES256K/EdDSA key classes are not registered into jose.jwk.
    assert isolated["registry_unchanged"] is True
