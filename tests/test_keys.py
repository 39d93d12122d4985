"""KeySet: which key a token gets, which keys are never used, and why."""

from __future__ import annotations

from typing import Any

import pytest

from _core_helpers import ALG_CASES, ALG_IDS, Key, b64e, make_key
from jwt_guard import AlgorithmNotAllowed, ConfigurationError, KeySet, UnknownKey
from jwt_guard.keys import thumbprint


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
        pytest.param("EdDSA", {"EdDSA"}, id="OKP"),
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
        pytest.param({"alg": "ES256"}, "no allowed algorithm", id="pinned-other-family"),
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
