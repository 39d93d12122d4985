"""KeySet: which key a token gets, which keys are never used, and why."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import pytest

from _core_helpers import (
    ALG_CASES,
    ALG_IDS,
    AUDIENCE,
    ISSUER,
    Key,
    b64e,
    claims_at,
    make_key,
    token,
)
from _edwards import CURVES, ED448, ED25519, LIBSODIUM_ED25519_BLOCKLIST, small_order_encodings
from jwt_guard import ConfigurationError, TokenVerifier
from jwt_guard._codec import b64url_uint
from jwt_guard.errors import AlgorithmNotAllowed, UnknownKey
from jwt_guard.keys.algorithms import ALGORITHMS
from jwt_guard.keys.jwk import KEPT_REASONS, KeyRejected, KeySet, build_key, thumbprint


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return make_key("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return make_key("ES256", "ec-1")


@pytest.fixture
def keyset_of() -> Any:
    def build(*jwks: dict[str, Any], **kwargs: Any) -> KeySet:
        return KeySet.from_jwks({"keys": list(jwks)}, **kwargs)

    return build


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_each_key_type_builds_and_is_found_by_kid(
    alg: str, crv: str | None, keyset_of: Any
) -> None:
    key = make_key(alg, "the-kid", crv=crv)
    keyset = keyset_of(key.public_jwk())
    assert len(keyset) == 1
    assert keyset.kids == {"the-kid"}
    assert "the-kid" in keyset
    assert alg in keyset.keys[0].algorithms
    assert keyset.find("the-kid", alg).verify(b"m", key.sign(b"m"))


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        pytest.param("RS256", {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, id="RSA"),
        pytest.param("ES384", {"ES384"}, id="P-384"),
        pytest.param("EdDSA", {"EdDSA", "Ed25519"}, id="OKP-Ed25519"),
        pytest.param("Ed448", {"EdDSA", "Ed448"}, id="OKP-Ed448"),
        pytest.param("HS256", {"HS256"}, id="oct-32-bytes"),
        pytest.param("HS512", {"HS256", "HS384", "HS512"}, id="oct-64-bytes"),
    ],
)
def test_an_unpinned_key_verifies_only_its_own_family(
    alg: str, expected: set[str], keyset_of: Any
) -> None:
    keyset = keyset_of(make_key(alg).public_jwk())
    assert keyset.keys[0].algorithms == expected


def test_without_kid_the_single_fitting_key_is_used(
    rsa_key: Key, ec_key: Key, keyset_of: Any
) -> None:
    keyset = keyset_of(rsa_key.with_kid(None).public_jwk(), ec_key.with_kid(None).public_jwk())
    assert keyset.find(None, "ES256").verify(b"m", ec_key.sign(b"m"))
    assert keyset.find(None, "RS256").verify(b"m", rsa_key.sign(b"m"))


def test_without_kid_two_fitting_keys_are_ambiguous(ec_key: Key, keyset_of: Any) -> None:
    other = make_key("ES256", None, name="other")
    keyset = keyset_of(ec_key.public_jwk(), other.public_jwk())
    with pytest.raises(UnknownKey, match="no single key"):
        keyset.find(None, "ES256")
    assert keyset.find(ec_key.kid, "ES256").verify(b"m", ec_key.sign(b"m"))


def test_a_duplicate_kid_is_refused_not_guessed(ec_key: Key, keyset_of: Any) -> None:
    twin = make_key("ES256", ec_key.kid, name="twin")
    keyset = keyset_of(ec_key.public_jwk(), twin.public_jwk())
    with pytest.raises(UnknownKey, match="more than one"):
        keyset.find(ec_key.kid, "ES256")


def test_an_unknown_kid_is_unknown_key(ec_key: Key, keyset_of: Any) -> None:
    with pytest.raises(UnknownKey):
        keyset_of(ec_key.public_jwk()).find("nope", "ES256")


@pytest.mark.parametrize(
    ("key_alg", "jwk_extra", "token_alg"),
    [
        pytest.param("RS256", {}, "HS256", id="rsa-key-hs256-token"),
        pytest.param("RS256", {}, "ES256", id="rsa-key-es256-token"),
        pytest.param("ES384", {}, "ES256", id="p384-key-es256-token"),
        pytest.param("ES256", {}, "ES256K", id="p256-key-es256k-token"),
        pytest.param("ES256", {}, "RS256", id="ec-key-rs256-token"),
        pytest.param("RS256", {"alg": "RS256"}, "PS256", id="pinned-rs256-ps256-token"),
        pytest.param("RS256", {"alg": "PS256"}, "RS256", id="pinned-ps256-rs256-token"),
        pytest.param("HS256", {"alg": "HS256"}, "HS512", id="pinned-hs256-hs512-token"),
        pytest.param("EdDSA", {}, "ES256", id="okp-key-es256-token"),
    ],
)
def test_the_key_decides_the_algorithm(
    key_alg: str, jwk_extra: dict[str, Any], token_alg: str, keyset_of: Any
) -> None:
    keyset = keyset_of(make_key(key_alg, "k").public_jwk(**jwk_extra))
    with pytest.raises(AlgorithmNotAllowed):
        keyset.find("k", token_alg)
    with pytest.raises(UnknownKey):
        keyset.find(None, token_alg)


@pytest.mark.parametrize(
    ("jwk_extra", "reason"),
    [
        pytest.param({"use": "enc"}, "'use'", id="use-enc"),
        pytest.param({"use": ""}, "'use'", id="use-empty"),
        pytest.param({"key_ops": ["encrypt"]}, "key_ops", id="key-ops-encrypt"),
        pytest.param({"key_ops": ["sign"]}, "key_ops", id="key-ops-sign-only"),
        pytest.param({"key_ops": []}, "key_ops", id="key-ops-empty"),
        pytest.param({"key_ops": "verify"}, "key_ops", id="key-ops-not-a-list"),
        pytest.param({"alg": "none"}, "not supported", id="pinned-none"),
        pytest.param({"alg": "RSA-OAEP"}, "not supported", id="pinned-encryption-alg"),
        pytest.param({"alg": "ES256"}, "does not fit", id="pinned-other-family"),
        pytest.param({"alg": ["RS256"]}, "not supported", id="pinned-alg-a-list"),
        pytest.param({"alg": {"name": "RS256"}}, "not supported", id="pinned-alg-an-object"),
        pytest.param({"kid": 7}, "'kid'", id="kid-not-a-string"),
        pytest.param({"kty": None}, "'kty'", id="kty-missing"),
        pytest.param({"kty": "RSA-PSS"}, "unsupported", id="kty-unknown"),
        pytest.param({"e": "AQ"}, "exponent", id="exponent-1"),
        pytest.param({"e": "Ag"}, "exponent", id="exponent-even"),
        pytest.param({"n": None}, "'n'", id="modulus-missing"),
        pytest.param({"n": "AQAB=="}, "base64url", id="modulus-padded"),
    ],
)
def test_unusable_rsa_keys_are_skipped_with_a_reason(
    rsa_key: Key, jwk_extra: dict[str, Any], reason: str, keyset_of: Any
) -> None:
    jwk = rsa_key.public_jwk(**jwk_extra)  # a None value drops the member
    keyset = keyset_of(jwk, make_key("ES256", "good").public_jwk())
    assert keyset.kids == {"good"}
    assert len(keyset.skipped) == 1
    assert reason in keyset.skipped[0]
    with pytest.raises(ConfigurationError, match=reason.replace("'", ".")):
        keyset_of(jwk, strict=True)


@pytest.mark.parametrize(
    ("key_ops", "use"),
    [
        pytest.param(["verify"], "sig", id="verify"),
        pytest.param(["sign", "verify"], None, id="sign-and-verify"),
    ],
)
def test_signature_keys_with_verify_are_used(
    ec_key: Key, key_ops: list[str], use: str | None, keyset_of: Any
) -> None:
    keyset = keyset_of(ec_key.public_jwk(key_ops=key_ops, use=use))
    assert keyset.find(ec_key.kid, "ES256").verify(b"m", ec_key.sign(b"m"))


def test_rsa_under_2048_bits_is_refused(keyset_of: Any) -> None:
    small = make_key("RS256", "small", name="small", bits=1024)
    keyset = keyset_of(small.public_jwk())
    assert len(keyset) == 0
    assert "1024 bits is under 2048" in keyset.skipped[0]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        pytest.param({"x": "A" * 42 + "E", "y": "A" * 42 + "E"}, "invalid key", id="off-curve"),
        pytest.param({"x": b64e(b"\x01" * 31)}, "bytes, expected 32", id="short-x"),
        pytest.param({"crv": "P-384"}, "bytes, expected 48", id="curve-mismatch"),
        pytest.param({"crv": "P-192"}, "unsupported", id="unsupported-curve"),
        pytest.param({"y": None}, "'y'", id="missing-y"),
    ],
)
def test_broken_ec_keys_are_skipped(
    ec_key: Key, mutate: dict[str, Any], reason: str, keyset_of: Any
) -> None:
    keyset = keyset_of(ec_key.public_jwk(**mutate))
    assert len(keyset) == 0
    assert reason in keyset.skipped[0]


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({"kty": "OKP", "crv": "Ed25519", "x": b64e(b"\x01" * 31)}, id="ed25519-short"),
        pytest.param({"kty": "OKP", "crv": "X25519", "x": b64e(b"\x01" * 32)}, id="x25519"),
        pytest.param({"kty": "oct", "k": b64e(b"\x01" * 31)}, id="hmac-secret-too-short"),
        pytest.param({"kty": "oct", "k": ""}, id="hmac-secret-empty"),
        pytest.param("not-an-object", id="not-an-object"),
        pytest.param(["kty", "RSA"], id="array"),
    ],
)
def test_other_unusable_keys_are_skipped(jwk: Any, keyset_of: Any) -> None:
    keyset = keyset_of(jwk)
    assert len(keyset) == 0
    assert len(keyset.skipped) == 1


def test_symmetric_keys_only_where_allowed(keyset_of: Any) -> None:
    jwk = make_key("HS256").public_jwk()
    assert len(keyset_of(jwk)) == 1
    refused = keyset_of(jwk, allow_oct=False)
    assert len(refused) == 0
    assert "symmetric" in refused.skipped[0]


def test_the_algorithm_allowlist_filters_keys(rsa_key: Key, ec_key: Key, keyset_of: Any) -> None:
    keyset = keyset_of(rsa_key.public_jwk(), ec_key.public_jwk(), algorithms=["ES256"])
    assert keyset.kids == {ec_key.kid}
    assert keyset.keys[0].algorithms == {"ES256"}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param([], id="array"),
        pytest.param({}, id="no-keys"),
        pytest.param({"keys": {}}, id="keys-not-a-list"),
        pytest.param(None, id="null"),
    ],
)
def test_a_document_that_is_not_a_jwk_set_is_a_value_error(document: Any) -> None:
    with pytest.raises(ValueError, match="JWK Set"):
        KeySet.from_jwks(document)


def test_still_verifies_follows_the_key_material_across_refetches(
    ec_key: Key, keyset_of: Any
) -> None:
    from jwt_guard.testing import generate_key

    first = keyset_of(ec_key.public_jwk())
    fingerprint = first.fingerprint_for(ec_key.kid, "ES256")
    assert first.still_verifies(ec_key.kid, "ES256", fingerprint)
    rebuilt = keyset_of(ec_key.public_jwk())  # a refetch builds new objects for the same key
    assert rebuilt.still_verifies(ec_key.kid, "ES256", fingerprint)
    swapped = keyset_of({**generate_key("ES256").public_jwk(), "kid": ec_key.kid})
    assert not swapped.still_verifies(ec_key.kid, "ES256", fingerprint)
    assert not first.still_verifies("gone", "ES256", fingerprint)
    assert not first.still_verifies(ec_key.kid, "ES384", fingerprint)
    assert not first.still_verifies(ec_key.kid, "ES256", None)


def test_thumbprint_covers_the_key_material_only(ec_key: Key) -> None:
    jwk = ec_key.public_jwk()
    same = dict(reversed(list(ec_key.public_jwk(kid="other", use="sig", alg="ES256").items())))
    assert thumbprint(jwk) == thumbprint(same)
    assert thumbprint(jwk) != thumbprint(make_key("ES256", name="z").public_jwk())


# -- member types (RFC 7517 4): a present member is never null or of another type -------------


@pytest.mark.parametrize(
    ("member", "value", "reason"),
    [
        pytest.param("key_ops", None, "array of unique strings", id="key-ops-null"),
        pytest.param("key_ops", ["verify", "verify"], "array of unique", id="key-ops-duplicate"),
        pytest.param("key_ops", ["verify", 1], "array of unique strings", id="key-ops-number"),
        pytest.param("key_ops", ["verify", None], "array of unique strings", id="key-ops-null-op"),
        pytest.param("key_ops", {"verify": True}, "array of unique", id="key-ops-object"),
        pytest.param("use", None, "not a string", id="use-null"),
        pytest.param("use", 1, "not a string", id="use-number"),
        pytest.param("use", ["sig"], "not a string", id="use-list"),
        pytest.param("alg", None, "not supported", id="alg-null"),
        pytest.param("kid", None, "'kid' is not a string", id="kid-null"),
    ],
)
def test_members_of_the_wrong_type_skip_the_key(
    ec_key: Key, member: str, value: Any, reason: str, keyset_of: Any
) -> None:
    jwk = {**ec_key.public_jwk(), member: value}
    keyset = keyset_of(jwk, make_key("ES256", "good", name="good").public_jwk())
    assert keyset.kids == {"good"}
    assert reason in keyset.skipped[0]
    with pytest.raises(ConfigurationError, match=reason.replace("'", ".")):
        keyset_of(jwk, strict=True)


# -- HMAC secrets (RFC 7518 3.2: at least as long as the hash) ----------------------------------


@pytest.mark.parametrize(
    ("size", "algorithms", "reason"),
    [
        pytest.param(
            16, ["HS256"], "HMAC key of 16 bytes is shorter than the hash of HS256 (32 bytes)"
        ),
        pytest.param(
            40, ["HS384", "HS512"], "40 bytes is shorter than the hash of HS384 (48 bytes)"
        ),
        pytest.param(32, ["HS512"], "32 bytes is shorter than the hash of HS512 (64 bytes)"),
    ],
)
def test_a_short_hmac_secret_is_refused_saying_so(
    size: int, algorithms: list[str], reason: str, keyset_of: Any
) -> None:
    jwk = {"kty": "oct", "kid": "hs", "k": b64e(b"\x07" * size)}
    keyset = keyset_of(jwk, algorithms=algorithms)
    assert len(keyset) == 0
    assert reason in keyset.skipped[0]
    with pytest.raises(UnknownKey, match="shorter than the hash"):  # the detail says why
        keyset.find(None, algorithms[0])
    with pytest.raises(UnknownKey, match="shorter than the hash"):
        keyset.find("hs", algorithms[0])
    with pytest.raises(ConfigurationError, match=re.escape(reason)):
        keyset_of(jwk, algorithms=algorithms, strict=True)


def test_an_hmac_secret_verifies_only_the_hashes_it_is_long_enough_for(keyset_of: Any) -> None:
    jwk = {"kty": "oct", "kid": "hs", "k": b64e(b"\x07" * 48)}
    keyset = keyset_of(jwk, algorithms=["HS256", "HS384", "HS512"], strict=True)
    assert keyset.keys[0].algorithms == {"HS256", "HS384"}


# -- RSA public keys: plausible numbers only ----------------------------------------------------


def _odd_modulus(bits: int) -> int:
    # Not a product of two primes, but the checks (and a verify) treat it like one.
    return (
        int.from_bytes(hashlib.sha512(str(bits).encode()).digest() * (bits // 512 + 1), "big")
        % (1 << bits)
        | (1 << (bits - 1))
        | 1
    )


def _rsa_jwk(n: int, e: int = 65537) -> dict[str, Any]:
    return {"kty": "RSA", "kid": "r", "n": b64url_uint(n), "e": b64url_uint(e)}


@pytest.mark.parametrize(
    ("n_bits", "e", "even_n", "reason"),
    [
        pytest.param(2048, 65537, True, "modulus is even", id="even-modulus"),
        pytest.param(2048, 65536, False, "exponent is invalid", id="even-exponent"),
        pytest.param(2048, 1, False, "exponent is invalid", id="exponent-1"),
        pytest.param(2048, 2**32 + 1, False, "exponent is invalid", id="exponent-over-32-bits"),
        pytest.param(2048, 2**2047 + 1, False, "exponent is invalid", id="exponent-near-modulus"),
        pytest.param(8200, 65537, False, "8200 bits is over 8192", id="modulus-over-8192-bits"),
        pytest.param(16384, 65537, False, "16384 bits is over 8192", id="modulus-16384-bits"),
    ],
)
def test_implausible_rsa_keys_are_refused(
    n_bits: int, e: int, even_n: bool, reason: str, keyset_of: Any
) -> None:
    n = _odd_modulus(n_bits) - (1 if even_n else 0)
    keyset = keyset_of(_rsa_jwk(n, e))
    assert len(keyset) == 0
    assert reason in keyset.skipped[0]
    with pytest.raises(ConfigurationError, match=reason):
        keyset_of(_rsa_jwk(n, e), strict=True)


@pytest.mark.parametrize(
    ("n_bits", "e"),
    [
        pytest.param(2048, 3, id="exponent-3"),
        pytest.param(2048, 2**32 - 1, id="exponent-32-bits"),
        pytest.param(8192, 65537, id="modulus-8192-bits"),
    ],
)
def test_the_limits_themselves_are_accepted(n_bits: int, e: int, keyset_of: Any) -> None:
    keyset = keyset_of(_rsa_jwk(_odd_modulus(n_bits), e), strict=True)
    assert keyset.kids == {"r"}


# -- Ed25519 / Ed448: canonical points on the curve, never of small order -----------------------


def test_the_small_order_points_are_all_there() -> None:
    # The proof below is only as good as this list: derived as [L]P in tests/_edwards.py, it
    # must hold 8 points for Ed25519 (orders 1, 2, 4, 4, 8, 8, 8, 8) and 4 for Ed448, and match
    # what others publish: libsodium's blocklist, and (0, ±1), (±1, 0) for Ed448.
    ed25519_points = ED25519.torsion_points()
    assert sorted(ED25519.point_order(pt) for pt in ed25519_points) == [1, 2, 4, 4, 8, 8, 8, 8]
    assert all(ED25519.on_curve(pt) for pt in ed25519_points)
    encodings = small_order_encodings(ED25519)
    assert len(encodings) == 14  # 8 points, plus 6 non-canonical spellings
    assert {e[:31] + bytes([e[31] & 0x7F]) for e in encodings} == LIBSODIUM_ED25519_BLOCKLIST
    p = ED448.p
    assert ED448.torsion_points() == {(0, 1), (0, p - 1), (1, 0), (p - 1, 0)}
    assert sorted(ED448.point_order(pt) for pt in ED448.torsion_points()) == [1, 2, 4, 4]
    assert len(small_order_encodings(ED448)) > 4 * 64  # y + k*p fits 455 bits for k up to ~127


@pytest.mark.parametrize("crv", ["Ed25519", "Ed448"])
def test_every_small_order_point_is_refused_in_every_encoding(crv: str, keyset_of: Any) -> None:
    curve = CURVES[crv]
    canonical = {curve.canonical(pt) for pt in curve.torsion_points()}
    bad = small_order_encodings(curve)
    for raw in bad:
        jwk = {"kty": "OKP", "crv": crv, "x": b64e(raw)}
        with pytest.raises(KeyRejected) as excinfo:
            build_key(jwk, allowed=ALGORITHMS, allow_oct=False)
        expected = "small order" if raw in canonical else "not canonically encoded"
        assert expected in str(excinfo.value), raw.hex()
        with pytest.raises(ConfigurationError, match=expected):
            keyset_of(jwk, strict=True)
    good = make_key("EdDSA", "good", crv=crv).public_jwk()
    jwks = [{"kty": "OKP", "crv": crv, "kid": f"bad-{i}", "x": b64e(r)} for i, r in enumerate(bad)]
    keyset = keyset_of(*jwks, good)
    assert keyset.kids == {"good"}
    assert keyset.skipped_count == len(bad)
    with pytest.raises(UnknownKey, match="small order"):
        keyset.find("bad-0", "EdDSA")


@pytest.mark.parametrize("crv", ["Ed25519", "Ed448"])
def test_okp_points_must_be_canonical_and_on_the_curve(crv: str, keyset_of: Any) -> None:
    curve = CURVES[crv]
    top = 1 << (8 * curve.size - 1)
    reasons: dict[str, str | None] = {}
    for y in [*range(curve.p, min(top, curve.p + 40)), top - 1]:  # y >= p: not reduced
        for sign in (0, top):
            reasons[f"y={y - curve.p}+p,{sign}"] = _okp_reason(
                crv, (y | sign).to_bytes(curve.size, "little")
            )
    assert set(reasons.values()) == {"not canonically encoded"}, reasons
    xs = {y: curve.x_for(y) for y in range(2, 60)}  # a square root each: computed once
    off_curve = [y for y, x in xs.items() if x is None]
    on_curve = [y for y, x in xs.items() if x is not None]
    assert off_curve
    assert on_curve
    for y in off_curve:
        assert _okp_reason(crv, y.to_bytes(curve.size, "little")) == "not a point on the curve"
    for y in on_curve:  # not of small order: fine (a signature needs the private key)
        for sign in (0, top):
            assert _okp_reason(crv, (y | sign).to_bytes(curve.size, "little")) is None


def _okp_reason(crv: str, raw: bytes) -> str | None:
    try:
        build_key({"kty": "OKP", "crv": crv, "x": b64e(raw)}, allowed=ALGORITHMS, allow_oct=False)
    except KeyRejected as exc:
        return str(exc).removeprefix(f"{crv} public key is ").split(" (")[0]
    return None


@pytest.mark.parametrize("crv", ["Ed25519", "Ed448"])
def test_generated_okp_keys_pass_the_point_checks(crv: str, keyset_of: Any) -> None:
    keys = [make_key("EdDSA", f"k{i}", crv=crv, name=f"n{i}") for i in range(20)]
    keyset = keyset_of(*(k.public_jwk() for k in keys), strict=True)
    assert len(keyset) == 20
    for key in keys:
        assert keyset.find(key.kid, "EdDSA").verify(b"m", key.sign(b"m"))


# -- RFC 9864: Ed25519 and Ed448 name one curve each ---------------------------------------------


@pytest.mark.parametrize(
    ("crv", "alg", "other"),
    [
        pytest.param("Ed25519", "Ed25519", "Ed448", id="Ed25519"),
        pytest.param("Ed448", "Ed448", "Ed25519", id="Ed448"),
    ],
)
def test_fully_specified_eddsa_names_bind_their_own_curve(
    crv: str, alg: str, other: str, keyset_of: Any
) -> None:
    key = make_key("EdDSA", "k", crv=crv)
    keyset = keyset_of(key.public_jwk())
    assert keyset.find("k", alg).verify(b"m", key.sign(b"m"))
    with pytest.raises(AlgorithmNotAllowed):
        keyset.find("k", other)
    pinned = keyset_of(key.public_jwk(alg=alg))
    assert pinned.keys[0].algorithms == {alg}
    only = keyset_of(key.public_jwk(), algorithms=[alg])
    assert only.keys[0].algorithms == {alg}
    assert len(keyset_of(key.public_jwk(), algorithms=[other])) == 0
    with pytest.raises(ConfigurationError, match="does not fit"):
        keyset_of(key.public_jwk(alg=other), strict=True)


# -- keys outside the allowlist: skipped, never fatal ---------------------------------------------


def test_a_static_set_skips_keys_outside_the_allowlist(
    rsa_key: Key, ec_key: Key, keyset_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jwt_guard.keys")
    keyset = keyset_of(rsa_key.public_jwk(), ec_key.public_jwk(), algorithms=["RS256"], strict=True)
    assert keyset.kids == {rsa_key.kid}
    assert "no allowed algorithm fits this key (it verifies ES256)" in keyset.skipped[0]
    [record] = caplog.records
    assert record.levelno == logging.INFO  # a choice of the configuration, not a broken key
    with pytest.raises(ConfigurationError, match="holds no key for the algorithms RS256"):
        keyset_of(ec_key.public_jwk(), algorithms=["RS256"], strict=True)
    with pytest.raises(ConfigurationError, match="holds no key"):
        keyset_of(strict=True)


def test_token_verifier_with_a_static_set_wider_than_its_allowlist(
    rsa_key: Key, ec_key: Key
) -> None:
    now = 1_700_000_000.0
    verifier = TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks={"keys": [rsa_key.public_jwk(), ec_key.public_jwk()]},
        algorithms=["RS256"],
        clock=lambda: now,
    )
    assert verifier.verify(token(rsa_key, claims_at(now))).subject == "user-1"
    with pytest.raises(AlgorithmNotAllowed):
        verifier.verify(token(ec_key, claims_at(now)))
    with pytest.raises(ConfigurationError, match="holds no key"):
        TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=ec_key.jwks(), algorithms=["RS256"])


# -- one log line per build, whatever the key source sends ----------------------------------------


def test_a_flood_of_junk_keys_logs_one_bounded_line(
    ec_key: Key, keyset_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    junk: list[Any] = [
        {"kty": "RSA", "kid": f"junk-{i}", "n": "!", "e": "AQAB"} for i in range(37_000)
    ]
    junk[1] = {"kty": "EC", "kid": "\x1b[31mred\r\nFAKE LINE\u2028", "crv": "P-256", "x": 1}
    junk[2] = {"kty": "oct", "kid": "k" * 10_000, "k": "AA", "use": "x" * 10_000}
    keyset = keyset_of(*junk, ec_key.public_jwk(), source="https://idp.example/jwks\r\nx")
    assert keyset.kids == {ec_key.kid}
    assert keyset.skipped_count == 37_000
    assert len(keyset.skipped) == KEPT_REASONS
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "1 of 37001 keys usable; skipped 36999 malformed or weak, 1 not used here" in message
    assert message.count("skipped:") == 3  # three sample reasons, no more
    assert len(message) < 1500
    assert not any(ch in message for ch in "\r\n\x1b\u2028"), message
    assert "\\x1b[31mred\\x0d\\x0aFAKE LINE\\u2028" in message
    assert all(len(reason) <= 303 for reason in keyset.skipped)


def test_a_clean_set_logs_nothing(
    rsa_key: Key, ec_key: Key, keyset_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwt_guard.keys")
    keyset_of(rsa_key.public_jwk(), ec_key.public_jwk())
    assert caplog.records == []
