"""The JWS layer through ``verify_jws``: strict parsing, header rules, key choice, signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from _core_helpers import (
    ALG_CASES,
    ALG_IDS,
    Key,
    b64d,
    b64e,
    flip_signature_bit,
    make_key,
    tamper_payload,
    token,
)
from jwt_guard import ConfigurationError, InvalidToken
from jwt_guard.core.jws import check_header, normalize_typ, verify_jws
from jwt_guard.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    EncryptedToken,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
)
from jwt_guard.keys.jwk import KeySet

CLAIMS = {"iss": "https://idp.example.test/", "sub": "user-1", "exp": 1}  # exp long past


@pytest.fixture(scope="module")
def es_key() -> Key:
    return make_key("ES256", "es-1")


@pytest.fixture(scope="module")
def rs_key() -> Key:
    return make_key("RS256", "rs-1")


@pytest.fixture(scope="module")
def good(es_key: Key) -> str:
    # A token whose signature holds both '-' and '_' (so the standard-alphabet mangle bites)
    # and whose every segment ends in a partial quantum (so it has padding bits to flip).
    for n in range(1000):
        tok = token(es_key, {**CLAIMS, "n": n}, header={"x": "z" * (n % 3)})
        segments = tok.split(".")
        if {"-", "_"} <= set(segments[2]) and all(len(s) % 4 in (2, 3) for s in segments):
            return tok
    raise AssertionError("no suitable token in 1000 tries")


def _verify(tok: Any, key: Key, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    return verify_jws(tok, key.jwks(), **kwargs)


# -- every algorithm ---------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_every_algorithm_accepts_good_and_refuses_tampered(alg: str, crv: str | None) -> None:
    key = make_key(alg, f"{alg}-kid", crv=crv)
    tok = token(key, CLAIMS)
    header, payload = verify_jws(tok, key.jwks(), algorithms=[alg])
    assert header["alg"] == alg
    assert json.loads(payload) == CLAIMS  # no claim rule applies here: exp is long past
    with pytest.raises(BadSignature):
        verify_jws(tamper_payload(tok), key.jwks(), algorithms=[alg])
    for bit in (0, 7, 8 * len(b64d(tok.split(".")[2])) - 1):
        with pytest.raises(BadSignature):
            verify_jws(flip_signature_bit(tok, bit), key.jwks(), algorithms=[alg])


@pytest.mark.parametrize(("alg", "crv"), ALG_CASES, ids=ALG_IDS)
def test_a_key_of_the_same_type_but_other_material_is_refused(alg: str, crv: str | None) -> None:
    signer = make_key(alg, "k", crv=crv)
    other = make_key(alg, "k", crv=crv, name="other")
    with pytest.raises(BadSignature):
        verify_jws(token(signer, CLAIMS), other.jwks())


def test_a_keyset_can_be_passed_prebuilt(es_key: Key, good: str) -> None:
    keyset = KeySet.from_jwks(es_key.jwks())
    assert json.loads(verify_jws(good, keyset)[1])["sub"] == "user-1"


def test_the_payload_need_not_be_json(es_key: Key) -> None:
    tok = token(es_key, b"\x00 any bytes \xff")
    assert _verify(tok, es_key)[1] == b"\x00 any bytes \xff"


def test_bytes_tokens_are_accepted(es_key: Key, good: str) -> None:
    assert _verify(good.encode(), es_key)[0]["kid"] == "es-1"


# -- strict parsing ----------------------------------------------------------------------------


def _segments(tok: str) -> list[str]:
    return tok.split(".")


def _with_last_char_bit_flipped(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3), "the segment must have padding bits"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


def _replace(tok: str, index: int, segment: str) -> str:
    parts = tok.split(".")
    parts[index] = segment
    return ".".join(parts)


MANGLES = [
    pytest.param(lambda t: t + "==", id="padding-on-signature"),
    pytest.param(lambda t: t + "=", id="one-pad-on-signature"),
    pytest.param(
        lambda t: _replace(t, 2, _with_last_char_bit_flipped(_segments(t)[2])),
        id="padding-bit-flipped-in-signature",
    ),
    pytest.param(
        lambda t: _replace(t, 1, _with_last_char_bit_flipped(_segments(t)[1])),
        id="padding-bit-flipped-in-payload",
    ),
    pytest.param(
        lambda t: _replace(t, 0, _with_last_char_bit_flipped(_segments(t)[0])),
        id="padding-bit-flipped-in-header",
    ),
    pytest.param(
        lambda t: _replace(t, 2, _segments(t)[2].replace("-", "+").replace("_", "/")),
        id="standard-base64-alphabet",
    ),
    pytest.param(lambda t: _replace(t, 2, "+" + _segments(t)[2][1:]), id="plus-char"),
    pytest.param(lambda t: _replace(t, 2, "/" + _segments(t)[2][1:]), id="slash-char"),
    pytest.param(lambda t: " " + t, id="leading-space"),
    pytest.param(lambda t: t + "\n", id="trailing-newline"),
    pytest.param(lambda t: t.replace(".", ". ", 1), id="space-after-dot"),
    pytest.param(lambda t: t[:20] + "\t" + t[20:], id="tab-in-header"),
    pytest.param(lambda t: t[:-10] + "\u00e9" + t[-9:], id="non-ascii-char"),
    pytest.param(lambda t: t[:-1], id="truncated-signature"),
    pytest.param(lambda t: ".".join(_segments(t)[:2]) + ".", id="empty-signature"),
    pytest.param(lambda t: "." + ".".join(_segments(t)[1:]), id="empty-header"),
    pytest.param(lambda t: ".".join(_segments(t)[:2]), id="two-segments"),
    pytest.param(lambda t: t + ".", id="four-segments"),
    pytest.param(lambda t: t.replace(".", ""), id="one-segment"),
    pytest.param(lambda t: "", id="empty"),
    pytest.param(lambda t: "..", id="dots-only"),
    pytest.param(lambda t: "...", id="four-dots-only"),
]


@pytest.mark.parametrize("mangle", MANGLES)
def test_non_canonical_tokens_are_malformed(es_key: Key, good: str, mangle: Any) -> None:
    bad = mangle(good)
    assert bad != good
    with pytest.raises(MalformedToken) as excinfo:
        _verify(bad, es_key)
    assert type(excinfo.value) is MalformedToken


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        pytest.param(b"[]", b"{}", id="header-array"),
        pytest.param(b'"ES256"', b"{}", id="header-string"),
        pytest.param(b"null", b"{}", id="header-null"),
        pytest.param(b"not json", b"{}", id="header-not-json"),
        pytest.param(b'{"alg":"ES256","alg":"none"}', b"{}", id="header-duplicate-alg"),
        pytest.param(b'{"alg":"ES256","kid":"es-1","kid":"x"}', b"{}", id="header-duplicate-kid"),
        pytest.param(b'{"alg":"ES256","x":NaN}', b"{}", id="header-nan"),
        pytest.param(b'{"alg":"ES256","x":-Infinity}', b"{}", id="header-infinity"),
        pytest.param(
            b'{"alg":"ES256","x":' + b"[" * 3000 + b"]" * 3000 + b"}", b"{}", id="header-deep"
        ),
        pytest.param(b'{"alg":"ES256","x":"\xff"}', b"{}", id="header-bad-utf8"),
    ],
)
def test_headers_that_are_not_plain_json_objects_are_malformed(
    es_key: Key, header: bytes, payload: bytes
) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        _verify(token(es_key, payload, header=header), es_key, max_size=100_000)
    assert type(excinfo.value) is MalformedToken


def test_five_segments_is_an_encrypted_token(es_key: Key) -> None:
    jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn"
    with pytest.raises(EncryptedToken):
        _verify(jwe, es_key)


@pytest.mark.parametrize(
    ("extra", "max_size", "error"),
    [
        pytest.param(0, None, None, id="default-limit-fits"),
        pytest.param(9000, None, TokenTooLarge, id="over-default-limit"),
        pytest.param(0, 100, TokenTooLarge, id="custom-limit"),
    ],
)
def test_size_limit(es_key: Key, extra: int, max_size: int | None, error: type | None) -> None:
    tok = token(es_key, {"pad": "x" * extra})
    kwargs = {} if max_size is None else {"max_size": max_size}
    if error is None:
        _verify(tok, es_key, **kwargs)
    else:
        with pytest.raises(error):
            _verify(tok, es_key, **kwargs)


def test_size_is_checked_before_anything_is_decoded(es_key: Key) -> None:
    with pytest.raises(TokenTooLarge):
        _verify("!" * 10_000_000, es_key)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(12345, id="int"),
        pytest.param(["a", "b", "c"], id="list"),
        pytest.param(b"\xff\xfe.a.b", id="non-ascii-bytes"),
        pytest.param("\u00e9.\u00e9.\u00e9", id="non-ascii-text"),
    ],
)
def test_non_tokens_are_malformed(es_key: Key, value: Any) -> None:
    with pytest.raises(MalformedToken):
        _verify(value, es_key)


# -- header rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "none "])
def test_alg_none_is_never_accepted(es_key: Key, alg: str) -> None:
    head = b64e(json.dumps({"alg": alg, "kid": es_key.kid}).encode())
    body = b64e(json.dumps(CLAIMS).encode())
    for sig in (b64e(b"\x00"), b64e(es_key.sign(f"{head}.{body}".encode()))):
        with pytest.raises(AlgorithmNotAllowed):
            _verify(f"{head}.{body}.{sig}", es_key)
    with pytest.raises(MalformedToken):  # the unsecured form has an empty signature
        _verify(f"{head}.{body}.", es_key)


@pytest.mark.parametrize(
    "alg",
    [
        pytest.param(None, id="missing"),
        pytest.param(123, id="number"),
        pytest.param(["ES256"], id="list"),
        pytest.param("", id="empty"),
        pytest.param("es256", id="wrong-case"),
        pytest.param("HS256", id="not-in-allowlist"),
        pytest.param("RSA-OAEP", id="encryption-alg"),
    ],
)
def test_alg_must_be_an_allowlisted_string(es_key: Key, alg: Any) -> None:
    tok = token(es_key, CLAIMS, header={"alg": alg})  # None leaves alg out
    with pytest.raises(AlgorithmNotAllowed):
        _verify(tok, es_key, algorithms=["ES256", "RS256"])


def test_the_allowlist_applies_even_when_the_key_fits(es_key: Key, good: str) -> None:
    with pytest.raises(AlgorithmNotAllowed):
        _verify(good, es_key, algorithms=["RS256"])


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"crit": ["exp"], "exp": 1}, id="crit"),
        pytest.param({"crit": []}, id="crit-empty"),
        pytest.param({"crit": None}, id="crit-null"),
        pytest.param({"b64": False, "crit": ["b64"]}, id="b64-false-with-crit"),
        pytest.param({"b64": False}, id="b64-false"),
        pytest.param({"b64": "false"}, id="b64-string"),
        pytest.param({"b64": 0}, id="b64-zero"),
    ],
)
def test_unsupported_header_extensions_are_refused(es_key: Key, header: dict[str, Any]) -> None:
    tok = token(es_key, CLAIMS, header=header)
    if header.get("crit", 0) is None:  # token() drops None members; write it out
        head = json.dumps({"alg": "ES256", "kid": "es-1", "crit": None}).encode()
        tok = token(es_key, CLAIMS, header=head)
    with pytest.raises(UnsupportedHeader):
        _verify(tok, es_key)


def test_b64_true_is_the_default_and_accepted(es_key: Key) -> None:
    _verify(token(es_key, CLAIMS, header={"b64": True}), es_key)


def test_crit_b64_with_b64_true_is_the_no_op_rfc_7797_allows(es_key: Key) -> None:
    header, _ = _verify(token(es_key, CLAIMS, header={"b64": True, "crit": ["b64"]}), es_key)
    assert header["crit"] == ["b64"]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"crit": ["b64"]}, id="crit-b64-without-b64"),
        pytest.param({"crit": ["b64", "b64"], "b64": True}, id="crit-b64-twice"),
        pytest.param({"crit": ["b64", "exp"], "b64": True, "exp": 1}, id="crit-b64-and-unknown"),
        pytest.param({"crit": "b64", "b64": True}, id="crit-a-string"),
    ],
)
def test_crit_naming_b64_is_accepted_only_in_its_exact_form(
    es_key: Key, header: dict[str, Any]
) -> None:
    with pytest.raises(UnsupportedHeader):
        _verify(token(es_key, CLAIMS, header=header), es_key)


# -- typ (RFC 7515 4.1.9): "application/" is implied only when the value has no "/" ------------


@pytest.mark.parametrize(
    ("configured", "got", "ok"),
    [
        pytest.param("at+jwt", "at+jwt", True, id="short-short"),
        pytest.param("at+jwt", "application/at+jwt", True, id="short-long"),
        pytest.param("application/at+jwt", "at+jwt", True, id="long-short"),
        pytest.param("AT+JWT", "Application/At+Jwt", True, id="case-insensitive"),
        pytest.param("application/text/plain", "text/plain", False, id="prefix-not-implied"),
        pytest.param("text/plain", "application/text/plain", False, id="prefix-not-dropped"),
        pytest.param("text/plain", "text/plain", True, id="other-top-level-type"),
        pytest.param("text/plain", "plain", False, id="plain-is-application-plain"),
        pytest.param("jwt", "application/jwt", True, id="jwt"),
        pytest.param("at+jwt", "jwt", False, id="other-type"),
    ],
)
def test_typ_media_types_compare_as_rfc_7515_reads_them(
    configured: str, got: str, ok: bool
) -> None:
    header = {"alg": "ES256", "typ": got}
    required = normalize_typ(configured)
    if ok:
        assert check_header(header, {"ES256"}, required) == ("ES256", None)
    else:
        with pytest.raises(UnsupportedHeader):
            check_header(header, {"ES256"}, required)


@pytest.mark.parametrize(
    ("got", "shown"),
    [
        pytest.param("text/plain", "header 'typ' is 'text/plain'", id="other"),
        pytest.param(None, "header 'typ' is missing", id="missing"),
        pytest.param(["at+jwt"], "header 'typ' is not a string (list)", id="list"),
        pytest.param(r"JWT\r\n", r"header 'typ' is 'JWT\\r\\n'", id="literal-backslashes"),
        pytest.param(
            "JWT\r\nforged\x1b[2J", r"header 'typ' is 'JWT\x0d\x0aforged\x1b[2J'", id="controls"
        ),
    ],
)
def test_a_typ_mismatch_detail_shows_both_values_escaped(got: Any, shown: str) -> None:
    header = {"alg": "ES256"} if got is None else {"alg": "ES256", "typ": got}
    with pytest.raises(UnsupportedHeader) as excinfo:
        check_header(header, {"ES256"}, normalize_typ("application/text/plain"))
    detail = str(excinfo.value)
    assert detail.startswith(shown)
    assert detail.endswith(", expected 'application/text/plain'")
    assert not any(ch in detail for ch in "\r\n\x1b")
    assert excinfo.value.description == UnsupportedHeader.description  # the client sees no value


@pytest.mark.parametrize("typ", ["", " at+jwt", "at+jwt\n", 7, ["at+jwt"]])
def test_a_required_typ_must_be_a_media_type(typ: Any) -> None:
    with pytest.raises(ConfigurationError, match="typ must be a media type"):
        normalize_typ(typ)


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param(7, id="number"),
        pytest.param(["es-1"], id="list"),
        pytest.param({"kid": "es-1"}, id="object"),
        pytest.param("k" * 513, id="too-long"),
    ],
)
def test_kid_must_be_a_short_string(es_key: Key, kid: Any) -> None:
    with pytest.raises(MalformedToken):
        _verify(token(es_key, CLAIMS, header={"kid": kid}), es_key)


@pytest.fixture(scope="module")
def attacker() -> Key:
    return make_key("ES256", "es-1", name="attacker")


@pytest.mark.parametrize(
    "member",
    [
        pytest.param("jwk", id="embedded-jwk"),
        pytest.param("jku", id="jku"),
        pytest.param("x5u", id="x5u"),
        pytest.param("x5c", id="x5c"),
    ],
)
@pytest.mark.parametrize(
    "kid", [pytest.param("es-1", id="trusted-kid"), pytest.param(None, id="no-kid")]
)
def test_keys_named_by_the_token_are_ignored(
    es_key: Key, attacker: Key, member: str, kid: str | None
) -> None:
    value: Any = {
        "jwk": attacker.public_jwk(),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBattackercert"],
    }[member]
    tok = token(attacker.with_kid(kid), CLAIMS, header={member: value})
    with pytest.raises(BadSignature):
        _verify(tok, es_key)
    with pytest.raises(UnknownKey):  # a kid only the attacker's own JWK names
        _verify(token(attacker.with_kid("evil"), CLAIMS, header={member: value}), es_key)


# -- key choice and algorithm binding ----------------------------------------------------------


def test_hs256_signed_with_the_rsa_public_key_is_refused(rs_key: Key) -> None:
    # The classic confusion: the attacker HMACs with the verifier's public key bytes.
    for pem in (rs_key.public_pem(), rs_key.public_pem().strip()):
        forged_key = Key("HS256", rs_key.kid, pem)
        for kid in (rs_key.kid, None):
            forged = token(forged_key.with_kid(kid), CLAIMS)
            with pytest.raises((AlgorithmNotAllowed, UnknownKey)):
                verify_jws(forged, rs_key.jwks())
            with pytest.raises((AlgorithmNotAllowed, UnknownKey)):
                verify_jws(forged, rs_key.jwks(), algorithms=["RS256", "HS256"])


@pytest.mark.parametrize(
    ("signer", "jwk_key", "jwk_extra"),
    [
        pytest.param(("ES256", None), ("RS256", None), {}, id="es256-token-rsa-key"),
        pytest.param(("ES256", None), ("ES384", None), {}, id="es256-token-p384-key"),
        pytest.param(
            ("PS256", None), ("RS256", None), {"alg": "RS256"}, id="ps256-vs-pinned-rs256"
        ),
        pytest.param(("EdDSA", "Ed448"), ("EdDSA", "Ed25519"), {}, id="ed448-token-ed25519-key"),
    ],
)
def test_a_token_whose_alg_does_not_fit_the_key_is_refused(
    signer: tuple[str, str | None], jwk_key: tuple[str, str | None], jwk_extra: dict[str, Any]
) -> None:
    sign_key = make_key(signer[0], "k", crv=signer[1])
    jwks = make_key(jwk_key[0], "k", crv=jwk_key[1]).jwks(**jwk_extra)
    with pytest.raises(InvalidToken) as excinfo:
        verify_jws(token(sign_key, CLAIMS), jwks)
    assert isinstance(excinfo.value, (AlgorithmNotAllowed, BadSignature))


def test_pinned_alg_still_verifies_its_own_algorithm() -> None:
    key = make_key("PS256", "k")
    verify_jws(token(key, CLAIMS), key.jwks(alg="PS256"))
    with pytest.raises(AlgorithmNotAllowed):
        verify_jws(token(key, CLAIMS, alg="RS256"), key.jwks(alg="PS256"))


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"use": "enc"}, id="use-enc"),
        pytest.param({"key_ops": ["encrypt", "decrypt"]}, id="key-ops-without-verify"),
    ],
)
def test_encryption_keys_never_verify(es_key: Key, good: str, extra: dict[str, Any]) -> None:
    with pytest.raises(UnknownKey):
        verify_jws(good, es_key.jwks(**extra))


def test_no_kid_uses_the_only_key_that_fits(es_key: Key, rs_key: Key) -> None:
    jwks = {"keys": [es_key.public_jwk(), rs_key.public_jwk()]}
    verify_jws(token(es_key.with_kid(None), CLAIMS), jwks)
    two_ec = {"keys": [es_key.public_jwk(), make_key("ES256", "es-2", name="b").public_jwk()]}
    with pytest.raises(UnknownKey):
        verify_jws(token(es_key.with_kid(None), CLAIMS), two_ec)
    verify_jws(token(es_key, CLAIMS), two_ec)  # with its kid it is fine


def test_a_duplicate_kid_is_refused(es_key: Key, good: str) -> None:
    twin = make_key("ES256", "es-1", name="twin")
    with pytest.raises(UnknownKey):
        verify_jws(good, {"keys": [es_key.public_jwk(), twin.public_jwk()]})


@pytest.mark.parametrize(
    ("size", "alg"), [pytest.param(16, "HS256", id="hs256"), pytest.param(32, "HS512", id="hs512")]
)
def test_a_short_hmac_secret_is_refused_saying_why(size: int, alg: str) -> None:
    short = Key(alg, None, b"\x07" * size)
    with pytest.raises(
        UnknownKey, match=f"HMAC key of {size} bytes is shorter than the hash of {alg}"
    ):
        verify_jws(token(short, CLAIMS), short.jwks(), algorithms=[alg])


# -- RFC 9864: the fully specified EdDSA names ------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "crv", "other_crv"),
    [
        pytest.param("Ed25519", "Ed25519", "Ed448", id="Ed25519"),
        pytest.param("Ed448", "Ed448", "Ed25519", id="Ed448"),
    ],
)
def test_ed25519_and_ed448_verify_on_their_own_curve_only(
    alg: str, crv: str, other_crv: str
) -> None:
    key = make_key("EdDSA", "k", crv=crv).with_kid("k")
    tok = token(Key(alg, "k", key.private), CLAIMS)
    assert verify_jws(tok, key.jwks(), algorithms=[alg])[0]["alg"] == alg
    assert verify_jws(tok, key.jwks())[0]["alg"] == alg  # allowed by default
    assert verify_jws(tok, key.jwks(alg=alg), algorithms=[alg, "EdDSA"])[0]["alg"] == alg
    with pytest.raises(AlgorithmNotAllowed):
        verify_jws(tok, key.jwks(), algorithms=["EdDSA"])
    with pytest.raises(AlgorithmNotAllowed):  # a key pinned to EdDSA verifies EdDSA only
        verify_jws(tok, key.jwks(alg="EdDSA"))
    other = make_key("EdDSA", "k", crv=other_crv)
    forged = token(Key(alg, "k", other.private), CLAIMS)
    with pytest.raises((AlgorithmNotAllowed, UnknownKey)):
        verify_jws(forged, other.jwks())
    with pytest.raises((AlgorithmNotAllowed, BadSignature)):
        verify_jws(forged, key.jwks())


def test_rsa_1024_is_refused() -> None:
    small = make_key("RS256", "small", name="small", bits=1024)
    with pytest.raises(UnknownKey):
        verify_jws(token(small, CLAIMS), small.jwks())


@pytest.mark.parametrize(
    "algorithms",
    [
        pytest.param(["none"], id="none"),
        pytest.param(["RS256", "None"], id="none-among-others"),
        pytest.param([], id="empty"),
        pytest.param(["RS1"], id="unknown"),
    ],
)
def test_a_bad_allowlist_is_a_configuration_error(good: str, es_key: Key, algorithms: Any) -> None:
    with pytest.raises(ConfigurationError):
        _verify(good, es_key, algorithms=algorithms)


def test_a_single_algorithm_string_is_an_allowlist_of_one(good: str, es_key: Key) -> None:
    _verify(good, es_key, algorithms="ES256")
    with pytest.raises(AlgorithmNotAllowed):
        _verify(good, es_key, algorithms="ES384")


def test_the_first_bad_segment_names_the_error(es_key: Key) -> None:
    # A header that is not JSON is reported as such even when a later segment is not base64url
    # either (the fast path decodes all three at once, then defers to the one-by-one order).
    header = b64e(b"not json")
    with pytest.raises(MalformedToken, match="Expecting value"):
        verify_jws(f"{header}.{b64e(b'{}')}.Zh", es_key.jwks())
    with pytest.raises(MalformedToken, match="Expecting value"):
        verify_jws(f"{header}.{b64e(b'{}')}.{b64e(b'sig')}", es_key.jwks())
    with pytest.raises(MalformedToken, match="trailing bits"):
        verify_jws(f"{b64e(b'{}')}.Zh.{b64e(b'sig')}", es_key.jwks())
